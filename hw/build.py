"""`python -m bitlens build --model M --board B [--folding F] [--target-fps N]` (`make bitstream`)

Compiles build/<M>/streamlined.onnx into Verilog (hw.compile.compile_graph, into
build/<M>/<B>/hw/), then
- Lattice boards (ulx3s, icebreaker): UART board top, yosys + nextpnr + ecppack ->
  build/<M>/<B>/bitstream.bit and resources.json (used vs available, Fmax);
- Xilinx boards: yosys synth_xilinx resource estimate -> build/<M>/<B>/resources.json (error if
  the design does not fit the part), and the FINN build folder build/<M>/<B>/finn/; runs it when
  FINN_ROOT points to a FINN checkout, otherwise exits 2 saying how to run it.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

from hw.bitstream import build_lattice
from hw.boards import get_board
from hw.compile import compile_graph
from hw.folding import load_folding
from hw.finn_folder import run_finn, write_finn_folder
from hw.host import output_affine
from hw.xilinx import xilinx_resources
from model import paths, publish

REPO = Path(__file__).resolve().parent.parent
EXIT_FINN_NOT_RUN = 2


class BuildError(ValueError):
    pass


def output_affine_exact(streamlined: Path):
    """True when argmax of the raw accumulators equals argmax of the logits (per-class scale all
    equal and positive, bias all equal), i.e. when the board's LEDs show the true class."""
    try:
        scale, bias = (np.atleast_1d(v) for v in output_affine(streamlined))
    except Exception:           # an unreadable graph only costs this flag
        return None
    return bool((scale > 0).all() and (scale == scale[0]).all() and (bias == bias[0]).all())


def _show(p: Path) -> str:
    p = Path(p)
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def compile_rtl(model: str, board, folding, target_fps, out=None):
    streamlined = paths.streamlined(model)
    out = Path(out) if out else paths.board_dir(model, board.name) / "hw"
    print(f"[compile] {_show(streamlined)} -> {_show(paths.board_dir(model, board.name) / 'hw')}", flush=True)
    info = compile_graph(str(streamlined), str(out), board=board.name, folding=folding, target_fps=target_fps)
    return out, info


def build(model: str, board_name: str, folding_path=None, target_fps=None, baud=None, freq_mhz=None) -> int:
    t0 = time.time()
    board = get_board(board_name)
    streamlined = paths.streamlined(model)
    if not streamlined.exists():
        raise BuildError(f"{_show(streamlined)} missing: run `make export MODEL={model}` first")
    folding = load_folding(folding_path)
    if target_fps is not None and target_fps <= 0:
        raise BuildError(f"--target-fps must be positive, got {target_fps}")
    board_dir = paths.board_dir(model, board.name)
    hw_final = board_dir / "hw"

    if board.vendor == "lattice":
        # hw/, board/, bitstream.bit and resources.json are built in a staging folder and swapped
        # in together: a failed or killed build leaves the previous matching set (model.publish)
        with publish.staging(board_dir, "build") as stage:
            hw_dir, info = compile_rtl(model, board, folding, target_fps, stage / "hw")
            res = build_lattice(hw_dir / "rtl", stage, board, baud=baud, freq_mhz=freq_mhz,
                                affine=output_affine(streamlined))
            res["led_class_exact"] = res["wrapper_params"].get("USE_RANK") == 1 or output_affine_exact(streamlined)
            res["model"] = model
            res["seconds"] = round(time.time() - t0, 1)
            publish.atomic_json(stage / "resources.json", res)
        print(f"bitstream: {_show(board_dir / 'bitstream.bit')}  "
              f"(program: openFPGALoader -b {board.name} {_show(board_dir / 'bitstream.bit')}; "
              f"run: python -m bitlens host --model {model} --port /dev/ttyUSB0)")
        return 0

    with publish.staging(board_dir, "build", drop=("bitstream.bit", "board")) as stage:
        hw_dir, info = compile_rtl(model, board, folding, target_fps, stage / "hw")
        res = xilinx_resources(hw_dir / "rtl", stage, board)
        res["seconds"] = round(time.time() - t0, 1)      # compile + synth_xilinx
        publish.atomic_json(stage / "resources.json", res)
    folder = write_finn_folder(model, board, board_dir / "finn", streamlined, info["folding"],
                               target_fps=target_fps, folding_source=_show(hw_final / "folding.json"))
    print(f"[finn] wrote {_show(folder)}/: model.onnx, dataflow_build_config.json, "
          f"folding_config.json, verify_*.npy, build.py, README.md", flush=True)
    finn_root = os.environ.get("FINN_ROOT")
    if finn_root and (Path(finn_root) / "run-docker.sh").exists():
        return run_finn(folder, Path(finn_root))
    print(f"FINN not run (FINN_ROOT {'unset' if not finn_root else 'is not a FINN checkout'}). To build the "
          f"bitfile: cd $FINN_ROOT && ./run-docker.sh build_custom {folder}  (see {folder / 'README.md'})",
          file=sys.stderr)
    return EXIT_FINN_NOT_RUN
