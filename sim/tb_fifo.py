"""cocotb testbench of bl_fifo: random words under random idle cycles and back-pressure come out
unchanged and in order (the twin fifo_ref), and without stalls at one beat a cycle after a beat of
latency (the twin fifo_cycles)."""
import random

from hw import units as U
from sim import axis_tb as A

try:
    import cocotb
except ImportError:
    cocotb = None


def make_case(width, depth, beats=64, seed=0, out_reg=0, lutram=0):
    rng = random.Random(seed)
    words = [rng.getrandbits(width) for _ in range(beats)]     # any width, also past 64 bits
    words[:2] = [0, (1 << width) - 1]                # every bit low, then every bit high
    return dict(WIDTH=width, DEPTH=depth, OUT_REG=out_reg, LUTRAM=lutram), words, U.fifo_ref(words), U.fifo_cycles(beats)


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, iw, ow, cycles = make_case(**case)
    return A.run_unit_stream("bl_fifo", "bl_fifo", params, iw, ow, "sim.tb_fifo", build_dir, simulator=simulator,
                             phases=phases, checks=checks, sources=[U.RTL_DIR / "fifo.v"], cycles=cycles)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
