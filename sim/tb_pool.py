"""cocotb testbench of bl_pool: random (also odd-sized) images, max-pool twin, random idle cycles
and back-pressure."""
import numpy as np

from hw import units as U
from sim import axis_tb as A

try:
    import cocotb
except ImportError:
    cocotb = None


def make_case(ifm, c, k, pe, bits, images=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, (images, ifm, ifm, c))
    x[0] = (1 << bits) - 1                 # the largest value everywhere
    if images > 1:
        x[1] = 0                           # the smallest
    y = U.pool_ref(x, k)
    params = dict(IFM=ifm, C=c, K=k, PE=pe, BITS=bits)
    return params, pe * bits, pe * bits, U.pack_beats(x.reshape(-1), pe, bits), \
        U.pack_beats(y.reshape(-1), pe, bits)


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, in_w, out_w, iw, ow = make_case(**case)
    return A.run_unit_stream("bl_pool", "bl_pool", params, iw, ow, "sim.tb_pool", build_dir,
                             simulator=simulator, phases=phases, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
