"""`python -m bitlens.bench.explain`: the report's analysis time per model on this machine ->
build/bench/explain.json. Each model is explained as `make report` does it (its defaults: 500
class-balanced test images, every trained seed of the BNN and of its twin), the tasks run in
this process, and the time of each kind of task is kept beside the total.
Goals on 2 cores: TFC < 15 min, CNV < 60 min."""
import sys
import time
from pathlib import Path

import torch

from bitlens.cli import errors
from bitlens.cli import options as O
from explain import report as R
from explain import tasks as T
from explain.sources import Sources
from model import paths, publish, zoo

GOALS_S = {"mlp": 15 * 60, "cnv": 60 * 60}


def timed(times, progress=True):
    """A serial mapper that adds each task kind's calls and seconds to `times`."""
    def mapper(fn, calls):
        t0 = time.time()
        out = T.serial_map(fn, calls, progress=progress)
        d = times.setdefault(fn.__name__, dict(calls=0, seconds=0.0))
        d["calls"] += len(calls)
        d["seconds"] = round(d["seconds"] + time.time() - t0, 1)
        return out
    return mapper


def bench(model, images=R.DEFAULT_IMAGES, root=None, dataset="mnist", progress=True, board=None):
    """Time the analysis of `model`; with a board, publish that report too (not timed: the
    hardware occlusion it adds is a simulation)."""
    sources = Sources(root, dataset)
    twin = zoo.twin_of(model)
    seeds = {name: sources.seeds(name) for name in (model, twin)}
    times = {}
    t0 = time.time()
    res = R.compute(model, sources, images, options=R.default_options(model), mapper=timed(times, progress),
                    progress=progress)
    seconds = round(time.time() - t0, 1)
    report = str(R.write_report(res, board, sources.root) / "report.json") if board else None
    goal = GOALS_S["mlp" if R._is_mlp(model) else "cnv"]
    return dict(model=model, twin=twin, dataset=dataset, images=res["n_images"], seeds=seeds, methods=res["methods"],
                subsets=res["subsets"], options=res["options"], seconds=seconds, minutes=round(seconds / 60, 1),
                goal_seconds=goal, goal_met=seconds < goal if res["n_images"] >= R.DEFAULT_IMAGES else None,
                tasks=times, report=report)


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens.bench.explain", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tfc-w1a1,cnv-w1a1", help="comma-separated BNNs of the zoo")
    p.add_argument("--images", type=O.positive_int, default=R.DEFAULT_IMAGES)
    p.add_argument("--out", default=str(paths.BUILD / "bench" / "explain.json"))
    p.add_argument("--board", default=None, help="also publish each model's report for this board")
    p.add_argument("--threads", type=O.positive_int, default=R.THREADS, help="torch threads (the report's default)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    doc = dict(torch_threads=torch.get_num_threads(), results={})
    for model in [m.strip() for m in a.models.split(",") if m.strip()]:
        r = doc["results"][model] = bench(model, a.images, board=a.board)
        print(f"{model}: {r['images']} images, seeds {r['seeds']}: {r['minutes']} min of analysis "
              f"(goal {r['goal_seconds'] // 60} min at {R.DEFAULT_IMAGES} images: "
              f"{ {True: 'met', False: 'not met', None: 'not measured'}[r['goal_met']] })")
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        publish.atomic_json(a.out, doc)   # each model as it finishes: a CNV run is long
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
