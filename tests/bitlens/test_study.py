"""make study's machinery: the task cache's key and store, and a small study on a LocalCluster
with stand-in tasks (tiny models and data) whose cached re-run computes nothing."""
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bitlens import study as S
from bitlens.cache import CacheError, TaskCache, from_bytes, task, to_bytes
from bitlens.cluster import Cluster, TaskError, cached_mapper
from bitlens.study_tasks import plain
from explain import tasks as T
from model import paths
from tests.explain.standins import OPTS, StandIns

# --- stand-in tasks: files like the real ones, explanations of tiny models on tiny images -------


def _log(root, what):
    # every executed call appends a line (O_APPEND: whole lines from concurrent workers)
    with open(Path(root).parents[2] / "calls.log", "a") as f:
        f.write(what + "\n")


def _weights(root, name, dataset, seed, *rest):
    return [paths.model_dir(name, seed, root) / "model.pt"]


@task(writes=_weights)
def fake_train(root, name, dataset, seed, epochs, limit):
    _log(root, f"train {dataset} {name} {seed}")
    d = paths.model_dir(name, seed, root)
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.pt").write_text(f"{name} {dataset} {seed} {epochs}")
    (d / "train.json").write_text(json.dumps(dict(dataset=dataset, test_accuracy=0.5)))
    return dict(model=name, seed=seed)


@task(reads=_weights)
def fake_export(root, name, dataset, seed, verify):
    _log(root, f"export {dataset} {name} {seed}")
    d = paths.model_dir(name, seed, root)
    (d / "streamlined.onnx").write_bytes(hashlib.sha256((d / "model.pt").read_bytes()).digest())
    return dict(model=name, seed=seed, images=verify)


def study_standins(root, dataset, seeds):
    """The study's Sources for stand-in models: the report's real shard tasks run on them."""
    return StandIns(root, conv=None, dataset=dataset)


@task()
def fake_broken(x):
    raise ValueError(f"no model {x}")


TASKS = SimpleNamespace(train=fake_train, export=fake_export, sources=study_standins)
METHODS = ["gradient", "smoothgrad", "gradcam"]


def _calls(tmp_path):
    p = tmp_path / "calls.log"
    return p.read_text().splitlines() if p.is_file() else []


def _study(tmp_path, cluster, seeds=(0, 1)):
    cache = TaskCache(tmp_path / "cache")
    doc = S.run(["mnist", "fashion-mnist"], ["tfc", "cnv"], list(seeds), images=10, methods=METHODS,
                root=tmp_path / "study", mapper=cached_mapper(cluster, cache, progress=False), tasks=TASKS,
                options=OPTS)
    S.publish_study(doc, dict(seconds=0, computed=cache.misses, from_cache=cache.hits, scheduler="test"),
                    tmp_path / "study")
    return doc, cache


def test_study_on_a_local_cluster_and_its_cached_rerun_computes_nothing(tmp_path):
    with Cluster(workers=2) as cluster:
        doc, cache = _study(tmp_path, cluster)
        first = (tmp_path / "study" / "study.json").read_text()
        calls = _calls(tmp_path)
        # 2 datasets x 2 topologies: 16 trainings (BNN and twin, 2 seeds), 8 exports, then the
        # report's shard tasks of 4 explanations (nets x methods x shards, scores, sanity, final layer)
        assert len(calls) == 24 and len(set(calls)) == 24
        shard_tasks = cache.misses - 24
        assert shard_tasks >= 4 * (4 * len(METHODS) + 4)
        entries = list((tmp_path / "cache").glob("*/*.npz"))
        # every computed task stored once (the stand-ins' maps do not depend on the dataset, so
        # the two datasets' similarity tasks have equal inputs: found in the cache, not computed)
        assert len(entries) == cache.misses
        by_task = {p.parent.name.rsplit(".", 1)[-1] for p in entries}
        assert {"attribution_task", "score_task", "sanity_task", "similarity_task", "final_layer_task"} <= by_task
        assert cluster.started
        rows = doc["rows"]
        assert len(rows) == 2 * 2 * 3
        assert {(r["finding"], r["dataset"], r["topology"]) for r in rows} == {
            (f, d, t) for f in ("gradient_similar", "smoothgrad_noisier", "gradcam_differs")
            for d in ("mnist", "fashion-mnist") for t in ("tfc", "cnv")}
        for r in rows:
            assert r["model"] == f"{r['topology']}-w1a1" and r["twin"] == f"{r['topology']}-fp" and r["claim"]
            assert r["verdict"] in ("supported", "not supported", "not applicable", "undetermined (one FP seed: no ceiling)")
        mlp_gradcam = [r for r in rows if r["finding"] == "gradcam_differs" and r["topology"] == "tfc"]
        assert all(r["verdict"] == "not applicable" and r["reason"] for r in mlp_gradcam)
        sim = next(r for r in rows if r["finding"] == "gradient_similar" and r["topology"] == "cnv")
        assert len(sim["ci"]) == 2 and sim["ci"][0] <= sim["numbers"]["spearman_bnn_vs_fp"] <= sim["ci"][1]
        assert "fashion-mnist" in (tmp_path / "study" / "index.html").read_text()

        # nothing changed: every task from the cache, no cluster started, the same study.json
        with Cluster(workers=2) as idle:
            _, again = _study(tmp_path, idle)
            assert not idle.started
        assert (again.misses, again.hits) == (0, cache.misses + cache.hits) and _calls(tmp_path) == calls
        assert (tmp_path / "study" / "study.json").read_text() == first

        # an interrupted study: a lost shard and a deleted model are computed again, nothing else (the
        # retrained model has the same content, so the shards reading it stay valid)
        (tmp_path / "study" / "models" / "mnist" / "tfc-fp" / "seed1" / "model.pt").unlink()
        shards = sorted((tmp_path / "cache").glob("*attribution_task/*.npz"))
        shards[0].unlink()
        _, third = _study(tmp_path, cluster)
        new = _calls(tmp_path)[len(calls):]
        assert third.misses == 2 and new == ["train mnist tfc-fp 1"]
        assert (tmp_path / "study" / "study.json").read_text() == first


        # a failing task stops the run naming the task, its arguments and the cause; nothing cached
        with pytest.raises(TaskError, match=r"task fake_broken\(7,\) failed: no model 7"):
            cached_mapper(cluster, TaskCache(tmp_path / "cache"), progress=False)(fake_broken, [(7,)])
        assert not list((tmp_path / "cache").glob("*fake_broken*/*"))


