"""FINN build folder for a BitLens model on a Xilinx board: model.onnx (the QONNX export),
dataflow_build_config.json, folding_config.json (FINN node names), build.py, README.md.

Written against FINN's real API (Xilinx/finn src/finn/builder/build_dataflow_config.py,
build_dataflow_steps.py, transformation/qonnx/convert_qonnx_to_finn.py):
- DataflowBuildConfig requires output_dir, synth_clk_period_ns, generate_outputs; the JSON holds
  only fields that exist in FINN v0.10 and later.
- step_qonnx_to_finn only fires on Quant / Trunc / BinaryQuant in older FINN; a pure w1a1 export has
  only BipolarQuant, so build.py runs qonnx's cleanup_model + ConvertQONNXtoFINN itself first.
- The XNOR-mode MVAU (InferBinaryMatrixVectorActivation) asserts thresholds >= 0: build.py clips
  popcount-domain thresholds to [0, MW+1], which is exact (the popcount spans 0..MW).
- Node names: FINN renames nodes after conversion (GiveUniqueNodeNamesRecursive, op type + index)
  and specialization: BitLens MVAU_i -> MVAU_hls_i (binary/XNOR MVAUs have only an HLS variant),
  SWG_i -> ConvolutionInputGenerator_rtl_i, Pool_i -> StreamingMaxPool_hls_i. MultiThresholds are
  absorbed into the MVAUs (standalone_thresholds false), so Thresh_i has no FINN node.
"""
import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from hw.boards import Board

# DataflowBuildConfig fields as declared in FINN's build_dataflow_config.py (Xilinx/finn dev);
# the JSON written here uses only ones that v0.10 has too
FINN_CONFIG_FIELDS = {
    "output_dir", "synth_clk_period_ns", "generate_outputs", "specialize_layers_config_file",
    "folding_config_file", "target_fps", "folding_two_pass_relaxation", "verify_steps",
    "verify_input_npy", "verify_expected_output_npy", "verify_save_full_context",
    "verify_save_rtlsim_waveforms", "stitched_ip_gen_dcp", "signature", "mvau_wwidth_max",
    "standalone_thresholds", "minimize_bit_width", "board", "shell_flow_type", "fpga_part",
    "auto_fifo_depths", "split_large_fifos", "auto_fifo_strategy", "force_python_rtlsim",
    "large_fifo_mem_style", "fifosim_input_throttle", "fifosim_save_waveform", "hls_clk_period_ns",
    "default_swg_exception", "vitis_platform", "vitis_floorplan_file", "vitis_opt_strategy",
    "save_intermediate_models", "enable_hw_debug", "enable_build_pdb_debug", "verbose", "steps",
    "start_step", "stop_step", "max_multithreshold_bit_width", "rtlsim_batch_size",
    "rtlsim_use_vivado_comps", "input_range_info",
}
# FINN's DataflowOutputType values
FINN_OUTPUTS = ("estimate_reports", "stitched_ip", "out_of_context_synth", "rtlsim_performance",
                "bitfile", "pynq_driver", "deployment_package")
NAME_MAP = (("MVAU", "MVAU_hls", ("PE", "SIMD", "ram_style", "resType")),
            ("SWG", "ConvolutionInputGenerator_rtl", ("SIMD", "ram_style")),
            ("Pool", "StreamingMaxPool_hls", ("PE",)))


class FinnFolderError(ValueError):
    pass


def clip_xnor_thresholds(thresholds, mw):
    """Popcount-domain thresholds clipped to [0, MW+1]: P >= T is unchanged for P in 0..MW, since a
    threshold <= 0 always passes and one > MW never does."""
    return np.clip(np.asarray(thresholds, dtype=np.float32), 0, mw + 1).astype(np.float32)


