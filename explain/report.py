"""Per-board explanation report (`python -m bitlens report --model tfc-w1a1 --board ulx3s|all`).

Explains the BNN (the bit-exact reference built from build/<M>/streamlined.onnx, per seed where
present) and its full-precision twin on a fixed class-balanced test subset with every method,
scores the maps, restates the three BNN-saliency findings as numbers with a verdict, and writes
build/<M>/<B>/report/index.html (one self-contained page, rendered from templates/report.html)
and report.json. The expensive work runs as explain.tasks calls through a mapper (serial here,
Dask in a study); this module only lists the calls and assembles their results.
"""
import base64
import functools
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.ndimage import binary_dilation

from explain import metrics as X
from explain import qmetrics as Q
from explain import tasks as T
from explain.methods import METHODS, SIGN, attribute, occlusion_inputs, occlusion_map
from explain.sources import Sources
from model import paths, publish, zoo
from sim.occlusion import run as run_occlusion

KINDS = ("bnn", "fp")
BASELINES = T.BASELINES
SANITY_METHODS = T.SANITY_METHODS
DEFAULT_IMAGES = 500      # class-balanced test images explained per model
SHARD_IMAGES = 100        # images per task: the unit a mapper schedules
# NeuroMask's cost per optimisation step hardly grows with the batch: all images of a net are
# optimised together in one task
WHOLE_BATCH = ("neuromask",)
SANITY_IMAGES = 50        # images of the randomisation checks (cascading, EfficientMPRT)
ROAD_IMAGES = 50          # ROAD's noisy linear imputation solves a sparse system per image and fraction
CORRELATION_RUNS = 50     # random pixel subsets per image for faithfulness correlation
# CNV's settings (CNV_DEFAULTS below says why)
NM_STEPS_CNV = 100        # NeuroMask steps (MLPs: 1000) ...
NM_LR_CNV = 0.3           # ... at 10x the learning rate: RMSprop moves a mask weight ~lr a step
SG_SAMPLES_CNV = 16       # SmoothGrad samples (MLPs: 50)
IG_STEPS_CNV = 16         # integrated-gradients steps (MLPs: 32)
CORR_IMAGES_CNV = 100     # images of faithfulness correlation (MLPs: all)
# one torch thread: the tasks' tensors are small, and on cores shared with other jobs a second
# OpenMP thread spins waiting for the first (make bench has the measured difference); more cores
# are used by running tasks in several processes (a Dask mapper)
THREADS = 1


class ReportError(ValueError):
    pass


# --- computation (board independent) --------------------------------------------------------

