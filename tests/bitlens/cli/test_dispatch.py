"""`python -m bitlens <command>`: every command is reachable, an unknown one is one line, and the
libraries carry no command of their own."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bitlens.cli import COMMANDS, dispatch

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_main(name):
    assert callable(importlib.import_module(COMMANDS[name][0]).main)


def test_unknown_or_missing_command(capsys):
    assert dispatch(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: unknown command 'nosuch'; known: {', '.join(COMMANDS)}"]
    assert dispatch([]) == 2 and "usage: python -m bitlens <command>" in capsys.readouterr().err
    assert dispatch(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {n} " in out for n in COMMANDS)


def test_twin_through_the_module(capsys):
    r = subprocess.run([sys.executable, "-m", "bitlens", "twin", "tfc-w1a1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, "tfc-fp\n")
    r = subprocess.run([sys.executable, "-m", "bitlens", "twin", "nope-w1a1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown model 'nope-w1a1'")
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


@pytest.mark.parametrize("module,argv", [
    ("bitlens.interop", ["--fc-images", "0"]),
    ("bitlens.hw_occlusion", ["--model", "tfc-w1a1", "--images", "0"]),
    ("bitlens.bench.explain", ["--threads", "x"]),
    ("bitlens.cli.gradreg", ["--lam", "-1"]),
    ("bitlens.cli.finn_check", ["--model", "tfc-w1a1", "--images", "0"]),
    ("bitlens.cli.host", ["--model", "tfc-w1a1", "--images", "0"]),
])
def test_bad_counts_stop_in_one_usage_line(module, argv, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: argument --")


def test_an_unknown_interop_config_is_one_line(capsys):
    assert importlib.import_module("bitlens.interop").main(["--models", "tfc_9w9a"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: --models: unknown bnn_pynq config 'tfc_9w9a'; known: "
                                        f"{', '.join(importlib.import_module('bitlens.interop').FINN_ZOO)}"]
