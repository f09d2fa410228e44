"""A report's expensive work as tasks: top-level functions whose arguments are plain data.

A task gets a `Sources` (build root + dataset), model names, kind, seed, method, an image shard
[start, stop), options and, where it scores maps, the maps as numpy arrays; never a torch
module. It loads its network and images itself (cached per process), so the same call runs in
this process, in a worker process or on another machine (a Dask mapper), and it seeds torch and
numpy from its own arguments, so a result does not depend on where or in which order tasks run.

`compute(..., mapper=...)` in explain.report runs lists of calls through a mapper:
`mapper(fn, [args, ...]) -> [fn(*args), ...]`; `serial_map` is the default.
"""
import sys
import zlib

import numpy as np
import torch
from tqdm import tqdm

from explain import metrics as X
from explain import qmetrics as Q
from explain.finallayer import class_subsets, final_layer_data
from explain.methods import ExplainError, NotApplicable, attribute

BASELINES = ("random", "sobel")
SANITY_METHODS = ("gradient", "integrated_gradients")


def serial_map(fn, calls, progress=True):
    """The default mapper: every call in order, in this process, under a progress bar with ETA."""
    name = fn.__name__.removesuffix("_task")
    return [fn(*args) for args in tqdm(calls, desc=name, disable=not progress, file=sys.stderr, smoothing=0.05)]


def _seed(*key):
    """Seed torch and numpy from a task's identity (SmoothGrad's noise, random baselines)."""
    s = zlib.crc32(repr(key).encode())
    torch.manual_seed(s)
    np.random.seed(s)


def _key(sources, *rest):
    return (type(sources).__module__, type(sources).__qualname__, repr(sorted(vars(sources).items(), key=str))) + rest


_NETS, _DATA = {}, {}


def load_net(sources, kind, name, seed):
    """(net, how, note), once per process: the BNN's bit-exact reference when it loads (else
    its Brevitas model, with a note saying so), the twin's trained torch model."""
    key = _key(sources, kind, name, seed)
    if key not in _NETS:
        net, how, note = None, None, None
        if kind == "bnn":
            net, how = sources.load_reference(name, seed)
            if net is None:
                note = f"{name} seed {seed}: bit-exact reference unavailable ({how}); explained the Brevitas model"
                how = "brevitas"
        if net is None:
            net = sources.load_trained(name, seed)
            how = how or "torch"
        _NETS[key] = (net.eval(), how, note)
    return _NETS[key]


def eval_data(sources, model, n, seed=0):
    """(x, labels, uint8 images) of the fixed class-balanced subset, once per process."""
    key = _key(sources, model, n, seed)
    if key not in _DATA:
        _DATA[key] = sources.eval_data(model, n, seed)
    return _DATA[key]


def baseline_maps(x, start=0):
    """Reference levels scored like a method: i.i.d. uniform random maps (image i's map seeded
    by its index, so shards agree with the whole) and the Sobel edge magnitude of the input."""
    n, _, h, w = x.shape
    rnd = np.stack([Q.random_maps(1, h, w, seed=start + i)[0] for i in range(n)]) if n else np.zeros((0, h, w))
    return {"random": rnd, "sobel": X.sobel_maps(x)}


def ci_dict(per_seed, per_image):
    m, lo, hi = X.mean_ci(per_seed)
    _, blo, bhi = X.bootstrap_ci(per_image)
    return dict(mean=m, ci_seeds=[lo, hi], ci_bootstrap=[blo, bhi], per_seed=[float(v) for v in per_seed])


# --- tasks ------------------------------------------------------------------------------------

def info_task(sources, model, kind, name, seed, n_images):
    """How the net was loaded, its accuracy on the subset and its recorded test accuracy."""
    net, how, note = load_net(sources, kind, name, seed)
    x, y, _ = eval_data(sources, model, n_images)
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    return dict(how=how, note=note, eval_subset=acc, test=sources.train_accuracy(name, seed))


def attribution_task(sources, model, kind, name, seed, method, n_images, start, stop, options):
    """Maps of `method` ("lrp_raw": LRP without canonization) for images [start, stop):
    {"map": (k, H, W) float32, "delta": (k,) |convergence delta| or None} or {"skipped": reason}."""
    net, _, _ = load_net(sources, kind, name, seed)
    x, y, _ = eval_data(sources, model, n_images)
    meth, kw = method, dict(options.get(method, {}))
    if method == "lrp_raw":
        meth, kw = "lrp", dict(options.get("lrp", {}), canonized=False)
    _seed("attribution", kind, name, seed, method, n_images, start, stop)
    try:
        out, info = attribute(meth, net, x[start:stop], y[start:stop], return_info=True, **kw)
    except NotApplicable as e:
        return dict(skipped=str(e))
    delta = info.get("delta")
    return dict(map=out.numpy(), delta=None if delta is None else delta.abs().numpy().astype(np.float64))


