"""FINN build folder for a BitLens model on a Xilinx board: model.onnx (BitLens' streamlined graph
up to the accelerator's output accumulators), dataflow_build_config.json, folding_config.json
(FINN node names), verify_input.npy / verify_expected_output.npy (golden data from the bit-exact
reference), build.py, README.md.

Checked with finn-plus 1.6.1 (`make finn-check`, hw/finn_steps.py) and written against FINN's
builder API (build_dataflow_config.py, build_dataflow_steps.py):
- FINN gets the streamlined integer graph, not the raw QONNX export: it has no Quant nodes left
  (FINN's ConvertQONNXtoFINN rejects the unsigned 8-bit input quantiser: "FINN only supports signed
  Quant nodes for identity activations"), its input is the raw UINT8 pixel bytes (the accelerator's
  contract), and its layers are MatMul / XnorPopcountMatMul + MultiThreshold, which FINN's
  step_convert_to_hw turns into MVAUs (an input MultiThreshold `Thresh_in` into a Thresholding
  layer). The graph ends at `acc_out`: the per-class scale/bias to logits stays on the host, as on
  BitLens' own accelerator (finn-plus would otherwise make float elementwise layers of them).
  A leading flatten (Reshape to (1, K)) is dropped, with the input given as (1, K): it only renames
  the byte stream, and FINN would make a one-element-per-cycle Reshape layer of it.
- minimize_bit_width is false: FINN computes an XNOR MVAU's accumulator range as (+-1 weight) x
  ({0,1} input) instead of the popcount range 0..MW and then clips thresholds into that range
  (RoundAndClipThresholds), which changed outputs of a trained TFC-w1a1. Without minimisation the
  accumulators stay INT32 and RoundAndClipThresholds changes nothing.
- FINN's own verification runs after its steps on verify_input.npy (pixel bytes, FINN's input
  shape) against verify_expected_output.npy (the reference's accumulators, exact integers).
- Node names: FINN renames nodes after conversion and specialization (op type + index): BitLens
  MVAU_i -> MVAU_hls_i (binary/XNOR MVAUs have only an HLS variant), SWG_i ->
  ConvolutionInputGenerator_rtl_i, Pool_i -> StreamingMaxPool_hls_i, Thresh_in -> Thresholding_*_0.
  MultiThresholds behind a MatMul are absorbed into the MVAUs (standalone_thresholds false).
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import RemoveUnusedTensors

from hw.boards import Board
from model import publish
from model.golden import expected_outputs, sample_images

# DataflowBuildConfig fields as declared in FINN's build_dataflow_config.py (Xilinx/finn dev and
# finn-plus); the JSON written here uses only ones that both have
FINN_CONFIG_FIELDS = {
    "output_dir", "synth_clk_period_ns", "generate_outputs", "specialize_layers_config_file",
    "folding_config_file", "target_fps", "folding_two_pass_relaxation", "verify_steps",
    "verify_input_npy", "verify_expected_output_npy", "verify_save_full_context",
    "verify_save_rtlsim_waveforms", "stitched_ip_gen_dcp", "signature", "mvau_wwidth_max",
    "standalone_thresholds", "minimize_bit_width", "board", "shell_flow_type", "fpga_part",
    "auto_fifo_depths", "split_large_fifos", "auto_fifo_strategy", "force_python_rtlsim",
    "large_fifo_mem_style", "fifosim_input_throttle", "fifosim_save_waveform", "hls_clk_period_ns",
    "default_swg_exception", "vitis_platform", "vitis_floorplan_file", "vitis_opt_strategy",
    "save_intermediate_models", "enable_hw_debug", "verbose", "steps",
    "start_step", "stop_step", "max_multithreshold_bit_width", "rtlsim_batch_size",
    "rtlsim_use_vivado_comps", "input_range_info",
}
# FINN's DataflowOutputType values
FINN_OUTPUTS = ("estimate_reports", "stitched_ip", "out_of_context_synth", "rtlsim_performance",
                "bitfile", "pynq_driver", "deployment_package")
# FINN's VerificationStepType values, in build order: after step_tidy_up and step_streamline
# (Python execution), after step_minimize_bit_width (HLS cppsim), in step_generate_hardware
# (per-node rtlsim) and after step_create_stitched_ip (stitched-IP rtlsim). finn_onnx_python is not
# listed: step_qonnx_to_finn does nothing (and verifies nothing) on a graph without Quant nodes.
VERIFY_STEPS = ("initial_python", "streamlined_python", "folded_hls_cppsim", "node_by_node_rtlsim",
                "stitched_ip_rtlsim")
VERIFY_IMAGES = 10      # FINN verifies image by image, node-by-node rtlsim included: keep it short
NAME_MAP = (("MVAU", ("MVAU_hls",), ("PE", "SIMD", "ram_style", "resType")),
            ("SWG", ("ConvolutionInputGenerator_rtl",), ("SIMD", "ram_style")),
            ("Pool", ("StreamingMaxPool_hls",), ("PE",)),
            # the input stage: FINN specialises a Thresholding to RTL or HLS; both names are given
            ("Thresh", ("Thresholding_rtl", "Thresholding_hls"), ("PE",)))


class FinnFolderError(ValueError):
    pass


def finn_folding(folding: dict) -> dict:
    """BitLens folding config (keyed MVAU_i, SWG_i, Pool_i, Thresh_in) -> FINN folding_config.json."""
    out = {"Defaults": dict(folding.get("Defaults", {}))}
    for key, attrs in folding.items():
        if key == "Defaults":
            continue
        m = re.fullmatch(r"([A-Za-z]+)_(\d+|in)", key)
        rule = next((r for r in NAME_MAP if m and r[0] == m.group(1)), None)
        if rule is None or (m.group(1) == "Thresh") != (m.group(2) == "in"):
            continue            # Thresh_i behind an MVAU: absorbed into it in FINN
        kept = {k: v for k, v in attrs.items() if k in rule[2]}
        idx = "0" if m.group(2) == "in" else m.group(2)
        for name in rule[1]:
            if kept:
                out[f"{name}_{idx}"] = dict(kept)
    return out


def _ancestors(model, tensor):
    """Indices of the nodes `tensor` depends on."""
    producer = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    keep, todo = set(), [tensor]
    while todo:
        i = producer.get(todo.pop())
        if i is not None and i not in keep:
            keep.add(i)
            todo.extend(model.graph.node[i].input)
    return keep


def finn_graph(streamlined):
    """The graph FINN gets: the streamlined graph up to `acc_out` (the accumulators the accelerator
    streams out), with a leading flatten folded into a (1, K) input. Returns a qonnx ModelWrapper."""
    m = ModelWrapper(str(streamlined))
    g = m.graph
    if m.find_producer("acc_out") is None:
        raise FinnFolderError(f"{streamlined}: no tensor 'acc_out' (README contract)")
    keep = _ancestors(m, "acc_out")
    for i in sorted(set(range(len(g.node))) - keep, reverse=True):
        del g.node[i]
    shape = m.get_tensor_shape("acc_out")
    for v in [v for v in g.value_info if v.name == "acc_out"]:
        g.value_info.remove(v)
    while len(g.output):
        g.output.pop()
    g.output.append(helper.make_tensor_value_info("acc_out", onnx.TensorProto.FLOAT, shape))
    _flatten_front(m)
    return m.transform(RemoveUnusedTensors())


def _flatten_front(m):
    """global_in -> [MultiThreshold] -> Reshape(1, K) -> ...: drop the Reshape and give the input
    as (1, K). NHWC flattening keeps the byte order; a per-channel input threshold is repeated
    for every pixel (channel = position mod C)."""
    chain, t = [], m.graph.input[0].name
    while True:
        cons = m.find_consumers(t)
        if len(cons) != 1 or cons[0].op_type not in ("MultiThreshold", "Reshape"):
            return
        chain.append(cons[0])
        t = cons[0].output[0]
        if cons[0].op_type == "Reshape":
            break
    reshape = chain[-1]
    oshape = m.get_tensor_shape(reshape.output[0])
    if len(oshape) != 2 or oshape[0] != 1:
        return
    k = int(oshape[1])
    ishape = m.get_tensor_shape(m.graph.input[0].name)
    c = int(ishape[-1])
    for n in chain[:-1]:
        thr = m.get_initializer(n.input[1])
        if thr.shape[0] not in (1, c):
            return
        if thr.shape[0] == c and c > 1:
            m.set_initializer(n.input[1], np.tile(thr, (k // c, 1)).astype(np.float32))
        for a in n.attribute:
            if a.name == "data_layout":
                a.CopyFrom(helper.make_attribute("data_layout", "NC"))
        m.set_tensor_shape(n.output[0], [1, k])
    # the reshape's consumers read its input instead
    src = reshape.input[0]
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            if x == reshape.output[0]:
                n.input[i] = src
    m.graph.node.remove(reshape)
    m.set_tensor_shape(m.graph.input[0].name, [1, k])


def golden_data(streamlined, n, images=None):
    """(images as FINN's input: pixel bytes as float32, expected accumulators as float32): the first
    n test images and the bit-exact reference's output accumulators (qonnx for graphs without
    BitLens metadata). FINN compares its graph outputs with these exactly (integers)."""
    if images is None:
        images, _ = sample_images(streamlined, n)
    acc, _ = expected_outputs(streamlined, images)
    return images.astype(np.float32), np.asarray(acc).astype(np.float32)


BUILD_PY = '''"""FINN build of BitLens {model} for {board} ({part}), written by BitLens hw/finn_folder.py.

