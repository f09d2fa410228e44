"""A task's result cached under a hash of everything it depends on: build/cache/<task>/<key>.npz.

The key (`TaskCache.key`) is the SHA-256 of
- the task function's qualified name;
- a canonical form of its arguments (numbers, strings, lists, dicts with sorted keys; numpy
  arrays and torch tensors by dtype, shape and a hash of their bytes; a `pathlib.Path` argument
  by its name and the hash of its content, so a task reading a file may simply take its path);
- the content hashes of the files the task declares it reads (`@task(reads=...)`: model weights,
  streamlined graphs), a missing file hashing as "missing";
- the hash of the source of the code it runs: the file defining the task, and every .py file of
  the packages it declares (`@task(code=...)`, default the package holding the task). A code
  change there recomputes every task built on it, never a stale result; code outside them
  (installed libraries) is not in the key: after upgrading one, clear build/cache/.

Library functions are declared from the app layer with `declare(fn, ...)` (bitlens.report_tasks
declares explain.tasks), objects passed as arguments are keyed through `keyed(cls, plain)`.
A task may also declare the files it writes (`@task(writes=...)`): their hashes are stored with
the result, and a cached result whose files are gone or changed is computed again.

Results are stored as JSON (numbers, strings, lists, dicts, tuples) with numpy arrays beside it in
one .npz, read back with allow_pickle=False: nothing in the cache can run code. Every result goes
through that round trip, computed or cached, so a re-run returns exactly what the first run did.
Entries are published atomically (model.publish): a killed run leaves whole entries only.
"""
import hashlib
import inspect
import io
import json
from pathlib import Path

import numpy as np
import torch

from model import publish

ROOT = Path(__file__).resolve().parent.parent


class CacheError(ValueError):
    pass


_DECLARED = {}


def declare(fn, reads=None, writes=None, code=None):
    """Declare what a task function depends on and produces: reads(*args) and writes(*args) give
    file paths, code the packages (folder names under the project) whose source is in the key.
    The app layer declares library functions (explain.tasks) this way without the libraries
    knowing of the cache; returns fn."""
    _DECLARED[fn] = dict(reads=reads, writes=writes,
                         code=tuple(code) if code else (fn.__module__.split(".")[0],))
    return fn


def task(reads=None, writes=None, code=None):
    """declare() as a decorator, for the app layer's own tasks."""
    return lambda fn: declare(fn, reads, writes, code)


def declared(fn) -> dict:
    return _DECLARED.get(fn) or dict(reads=None, writes=None, code=(fn.__module__.split(".")[0],))


_KEYERS = {}


def keyed(cls, plain):
    """Key arguments of type cls (and subclasses) by plain(obj), a form canonical() takes, plus the
    class's name: e.g. explain.sources.Sources, plain data passed to every report task."""
    _KEYERS[cls] = plain


def file_hash(path) -> str:
    path = Path(path)
    if not path.is_file():
        return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_CODE = {}


def code_hash(fn) -> str:
    """Hash of the file defining fn and of every .py file of its declared packages (once per
    process: the code does not change under a running study)."""
    packages = declared(fn)["code"]
    key = (inspect.getsourcefile(fn), tuple(sorted(packages)))
    if key not in _CODE:
        h = hashlib.sha256()
        files = [Path(key[0])] + [f for pkg in key[1] for f in sorted((ROOT / pkg).rglob("*.py"))]
        for f in files:
            f = f.resolve()
            name = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f.name   # the same in any clone
            h.update(str(name).encode() + b"\0" + f.read_bytes() + b"\0")
        _CODE[key] = h.hexdigest()
    return _CODE[key]


