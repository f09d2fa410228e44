"""Train a zoo model (`python -m bitlens train --model tfc-w1a1 [--epochs N] [--seed S]`).

Deterministic on CPU for a given seed; checkpoints every epoch to <out>/ckpt.pt and resumes from
it after an interruption; writes <out>/model.pt and <out>/train.json at the end.
"""
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from model import publish, zoo
from model import data as D

# Per-topology defaults that reach FINN's published accuracy or better on MNIST on 2 CPU cores.
DEFAULTS = {
    "mlp": dict(epochs=8, batch=100, lr_bin=1e-2, lr_fp=2e-3),
    "cnv": dict(epochs=1, batch=100, lr_bin=5e-3, lr_fp=1e-3),
}


def atomic_save(obj, path: Path):
    publish.atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_json(obj, path: Path):
    publish.atomic_json(path, obj)


def model_inputs(name, images, dataset="mnist"):
    """uint8 NHWC -> float NCHW at the model's input size."""
    return D.to_float(D.pad_images(images, zoo.input_size(name, dataset)))


@torch.no_grad()
def accuracy(net, x, y, batch=500):
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def clip_binary_weights(net):
    # BinaryConnect: latent weights outside [-1, 1] only stop moving the sign; keep them bounded
    import brevitas.nn as qnn
    for m in net.modules():
        if isinstance(m, (qnn.QuantLinear, qnn.QuantConv2d)) and m.weight_quant.bit_width() == 1:
            m.weight.data.clamp_(-1, 1)


def publish_weights(net, name, dataset, seed, out: Path):
    """Write model.pt and drop the export of the weights it replaces: a graph of other weights
    beside it would be simulated and explained as if it were this model."""
    atomic_save(dict(model=name, dataset=dataset, state_dict=net.state_dict(), seed=seed), out / "model.pt")
    for stale in ("model.qonnx.onnx", "streamlined.onnx", "verify.json"):
        (out / stale).unlink(missing_ok=True)


def import_checkpoint(name, path, dataset="mnist", seed=0, out=None, data_dir=None, quiet=False):
    """Weights the user already has (a state_dict, or a dict holding one under 'state_dict' or
    'model') become build/<model>/model.pt, with train.json giving the test accuracy."""
    path = Path(path)
    if not path.is_file():
        raise zoo.ModelError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise zoo.ModelError(f"{path}: not a readable weights_only checkpoint ({type(e).__name__})") from None
    if isinstance(obj, dict):
        obj = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise zoo.ModelError(f"{path}: holds no state_dict of tensors")
    net = zoo.build(name, dataset)
    try:
        net.load_state_dict(obj)
    except RuntimeError as e:
        raise zoo.ModelError(f"{path}: does not match {name}: {' '.join(str(e).split())[:300]}") from None
    out = Path(out) if out else zoo.model_dir(name, seed)
    out.mkdir(parents=True, exist_ok=True)
    xte, yte = D.load_split(dataset, "test", data_dir)
    test = accuracy(net, D.to_float(D.pad_images(xte, net.in_shape[1])), torch.from_numpy(yte))
    publish_weights(net, name, dataset, seed, out)
    result = dict(model=name, dataset=dataset, seed=seed, epochs=0, checkpoint=str(path),
                  checkpoint_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), test_accuracy=test)
    atomic_json(result, out / "train.json")
    if not quiet:
        print(f"{name}: imported {path}, test accuracy {test:.4f} -> {out / 'train.json'}")
    return result


