"""cocotb testbench of bl_swg: random images through the window generator under random idle
cycles and back-pressure; the output equals the Im2Col twin beat by beat."""
import numpy as np

from hw import units as U
from sim import axis_tb as A

try:
    import cocotb
except ImportError:
    cocotb = None


def make_case(ifm, c, k, s, simd, bits, images=3, seed=0, ifm_w=None):
    """ifm_w: a rectangular IFM x IFM_W image (what bl_pad hands on for unequal padding)."""
    rng = np.random.default_rng(seed)
    w = ifm if ifm_w is None else ifm_w
    x = rng.integers(0, 1 << bits, (images, ifm, w, c))
    x[0] = (1 << bits) - 1                 # the largest value everywhere
    if images > 1:
        x[1] = 0                           # the smallest
    y = U.swg_ref(x, k, s)
    params = dict(IFM=ifm, C=c, K=k, S=s, SIMD=simd, BITS=bits)
    if ifm_w is not None:
        params.update(IFM_H=ifm, IFM_W=w)
    return params, simd * bits, simd * bits, U.pack_beats(x.reshape(-1), simd, bits), \
        U.pack_beats(y.reshape(-1), simd, bits)


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, in_w, out_w, iw, ow = make_case(**case)
    return A.run_unit_stream("bl_swg", "bl_swg", params, iw, ow, "sim.tb_swg", build_dir,
                             simulator=simulator, phases=phases, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
