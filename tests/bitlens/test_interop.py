"""Models from outside BitLens' zoo through every stage: a user's model file (padded, strided
convolutions, 2-bit activations) and FINN's TFC with its thresholded 1-bit input, trained,
exported, verified and simulated on the accelerator against the bit-exact reference."""
import json
import shutil
from pathlib import Path

import pytest

from model import paths
from model.export import export
from model.train import train
from sim.run import run as simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def build_root(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    return tmp_path


# the user model's padded convolutions take a minute or two to Verilate: in make test-all
@pytest.mark.parametrize("name", [pytest.param("{tmp}/user_bnn.py:bnn", marks=pytest.mark.slow), "bnn-pynq:tfc_1w1a"])
def test_model_end_to_end(name, build_root):
    shutil.copy(ROOT / "examples" / "user_bnn.py", build_root / "user_bnn.py")
    name = name.format(tmp=build_root)
    t = train(name, epochs=1, limit=300, quiet=True)
    v = export(name, verify_images=40, quiet=True)
    assert v["reference_vs_qonnx_equal"] == 40 and v["brevitas_disagreements_unexplained"] == 0
    assert json.loads((paths.model_dir(name) / "train.json").read_text())["test_accuracy"] == t["test_accuracy"]
    s = simulate(name, "ulx3s", 3, progress=False)
    assert s["equal"] is True and s["images"] == 3
    assert s["cycles_per_image"] == s["analytic_ii"]
    assert (paths.board_dir(name, "ulx3s") / "sim.json").is_file()
