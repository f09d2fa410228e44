"""Bad input and interruptions, tried through the commands (`python -m bitlens <command>`) as a user
would (issue 12, Reliability).

Every case asserts: exit code != 0, exactly one message line on stderr naming the option or file
and the cause, no traceback, no temporary or staging file left, and the prior artifacts (a
trained, exported and compiled tiny model in a temporary BITLENS_BUILD) unchanged. Three cases
kill -9 the export, the hardware build and a simulation mid-way and check the previous published
state (and that no tool or simulator outlives its parent); sim.run and export also meet a
read-only and a full disk (a tmpfs: mounting needs root).
"""
import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "tfc-w1a1"


def _env(root):
    return dict(os.environ, BITLENS_BUILD=str(root), PYTHONWARNINGS="ignore", BITLENS_VERBOSE="")


def _run(root, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bitlens", *args], cwd=REPO, env=_env(root), capture_output=True,
                          text=True, timeout=timeout)


def _state(root):
    """Every published file under root with its hash (staging folders are not published)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".staging-") for part in rel.parts):
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _leftovers(root):
    return [str(p) for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    r = _run(root, "train", "--model", MODEL, "--epochs", "1", "--limit", "200")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(root, "export", "--model", MODEL, "--verify-images", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(root, "compile", "--model", MODEL, "--board", "ulx3s")
    assert r.returncode == 0, r.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "notjson.json").write_text("{PE: 2")
    (d / "list.json").write_text("[1, 2]")
    (d / "entry_str.json").write_text(json.dumps({"MVAU_0": "fast"}))
    (d / "pe_str.json").write_text(json.dumps({"MVAU_0": {"PE": "2", "SIMD": 4}}))
    (d / "pe_zero.json").write_text(json.dumps({"MVAU_0": {"PE": 0, "SIMD": 4}}))
    (d / "simd_bool.json").write_text(json.dumps({"MVAU_0": {"PE": 1, "SIMD": True}}))
    (d / "unknown.json").write_text(json.dumps({"MVAU_99": {"PE": 1, "SIMD": 1}}))
    (d / "bad.onnx").write_bytes(b"not an onnx graph")
    return d


# (CLI and arguments, a word the one message line must hold); {d} is the folder of bad input files
CASES = [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "abc"], "--epochs"),
    (["train", "--batch", "-3"], "--batch"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "fast"], "--lr"),
    (["train", "--limit", "0"], "--limit"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--model", "nosuch-net"], "nosuch-net"),
    (["train", "--ckpt", "/nonexistent/w.pt"], "/nonexistent/w.pt"),
    (["export", "--verify-images", "0"], "--verify-images"),
    (["export", "--verify-images", "abc"], "--verify-images"),
    (["export", "--seed", "x"], "--seed"),
    (["export", "--seed", "7"], "model.pt"),
    (["export", "--dataset", "cifar10"], "trained on"),
    (["compile", "--model", MODEL, "--folding", "/nonexistent.json"], "/nonexistent.json"),
    (["compile", "--model", MODEL, "--folding", "{d}/notjson.json"], "not JSON"),
    (["compile", "--model", MODEL, "--folding", "{d}/list.json"], "list.json"),
    (["compile", "--model", MODEL, "--folding", "{d}/entry_str.json"], "MVAU_0"),
    (["compile", "--model", MODEL, "--folding", "{d}/pe_str.json"], "MVAU_0.PE"),
    (["compile", "--model", MODEL, "--folding", "{d}/pe_zero.json"], "MVAU_0.PE"),
    (["compile", "--model", MODEL, "--folding", "{d}/simd_bool.json"], "MVAU_0.SIMD"),
    (["compile", "--model", MODEL, "--folding", "{d}/unknown.json"], "MVAU_99"),
    (["compile", "--model", MODEL, "--target-fps", "0"], "--target-fps"),
    (["compile", "--model", MODEL, "--target-fps", "abc"], "--target-fps"),
    (["compile", "--model", MODEL, "--board", "nosuch-board"], "nosuch-board"),
    (["compile", "--model", "nosuch-net"], "streamlined"),
    (["compile", "--model", MODEL, "--graph", "{d}/bad.onnx"], "bad.onnx"),
    (["compile", "--model", MODEL, "--out", "/proc/bitlens-hw"], "/proc"),
    (["build", "--model", MODEL, "--baud", "abc"], "--baud"),
    (["build", "--model", MODEL, "--freq", "-5"], "--freq"),
    (["build", "--model", MODEL, "--board", "nosuch-board"], "nosuch-board"),
    (["build", "--model", "nosuch-net"], "streamlined"),
    (["build", "--model", MODEL, "--folding", "{d}/pe_str.json"], "MVAU_0.PE"),
    (["sim", "--model", MODEL, "--images", "abc"], "--images"),
    (["sim", "--model", MODEL, "--images", "0"], "--images"),
    (["sim", "--model", MODEL, "--idle", "20"], "--idle"),
    (["sim", "--model", MODEL, "--chunk", "0"], "--chunk"),
    (["sim", "--model", MODEL, "--harness", "slow"], "--harness"),
    (["sim", "--model", "nosuch-net"], "streamlined"),
    (["sim", "--model", MODEL, "--folding", "{d}/entry_str.json"], "MVAU_0"),
]


def _one_line(r, word):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error:") and word in lines[0], lines[0]


@pytest.mark.parametrize("args,word", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_bad_input(built, files, args, word):
    before = _state(built)
    r = _run(built, *[a.format(d=files) for a in args])
    _one_line(r, word.format(d=files))
    assert _state(built) == before
    assert not _leftovers(built)
    assert not list(Path(built).rglob(".staging-*"))


def _wait_for(pred, proc, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _export_staging(d):
    # the staging folder exists from the export's first step: interrupting as soon as it appears
    # leaves seconds of export and streamlining before the publish (the verification after the
    # staged graph is written is well under a second now, too short a window to hit reliably)
    return any(d.glob(".staging-export-*"))


def _pair_consistent(root):
    d = Path(root) / MODEL
    v = json.loads((d / "verify.json").read_text())
    return v["streamlined_sha256"] == hashlib.sha256((d / "streamlined.onnx").read_bytes()).hexdigest()


def test_kill9_during_export(built):
    before = _state(built)
    assert _pair_consistent(built)
    d = Path(built) / MODEL
    p = subprocess.Popen([sys.executable, "-m", "bitlens", "export", "--model", MODEL, "--verify-images", "2000"],
                         cwd=REPO, env=_env(built), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        assert _wait_for(lambda: _export_staging(d), p), "export never staged"
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert _state(built) == before and _pair_consistent(built)
    # the next reader (model.paths) removes the dead export's staging folder, same pair
    from model import paths
    paths.streamlined(MODEL, root=built)
    assert not list(d.glob(".staging-*")) and _state(built) == before


def test_ctrl_c_during_export(built):
    before = _state(built)
    d = Path(built) / MODEL
    # as from an interactive shell: a test run started in the background (`.ci/run &` from a script)
    # inherits SIGINT ignored, and Python then keeps it ignored in the child, so Ctrl-C never arrives
    p = subprocess.Popen([sys.executable, "-m", "bitlens", "export", "--model", MODEL, "--verify-images", "2000"],
                         cwd=REPO, env=_env(built), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert _wait_for(lambda: _export_staging(d), p), "export never staged"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "Traceback" not in err
    assert [l for l in err.splitlines() if l.startswith("error:")] == ["error: interrupted; nothing was published"]
    assert _state(built) == before and not list(d.glob(".staging-*")) and not _leftovers(built)


def _tool_pids(folder):
    """yosys processes working in `folder` (their cwd is the build's RTL folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and "yosys" in (d / "cmdline").read_text() and \
                    os.readlink(d / "cwd").startswith(str(folder)):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def test_kill9_during_hardware_build(built):
    """The build's hw/ is staged: killing hw.build while yosys runs leaves the previous hw/, and
    yosys dies with it (PR_SET_PDEATHSIG)."""
    before = _state(built)
    bd = Path(built) / MODEL / "ulx3s"
    p = subprocess.Popen([sys.executable, "-m", "bitlens", "build", "--model", MODEL, "--board", "ulx3s"],
                         cwd=REPO, env=_env(built), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: any(bd.glob(".staging-build-*/board/synth.ys")), p), "build never reached yosys"
        t0 = time.time()
        while not _tool_pids(bd) and time.time() - t0 < 30 and p.poll() is None:
            time.sleep(0.1)
        assert _tool_pids(bd), "yosys never started"
    finally:
        p.kill()                         # kill -9 of the parent only: the tool must follow it
        p.wait()
    assert _state(built) == before
    t0 = time.time()
    while _tool_pids(bd) and time.time() - t0 < 10:
        time.sleep(0.2)
    assert not _tool_pids(bd), "yosys outlived hw.build"


def _ensure_sim(built):
    """A published sim.json and hw/ of the tiny model (the prior state the simulation cases keep)."""
    if not (Path(built) / MODEL / "ulx3s" / "sim.json").is_file():      # Icarus: no model to compile
        r = _run(built, "sim", "--model", MODEL, "--images", "20", "--chunk", "20", "--simulator", "icarus")
        assert r.returncode == 0, r.stderr[-2000:]


def _sim_pids(folder):
    """Simulator processes working under `folder`: the Verilator C++ harness' binary (bl_stream)
    or Icarus' vvp running cocotb (their cwd is the run folder under <board>/sim/)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if d.name.isdigit() and Path(cmd).name in ("bl_stream", "vvp") and \
                    os.readlink(d / "cwd").startswith(str(folder)):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _published(root):
    """_state without the simulator's scratch folder (<board>/sim/: chunk files, compiled models)."""
    return {k: v for k, v in _state(root).items() if "/ulx3s/sim/" not in k}


# Verilator's C++ harness is slow-marked: its build costs ~40 s, and its progress lines alone would
# end it (SIGPIPE) soon after its parent; vvp under cocotb writes no pipe and needs the signal
@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_kill9_during_simulation(built, simulator):
    """kill -9 of sim.run while its simulator streams: the simulator dies with it (its parent-death
    signal), and the previous sim.json and hw/ stay as they were."""
    bd = Path(built) / MODEL / "ulx3s"
    _ensure_sim(built)
    before = _published(built)
    assert f"{MODEL}/ulx3s/sim.json" in before and any(k.startswith(f"{MODEL}/ulx3s/hw/") for k in before)
    # every image, with the source idle 15 cycles in 16: the stream outlasts the wait below
    p = subprocess.Popen([sys.executable, "-m", "bitlens", "sim", "--model", MODEL, "--images", "all", "--chunk", "20",
                          "--idle", "15", "--backpressure", "15", "--simulator", simulator],
                         cwd=REPO, env=_env(built), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _sim_pids(bd), p, timeout=300), "the simulator never started"
    finally:
        p.kill()                         # the parent alone: its simulator must follow it
        p.wait()
    t0 = time.time()
    while _sim_pids(bd) and time.time() - t0 < 10:
        time.sleep(0.2)
    assert not _sim_pids(bd), f"{simulator} outlived sim.run"
    assert _published(built) == before
    assert not [f for f in _leftovers(built) if "/ulx3s/sim/" not in f]


@contextlib.contextmanager
def _bad_disk(tmp_path, built, kind):
    """A copy of the built tiny model on its own tmpfs, then made read-only ("ro") or filled up
    ("full": not a byte left for file data). Mounting needs root; the case fails without it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (root needed): {r.stderr.strip()}"
    try:
        shutil.copytree(Path(built) / MODEL, mnt / MODEL, ignore=shutil.ignore_patterns("sim", ".staging-*"))
        if kind == "ro":
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        else:
            try:
                with open(mnt / "filler", "wb", buffering=0) as fh:
                    while True:
                        fh.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


SIM_ARGS = ["sim", "--model", MODEL, "--images", "5"]
EXPORT_ARGS = ["export", "--model", MODEL, "--verify-images", "5"]
DISK_WORDS = {"ro": "Read-only file system", "full": "No space left on device"}


# export's cases start torch and Brevitas (10-20 s each on a shared machine): slow-marked
@pytest.mark.parametrize("args,kind", [(SIM_ARGS, "ro"), (SIM_ARGS, "full"),
                                       pytest.param(EXPORT_ARGS, "ro", marks=pytest.mark.slow),
                                       pytest.param(EXPORT_ARGS, "full", marks=pytest.mark.slow)],
                         ids=["sim.run-ro", "sim.run-full", "export-ro", "export-full"])
def test_publish_on_a_read_only_or_full_disk(built, tmp_path, args, kind):
    """sim.run and model.export on a folder they cannot write: one line naming it and the cause, and the
    previous sim.json / hw/ / export exactly as they were, no temporary or staging file left."""
    _ensure_sim(built)
    with _bad_disk(tmp_path, built, kind) as root:
        before = _state(root)
        assert f"{MODEL}/ulx3s/sim.json" in before and f"{MODEL}/streamlined.onnx" in before
        r = _run(root, *args)
        _one_line(r, DISK_WORDS[kind])
        assert str(root) in r.stderr, r.stderr      # the folder it could not write is named
        assert _state(root) == before
        assert not _leftovers(root) and not list(Path(root).rglob(".staging-*"))
