"""Metrics taken from quantus (reviewed implementations), on BitLens' maps and models.

quantus calls models on numpy NCHW batches and randomises them through `reset_parameters`.
`QuantusNet` wraps a BitLens model (the BNN's bit-exact reference or a torch twin, float NCHW
with pixel = byte/256) so that quantus sees exactly the layers `metrics.randomisable_layers`
finds, each randomised by shuffling its weights (`metrics.randomise_layer`: binary stays binary,
BatchNorm untouched), the same randomisation as the hand-written cascading test.

Per image, (N,) arrays:
- road: ROAD (Rong et al. 2022), most-relevant-first removal with noisy linear imputation;
  mean accuracy over the removed fractions in ROAD_PERCENTAGES. Lower = more faithful.
- faithfulness_correlation (Bhatt et al. 2020): Pearson of the summed attribution of random
  pixel subsets set to 0 and the drop of the label's logit. Higher = more faithful.
- sparseness (Chalasani et al. 2020, Gini of |map|): higher = sparser.
- complexity (Bhatt et al. 2020, entropy of |map|): lower = simpler.
- efficient_mprt (Hedström et al. 2023): relative rise of the map's discrete entropy when the
  model is fully randomised (top layer first). Higher = more sensitive to the model.
"""
import numpy as np
import torch

from explain import metrics as X

ROAD_PERCENTAGES = list(range(5, 100, 10))  # 10 removal fractions (quantus' default is 50: 5x cost)


def version():
    import quantus
    return quantus.__version__


class _Handle(torch.nn.Module):
    """What quantus randomises: reset_parameters() shuffles one layer of the wrapped model."""

    def __init__(self, layer):
        super().__init__()
        self.__dict__["layer"] = layer  # not a child: quantus must not see the layer's own reset

    def reset_parameters(self):
        X.randomise_layer(self.layer, torch.default_generator)  # quantus seeds torch before each call


class QuantusNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.__dict__["net"] = net  # hidden from named_modules(): only the handles are randomised
        self.handles = torch.nn.ModuleList([_Handle(m) for _, m in X.randomisable_layers(net)[::-1]])
        net.eval()
        self.eval()

    def forward(self, x):
        return self.net(x)


def _q():
    import quantus
    return quantus


def _arrays(x, y, maps):
    xb = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float32)
    yb = (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).astype(np.int64)
    if yb.ndim == 0:
        yb = np.full(len(xb), int(yb))
    a = X._np(maps).astype(np.float32)[:, None]
    if a.shape[0] != xb.shape[0] or a.shape[2:] != xb.shape[2:]:
        raise X.MetricError(f"maps {a.shape} do not match images {xb.shape}")
    return xb, yb, a


def _nonzero(fn):
    """quantus refuses an all-zero map (nothing to order): those images score nan."""
    def wrapped(net, x, y, maps, *args, **kw):
        a = X._np(maps)
        ok = np.abs(a).reshape(len(a), -1).max(1) > 0
        out = np.full(len(a), np.nan)
        if ok.any():
            idx = np.where(ok)[0]
            t = torch.as_tensor(y)
            out[ok] = fn(net, x[idx], t if t.dim() == 0 else t[idx], a[ok], *args, **kw)
        return out
    return wrapped


def _call(metric, net, x, y, maps, **kw):
    xb, yb, a = _arrays(x, y, maps)
    model = QuantusNet(net) if net is not None else None
    out = metric(model=model, x_batch=xb, y_batch=yb, a_batch=a, channel_first=True, softmax=False,
                 device="cpu", batch_size=len(xb), **kw)
    return metric, out


class _ROAD:
    @staticmethod
    def make(percentages, noise):
        q = _q()

        class ROAD(q.ROAD):
            def custom_postprocess(self, **kwargs):  # keep per-image results (quantus keeps the mean of batch 0)
                self.per_image = np.concatenate(self.evaluation_scores, 0)
                super().custom_postprocess(**kwargs)
        return ROAD(percentages=percentages, noise=noise, abs=False, normalise=True, disable_warnings=True,
                    return_aggregate=False)


@_nonzero
def road(net, x, y, maps, percentages=None, noise=0.01, seed=0):
    """(N,) share of removal fractions after which the label is still predicted (lower = better)."""
    np.random.seed(seed)
    metric = _ROAD.make(list(percentages or ROAD_PERCENTAGES), noise)
    _call(metric, net, x, y, maps)
    return metric.per_image.astype(np.float64).mean(1)


@_nonzero
def faithfulness_correlation(net, x, y, maps, runs=50, subset=0.125, seed=0):
    q = _q()
    n_features = int(np.prod(np.shape(x)[1:]))
    np.random.seed(seed)
    metric = q.FaithfulnessCorrelation(nr_runs=runs, subset_size=max(1, int(subset * n_features)), abs=False,
                                       normalise=True, perturb_func_kwargs=dict(perturb_baseline="black"),
                                       return_aggregate=False, disable_warnings=True)
    return np.nan_to_num(np.asarray(_call(metric, net, x, y, maps)[1], np.float64), nan=0.0)


@_nonzero
def _sparseness(_, x, y, maps):
    m = _q().Sparseness(return_aggregate=False, disable_warnings=True)
    return np.asarray(_call(m, None, x, y, maps)[1], np.float64)


@_nonzero
def _complexity(_, x, y, maps):
    m = _q().Complexity(return_aggregate=False, disable_warnings=True)
    return np.asarray(_call(m, None, x, y, maps)[1], np.float64)


def sparseness(x, maps):
    """(N,) Gini index of |map| (higher = sparser); an all-zero map scores nan."""
    return _sparseness(None, x, 0, maps)


def complexity(x, maps):
    """(N,) entropy of |map| (lower = simpler); an all-zero map scores nan."""
    return _complexity(None, x, 0, maps)


def efficient_mprt(net, x, y, explain, seed=42):
    """explain(model, x tensor, y tensor) -> (N, H, W); (N,) relative entropy rise."""
    q = _q()

    def fn(model, inputs, targets, **_):
        mdl = model.net if isinstance(model, QuantusNet) else model
        out = explain(mdl, torch.as_tensor(np.asarray(inputs), dtype=torch.float32),
                      torch.as_tensor(np.asarray(targets), dtype=torch.long))
        return X._np(out).astype(np.float32)[:, None]

    metric = q.EfficientMPRT(layer_order="top_down", seed=seed, skip_layers=True, abs=True, normalise=False,
                             return_aggregate=False, disable_warnings=True)
    xb, yb, _ = _arrays(x, y, np.zeros(np.shape(x)[:1] + np.shape(x)[2:]))
    out = metric(model=QuantusNet(net), x_batch=xb, y_batch=yb, a_batch=None, explain_func=fn, channel_first=True,
                 softmax=True, device="cpu", batch_size=len(xb))
    out = np.asarray(out, np.float64)  # an original map of zero entropy (constant) gives 0/0 or x/0: nan
    return np.where(np.isfinite(out), out, np.nan)


def random_maps(n, h, w, seed=0):
    """The random baseline: i.i.d. uniform maps."""
    return np.random.default_rng(seed).random((n, h, w))


PER_MAP = ("road", "faithfulness_correlation", "sparseness", "complexity")


def score(net, x, y, maps):
    """Every per-map quantus metric of maps for net: {name: (N,)}."""
    return dict(road=road(net, x, y, maps), faithfulness_correlation=faithfulness_correlation(net, x, y, maps),
                sparseness=sparseness(x, maps), complexity=complexity(x, maps))
