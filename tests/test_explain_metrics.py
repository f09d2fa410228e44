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