def test_a_report_shard_is_keyed_by_its_own_net_files(tmp_path):
    sources = StandIns(tmp_path, conv=False)
    for name, seed in (("tfc-w1a1", 0), ("tfc-w1a1", 1), ("tfc-fp", 1)):
        d = paths.model_dir(name, seed, tmp_path)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.pt").write_text("v1")
    cache = TaskCache(tmp_path / "cache")
    args = (sources, "tfc-w1a1", "bnn", "tfc-w1a1", 1, "gradient", 10, 0, 10, OPTS)
    k = cache.key(T.attribution_task, args)
    (paths.model_dir("tfc-fp", 1, tmp_path) / "model.pt").write_text("v2")        # another net
    (paths.model_dir("tfc-w1a1", 0, tmp_path) / "model.pt").write_text("v2")      # another seed
    assert cache.key(T.attribution_task, args) == k
    (paths.model_dir("tfc-w1a1", 1, tmp_path) / "streamlined.onnx").write_text("graph")
    k2 = cache.key(T.attribution_task, args)
    assert k2 != k                                                     # its reference graph
    (paths.model_dir("tfc-w1a1", 1, tmp_path) / "model.pt").write_text("v2")
    assert cache.key(T.attribution_task, args) not in (k, k2)          # its weights
    other = StandIns(tmp_path, conv=False, dataset="fashion-mnist")
    assert cache.key(T.attribution_task, (other,) + args[1:]) != cache.key(T.attribution_task, args)


def test_cache_key_follows_the_files_a_task_reads(tmp_path):
    weights = tmp_path / "m" / "tfc-w1a1" / "model.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights v1")
    cache = TaskCache(tmp_path / "cache")
    args = (str(tmp_path / "m"), "tfc-w1a1", "mnist", 0, 100)
    k1 = cache.key(fake_export, args)
    assert cache.key(fake_export, args) == k1                         # deterministic
    weights.write_bytes(b"weights v2")
    k2 = cache.key(fake_export, args)
    assert k2 != k1                                                   # a changed input file
    assert cache.key(fake_export, args[:-1] + (101,)) != k2          # a changed argument
    assert cache.key(fake_train, args) != k2                          # another task
    weights.unlink()
    assert cache.key(fake_export, args) not in (k1, k2)               # a missing input file
    # a Path argument is keyed by its content
    other = tmp_path / "x.bin"
    other.write_bytes(b"1")
    ka = cache.key(fake_train, (other,))
    other.write_bytes(b"2")
    assert cache.key(fake_train, (other,)) != ka
    with pytest.raises(CacheError, match="object cannot be keyed"):
        cache.key(fake_train, (object(),))


def test_cache_entry_round_trip_and_written_files_checked(tmp_path):
    value = dict(a=np.arange(6, dtype=np.int16).reshape(2, 3), t=(1, 2.5, None), k={0: "zero", 1: [np.float32(0.5)]},
                 s="text", n=float("nan"))
    back = from_bytes(to_bytes(value))
    assert back["a"].dtype == np.int16 and (back["a"] == value["a"]).all()
    assert back["t"] == (1, 2.5, None) and back["k"] == {0: "zero", 1: [0.5]} and np.isnan(back["n"])
    with pytest.raises(CacheError, match="object array"):
        to_bytes(np.array([object()]))
    # a stored result is reused only while the files its task wrote are unchanged
    cache = TaskCache(tmp_path / "cache")
    root = tmp_path / "study" / "models" / "mnist"
    args = (str(root), "tfc-w1a1", "mnist", 0, 1, None)
    key = cache.key(fake_train, args)
    stored = cache.put(fake_train, args, key, fake_train(*args))
    assert cache.get(fake_train, key) == (True, stored)
    (root / "tfc-w1a1" / "model.pt").write_text("someone else's weights")
    assert cache.get(fake_train, key) == (False, None)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cli_rejects_bad_arguments_in_one_line(capsys):
    for argv, msg in ((["--datasets", "mnist", "nope"], "unknown dataset 'nope'"),
                      (["--models", "tfc", "nope"], "--models:"),
                      (["--methods", "gradient,bogus"], "unknown method 'bogus'")):
        code = S.main(argv)
        err = capsys.readouterr().err
        assert code != 0 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        S.main(["--seeds", "-1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "must be 0 or more" in err and len(err.strip().splitlines()) == 1
