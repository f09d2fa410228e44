"""`python -m bitlens finn-check --model M --board pynq-z1 [--images 500] [--folding F]` (`make finn-check`)

Runs a real FINN (finn-plus, in its own venv .venv-finn: its pins clash with BitLens' .venv) on the
FINN build folder BitLens writes, and checks every FINN step against the bit-exact reference:
1. hw.compile picks (or takes) the folding and gives BitLens' estimates (II, LUT, BRAM18);
2. hw.finn_folder writes build/<M>/<B>/finn/ with that folding;
3. the first N test images and the reference's accumulators go to .npy files, and
   `.venv-finn/bin/python hw/finn_steps.py` runs FINN's builder steps on the folder, executing
   FINN's Python model after each on all N images (the two sides talk only through files);
4. build/<M>/<B>/finn/finn_check.json: per step images / equal (and any MVAU whose accumulator
   datatype cannot hold its true range), FINN's and BitLens' estimates; `verdict` says whether
   the check passed.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from hw.boards import get_board
from hw.compile import compile_graph
from hw.finn_folder import FINN_PLUS, golden_data, write_finn_folder
from model import paths

ROOT = Path(__file__).resolve().parent.parent
FINN_PY = ROOT / ".venv-finn" / "bin" / "python"
STEPS_SCRIPT = ROOT / "hw" / "finn_steps.py"


class FinnCheckError(RuntimeError):
    pass


def model_paths(model):
    """(streamlined graph, board-independent model folder) for a model name."""
    return paths.streamlined(model), paths.model_dir(model)


def _atomic_json(path: Path, obj):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def run_finn_steps(folder: Path, images: np.ndarray, expected: np.ndarray, work: Path, finn_python=FINN_PY,
                   steps=None, timeout=3600):
    """Run hw/finn_steps.py in the FINN venv; returns its JSON. FINN's output goes to work/finn.log."""
    if not Path(finn_python).exists():
        raise FinnCheckError(f"{finn_python} missing: `make finn-check` creates .venv-finn (finn-plus, "
                             "requirements-finn.txt)")
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "images.npy", images.astype(np.float32))
    np.save(work / "expected.npy", expected.astype(np.float32))
    out, log = work / "finn_steps.json", work / "finn.log"
    out.unlink(missing_ok=True)
    cmd = [str(finn_python), str(STEPS_SCRIPT), str(folder), "--images", str(work / "images.npy"),
           "--expected", str(work / "expected.npy"), "--out", str(out), "--work", str(work / "finn_work"),
           "--log", str(log)] + (["--steps", ",".join(steps)] if steps else [])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    try:
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FinnCheckError(f"FINN's steps did not finish within {timeout} s (log: {log})") from None
    if r.returncode != 0 or not out.exists():
        lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "no output")
        raise FinnCheckError(f"FINN's steps failed: {last.removeprefix('error: ')} (log: {log})")
    return json.loads(out.read_text())


def bitlens_numbers(est: dict) -> dict:
    t = est["total"]
    return {"ii": int(est["analytic_ii"]), "lut": int(t["lut"]), "bram18": int(t["bram"]),
            "layer_cycles": {r["layer"]: int(r["cycles"]) for r in est["layers"]},
            "source": "hw.compile estimates.json"}


def finn_check(model, board_name="pynq-z1", n_images=500, folding=None, target_fps=None, graph=None,
               out_dir=None, finn_python=FINN_PY, quiet=False):
    t0 = time.time()
    board = get_board(board_name)
    if board.vendor != "xilinx":
        raise FinnCheckError(f"{board.name} is not a FINN board: use BOARD=pynq-z1 (or pynq-z2, ultra96, zcu104, kv260)")
    streamlined, _ = model_paths(model)
    streamlined = Path(graph) if graph else streamlined
    if not streamlined.exists():
        raise FinnCheckError(f"{streamlined} missing: run `make export MODEL={model}` first")
    if n_images < 1:
        raise FinnCheckError(f"--images must be positive, got {n_images}")
    base = Path(out_dir) if out_dir else streamlined.parent / board.name
    try:
        info = compile_graph(str(streamlined), str(base / "hw"), board=board, folding=folding, target_fps=target_fps)
    except ValueError as e:
        raise FinnCheckError(f"BitLens' hw.compile (which gives the folding and BitLens' estimates): {e}") from None
    folder = write_finn_folder(model, board, base / "finn", streamlined, info["folding"], target_fps=target_fps,
                               folding_source="hw.compile folding.json")
    x, y = golden_data(streamlined, n_images)
    if not quiet:
        print(f"[finn-check] {folder}: FINN's steps on {len(x)} images ({FINN_PLUS}, log in "
              f"{folder / 'check' / 'finn.log'})", flush=True)
    res = run_finn_steps(folder, x, y, folder / "check", finn_python)
    ran = [s for s in res["steps"] if "equal" in s]
    bl = bitlens_numbers(info["estimates"])
    fi = res.get("finn") or {}
    out = {
        "model": model, "board": board.name, "images": int(len(x)),
        "steps": res["steps"],
        "finn": fi,
        "bitlens": bl,
        "all_steps_equal": bool(ran) and all(s["equal"] == s["images"] for s in ran),
        "ii_equal": fi.get("ii") == bl["ii"],
        # MVAUs whose accumulator datatype cannot hold the true range (FINN's width minimisation
        # sizes XNOR popcounts as signed sums): invisible to Python execution, an overflow on hardware
        "accumulators_ok": not any(s.get("accumulator_overflow") for s in res["steps"]),
        "steps_not_run": {s["step"]: s["why"] for s in res["steps"] if "equal" not in s},
        "finn_verify": res.get("finn_verify"), "finn_verify_not_run": res.get("finn_verify_not_run"),
        "versions": res.get("versions"), "exec": res.get("exec"),
        "folding": info["folding"], "seconds": round(time.time() - t0, 1),
    }
    _atomic_json(folder / "finn_check.json", out)
    return out, folder / "finn_check.json"


def verdict(res) -> str:
    """'' when the check passed, else one line naming what failed."""
    bad = [f"{s['step']} {s['equal']}/{s['images']}" for s in res["steps"] if "equal" in s and s["equal"] != s["images"]]
    if bad:
        return "FINN's model differs from the reference after " + ", ".join(bad)
    if not any("equal" in s for s in res["steps"]):
        return "no FINN step ran"
    over = next((s for s in res["steps"] if s.get("accumulator_overflow")), None)
    if over:
        return f"after {over['step']}: {over['accumulator_overflow'][0]}"
    if not res["ii_equal"]:
        return f"FINN's II {res['finn'].get('ii')} != BitLens' II {res['bitlens']['ii']}"
    return ""