def finn_folding(folding: dict) -> dict:
    """BitLens folding config (keyed MVAU_i, SWG_i, Pool_i) -> FINN folding_config.json."""
    out = {"Defaults": dict(folding.get("Defaults", {}))}
    for key, attrs in folding.items():
        if key == "Defaults":
            continue
        m = re.fullmatch(r"([A-Za-z]+)_(\d+)", key)
        rule = next((r for r in NAME_MAP if m and r[0] == m.group(1)), None)
        if rule is None:
            continue            # Thresh_i: absorbed into the MVAU in FINN
        kept = {k: v for k, v in attrs.items() if k in rule[2]}
        if kept:
            out[f"{rule[1]}_{m.group(2)}"] = kept
    return out


BUILD_PY = '''"""FINN build of BitLens {model} for {board} ({part}), written by BitLens hw/finn_folder.py.

Run inside FINN's environment (it needs FINN_ROOT, as FINN's run-docker.sh sets it):
    $FINN_ROOT/run-docker.sh build_custom {folder}
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


{clip_src}

def step_bitlens_qonnx_to_finn(model, cfg):
    """qonnx cleanup + ConvertQONNXtoFINN unconditionally: older FINN's step_qonnx_to_finn only
    fires on Quant/Trunc/BinaryQuant, and a w1a1 export has only BipolarQuant."""
    from qonnx.util.cleanup import cleanup_model
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    model = cleanup_model(model)
    return model.transform(ConvertQONNXtoFINN())


def step_bitlens_clip_xnor_thresholds(model, cfg):
    """FINN's XNOR-mode MVAU asserts thresholds >= 0; clipping to [0, MW+1] is exact."""
    for node in model.graph.node:
        if node.op_type != "MultiThreshold":
            continue
        producer = model.find_producer(node.input[0])
        if producer is None or producer.op_type != "XnorPopcountMatMul":
            continue
        mw = model.get_tensor_shape(producer.input[1])[0]
        thr = model.get_initializer(node.input[1])
        model.set_initializer(node.input[1], clip_xnor_thresholds(thr, mw))
    return model


def bitlens_steps():
    from finn.builder.build_dataflow_config import default_build_dataflow_steps
    steps = []
    for step in default_build_dataflow_steps:
        if step == "step_qonnx_to_finn":
            steps.append(step_bitlens_qonnx_to_finn)
            continue
        steps.append(step)
        if step == "step_streamline":
            steps.append(step_bitlens_clip_xnor_thresholds)
    return steps


def main():
    if not os.environ.get("FINN_ROOT"):
        sys.exit("error: FINN_ROOT is not set: run this through $FINN_ROOT/run-docker.sh build_custom <folder>")
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    os.chdir(HERE)      # the config's paths are relative to this folder
    with open("dataflow_build_config.json") as f:
        cfg = DataflowBuildConfig.from_dict(json.load(f))
    cfg.steps = bitlens_steps()
    sys.exit(build_dataflow_cfg("model.onnx", cfg))


if __name__ == "__main__":
    main()
'''

