"""Chunked forwards give the whole-batch results; the CNV settings reach compute and the page."""
import numpy as np
import pytest
import torch

from explain import chunked as C
from explain import metrics as X
from explain import report as R
from explain import tasks as T
from explain.methods import attribute
from explain.neuromask import neuromask
from tests.explain.standins import SIZE, StandIns, Tiny

torch.set_num_threads(1)


def _data(n=6):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 1, SIZE, SIZE, generator=g), torch.arange(n) % 10


def _maps(net, x, y):
    out = {}
    for m, kw in (("smoothgrad", dict(samples=4)), ("integrated_gradients", dict(steps=8)), ("occlusion", {}),
                  ("neuromask", dict(steps=5))):
        torch.manual_seed(0)
        out[m] = attribute(m, net, x, y, **kw)
    out["deletion"] = torch.as_tensor(X.deletion_auc(net, x, out["occlusion"], y, steps=6))
    return out


@pytest.mark.parametrize("binary", [True, False])
def test_chunked_forwards_give_the_whole_batch_maps(monkeypatch, binary):
    net, (x, y) = Tiny(binary, True, 5), _data()
    monkeypatch.setattr(C, "CHUNK", 10 ** 6)
    whole = _maps(net, x, y)
    monkeypatch.setattr(C, "CHUNK", 4)   # every call above sees more than 4 images: split
    calls = []
    h = net.register_forward_pre_hook(lambda m, i: calls.append(len(i[0])))
    parts = _maps(net, x, y)
    h.remove()
    assert max(calls) <= 6   # gradcam-free methods: at most the batch itself, never the expanded one
    for m in whole:
        assert torch.allclose(whole[m], parts[m], atol=1e-6, rtol=1e-5), m


def test_neuromask_snapshots_are_the_shorter_runs():
    net, (x, y) = Tiny(True, True, 6), _data(4)
    five = neuromask(net, x, y, steps=5)
    final, snaps = neuromask(net, x, y, steps=12, snapshots={0, 5, 12})
    assert set(snaps) == {0, 5, 12}
    assert torch.allclose(snaps[5], five) and torch.equal(snaps[12], final)
    assert not torch.allclose(snaps[5], final)


def test_faithfulness_correlation_only_on_its_subset(tmp_path):
    src = StandIns(tmp_path, conv=False)
    maps = np.random.default_rng(0).random((10, SIZE, SIZE))
    out = T.score_task(src, "tfc-w1a1", "bnn", "tfc-w1a1", 0, 20, 10, 20, maps, 4, 0, 5, corr_images=14)
    c = out["faithfulness_correlation"]
    assert np.isfinite(c[:4]).all() and np.isnan(c[4:]).all() and np.isnan(out["road"]).all()


def test_cnv_settings_survive_a_caller_that_names_only_some():
    opts = R.with_defaults("cnv-w1a1", {"quantus": dict(road_images=7), "smoothgrad": dict(samples=9)})
    assert opts["quantus"] == dict(road_images=7, correlation_runs=R.CORRELATION_RUNS,
                                   correlation_images=R.CNV_DEFAULTS["correlation_images"])
    assert opts["smoothgrad"] == dict(samples=9)
    assert opts["integrated_gradients"]["steps"] == R.CNV_DEFAULTS["ig_steps"] < 32
    assert opts["neuromask"]["steps"] == R.CNV_DEFAULTS["neuromask_steps"]
    assert "correlation_images" not in R.with_defaults("tfc-w1a1", {})["quantus"]
