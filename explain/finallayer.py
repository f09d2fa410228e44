"""Class-specific feature subsets of the final layer (after Badola et al., arXiv 2112.07719).

Given penultimate features a (N, D), final weights W (K, D), bias b (K,) and labels: for each
class c, rank features by their mean contribution W[c, j] * s_j over c's images (s = a, or for a
BNN, whose binary features tie, the pre-sign accumulator), and find the smallest top-m subset
S_c such that, with class c's logit computed from S_c only (other logits unchanged), the original
decision is kept for at least `share` of c's images the full layer gets right. Then the
decomposed layer logit_k = sum_{j in S_k} W[k, j] a_j + b_k is scored on all images (no fine-tuning).
Channels are not aligned across models: compare sizes and concentration, never indices.
"""
import numpy as np
import torch

from explain.methods import NotApplicable


class FinalLayerError(ValueError):
    pass


def class_subsets(features, weight, bias, labels, share=0.9, rank_scores=None):
    a = np.asarray(features, np.float64)
    W = np.asarray(weight, np.float64)
    b = np.zeros(W.shape[0]) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    s = a if rank_scores is None else np.asarray(rank_scores, np.float64)
    if a.ndim != 2 or W.ndim != 2 or W.shape[1] != a.shape[1] or b.shape[0] != W.shape[0]:
        raise FinalLayerError(f"shapes do not fit: features {a.shape}, weight {W.shape}, bias {b.shape}")
    if len(y) != len(a) or s.shape != a.shape:
        raise FinalLayerError(f"labels {y.shape} / rank_scores {s.shape} do not match features {a.shape}")
    if not 0 < share <= 1:
        raise FinalLayerError(f"share must be in (0, 1], got {share}")
    K, D = W.shape
    full = a @ W.T + b
    pred = full.argmax(1)
    subsets, sizes, kept = {}, {}, {}
    for c in range(K):
        idx = np.where((y == c) & (pred == c))[0]
        if len(idx) == 0:
            continue
        order = np.argsort(-(W[c] * s[idx]).mean(0), kind="stable")
        contrib = W[c][order] * a[idx][:, order]                      # (n_c, D) in rank order
        partial = np.cumsum(contrib, 1) + b[c]                         # logit c from top-m, m = 1..D
        others = np.delete(full[idx], c, axis=1).max(1)
        ok = (partial > others[:, None]).mean(0)                      # share kept per m
        m = int(np.argmax(ok >= share)) + 1 if (ok >= share).any() else D
        subsets[c], sizes[c], kept[c] = order[:m].tolist(), m, float(ok[m - 1])
    mask = np.zeros((K, D))
    for c, js in subsets.items():
        mask[c, js] = 1
    for c in range(K):
        if c not in subsets:
            mask[c] = 1  # no correctly classified example: keep the class whole
    restricted = a @ (W * mask).T + b
    sets = [set(v) for v in subsets.values()]
    jac = [len(p & q) / len(p | q) for i, p in enumerate(sets) for q in sets[i + 1:] if p | q]
    return dict(share=share, features=D, subset_sizes={int(c): int(m) for c, m in sizes.items()},
                kept_share={int(c): v for c, v in kept.items()},
                mean_subset_size=float(np.mean(list(sizes.values()))) if sizes else float("nan"),
                mean_subset_fraction=float(np.mean(list(sizes.values())) / D) if sizes else float("nan"),
                subsets={int(c): v for c, v in subsets.items()},
                full_accuracy=float((pred == y).mean()), restricted_accuracy=float((restricted.argmax(1) == y).mean()),
                mean_pairwise_jaccard=float(np.mean(jac)) if jac else float("nan"))


# --- the final layer of a BitLens model ---------------------------------------------------------

def final_layer_data(net, x):
    """(features, weight, bias, rank scores or None) of a net's final layer on inputs x."""
    if hasattr(net, "final_layer_inputs"):
        d = net.final_layer_inputs(x)
        return d["features"], d["weight"], d["bias"], d.get("rank_scores")
    if hasattr(net, "plan") and hasattr(net, "stages") and hasattr(net, "out_scale"):
        return reference_final_layer(net, x)
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


def reference_final_layer(ref, x):
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
