"""cocotb testbench of bl_uart_tx and bl_uart_rx, looped back (sim/bl_tb_uart.v): random bytes and
0x00/0xFF sent back to back come out of the receiver unchanged; the line equals the twin uart_line
cycle for cycle (so the transmitter's timing is checked, not only the round trip); a stop bit pulled
low gives a framing error and drops that byte, a short glitch on the idle line starts no byte, and
the receiver then takes the next byte. The receiver's output equals the twin uart_rx_ref on the same
line."""
import random

from hw import units as U
from sim import cocotb_env as E

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge
except ImportError:
    cocotb = None

SOURCES = [U.RTL_DIR / "uart_tx.v", U.RTL_DIR / "uart_rx.v", U.RTL_DIR.parent.parent / "sim" / "bl_tb_uart.v"]


def run(build_dir, clks_per_bit, n_bytes=12, seed=0, simulator=None):
    rng = random.Random(seed)
    data = [0x00, 0xFF] + [rng.randrange(256) for _ in range(n_bytes - 2)]
    cfg = dict(clks_per_bit=clks_per_bit, data=data, bad=rng.randrange(256), after=rng.randrange(256))
    vlt = '`verilator_config\npublic_flat_rw -module "bl_tb_uart" -var "*"\n'
    return E.run_cocotb(SOURCES, "bl_tb_uart", "sim.tb_uart", build_dir / "sim_build",
                        parameters=dict(CLKS_PER_BIT=clks_per_bit), simulator=simulator, config=cfg,
                        test_dir=build_dir, public_vlt=vlt)


class UartTB:
    """Drives the transmitter's byte input, records the line and the receiver's pulses every cycle."""

    def __init__(self, dut):
        self.dut = dut
        self.line, self.got = [], []
        Clock(dut.ap_clk, 10, unit="ns").start()
        dut.tx_valid.value = 0
        dut.tx_data.value = 0
        dut.line_low.value = 0

    async def reset(self):
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, 4)
        self.dut.ap_rst_n.value = 1
        await RisingEdge(self.dut.ap_clk)
        cocotb.start_soon(self._record())

    async def _record(self):
        d = self.dut
        while True:
            await RisingEdge(d.ap_clk)
            self.line.append(int(d.line.value))
            if int(d.rx_valid.value):
                self.got.append((int(d.rx_data.value), True))
            if int(d.rx_frame_err.value):
                self.got.append((None, False))

    async def send(self, data, low_at=None):
        """Offer the bytes back to back; low_at: (first, count) cycles, counted from the cycle the
        first byte is taken, during which the line is pulled low."""
        d = self.dut
        start = None
        for byte in data:
            d.tx_data.value = byte
            d.tx_valid.value = 1
            while True:
                await RisingEdge(d.ap_clk)
                if int(d.tx_ready.value):
                    break
            if start is None:
                start = len(self.line)
        d.tx_valid.value = 0
        return start

    async def pull_low(self, at, count):
        while len(self.line) < at:
            await RisingEdge(self.dut.ap_clk)
        self.dut.line_low.value = 1
        await ClockCycles(self.dut.ap_clk, count)
        self.dut.line_low.value = 0


if cocotb is not None:
    @cocotb.test()
    async def loopback(dut):
        cfg = E.load_config()
        cpb, data = cfg["clks_per_bit"], cfg["data"]
        tb = UartTB(dut)
        await tb.reset()
        start = await tb.send(data)
        await ClockCycles(dut.ap_clk, 12 * cpb)
        n = U.uart_tx_cycles(len(data), cpb)
        want = U.uart_line(data, cpb)
        got_line = tb.line[start:start + n]
        if got_line != want:
            i = next(i for i, (a, b) in enumerate(zip(got_line, want)) if a != b)
            raise AssertionError(f"line differs from the twin at cycle {i} of byte {i // (10 * cpb + 1)}")
        if tb.got != [(b, True) for b in data]:
            raise AssertionError(f"received {tb.got}, sent {data}")

        # a broken stop bit: framing error, the byte is dropped; a glitch shorter than half a bit on
        # the idle line starts nothing; the next byte is received
        tb.got.clear()
        mark = len(tb.line)
        stop = 1 + 9 * cpb                   # the stop bit's first cycle after the byte is taken
        t0 = len(tb.line) + 1
        cocotb.start_soon(tb.pull_low(t0 + stop, cpb))
        start = await tb.send([cfg["bad"]])
        await ClockCycles(dut.ap_clk, 3 * cpb)
        await tb.pull_low(len(tb.line) + 1, max(1, (cpb - 1) // 2 - 1))
        await ClockCycles(dut.ap_clk, 3 * cpb)
        await tb.send([cfg["after"]])
        await ClockCycles(dut.ap_clk, 12 * cpb)
        if tb.got != [(None, False), (cfg["after"], True)]:
            raise AssertionError(f"after a broken stop bit and a glitch: {tb.got}, expected a framing error "
                                 f"then {cfg['after']:#x}")
        twin = U.uart_rx_ref(tb.line[mark:], cpb)
        if [(b if ok else None, ok) for b, ok in twin] != tb.got:
            raise AssertionError(f"receiver {tb.got} differs from its twin {twin} on the same line")
        dut._log.info("CLKS_PER_BIT %d: %d bytes looped back, line equal to the twin for %d cycles; "
                      "framing error and glitch handled", cpb, len(data), n)