def compute(model, sources, n_images=DEFAULT_IMAGES, methods=None, options=None, sanity_images=SANITY_IMAGES,
            final_images=None, progress=True, faithfulness_steps=28, twin=None, mapper=None, shard=SHARD_IMAGES):
    """Everything the page shows, for model M (a BNN) and its twin (default: the zoo's).
    mapper(fn, [args, ...]) -> [fn(*args), ...] runs the tasks (default: in order, here)."""
    methods = list(methods or METHODS)
    options = with_defaults(model, options or {})
    mapper = mapper or functools.partial(T.serial_map, progress=progress)
    twin = twin or zoo.twin_of(model)
    if twin is None:
        raise ReportError(f"{model} has no full-precision twin to compare with: name one with TWIN=path/file.py:function")
    t0 = time.time()
    dataset = getattr(sources, "dataset", "mnist")
    names = {"bnn": model, "fp": twin}
    nets = []                                         # (kind, name, seed) of every explained net
    for kind in KINDS:
        seeds = sources.seeds(names[kind])
        if not seeds:
            raise ReportError(f"no trained seeds of {names[kind]} (run `make train MODEL={names[kind]}`)")
        for s in seeds:
            trained_on = sources.trained_dataset(names[kind], s)
            if trained_on not in (None, dataset):
                raise ReportError(f"{names[kind]} seed {s} was trained on {trained_on}, not {dataset} (DATASET={trained_on})")
            nets.append((kind, names[kind], s))
    x, y, imgs = T.eval_data(sources, model, n_images)
    n = len(x)
    sanity_images = min(sanity_images, n)
    q = options.get("quantus", {})
    road_images = min(n, q.get("road_images", ROAD_IMAGES))
    runs = q.get("correlation_runs", CORRELATION_RUNS)
    corr_images = min(n, q.get("correlation_images") or n)
    res = dict(model=model, twin=twin, dataset=dataset, n_images=n, methods=methods, sign=SIGN, options=options,
               skipped={}, models={}, accuracy={}, ig_delta={}, lrp_delta={}, labels=y.tolist(),
               subsets=dict(images=n, shard_images=shard, road_images=road_images, correlation_runs=runs,
                            correlation_images=corr_images, sanity_images=sanity_images,
                            sanity_seed="first seed of each kind", final_layer_images=final_images or n))
    for (kind, name, s), info in zip(nets, mapper(T.info_task, [(sources, model, k, nm, s, n_images) for k, nm, s in nets])):
        res["models"].setdefault(kind, {})[str(s)] = info["how"]
        res["accuracy"].setdefault(kind, {})[str(s)] = dict(eval_subset=info["eval_subset"], test=info["test"])
        if info["note"]:
            res.setdefault("notes", []).append(info["note"])

    every = methods + (["lrp_raw"] if "lrp" in methods else [])
    shards = [(a, min(a + shard, n)) for a in range(0, n, shard)]
    calls = [(k, nm, s, m, a, b) for k, nm, s in nets for m in every for a, b in ([(0, n)] if m in WHOLE_BATCH else shards)]
    outs = mapper(T.attribution_task, [(sources, model, k, nm, s, m, n_images, a, b, options) for k, nm, s, m, a, b in calls])
    parts = {}
    for (kind, _, s, m, _, _), out in zip(calls, outs):
        parts.setdefault((kind, s, m), []).append(out)
    maps = {k: {} for k in KINDS}
    for (kind, s, m), outs_ in parts.items():
        skipped = next((o["skipped"] for o in outs_ if "skipped" in o), None)
        if skipped:
            res["skipped"].setdefault(kind, {})[m] = skipped
            continue
        maps[kind].setdefault(s, {})[m] = np.concatenate([o["map"] for o in outs_])
        if outs_[0]["delta"] is not None:
            key = "ig_delta" if m == "integrated_gradients" else "lrp_delta"
            res[key].setdefault(kind, {}).setdefault(m, {})[str(s)] = float(np.concatenate([o["delta"] for o in outs_]).mean())
    res["maps"] = maps
    seeds = {kind: sorted({s for k, _, s in nets if k == kind}) for kind in KINDS}
    done = [m for m in every if all(m in maps[k].get(s, {}) for k in KINDS for s in seeds[k])]
    res["compared"] = done
    res["quantus_version"] = Q.version()
    base = T.baseline_maps(x)
    res["metrics"] = _metrics(sources, model, n_images, nets, seeds, maps, done, base, shards, mapper,
                              faithfulness_steps, road_images, runs, corr_images)
    res["sanity"], res["metrics"]["efficient_mprt"] = _sanity(sources, model, n_images, nets, sanity_images, options, mapper)
    res["metrics"]["efficient_mprt_images"] = sanity_images
    res["final_layer"] = _final_layer(sources, model, nets, final_images or n, n, mapper)
    res["_x"], res["_x_np"], res["_imgs"], res["_sources"] = x, x.numpy(), imgs, sources
    res["findings"] = _findings(res)
    res["seconds"] = round(time.time() - t0, 1)
    return res


GROUPS = dict(noise=("total_variation", "high_frequency_energy"), faithfulness=("deletion_auc", "insertion_auc"),
              quantus=Q.PER_MAP)