def canonical(v):
    """A JSON-able form of an argument that is equal exactly when the arguments are."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return {"float": v.hex()}
    if isinstance(v, Path):
        return {"path": str(v), "sha256": file_hash(v)}
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.generic):
        v = np.asarray(v)
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            raise CacheError("cache key: numpy object arrays cannot be keyed")
        a = np.ascontiguousarray(v)
        return {"ndarray": str(a.dtype), "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    if isinstance(v, (list, tuple)):
        return {type(v).__name__: [canonical(x) for x in v]}
    if isinstance(v, (set, frozenset)):
        return {"set": sorted((canonical(x) for x in v), key=json.dumps)}
    if isinstance(v, dict):
        return {"dict": sorted(([canonical(k), canonical(x)] for k, x in v.items()), key=json.dumps)}
    for cls, plain in _KEYERS.items():
        if isinstance(v, cls):
            return {"object": f"{type(v).__module__}.{type(v).__qualname__}", "state": canonical(plain(v))}
    raise CacheError(f"cache key: an argument of type {type(v).__name__} cannot be keyed")


# --- results: JSON + arrays ------------------------------------------------------------------------

def _encode(v, arrays):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            raise CacheError("cache: a numpy object array cannot be stored")
        name = f"a{len(arrays)}"
        arrays[name] = v
        return {"__array__": name}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x, arrays) for x in v]}
    if isinstance(v, list):
        return [_encode(x, arrays) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in v):
            return {k: _encode(x, arrays) for k, x in v.items()}
        return {"__items__": [[_encode(k, arrays), _encode(x, arrays)] for k, x in v.items()]}
    raise CacheError(f"cache: a result of type {type(v).__name__} cannot be stored")


def _decode(v, arrays):
    if isinstance(v, list):
        return [_decode(x, arrays) for x in v]
    if isinstance(v, dict):
        if "__array__" in v:
            return arrays[v["__array__"]]
        if "__tuple__" in v:
            return tuple(_decode(x, arrays) for x in v["__tuple__"])
        if "__items__" in v:
            return {_decode(k, arrays): _decode(x, arrays) for k, x in v["__items__"]}
        return {k: _decode(x, arrays) for k, x in v.items()}
    return v


def to_bytes(entry) -> bytes:
    arrays = {}
    doc = json.dumps(_encode(entry, arrays))
    buf = io.BytesIO()
    np.savez(buf, __json__=np.frombuffer(doc.encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def from_bytes(data: bytes):
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays.pop("__json__").tobytes().decode())
    return _decode(doc, arrays)


class TaskCache:
    """build/cache/<task name>/<key>.npz; `hits` and `misses` count this process's lookups."""

    def __init__(self, root):
        self.root = Path(root)
        self.hits = self.misses = 0

    @staticmethod
    def name(fn) -> str:
        return f"{fn.__module__}.{fn.__qualname__}"

    def key(self, fn, args) -> str:
        reads = declared(fn)["reads"]
        doc = dict(task=self.name(fn), args=canonical(tuple(args)),
                   reads={str(p): file_hash(p) for p in (reads(*args) if reads else [])},
                   code=code_hash(fn))
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def path(self, fn, key) -> Path:
        return self.root / self.name(fn) / f"{key}.npz"

    def get(self, fn, key):
        """(True, result) when a valid entry exists, else (False, None)."""
        p = self.path(fn, key)
        try:
            entry = from_bytes(p.read_bytes())
        except FileNotFoundError:
            self.misses += 1
            return False, None
        except (OSError, ValueError, KeyError):   # a damaged entry is recomputed, not trusted
            p.unlink(missing_ok=True)
            self.misses += 1
            return False, None
        if any(file_hash(f) != h for f, h in entry["writes"].items()):
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry["result"]

    def put(self, fn, args, key, result):
        """Store result; returns it as every later lookup will (after the JSON/npz round trip)."""
        writes = declared(fn)["writes"]
        entry = dict(task=self.name(fn), result=result,
                     writes={str(p): file_hash(p) for p in (writes(*args) if writes else [])})
        data = to_bytes(entry)
        p = self.path(fn, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        publish.atomic_write(p, lambda tmp: Path(tmp).write_bytes(data))
        return from_bytes(data)["result"]
