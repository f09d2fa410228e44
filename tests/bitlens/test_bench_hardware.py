"""The hardware bench reads what `make bitstream` and `make sim IMAGES=all` left, and only when it is
the default design's (same analytic II); it says "not built" instead of inventing an Fmax."""
import json

import pytest

from bitlens.bench import hardware as H
from model import paths
from tests.hw_graphs import make_mlp

MODEL = "synth-mlp"


@pytest.fixture
def build(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    monkeypatch.setattr(H, "BUILD", tmp_path)
    # a synthetic graph fits no data set: sample_images would make 10000 random images to count them
    monkeypatch.setattr(H, "test_set_size", lambda model: 10000)
    (tmp_path / MODEL).mkdir()
    make_mlp(tmp_path / MODEL / "streamlined.onnx", seed=1)
    bdir = tmp_path / MODEL / "ulx3s"
    bdir.mkdir()
    ii, est = H.default_design(MODEL, "ulx3s")
    sim = dict(images=10000, equal=True, analytic_ii=ii, cycles_per_image=float(ii), seconds=12.5,
               stream_seconds=3.0, simulated_cycles=10000 * ii, cycles_per_second=10000 * ii // 3,
               stream_cpu_seconds=2.0, simulator="verilator", harness="verilator-cpp")
    (bdir / "sim.json").write_text(json.dumps(sim))
    return tmp_path, bdir, ii, est


def test_a_whole_test_set_run_and_a_bitstream_are_read(build):
    root, bdir, ii, est = build
    (bdir / "resources.json").write_text(json.dumps(dict(
        analytic_ii=ii, fmax_mhz=50.0, target_mhz=25.0, timing_met=True,
        used=dict(lut=1234, ff=567, bram=3), analytic=dict(total=est))))
    row = H.design_row(MODEL, "ulx3s")
    assert row["full_test_set"] == "measured" and row["full_test_set_seconds"] == 12.5
    assert row["fmax_mhz"] == 50.0 and row["post_route"] == dict(lut=1234, ff=567, bram=3)
    assert row["images_per_s_at_fmax"] == round(50e6 / ii, 1) and row["images_per_s_at_clock"] == round(25e6 / ii, 1)
    assert row["estimate"] == {k: est[k] for k in ("lut", "ff", "bram")}
    assert row["sim_cycles_per_cpu_s"] == 5000 * ii and row["full_test_set_cpu_seconds"] == 2.0
    md = H.table([row], "ulx3s")
    assert "| Fmax post-route (MHz) | 50.0 |" in md and f"1,234 / {est['lut']:,}" in md


def test_another_design_is_not_taken_for_the_default(build, monkeypatch):
    root, bdir, ii, est = build
    (bdir / "resources.json").write_text(json.dumps(dict(analytic_ii=ii * 2, fmax_mhz=80.0, used={})))
    s = json.loads((bdir / "sim.json").read_text())
    s["analytic_ii"] = ii * 2
    (bdir / "sim.json").write_text(json.dumps(s))
    asked = []

    def simulate(model, board, images):
        asked.append(images)
        return dict(s, images=images, analytic_ii=ii, seconds=1.0, stream_seconds=0.5,
                    simulated_cycles=images * ii, stream_cpu_seconds=0.25)
    monkeypatch.setattr(H, "sample_sim", simulate)
    row = H.design_row(MODEL, "ulx3s", sample=100)
    assert row["fmax_mhz"] == f"built with another design (II {ii * 2})"
    assert asked == [100] and row["full_test_set"] == "extrapolated from 100 images"
    assert row["full_test_set_seconds"] == 50.0 and row["full_test_set_cpu_seconds"] == 25.0
    assert f"| Fmax post-route (MHz) | built with another design (II {ii * 2}) |" in H.table([row], "ulx3s")


def test_no_bitstream_says_not_built(build):
    row = H.design_row(MODEL, "ulx3s")
    assert row["fmax_mhz"] == row["images_per_s_at_fmax"] == "not built"
    assert row["command"] == f"make bitstream MODEL={MODEL} BOARD=ulx3s"
