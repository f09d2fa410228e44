"""cocotb testbench of bl_pad: random (also rectangular, asymmetrically padded) images under random
idle cycles and back-pressure; the output equals the padding twin (qonnx Im2Col's pad_amount /
pad_value) beat by beat."""
import numpy as np

from hw import units as U
from sim import axis_tb as A

try:
    import cocotb
except ImportError:
    cocotb = None


def make_case(h, w, c, simd, bits, pad, pad_value, images=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, (images, h, w, c))
    x[0] = pad_value                      # an image equal to its border
    x[1, 0, 0] = (1 << bits) - 1
    if images > 2:
        x[2] = (1 << bits) - 1               # the largest value everywhere
    y = U.pad_ref(x, pad, pad_value)
    t, l, b, r = pad
    params = dict(IFM_H=h, IFM_W=w, C=c, SIMD=simd, BITS=bits, PAD_T=t, PAD_L=l, PAD_B=b, PAD_R=r,
                  PAD_VAL=pad_value)
    return params, simd * bits, simd * bits, U.pack_beats(x.reshape(-1), simd, bits), \
        U.pack_beats(y.reshape(-1), simd, bits)


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, in_w, out_w, iw, ow = make_case(**case)
    return A.run_unit_stream("bl_pad", "bl_pad", params, iw, ow, "sim.tb_pad", build_dir,
                             simulator=simulator, phases=phases, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