def _metrics(sources, model, n_images, nets, seeds, maps, methods, base, shards, mapper, steps, road_images, runs,
             corr_images):
    out = dict(noise={}, faithfulness={}, quantus={}, similarity={}, tests={}, baselines={b: {} for b in BASELINES})
    out["road_images"], out["correlation_runs"], out["correlation_images"] = road_images, runs, corr_images
    scored = list(methods) + list(BASELINES)
    calls = [(k, nm, s, m, a, b) for m in scored for k, nm, s in nets for a, b in shards]

    def maps_of(kind, s, m):
        return base[m] if m in BASELINES else maps[kind][s][m]

    outs = mapper(T.score_task, [(sources, model, k, nm, s, n_images, a, b, maps_of(k, s, m)[a:b], steps, road_images, runs,
                                  corr_images) for k, nm, s, m, a, b in calls])
    parts = {}
    for (kind, _, s, m, _, _), o in zip(calls, outs):
        parts.setdefault((m, kind, s), []).append(o)
    per_image_store = {}
    for m in scored:
        for kind in KINDS:
            sc = [{k: np.concatenate([o[k] for o in parts[(m, kind, s)]]) for k in parts[(m, kind, s)][0]} for s in seeds[kind]]
            vals = {k: np.stack([d[k] for d in sc]) for k in sc[0]}
            for group, names in GROUPS.items():
                for name in names:
                    v = vals[name]
                    ok = np.isfinite(v).all(0)  # ROAD / correlation beyond their subsets, quantus on an all-zero map: nan
                    d = T.ci_dict([r[np.isfinite(r)].mean() if np.isfinite(r).any() else np.nan for r in v], v[:, ok].mean(0))
                    if m in BASELINES:
                        out["baselines"][m].setdefault(group, {}).setdefault(kind, {})[name] = d
                    else:
                        out[group].setdefault(m, {}).setdefault(kind, {})[name] = d
            per_image_store[(m, kind)] = {k: v.mean(0) for k, v in vals.items()}
    sims = mapper(T.similarity_task, [(m, {s: maps["bnn"][s][m] for s in seeds["bnn"]}, {s: maps["fp"][s][m] for s in seeds["fp"]},
                                       base["sobel"], base["random"]) for m in methods])
    out["similarity"] = dict(zip(methods, sims))
    if "lrp" in methods and "lrp_raw" in methods:
        out["lrp_canonization"] = {kind: dict(
            spearman_before_vs_after=float(np.mean([X.spearman(maps[kind][s]["lrp_raw"], maps[kind][s]["lrp"]).mean() for s in seeds[kind]])),
            deletion_auc_before=out["faithfulness"]["lrp_raw"][kind]["deletion_auc"]["mean"],
            deletion_auc_after=out["faithfulness"]["lrp"][kind]["deletion_auc"]["mean"],
            insertion_auc_before=out["faithfulness"]["lrp_raw"][kind]["insertion_auc"]["mean"],
            insertion_auc_after=out["faithfulness"]["lrp"][kind]["insertion_auc"]["mean"]) for kind in KINDS}
    # paired BNN vs FP per image (seed-averaged), Holm-corrected over every test on the page
    keys, ps = [], []
    for m in methods:
        for metric in ("total_variation", "high_frequency_energy", "deletion_auc", "insertion_auc"):
            p, eff = X.wilcoxon(per_image_store[(m, "bnn")][metric], per_image_store[(m, "fp")][metric])
            keys.append((m, metric, eff))
            ps.append(p)
    for (m, metric, eff), p, padj in zip(keys, ps, X.holm(ps) if ps else []):
        out["tests"].setdefault(m, {})[metric] = dict(p=p, p_holm=float(padj), effect_bnn_gt_fp=eff)
    return out


def _sanity(sources, model, n_images, nets, n_sanity, options, mapper):
    """Cascading randomisation (hand-written) and quantus' EfficientMPRT, on the first seed of
    each kind and the first n_sanity images; eMPRT also scores the random and Sobel baselines,
    which do not depend on the model (their level is 'no sensitivity')."""
    first = [(k, nm, s) for k, nm, s in nets if s == min(s2 for k2, _, s2 in nets if k2 == k)]
    what = list(SANITY_METHODS) + [f"baseline:{b}" for b in BASELINES]
    calls = [(k, nm, s, m) for k, nm, s in first for m in what]
    outs = mapper(T.sanity_task, [(sources, model, k, nm, s, n_sanity, m, n_images, options) for k, nm, s, m in calls])
    san, mprt = {k: {} for k in KINDS}, {k: {} for k in KINDS}
    for (kind, _, _, m), o in zip(calls, outs):
        if "cascading" in o:
            san[kind][m] = o["cascading"]
        v = o["efficient_mprt"]
        mprt[kind][m] = v if isinstance(v, str) else dict(zip(("mean", "lo", "hi"), X.bootstrap_ci(v)), images=len(v))
    return san, mprt


def _final_layer(sources, model, nets, n, n_images, mapper):
    # the explained subset when it is the size asked for, else another class-balanced draw
    subset_seed = 0 if n == n_images else 1
    rows_all = mapper(T.final_layer_task, [(sources, model, k, nm, s, n, subset_seed) for k, nm, s in nets])
    out = {}
    for kind in KINDS:
        rows = [r for (k, _, _), r in zip(nets, rows_all) if k == kind]
        ok = [r for r in rows if "skipped" not in r]
        out[kind] = dict(per_seed=rows, mean_subset_fraction=X.mean_ci([r["mean_subset_fraction"] for r in ok]) if ok else None,
                         restricted_accuracy=X.mean_ci([r["restricted_accuracy"] for r in ok]) if ok else None)
    return out


