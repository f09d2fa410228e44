"""cocotb testbench of bl_thresholding: random pixel bytes plus the edge bytes 0 and 255 against
thresholds that include 0, 255 and 256 (never passes) and runs of equal thresholds, under random
idle cycles and back-pressure; every output beat equals the Python twin (qonnx MultiThreshold)."""
from pathlib import Path

import numpy as np

from hw import units as U
from sim import axis_tb as A
from sim import cocotb_env as E

try:
    import cocotb
except ImportError:  # the case builder is usable without cocotb
    cocotb = None


def edge_thresholds(c, n_thr, rng):
    """Sorted (C, T) thresholds in 0..256 with the edge values: channel 0 holds 0 and 256, channel 1
    255 (only byte 255 passes), channel 2 all equal; the rest random (with repeats)."""
    t = rng.integers(0, 257, (c, n_thr))
    edges = [[0] * (n_thr - 1) + [256] if n_thr > 1 else [0], [255] * n_thr, [rng.integers(1, 256)] * n_thr,
             [256] * n_thr]
    for i, row in enumerate(edges[:c]):
        t[i] = row
    if c > 4 and n_thr > 1:
        t[4, :] = np.linspace(0, 256, n_thr).astype(np.int64)
    return np.sort(t, axis=1)


def make_case(c, pe, n_thr, pixels=12, images=2, seed=0, mem_dir=".", thresholds=None):
    """Random bytes and thresholds -> (verilog params, in_w, out_w, in words, out words)."""
    rng = np.random.default_rng(seed)
    t = edge_thresholds(c, n_thr, rng) if thresholds is None else np.asarray(thresholds, dtype=np.int64)
    if t.shape[0] == 1:
        t = np.repeat(t, c, axis=0)
    x = rng.integers(0, 256, (images, pixels, c))
    x[0, 0] = 0
    x[0, 1] = 255
    x[0, 2] = np.minimum(t[:, 0], 255)    # exactly on a threshold (256 is no byte)
    x[0, 3] = np.maximum(t[:, -1] - 1, 0)  # just below the last one
    y = U.thresh_ref(x, t)
    out_bits = U.unsigned_bits(n_thr)
    mem_dir = Path(mem_dir)
    mem_dir.mkdir(parents=True, exist_ok=True)
    U.write_memh(mem_dir / "thr.mem", U.thresh_words(t, pe), pe * n_thr * 9)
    params = dict(C=c, PE=pe, N_THR=n_thr, IN_BITS=8, OUT_BITS=out_bits,
                  THRESH_FILE=E.verilog_string((mem_dir / "thr.mem").resolve()))
    return params, pe * 8, pe * out_bits, U.pack_beats(x.reshape(-1), pe, 8), \
        U.pack_beats(y.reshape(-1), pe, out_bits)


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, in_w, out_w, iw, ow = make_case(mem_dir=build_dir, **case)
    return A.run_unit_stream("bl_thresholding", "bl_thresholding", params, iw, ow,
                             "sim.tb_thresholding", build_dir, simulator=simulator, phases=phases, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
