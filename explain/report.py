"""Per-board explanation report: `python -m explain.report --model tfc-w1a1 --board ulx3s|all`.

Explains the BNN (the bit-exact reference built from build/<M>/streamlined.onnx, per seed where
present) and its full-precision twin on a fixed class-balanced test subset with every method,
scores the maps, restates the three BNN-saliency findings as numbers with a verdict, and writes
build/<M>/<B>/report/index.html (one self-contained page, rendered from templates/report.html)
and report.json.
"""
import argparse
import base64
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import torch
from tqdm import tqdm

from explain import metrics as X
from explain import qmetrics as Q
from explain.finallayer import class_subsets
from explain.methods import METHODS, SIGN, ExplainError, NotApplicable, attribute, occlusion_inputs, occlusion_map
from model import paths

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("bnn", "fp")


class ReportError(ValueError):
    pass


# --- where models and data come from (tests substitute stand-ins) -------------------------------

class Sources:
    def __init__(self, root=None, dataset="mnist"):
        self.root = Path(root) if root else ROOT / "build"
        self.dataset = dataset

    def trained_dataset(self, name, seed):
        """The dataset a seed was trained on (its train.json), None when unknown."""
        from model import zoo
        try:
            return json.loads((zoo.model_dir(name, seed, self.root) / "train.json").read_text()).get("dataset", "mnist")
        except (OSError, ValueError):
            return None

    def seeds(self, name):
        from model import zoo
        return zoo.seeds(name, self.root)

    def load_trained(self, name, seed):
        from model import zoo
        return zoo.load_trained(name, seed, self.root)

    def load_reference(self, name, seed):
        """(module, how) or (None, reason)."""
        from model import zoo
        path = zoo.model_dir(name, seed, self.root) / "streamlined.onnx"
        if not path.is_file():
            return None, f"{path.relative_to(self.root.parent) if path.is_relative_to(self.root.parent) else path} missing (run `make export MODEL={name}`)"
        try:
            import model.reference as R
        except ImportError as e:
            return None, f"model.reference not importable ({e})"
        for how in ("load", "from_onnx"):
            fn = getattr(R, how, None) or getattr(getattr(R, "Reference", None), how, None)
            if fn is not None:
                return fn(path).eval(), f"reference ({how})"
        return R.Reference(path).eval(), "reference"

    def eval_data(self, name, n, seed=0):
        """A fixed class-balanced subset of the test split: (x float NCHW, labels, uint8 NHWC)."""
        from model import data as D
        from model.train import model_inputs
        images, labels = D.load_split(self.dataset, "test")
        idx = balanced_indices(labels, n, seed)
        imgs = images[idx]
        x = model_inputs(name, imgs, self.dataset)
        size = x.shape[-1]
        if imgs.shape[1] != size:
            imgs = D.pad_images(imgs, size)
        return x, torch.as_tensor(labels[idx]), imgs

    def train_accuracy(self, name, seed):
        from model import zoo
        p = zoo.model_dir(name, seed, self.root) / "train.json"
        try:
            return json.loads(p.read_text()).get("test_accuracy")
        except (OSError, ValueError):
            return None


