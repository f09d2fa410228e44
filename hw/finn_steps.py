"""FINN's side of `make finn-check`: runs inside .venv-finn (finn-plus), never inside BitLens' .venv.

    .venv-finn/bin/python hw/finn_steps.py FOLDER --images X.npy --expected Y.npy --out R.json --work DIR

FOLDER is a BitLens FINN build folder (hw/finn_folder.py): model.onnx, dataflow_build_config.json,
folding_config.json, verify_input.npy, verify_expected_output.npy. X.npy holds test images as the
model's input (UINT8 pixel bytes as float32), Y.npy the bit-exact reference's output accumulators.

Runs FINN's builder steps of the folder's config one by one (FINN's own functions, the folder's
config, FINN's own verify steps with the folder's golden data where they need no Vivado) and after
each step executes FINN's Python model of the graph (qonnx/FINN execute_onnx) on every image of
X.npy, comparing with Y.npy exactly. Steps that need Vivado / Vitis HLS are tried once; when one
fails, the JSON says why and the steps after it that need its output are listed as not run.
Writes R.json atomically: {"steps": [...], "finn": {"ii", "lut", "bram18", ...}, "finn_verify": ...}.
Only numpy, onnx, qonnx and finn are imported: nothing of BitLens.

It is the one library file that keeps a command line (argparse, `__main__`): hw.finn_check starts it
as a subprocess under .venv-finn's interpreter, where the app layer (bitlens/cli) cannot be
imported, so it cannot live there; users reach it through `python -m bitlens finn-check`.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# steps that generate or simulate hardware: each calls Vitis HLS, Vivado or its simulator (xsim)
VIVADO_STEPS = {
    "step_generate_hardware": "generates HLS/RTL IP with Vitis HLS and sizes FIFOs in Vivado's simulator",
    "step_hw_codegen": "writes HLS C++ and RTL from templates for Vitis HLS / Vivado",
    "step_hw_ipgen": "synthesises HLS IP with Vitis HLS",
    "step_create_stitched_ip": "stitches the IP in a Vivado project",
    "step_measure_rtlsim_performance": "simulates the stitched IP in Vivado's xsim",
    "step_out_of_context_synthesis": "synthesises with Vivado",
    "step_prepare_synthesis": "creates the Vivado block design",
    "step_synthesize_bitfile": "runs Vivado synthesis, place and route",
    "step_make_driver": "packages the driver for the bitfile",
    "step_deployment_package": "packages the bitfile and driver",
}


class CheckError(RuntimeError):
    pass


def _boot_finn(work: Path):
    """Initialise finn-plus outside its CLI: settings with the build dir in `work`, and the Vivado
    simulator bindings (finn.xsi) replaced by stubs that fail only when a step really simulates."""
    os.chdir(work)
    os.environ.setdefault("FINN_BUILD_DIR", str(work / "FINN_TMP"))
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)
    from finn.util.settings import initialize_dummy_settings
    initialize_dummy_settings()
    import finn.xsi as xsi

    def unavailable(name):
        def stub(*a, **k):
            raise CheckError(f"Vivado's simulator is not installed (finn.xsi.{name})")
        stub.__name__ = name
        return stub
    # build_dataflow_steps does `from finn.xsi import SimEngine` at import time, which builds the
    # xsi bindings against Vivado; with the names bound, the import goes through
    for name in xsi._LAZY_NAMES:
        setattr(xsi, name, unavailable(name))


def _version():
    from importlib.metadata import version
    return {p: version(p) for p in ("finn-plus", "qonnx", "onnx", "onnxruntime", "brevitas")}


def _python_model(model):
    """A copy of the graph whose HLS/RTL-specialised nodes are turned back into FINN's
    HW-abstraction nodes of the same attributes, initializers and datatypes: those execute in
    Python (the specialised ones only in cppsim, which needs Vitis HLS's headers, or rtlsim)."""
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(model.model.__deepcopy__())
    for node in m.graph.node:
        for suffix in ("hls", "rtl"):
            if node.domain == f"finn.custom_op.fpgadataflow.{suffix}":
                node.domain = "finn.custom_op.fpgadataflow"
                if node.op_type.endswith(f"_{suffix}"):
                    node.op_type = node.op_type[: -len(suffix) - 1]
    return m


def _run_images(model, parent_path, images, expected, work, step):
    """Execute the step's graph (inside the saved dataflow parent once the partition exists) on each
    image; returns (images, equal, first differing image or None, node types executed)."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp
    pm = _python_model(model)
    has_partition = parent_path is not None and not model.get_nodes_by_op_type("StreamingDataflowPartition")
    if has_partition:
        from qonnx.core.modelwrapper import ModelWrapper
        child = work / f"check_{step}.onnx"
        pm.save(str(child))
        parent = ModelWrapper(str(parent_path))
        sdp = parent.get_nodes_by_op_type("StreamingDataflowPartition")[0]
        getCustomOp(sdp).set_nodeattr("model", str(child))
        run_model = parent
    else:
        run_model = pm
    iname, oname = run_model.graph.input[0].name, run_model.graph.output[0].name
    ishape = [d.dim_value for d in run_model.graph.input[0].type.tensor_type.shape.dim]
    equal, first_bad = 0, None
    for i in range(len(images)):
        x = images[i:i + 1].astype(np.float32).reshape([1] + ishape[1:])
        out = execute_onnx(run_model, {iname: x})[oname]
        ok = out.size == expected[i].size and np.array_equal(out.reshape(-1), expected[i].reshape(-1))
        equal += bool(ok)
        if not ok and first_bad is None:
            first_bad = {"image": i, "finn": out.reshape(-1).tolist(), "reference": expected[i].reshape(-1).tolist()}
    ops = sorted({n.op_type for n in pm.graph.node})
    return len(images), equal, first_bad, ops


def _acc_problems(model):
    """MVAUs whose accumulator (or, without activation, output) datatype cannot hold the
    accumulator's true range: 0..MW for an XNOR layer (a popcount), the weights' signed sums over
    the input datatype's range otherwise. FINN's Python execution computes in float and never wraps,
    so this is checked on the attributes: on hardware such an accumulator overflows."""
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import calculate_matvec_accumulator_range
    out = []
    for node in model.graph.node:
        if not node.op_type.startswith("MVAU"):
            continue
        inst = getCustomOp(node)
        mw = inst.get_nodeattr("MW")
        if inst.get_nodeattr("binaryXnorMode"):
            lo, hi = 0, mw
        else:
            w = model.get_initializer(node.input[1])
            if w is None:
                continue
            lo, hi = calculate_matvec_accumulator_range(w, DataType[inst.get_nodeattr("inputDataType")])
        names = ["accDataType"] + (["outputDataType"] if inst.get_nodeattr("noActivation") else [])
        for attr in names:
            dt = DataType[inst.get_nodeattr(attr)]
            if dt.min() > lo or dt.max() < hi:
                out.append(f"{node.name}: {attr} {dt.name} cannot hold the accumulator range {int(lo)}..{int(hi)}")
    return out


def _one_line(e):
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".strip()


def _finn_verify(cfg):
    """FINN's own verify_step results, from the files it writes (verify_<step>_<i>_SUCCESS|FAIL.npy)."""
    d = Path(cfg.output_dir) / "verification_output"
    out = {}
    for f in sorted(d.glob("verify_*_*_*.np*")) if d.is_dir() else []:
        stem = f.name.split(".")[0]
        name, _, rest = stem[len("verify_"):].rpartition("_")
        name, _, idx = name.rpartition("_")
        if rest not in ("SUCCESS", "FAIL") or not idx.isdigit():
            continue
        r = out.setdefault(name, {"images": 0, "success": 0})
        r["images"] += 1
        r["success"] += rest == "SUCCESS"
    return out


def _estimates(cfg):
    rep = Path(cfg.output_dir) / "report"
    perf = json.loads((rep / "estimate_network_performance.json").read_text())
    res = json.loads((rep / "estimate_layer_resources.json").read_text())
    cycles = json.loads((rep / "estimate_layer_cycles.json").read_text())
    tot = res.get("total", {})
    return {"ii": int(perf["max_cycles"]), "lut": round(float(tot.get("LUT", 0))),
            "bram18": int(tot.get("BRAM_18K", 0)), "uram": int(tot.get("URAM", 0)),
            "dsp": int(tot.get("DSP", 0)), "layer_cycles": cycles,
            "critical_path_cycles": perf.get("critical_path_cycles"),
            "estimated_throughput_fps": perf.get("estimated_throughput_fps")}


def check(folder: Path, images: np.ndarray, expected: np.ndarray, work: Path, steps=None, log=sys.stdout):
    _boot_finn(work)
    from finn.builder.build_dataflow_config import DataflowBuildConfig, default_build_dataflow_steps
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup
    from qonnx.core.modelwrapper import ModelWrapper
    cfg = DataflowBuildConfig.construct_from(folder / "dataflow_build_config.json")
    cfg.output_dir = str(work / "output")
    cfg.save_intermediate_models = True
    for f in ("verify_input_npy", "verify_expected_output_npy"):
        p = Path(getattr(cfg, f))
        setattr(cfg, f, str(p if p.is_absolute() else folder / p))
    # FINN's verify steps that run its Python execution stay on (they read the folder's golden data);
    # cppsim compiles against Vitis HLS's headers, rtlsim runs Vivado's simulator
    from finn.builder.build_dataflow_config import VerificationStepType as V
    python_verify = {V.QONNX_TO_FINN_PYTHON, V.TIDY_UP_PYTHON, V.STREAMLINED_PYTHON}
    listed = list(cfg.verify_steps or [])
    cfg.verify_steps = [v for v in listed if v in python_verify] or None
    verify_skipped = {v.value: "needs Vivado/Vitis HLS (cppsim: Vitis HLS headers; rtlsim: Vivado's simulator)"
                      for v in listed if v not in python_verify}
    names = steps or cfg.steps or default_build_dataflow_steps
    model = ModelWrapper(str(folder / "model.onnx"))
    results, blocked, parent = [], None, None
    for name in names:
        if not isinstance(name, str) or name not in build_dataflow_step_lookup:
            raise CheckError(f"step {name!r} is not one of finn-plus's builder steps")
        if blocked:
            results.append({"step": name, "ran": False, "why": f"needs the output of {blocked}, which did not run"})
            continue
        t0 = time.time()
        print(f"[finn] {name}", file=log, flush=True)
        try:
            with contextlib.redirect_stdout(log):
                new = build_dataflow_step_lookup[name](model, cfg)
        except Exception as e:      # noqa: BLE001 -- any failure of a FINN step is a result
            why = _one_line(e)
            if name in VIVADO_STEPS:
                why = f"needs Vivado/Vitis HLS ({VIVADO_STEPS[name]}): {why}"
            print(f"[finn] {name} did not run: {why}", file=log, flush=True)
            traceback.print_exc(file=log)
            results.append({"step": name, "ran": False, "why": why})
            blocked = name
            continue
        model = new
        if name == "step_create_dataflow_partition":
            parent = Path(cfg.output_dir) / "intermediate_models" / "dataflow_parent.onnx"
        model.save(str(Path(cfg.get_intermediate_models_directory()) / f"{name}.onnx"))
        n, eq, bad, ops = _run_images(model, parent, images, expected, work, name)
        row = {"step": name, "images": n, "equal": eq, "seconds": round(time.time() - t0, 1), "executed_ops": ops}
        acc = _acc_problems(model)
        if acc:
            row["accumulator_overflow"] = acc
        if bad:
            row["first_difference"] = bad
        print(f"[finn] {name}: {eq}/{n} images equal", file=log, flush=True)
        results.append(row)
    out = {"steps": results, "finn_verify": _finn_verify(cfg), "finn_verify_not_run": verify_skipped, "versions": _version(),
           "exec": "finn.core.onnx_exec.execute_onnx (python); specialised HLS/RTL nodes run as their "
                   "HW-abstraction nodes with the same attributes (cppsim needs Vitis HLS headers)"}
    try:
        out["finn"] = _estimates(cfg)
    except (OSError, KeyError, ValueError) as e:
        out["finn"] = None
        out["finn_estimates_error"] = _one_line(e)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--images", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--log", help="FINN's output goes here (default stdout)")
    ap.add_argument("--steps", help="comma-separated builder steps (default: the config's, else FINN's defaults)")
    a = ap.parse_args(argv)
    folder, out, work = Path(a.folder).resolve(), Path(a.out).resolve(), Path(a.work).resolve()
    log = open(a.log, "w") if a.log else sys.stdout
    try:
        work.mkdir(parents=True, exist_ok=True)
        images, expected = np.load(Path(a.images).resolve()), np.load(Path(a.expected).resolve())
        if len(images) != len(expected):
            raise CheckError(f"{len(images)} images but {len(expected)} expected outputs")
        res = check(folder, images, expected, work, a.steps.split(",") if a.steps else None, log)
    except Exception as e:      # noqa: BLE001 -- one line for the caller, details in the log
        traceback.print_exc(file=log)
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        if log is not sys.stdout:
            log.close()
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
