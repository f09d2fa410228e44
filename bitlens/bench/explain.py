"""`python -m bitlens.bench.explain`: the report's analysis time per model on this machine ->
build/bench/explain.json. Each model is explained as `make report` does it (its defaults: 500
class-balanced test images, every trained seed of the BNN and of its twin), the tasks run in
--workers processes (default 2, one a core), and the time of each kind of task (maps and
randomisation checks also per method) is kept beside the total. Goals on 2 cores: TFC < 15 min,
CNV < 60 min. `--convergence N` instead writes build/bench/explain_convergence.json: how close
CNV's cheaper settings (explain.report.CNV_DEFAULTS) come to the full ones on N images."""
import contextlib
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from bitlens.cli import errors
from bitlens.cli import options as O
from explain import metrics as X
from explain import report as R
from explain import tasks as T
from explain.methods import METHODS, attribute
from explain.neuromask import neuromask
from explain.sources import Sources
from model import paths, publish, zoo

GOALS_S = {"mlp": 15 * 60, "cnv": 60 * 60}


# where a task's method sits in its arguments: the time of maps and checks per method
METHOD_ARG = {"attribution_task": 5, "sanity_task": 6}


def _tally(d, name, args, dt):
    """One call of task `name` into its entry `d` of the times (and its method's, see METHOD_ARG)."""
    d["calls"] += 1
    d["seconds"] = round(d["seconds"] + dt, 1)
    if name in METHOD_ARG:
        m = d.setdefault("methods", {}).setdefault(args[METHOD_ARG[name]], dict(calls=0, seconds=0.0))
        m["calls"] += 1
        m["seconds"] = round(m["seconds"] + dt, 1)


def timed(times, progress=True):
    """A serial mapper that adds each task kind's calls and seconds to `times`, and for the maps
    and the randomisation checks also per method (`times[kind]["methods"]`)."""
    def mapper(fn, calls):
        name = fn.__name__
        d = times.setdefault(name, dict(calls=0, seconds=0.0))
        out = []
        for args in tqdm(calls, desc=name.removesuffix("_task"), disable=not progress, file=sys.stderr, smoothing=0.05):
            r, dt = _timed_call(fn, args)
            out.append(r)
            _tally(d, name, args, dt)
        return out
    return mapper


def _worker_init(threads):
    torch.set_num_threads(threads)


def _timed_call(fn, args):
    t0 = time.time()
    out = fn(*args)
    return out, time.time() - t0


def pooled(times, pool, progress=True):
    """Like `timed`, the calls spread over the processes of `pool` (each loads its nets once);
    the seconds are the tasks' own, summed, so they exceed the wall time when workers overlap."""
    def mapper(fn, calls):
        name = fn.__name__
        d = times.setdefault(name, dict(calls=0, seconds=0.0))
        futures = [pool.submit(_timed_call, fn, args) for args in calls]
        out = []
        for args, f in zip(calls, tqdm(futures, desc=name.removesuffix("_task"), disable=not progress, file=sys.stderr)):
            r, dt = f.result()
            out.append(r)
            _tally(d, name, args, dt)
        return out
    return mapper


def bench(model, images=R.DEFAULT_IMAGES, root=None, dataset="mnist", progress=True, board=None, workers=1, threads=1):
    """Time the analysis of `model` with its tasks in `workers` processes (1: here); with a
    board, publish that report too (not timed: the hardware occlusion it adds is a simulation)."""
    sources = Sources(root, dataset)
    twin = zoo.twin_of(model)
    seeds = {name: sources.seeds(name) for name in (model, twin)}
    times = {}
    t0 = time.time()
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                           initializer=_worker_init, initargs=(threads,)))
            mapper = pooled(times, pool, progress)
        else:
            mapper = timed(times, progress)
        res = R.compute(model, sources, images, options=R.default_options(model), mapper=mapper, progress=progress)
    seconds = round(time.time() - t0, 1)
    report = str(R.write_report(res, board, sources.root) / "report.json") if board else None
    goal = GOALS_S["mlp" if R._is_mlp(model) else "cnv"]
    return dict(model=model, twin=twin, dataset=dataset, images=res["n_images"], seeds=seeds, methods=res["methods"],
                subsets=res["subsets"], options=res["options"], seconds=seconds, minutes=round(seconds / 60, 1),
                goal_seconds=goal, goal_met=seconds < goal if res["n_images"] >= R.DEFAULT_IMAGES else None,
                workers=workers, tasks=times, report=report)


