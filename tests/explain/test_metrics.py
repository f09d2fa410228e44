import numpy as np
import pytest
import torch
import torch.nn as nn

from explain import metrics as X
from explain.finallayer import FinalLayerError, class_subsets

torch.set_num_threads(1)


def smooth_maps(n=4, size=16, seed=0):
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(seed)
    return np.stack([np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / 20) for c in rng.uniform(4, 12, (n, 2))])


def test_identical_maps_have_similarity_one_and_permuted_maps_less():
    a = smooth_maps()
    assert np.allclose(X.ssim(a, a), 1) and np.allclose(X.spearman(a, a), 1)
    assert np.allclose(X.topk_intersection(a, a, 0.1), 1)
    p = X.permuted_maps(a)
    assert (X.ssim(a, p) < 0.5).all() and (X.spearman(a, p) < 0.5).all()
    assert X.topk_intersection(a, p, 0.1).mean() < 0.5
    # scale and sign do not matter: maps are compared as |map| / max
    assert np.allclose(X.spearman(a, -3 * a), 1)


def test_noise_raises_total_variation_and_high_frequency_energy():
    a = smooth_maps()
    noisy = a + np.random.default_rng(1).normal(0, 0.3, a.shape)
    assert (X.total_variation(noisy) > X.total_variation(a)).all()
    assert (X.high_frequency_energy(noisy) > X.high_frequency_energy(a)).all()
    assert (X.high_frequency_energy(np.ones((1, 8, 8))) == 0).all()


class Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        s = (torch.flatten(x, 1) * self.w.flatten()).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_deletion_and_insertion_rank_a_perfect_ordering_above_the_reversed_one():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 8, 8, generator=g)
    net = Linear(w)
    x = torch.rand(6, 1, 8, 8, generator=g)
    contrib = (x * w)[:, 0]
    good, bad = X.deletion_auc(net, x, contrib, 0, steps=16), X.deletion_auc(net, x, -contrib, 0, steps=16)
    assert (good < bad).all()
    ins_good = X.insertion_auc(net, x, contrib, 0, steps=16, baseline="zero")
    ins_bad = X.insertion_auc(net, x, -contrib, 0, steps=16, baseline="zero")
    assert (ins_good > ins_bad).all()
    auc, curve = X.deletion_auc(net, x, contrib, 0, steps=16, return_curve=True)
    assert curve.shape == (6, 17) and np.allclose(curve[:, -1], 0.5)  # all deleted: logits 0, 0


def test_cascading_randomisation_drops_gradient_similarity():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3)).eval()
    bn = net[2].running_mean.clone()
    x, t = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    from explain.methods import attribute
    rows = X.cascading_randomisation(net, x, t, lambda m, x, t: attribute("gradient", m, x, t))
    assert [r["layer"] for r in rows] == ["none", "4", "1"]  # top first, BatchNorm untouched
    assert rows[0]["similarity"] == pytest.approx(1.0)
    assert rows[-1]["similarity"] < 0.5
    assert torch.equal(net[2].running_mean, bn)  # the original model is not modified


