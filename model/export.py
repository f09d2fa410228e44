"""Export, streamline and verify (`python -m bitlens export --model tfc-w1a1 [--verify-images N]`).

Writes build/<model>/model.qonnx.onnx (Brevitas QONNX export, dynamo=False as FINN needs),
build/<model>/streamlined.onnx (the integer graph every consumer reads) and
build/<model>/verify.json: the bit-exact reference against qonnx execution of the streamlined
graph (every integer output must agree) and against the Brevitas float model (disagreements are
counted and must all sit at threshold ties).
"""
import contextlib
import hashlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from tqdm import tqdm

from model import publish, zoo
from model import data as D
from model.reference import Reference
from model.streamline import StreamlineError, streamline, with_batch

TIE_TOL = 1e-3


def export_qonnx_file(net, path: Path):
    from brevitas.export import export_qonnx   # deferred: Brevitas takes seconds to import (see model.zoo)
    try:
        export_qonnx(net.eval(), torch.zeros(1, *net.in_shape), str(path), dynamo=False)
    except OSError as e:
        if not e.filename:      # torch's exporter writes the file without naming it (disk full)
            e.filename = str(path)
        raise


def _qonnx_one_by_one(args):
    path, images = args
    g = ModelWrapper(path)
    return np.concatenate([execute_onnx(g, {"global_in": im[None].astype(np.float32)},
                                        return_full_exec_context=True)["acc_out"] for im in images])


@contextlib.contextmanager
def _env(**values):
    """Set environment variables for a block (and for processes started inside it)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# qonnx rounds every integer-annotated tensor before and after each node and checks the rounding
# error with a Python-level max() over the tensor: ~90 % of a CNV image's execution time. The
# streamlined graph holds exact integers, so the rounding is a no-op; without it the comparison
# with the reference is, if anything, stricter (nothing is rounded into agreement).
UNSANITIZED = dict(SANITIZE_QUANT_TENSORS="0")
# one BLAS thread per worker process: several multi-threaded BLAS pools on 2 cores spin against
# each other (measured: 2.5 CNV images/s forked with default threads, 20 spawned with one)
ONE_THREAD = dict(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def qonnx_accumulators(graph, images, batch=100, quiet=False, jobs=None):
    """Run the streamlined graph with qonnx's execute_onnx; returns acc_out (N, classes)."""
    with _env(**UNSANITIZED):
        return _qonnx_accumulators(graph, images, batch, quiet, jobs)


def _qonnx_accumulators(graph, images, batch, quiet, jobs):
    if any(n.op_type == "Im2Col" for n in graph.graph.node):
        # qonnx's Im2Col only executes batch 1 correctly (it interleaves images otherwise):
        # one image per call (~0.09 s for CNV), spread over all cores
        return _qonnx_parallel(graph, images, quiet, jobs or os.cpu_count() or 1)
    batched = {}
    out = []
    for i in tqdm(range(0, len(images), batch), desc="qonnx execute_onnx", disable=quiet, file=sys.stderr):
        xb = images[i:i + batch].astype(np.float32)
        g = batched.setdefault(len(xb), with_batch(graph, len(xb)) if len(xb) != 1 else graph)
        out.append(execute_onnx(g, {"global_in": xb}, return_full_exec_context=True)["acc_out"])
    return np.rint(np.concatenate(out)).astype(np.int64)


def _qonnx_parallel(graph, images, quiet, jobs, chunk=20):
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "g.onnx")
        graph.save(path)
        parts = [(path, images[i:i + chunk]) for i in range(0, len(images), chunk)]
        bar = tqdm(total=len(images), desc=f"qonnx execute_onnx ({jobs} processes)", unit="img",
                   disable=quiet, file=sys.stderr)
        # spawned (not forked) workers read the thread limits when they load numpy
        with _env(**ONE_THREAD), mp.get_context("spawn").Pool(jobs) as pool:
            out = []
            for r in pool.imap(_qonnx_one_by_one, parts):
                out.append(r)
                bar.update(len(r))
        bar.close()
    return np.rint(np.concatenate(out)).astype(np.int64)


@torch.no_grad()
def brevitas_logits(net, x, batch=500):
    return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