def train(name, dataset="mnist", epochs=None, seed=0, out=None, batch=None, lr=None, gradreg=0.0,
          data_dir=None, force=False, threads=None, limit=None, quiet=False, ckpt_in=None, regulariser=None):
    """Train `name`; with gradreg > 0 the loss is CE + gradreg * regulariser(net, x, y) (the
    guided-gradient study passes its loss in: training knows no explanation method)."""
    if gradreg and regulariser is None:
        raise ValueError("gradreg > 0 needs a regulariser (the guided-gradient study, `make gradreg`, passes it)")
    sp = zoo.spec(name)
    if ckpt_in:
        return import_checkpoint(name, ckpt_in, dataset, seed, out, data_dir, quiet)
    torch.manual_seed(seed)
    np.random.seed(seed)
    net = zoo.build(name, dataset)
    d = DEFAULTS[sp.kind or zoo.kind_of(net)]
    epochs = d["epochs"] if epochs is None else epochs
    batch = d["batch"] if batch is None else batch
    lr = (d["lr_bin"] if sp.quantised else d["lr_fp"]) if lr is None else lr
    for what, v in (("--epochs", epochs), ("--batch", batch), ("--lr", lr)):
        if v <= 0:
            raise ValueError(f"{what} must be positive, got {v}")
    out = Path(out) if out else zoo.model_dir(name, seed)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(model=name, dataset=dataset, epochs=epochs, seed=seed, batch=batch, lr=lr,
                  gradreg=gradreg, limit=limit)
    done = out / "train.json"
    if done.is_file() and (out / "model.pt").is_file() and not force:
        prev = json.loads(done.read_text())
        if all(prev.get(k) == v for k, v in config.items()):
            if not quiet:
                print(f"{name}: already trained ({out}/train.json, test accuracy {prev['test_accuracy']:.4f}); --force retrains")
            return prev

    torch.use_deterministic_algorithms(True)
    if threads:
        torch.set_num_threads(threads)
    xtr, ytr = D.load_split(dataset, "train", data_dir)
    xva, yva = D.load_split(dataset, "val", data_dir)
    xte, yte = D.load_split(dataset, "test", data_dir)
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    xtr, xva, xte = (D.to_float(D.pad_images(a, net.in_shape[1])) for a in (xtr, xva, xte))
    ytr, yva, yte = (torch.from_numpy(a) for a in (ytr, yva, yte))

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = (len(xtr) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    start, history, seconds = 0, [], 0.0
    ckpt_path = out / "ckpt.pt"
    if ckpt_path.is_file() and not force:
        ckpt = zoo.load_checkpoint(ckpt_path, name)
        if ckpt.get("config") == config:
            net.load_state_dict(ckpt["state_dict"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            gen.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            start, history, seconds = ckpt["epoch"], ckpt["history"], ckpt["seconds"]
            if not quiet:
                print(f"{name}: resuming after epoch {start} from {ckpt_path}")
    lossf = nn.CrossEntropyLoss()
    for epoch in range(start, epochs):
        t0 = time.time()
        net.train()
        perm = torch.randperm(len(xtr), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"{name} epoch {epoch + 1}/{epochs}", disable=quiet,
                   leave=False, file=sys.stderr)
        running = 0.0
        for s in bar:
            idx = perm[s * batch:(s + 1) * batch]
            xb, yb = xtr[idx], ytr[idx]
            loss = lossf(net(xb), yb)
            if gradreg:
                loss = loss + gradreg * regulariser(net, xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if sp.quantised:
                clip_binary_weights(net)
            running = 0.98 * running + 0.02 * loss.item() if s else loss.item()
            if s % 20 == 0:
                bar.set_postfix(loss=f"{running:.3f}")
        val = accuracy(net, xva, yva)
        seconds += time.time() - t0
        history.append(dict(epoch=epoch + 1, loss=running, val_accuracy=val))
        if not quiet:
            print(f"{name} epoch {epoch + 1}/{epochs}: loss {running:.4f}, val accuracy {val:.4f} ({seconds:.0f} s)")
        atomic_save(dict(model=name, dataset=dataset, config=config, state_dict=net.state_dict(),
                         optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         generator=gen.get_state(), torch_rng=torch.get_rng_state(),
                         epoch=epoch + 1, history=history, seconds=seconds), ckpt_path)
    test = accuracy(net, xte, yte)
    publish_weights(net, name, dataset, seed, out)
    result = dict(config, test_accuracy=test, val_accuracy=history[-1]["val_accuracy"] if history else None,
                  seconds=round(seconds, 1), history=history, torch_threads=torch.get_num_threads())
    atomic_json(result, done)
    ckpt_path.unlink(missing_ok=True)
    if not quiet:
        print(f"{name}: test accuracy {test:.4f} -> {done}")
    return result
