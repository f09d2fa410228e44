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