def _findings(res):
    met, skipped = res["metrics"], res["skipped"]
    f = {}

    def norm_sim(m, name="spearman"):
        e = met["similarity"][m][name]
        ceil = e["fp_seed_to_seed"]
        fl = e["floor_permuted"]["mean"]
        cross = e["bnn_vs_fp"]
        rel = None if ceil is None or ceil["mean"] - fl <= 0 else (cross["mean"] - fl) / (ceil["mean"] - fl)
        return cross, ceil, fl, rel

    if "gradient" in met["similarity"]:
        cross, ceil, fl, rel = norm_sim("gradient")
        above = cross["ci_bootstrap"][0] > fl
        verdict = ("supported" if above and rel is not None and rel >= 0.5 else
                   "not supported" if not above or (rel is not None and rel < 0.5) else
                   "undetermined (one FP seed: no ceiling)" if ceil is None else
                   "undetermined (FP seed-to-seed similarity not above the permuted floor: no ceiling)")
        f["gradient_similar"] = dict(claim="Gradient maps are similar for BNN and FPNN",
                                     spearman_bnn_vs_fp=cross["mean"], ci=cross["ci_bootstrap"],
                                     ceiling_fp_seed_to_seed=None if ceil is None else ceil["mean"], floor=fl,
                                     relative_to_ceiling=rel, verdict=verdict,
                                     rule="supported if BNN-vs-FP Spearman CI is above the permuted floor and "
                                          "(BNN-FP - floor) / (FP seed-to-seed - floor) >= 0.5")
    if "smoothgrad" in met["noise"]:
        n, t = met["noise"]["smoothgrad"], met["tests"]["smoothgrad"]
        g = met["noise"].get("gradient")
        noisier = all(t[k]["p_holm"] < 0.05 and t[k]["effect_bnn_gt_fp"] > 0 for k in ("total_variation", "high_frequency_energy"))
        f["smoothgrad_noisier"] = dict(
            claim="SmoothGrad maps are noisier for BNNs",
            total_variation=dict(bnn=n["bnn"]["total_variation"]["mean"], fp=n["fp"]["total_variation"]["mean"], **t["total_variation"]),
            high_frequency_energy=dict(bnn=n["bnn"]["high_frequency_energy"]["mean"], fp=n["fp"]["high_frequency_energy"]["mean"], **t["high_frequency_energy"]),
            gradient_tv_ratio_bnn_over_fp=None if g is None else g["bnn"]["total_variation"]["mean"] / max(g["fp"]["total_variation"]["mean"], 1e-12),
            smoothgrad_tv_ratio_bnn_over_fp=n["bnn"]["total_variation"]["mean"] / max(n["fp"]["total_variation"]["mean"], 1e-12),
            verdict="supported" if noisier else "not supported",
            rule="supported if BNN > FP in both total variation and high-frequency energy (paired Wilcoxon, Holm p < 0.05)")
    reason = skipped.get("bnn", {}).get("gradcam") or skipped.get("fp", {}).get("gradcam")
    if reason:
        f["gradcam_differs"] = dict(claim="GradCAM differs for BNNs, some maps nonsensical", verdict="not applicable", reason=reason)
    elif "gradcam" in met["similarity"]:
        cross, ceil, fl, rel = norm_sim("gradcam")
        bad = {k: float(np.mean([_nonsensical(res["maps"][k][s]["gradcam"], res.get("_x_np")) for s in res["maps"][k]])) for k in KINDS}
        differs = (rel is not None and rel < 0.5) or bad["bnn"] > bad["fp"]
        f["gradcam_differs"] = dict(claim="GradCAM differs for BNNs, some maps nonsensical",
                                    spearman_bnn_vs_fp=cross["mean"], ci=cross["ci_bootstrap"],
                                    ceiling_fp_seed_to_seed=None if ceil is None else ceil["mean"], floor=fl,
                                    relative_to_ceiling=rel, nonsensical_share=bad,
                                    verdict="supported" if differs else "not supported",
                                    rule="supported if (BNN-FP - floor)/(ceiling - floor) < 0.5 or the BNN has a larger share "
                                         "of nonsensical maps (all zero, or < 50 % of the top-10 % pixels on the digit)")
    return f


def _nonsensical(maps, x=None):
    """Share of maps that are empty or mostly off the object (object = non-zero input pixels,
    dilated by 2 px; without inputs only empty maps count)."""
    maps = np.asarray(maps)
    bad = []
    for i, mp in enumerate(maps):
        if not np.any(mp > 0):
            bad.append(1.0)
            continue
        if x is None:
            bad.append(0.0)
            continue
        obj = binary_dilation(x[i].mean(0) > 0, iterations=2)
        k = max(1, int(0.1 * mp.size))
        top = np.argsort(-mp.ravel())[:k]
        bad.append(float(obj.ravel()[top].mean() < 0.5))
    return float(np.mean(bad))


# --- hardware facts -----------------------------------------------------------------------------

HW_FILES = {"resources": ("resources.json", "make bitstream MODEL={m} BOARD={b}"),
            "sim": ("sim.json", "make sim MODEL={m} BOARD={b}"),
            "estimates": ("hw/estimates.json", "make bitstream MODEL={m} BOARD={b}")}


def hardware_facts(model, board, root):
    out = {}
    for key, (rel, cmd) in HW_FILES.items():
        p = paths.board_dir(model, board, root) / rel
        if p.is_file():
            try:
                out[key] = dict(status="ok", path=str(p), data=json.loads(p.read_text()))
            except ValueError as e:
                out[key] = dict(status="unreadable", path=str(p), reason=f"not JSON ({e})")
        else:
            out[key] = dict(status="not run", command=cmd.format(m=model, b=board))
    return out


