"""Where a report's models and data come from: build/<model>[/seed<k>]/ and the test split.

A `Sources` is plain data (a build root and a dataset name), so it travels with every report
task to whatever process runs it; tests substitute a subclass with stand-in models.
"""
import json
from pathlib import Path

import numpy as np
import torch

from model import data as D
from model import reference, zoo
from model.train import model_inputs

ROOT = Path(__file__).resolve().parent.parent


class Sources:
    def __init__(self, root=None, dataset="mnist"):
        self.root = Path(root) if root else ROOT / "build"
        self.dataset = dataset

    def trained_dataset(self, name, seed):
        """The dataset a seed was trained on (its train.json), None when unknown."""
        try:
            return json.loads((zoo.model_dir(name, seed, self.root) / "train.json").read_text()).get("dataset", "mnist")
        except (OSError, ValueError):
            return None

    def seeds(self, name):
        return zoo.seeds(name, self.root)

    def load_trained(self, name, seed):
        return zoo.load_trained(name, seed, self.root)

    def load_reference(self, name, seed):
        """(module, how) or (None, reason)."""
        path = zoo.model_dir(name, seed, self.root) / "streamlined.onnx"
        if not path.is_file():
            shown = path.relative_to(self.root.parent) if path.is_relative_to(self.root.parent) else path
            return None, f"{shown} missing (run `make export MODEL={name}`)"
        return reference.Reference.load(path).eval(), "reference (load)"

    def eval_data(self, name, n, seed=0):
        """A fixed class-balanced subset of the test split: (x float NCHW, labels, uint8 NHWC)."""
        images, labels = D.load_split(self.dataset, "test")
        idx = balanced_indices(labels, n, seed)
        imgs = images[idx]
        x = model_inputs(name, imgs, self.dataset)
        size = x.shape[-1]
        if imgs.shape[1] != size:
            imgs = D.pad_images(imgs, size)
        return x, torch.as_tensor(labels[idx]), imgs

    def train_accuracy(self, name, seed):
        p = zoo.model_dir(name, seed, self.root) / "train.json"
        try:
            return json.loads(p.read_text()).get("test_accuracy")
        except (OSError, ValueError):
            return None


def balanced_indices(labels, n, seed=0):
    """n // classes test images of every class (at least one), class-interleaved."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per = max(1, n // len(classes))
    rng = np.random.default_rng(seed)
    idx = [np.sort(rng.permutation(np.where(labels == c)[0])[:per]) for c in classes]
    return np.stack(idx, 1).ravel() if len({len(i) for i in idx}) == 1 else np.concatenate(idx)