finn-plus (checked with {finn_plus}; needs Vivado / Vitis HLS past the estimate steps):
    cd {folder} && finn build dataflow_build_config.json model.onnx
or this script in FINN's environment (Xilinx/finn: $FINN_ROOT/run-docker.sh build_custom {folder}).
It runs FINN's default builder steps with dataflow_build_config.json, FINN's verification included.
"""
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    os.chdir(HERE)      # the config's paths are relative to this folder
    try:                # finn-plus outside its CLI needs its settings initialised
        from finn.util.settings import initialize_dummy_settings
        initialize_dummy_settings()
    except ImportError:
        pass
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    if hasattr(DataflowBuildConfig, "construct_from"):      # finn-plus
        cfg = DataflowBuildConfig.construct_from(HERE / "dataflow_build_config.json")
    else:                                                   # Xilinx/finn
        cfg = DataflowBuildConfig.from_dict(json.loads((HERE / "dataflow_build_config.json").read_text()))
    sys.exit(build_dataflow_cfg(str(HERE / "model.onnx"), cfg))


if __name__ == "__main__":
    main()
'''

README = """# FINN build of BitLens {model} for {board} ({part}, {clock:g} MHz)

Written by BitLens (`make bitstream MODEL={model} BOARD={board}` or `make finn-check ...`); FINN's
builder runs it unchanged. Checked with {finn_plus}: `make finn-check` runs FINN's steps that need
no Vivado on this folder and compares FINN's Python model after each with the bit-exact reference.