# A CNV image costs ~100x an MLP image on every forward and backward pass: the settings that keep
# 500 images x 3 seeds of BNN and twin near the hour on 2 cores. `make bench`'s convergence check
# (build/bench/explain_convergence.json) measures how close each comes to the full setting: the
# NeuroMask masks of 100 steps at lr 0.3 are nearer the paper's 1000 steps at lr 0.03 than 300
# steps at lr 0.03 are (from a random start in (-10, 10) a weight can move only ~lr x steps).
CNV_DEFAULTS = dict(neuromask_steps=NM_STEPS_CNV, neuromask_lr=NM_LR_CNV, smoothgrad_samples=SG_SAMPLES_CNV,
                    ig_steps=IG_STEPS_CNV, correlation_images=CORR_IMAGES_CNV)


def default_options(model):
    """The options `make report` explains `model` with (the CLI's defaults)."""
    if _is_mlp(model):
        return {"neuromask": dict(steps=METHODS["neuromask"]["steps"]), "smoothgrad": dict(samples=METHODS["smoothgrad"]["samples"]),
                "quantus": dict(road_images=ROAD_IMAGES, correlation_runs=CORRELATION_RUNS)}
    c = CNV_DEFAULTS
    return {"neuromask": dict(steps=c["neuromask_steps"], lr=c["neuromask_lr"]), "smoothgrad": dict(samples=c["smoothgrad_samples"]),
            "integrated_gradients": dict(steps=c["ig_steps"]),
            "quantus": dict(road_images=ROAD_IMAGES, correlation_runs=CORRELATION_RUNS,
                            correlation_images=c["correlation_images"])}


def with_defaults(model, options):
    """`options` over default_options(model), per method: what the page and report.json state
    is every setting the maps were made with, also those the caller left out."""
    out = {k: dict(v) for k, v in default_options(model).items()}
    for k, v in options.items():
        out[k] = dict(out.get(k, {}), **v) if isinstance(v, dict) else v
    return out


def _is_mlp(model):
    try:
        sp = zoo.spec(model)
        return (sp.kind or zoo.kind_of(zoo.build(model))) == "mlp"
    except ValueError:
        return True


def hardware_occlusion(res, model, board, patch, stride, root, n_images=10):
    """Occlusion map rebuilt from the simulated accelerator's outputs vs the reference's map."""
    net = T.load_net(res["_sources"], "bnn", model, min(int(s) for s in res["models"]["bnn"]))[0]
    imgs = res["_imgs"][:n_images]
    y = torch.as_tensor(res["labels"][:n_images])
    try:
        hw = run_occlusion(model=model, board=board, images=occlusion_inputs(imgs, patch, stride, layout="NHWC"),
                 base_images=imgs, graph=paths.streamlined(model, 0, root),
                 out_dir=paths.board_dir(model, board, root), progress=False)
    except Exception as e:  # the simulator may be missing tools; the page says why
        return None, f"hardware occlusion could not run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    where = f"{hw['images']} images through {hw['simulator']} in {hw['seconds']} s"
    if not hw["accumulators_equal"]:
        return False, f"{hw['mismatched_images']} of {where}: accumulators differ from the reference"
    h, w = imgs.shape[1:3]
    hw_map = occlusion_map(hw["base_logits"], hw["occluded_logits"], y, h, w, patch, stride, channels=imgs.shape[3])
    ref = attribute("occlusion", net, res["_x"][:n_images], y, patch=patch, stride=stride)
    diff = float((hw_map - ref).abs().max())
    # accumulators are equal, so the maps differ only by float32 rounding of the reference's logits
    ok = bool(torch.allclose(hw_map, ref, rtol=1e-5, atol=1e-4))
    return ok, f"{where}: every accumulator equals the reference; map max |hw - reference| {diff:.2g}"


# --- page ------------------------------------------------------------------------------------------

