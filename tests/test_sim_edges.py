"""Whole designs at the ends of their accumulator ranges (issue 13, Edges): images of all 255 and
all 0 through graphs built so the 8-bit input layer reaches +-255*MW, every XNOR layer all-match
(popcount MW) and all-mismatch (0), and a 2-bit input layer +-3*MW (tests/hw_graphs.py,
make_edge_*). qonnx is checked to reach those ends; the Verilator design must then equal it on every
output. Thresholds sit at the ends, so a hidden accumulator that is one short (a width too small)
changes a final output. Folded (SIMD < MW, PE < MH) so the ends are summed over several cycles."""
import json
from pathlib import Path

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from hw.compile import compile_graph
from sim.tb_cpp import run_cpp
from tests.hw_graphs import EDGE_IMAGES, make_edge_conv, make_edge_mlp, run_qonnx

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "_test" / "edges"
MLP_FOLD = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 9}, "MVAU_1": {"PE": 2, "SIMD": 4},
            "MVAU_2": {"PE": 1, "SIMD": 3}}
CONV_FOLD = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 2}, "MVAU_1": {"PE": 2, "SIMD": 4},
             "MVAU_2": {"PE": 1, "SIMD": 4}}
CASES = {"mlp": (make_edge_mlp, MLP_FOLD), "conv": (make_edge_conv, CONV_FOLD)}


def _images(shape):
    """The two edge images, a 0/255 checkerboard and random bytes with 0 and 255 sprinkled in."""
    rng = np.random.default_rng(5)
    check = (np.indices(shape).sum(0) % 2 * 255).astype(np.uint8)
    rand = rng.integers(0, 256, (3,) + shape, dtype=np.uint8)
    rand[rng.random(rand.shape) < 0.3] = 255
    rand[rng.random(rand.shape) < 0.1] = 0
    edges = np.stack([np.full(shape, p, np.uint8) for p in EDGE_IMAGES])
    return np.concatenate([edges, check[None], rand])


@pytest.fixture(scope="module", params=sorted(CASES))
def design(request):
    name = request.param
    maker, fold = CASES[name]
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    graph, ends = maker(work / "edge.onnx", seed=2)
    fp = work / "fold.json"
    fp.write_text(json.dumps(fold))
    out = compile_graph(graph, work / "hw", "ulx3s", folding=str(fp))
    images = _images(tuple(out["graph"].in_shape))
    return dict(name=name, graph=graph, ends=ends, rtl=work / "hw" / "rtl", work=work, images=images,
                expected=run_qonnx(graph, images))


def test_reference_reaches_the_range_ends(design):
    """The graph really drives every accumulator kind to its ends on the edge images."""
    model = ModelWrapper(str(design["graph"]))
    ctx = [execute_onnx(model, {"global_in": img[None].astype(np.float32)}, return_full_exec_context=True)
           for img in design["images"][:len(EDGE_IMAGES)]]
    kinds = set()
    for tensor, img, ch, value in design["ends"]:
        got = np.unique(np.asarray(ctx[img][tensor])[..., ch])
        assert got.tolist() == [value], (tensor, EDGE_IMAGES[img], ch, value, got)
        kinds.add("max" if value > 0 else "min")
    assert kinds == {"max", "min"}


def test_accelerator_equals_reference_at_the_range_ends(design):
    res = run_cpp(design["rtl"], design["images"], design["expected"], design["work"], chunk=len(design["images"]),
                  progress=False, keep_outputs=True)
    assert res["equal"], res.get("first_mismatch") or res.get("stall") or res.get("error")
    assert np.array_equal(res["outputs"], design["expected"])
    # the output stream itself carries the final layer's ends
    for tensor, img, ch, value in design["ends"]:
        if tensor == "acc_out":
            assert res["outputs"][img, ch] == value

