"""cocotb testbenches of bl_dwc: one converter (up, down or equal widths) against its twin dwc_ref,
beat by beat and, without stalls, in the twin's cycles; and a chain FIFO -> DWC (up) -> FIFO -> DWC
(down) -> DWC (down) (sim/bl_tb_chain.v) that must deliver the element stream unchanged. Both under
random idle cycles and back-pressure."""
from pathlib import Path

import numpy as np

from hw import units as U
from sim import axis_tb as A

try:
    import cocotb
except ImportError:
    cocotb = None

CHAIN = Path(__file__).resolve().parent / "bl_tb_chain.v"


def make_case(in_elems, out_elems, bits, elems=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, elems)
    x[:max(in_elems, out_elems)] = (1 << bits) - 1     # a whole wide beat of ones
    words = U.pack_beats(x, in_elems, bits)
    params = dict(IN_W=in_elems * bits, OUT_W=out_elems * bits)
    return params, words, U.dwc_ref(words, in_elems, out_elems, bits), U.dwc_stream_cycles(in_elems, out_elems, elems)


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, iw, ow, cycles = make_case(**case)
    return A.run_unit_stream("bl_dwc", "bl_dwc", params, iw, ow, "sim.tb_dwc", build_dir, simulator=simulator,
                             phases=phases, checks=checks, sources=[U.RTL_DIR / "dwc.v"], cycles=cycles)


def run_chain(build_dir, a=2, b=8, c=4, bits=3, beats=60, seed=0, simulator=None, phases=A.DEFAULT_PHASES,
              checks=False):
    """Elements per beat a -> b (up) -> c (down, c | b) -> a (a | c)."""
    rng = np.random.default_rng(seed)
    n = beats * a
    n -= n % b
    words = U.pack_beats(rng.integers(0, 1 << bits, n), a, bits)
    srcs = [U.RTL_DIR / "fifo.v", U.RTL_DIR / "dwc.v", CHAIN]
    return A.run_unit_stream("bl_dwc+bl_fifo", "bl_tb_chain", dict(A=a, B=b, C=c, BITS=bits), words, words,
                             "sim.tb_dwc", build_dir, simulator=simulator, phases=phases, sources=srcs, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
