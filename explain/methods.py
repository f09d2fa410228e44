"""Attribution methods with one call: `attribute(method, model, x, target, **kw) -> (N, H, W)`.

x is float (N, C, H, W) with pixel = byte/256, target an int or (N,) class indices. Maps are
reduced over channels; the sign convention per method is in SIGN below:
- gradient, smoothgrad, guided_backprop: sum over channels of |d logit_target / d x| ("abs");
- gradcam: ReLU'd class activation map, upsampled bilinearly to the input ("nonneg");
- integrated_gradients, occlusion, lrp: channel sum of the signed relevance ("signed");
- neuromask: the learnt keep-mask M in [0, 1] ("nonneg").
On a BNN every gradient is the straight-through surrogate the model defines (Brevitas' STE:
identity where |pre-activation| <= 1), not a true derivative of the integer function.
"""
import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import (LRP, GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam,
                         NoiseTunnel, Occlusion, Saliency)
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule, IdentityRule

from explain.chunked import chunked
from explain.neuromask import neuromask


class ExplainError(ValueError):
    pass


class NotApplicable(RuntimeError):
    """The method does not apply to this model; str(e) is the reason shown in reports."""


METHODS = {
    "gradient": dict(),
    "smoothgrad": dict(noise=0.15, samples=50, batch=1000),
    "gradcam": dict(),
    "integrated_gradients": dict(steps=32),
    "guided_backprop": dict(),
    "occlusion": dict(patch=4, stride=2),
    "lrp": dict(canonized=True, rule="alpha1beta0", epsilon=1e-6),
    "neuromask": dict(steps=1000, lr=0.03, a=0.4, b=0.35, c=0.15, temperature=1.0, seed=0, optimizer="rmsprop"),
}
SIGN = {"gradient": "abs", "smoothgrad": "abs", "gradcam": "nonneg", "integrated_gradients": "signed",
        "guided_backprop": "abs", "occlusion": "signed", "lrp": "signed", "neuromask": "nonneg"}
INPUT_RANGE = 255 / 256  # pixel = byte/256


def _targets(target, n):
    t = torch.as_tensor(target, dtype=torch.long)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ExplainError(f"target must be an int or have shape ({n},), got {tuple(t.shape)}")
    return t.contiguous()