| file | what |
|---|---|
| `model.onnx` | BitLens' streamlined integer graph up to `acc_out`: input {in_shape} UINT8 pixel bytes, output {out_shape} accumulators (the per-class scale/bias to logits is applied on the host) |
| `dataflow_build_config.json` | FINN `DataflowBuildConfig` (board {finn_board}, vivado_zynq shell, {period:g} ns; minimize_bit_width false; FINN's verify steps on) |
| `folding_config.json` | PE/SIMD per layer, in FINN's node names |
| `verify_input.npy`, `verify_expected_output.npy` | {n_verify} test images and the bit-exact reference's accumulators, for FINN's verify steps |
| `build.py` | FINN's builder with this config (for FINN's docker flow) |

## Run

finn-plus (pip install finn-plus; Vivado and Vitis HLS for the hardware steps):

    cd {folder} && finn build dataflow_build_config.json model.onnx

Xilinx/finn (docker flow; FINN_ROOT): `cd $FINN_ROOT && ./run-docker.sh build_custom {folder}`, or
`./run-docker.sh build_dataflow {folder}` (same config, same steps).

Outputs land in `{output_dir}/` (bitfile, PYNQ driver, deployment package, reports); FINN's checks
against the golden data in `{output_dir}/verification_output/` (verify_<step>_<i>_SUCCESS/FAIL).

## Why this graph and config

- The raw QONNX export begins with an unsigned 8-bit input quantiser, which FINN's
  ConvertQONNXtoFINN rejects; the streamlined graph has no Quant nodes left and takes the raw bytes.
- `minimize_bit_width` is false: FINN computes an XNOR layer's accumulator range as (+-1 weight) x
  ({{0,1}} input) rather than the popcount range 0..MW and clips thresholds into it, which changes
  outputs of trained networks silently. Accumulators stay 32-bit (FINN's LUT estimate is higher
  than with minimisation).

## Node names

