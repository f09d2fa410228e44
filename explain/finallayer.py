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
