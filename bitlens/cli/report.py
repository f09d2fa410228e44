"""`python -m bitlens report` (`make report`): the per-board explanation report,
build/<model>/<board>/report/{index.html,report.json} (explain.report).

Its tasks (model x seed x method x image shard) run on Dask: a LocalCluster of one worker per
core by default, `--scheduler tcp://host:port` for a running cluster, `--workers 1` in this
process. On Dask every task's result is cached (build/cache/), so an interrupted report, or one
with more seeds or methods, computes only what is missing."""
import os

import torch

from bitlens import report_tasks  # noqa: F401  (declares explain.tasks for the cache)
from bitlens.cache import TaskCache
from bitlens.cli import errors
from bitlens.cli import options as O
from bitlens.cluster import Cluster, cached_mapper
from explain import report as R
from explain.methods import METHODS, method_names
from explain.sources import Sources
from hw.boards import BOARDS
from model import paths, zoo
from model.data import DATASETS


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens report", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tfc-w1a1")
    p.add_argument("--board", default="ulx3s", help="a board of hw.boards or 'all'")
    p.add_argument("--images", type=O.positive_int, default=R.DEFAULT_IMAGES, help="class-balanced test images explained")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--neuromask-steps", type=O.positive_int, default=None,
                   help=f"default {METHODS['neuromask']['steps']} for MLPs, {R.CNV_DEFAULTS['neuromask_steps']} for CNV")
    p.add_argument("--smoothgrad-samples", type=O.positive_int, default=None,
                   help=f"default {METHODS['smoothgrad']['samples']} for MLPs, {R.CNV_DEFAULTS['smoothgrad_samples']} for CNV")
    p.add_argument("--final-images", type=O.positive_int, default=1000)
    p.add_argument("--road-images", type=O.positive_int, default=R.ROAD_IMAGES,
                   help="images scored by quantus' ROAD (noisy linear imputation is slow): the first N of --images")
    p.add_argument("--sanity-images", type=O.positive_int, default=R.SANITY_IMAGES,
                   help="images of the randomisation checks: the first N of --images")
    p.add_argument("--shard-images", type=O.positive_int, default=R.SHARD_IMAGES, help="images per task")
    p.add_argument("--threads", type=O.positive_int, default=R.THREADS, help="torch threads of this process")
    p.add_argument("--hardware-images", type=O.positive_int, default=None,
                   help="test images occluded on the simulated accelerator (default 10 for MLPs, 2 for CNV)")
    p.add_argument("--workers", type=O.positive_int, default=os.cpu_count() or 1,
                   help="worker processes of the local Dask cluster (default: one per core); 1: no Dask, no cache")
    p.add_argument("--scheduler", default=None, help="tcp://host:port of a running Dask scheduler (instead of a local cluster)")
    p.add_argument("--cache", default=None, help="task cache folder (default build/cache)")
    p.add_argument("--root", default=None, help="build folder (default ./build)")
    p.add_argument("--twin", default=None, help="the full-precision model to compare with (default: the zoo's twin)")
    p.add_argument("--dataset", type=O.choice("dataset", DATASETS), default=None,
                   help="default: the one the BNN (seed 0) was trained on")
    a = p.parse_args(argv)
    if not zoo.spec(a.model).quantised:
        raise R.ReportError(f"--model takes the BNN ({zoo.twin_of(a.model)}); its twin {a.model} is explained alongside")
    boards = list(BOARDS) if a.board == "all" else [a.board.lower()]
    for b in boards:
        if b not in BOARDS:
            raise R.ReportError(O.unknown("board", b, [*BOARDS, "all"]))
    methods = method_names(a.methods)
    sources = Sources(a.root)
    sources.dataset = a.dataset or sources.trained_dataset(a.model, 0) or "mnist"
    # what is given over the model's defaults (compute fills the rest: R.with_defaults)
    opts = dict(quantus=dict(road_images=a.road_images))
    if a.neuromask_steps:
        opts["neuromask"] = dict(steps=a.neuromask_steps)
    if a.smoothgrad_samples:
        opts["smoothgrad"] = dict(samples=a.smoothgrad_samples)
    if a.hardware_images:
        opts["hardware_occlusion"] = dict(images=a.hardware_images)
    torch.set_num_threads(a.threads)
    with Cluster(a.scheduler, a.workers, threads=a.threads) as cluster:
        dask = a.scheduler or a.workers > 1
        mapper = cached_mapper(cluster, TaskCache(a.cache or paths.BUILD / "cache")) if dask else None
        res = R.compute(a.model, sources, a.images, methods, opts, sanity_images=a.sanity_images,
                        final_images=a.final_images, twin=a.twin, shard=a.shard_images, mapper=mapper)
    for b in boards:
        out = R.write_report(res, b, sources.root)
        print(f"{a.model} on {b}: {out / 'index.html'}")
    return 0