| BitLens | FINN |
|---|---|
| `MVAU_i` (MatMul / XnorPopcountMatMul + MultiThreshold) | `MVAU_hls_i` (thresholds absorbed, standalone_thresholds false) |
| `SWG_i` (Im2Col) | `ConvolutionInputGenerator_rtl_i` |
| `Pool_i` (MaxPoolNHWC) | `StreamingMaxPool_hls_i` |
| `Thresh_in` (input thresholding) | `Thresholding_rtl_0` / `Thresholding_hls_0` |
| `Thresh_i` | none (inside `MVAU_hls_i`) |

Folding used ({source}):

```json
{folding}
```
"""


FINN_PLUS = "finn-plus 1.6.1"     # the FINN the folder is checked with (requirements-finn.txt)


def write_finn_folder(model: str, board: Board, out_dir: Path, streamlined: Path, folding: dict,
                      target_fps=None, clock_mhz=None, folding_source="hw.compile folding.json",
                      verify_images=VERIFY_IMAGES) -> Path:
    """Write the FINN build folder out_dir (replaced as a whole) from the streamlined graph and
    return its path."""
    if board.vendor != "xilinx" or not board.finn_board:
        raise FinnFolderError(f"{board.name} is not a FINN board (FINN targets Xilinx Zynq / Alveo "
                              "boards: pynq-z1, pynq-z2, ultra96, zcu104, kv260)")
    streamlined = Path(streamlined)
    if not streamlined.exists():
        raise FinnFolderError(f"{streamlined} missing: run `make export MODEL={model}`")
    out_dir = Path(out_dir).resolve()
    clock = clock_mhz or board.clock_mhz
    # built in a staging folder and swapped in whole (model.publish)
    with publish.staging(out_dir.parent, "finn") as stage:
        tmp = stage / out_dir.name
        tmp.mkdir()
        graph = finn_graph(streamlined)
        graph.save(str(tmp / "model.onnx"))
        in_shape = graph.get_tensor_shape(graph.graph.input[0].name)
        x, y = golden_data(streamlined, verify_images)
        np.save(tmp / "verify_input.npy", x.reshape([len(x)] + list(in_shape[1:])))
        np.save(tmp / "verify_expected_output.npy", y.reshape(len(y), -1))
        fold = finn_folding(folding)
        (tmp / "folding_config.json").write_text(json.dumps(fold, indent=2) + "\n")
        cfg = {
            "output_dir": "output_" + re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{model}_{board.name}"),
            "synth_clk_period_ns": round(1000.0 / clock, 4),
            "board": board.finn_board,
            "shell_flow_type": "vivado_zynq",
            "folding_config_file": "folding_config.json",
            "generate_outputs": ["estimate_reports", "stitched_ip", "bitfile", "pynq_driver", "deployment_package"],
            "standalone_thresholds": False,
            "minimize_bit_width": False,
            "auto_fifo_depths": True,
            "save_intermediate_models": True,
            "verify_steps": list(VERIFY_STEPS),
            "verify_input_npy": "verify_input.npy",
            "verify_expected_output_npy": "verify_expected_output.npy",
        }
        if target_fps:
            cfg["target_fps"] = int(target_fps)
        assert set(cfg) <= FINN_CONFIG_FIELDS and set(cfg["generate_outputs"]) <= set(FINN_OUTPUTS)
        (tmp / "dataflow_build_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        (tmp / "build.py").write_text(BUILD_PY.format(
            model=model, board=board.name, part=board.part, folder=out_dir, finn_plus=FINN_PLUS))
        (tmp / "README.md").write_text(README.format(
            model=model, board=board.name, part=board.part, clock=clock, finn_board=board.finn_board,
            period=cfg["synth_clk_period_ns"], folder=out_dir, output_dir=cfg["output_dir"],
            folding=json.dumps(fold, indent=2), source=folding_source, finn_plus=FINN_PLUS,
            in_shape=tuple(in_shape), out_shape=tuple(graph.get_tensor_shape("acc_out")), n_verify=len(x)))
    return out_dir


def run_finn(folder: Path, finn_root: Path) -> int:
    """Run build.py through FINN's docker script; returns its exit code."""
    script = Path(finn_root) / "run-docker.sh"
    if not script.exists():
        raise FinnFolderError(f"FINN_ROOT={finn_root} has no run-docker.sh: not a FINN checkout")
    print(f"[finn] {script} build_custom {folder}", flush=True)
    return subprocess.run([str(script), "build_custom", str(folder)], cwd=finn_root).returncode
