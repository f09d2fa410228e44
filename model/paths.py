"""Where a model's files live under build/: the one place that turns a model name into paths.

A name may be a zoo name (tfc-w1a1), FINN's zoo (bnn-pynq:tfc_1w1a) or a user's model file
(path/to/file.py:function), so the folder is a slug of it; the Makefile computes the same slug
with sed.
"""
import os
import re
from pathlib import Path

from model import publish

# BITLENS_BUILD moves the whole build tree (tests use a temporary one)
BUILD = Path(os.environ.get("BITLENS_BUILD") or Path(__file__).resolve().parent.parent / "build")


def slug(name: str) -> str:
    """The folder name of a model under build/ (a name may hold ':' and '/')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-") or "model"


def model_dir(name: str, seed: int = 0, root: Path | None = None) -> Path:
    """build/<model>/ holds the default seed 0; further seeds live in build/<model>/seed<k>/."""
    base = Path(root or BUILD) / slug(name)
    return base if seed == 0 else base / f"seed{seed}"


def board_dir(name: str, board: str, root: Path | None = None) -> Path:
    """build/<model>/<board>/: the hardware, simulation and report of a model on a board."""
    d = model_dir(name, 0, root) / str(board)
    publish.recover(d)          # a publish cut short by a kill is finished before anyone reads
    return d


def streamlined(name: str, seed: int = 0, root: Path | None = None) -> Path:
    """The streamlined graph, the contract every stage after export reads."""
    d = model_dir(name, seed, root)
    publish.recover(d)
    return d / "streamlined.onnx"
