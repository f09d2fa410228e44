"""The fast whole-accelerator harness (sim/bl_stream_tb.v under sim/bl_stream_main.cpp on Verilator):
bit-exact against qonnx with and without stalls, steady-state cycles/image equal to the analytic
II, and a wrong expected output is reported, not passed. These fail, not skip, without Verilator."""
import json
from pathlib import Path

import numpy as np
import pytest

from sim import cocotb_env as E
from tests.hw_graphs import make_conv, run_qonnx

ROOT = Path(__file__).resolve().parents[2]
# a stable folder, not tmp_path: the Verilator builds in it are reused by the next run (keyed by
# their sources and parameters), where rebuilding them all would cost minutes of `make test`
WORK = ROOT / "build" / "_test" / "fast"
CONV_FOLD = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 2}, "MVAU_1": {"PE": 2, "SIMD": 4},
             "MVAU_2": {"PE": 1, "SIMD": 4}}
CHUNK = 4


@pytest.fixture(scope="module")
def conv():
    """Synthetic conv graph compiled to RTL, 10 random images and their qonnx accumulators."""
    from hw.compile import compile_graph
    WORK.mkdir(parents=True, exist_ok=True)
    g = make_conv(WORK / "conv.onnx", seed=3)
    fold = WORK / "conv_fold.json"
    fold.write_text(json.dumps(CONV_FOLD))
    out = compile_graph(g, WORK / "hw", "ulx3s", folding=str(fold))
    shape = (10,) + tuple(out["graph"].in_shape)
    imgs = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    return dict(graph=g, rtl=WORK / "hw" / "rtl", images=imgs, expected=run_qonnx(g, imgs),
                ii=out["manifest"]["analytic_ii"])


def _run(conv, expected=None, **kw):
    from sim.tb_cpp import run_cpp
    exp = conv["expected"] if expected is None else expected
    return run_cpp(conv["rtl"], conv["images"], exp, WORK, chunk=CHUNK, progress=False, keep_outputs=True, **kw)


def test_fast_harness_equals_qonnx_at_the_analytic_ii(conv):
    res = _run(conv)
    assert res["harness"] == "verilator-cpp" and res["simulator"] == "verilator"
    assert res["equal"], res.get("first_mismatch") or res.get("stall") or res.get("error")
    assert np.array_equal(res["outputs"], conv["expected"]) and res["checked_images"] == 10
    assert res["cycles_per_image"] == res["analytic_ii"] == conv["ii"]
    assert res["simulated_cycles"] >= 10 * conv["ii"] and res["cycles_per_second"] > 0


def test_fast_harness_under_stalls(conv):
    """LFSR idles on the source and back-pressure on the sink (same binary: levels are run-time)."""
    for idle, bp in ((7, 0), (0, 9), (11, 12), (15, 15)):
        res = _run(conv, idle_level=idle, bp_level=bp)
        assert res["equal"], (idle, bp, res.get("first_mismatch") or res.get("stall") or res.get("error"))
        assert np.array_equal(res["outputs"], conv["expected"])
        # stalls only slow the stream; over 3 image intervals per chunk the stamps' jitter is ~1 %
        assert res["cycles_per_image"] >= 0.98 * res["analytic_ii"]
    # a source valid ~1 cycle in 16 makes the stream input-bound (16 x 64 beats ~ 1024 cycles per
    # image > II 648): the idles are really there
    assert res["cycles_per_image"] > 1.3 * res["analytic_ii"]


def test_fast_harness_catches_a_wrong_expected_output(conv):
    exp = conv["expected"].copy()
    exp[6, 1] += 1
    res = _run(conv, expected=exp)
    assert not res["equal"] and res["mismatched_images"] == 1
    assert res["first_mismatch"]["image"] == 6
    assert res["first_mismatch"]["got"] == conv["expected"][6].tolist()


def test_sim_json_names_the_harness_and_its_speed(conv):
    from sim import run as R
    fold = WORK / "conv_fold.json"
    res = R.run("conv", "ulx3s", 6, graph=conv["graph"], out_dir=WORK / "flow", folding=str(fold), progress=False,
                chunk=3)
    saved = json.loads((WORK / "flow" / "sim.json").read_text())
    assert res["equal"] and saved["equal"] and saved["harness"] == "verilator-cpp"
    assert saved["cycles_per_second"] > 0 and saved["simulated_cycles"] >= 6 * saved["analytic_ii"]
    assert 0 <= saved["stream_seconds"] <= saved["seconds"]


@pytest.mark.slow
@pytest.mark.skipif(not E.available("icarus"), reason="iverilog not installed")
def test_verilog_clocked_wrapper_under_cocotb_on_icarus(conv):
    """On Icarus the fast harness is the same wrapper with its clock in Verilog, driven by cocotb."""
    from sim.tb_fast import run_fast
    res = run_fast(conv["rtl"], conv["images"][:5], conv["expected"][:5], WORK / "icarus", simulator="icarus",
                   chunk=3, idle_level=5, bp_level=5, progress=False, keep_outputs=True)
    assert res["equal"] and res["harness"] == "cocotb-verilog-clock", res
    assert np.array_equal(res["outputs"], conv["expected"][:5])
