"""Metrics on attribution maps (N, H, W): noise, similarity, faithfulness, sanity, statistics.

Noise and similarity use |map| scaled to [0, 1] per map (`normalise`): sign conventions differ
between methods and a BNN's surrogate gradient has no meaningful global scale.
"""
import copy
import sys

import numpy as np
import torch
from scipy import stats
from scipy.ndimage import gaussian_filter
from skimage.filters import sobel
from skimage.metrics import structural_similarity
from tqdm import tqdm

from explain.chunked import chunked


class MetricError(ValueError):
    pass


def _np(maps):
    a = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    a = a.astype(np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise MetricError(f"maps must be (N, H, W), got shape {a.shape}")
    return a


def normalise(maps):
    """|map| / max|map| per map; an all-zero map stays zero."""
    a = np.abs(_np(maps))
    top = a.reshape(len(a), -1).max(1)
    return a / np.where(top > 0, top, 1.0)[:, None, None]


# --- noise -------------------------------------------------------------------------------------

def total_variation(maps):
    """Mean absolute difference between neighbouring pixels of each normalised map, (N,)."""
    a = normalise(maps)
    return np.abs(np.diff(a, axis=1)).mean((1, 2)) / 2 + np.abs(np.diff(a, axis=2)).mean((1, 2)) / 2


def high_frequency_energy(maps, radius=0.25):
    """Share of each normalised map's spectral energy (mean removed) above `radius` cycles/pixel
    (Nyquist = 0.5), (N,). A map of all-equal pixels has no energy: reported as 0."""
    a = normalise(maps)
    a = a - a.mean((1, 2), keepdims=True)
    p = np.abs(np.fft.fft2(a)) ** 2
    fy, fx = np.fft.fftfreq(a.shape[1]), np.fft.fftfreq(a.shape[2])
    high = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) > radius
    tot = p.sum((1, 2))
    return np.where(tot > 0, (p * high).sum((1, 2)) / np.where(tot > 0, tot, 1), 0.0)


# --- similarity --------------------------------------------------------------------------------

def ssim(a, b):
    """SSIM of each pair of normalised maps (data range 1), (N,)."""
    a, b = normalise(a), normalise(b)
    if a.shape != b.shape:
        raise MetricError(f"map shapes differ: {a.shape} vs {b.shape}")
    win = min(7, a.shape[1] - (1 - a.shape[1] % 2), a.shape[2] - (1 - a.shape[2] % 2))
    return np.array([structural_similarity(p, q, data_range=1.0, win_size=win) for p, q in zip(a, b)])


def spearman(a, b):
    """Spearman rank correlation of |a| and |b| per map, (N,); a constant map correlates 0."""
    a, b = normalise(a), normalise(b)
    if a.shape != b.shape:
        raise MetricError(f"map shapes differ: {a.shape} vs {b.shape}")
    ra = stats.rankdata(a.reshape(len(a), -1), axis=1)
    rb = stats.rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), 0.0)  # Pearson of ranks


def topk_intersection(a, b, k=0.1):
    """Share of the top-k fraction pixels of |a| that are also top-k of |b|, (N,)."""
    a, b = normalise(a), normalise(b)
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    n = max(1, int(round(k * fa.shape[1])))
    ia, ib = np.argsort(-fa, 1, kind="stable")[:, :n], np.argsort(-fb, 1, kind="stable")[:, :n]
    return np.array([len(np.intersect1d(p, q)) / n for p, q in zip(ia, ib)])


SIMILARITIES = {"ssim": ssim, "spearman": spearman, "topk": topk_intersection}