def _subplots(*grid, figsize):
    # a Figure of its own renders through Agg with no pyplot state or GUI backend to pick
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _figures(res):
    figs = {}
    acc = res["accuracy"]
    fig, ax = _subplots(figsize=(5, 2.6))
    for i, kind in enumerate(KINDS):
        vals = [v["eval_subset"] for v in acc[kind].values()]
        ax.bar(np.arange(len(vals)) + i * (len(vals) + 1), vals, label=f"{kind} ({res['model'] if kind == 'bnn' else res['twin']})")
    ax.set_ylabel("accuracy (eval subset)")
    ax.set_xticks([])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("per seed")
    figs["accuracy"] = _png(fig)
    x = res["_x"].numpy()
    labels = np.asarray(res["labels"])
    cols = [int(np.where(labels == c)[0][0]) for c in np.unique(labels)]
    def mosaic(tiles, signed):
        # one imshow per row: 30 small axes per figure made savefig the slowest part of a report
        out = []
        for t in tiles:
            v = np.abs(t).max() or 1.0
            out += [t / v, np.full((t.shape[0], 1), np.nan)]
        return np.concatenate(out[:-1], 1)

    for m in res["compared"]:
        signed = SIGN.get(m.replace("_raw", ""), "signed") == "signed"
        fig, axes = _subplots(3, 1, figsize=(0.8 * len(cols), 2.8))
        axes[0].imshow(mosaic([x[i].mean(0) for i in cols], False), cmap="gray", vmin=0, vmax=1)
        for r, kind in enumerate(KINDS, 1):
            tiles = [res["maps"][kind][min(res["maps"][kind])][m][i] for i in cols]
            axes[r].imshow(mosaic(tiles, signed), cmap="bwr" if signed else "inferno",
                           vmin=-1 if signed else 0, vmax=1)
        for a, name in zip(axes, ["image", "BNN", "FPNN"]):
            a.set_xticks([])
            a.set_yticks([])
            a.set_ylabel(name, fontsize=7)
        axes[0].set_title(f"{m}  (top: images of classes {', '.join(str(labels[i]) for i in cols)})", fontsize=8)
        figs[f"gallery_{m}"] = _png(fig)
    noise = res["metrics"]["noise"]
    if noise:
        fig, axes = _subplots(1, 2, figsize=(8, 2.6))
        ms = list(noise)
        for ax, metric in zip(axes, ("total_variation", "high_frequency_energy")):
            for k, kind in enumerate(KINDS):
                e = [noise[m][kind][metric] for m in ms]
                mean = np.array([d["mean"] for d in e])
                lo = np.array([d["ci_bootstrap"][0] for d in e])
                hi = np.array([d["ci_bootstrap"][1] for d in e])
                ax.bar(np.arange(len(ms)) + 0.4 * k, mean, 0.4, yerr=[mean - lo, hi - mean], label=kind.upper())
            ax.set_xticks(np.arange(len(ms)) + 0.2, ms, rotation=60, fontsize=7)
            ax.set_title(metric.replace("_", " "), fontsize=8)
            ax.legend(fontsize=7)
        figs["noise"] = _png(fig)
    san = res["sanity"]
    fig, ax = _subplots(figsize=(5, 2.6))
    for kind in KINDS:
        for m, rows in san[kind].items():
            if isinstance(rows, list):
                ax.plot([r["similarity"] for r in rows], marker="o", label=f"{kind.upper()} {m}")
    ax.set_xlabel("layers randomised (from the top)")
    ax.set_ylabel("Spearman to original")
    ax.legend(fontsize=7)
    figs["sanity"] = _png(fig)
    return figs