def convergence(model, images=20, root=None, dataset="mnist", neuromask_steps=(50, 100, 150, 200, 300, 1000),
                smoothgrad_samples=(8, 16, 24, 50), ig_steps=(8, 16, 32, 64), neuromask_fast=((0.1, 300), (0.3, 100))):
    """How far the cheaper settings of the sampled and iterated methods are from the full ones,
    on `images` class-balanced test images of seed 0 of the BNN and of its twin: the mean
    Spearman between maps (explain.metrics.spearman) of each setting and the largest one, beside
    the level the full setting reaches against itself (SmoothGrad: another draw of the noise;
    IG: the second-largest step count). NeuroMask also with a larger learning rate and fewer
    steps (`neuromask_fast`, (lr, steps) pairs): RMSprop moves each mask weight by about lr a
    step, so lr x steps is how far a mask can move from its random start."""
    sources = Sources(root, dataset)
    x, y, _ = T.eval_data(sources, model, images)
    out = dict(model=model, twin=zoo.twin_of(model), images=len(x), seed=0, similarity="mean Spearman of |map|", kinds={})
    for kind, name in (("bnn", model), ("fp", zoo.twin_of(model))):
        net = T.load_net(sources, kind, name, 0)[0]
        t0 = time.time()
        _, snaps = neuromask(net, x, y, steps=max(neuromask_steps), snapshots=set(neuromask_steps))
        full = snaps[max(neuromask_steps)]
        nm = {str(k): float(X.spearman(snaps[k], full).mean()) for k in neuromask_steps}
        nm_300 = {str(k): float(X.spearman(snaps[k], snaps[300]).mean()) for k in neuromask_steps if k <= 300} \
            if 300 in snaps else None
        nm_s = round(time.time() - t0, 1)
        fast = {f"lr {lr} x {k} steps": float(X.spearman(neuromask(net, x, y, steps=k, lr=lr), full).mean())
                for lr, k in neuromask_fast}
        torch.manual_seed(1)
        sg = {k: attribute("smoothgrad", net, x, y, samples=k) for k in smoothgrad_samples}
        torch.manual_seed(2)
        sg_again = attribute("smoothgrad", net, x, y, samples=max(smoothgrad_samples))
        sg_full = sg[max(smoothgrad_samples)]
        ig = {k: attribute("integrated_gradients", net, x, y, steps=k) for k in ig_steps}
        ig_full = ig[max(ig_steps)]
        out["kinds"][kind] = dict(
            name=name,
            neuromask=dict(vs_steps=max(neuromask_steps), lr=METHODS["neuromask"]["lr"], spearman=nm, vs_300=nm_300,
                           seconds=nm_s, faster_lr_vs_full=fast),
            smoothgrad=dict(vs_samples=max(smoothgrad_samples),
                            spearman={str(k): float(X.spearman(m, sg_full).mean()) for k, m in sg.items()},
                            other_noise_draw=float(X.spearman(sg_again, sg_full).mean())),
            integrated_gradients=dict(vs_steps=max(ig_steps),
                                      spearman={str(k): float(X.spearman(m, ig_full).mean()) for k, m in ig.items()}))
    return out


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens.bench.explain", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tfc-w1a1,cnv-w1a1", help="comma-separated BNNs of the zoo")
    p.add_argument("--images", type=O.positive_int, default=R.DEFAULT_IMAGES)
    p.add_argument("--out", default=str(paths.BUILD / "bench" / "explain.json"))
    p.add_argument("--board", default=None, help="also publish each model's report for this board")
    p.add_argument("--threads", type=O.positive_int, default=R.THREADS, help="torch threads (the report's default)")
    p.add_argument("--workers", type=O.positive_int, default=2, help="processes running the tasks (1: this one; default: one a core)")
    p.add_argument("--convergence", type=O.positive_int, default=None, metavar="N",
                   help="instead: the settings' convergence check on N images of each model -> explain_convergence.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    if a.convergence:
        out = Path(a.out).with_name("explain_convergence.json")
        doc = dict(results={})
        for model in models:
            doc["results"][model] = convergence(model, a.convergence)
            out.parent.mkdir(parents=True, exist_ok=True)
            publish.atomic_json(out, doc)
        print(f"-> {out}")
        return 0
    doc = dict(torch_threads=torch.get_num_threads(), results={})
    for model in models:
        r = doc["results"][model] = bench(model, a.images, board=a.board, workers=a.workers, threads=a.threads)
        print(f"{model}: {r['images']} images, seeds {r['seeds']}: {r['minutes']} min of analysis "
              f"(goal {r['goal_seconds'] // 60} min at {R.DEFAULT_IMAGES} images: "
              f"{ {True: 'met', False: 'not met', None: 'not measured'}[r['goal_met']] })")
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        publish.atomic_json(a.out, doc)   # each model as it finishes: a CNV run is long
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