def sobel_maps(x):
    """Edge magnitude of each image (channel mean), the 'is it just an edge detector' reference."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.stack([sobel(img.mean(0)) for img in a])


def permuted_maps(maps, seed=0):
    """Each map with its pixels randomly permuted: same value distribution, no structure (floor)."""
    a = _np(maps)
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(m.ravel()).reshape(m.shape) for m in a])


# --- faithfulness ------------------------------------------------------------------------------

@torch.no_grad()
def _probs(model, x, t, batch):
    out = []
    for i in range(0, len(x), batch):
        out.append(torch.softmax(chunked(model)(x[i:i + batch]), 1).gather(1, t[i:i + batch, None])[:, 0])
    return torch.cat(out)


def _perturbation_curve(model, x, maps, target, steps, start, end, batch, progress, desc):
    x = x.detach().float()
    n, c, h, w = x.shape
    m = torch.as_tensor(_np(maps), dtype=torch.float64).reshape(n, -1)
    if m.shape[1] != h * w:
        raise MetricError(f"maps of {m.shape[1]} pixels do not match images of {h}x{w}")
    order = torch.argsort(-m, dim=1, stable=True)  # most relevant first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(n, -1).contiguous())
    t = torch.as_tensor(target, dtype=torch.long).expand(n).contiguous() if torch.as_tensor(target).dim() == 0 \
        else torch.as_tensor(target, dtype=torch.long)
    fracs = np.linspace(0, 1, steps + 1)
    # the curve points of several steps go through the model together: per call the native
    # reference costs about as much as a few hundred images
    per_call = max(1, batch // max(1, n))
    curve = []
    for i in tqdm(range(0, len(fracs), per_call), desc=desc, disable=not progress, leave=False, file=sys.stderr):
        ks = torch.as_tensor([int(round(f * h * w)) for f in fracs[i:i + per_call]])
        moved = (rank[None] < ks[:, None, None]).reshape(len(ks), n, 1, h, w).float()
        xs = (start * (1 - moved) + end * moved).reshape(len(ks) * n, c, h, w)
        curve.append(_probs(model, xs, t.repeat(len(ks)), batch).reshape(len(ks), n))
    curve = torch.cat(curve, 0).T.numpy()
    return np.trapezoid(curve, fracs, axis=1), curve


def deletion_auc(model, x, maps, target, steps=28, batch=4096, progress=False, return_curve=False):
    """Area under p(target) while pixels are set to 0 in decreasing attribution order, (N,).
    Lower = more faithful."""
    auc, curve = _perturbation_curve(model, x, maps, target, steps, x, torch.zeros_like(x), batch, progress, "deletion")
    return (auc, curve) if return_curve else auc


def insertion_auc(model, x, maps, target, steps=28, baseline="blur", batch=4096, progress=False, return_curve=False):
    """Area under p(target) while pixels of x are inserted in decreasing attribution order onto a
    blurred (Gaussian, sigma 3 px) or zero baseline, (N,). Higher = more faithful."""
    if baseline == "zero":
        base = torch.zeros_like(x)
    elif baseline == "blur":
        base = torch.as_tensor(gaussian_filter(x.detach().numpy(), sigma=(0, 0, 3, 3)), dtype=torch.float32)
    else:
        raise MetricError(f"insertion baseline must be 'blur' or 'zero', got {baseline!r}")
    auc, curve = _perturbation_curve(model, x, maps, target, steps, base, x.detach().float(), batch, progress, "insertion")
    return (auc, curve) if return_curve else auc


# --- sanity: cascading randomisation ---------------------------------------------------------

WEIGHT_NAMES = ("weight", "weights", "W", "thresholds", "T", "int_weight", "int_thresholds")


def randomisable_layers(model):
    """(name, module) of layers with their own weights, top (output) layer first. BatchNorm is
    not a layer here: resetting it would also move a BNN's thresholds (quantus' MPRT does)."""
    found = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            continue
        own = dict(mod.named_parameters(recurse=False)) | dict(mod.named_buffers(recurse=False))
        if any(k in own and own[k] is not None and own[k].dim() >= 1 for k in WEIGHT_NAMES):
            found.append((name, mod))
    return found[::-1]


def randomise_layer(module, gen):
    """Shuffle the layer's weights (and thresholds) in place: keeps their value set, so binary
    stays binary and integers stay integers, but destroys what was learnt."""
    own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
    with torch.no_grad():
        for k in WEIGHT_NAMES:
            v = own.get(k)
            if v is not None and v.dim() >= 1 and v.numel() > 1:
                if k in ("thresholds", "T", "int_thresholds") and v.dim() == 2:
                    v.copy_(v[torch.randperm(v.shape[0], generator=gen)])  # keep each row sorted
                else:
                    v.copy_(v.flatten()[torch.randperm(v.numel(), generator=gen)].reshape(v.shape))


def cascading_randomisation(model, x, target, explain, similarity=spearman, layers=None, seed=0, progress=False):
    """Randomise layers from the top one by one (cumulatively) on a copy of model; after each,
    similarity of explain(model_k, x, target) to the original maps. Returns
    [{"layer", "similarity" (mean), "per_image"}] starting with the untouched model (1.0 for a
    deterministic method). A method that is sensitive to the model must drop."""
    net = copy.deepcopy(model).eval()
    layers = layers if layers is not None else [n for n, _ in randomisable_layers(net)]
    mods = dict(net.named_modules())
    gen = torch.Generator().manual_seed(seed)
    ref = explain(net, x, target)
    rows = [dict(layer="none", similarity=float(np.mean(similarity(ref, ref))), per_image=similarity(ref, ref).tolist())]
    for name in tqdm(layers, desc="randomisation", disable=not progress, leave=False, file=sys.stderr):
        if name not in mods:
            raise MetricError(f"no layer named {name!r} in the model")
        randomise_layer(mods[name], gen)
        s = similarity(ref, explain(net, x, target))
        rows.append(dict(layer=name, similarity=float(np.mean(s)), per_image=s.tolist()))
    return rows


# --- statistics --------------------------------------------------------------------------------

def mean_ci(values, level=0.95):
    """Mean and t-interval (over e.g. seeds): (mean, lo, hi); one value -> no interval (nan)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2 or v.std() == 0:
        return (m, m, m) if len(v) >= 2 else (m, float("nan"), float("nan"))
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return m, float(m - half), float(m + half)


def bootstrap_ci(values, level=0.95, n_boot=2000, seed=0):
    """Mean and percentile bootstrap interval (over e.g. images): (mean, lo, hi)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def wilcoxon(a, b, alternative="two-sided"):
    """Paired Wilcoxon signed-rank test of a vs b: (p-value, rank-biserial effect size in [-1, 1],
    positive when a > b). All-equal pairs -> p 1, effect 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise MetricError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    d = d[np.isfinite(d) & (d != 0)]
    if len(d) == 0:
        return 1.0, 0.0
    p = float(stats.wilcoxon(d, alternative=alternative).pvalue)
    r = stats.rankdata(np.abs(d))
    effect = float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())
    return p, effect


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values, same order as given."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(p) - i) * p[k]))
        adj[k] = running
    return adj
