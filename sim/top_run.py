"""What the two cocotb whole-accelerator harnesses (sim/tb_fast.py, sim/tb_top.py) share: the run
folder with the design's memory files, the images and expected outputs handed to the test inside
the simulator, the result the test writes back, and the simulator's tie to its parent process."""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hw.bitstream import die_with_parent
from hw.manifest import read_manifest
from sim import cocotb_env as E


def copy_memories(rtl_dir, run_dir):
    """$readmemh paths resolve against the simulator's working folder: the design's memory files go
    there (the harness' own tb_* files are written per chunk)."""
    for f in Path(rtl_dir).iterdir():
        if f.suffix in (".mem", ".hex", ".dat") and not f.name.startswith("tb_"):
            shutil.copyfile(f, Path(run_dir) / f.name)


def run_stream_test(rtl_dir, images, expected, work_dir, run_name, chunk, idle_level, bp_level, progress,
                    keep_outputs, launch, simulator=None):
    """Prepare run_dir, call launch(manifest, rtl_dir, work, run_dir, cfg) -> simulator name (it runs
    the cocotb test, which reads cfg through E.load_config), and return the result dict the test
    wrote, with simulator, seconds, outputs (when keep_outputs) and the runner's error if any."""
    rtl_dir = Path(rtl_dir).resolve()
    m = read_manifest(rtl_dir)
    work = Path(work_dir).resolve()
    run_dir = work / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    copy_memories(rtl_dir, run_dir)
    images = np.asarray(images)
    chunk = max(1, min(chunk, len(images)))
    np.save(run_dir / "images.npy", images)
    np.save(run_dir / "expected.npy", np.asarray(expected, dtype=np.int64))
    cfg = dict(manifest=m, chunk=chunk, idle_level=idle_level, bp_level=bp_level, progress=progress,
               result=str(run_dir / "result.json"), outputs=str(run_dir / "outputs.npy") if keep_outputs else None,
               parent_pid=os.getpid())
    for stale in ("result.json", "outputs.npy"):
        (run_dir / stale).unlink(missing_ok=True)
    t0 = time.time()
    sim = err = None
    try:
        sim = launch(m, rtl_dir, work, run_dir, cfg)
    except E.SimulationFailed as e:
        err = e
    res_path = run_dir / "result.json"
    if not res_path.is_file():
        raise err or E.SimulationFailed("simulation wrote no result")
    res = json.loads(res_path.read_text())
    res["simulator"] = sim or E.pick_simulator(simulator)
    res["seconds"] = round(time.time() - t0, 2)
    if keep_outputs and (run_dir / "outputs.npy").is_file():
        res["outputs"] = np.load(run_dir / "outputs.npy")
    if err is not None and not res.get("stall") and not res.get("error"):
        res["error"] = str(err).splitlines()[0]
    return res


def tie_to_parent(cfg):
    """First thing a whole-accelerator cocotb test does, inside the simulator process: ask the kernel
    to end it when the Python process that started it dies (a kill -9 of sim.run runs no cleanup).
    The parent may already be gone by then: its pid is in cfg."""
    die_with_parent()
    if cfg.get("parent_pid") and os.getppid() != cfg["parent_pid"]:
        os._exit(1)


def new_result(n_images, manifest, **extra):
    """The result a whole-accelerator run fills in (every harness writes this shape to sim.json)."""
    return dict(images=int(n_images), equal=False, mismatched_images=None, cycles_per_image=None,
                analytic_ii=manifest["analytic_ii"], stall=None, **extra)


def begin_test(**res_extra):
    """The start of a whole-accelerator cocotb test, inside the simulator: tied to its parent, the
    run's config, manifest, images and expected outputs, the result dict it fills, and a progress
    bar when the run shows one. -> (cfg, manifest, images, expected, res, bar)"""
    cfg = E.load_config()
    tie_to_parent(cfg)
    m = cfg["manifest"]
    images = np.load("images.npy")
    expected = np.load("expected.npy")
    res = new_result(len(images), m, **res_extra)
    bar = tqdm(total=len(images), unit="img", desc="sim", mininterval=1.0, smoothing=0.1) \
        if cfg.get("progress") else None
    return cfg, m, images, expected, res, bar


def write_result(cfg, res, outputs=None):
    """The test's result for run_stream_test, written whole (the Python side reads it after the
    simulator exits, whatever state that exit left)."""
    if outputs is not None and cfg.get("outputs"):
        np.save(cfg["outputs"], outputs)
    tmp = cfg["result"] + ".tmp"
    Path(tmp).write_text(json.dumps(res, indent=1))
    os.replace(tmp, cfg["result"])