def test_statistics():
    m, lo, hi = X.mean_ci([1.0, 2.0, 3.0])
    assert m == 2 and lo < 2 < hi and hi - lo == pytest.approx(2 * 4.302653 * 1 / np.sqrt(3), rel=1e-4)
    b = X.bootstrap_ci(np.arange(100.0))
    assert b[1] < 49.5 < b[2]
    a = np.arange(20.0)
    p, eff = X.wilcoxon(a + 1, a)
    assert p < 0.001 and eff == 1.0
    assert X.wilcoxon(a, a) == (1.0, 0.0)
    assert np.allclose(X.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_final_layer_subsets_on_a_constructed_problem():
    # class c is decided by features 2c and 2c+1 only; the rest is small noise
    rng = np.random.default_rng(0)
    K, D, n = 3, 10, 60
    y = np.repeat(np.arange(K), n // K)
    a = rng.normal(0, 0.05, (n, D))
    W = np.zeros((K, D))
    for c in range(K):
        a[y == c, 2 * c] += 1
        a[y == c, 2 * c + 1] += 1
        W[c, 2 * c: 2 * c + 2] = 1
    W += rng.normal(0, 0.01, W.shape)
    r = class_subsets(a, W, np.zeros(K), y, share=0.9)
    assert r["full_accuracy"] == 1.0
    for c in range(K):
        assert set(r["subsets"][c]) <= {2 * c, 2 * c + 1} and 1 <= r["subset_sizes"][c] <= 2
    assert r["restricted_accuracy"] >= 0.9
    with pytest.raises(FinalLayerError, match="shapes"):
        class_subsets(a, W[:, :5], None, y)


# --- closed forms ------------------------------------------------------------------------------

def test_noise_metrics_match_closed_forms():
    step = np.zeros((1, 4, 4))
    step[:, :, 2:] = 1  # one vertical edge: rows constant, 1 of 3 column differences is 1
    assert X.total_variation(step)[0] == pytest.approx((0 + 1 / 3) / 2)
    checker = (np.indices((8, 8)).sum(0) % 2)[None].astype(float)  # all energy at (0.5, 0.5) cycles/px
    assert X.high_frequency_energy(checker)[0] == pytest.approx(1.0)
    slow = (1 + np.cos(2 * np.pi * np.arange(16) / 16))[None, None, :].repeat(16, 1)  # 1/16 cycles/px
    assert X.high_frequency_energy(slow)[0] == pytest.approx(0.0, abs=1e-12)


def test_similarities_match_closed_forms():
    a = np.arange(1.0, 17.0).reshape(1, 4, 4)
    assert X.spearman(a, 17 - a)[0] == pytest.approx(-1.0)  # reversed ranks
    b = a.copy()
    b[0, 0, :2] = 100  # top-2 of b: pixels 0, 1; top-2 of a: pixels 14, 15
    assert X.topk_intersection(a, b, k=2 / 16)[0] == 0.0
    b[0, 3, 3] = 200  # now b's top-2 are 15 and 0: one shared
    assert X.topk_intersection(a, b, k=2 / 16)[0] == 0.5
    m, lo, hi = X.bootstrap_ci([2.0] * 5)
    assert m == lo == hi == 2.0


class Share(nn.Module):
    """p(class 0) = weighted share of the pixels still present: softmax of log(s), log(W - s)."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float64).flatten())

    def forward(self, x):
        s = (torch.flatten(x, 1).double() * self.w).sum(1)
        return torch.stack([torch.log(s), torch.log(self.w.sum() - s)], 1)


def test_deletion_and_insertion_auc_match_closed_forms():
    net = Share([1.0, 2.0, 3.0, 4.0])  # W = 10
    x = torch.ones(1, 1, 2, 2)
    order = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # most relevant = weight 4 first
    # deletion: p = 1, .6, .3, .1, 0 at fractions 0, 1/4 ... 1; trapezoid = 1/4 (1/2 + .6 + .3 + .1 + 0/2)
    assert X.deletion_auc(net, x, order, 0, steps=4)[0] == pytest.approx(0.375)
    # insertion onto zeros: p = 0, .4, .7, .9, 1
    assert X.insertion_auc(net, x, order, 0, steps=4, baseline="zero")[0] == pytest.approx(0.625)
    # reversed order: deletion p = 1, .9, .7, .4, 0
    assert X.deletion_auc(net, x, -order, 0, steps=4)[0] == pytest.approx(0.25 * (0.5 + 0.9 + 0.7 + 0.4))


def test_randomise_layer_keeps_the_value_set():
    lin = nn.Linear(6, 5)
    before = lin.weight.detach().clone()
    X.randomise_layer(lin, torch.Generator().manual_seed(0))
    assert not torch.equal(lin.weight, before)
    assert torch.equal(lin.weight.flatten().sort().values, before.flatten().sort().values)


# --- quantus -----------------------------------------------------------------------------------

class Blob(nn.Module):
    """Class 0 iff the 4x4 centre of an 8x8 image is mostly bright; class 1 is a fixed threshold."""

    def forward(self, x):
        s = x[:, 0, 2:6, 2:6].sum((1, 2))
        return torch.stack([s, torch.full_like(s, 12.0)], 1)


def test_quantus_metrics_rank_a_perfect_map_above_the_random_baseline():
    from explain import qmetrics as Q
    n = 8
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, 2:6, 2:6] = 1.0
    y = torch.zeros(n, dtype=torch.long)
    net = Blob().eval()
    perfect = np.zeros((n, 8, 8))
    perfect[:, 2:6, 2:6] = 1.0 + 0.01 * np.random.default_rng(1).random((n, 4, 4))  # the only pixels that matter
    rand = Q.random_maps(n, 8, 8, seed=0)
    good = {k: v for k, v in Q.score(net, x, y, perfect).items()}
    bad = {k: v for k, v in Q.score(net, x, y, rand).items()}
    for k in Q.PER_MAP:
        assert good[k].shape == (n,) and np.isfinite(good[k]).all() and np.isfinite(bad[k]).all(), k
    assert good["road"].mean() < bad["road"].mean()  # removing the blob first flips the class sooner
    assert good["faithfulness_correlation"].mean() > 0.9 > 0.5 > bad["faithfulness_correlation"].mean()
    assert (good["sparseness"] > bad["sparseness"]).all() and (good["complexity"] < bad["complexity"]).all()
    assert (X.deletion_auc(net, x, perfect, y, steps=8) < X.deletion_auc(net, x, rand, y, steps=8)).all()
    zero = perfect.copy()
    zero[0] = 0  # quantus refuses an all-zero map: that image scores nan, the others are unaffected
    s = Q.sparseness(x, zero)
    assert np.isnan(s[0]) and np.allclose(s[1:], good["sparseness"][1:])


def test_ssim_sobel_wilcoxon_and_permutation_closed_forms():
    # SSIM of a constant (normalised to 1) and an all-zero map: C1 C2 / ((1 + C1) C2) = C1 / (1 + C1), C1 = 0.01^2
    assert X.ssim(np.ones((1, 8, 8)), np.zeros((1, 8, 8)))[0] == pytest.approx(1e-4 / (1 + 1e-4))
    assert X.ssim(np.arange(64.0).reshape(1, 8, 8), np.arange(64.0).reshape(1, 8, 8))[0] == pytest.approx(1.0)
    # a vertical 0 -> 1 step: on the two columns beside it |d/dx| = (1 + 2 + 1) / 4 = 1, d/dy = 0,
    # skimage's magnitude sqrt((gx^2 + gy^2) / 2) = 1/sqrt(2); zero elsewhere
    step = np.zeros((1, 1, 6, 6))
    step[..., 3:] = 1
    want = np.zeros((6, 6))
    want[:, 2:4] = 1 / np.sqrt(2)
    np.testing.assert_allclose(X.sobel_maps(step)[0], want, atol=1e-12)
    # differences 1, -2, 3: ranks 1, 2, 3, effect (1 + 3 - 2) / 6
    assert X.wilcoxon([1.0, 0.0, 3.0], [0.0, 2.0, 0.0])[1] == pytest.approx(1 / 3)
    m = np.arange(16.0).reshape(1, 4, 4)
    p = X.permuted_maps(m, seed=3)
    assert sorted(p.ravel()) == sorted(m.ravel()) and not np.array_equal(p, m)


def test_deletion_curves_of_several_images_split_over_calls_match_closed_forms():
    """Steps and images batched into one forward call or split over many give the same curve."""
    net = Share([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(2, 1, 2, 2)
    order = torch.stack([torch.tensor([[1.0, 2.0], [3.0, 4.0]]), -torch.tensor([[1.0, 2.0], [3.0, 4.0]])])
    want = [0.375, 0.25 * (0.5 + 0.9 + 0.7 + 0.4)]
    for batch in (1, 2, 3, 4096):
        auc, curve = X.deletion_auc(net, x, order, 0, steps=4, batch=batch, return_curve=True)
        np.testing.assert_allclose(auc, want)
        np.testing.assert_allclose(curve[0], [1, 0.6, 0.3, 0.1, 0], atol=1e-12)