def balanced_indices(labels, n, seed=0):
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per = max(1, n // len(classes))
    rng = np.random.default_rng(seed)
    idx = [np.sort(rng.permutation(np.where(labels == c)[0])[:per]) for c in classes]
    return np.stack(idx, 1).ravel() if len({len(i) for i in idx}) == 1 else np.concatenate(idx)


# --- computation (board independent) --------------------------------------------------------

@torch.no_grad()
def _accuracy(net, x, y):
    return float((net(x).argmax(1) == y).float().mean())


def _final_layer_data(net, x):
    if hasattr(net, "final_layer_inputs"):
        d = net.final_layer_inputs(x)
        return d["features"], d["weight"], d["bias"], d.get("rank_scores")
    if hasattr(net, "plan") and hasattr(net, "stages") and hasattr(net, "out_scale"):
        return _reference_final_layer(net, x)
    if not all(hasattr(net, k) for k in ("penultimate", "head")):
        raise NotApplicable("model exposes neither final_layer_inputs() nor penultimate()/head")
    pre = {}
    acts = net.activation_modules() if hasattr(net, "activation_modules") else []
    h = acts[-1].register_forward_hook(lambda m, i, o: pre.__setitem__("x", i[0].detach())) if acts else None
    with torch.no_grad():
        feats = net.penultimate(x).detach()
    if h:
        h.remove()
    head = net.head
    w = head.quant_weight().value if hasattr(head, "quant_weight") else head.weight
    w = w.detach().double()
    b = head.bias.detach().double() if getattr(head, "bias", None) is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    sb = getattr(net, "scale_bias", None)
    if isinstance(sb, torch.nn.modules.batchnorm._BatchNorm):  # per-class scale/bias: fold it
        s = (sb.weight / torch.sqrt(sb.running_var + sb.eps)).detach().double()
        w, b = w * s[:, None], (b - sb.running_mean.double()) * s + sb.bias.detach().double()
    # binary features tie: rank by the pre-sign value instead (PAPERS.md pitfall)
    rank = pre.get("x") if feats.unique().numel() <= 3 else None
    return feats.numpy(), w.numpy(), b.numpy(), None if rank is None else rank.numpy()


def _reference_final_layer(ref, x):
    """model.reference.Reference: features = the last activation's output, rank scores = its
    accumulator input (every channel compares acc >= T), final layer = last linear stage
    (acc = coef . v + const) followed by the per-class scale and bias."""
    kinds = [(k, a) for k, a, _ in ref.plan]
    last_lin = max(a for k, a in kinds if k == "linear")
    last_act = max(a for k, a in kinds if k == "act")
    got = {}
    h = ref.stages[last_act].register_forward_hook(lambda m, i, o: got.update(acc=i[0].detach(), v=o.detach()))
    with torch.no_grad():
        ref(x)
    h.remove()
    st = ref.stages[last_lin]
    coef, const = st.coef.double().flatten(1), st.const.double().reshape(-1)
    s, b = ref.out_scale.double().reshape(-1), ref.out_bias.double().reshape(-1)
    feats = got["v"].flatten(1).double()
    return feats.numpy(), (coef * s[:, None]).numpy(), (const * s + b).numpy(), got["acc"].flatten(1).numpy()


def compute(model, sources, n_images=100, methods=None, options=None, sanity_images=20,
            final_images=None, progress=True, faithfulness_steps=28, twin=None):
    """Everything the page shows, for model M (a BNN) and its twin (default: the zoo's)."""
    from model import zoo
    methods = list(methods or METHODS)
    options = options or {}
    twin = twin or zoo.twin_of(model)
    if twin is None:
        raise ReportError(f"{model} has no full-precision twin to compare with: name one with TWIN=path/file.py:function")
    t0 = time.time()
    dataset = getattr(sources, "dataset", "mnist")
    res = dict(model=model, twin=twin, dataset=dataset, n_images=n_images, methods=methods, sign=SIGN, options=options,
               skipped={}, models={}, accuracy={}, ig_delta={}, lrp_delta={})
    x, y, imgs = sources.eval_data(model, n_images)
    res["labels"] = y.tolist()
    nets = {}
    for kind, name in (("bnn", model), ("fp", twin)):
        seeds = sources.seeds(name)
        if not seeds:
            raise ReportError(f"no trained seeds of {name} (run `make train MODEL={name}`)")
        nets[kind] = {}
        for s in seeds:
            trained_on = getattr(sources, "trained_dataset", lambda n, s: None)(name, s)
            if trained_on not in (None, dataset):
                raise ReportError(f"{name} seed {s} was trained on {trained_on}, not {dataset} (DATASET={trained_on})")
            net, how = (None, None)
            if kind == "bnn":
                net, how = sources.load_reference(name, s)
                if net is None:
                    res.setdefault("notes", []).append(f"{name} seed {s}: bit-exact reference unavailable ({how}); explained the Brevitas model")
                    how = "brevitas"
            if net is None:
                net = sources.load_trained(name, s).eval()
                how = how or "torch"
            nets[kind][s] = net
            res["models"].setdefault(kind, {})[str(s)] = how
            res["accuracy"].setdefault(kind, {})[str(s)] = dict(eval_subset=_accuracy(net, x, y),
                                                               test=sources.train_accuracy(name, s))
    maps = {k: {} for k in KINDS}
    jobs = [(k, s, m) for k in KINDS for s in nets[k] for m in methods + (["lrp_raw"] if "lrp" in methods else [])]
    for kind, s, m in tqdm(jobs, desc="attributions", disable=not progress, file=sys.stderr):
        meth, kw = (m, dict(options.get(m, {})))
        if m == "lrp_raw":
            meth, kw = "lrp", dict(options.get("lrp", {}), canonized=False)
        if res["skipped"].get(kind, {}).get(meth):
            continue
        try:
            out, info = attribute(meth, nets[kind][s], x, y, return_info=True, **kw)
        except NotApplicable as e:
            res["skipped"].setdefault(kind, {})[meth] = str(e)
            continue
        maps[kind].setdefault(s, {})[m] = out.numpy()
        if "delta" in info:
            key = "ig_delta" if meth == "integrated_gradients" else "lrp_delta"
            res[key].setdefault(kind, {}).setdefault(m, {})[str(s)] = float(info["delta"].abs().mean())
    res["maps"] = maps
    done = [m for m in methods + ["lrp_raw"] if all(m in maps[k].get(s, {}) for k in KINDS for s in nets[k])]
    res["compared"] = done
    res["quantus_version"] = Q.version()
    q = options.get("quantus", {})
    res["metrics"] = _metrics(res, nets, maps, done, x, y, progress, faithfulness_steps,
                              q.get("road_images", ROAD_IMAGES), q.get("correlation_runs", CORRELATION_RUNS))
    res["sanity"] = _sanity(nets, x[:sanity_images], y[:sanity_images], options, progress)
    res["metrics"]["efficient_mprt"] = res["sanity"].pop("efficient_mprt")
    res["metrics"]["efficient_mprt_images"] = len(x[:sanity_images])
    res["final_layer"] = _final_layer(nets, sources, model, final_images or n_images, x, y)
    res["_x"], res["_x_np"], res["_imgs"], res["_nets"] = x, x.numpy(), imgs, nets
    res["findings"] = _findings(res)
    res["seconds"] = round(time.time() - t0, 1)
    return res


def _ci_dict(per_seed, per_image):
    m, lo, hi = X.mean_ci(per_seed)
    _, blo, bhi = X.bootstrap_ci(per_image)
    return dict(mean=m, ci_seeds=[lo, hi], ci_bootstrap=[blo, bhi], per_seed=[float(v) for v in per_seed])


BASELINES = ("random", "sobel")


def baseline_maps(x, seed=0):
    """Reference levels scored like a method: i.i.d. uniform random maps and the Sobel edge
    magnitude of the input image (what the model sees, no model involved)."""
    n, _, h, w = x.shape
    return {"random": Q.random_maps(n, h, w, seed), "sobel": X.sobel_maps(x)}


def _score(net, x, y, mp, steps, road_images, runs):
    """Per-image scores of one set of maps for one model: {metric: (N,)}; ROAD on the first
    road_images images only (noisy linear imputation is the costly part)."""
    r = Q.road(net, x[:road_images], y[:road_images], mp[:road_images])
    return dict(total_variation=X.total_variation(mp), high_frequency_energy=X.high_frequency_energy(mp),
                deletion_auc=X.deletion_auc(net, x, mp, y, steps=steps), insertion_auc=X.insertion_auc(net, x, mp, y, steps=steps),
                road=np.concatenate([r, np.full(len(x) - len(r), np.nan)]),
                faithfulness_correlation=Q.faithfulness_correlation(net, x, y, mp, runs=runs),
                sparseness=Q.sparseness(x, mp), complexity=Q.complexity(x, mp))


GROUPS = dict(noise=("total_variation", "high_frequency_energy"), faithfulness=("deletion_auc", "insertion_auc"),
              quantus=Q.PER_MAP)


def _metrics(res, nets, maps, methods, x, y, progress, steps=28, road_images=None, runs=50):
    out = dict(noise={}, faithfulness={}, quantus={}, similarity={}, tests={}, baselines={b: {} for b in BASELINES})
    road_images = min(len(x), road_images or len(x))
    out["road_images"], out["correlation_runs"] = road_images, runs
    first = {k: min(nets[k]) for k in KINDS}
    sobel = X.sobel_maps(x)
    base = baseline_maps(x)
    per_image_store = {}
    for m in tqdm(list(methods) + list(BASELINES), desc="metrics", disable=not progress, file=sys.stderr):
        for kind in KINDS:
            seeds = sorted(nets[kind])
            sc = [_score(nets[kind][s], x, y, base[m] if m in BASELINES else maps[kind][s][m], steps, road_images, runs) for s in seeds]
            vals = {k: np.stack([d[k] for d in sc]) for k in sc[0]}
            for group, names in GROUPS.items():
                for name in names:
                    v = vals[name]
                    ok = np.isfinite(v).all(0)  # ROAD beyond road_images, quantus on an all-zero map: nan
                    d = _ci_dict([r[np.isfinite(r)].mean() if np.isfinite(r).any() else np.nan for r in v], v[:, ok].mean(0))
                    if m in BASELINES:
                        out["baselines"][m].setdefault(group, {}).setdefault(kind, {})[name] = d
                    else:
                        out[group].setdefault(m, {}).setdefault(kind, {})[name] = d
            per_image_store[(m, kind)] = {k: v.mean(0) for k, v in vals.items()}
        if m in BASELINES:
            continue
        sims = {}
        for sname, fn in X.SIMILARITIES.items():
            pairs = [(s, s) for s in sorted(nets["bnn"]) if s in nets["fp"]] or [(first["bnn"], first["fp"])]
            cross = np.stack([fn(maps["bnn"][a][m], maps["fp"][b][m]) for a, b in pairs])
            entry = dict(bnn_vs_fp=_ci_dict(cross.mean(1), cross.mean(0)))
            for kind in KINDS:
                ss = sorted(nets[kind])
                within = [fn(maps[kind][a][m], maps[kind][b][m]) for i, a in enumerate(ss) for b in ss[i + 1:]]
                entry[f"{kind}_seed_to_seed"] = _ci_dict([w.mean() for w in within], np.mean(within, 0)) if within else None
                sob = np.stack([fn(maps[kind][s][m], sobel) for s in ss])
                entry[f"{kind}_vs_sobel"] = _ci_dict(sob.mean(1), sob.mean(0))
            floor = np.stack([fn(maps["bnn"][a][m], X.permuted_maps(maps["fp"][b][m], seed=a)) for a, b in pairs])
            entry["floor_permuted"] = _ci_dict(floor.mean(1), floor.mean(0))
            sims[sname] = entry
        out["similarity"][m] = sims
    if "lrp" in methods and "lrp_raw" in methods:
        out["lrp_canonization"] = {kind: dict(
            spearman_before_vs_after=float(np.mean([X.spearman(maps[kind][s]["lrp_raw"], maps[kind][s]["lrp"]).mean() for s in nets[kind]])),
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


SANITY_METHODS = ("gradient", "integrated_gradients")
ROAD_IMAGES = 30  # ROAD's noisy linear imputation: ~0.1 s per image and map set on 2 cores
CORRELATION_RUNS = 50  # random pixel subsets per image for faithfulness correlation


def _sanity(nets, x, y, options, progress):
    """Cascading randomisation (hand-written) and quantus' EfficientMPRT, on the first seed of
    each kind and the sanity subset; eMPRT also scores the random and Sobel baselines, which do
    not depend on the model (their level is 'no sensitivity')."""
    out = {}
    mprt = {}
    for kind in KINDS:
        net = nets[kind][min(nets[kind])]
        out[kind] = {}
        mprt[kind] = {}
        for m in SANITY_METHODS:
            fn = lambda mdl, xx, tt, m=m: attribute(m, mdl, xx, tt, **options.get(m, {}))
            try:
                out[kind][m] = X.cascading_randomisation(net, x, y, fn, progress=False)
            except (NotApplicable, ExplainError, X.MetricError) as e:
                out[kind][m] = str(e)
            for row in out[kind][m] if isinstance(out[kind][m], list) else []:
                row.pop("per_image", None)
            try:
                v = Q.efficient_mprt(net, x, y, fn)
                mprt[kind][m] = dict(zip(("mean", "lo", "hi"), X.bootstrap_ci(v)), images=len(v))
            except (NotApplicable, ExplainError, X.MetricError) as e:
                mprt[kind][m] = str(e)
        for b in BASELINES:
            fn = lambda mdl, xx, tt, b=b: baseline_maps(xx, seed=int(torch.randint(0, 2 ** 31, (1,))))[b]
            v = Q.efficient_mprt(net, x, y, fn)
            mprt[kind][f"baseline:{b}"] = dict(zip(("mean", "lo", "hi"), X.bootstrap_ci(v)), images=len(v))
    out["efficient_mprt"] = mprt
    return out


def _final_layer(nets, sources, model, n, x, y):
    out = {}
    if n != len(x):
        x, y, _ = sources.eval_data(model, n, seed=1)
    for kind in KINDS:
        rows = []
        for s in sorted(nets[kind]):
            try:
                feats, w, b, rank = _final_layer_data(nets[kind][s], x)
            except NotApplicable as e:
                rows.append(dict(seed=s, skipped=str(e)))
                continue
            r = class_subsets(feats, w, b, y.numpy(), rank_scores=rank)
            r.pop("subsets")
            rows.append(dict(r, seed=s, ranked_by="pre-sign value" if rank is not None else "weight x activation"))
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
                   "not supported" if not above or (rel is not None and rel < 0.5) else "undetermined (one FP seed: no ceiling)")
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
    from scipy.ndimage import binary_dilation
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


CNV_DEFAULTS = dict(images=20, neuromask_steps=300)


def _is_mlp(model):
    from model import zoo
    try:
        sp = zoo.spec(model)
        return (sp.kind or zoo.kind_of(zoo.build(model))) == "mlp"
    except ValueError:
        return True


def hardware_occlusion(res, model, board, patch, stride, root, n_images=10):
    """Occlusion map rebuilt from the simulated accelerator's outputs vs the reference's map."""
    from sim.occlusion import run
    net = res["_nets"]["bnn"][min(res["_nets"]["bnn"])]
    imgs = res["_imgs"][:n_images]
    y = torch.as_tensor(res["labels"][:n_images])
    try:
        hw = run(model=model, board=board, images=occlusion_inputs(imgs, patch, stride, layout="NHWC"),
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

def _png(fig):
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figures(res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = {}
    acc = res["accuracy"]
    fig, ax = plt.subplots(figsize=(5, 2.6))
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
        fig, axes = plt.subplots(3, 1, figsize=(0.8 * len(cols), 2.8))
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
        fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
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
    fig, ax = plt.subplots(figsize=(5, 2.6))
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
                columns=QUANTUS_COLUMNS, rows=rows, mprt=mprt, mprt_images=met.get("efficient_mprt_images"))


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


def _atomic_write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    doc["methods"] = res["methods"]
    _atomic_write(out / "report.json", json.dumps(doc, indent=1) + "\n")
    _atomic_write(out / "index.html", render_html(res, board, hw, hw_equal, hw_reason, figs))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tfc-w1a1")
    p.add_argument("--board", default="ulx3s", help="a board of hw.boards or 'all'")
    p.add_argument("--images", type=int, default=None, help="images explained (default 100 for MLPs, 20 for CNV)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--neuromask-steps", type=int, default=None,
                   help=f"default {METHODS['neuromask']['steps']} for MLPs, {CNV_DEFAULTS['neuromask_steps']} for CNV")
    p.add_argument("--smoothgrad-samples", type=int, default=METHODS["smoothgrad"]["samples"])
    p.add_argument("--final-images", type=int, default=1000)
    p.add_argument("--road-images", type=int, default=ROAD_IMAGES,
                   help="images scored by quantus' ROAD (noisy linear imputation is slow): the first N of --images")
    p.add_argument("--hardware-images", type=int, default=None,
                   help="test images occluded on the simulated accelerator (default 10 for MLPs, 2 for CNV)")
    p.add_argument("--root", default=None, help="build folder (default ./build)")
    p.add_argument("--twin", default=None, help="the full-precision model to compare with (default: the zoo's twin)")
    p.add_argument("--dataset", default=None, help="default: the one the BNN (seed 0) was trained on")
    a = p.parse_args(argv)
    try:
        from hw.boards import BOARDS
        from model import zoo
        if not zoo.spec(a.model).quantised:
            raise ReportError(f"--model takes the BNN ({zoo.twin_of(a.model)}); its twin {a.model} is explained alongside")
        boards = list(BOARDS) if a.board == "all" else [a.board.lower()]
        for b in boards:
            if b not in BOARDS:
                raise ReportError(f"unknown board '{b}'; known: {', '.join(BOARDS)}, all")
        methods = [m.strip() for m in a.methods.split(",") if m.strip()]
        for m in methods:
            if m not in METHODS:
                raise ReportError(f"unknown method '{m}'; known: {', '.join(METHODS)}")
        sources = Sources(a.root)
        from model.data import DATASETS
        if a.dataset is not None and a.dataset not in DATASETS:
            raise ReportError(f"unknown dataset '{a.dataset}'; known: {', '.join(DATASETS)}")
        sources.dataset = a.dataset or sources.trained_dataset(a.model, 0) or "mnist"
        if a.hardware_images is not None and a.hardware_images < 1:
            raise ReportError(f"--hardware-images must be positive, got {a.hardware_images}")
        # a CNV image costs ~100x an MLP image on the straight-through path: fewer images and
        # mask steps keep `make report MODEL=cnv-w1a1` to tens of minutes on 2 cores
        small = {} if _is_mlp(a.model) else CNV_DEFAULTS
        images = a.images or small.get("images", 100)
        steps = a.neuromask_steps or small.get("neuromask_steps", METHODS["neuromask"]["steps"])
        for what, v in (("--images", images), ("--neuromask-steps", steps)):
            if v < 1:
                raise ReportError(f"{what} must be positive, got {v}")
        if a.road_images < 1:
            raise ReportError(f"--road-images must be positive, got {a.road_images}")
        opts = {"neuromask": dict(steps=steps), "smoothgrad": dict(samples=a.smoothgrad_samples),
                "quantus": dict(road_images=a.road_images)}
        if a.hardware_images:
            opts["hardware_occlusion"] = dict(images=a.hardware_images)
        res = compute(a.model, sources, images, methods, opts, final_images=a.final_images, twin=a.twin)
        for b in boards:
            out = write_report(res, b, sources.root)
            print(f"{a.model} on {b}: {out / 'index.html'}")
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
