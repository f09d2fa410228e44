"""Guided-gradient regulariser (Torres Figueroa et al., VISAPP 2024): R = 1 - cos(plain input
gradient, guided-backprop input gradient), per image, averaged. Train with CE + lam * R
(paper: lam = 7.5e-3). The gradient is of the target-class logit (the paper leaves logit vs loss
open; the logit keeps R independent of how confident the model already is).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from explain.methods import guided_hooks

_GUIDED = [False]  # read during backward: one forward graph serves both gradients


def guided_gradient_loss(model, x, y, activations):
    """1 - cosine(plain, guided) input gradients of the logits of classes y; differentiable in the
    model parameters. `activations`: the modules after which negative gradients are dropped
    (nn.ReLU of an FP net; QuantIdentity / QuantHardTanh of a Brevitas BNN)."""
    if not activations:
        raise ValueError("guided_gradient_loss: no activation modules given")
    bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    # the training step's own forward already updated the BatchNorm statistics: momentum 0 keeps
    # them (restoring them afterwards in place would break the saved autograd graph)
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bn]
    for m in bn:
        m.momentum = 0.0
    handles = guided_hooks(activations, _GUIDED)
    try:
        xi = x.detach().clone().requires_grad_(True)
        score = model(xi).gather(1, y.reshape(-1, 1)).sum()
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for m, (mom, nb) in zip(bn, saved):
                m.momentum = mom
                m.num_batches_tracked.copy_(nb)
    try:
        _GUIDED[0] = False
        (plain,) = torch.autograd.grad(score, xi, create_graph=True, retain_graph=True)
        _GUIDED[0] = True
        (guided,) = torch.autograd.grad(score, xi, create_graph=True, retain_graph=True)
    finally:
        _GUIDED[0] = False
    cos = F.cosine_similarity(plain.flatten(1), guided.flatten(1), dim=1, eps=1e-12)
    return (1 - cos).mean()
