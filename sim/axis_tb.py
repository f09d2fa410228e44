"""The shared bench of the unit testbenches (sim/tb_<unit>.py): the unit itself is the simulation's
top level, its `s_t*`/`m_t*` ports are driven by cocotbext-axi's AxiStreamSource and AxiStreamSink
(bus prefixes "s" and "m", one stream word a beat), random idle cycles are plugged into the source
and back-pressure into the sink with `set_pause_generator`, and a watcher checks the AXI-Stream rules
on every clock edge: a beat once offered stays, unchanged, until it is taken; valid and ready are
never X after reset (Icarus is 4-state; Verilator sees only 0/1).

The whole accelerator keeps its own file-fed wrapper (sim/tb_top.py): a Python coroutine per beat
is fine for a unit's few hundred beats, not for 10k images."""
import logging
import random
from pathlib import Path

from hw import units as U
from sim import cocotb_env as E

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
    from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
except ImportError:  # the run helpers (case building, runner) work without cocotb
    cocotb = None

PERIOD_NS = 10
DEFAULT_PHASES = ((0, 0), (6, 9), (0, 12), (11, 0))   # (idle level, back-pressure level) out of 16


def _pauses(rng, level):
    """Pause with probability level/16 on each clock cycle, forever (cocotbext-axi pulls one value
    a cycle)."""
    while True:
        yield rng.random() * 16 < level


class UnitTB:
    """Clock, reset, AXI-Stream source/sink and the rule watcher of one unit under test."""

    def __init__(self, dut, seed=0):
        self.dut = dut
        self.clk = dut.ap_clk
        self.rng = random.Random(seed)
        Clock(dut.ap_clk, PERIOD_NS, unit="ns").start()
        # byte_lanes=1: a stream word of any width is one element of a frame (no byte lanes, no tkeep)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s"), dut.ap_clk, dut.ap_rst_n,
                                      reset_active_level=False, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m"), dut.ap_clk, dut.ap_rst_n,
                                  reset_active_level=False, byte_lanes=1)
        for end in (self.source, self.sink):
            end.log.setLevel(logging.WARNING)     # it logs every frame in full at INFO
        self.beats_in = 0
        self.beats_out = 0
        self.cycle = 0
        self.first_in = self.last_out = None    # cycles of the current stream's first and last beat
        self.violations = []
        cocotb.start_soon(self._watch())

    def set_levels(self, idle, backpressure):
        """Idle cycles on the source and back-pressure on the sink, each with probability level/16."""
        for end, level in ((self.source, idle), (self.sink, backpressure)):
            end.set_pause_generator(_pauses(self.rng, level) if level else None)
            if not level:
                end.pause = False     # clearing the generator leaves the last value it set

    async def reset(self, cycles=5, check=False):
        """Hold reset for `cycles`; with check, the handshake outputs must be 0 (not X) during reset,
        m_tvalid 0 and s_tready resolved after it (a 4-state test, meaningful on Icarus)."""
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.clk, cycles)
        if check:
            await ReadOnly()
            for sig in (self.dut.m_tvalid, self.dut.s_tready):
                if not sig.value.is_resolvable or int(sig.value) != 0:
                    raise AssertionError(f"{sig._name} is {sig.value} during reset, expected 0")
            await RisingEdge(self.clk)
        self.dut.ap_rst_n.value = 1
        await ClockCycles(self.clk, 3 if check else 1)
        if check:
            await ReadOnly()
            if not self.dut.m_tvalid.value.is_resolvable or int(self.dut.m_tvalid.value) != 0:
                raise AssertionError(f"m_tvalid is {self.dut.m_tvalid.value} after reset with no input, expected 0")
            if not self.dut.s_tready.value.is_resolvable:
                raise AssertionError(f"s_tready is {self.dut.s_tready.value} after reset")
            await RisingEdge(self.clk)

    async def _watch(self):
        """Count handshakes and check the AXI-Stream rules on the values of each finished cycle."""
        d = self.dut
        held = None
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if not d.ap_rst_n.value.is_resolvable or int(d.ap_rst_n.value) == 0:
                held = None
                continue
            sigs = (d.s_tvalid, d.s_tready, d.m_tvalid, d.m_tready)
            # only valid/ready are checked for X: the source leaves s_tdata X while idle
            if not all(s.value.is_resolvable for s in sigs):
                self.violations.append(f"X on valid/ready at cycle {self.cycle}: "
                                       + ", ".join(f"{s._name}={s.value}" for s in sigs))
                held = None
                continue
            sv, sr, mv, mr = (int(s.value) for s in sigs)
            data = str(d.m_tdata.value)
            if held is not None and (not mv or data != held):
                self.violations.append(f"m_tdata beat withdrawn or changed under back-pressure at cycle {self.cycle}")
            held = data if (mv and not mr) else None
            if sv and sr:
                self.beats_in += 1
                if self.first_in is None:
                    self.first_in = self.cycle
            if mv and mr:
                self.beats_out += 1
                self.last_out = self.cycle

    async def stream(self, words, n_out, stall_cycles=2000, linger=64):
        """Send `words` as one frame and return the first n_out output words. A stream that does not
        move for stall_cycles raises StreamStall naming the stuck side; an output beat more than
        n_out within `linger` cycles after the last one raises SimulationFailed."""
        start_in, start_out = self.beats_in, self.beats_out
        self.first_in = self.last_out = None
        await self.source.send(AxiStreamFrame(list(int(w) for w in words)))
        last, still = None, 0
        while self.sink.count() < n_out:
            await RisingEdge(self.clk)
            now = (self.beats_in, self.beats_out)
            still = still + 1 if now == last else 0
            last = now
            if still >= stall_cycles:
                ins, outs = self.beats_in - start_in, self.beats_out - start_out
                if ins < len(words):
                    what = (f"input not accepted: s_tready low after {ins} of {len(words)} input beats "
                            f"({outs} of {n_out} output beats seen)")
                else:
                    what = (f"no output: all {len(words)} input beats accepted but only {outs} of {n_out} "
                            "output beats came")
                d = self.dut
                raise E.StreamStall(f"stream stalled for {still} cycles: {what} "
                                    f"(now s_tvalid {d.s_tvalid.value}, s_tready {d.s_tready.value}, "
                                    f"m_tvalid {d.m_tvalid.value}, m_tready {d.m_tready.value})")
        await ClockCycles(self.clk, linger)
        if self.sink.count() != n_out:
            raise E.SimulationFailed(f"device produced {self.sink.count()} output beats, expected {n_out}")
        return [self.sink.recv_nowait().tdata[0] for _ in range(n_out)]

    def span(self):
        """Cycles from the last stream's first input beat to its last output beat, both counted."""
        return self.last_out - self.first_in + 1


