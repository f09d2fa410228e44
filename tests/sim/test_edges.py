"""Whole designs at the ends of their accumulator ranges (issue 13, Edges): images of all 255 and
all 0 through graphs built so the 8-bit input layer reaches +-255*MW, every XNOR layer all-match
(popcount MW) and all-mismatch (0), and a 2-bit input layer +-3*MW (tests/hw_graphs.py,
make_edge_*). qonnx is checked to reach those ends; the Verilator design must then equal it on every
output. Thresholds sit at the ends, so a hidden accumulator that is one short (a width too small)
changes a final output. Folded (SIMD < MW, PE < MH) so the ends are summed over several cycles.
A slow case does the same on the default TFC-w1a1 design, checked with the bit-exact reference."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from hw.compile import compile_graph
from model.reference import LinearStage, Reference
from sim.tb_cpp import run_cpp
from tests.hw_graphs import EDGE_IMAGES, make_edge_conv, make_edge_mlp, run_qonnx

ROOT = Path(__file__).resolve().parents[2]
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



# ---------------------------------------------------------------- a trained BitLens graph
def _edge_weights(src, dst):
    """The streamlined MLP at src with weights and thresholds rewritten as make_edge_mlp chooses
    them (columns 0/1 of the 8-bit layer all +1/-1; XNOR columns 0-3 matching/opposing the edge
    images' activations; thresholds at the ends), saved to dst. Returns the ends per linear layer."""
    mw = ModelWrapper(str(src))
    k = int(np.prod(mw.get_tensor_shape(mw.graph.input[0].name)[1:]))
    v = np.array([[p] * k for p in EDGE_IMAGES], dtype=np.int64)
    ends, acc, layer = [], None, -1
    for node in mw.graph.node:
        if node.op_type in ("MatMul", "XnorPopcountMatMul"):
            layer += 1
            w = np.array(mw.get_initializer(node.input[1]))
            n = w.shape[0]
            if node.op_type == "MatMul":
                assert layer == 0 and set(np.unique(w)) <= {-1.0, 1.0}, "an 8-bit first layer of +-1 weights"
                w[:, 0], w[:, 1] = 1, -1
                acc = v @ w.astype(np.int64)
                ends += [(layer, 0, 0, 255 * n), (layer, 0, 1, -255 * n)]
            else:
                for i, a in enumerate(v):
                    w[:, 2 * i], w[:, 2 * i + 1] = a, 1 - a
                    ends += [(layer, i, 2 * i, n), (layer, i, 2 * i + 1, 0)]
                acc = np.array([(a[:, None] == w).sum(0) for a in v])
            mw.set_initializer(node.input[1], w.astype(np.float32))
            last_n, last_kind = n, node.op_type
        elif node.op_type == "MultiThreshold":
            t = np.array(mw.get_initializer(node.input[1]))
            assert t.shape[1] == 1, "binary activations"
            t[0:2, 0] = (255 * last_n, -255 * last_n + 1) if last_kind == "MatMul" else (last_n, 1)
            if last_kind != "MatMul":
                t[2:4, 0] = (last_n, 1)
            mw.set_initializer(node.input[1], t.astype(np.float32))
            v = (acc >= t[:, 0]).astype(np.int64)
    mw.save(str(dst))
    return ends


@pytest.fixture(scope="module")
def tiny_tfc(tmp_path_factory):
    """tfc-w1a1 trained for a moment (its weights are rewritten anyway) and exported."""
    root = tmp_path_factory.mktemp("build")
    env = dict(os.environ, BITLENS_BUILD=str(root), PYTHONWARNINGS="ignore")
    for args in (["train", "--model", "tfc-w1a1", "--epochs", "1", "--limit", "200"],
                 ["export", "--model", "tfc-w1a1", "--verify-images", "20"]):
        r = subprocess.run([sys.executable, "-m", "bitlens", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    return root / "tfc-w1a1" / "streamlined.onnx"


@pytest.mark.slow
def test_default_tfc_design_at_the_range_ends(tiny_tfc):
    """The default ULX3S TFC-w1a1 design (784-64-64-64-10) with edge weights: the bit-exact
    reference's accumulators reach +-255*784 and 0/MW on every XNOR layer, and Verilator equals
    the reference on the edge images and on random images."""
    work = WORK / "tfc"
    work.mkdir(parents=True, exist_ok=True)
    graph = work / "edge_tfc.onnx"
    ends = _edge_weights(tiny_tfc, graph)
    ref = Reference(str(graph))
    h, w, c = ref.input_shape
    edge = np.stack([np.full((h, w, c), p, np.uint8) for p in EDGE_IMAGES])
    images = np.concatenate([edge, np.random.default_rng(1).integers(0, 256, (4, h, w, c), dtype=np.uint8)])
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.detach().numpy()))
             for m in ref.stages if isinstance(m, LinearStage)]
    x = torch.tensor(edge.transpose(0, 3, 1, 2) / 256.0, dtype=torch.float32, requires_grad=True)
    ref(x)          # the float path (it needs a gradient): every layer's accumulators pass the hooks
    for hk in hooks:
        hk.remove()
    for layer, img, ch, value in ends:
        assert seen[layer][img, ch] == value, (layer, EDGE_IMAGES[img], ch, value)
    expected = ref.predict_int(images)
    assert np.array_equal(expected[:2], np.rint(seen[-1]).astype(np.int64))
    compile_graph(graph, work / "hw", "ulx3s")
    res = run_cpp(work / "hw" / "rtl", images, expected, work, chunk=len(images), progress=False, keep_outputs=True)
    assert res["equal"], res.get("first_mismatch") or res.get("stall") or res.get("error")
    assert np.array_equal(res["outputs"], expected)