def score_task(sources, model, kind, name, seed, n_images, start, stop, maps, steps, road_images, runs, corr_images=None):
    """Per-image scores {metric: (k,)} of maps (k, H, W) of images [start, stop) for one net;
    ROAD only for images below road_images, faithfulness correlation below corr_images (nan beyond)."""
    net, _, _ = load_net(sources, kind, name, seed)
    x, y, _ = eval_data(sources, model, n_images)
    x, y = x[start:stop], y[start:stop]
    _seed("score", kind, name, seed, n_images, start, stop)
    r_end = max(0, min(stop, road_images) - start)
    road = np.full(len(x), np.nan)
    if r_end:
        road[:r_end] = Q.road(net, x[:r_end], y[:r_end], maps[:r_end])
    c_end = len(x) if corr_images is None else max(0, min(stop, corr_images) - start)
    corr = np.full(len(x), np.nan)
    if c_end:
        corr[:c_end] = Q.faithfulness_correlation(net, x[:c_end], y[:c_end], maps[:c_end], runs=runs)
    return dict(total_variation=X.total_variation(maps), high_frequency_energy=X.high_frequency_energy(maps),
                deletion_auc=X.deletion_auc(net, x, maps, y, steps=steps),
                insertion_auc=X.insertion_auc(net, x, maps, y, steps=steps), road=road,
                faithfulness_correlation=corr,
                sparseness=Q.sparseness(x, maps), complexity=Q.complexity(x, maps))


def _baseline_explainer(b):
    def explain(mdl, xx, tt):
        return baseline_maps(xx, start=int(torch.randint(0, 2 ** 31, (1,))))[b]
    return explain


def sanity_task(sources, model, kind, name, seed, n_sanity, method, n_images, options):
    """Randomisation checks of `method` (or "baseline:random|sobel") on the first n_sanity
    images: {"cascading": rows or reason, "efficient_mprt": (k,) or reason}. A baseline does not
    depend on the model: its rows are the levels of 'no sensitivity' (Sobel) and 'no
    consistency' (a new random map per call)."""
    net, _, _ = load_net(sources, kind, name, seed)
    x, y, _ = eval_data(sources, model, n_images)
    x, y = x[:n_sanity], y[:n_sanity]
    _seed("sanity", kind, name, seed, n_sanity, method)
    out = {}
    if method.startswith("baseline:"):
        fn = _baseline_explainer(method.split(":", 1)[1])
    else:
        def fn(mdl, xx, tt):
            return attribute(method, mdl, xx, tt, **options.get(method, {}))
    try:
        rows = X.cascading_randomisation(net, x, y, fn, progress=False)
        out["cascading"] = [{k: v for k, v in r.items() if k != "per_image"} for r in rows]
    except (NotApplicable, ExplainError, X.MetricError) as e:
        out["cascading"] = str(e)
    try:
        out["efficient_mprt"] = Q.efficient_mprt(net, x, y, fn)
    except (NotApplicable, ExplainError, X.MetricError) as e:
        out["efficient_mprt"] = str(e)
    return out


def similarity_task(method, bnn_maps, fp_maps, sobel, random):
    """BNN-vs-FP similarity of one method's maps ({seed: (N, H, W)} per kind) beside its
    reference levels: seed-to-seed within each kind (ceiling), each kind against the Sobel and
    the random baseline, and BNN against the FP maps with permuted pixels (floor)."""
    maps = {"bnn": bnn_maps, "fp": fp_maps}
    pairs = [(s, s) for s in sorted(bnn_maps) if s in fp_maps] or [(min(bnn_maps), min(fp_maps))]
    sims = {}
    for sname, fn in X.SIMILARITIES.items():
        cross = np.stack([fn(bnn_maps[a], fp_maps[b]) for a, b in pairs])
        entry = dict(bnn_vs_fp=ci_dict(cross.mean(1), cross.mean(0)))
        for kind in ("bnn", "fp"):
            ss = sorted(maps[kind])
            within = [fn(maps[kind][a], maps[kind][b]) for i, a in enumerate(ss) for b in ss[i + 1:]]
            entry[f"{kind}_seed_to_seed"] = ci_dict([w.mean() for w in within], np.mean(within, 0)) if within else None
            for bname, bmaps in (("sobel", sobel), ("random", random)):
                v = np.stack([fn(maps[kind][s], bmaps) for s in ss])
                entry[f"{kind}_vs_{bname}"] = ci_dict(v.mean(1), v.mean(0))
        floor = np.stack([fn(bnn_maps[a], X.permuted_maps(fp_maps[b], seed=a)) for a, b in pairs])
        entry["floor_permuted"] = ci_dict(floor.mean(1), floor.mean(0))
        sims[sname] = entry
    return sims


def final_layer_task(sources, model, kind, name, seed, n, subset_seed):
    """Class-specific final-layer subsets of one net on n class-balanced images."""
    net, _, _ = load_net(sources, kind, name, seed)
    x, y, _ = eval_data(sources, model, n, seed=subset_seed)
    try:
        feats, w, b, rank = final_layer_data(net, x)
    except NotApplicable as e:
        return dict(seed=seed, skipped=str(e))
    r = class_subsets(feats, w, b, y.numpy(), rank_scores=rank)
    r.pop("subsets")
    return dict(r, seed=seed, ranked_by="pre-sign value" if rank is not None else "weight x activation")