def fmt(v, nd=3):
    """A number as the report prints it: 3 decimals, small values in 3 significant digits; None
    is a dash. Not HTML: the template escapes what it prints."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return "nan" if not np.isfinite(v) else f"{v:.{nd}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{nd}f}"
    return str(v)


def _flat(d, prefix=""):
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out.append((prefix + k, v))
    return out


@dataclass
class HwRow:
    """One line of the hardware summary: `text` (in a span of class `status`, "ok"/"no", when
    set), then `rest`, a small `note` and a `code` command when not None."""
    name: str
    text: str
    status: str | None = None
    rest: str = ""
    note: str | None = None
    code: str | None = None


def _hw_summary(hw, hw_equal, hw_reason):
    """The few hardware numbers a reader wants first: fit, clock, rate, and the proofs of equality."""
    res, sim, est = (hw[k].get("data") if hw.get(k, {}).get("status") == "ok" else None
                     for k in ("resources", "sim", "estimates"))
    rows = []
    if res:
        rows.append(HwRow("device", f"{res.get('board')}: {res.get('part')} {res.get('package', '')}",
                          note=f"({res.get('flow', '')})"))
        used, avail = res.get("used", {}), res.get("available", {})
        est_total = (est or {}).get("total", {})
        for k in ("lut", "ff", "bram", "dsp"):
            if used.get(k) is not None:
                share = f" ({100 * used[k] / avail[k]:.1f} %)" if avail.get(k) else ""
                guess = f"analytic estimate {est_total[k]}" if est_total.get(k) is not None else None
                rows.append(HwRow(k.upper(), f"{used[k]} / {avail.get(k, '?')}{share}", note=guess))
        if res.get("fmax_mhz") is not None:
            rows.append(HwRow("Fmax", f"{fmt(res['fmax_mhz'])} MHz", note=f"(clock {fmt((est or {}).get('clock_mhz'))} MHz)"))
    if est:
        rows.append(HwRow("initiation interval", f"{est.get('analytic_ii')} cycles; {fmt(est.get('fps'), 1)} images/s at "
                                                 f"{fmt(est.get('clock_mhz'))} MHz; latency {est.get('latency_cycles')} cycles"))
    if sim:
        rows.append(HwRow("simulation", f"{sim.get('images')} test images, equal to the reference: {sim.get('equal')}",
                          status="ok" if sim.get("equal") else "no",
                          rest=f" ({sim.get('simulator')}, {fmt(sim.get('seconds'), 1)} s)"))
        rows.append(HwRow("measured cycles/image", f"{fmt(sim.get('cycles_per_image'), 1)} vs analytic {sim.get('analytic_ii')}"))
    rows.append(HwRow("occlusion on hardware", fmt(hw_equal), note=hw_reason))
    for key, v in hw.items():
        if v["status"] != "ok":
            rows.append(HwRow(key, f"{v['status']}: ", code=str(v.get("command", v.get("reason", "")))))
    return rows


BASELINE_LABEL = {"random": "baseline: random map", "sobel": "baseline: Sobel edges of the input"}
QUANTUS_COLUMNS = (("road", "ROAD ↓"), ("faithfulness_correlation", "faithfulness correlation ↑"),
                   ("sparseness", "sparseness (Gini) ↑"), ("complexity", "complexity (entropy) ↓"))


def _quantus_context(res):
    """The quantus tables as the template's rows (None when quantus did not run)."""
    met = res["metrics"]
    if "quantus" not in met:
        return None
    rows = [dict(method=m, baseline=False, d=d) for m, d in met["quantus"].items()]
    rows += [dict(method=BASELINE_LABEL[b], baseline=True, d=d["quantus"]) for b, d in met.get("baselines", {}).items()]
    mprt = []
    mp = met.get("efficient_mprt")
    for m in (mp or {}).get("bnn", {}):
        cells = [mp[kind].get(m) for kind in KINDS]
        base = m.startswith("baseline:")
        mprt.append(dict(method=BASELINE_LABEL[m.split(":")[1]] if base else m, baseline=base, cells=cells))
    return dict(version=str(res.get("quantus_version")), removal_fractions=len(Q.ROAD_PERCENTAGES),
                road_images=met.get("road_images"), correlation_runs=met.get("correlation_runs"),
                correlation_images=met.get("correlation_images", res["n_images"]),
                columns=QUANTUS_COLUMNS, rows=rows, mprt=mprt, mprt_images=met.get("efficient_mprt_images"))


def _sanity_rows(san):
    """Per method (baselines last): the Spearman to the original map once every layer is
    randomised, per kind (or why it could not run)."""
    rows = []
    for m in san["bnn"]:
        base = m.startswith("baseline:")
        cells = [v if isinstance(v, str) else v[-1]["similarity"] for v in (san[kind].get(m, "not run") for kind in KINDS)]
        rows.append(dict(method=BASELINE_LABEL[m.split(":")[1]] if base else m, baseline=base, cells=cells))
    return rows


GRADREG_ROWS = (("cosine_gradient_vs_guided", "cos(gradient, guided backprop) ↑"),
                ("total_variation", "total variation of gradient maps ↓"),
                ("high_frequency_energy", "high-frequency energy ↓"),
                ("deletion_auc", "deletion AUC ↓"), ("insertion_auc", "insertion AUC ↑"))


def _gradreg_context(study):
    """The gradient-regularisation study as the template's rows (or its 'not run' command)."""
    if study.get("status") == "not run":
        return dict(status="not run", command=study["command"])
    rows = []
    for k in study["kinds"].values():
        for key, label in GRADREG_ROWS:
            rows.append(dict(model=k["name"], metric=label, interval=True, plain=k[key]["plain"],
                             gradreg=k[key]["gradreg"], p=k[key]["p_wilcoxon"]))
        acc = k["test_accuracy"]
        rows.append(dict(model=k["name"], metric="test accuracy", interval=False, plain=acc["plain"], gradreg=acc["gradreg"]))
    return dict(status="ok", lam=f"{study['lam']:g}", epochs=study.get("epochs"), train_images=study.get("train_images"),
                images=study["images"], rows=rows)


