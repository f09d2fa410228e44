"""NeuroMask (Alzantot et al. 2019): learn a per-image keep-mask M = sigmoid(W / T) that keeps the
classifier's decision while hiding as much of the image as possible, with a smooth mask.

loss = a * CE(f(x * M), target) + b * mean|W + 10| + c * mean((Laplacian * W)^2), only W trained.
Batched: every image has its own W; the per-image losses are summed so images do not interact.
"""
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

from explain.chunked import chunked

LAPLACIAN = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])


def neuromask(model, x, target, steps=1000, lr=0.03, a=0.4, b=0.35, c=0.15, temperature=1.0, seed=0,
              optimizer="rmsprop", batch=None, progress=False, return_weights=False, snapshots=()):
    """Mask M (N, H, W) in [0, 1]: high = pixel needed for the decision on `target`. With
    `snapshots` (step counts) also {k: mask after k steps}, what a k-step run would return: the
    convergence check of fewer steps costs one run."""
    x = x.detach().float()
    n, _, h, w = x.shape
    t = torch.as_tensor(target, dtype=torch.long).expand(n) if torch.as_tensor(target).dim() == 0 \
        else torch.as_tensor(target, dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    W = (torch.rand(n, 1, h, w, generator=gen) * 20 - 10).requires_grad_(True)
    opt = (torch.optim.RMSprop if optimizer == "rmsprop" else torch.optim.Adam)([W], lr=lr)
    lap = LAPLACIAN.reshape(1, 1, 3, 3)
    f = chunked(model)
    seen = {}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # the classifier is frozen; saves computing weight gradients
        p.requires_grad_(False)
    try:
        for k in tqdm(range(int(steps)), desc="neuromask", disable=not progress, leave=False, file=sys.stderr):
            if k in snapshots:
                seen[k] = torch.sigmoid(W.detach() / temperature)[:, 0]
            M = torch.sigmoid(W / temperature)
            ce = F.cross_entropy(f(x * M), t, reduction="none")
            sparse = (W + 10).abs().mean(dim=(1, 2, 3))
            # replicate padding: a constant mask (all hidden, all kept) is perfectly smooth; zero
            # padding would pull the border towards W = 0, i.e. M = 0.5
            smooth = F.conv2d(F.pad(W, (1, 1, 1, 1), mode="replicate"), lap).pow(2).mean(dim=(1, 2, 3))
            loss = (a * ce + b * sparse + c * smooth).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in params:
            p.requires_grad_(True)
    mask = torch.sigmoid(W.detach() / temperature)[:, 0]
    if snapshots:
        if int(steps) in snapshots:
            seen[int(steps)] = mask
        return mask, seen
    return (mask, W.detach()[:, 0]) if return_weights else mask
