"""The libraries import one way: model <- hw <- sim <- explain, and none of them imports the app
layer (bitlens), not even inside a function; they carry no command line (argparse, `__main__`),
which is the app layer's (bitlens/cli); and the Lattice build path imports no torch."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"model": 0, "hw": 1, "sim": 2, "explain": 3, "bitlens": 4}
LIBRARIES = [pkg for pkg in RANK if pkg != "bitlens"]
# library files that are a program of their own, and why
ENTRY_POINTS = {
    "hw/finn_steps.py": "runs under .venv-finn's interpreter (finn-plus' pins clash with .venv's), where "
                        "neither the app layer nor the other libraries can be imported",
}
# project modules imported inside a function, on purpose (the comment there says why)
DEFERRED = {
    "model/golden.py": {"model.reference"},     # torch, which a Lattice build never needs
}


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


def _is_main_block(node):
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def command_lines(root=ROOT):
    """Library files with an argparse import or a `__main__` block (entry points excepted)."""
    found = []
    for pkg in LIBRARIES:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = str(f.relative_to(root))
            if rel in ENTRY_POINTS:
                continue
            tree = ast.parse(f.read_text())
            if any(mod.split(".")[0] == "argparse" for mod, _ in _imports(f)):
                found.append(f"{rel} imports argparse")
            if any(_is_main_block(n) for n in tree.body):
                found.append(f"{rel} has a __main__ block")
    return found


def local_project_imports(root=ROOT):
    """Project modules imported inside a function, beyond the documented deferrals."""
    found = []
    for pkg in RANK:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = str(f.relative_to(root))
            for fn in ast.walk(ast.parse(f.read_text())):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for n in ast.walk(fn):
                    mods = ([a.name for a in n.names] if isinstance(n, ast.Import) else
                            [n.module] if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 else [])
                    for mod in mods:
                        if mod.split(".")[0] in RANK and mod not in DEFERRED.get(rel, ()):
                            found.append(f"{rel}:{n.lineno} imports {mod} inside {fn.name}")
    return found


def test_libraries_carry_no_command_line():
    assert command_lines() == []


def test_no_project_import_inside_a_function():
    assert sorted(set(local_project_imports())) == []


def test_the_checks_see_a_command_line_and_a_local_import(tmp_path):
    for pkg in RANK:
        (tmp_path / pkg).mkdir()
    (tmp_path / "sim" / "x.py").write_text("import argparse\n\ndef f():\n    import model.zoo\n\n"
                                           "if __name__ == '__main__':\n    f()\n")
    (tmp_path / "hw" / "finn_steps.py").write_text("import argparse\nif __name__ == '__main__':\n    pass\n")
    assert command_lines(tmp_path) == ["sim/x.py imports argparse", "sim/x.py has a __main__ block"]
    assert local_project_imports(tmp_path) == ["sim/x.py:4 imports model.zoo inside f"]


def test_the_finn_entry_point_imports_nothing_of_bitlens():
    """hw/finn_steps.py runs in .venv-finn, which has none of the project's packages."""
    assert [m for m, _ in _imports(ROOT / "hw" / "finn_steps.py") if m.split(".")[0] in RANK] == []