def _check_input(x):
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ExplainError(f"x must be a float tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    return x.detach().float()


# --- gradients ---------------------------------------------------------------------------------

def _gradient(model, x, t, **_):
    return Saliency(model).attribute(x, target=t, abs=True).sum(1)


def _smoothgrad(model, x, t, noise=0.15, samples=50, batch=1000, **_):
    # SmoothGrad averages raw gradients, the magnitude is taken afterwards (Smilkov et al.);
    # NoiseTunnel's stdevs is absolute, so sigma = noise level x input range.
    sigma = float(noise) * INPUT_RANGE
    nt = NoiseTunnel(Saliency(chunked(model)))
    per_eval = max(1, int(batch) // max(1, len(x)))
    out = nt.attribute(x, nt_type="smoothgrad", nt_samples=int(samples), stdevs=sigma, target=t,
                       abs=False, nt_samples_batch_size=min(int(samples), per_eval))
    return out.sum(1).abs()


def _integrated_gradients(model, x, t, steps=32, info=None, **_):
    attr, delta = IntegratedGradients(chunked(model)).attribute(x, baselines=torch.zeros_like(x), target=t,
                                                       n_steps=int(steps), return_convergence_delta=True)
    if info is not None:
        info["delta"] = delta.detach()
    return attr.sum(1)


class _GuidedClamp(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients (guided backprop's extra rule)
    while switch[0] is true, so one forward graph can serve both plain and guided gradients."""

    @staticmethod
    def forward(ctx, x, switch):
        ctx.switch = switch
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        # differentiable ops: with create_graph=True the result stays part of the graph
        return (g.clamp(min=0) if ctx.switch[0] else g), None


def guided_hooks(modules, switch=(True,)):
    """Forward hooks that make `modules` (activations) pass only positive gradients backwards
    (while switch[0] is true)."""
    return [m.register_forward_hook(lambda mod, inp, out: _GuidedClamp.apply(out, switch)) for m in modules]


def _guided_backprop(model, x, t, **_):
    if hasattr(model, "set_guided"):  # the BNN reference masks at its own straight-through sign
        model.set_guided(True)
        try:
            return Saliency(model).attribute(x, target=t, abs=True).sum(1)
        finally:
            model.set_guided(False)
    if any(isinstance(m, nn.ReLU) for m in model.modules()):
        return GuidedBackprop(model).attribute(x, target=t).abs().sum(1)
    acts = model.activation_modules() if hasattr(model, "activation_modules") else []
    if not acts:
        raise NotApplicable("no activation modules to guide (no nn.ReLU, set_guided or activation_modules)")
    handles = guided_hooks(acts)
    try:
        return Saliency(model).attribute(x, target=t, abs=True).sum(1)
    finally:
        for h in handles:
            h.remove()


def _gradcam(model, x, t, **_):
    layer = getattr(model, "gradcam_layer", None)
    if layer is None:
        raise NotApplicable("GradCAM needs a convolutional feature map; this model is an MLP (no gradcam_layer)")
    cam = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
    if cam.dim() != 4:
        raise NotApplicable(f"gradcam_layer output has shape {tuple(cam.shape)}, not (N, C, h, w)")
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear").sum(1)


# --- occlusion (also used by the hardware check) ------------------------------------------------

def occlusion_windows(h, w, patch=4, stride=2):
    """(top, left) of every occlusion window, row-major, as captum's Occlusion places them
    (ceil((size - patch) / stride) + 1 positions per axis, the last one clipped at the edge)."""
    if patch > h or patch > w or stride < 1 or stride > patch:
        raise ExplainError(f"occlusion patch {patch} / stride {stride} do not fit a {h}x{w} image")
    ny, nx = int(np.ceil((h - patch) / stride)) + 1, int(np.ceil((w - patch) / stride)) + 1
    return [(i * stride, j * stride) for i in range(ny) for j in range(nx)]


def occlusion_inputs(x, patch=4, stride=2, layout="NCHW"):
    """Every image with each window set to 0, image-major: (N * P, ...), P = len(windows).
    Works on a torch float NCHW batch or on a numpy uint8 NHWC batch (layout="NHWC"), the form
    the accelerator streams; the result has the input's type and layout."""
    if layout not in ("NCHW", "NHWC"):
        raise ExplainError(f"layout must be NCHW or NHWC, got {layout}")
    ha, wa = (2, 3) if layout == "NCHW" else (1, 2)
    h, w = x.shape[ha], x.shape[wa]
    wins = occlusion_windows(h, w, patch, stride)
    rep = x.repeat_interleave(len(wins), 0) if isinstance(x, torch.Tensor) else np.repeat(x, len(wins), 0)
    if isinstance(rep, torch.Tensor):
        rep = rep.clone()
    for k, (i, j) in enumerate(wins):
        sl = [slice(k, None, len(wins)), slice(None), slice(None), slice(None)]
        sl[ha], sl[wa] = slice(i, i + patch), slice(j, j + patch)
        rep[tuple(sl)] = 0
    return rep


def occlusion_map(base_logits, occluded_logits, target, h, w, patch=4, stride=2, channels=1):
    """Rebuild the occlusion map from model outputs: per pixel the mean over the windows that
    cover it of (base - occluded) target score, times `channels` (captum occludes every
    channel and our maps are channel sums). Identical to captum's Occlusion for the same outputs."""
    base = torch.as_tensor(np.asarray(base_logits), dtype=torch.float64)
    occ = torch.as_tensor(np.asarray(occluded_logits), dtype=torch.float64)
    n = base.shape[0]
    wins = occlusion_windows(h, w, patch, stride)
    if occ.shape[0] != n * len(wins):
        raise ExplainError(f"expected {n * len(wins)} occluded outputs ({n} images x {len(wins)} windows), got {occ.shape[0]}")
    t = _targets(target, n)
    diff = (base.gather(1, t[:, None]) - occ.reshape(n, len(wins), -1).gather(2, t[:, None, None].expand(n, len(wins), 1))[..., 0])
    total = torch.zeros(n, h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for k, (i, j) in enumerate(wins):
        total[:, i:i + patch, j:j + patch] += diff[:, k, None, None]
        count[i:i + patch, j:j + patch] += 1
    return (total / count * channels).float()


def _occlusion(model, x, t, patch=4, stride=2, batch=2000, **_):
    c = x.shape[1]
    per_eval = max(1, int(batch) // max(1, len(x)))
    out = Occlusion(chunked(model)).attribute(x, sliding_window_shapes=(c, patch, patch), strides=(c, stride, stride),
                                     baselines=0, target=t, perturbations_per_eval=per_eval)
    return out.sum(1)


# --- LRP ---------------------------------------------------------------------------------------

def Pass():
    """Identity captum's LRP can walk: it treats Dropout like ReLU (relevance passes unchanged),
    whereas an nn.Identity leaf has no rule, and a custom pass-through rule on a module that
    returns its input tensor breaks captum's tensor hooks."""
    return nn.Dropout(0.0)


def canonize(model):
    """A copy of a plain-torch model with every BatchNorm folded into the Linear/Conv2d registered
    just before it (w' = w g/sd, b' = (b - mu) g/sd + beta; Motzkus et al.). Assumes modules are
    registered in forward order, as in the zoo; the caller checks outputs are unchanged."""
    m = copy.deepcopy(model).eval()
    prev = None
    for parent in list(m.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                prev = child
            elif isinstance(child, nn.modules.batchnorm._BatchNorm) and prev is not None:
                sd = torch.sqrt(child.running_var + child.eps)
                g = child.weight.detach() if child.affine else torch.ones_like(sd)
                beta = child.bias.detach() if child.affine else torch.zeros_like(sd)
                shape = (-1,) + (1,) * (prev.weight.dim() - 1)
                with torch.no_grad():
                    prev.weight.mul_((g / sd).reshape(shape))
                    b = prev.bias.detach() if prev.bias is not None else torch.zeros_like(sd)
                    prev.bias = nn.Parameter((b - child.running_mean) * g / sd + beta)
                setattr(parent, name, Pass())
                prev = None
            elif len(list(child.children())) == 0 and not isinstance(child, (nn.Identity, nn.Dropout)):
                prev = None  # something else in between: folding across it would be wrong
    return m


def _replace_identities(model):
    # aliases (e.g. a `gradcam_layer` attribute naming a module of `features`) would make captum
    # visit the module twice and fail; forward does not use the alias registration
    seen = set()

    def dedupe(parent):
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in seen:
                del parent._modules[name]
                continue
            seen.add(id(child))
            dedupe(child)

    dedupe(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Identity or (type(child) is nn.Sequential and len(child) == 0):
                setattr(parent, name, Pass())


LRP_RULES = {"epsilon": lambda eps: EpsilonRule(eps), "alpha1beta0": lambda eps: Alpha1_Beta0_Rule(),
             "gamma": lambda eps: GammaRule()}


def _straight_through(mod, inp, out):
    x = inp[0] if inp else None
    if isinstance(out, torch.Tensor) and not out.requires_grad and x is not None and x.requires_grad and x.shape == out.shape:
        return x + (out - x).detach()
    return None


def _reshapers(model, x):
    """Parameter-free leaves whose output has another shape than their input (flatten/permute)."""
    found, handles = set(), []
    for mod in model.modules():
        if not len(list(mod.children())):
            handles.append(mod.register_forward_hook(
                lambda m, i, o: found.add(m) if i and isinstance(o, torch.Tensor) and o.shape != i[0].shape else None))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return found


def _attach_rules(model, rule, epsilon, x):
    """`rule` on Linear/Conv2d; BatchNorm gets the epsilon rule (what canonization removes);
    parameter-free elementwise modules (Sign, Identity, HardTanh, quantisers) pass relevance
    through unchanged. Note: with the epsilon rule on every layer (eps -> 0) folding BatchNorm
    changes nothing (relevance = gradient x input for piecewise-linear chains); canonization
    matters for rules such as alpha1beta0 / gamma that treat weights and biases unequally."""
    if rule not in LRP_RULES:
        raise ExplainError(f"unknown LRP rule '{rule}'; known: {', '.join(LRP_RULES)}")
    reshapers = _reshapers(model, x)
    known = (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Dropout, nn.Tanh)
    for mod in model.modules():
        if len(list(mod.children())) or hasattr(mod, "rule"):
            continue
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            mod.rule = LRP_RULES[rule](epsilon)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.rule = EpsilonRule(epsilon)
        elif not isinstance(mod, known):
            if any(True for _ in mod.parameters(recurse=False)):
                raise NotApplicable(f"LRP: no rule for layer type {type(mod).__name__} with parameters")
            # a pure rearrangement under the epsilon rule moves relevance exactly (out is a
            # permutation of in); the identity rule needs equal shapes
            mod.rule = EpsilonRule(epsilon) if mod in reshapers else IdentityRule()
            # a quantiser/sign that computes its output without autograd (counting thresholds)
            # gives captum nothing to hook: attach it straight-through to its input
            mod.register_forward_hook(_straight_through)


def lrp_model(model, canonized=True):
    """The plain-torch model LRP runs on, checked to compute the same outputs as `model`."""
    if hasattr(model, "float_twin"):
        twin = model.float_twin(canonized=canonized)
    else:
        if any(type(m).__module__.startswith("brevitas") for m in model.modules()):
            raise NotApplicable("LRP needs plain torch layers: this Brevitas model has no float_twin()")
        twin = canonize(model) if canonized else copy.deepcopy(model)
    return twin.eval()


def _lrp(model, x, t, canonized=True, rule="alpha1beta0", epsilon=1e-6, info=None, **_):
    twin = lrp_model(model, canonized)
    with torch.no_grad():
        want, got = model(x), twin(x)
    err = (want - got).abs().max().item()
    if err > 1e-3 * max(1.0, want.abs().max().item()):
        raise ExplainError(f"LRP twin differs from the model by {err:.3g}: its relevances would explain another function")
    _replace_identities(twin)
    _attach_rules(twin, rule, epsilon, x)
    attr, delta = LRP(twin).attribute(x.clone().requires_grad_(True), target=t, return_convergence_delta=True)
    if info is not None:
        info["delta"] = delta.detach()
    return attr.detach().sum(1)


# --- dispatch ----------------------------------------------------------------------------------

_IMPL = {"gradient": _gradient, "smoothgrad": _smoothgrad, "gradcam": _gradcam,
         "integrated_gradients": _integrated_gradients, "guided_backprop": _guided_backprop,
         "occlusion": _occlusion, "lrp": _lrp, "neuromask": neuromask}


def method_names(text):
    """A comma-separated method list from a command line, each name checked against METHODS."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        if m not in METHODS:
            raise ExplainError(f"unknown method '{m}'; known: {', '.join(METHODS)}")
    return names


def attribute(method, model, x, target, return_info=False, **kw):
    """Map (N, H, W) of `method` for `model` at inputs x and classes target; with
    return_info=True also a dict (integrated_gradients / lrp: per-image convergence "delta")."""
    if method not in _IMPL:
        raise ExplainError(f"unknown method '{method}'; known: {', '.join(METHODS)}")
    unknown = set(kw) - set(METHODS[method]) - {"batch"}
    if unknown:
        raise ExplainError(f"{method}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(METHODS[method])}")
    x = _check_input(x)
    t = _targets(target, len(x))
    opts = dict(METHODS[method], **kw)
    info = {}
    was_training = model.training
    model.eval()
    try:
        if method in ("integrated_gradients", "lrp"):
            opts["info"] = info
        out = _IMPL[method](model, x, t, **opts).detach().float()
    finally:
        model.train(was_training)
    return (out, info) if return_info else out
