"""The study's tasks, each a plain function of JSON-able arguments run on a Dask worker and cached
by bitlens.cache: train one (model, dataset, seed), export + verify one BNN seed; explaining one
(dataset, topology) over its seeds runs the report's shard tasks (explain.tasks) the same way. Models live in a build folder per dataset (`root`), since a
model's folder does not name the dataset it was trained on."""
import math
from pathlib import Path

import numpy as np

from bitlens import report_tasks  # noqa: F401  (declares explain.tasks for the cache)
from bitlens.cache import task
from explain import report as R
from model import paths
from model.export import export as export_model
from model.train import train as train_model


def _trained(root, name, dataset, seed, *rest):
    d = paths.model_dir(name, seed, root)
    return [d / "model.pt", d / "train.json"]


@task(writes=_trained, code=("model",))
def train(root, name, dataset, seed, epochs, limit):
    r = train_model(name, dataset, epochs, seed, out=paths.model_dir(name, seed, root), limit=limit, quiet=True)
    return dict(model=name, dataset=dataset, seed=seed, test_accuracy=r["test_accuracy"], seconds=r.get("seconds"))


def _weights(root, name, dataset, seed, *rest):
    return [paths.model_dir(name, seed, root) / "model.pt"]


def _exported(root, name, dataset, seed, *rest):
    d = paths.model_dir(name, seed, root)
    return [d / "streamlined.onnx", d / "verify.json"]


@task(reads=_weights, writes=_exported, code=("model",))
def export(root, name, dataset, seed, verify_images):
    r = export_model(name, dataset, seed, verify_images, quiet=True, root=root)
    keep = ("images", "reference_vs_qonnx_equal", "reference_vs_brevitas_equal", "ties", "reference_accuracy")
    return dict(model=name, dataset=dataset, seed=seed, **{k: r[k] for k in keep})


class StudySources(R.Sources):
    """The report's sources restricted to the study's seeds (the folder may hold more)."""

    def __init__(self, root, dataset, seeds):
        super().__init__(root, dataset)
        self.only = set(seeds)

    def seeds(self, name):
        return [s for s in super().seeds(name) if s in self.only]


def plain(o):
    """numpy numbers as Python ones, nan and inf as None (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return plain(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def explain(root, model, twin, dataset, seeds, images, methods, options, mapper, sources=StudySources):
    """explain.report.compute for one (dataset, topology), its shard tasks run through `mapper`
    (bitlens.report_tasks declares them for the cache), reduced to what the study shows."""
    res = R.compute(model, sources(Path(root), dataset, seeds), images, list(methods), options,
                    sanity_images=min(20, images), progress=False, twin=twin, mapper=mapper)
    # no wall times: study.json is the same for the same inputs (run.json has the run's time)
    keep = ("model", "twin", "dataset", "n_images", "methods", "compared", "models", "accuracy", "skipped", "findings")
    return plain({k: res[k] for k in keep} | dict(notes=res.get("notes", [])))
