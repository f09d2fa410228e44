"""Gradient-regularisation study (`python -m bitlens gradreg --model tfc-w1a1 [--lam 7.5e-3]`).

Trains the BNN and its full-precision twin twice on the same schedule (seed 0): plain, and with
the guided-gradient loss (explain.gradreg, `model.train.train(gradreg=...)`), into
build/gradreg/<model>/{plain,gradreg}/. The schedule is the zoo's own for MLPs (8 epochs on all
50k training images: the double backward pass took 4 s per 10k images for tfc-w1a1 here, 2 s
without it), and 1 epoch on the first 10k images for CNV, whose double backward through the
convolutions is far costlier; `--epochs/--limit` set it. Then it compares the two variants on
the same test images: test accuracy; how much the plain input gradient resembles guided backprop
(cosine and Spearman of the two maps); noise (total variation, high-frequency energy) and
faithfulness (deletion / insertion AUC) of the gradient maps, with 95 % intervals (bootstrap
over images) and paired Wilcoxon tests. The BNN is measured on its bit-exact reference
(streamlined here). Writes build/gradreg/<model>/study.json; the report shows it when present."""
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from explain import metrics as M
from explain.gradreg import guided_gradient_loss
from explain.methods import attribute
from explain.sources import Sources
from model import zoo
from model.export import export_qonnx_file
from model.reference import Reference
from model.streamline import streamline
from model.train import DEFAULTS, train

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
LAMBDA = 7.5e-3      # the paper's weight


def study_root(root=None):
    return Path(root or BUILD) / "gradreg"


def schedule(model):
    """(epochs, training images) both variants train for by default; None images: all."""
    kind = zoo.spec(model).kind
    return (DEFAULTS[kind]["epochs"], None) if kind == "mlp" else (1, 10000)


def _guided_loss(net, x, y):
    return guided_gradient_loss(net, x, y, net.activation_modules())


def _train_variant(name, lam, out, progress, epochs, limit):
    train(name, gradreg=lam, out=out, quiet=not progress, epochs=epochs, limit=limit, regulariser=_guided_loss)
    return out


def _load(name, out):
    ckpt = zoo.load_checkpoint(out / "model.pt", name)
    net = zoo.build(name, ckpt.get("dataset", "mnist"))
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def _reference_of(name, out):
    """Bit-exact reference of a BNN trained into `out` (its streamlined graph, made there first
    and again whenever the model was retrained)."""
    graph = out / "streamlined.onnx"
    if not graph.is_file() or graph.stat().st_mtime < (out / "model.pt").stat().st_mtime:   # retrained since
        export_qonnx_file(_load(name, out), out / "model.qonnx.onnx")
        tmp = out / "streamlined.tmp.onnx"
        streamline(out / "model.qonnx.onnx", name).save(str(tmp))
        os.replace(tmp, graph)
    return Reference(str(graph)).eval()


def _summary(values):
    m, lo, hi = M.bootstrap_ci(np.asarray(values, dtype=np.float64))     # over images
    return dict(mean=float(m), ci=[float(lo), float(hi)])


def measure(net, x, y, steps):
    grad = attribute("gradient", net, x, y)
    guided = attribute("guided_backprop", net, x, y)
    g, gb = grad.flatten(1).double(), guided.flatten(1).double()
    cos = torch.nn.functional.cosine_similarity(g, gb, dim=1, eps=1e-12).numpy()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    return dict(eval_accuracy=acc, cosine_gradient_vs_guided=cos, spearman_gradient_vs_guided=M.spearman(grad, guided),
                total_variation=M.total_variation(grad), high_frequency_energy=M.high_frequency_energy(grad),
                deletion_auc=M.deletion_auc(net, x, grad, y, steps=steps),
                insertion_auc=M.insertion_auc(net, x, grad, y, steps=steps))


def run(model, lam=LAMBDA, n_images=100, root=None, steps=28, progress=True, epochs=None, limit=None):
    """epochs/limit: the training schedule of both variants (each None: from schedule(model))."""
    default_epochs, default_limit = schedule(model)
    epochs, limit = epochs or default_epochs, limit or default_limit
    twin = zoo.twin_of(model)
    base_root, reg_root = Path(root or BUILD), study_root(root)
    t0 = time.time()
    x, y, _ = Sources(base_root).eval_data(model, n_images)
    doc = dict(model=model, twin=twin, lam=lam, images=n_images, epochs=epochs, train_images=limit or "all", kinds={})
    for kind, name in (("bnn", model), ("fp", twin)):
        outs = {v: _train_variant(name, lam if v == "gradreg" else 0.0, reg_root / name / v, progress, epochs, limit)
                for v in ("plain", "gradreg")}
        if kind == "bnn":
            plain, reg = (_reference_of(name, outs[v]) for v in ("plain", "gradreg"))
        else:
            plain, reg = (_load(name, outs[v]) for v in ("plain", "gradreg"))
        rows = {}
        for variant, net in (("plain", plain), ("gradreg", reg)):
            rows[variant] = measure(net, x, y, steps)
            acc = json.loads((outs[variant] / "train.json").read_text())
            rows[variant]["test_accuracy"] = acc.get("test_accuracy")
        k = dict(name=name, measured_on="bit-exact reference" if kind == "bnn" else "float model")
        for metric in ("cosine_gradient_vs_guided", "spearman_gradient_vs_guided", "total_variation",
                       "high_frequency_energy", "deletion_auc", "insertion_auc"):
            a, b = rows["plain"][metric], rows["gradreg"][metric]
            p, effect = M.wilcoxon(b, a)
            k[metric] = dict(plain=_summary(a), gradreg=_summary(b), p_wilcoxon=p, effect_gradreg_gt_plain=effect)
        for metric in ("test_accuracy", "eval_accuracy"):
            k[metric] = dict(plain=rows["plain"][metric], gradreg=rows["gradreg"][metric])
        doc["kinds"][kind] = k
    doc["seconds"] = round(time.time() - t0, 1)
    path = reg_root / model / "study.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return doc, path
