"""cocotb testbench of bl_mvau: random vectors plus the extreme ones (a weight row and its
complement), random idle cycles and back-pressure; every output beat equals the Python twin."""
from pathlib import Path

import numpy as np

from hw import units as U
from sim import axis_tb as A
from sim import cocotb_env as E

try:
    import cocotb
except ImportError:  # the case builder is usable without cocotb
    cocotb = None


def make_case(mw, mh, pe, simd, mode, in_bits=1, in_signed=False, w_bits=1, n_thr=1, vectors=6,
              seed=0, mem_dir=".", details=None):
    """Random weights/thresholds/inputs -> (verilog params, in_w, out_w, in words, out words).
    The first vectors are the edges: the accumulator's maximum and minimum over all inputs (an input
    equal to a weight row and the complement of one, for XNOR), then the largest input everywhere.
    details: a dict, filled with x, w, the twin's accumulators and the exact accumulator range."""
    rng = np.random.default_rng(seed)
    if mode == U.MODE_XNOR:
        w = rng.integers(0, 2, (mh, mw))
        in_bits, in_signed = 1, False
        x = rng.integers(0, 2, (vectors, mw))
        x[0] = w[0]                         # all match
        x[1] = 1 - w[min(1, mh - 1)]        # all mismatch
    else:
        w = rng.choice([-1, 1], (mh, mw)) if mode == U.MODE_BIPOLAR else \
            rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), (mh, mw))
        lo, hi = U.in_range(in_bits, in_signed)
        x = rng.integers(lo, hi + 1, (vectors, mw))
        # the rows whose accumulators span furthest up and down, driven to those ends
        r_hi = int(np.argmax(np.maximum(w * lo, w * hi).sum(1)))
        r_lo = int(np.argmin(np.minimum(w * lo, w * hi).sum(1)))
        x[0] = np.where(w[r_hi] > 0, hi, lo)
        x[1] = np.where(w[r_lo] > 0, lo, hi)
        if vectors > 2:
            x[2] = hi                       # the largest input everywhere
    a_lo, a_hi = U.mvau_acc_range(w, mode, in_bits, in_signed)
    acc = U.mvau_ref(x, w, None, mode)
    if details is not None:
        details.update(x=x, w=w, acc=acc, acc_range=(a_lo, a_hi))
    if n_thr:
        # thresholds from the reached accumulators, some outside the range, sorted per channel
        t = rng.integers(a_lo - 2, a_hi + 3, (mh, n_thr))
        t[:, 0] = np.where(rng.random(mh) < 0.5, acc[0], t[:, 0])
        t = np.sort(t, axis=1)
        t = U.clip_thresholds(t, a_lo, a_hi)
        acc_bits = U.signed_bits(a_lo, a_hi + 1)
        out = U.mvau_ref(x, w, t, mode)
        out_bits = U.unsigned_bits(n_thr)
    else:
        t = None
        acc_bits = U.signed_bits(a_lo, a_hi)
        out, out_bits = acc, acc_bits
    wb = w_bits if mode == U.MODE_INT else 1
    mem_dir = Path(mem_dir)
    mem_dir.mkdir(parents=True, exist_ok=True)
    U.write_memh(mem_dir / "w.mem", U.mvau_weight_words(w, pe, simd, mode, wb), pe * simd * wb)
    if details is not None:
        details.update(acc_bits=acc_bits, out=out, out_bits=out_bits)
    if n_thr:
        U.write_memh(mem_dir / "t.mem", U.mvau_thresh_words(t, pe, acc_bits), pe * n_thr * acc_bits)
    params = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, IN_BITS=in_bits, IN_SIGNED=int(in_signed), MODE=mode,
                  W_BITS=wb, ACC_BITS=acc_bits, N_THR=n_thr, OUT_BITS=out_bits,
                  WEIGHT_FILE=E.verilog_string((mem_dir / "w.mem").resolve()),
                  THRESH_FILE=E.verilog_string((mem_dir / "t.mem").resolve()))
    in_words = U.pack_beats(x.reshape(-1), simd, in_bits)
    out_words = U.pack_beats(out.reshape(-1), pe, out_bits)
    return params, simd * in_bits, pe * out_bits, in_words, out_words


def run(build_dir, simulator=None, phases=A.DEFAULT_PHASES, checks=False, **case):
    params, in_w, out_w, iw, ow = make_case(mem_dir=build_dir, **case)
    return A.run_unit_stream("bl_mvau", "bl_mvau", params, iw, ow, "sim.tb_mvau",
                             build_dir, simulator=simulator, phases=phases, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await A.check_unit_stream(dut)