async def check_unit_stream(dut):
    """The cocotb body of every stream-unit testbench: stream the configured words in every (idle,
    back-pressure) phase and compare each output beat with the twin's words."""
    cfg = E.load_config()
    tb = UnitTB(dut, seed=cfg.get("seed", 0))
    await tb.reset(check=cfg.get("check_reset", False))
    for idle, bp in cfg["phases"]:
        tb.set_levels(idle, bp)
        outs = await tb.stream(cfg["in_words"], len(cfg["out_words"]), stall_cycles=cfg.get("stall_cycles", 2000))
        E.compare_words(outs, cfg["out_words"], f"{cfg['unit']} (idle {idle}/16, backpressure {bp}/16)")
        if cfg.get("cycles") is not None and (idle, bp) == (0, 0) and tb.span() != cfg["cycles"]:
            raise AssertionError(f"{cfg['unit']}: {tb.span()} cycles from the first beat in to the last out, "
                                 f"the twin says {cfg['cycles']}")
    if tb.violations:
        raise AssertionError(f"AXI-Stream rule broken: {tb.violations[0]}")
    dut._log.info("%s: %d beats in, %d out, %d phases equal", cfg["unit"], len(cfg["in_words"]),
                  len(cfg["out_words"]), len(cfg["phases"]))


def public_ports(toplevel):
    """Verilator configuration: only the top level's ports are visible to cocotb."""
    return f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n'


def run_unit_stream(unit, toplevel, params, in_words, out_words, test_module, build_dir, simulator=None,
                    phases=DEFAULT_PHASES, sources=None, checks=False, stall_cycles=2000, cycles=None):
    """Build `toplevel` (a unit, or a small test chain with the same ports) with Verilog parameters
    `params` and check that in_words become out_words under every (idle, back-pressure) phase.
    checks: the 4-state reset test too (for Icarus). cycles: the twin's count of cycles from the first
    beat in to the last out, checked in the phase without idle cycles and back-pressure."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    srcs = [U.RTL_DIR / f for f in U.UNIT_FILES] if sources is None else list(sources)
    cfg = dict(unit=unit, in_words=[int(w) for w in in_words], out_words=[int(w) for w in out_words],
               phases=[list(p) for p in phases], check_reset=checks, stall_cycles=stall_cycles,
               cycles=cycles)
    return E.run_cocotb(srcs, toplevel, test_module, build_dir / "sim_build", parameters=params,
                        simulator=simulator, config=cfg, test_dir=build_dir, public_vlt=public_ports(toplevel))