def page_context(res, board, hw, hw_equal, hw_reason, figs):
    """What the page shows: the numbers and verdicts of `res`, the hardware facts, and the
    figures as base64 PNGs."""
    met = res["metrics"]
    lrp = met.get("lrp_canonization")
    return dict(
        model=res["model"], twin=res["twin"], board=board, dataset=res.get("dataset", "mnist"),
        n_images=res["n_images"], seeds={k: len(res["models"][k]) for k in KINDS},
        explained_as=sorted(set(res["models"]["bnn"].values())), notes=res.get("notes", []),
        accuracy=[dict(model=res["model"] if kind == "bnn" else res["twin"], seed=s, eval_subset=a["eval_subset"], test=a["test"])
                  for kind in KINDS for s, a in res["accuracy"][kind].items()],
        figs=figs, hardware=_hw_summary(hw, hw_equal, hw_reason),
        hardware_fields=[(key, k, val) for key, v in hw.items() if v["status"] == "ok" for k, val in _flat(v["data"])],
        findings=[dict(claim=fd["claim"], rule=fd.get("rule", ""), verdict=fd["verdict"],
                       numbers=[(a, b) for a, b in _flat(fd) if a not in ("claim", "verdict", "rule")])
                  for fd in res["findings"].values()],
        skipped=[(k, m, r) for k, d in res["skipped"].items() for m, r in d.items()],
        signs=list(SIGN.items()), compared=list(res["compared"]),
        noise=[dict(method=m, tv_bnn=d["bnn"]["total_variation"], tv_fp=d["fp"]["total_variation"],
                    tv_p=met["tests"][m]["total_variation"]["p_holm"], hf_bnn=d["bnn"]["high_frequency_energy"],
                    hf_fp=d["fp"]["high_frequency_energy"], hf_p=met["tests"][m]["high_frequency_energy"]["p_holm"])
               for m, d in met["noise"].items()],
        noise_baselines=[dict(method=BASELINE_LABEL[b], tv_bnn=d["noise"]["bnn"]["total_variation"],
                              tv_fp=d["noise"]["fp"]["total_variation"], hf_bnn=d["noise"]["bnn"]["high_frequency_energy"],
                              hf_fp=d["noise"]["fp"]["high_frequency_energy"]) for b, d in met.get("baselines", {}).items()],
        similarity=[dict(method=m, metric=sname, v=v) for m, d in met["similarity"].items() for sname, v in d.items()],
        faithfulness=list(met["faithfulness"].items()),
        faithfulness_baselines=[(BASELINE_LABEL[b], d["faithfulness"]) for b, d in met.get("baselines", {}).items()],
        quantus=_quantus_context(res),
        lrp_canonization=dict(columns=list(next(iter(lrp.values()))), rows=[(kind, list(d.values())) for kind, d in lrp.items()])
        if lrp else None,
        ig_delta=[(k, float(np.mean(list(v["integrated_gradients"].values())))) for k, v in res["ig_delta"].items()]
        if res["ig_delta"] else [],
        final_layer=[(kind, r) for kind, d in res["final_layer"].items() for r in d["per_seed"]],
        gradreg=_gradreg_context(res.get("gradient_regularisation") or {}),
        subsets=dict(dict(correlation_images=res["n_images"]), **res["subsets"]), sanity=_sanity_rows(res["sanity"]),
        settings=[(m, ", ".join(f"{k} {v}" for k, v in o.items())) for m, o in res["options"].items() if isinstance(o, dict)],
        seconds=res["seconds"])


# the page's HTML lives in templates/report.html beside this file; autoescaping makes every
# name and message from the data text, never markup
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["fmt"] = fmt


def render_html(res, board, hw, hw_equal, hw_reason, figs):
    return TEMPLATES.get_template("report.html").render(page_context(res, board, hw, hw_equal, hw_reason, figs))


def gradreg_study(model, root):
    path = Path(root) / "gradreg" / paths.slug(model) / "study.json"
    if not path.is_file():
        return dict(status="not run", command=f"make gradreg MODEL={model}")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        return dict(status="not run", command=f"make gradreg MODEL={model}  ({path} unreadable: {err})")


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items() if not str(k).startswith("_") and k != "maps"}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    return o


def write_report(res, board, root):
    """Write build/<M>/<B>/report/{index.html, report.json}; returns the folder."""
    out = paths.board_dir(res["model"], board, root) / "report"
    hw = hardware_facts(res["model"], board, root)
    occ = dict(METHODS["occlusion"], **res["options"].get("occlusion", {}))
    # a CNV image costs ~10^5 accelerator cycles at the default folding and occlusion streams
    # ~200 copies of each image: two images keep the simulation to minutes
    n_hw = res["options"].get("hardware_occlusion", {}).get("images") or (10 if _is_mlp(res["model"]) else 2)
    hw_equal, hw_reason = hardware_occlusion(res, res["model"], board, occ["patch"], occ["stride"], root, n_hw)
    res["gradient_regularisation"] = gradreg_study(res["model"], root)
    figs = _figures(res)
    doc = _jsonable(dict(res, board=board, hardware=dict(hw, hardware_occlusion_equal=hw_equal,
                                                         hardware_occlusion_reason=hw_reason)))
    doc["hardware_occlusion_equal"] = hw_equal
    doc["images"] = res["n_images"]
    doc["methods"] = res["methods"]
    page = render_html(res, board, hw, hw_equal, hw_reason, figs)
    with publish.staging(out.parent, "report") as stage:   # the page and its JSON replace the old pair together
        (stage / out.name).mkdir()
        (stage / out.name / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
        (stage / out.name / "index.html").write_text(page)
    return out
