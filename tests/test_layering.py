"""The libraries import one way: model <- hw <- sim <- explain, and none of them imports the app
layer (bitlens), not even inside a function; and the Lattice build path imports no torch."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"model": 0, "hw": 1, "sim": 2, "explain": 3, "bitlens": 4}


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def upward_imports(root=ROOT):
    found = []
    for pkg, rank in RANK.items():
        for f in sorted((root / pkg).rglob("*.py")):
            for mod, line in _imports(f):
                top = mod.split(".")[0]
                if top in RANK and RANK[top] > rank:
                    found.append(f"{f.relative_to(root)}:{line} imports {mod}")
    return found


def test_libraries_import_downward_only():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    for pkg in RANK:
        (tmp_path / pkg).mkdir()
    (tmp_path / "hw" / "x.py").write_text("def f():\n    from explain.methods import attribute\n")
    assert upward_imports(tmp_path) == ["hw/x.py:2 imports explain.methods"]


def test_a_lattice_build_starts_without_torch():
    """hw.build (and with it the compiler) loads no torch: only golden data needs the torch-built
    reference, and a Lattice build computes none."""
    code = "import sys, hw.build; print(sorted(m for m in ('torch', 'model.reference') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