README = """# FINN build of BitLens {model} for {board} ({part}, {clock:g} MHz)

Written by `python -m hw.build --model {model} --board {board}`.

| file | what |
|---|---|
| `model.onnx` | the QONNX export of {model} (Brevitas `export_qonnx`, dynamo=False) |
| `dataflow_build_config.json` | FINN `DataflowBuildConfig` (board {finn_board}, vivado_zynq shell, {period:g} ns) |
| `folding_config.json` | PE/SIMD per layer, in FINN's node names |
| `build.py` | FINN builder: qonnx cleanup + ConvertQONNXtoFINN first, XNOR threshold clip after streamlining, then FINN's default steps |

## Run

FINN (Xilinx/finn, docker flow; needs Vivado and FINN_ROOT):

    cd $FINN_ROOT && ./run-docker.sh build_custom {folder}

Outputs land in `{folder}/{output_dir}/` (bitfile, PYNQ driver, deployment package, reports).

Alternative, config only: `./run-docker.sh build_dataflow {folder}` (or `build_dataflow {folder}`
inside the container) runs FINN's default steps on `model.onnx` with `dataflow_build_config.json`. It
skips build.py's two BitLens steps, so it only works with a FINN whose `step_qonnx_to_finn` also
converts BipolarQuant (recent FINN dev does; v0.10 does only when a Quant node is present, as
for a UINT8 input quantizer) and whose streamlining leaves the XNOR thresholds non-negative;
prefer `build_custom`.

finn-plus (pip-installed FINN): `finn build dataflow_build_config.json model.onnx` in this folder
(same caveat as build_dataflow: it runs the default steps, not build.py's).

## Node names

BitLens names layers in the streamlined graph; FINN renames after conversion and specialization:

| BitLens | FINN |
|---|---|
| `MVAU_i` (MatMul / XnorPopcountMatMul + MultiThreshold) | `MVAU_hls_i` (thresholds absorbed, standalone_thresholds false) |
| `SWG_i` (Im2Col) | `ConvolutionInputGenerator_rtl_i` |
| `Pool_i` (MaxPoolNHWC) | `StreamingMaxPool_hls_i` |
| `Thresh_i` | none (inside `MVAU_hls_i`) |

The final per-class Mul/Add (scale, bias to logits) stays outside the dataflow partition, as does
any input quantizer FINN cannot map; FINN's default PE applies to an input Thresholding layer.

Folding used ({source}):

```json
{folding}
```
"""


def _atomic_text(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_finn_folder(model: str, board: Board, out_dir: Path, qonnx_path: Path, folding: dict,
                      target_fps=None, clock_mhz=None, folding_source="hw.compile folding.json") -> Path:
    """Write the FINN build folder out_dir (replaced as a whole) and return its path."""
    if board.vendor != "xilinx" or not board.finn_board:
        raise FinnFolderError(f"{board.name} is not a FINN board (FINN targets Xilinx Zynq / Alveo boards)")
    qonnx_path = Path(qonnx_path)
    if not qonnx_path.exists():
        raise FinnFolderError(f"{qonnx_path} missing: run `make export MODEL={model}`")
    out_dir = Path(out_dir).resolve()
    clock = clock_mhz or board.clock_mhz
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(qonnx_path, tmp / "model.onnx")
    fold = finn_folding(folding)
    (tmp / "folding_config.json").write_text(json.dumps(fold, indent=2) + "\n")
    cfg = {
        "output_dir": f"output_{model}_{board.name}",
        "synth_clk_period_ns": round(1000.0 / clock, 4),
        "board": board.finn_board,
        "shell_flow_type": "vivado_zynq",
        "folding_config_file": "folding_config.json",
        "generate_outputs": ["estimate_reports", "stitched_ip", "bitfile", "pynq_driver", "deployment_package"],
        "standalone_thresholds": False,
        "auto_fifo_depths": True,
        "save_intermediate_models": True,
        "enable_build_pdb_debug": False,
    }
    if target_fps:
        cfg["target_fps"] = int(target_fps)
    assert set(cfg) <= FINN_CONFIG_FIELDS and set(cfg["generate_outputs"]) <= set(FINN_OUTPUTS)
    (tmp / "dataflow_build_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (tmp / "build.py").write_text(BUILD_PY.format(
        model=model, board=board.name, part=board.part, folder=out_dir,
        clip_src=inspect.getsource(clip_xnor_thresholds)))
    (tmp / "README.md").write_text(README.format(
        model=model, board=board.name, part=board.part, clock=clock, finn_board=board.finn_board,
        period=cfg["synth_clk_period_ns"], folder=out_dir, output_dir=cfg["output_dir"],
        folding=json.dumps(fold, indent=2), source=folding_source))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def run_finn(folder: Path, finn_root: Path) -> int:
    """Run build.py through FINN's docker script; returns its exit code."""
    script = Path(finn_root) / "run-docker.sh"
    if not script.exists():
        raise FinnFolderError(f"FINN_ROOT={finn_root} has no run-docker.sh: not a FINN checkout")
    print(f"[finn] {script} build_custom {folder}", flush=True)
    return subprocess.run([str(script), "build_custom", str(folder)], cwd=finn_root).returncode
