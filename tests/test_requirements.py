"""requirements.txt is the lock of requirements.in (`make lock`), and .venv holds what it pins."""
import importlib.metadata as md
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        m = re.match(r"([A-Za-z0-9_.-]+)\s*==\s*([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_installed_versions_are_the_locked_ones():
    wrong = []
    for name, version in _pins(ROOT / "requirements.txt").items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = None
        if have != version:
            wrong.append(f"{name}: locked {version}, installed {have}")
    assert wrong == [], "run `make setup` (or `make lock` after editing requirements.in)"


def test_every_direct_dependency_is_locked_at_its_pin():
    lock = _pins(ROOT / "requirements.txt")
    direct = ROOT / "requirements.in"
    names = [_norm(re.split(r"[\s=<>!~;\[]", l.split("#")[0].strip())[0])
             for l in direct.read_text().splitlines() if l.split("#")[0].strip()]
    assert names and all(n in lock for n in names), [n for n in names if n not in lock]
    assert all(lock[n] == v for n, v in _pins(direct).items())
    assert "torch" not in lock          # installed apart (the CPU build), see the Makefile
