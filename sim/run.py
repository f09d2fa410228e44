"""Simulate a BitLens accelerator on test images and prove it equals the streamlined graph.

    python -m bitlens sim --model M --board B --images N|all [--rtl FOLDER | --folding F | --target-fps N]
                          [--simulator verilator|icarus] [--harness fast|cocotb]

Writes build/<M>/<B>/sim.json: images, equal, cycles_per_image (steady state), analytic_ii,
simulator, harness, seconds (with the build), stream_seconds (streaming alone), cycles_per_second
(simulated cycles over stream_seconds).

Harnesses: `fast` (default) streams inside the simulator (sim/bl_stream_tb.v: $readmemh source with
LFSR idles, recording sink with LFSR back-pressure and cycle stamps): on Verilator under a C++ main
that toggles the clock (sim/tb_cpp.py, harness "verilator-cpp"), on Icarus under cocotb with the
clock in Verilog (sim/tb_fast.py, "cocotb-verilog-clock"); `cocotb` (sim/tb_top.py,
"cocotb-stream") is the older wrapper clocked by cocotb's Clock, ~0.1-0.3 M cycles/s."""
import json
import time
from pathlib import Path

import numpy as np

from hw.compile import compile_graph
from model import paths, publish
from model.golden import expected_outputs, sample_images
from sim import cocotb_env as E
from sim.tb_cpp import run_cpp
from sim.tb_fast import run_fast
from sim.tb_top import run_top

ROOT = Path(__file__).resolve().parents[1]


HARNESSES = ("fast", "cocotb")


class RunError(ValueError):
    pass


def run(model, board, images="all", rtl=None, simulator=None, graph=None, out_dir=None, chunk=None,
        idle_level=0, bp_level=0, progress=True, folding=None, target_fps=None, harness="fast"):
    if harness not in HARNESSES:
        raise RunError(f"unknown harness '{harness}'; known: {', '.join(HARNESSES)}")
    base = Path(out_dir) if out_dir else paths.board_dir(model, board)
    graph = Path(graph) if graph else paths.streamlined(model)
    if not graph.is_file():
        raise RunError(f"{graph}: no streamlined graph (run `make export MODEL={model}` first)")
    try:
        count = None if str(images) == "all" else int(images)
    except ValueError:
        count = 0
    if count is not None and count < 1:
        raise RunError(f"--images must be a positive number or 'all', got {images}")
    sim = E.pick_simulator(simulator)
    # a compiled hw/ and sim.json are published together after the simulation (model.publish): a
    # failed or killed run leaves the previous hw/ and the sim.json that matched it
    with publish.staging(base, "sim") as stage:
        if rtl is None:
            compile_graph(graph, stage / "hw", board, folding=folding, target_fps=target_fps)
            res = _simulate(stage / "hw" / "rtl", graph, count, sim, base, chunk, idle_level, bp_level,
                            progress, harness, run_cpp, run_fast, run_top)
            res["rtl"] = str(base / "hw" / "rtl")
        else:
            res = _simulate(Path(rtl), graph, count, sim, base, chunk, idle_level, bp_level,
                            progress, harness, run_cpp, run_fast, run_top)
            res["rtl"] = str(rtl)
        res.update(model=model, board=board)
        publish.atomic_text(stage / "sim.json", json.dumps(res, indent=1))
    return res


def _simulate(rtl, graph, count, sim, base, chunk, idle_level, bp_level, progress, harness,
              run_cpp, run_fast, run_top):
    x, source = sample_images(graph, count)
    exp, ref_name = expected_outputs(graph, x)
    if harness == "cocotb":
        runner = run_top
    else:       # fast: the C++ main on Verilator, the Verilog-clocked wrapper under cocotb on Icarus
        runner = run_cpp if sim == "verilator" else run_fast
    if chunk is None:
        chunk = 1000 if harness == "fast" else 500
    res = runner(rtl, x, exp, base / "sim", simulator=sim, chunk=chunk, idle_level=idle_level,
                 bp_level=bp_level, progress=progress)
    if res.get("simulated_cycles") and res.get("stream_seconds"):
        res.setdefault("cycles_per_second", round(res["simulated_cycles"] / res["stream_seconds"]))
    res.setdefault("harness", "cocotb-stream")
    res.update(images_source=source, reference=ref_name)
    return res