def export(name, dataset=None, seed=0, verify_images=None, data_dir=None, quiet=False, root=None):
    """dataset: the one the checkpoint was trained on (default); another one is an error. root:
    the build folder holding the model (default build/; a study keeps one per dataset)."""
    out = zoo.model_dir(name, seed, root)
    if not zoo.spec(name).quantised:
        raise zoo.ModelError(f"{name} is a full-precision twin: there is nothing to streamline (export its BNN)")
    trained_on = zoo.load_checkpoint(out / "model.pt", name).get("dataset", "mnist")
    if dataset is not None and dataset != trained_on:
        raise zoo.ModelError(f"{out / 'model.pt'}: trained on {trained_on}, not {dataset} "
                             f"(DATASET={trained_on}, or retrain with FORCE=1 DATASET={dataset})")
    dataset = trained_on
    net = zoo.load_trained(name, seed, root)
    images, labels = D.load_split(dataset, "test", data_dir)    # a data error stops before any work
    # model.qonnx.onnx, streamlined.onnx and verify.json are built in a staging folder and
    # published together only once the reference equals qonnx on every image: a failed or killed
    # export leaves the previous verified pair (model.publish)
    with publish.staging(out, "export") as stage:
        result = _export_into(stage, net, name, dataset, seed, images, labels, verify_images, quiet)
    if not quiet:
        print(f"{name}: published {out / 'model.qonnx.onnx'}, {out / 'streamlined.onnx'} and {out / 'verify.json'}")
    return result


def _export_into(out, net, name, dataset, seed, images, labels, verify_images, quiet):
    t0 = time.time()
    qpath, spath = out / "model.qonnx.onnx", out / "streamlined.onnx"
    export_qonnx_file(net, qpath)
    graph = streamline(qpath, name, dataset)
    graph.save(str(spath))
    if not quiet:
        print(f"{name}: streamlined ({sum(1 for _ in graph.graph.node)} nodes); verifying")

    if verify_images:
        images, labels = images[:verify_images], labels[:verify_images]
    images = D.pad_images(images, net.in_shape[1])
    ref = Reference(graph)
    t1 = time.time()
    acc_ref = ref.predict_int(images)
    ref_seconds = time.time() - t1
    acc_qonnx = qonnx_accumulators(graph, images, quiet=quiet)
    qonnx_equal = (acc_ref == acc_qonnx).all(1)

    x = D.to_float(images)
    logits_b = brevitas_logits(net, x)
    logits_r = ref.logits_from_acc(acc_ref)
    # Brevitas' float logits imply its integer accumulators; equal means every class's equal
    acc_b = np.rint((logits_b - ref.out_bias.numpy()) / ref.out_scale.numpy()).astype(np.int64)
    brevitas_equal = (acc_b == acc_ref).all(1)
    margin = ref.tie_margin(images)
    ties = margin < TIE_TOL
    unexplained = int((~brevitas_equal & ~ties).sum())
    result = dict(
        model=name, dataset=dataset, seed=seed, images=int(len(images)),
        reference_vs_qonnx_equal=int(qonnx_equal.sum()),
        reference_vs_brevitas_equal=int(brevitas_equal.sum()),
        ties=int(ties.sum()),
        brevitas_disagreements=int((~brevitas_equal).sum()),
        brevitas_disagreements_at_ties=int((~brevitas_equal & ties).sum()),
        brevitas_disagreements_unexplained=unexplained,
        tie_tolerance_acc_units=TIE_TOL,
        reference_accuracy=float((logits_r.argmax(1) == labels).mean()),
        brevitas_accuracy=float((logits_b.argmax(1) == labels).mean()),
        argmax_agreement=int((logits_r.argmax(1) == logits_b.argmax(1)).sum()),
        reference_seconds=round(ref_seconds, 3),
        seconds=round(time.time() - t0, 1),
    )
    if not quiet:
        print(f"{name}: reference == qonnx on {result['reference_vs_qonnx_equal']}/{len(images)} images, "
              f"== Brevitas on {result['reference_vs_brevitas_equal']} ({result['ties']} ties, "
              f"{unexplained} unexplained); accuracy {result['reference_accuracy']:.4f}")
    if result["reference_vs_qonnx_equal"] != len(images):
        raise StreamlineError(f"{name}: reference and qonnx disagree on {len(images) - result['reference_vs_qonnx_equal']} "
                              f"images; nothing published")
    result["streamlined_sha256"] = hashlib.sha256(spath.read_bytes()).hexdigest()
    publish.atomic_json(out / "verify.json", result)
    return result
