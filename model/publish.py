"""Publishing results: the one place that writes files so a reader never sees half of them.

- `atomic_write(path, writer)` / `atomic_text` / `atomic_json`: one file, written beside its
  destination as `.<name>.tmp` and renamed over it (a kill leaves the old file, a failure leaves
  no temporary).
- `staging(dest_dir)`: a set of files and folders built in `dest_dir/.staging-<tag>-<pid>/` and
  published together only when the block ends without an exception. Publishing is a small
  journal: the staging folder is marked COMMIT, then each entry is renamed into place (a folder
  replacing a folder whole); a process killed in the middle of that leaves the marker, and
  `recover(dest_dir)` (run by the next reader through model.paths, and by the next staging)
  finishes the job. A staging folder without the marker is an abandoned build: removed once its
  process is gone. So a kill at any moment leaves either the previous complete state or the new
  complete one.
"""
import contextlib
import json
import os
import shutil
from pathlib import Path

MARK = "COMMIT"
PREFIX = ".staging-"


def atomic_write(path, writer):
    """writer(tmp_path) writes the content; it replaces `path` only if writer returns normally."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_text(path, text: str):
    return atomic_write(path, lambda t: Path(t).write_text(text))


def atomic_json(path, obj, indent=2):
    return atomic_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path, default=None):
    """A JSON file's content, or `default` when it is missing or not JSON (a file a reader may
    find absent or half-made by another tool, such as a build's optional reports)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _commit(stage: Path, dest: Path, drop=()):
    """Move every entry of `stage` into `dest` (idempotent: resumable after a kill)."""
    mark = stage / MARK
    if not mark.is_file():
        names = sorted(p.name for p in stage.iterdir() if p.name != ".trash")
        atomic_json(mark, dict(names=names, drop=list(drop)))
    todo = json.loads(mark.read_text())
    trash = stage / ".trash"
    trash.mkdir(exist_ok=True)
    for n in todo["drop"]:
        d = dest / n
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
        else:
            d.unlink(missing_ok=True)
    for n in todo["names"]:
        src, d = stage / n, dest / n
        if not os.path.lexists(src):
            continue                    # published before a kill
        if d.is_dir() and not d.is_symlink():
            os.replace(d, trash / n)    # a folder is swapped whole, not merged
        os.replace(src, d)
    shutil.rmtree(stage, ignore_errors=True)


def recover(dest_dir):
    """Finish publishing a marked staging folder of a dead process; remove unmarked ones."""
    dest = Path(dest_dir)
    try:
        stages = [p for p in dest.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return
    for st in stages:
        try:
            pid = int(st.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue                    # someone (maybe this process) is building there now
        try:
            if (st / MARK).is_file():
                _commit(st, dest)
            else:
                shutil.rmtree(st, ignore_errors=True)
        except OSError:
            pass                        # a read-only folder: readers still see a complete state


@contextlib.contextmanager
def staging(dest_dir, tag="build", drop=()):
    """Yield an empty staging folder inside dest_dir; on success publish all it holds into
    dest_dir (replacing files and whole folders of the same names) and remove the `drop` names;
    on any exception (Ctrl-C included) remove it and publish nothing."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    recover(dest)
    stage = dest / f"{PREFIX}{tag}-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _commit(stage, dest, drop)
