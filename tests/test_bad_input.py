"""Bad input and interruptions, tried through the CLIs as a user would (issue 12, Reliability).

Every case asserts: exit code != 0, exactly one message line on stderr naming the option or file
and the cause, no traceback, no temporary or staging file left, and the prior artifacts (a
trained, exported and compiled tiny model in a temporary BITLENS_BUILD) unchanged. Two cases
kill -9 the export and the hardware build mid-way and check the previous published state.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = "tfc-w1a1"


def _env(root):
    return dict(os.environ, BITLENS_BUILD=str(root), PYTHONWARNINGS="ignore", BITLENS_VERBOSE="")


def _run(root, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=_env(root), capture_output=True,
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
    r = _run(root, "model.train", "--model", MODEL, "--epochs", "1", "--limit", "200")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(root, "model.export", "--model", MODEL, "--verify-images", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(root, "hw.compile", "--model", MODEL, "--board", "ulx3s")
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
    (["model.train", "--epochs", "0"], "--epochs"),
    (["model.train", "--epochs", "abc"], "--epochs"),
    (["model.train", "--batch", "-3"], "--batch"),
    (["model.train", "--lr", "0"], "--lr"),
    (["model.train", "--lr", "fast"], "--lr"),
    (["model.train", "--limit", "0"], "--limit"),
    (["model.train", "--seed", "-1"], "--seed"),
    (["model.train", "--model", "nosuch-net"], "nosuch-net"),
    (["model.train", "--ckpt", "/nonexistent/w.pt"], "/nonexistent/w.pt"),
    (["model.export", "--verify-images", "0"], "--verify-images"),
    (["model.export", "--verify-images", "abc"], "--verify-images"),
    (["model.export", "--seed", "x"], "--seed"),
    (["model.export", "--seed", "7"], "model.pt"),
    (["model.export", "--dataset", "cifar10"], "trained on"),
    (["hw.compile", "--model", MODEL, "--folding", "/nonexistent.json"], "/nonexistent.json"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/notjson.json"], "not JSON"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/list.json"], "list.json"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/entry_str.json"], "MVAU_0"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/pe_str.json"], "MVAU_0.PE"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/pe_zero.json"], "MVAU_0.PE"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/simd_bool.json"], "MVAU_0.SIMD"),
    (["hw.compile", "--model", MODEL, "--folding", "{d}/unknown.json"], "MVAU_99"),
    (["hw.compile", "--model", MODEL, "--target-fps", "0"], "--target-fps"),
    (["hw.compile", "--model", MODEL, "--target-fps", "abc"], "--target-fps"),
    (["hw.compile", "--model", MODEL, "--board", "nosuch-board"], "nosuch-board"),
    (["hw.compile", "--model", "nosuch-net"], "streamlined"),
    (["hw.compile", "--model", MODEL, "--graph", "{d}/bad.onnx"], "bad.onnx"),
    (["hw.compile", "--model", MODEL, "--out", "/proc/bitlens-hw"], "/proc"),
    (["hw.build", "--model", MODEL, "--baud", "abc"], "--baud"),
    (["hw.build", "--model", MODEL, "--freq", "-5"], "--freq"),
    (["hw.build", "--model", MODEL, "--board", "nosuch-board"], "nosuch-board"),
    (["hw.build", "--model", "nosuch-net"], "streamlined"),
    (["hw.build", "--model", MODEL, "--folding", "{d}/pe_str.json"], "MVAU_0.PE"),
    (["sim.run", "--model", MODEL, "--images", "abc"], "--images"),
    (["sim.run", "--model", MODEL, "--images", "0"], "--images"),
    (["sim.run", "--model", MODEL, "--idle", "20"], "--idle"),
    (["sim.run", "--model", MODEL, "--chunk", "0"], "--chunk"),
    (["sim.run", "--model", MODEL, "--harness", "slow"], "--harness"),
    (["sim.run", "--model", "nosuch-net"], "streamlined"),
    (["sim.run", "--model", MODEL, "--folding", "{d}/entry_str.json"], "MVAU_0"),
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


def _pair_consistent(root):
    d = Path(root) / MODEL
    v = json.loads((d / "verify.json").read_text())
    return v["streamlined_sha256"] == hashlib.sha256((d / "streamlined.onnx").read_bytes()).hexdigest()


def test_kill9_during_export(built):
    before = _state(built)
    assert _pair_consistent(built)
    d = Path(built) / MODEL
    p = subprocess.Popen([sys.executable, "-m", "model.export", "--model", MODEL, "--verify-images", "2000"],
                         cwd=REPO, env=_env(built), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        assert _wait_for(lambda: any(d.glob(".staging-export-*/streamlined.onnx")), p), "export never staged"
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
    p = subprocess.Popen([sys.executable, "-m", "model.export", "--model", MODEL, "--verify-images", "2000"],
                         cwd=REPO, env=_env(built), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: any(d.glob(".staging-export-*/streamlined.onnx")), p), "export never staged"
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
    p = subprocess.Popen([sys.executable, "-m", "hw.build", "--model", MODEL, "--board", "ulx3s"],
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
