"""`make finn-check` with a real FINN: finn-plus in .venv-finn (created by `make finn-setup` when it is
missing, ~2 min from the registry), run on a small synthetic streamlined graph. The three tests take
~20 s here (FINN's start-up and steps; 100 images through FINN's Python model after each step)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper

from tests.hw_graphs import make_mlp

ROOT = Path(__file__).resolve().parents[2]
FOLDING = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 4}, "MVAU_1": {"PE": 1, "SIMD": 2},
           "MVAU_2": {"PE": 1, "SIMD": 2}}
# FINN's steps that need no Vivado: conversion, streamlining, HW layers, folding, estimates
NO_VIVADO = ["step_qonnx_to_finn", "step_tidy_up", "step_streamline", "step_convert_to_hw",
             "step_minimize_bit_width_initial", "step_create_dataflow_partition", "step_specialize_layers",
             "step_target_fps_parallelization", "step_apply_folding_config", "step_minimize_bit_width",
             "step_transpose_decomposition", "step_generate_estimate_reports"]


@pytest.fixture(scope="module")
def finn_python():
    py = ROOT / ".venv-finn" / "bin" / "python"
    if not (ROOT / ".venv-finn" / ".stamp").exists():
        r = subprocess.run(["make", "finn-setup"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stderr[-2000:]
    return py


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The module's folder: FINN's steps start from scratch each run, so nothing is worth keeping."""
    return tmp_path_factory.mktemp("finn-check")


@pytest.fixture(scope="module")
def tiny_graph(work):
    (work / "tiny").mkdir(parents=True, exist_ok=True)
    path = make_mlp(work / "tiny" / "streamlined.onnx", seed=7, hidden=(16, 8), classes=4, in_shape=(1, 6, 6, 1))
    # first-layer thresholds where the sums of random bytes fall, so the activations vary
    m = ModelWrapper(str(path))
    t0 = next(n for n in m.graph.node if n.name == "Thresh_0").input[1]
    m.set_initializer(t0, np.random.default_rng(7).integers(-400, 400, (16, 1)).astype(np.float32))
    m.save(str(path))
    return path


def test_finn_check_every_step_equal_and_ii_agrees(finn_python, tiny_graph, work):
    from hw.finn_check import finn_check, verdict
    res, path = finn_check("tiny", "pynq-z1", 100, FOLDING, graph=tiny_graph, out_dir=work / "tiny" / "pynq-z1",
                           quiet=True)
    assert json.loads(path.read_text()) == res
    expected = np.load(path.parent / "check" / "expected.npy")
    assert expected.shape == (100, 4) and len(np.unique(expected, axis=0)) > 10     # equality means something
    ran = [s["step"] for s in res["steps"] if "equal" in s]
    assert ran[:len(NO_VIVADO)] == NO_VIVADO
    for s in res["steps"]:
        if "equal" in s:
            assert (s["images"], s["equal"]) == (100, 100), s
    # FINN's hardware steps need Vivado: said so, and the rest is listed as not run
    assert "Vivado" in res["steps_not_run"]["step_generate_hardware"]
    assert "step_synthesize_bitfile" in res["steps_not_run"]
    # same folding, same cycles: II = max over layers of (MW/SIMD)(MH/PE) = 36/4 * 16/2
    assert res["finn"]["ii"] == res["bitlens"]["ii"] == 72 and res["ii_equal"] and res["all_steps_equal"]
    finn_cycles = res["finn"]["layer_cycles"]
    for name, cycles in res["bitlens"]["layer_cycles"].items():
        assert finn_cycles[name.replace("MVAU_", "MVAU_hls_")] == cycles
    # FINN's own verification ran on the folder's golden data where it needs no Vivado
    assert res["finn_verify"]["initial_python"] == res["finn_verify"]["streamlined_python"] == \
        {"images": 10, "success": 10}
    assert set(res["finn_verify_not_run"]) == {"folded_hls_cppsim", "node_by_node_rtlsim", "stitched_ip_rtlsim"}
    assert res["accumulators_ok"] and not any("accumulator_overflow" in s for s in res["steps"])
    assert verdict(res) == ""


def test_finn_steps_detect_a_wrong_output(finn_python, tiny_graph, work):
    """The comparison can fail: golden data off by one in one class -> 0 equal, and the verdict says so."""
    from hw.finn_check import run_finn_steps, verdict
    folder = work / "tiny" / "pynq-z1" / "finn"
    if not folder.exists():
        pytest.skip("needs the folder of test_finn_check_every_step_equal_and_ii_agrees")
    x = np.load(folder / "check" / "images.npy")[:20]
    y = np.load(folder / "check" / "expected.npy")[:20].copy()
    y[:, 1] += 1
    res = run_finn_steps(folder, x, y, work / "wrong", finn_python, steps=["step_tidy_up"])
    assert [(s["step"], s["images"], s["equal"]) for s in res["steps"]] == [("step_tidy_up", 20, 0)]
    assert res["steps"][0]["first_difference"]["image"] == 0
    res.update(ii_equal=True)
    assert verdict(res).startswith("FINN's model differs from the reference after step_tidy_up 0/20")


def test_finn_width_minimisation_hazard_is_caught(finn_python, tiny_graph, work):
    """Why the folder says minimize_bit_width false: with it on, FINN sizes an XNOR layer's
    accumulator for signed sums of +-1 weights over {0,1} inputs, not the popcount 0..MW; the check
    flags the accumulator that would overflow on hardware (Python execution never wraps)."""
    import shutil
    from hw.finn_check import run_finn_steps, verdict
    src = work / "tiny" / "pynq-z1" / "finn"
    if not src.exists():
        pytest.skip("needs the folder of test_finn_check_every_step_equal_and_ii_agrees")
    folder = work / "minimized" / "finn"
    shutil.rmtree(folder.parent, ignore_errors=True)
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("check", "finn_check.json"))
    cfg = json.loads((folder / "dataflow_build_config.json").read_text())
    cfg["minimize_bit_width"] = True
    (folder / "dataflow_build_config.json").write_text(json.dumps(cfg))
    x, y = np.load(src / "check" / "images.npy")[:20], np.load(src / "check" / "expected.npy")[:20]
    res = run_finn_steps(folder, x, y, folder.parent / "check", finn_python,
                         steps=NO_VIVADO[:NO_VIVADO.index("step_minimize_bit_width_initial") + 1])
    last = res["steps"][-1]
    assert last["step"] == "step_minimize_bit_width_initial" and last["equal"] == 20
    assert any("MVAU_1: accDataType INT" in p and "range 0..16" in p for p in last["accumulator_overflow"])
    res.update(ii_equal=True)
    assert verdict(res).startswith("after step_minimize_bit_width_initial: MVAU_1: accDataType INT")


def test_finn_check_errors_are_one_line(tmp_path, tiny_graph, work):
    from hw.finn_check import FinnCheckError, finn_check
    r = subprocess.run([sys.executable, "-m", "bitlens", "finn-check", "--model", "tiny", "--board", "ulx3s"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: ulx3s is not a FINN board: use BOARD=pynq-z1 (or pynq-z2, "
                                             "ultra96, zcu104, kv260)"]
    with pytest.raises(FinnCheckError, match="missing: `make finn-check` creates .venv-finn"):
        finn_check("tiny", "pynq-z1", 5, FOLDING, graph=tiny_graph, out_dir=work / "tiny" / "nofinn",
                   finn_python=tmp_path / "no-python", quiet=True)
