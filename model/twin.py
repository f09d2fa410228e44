"""Plain-torch float twins of the reference, for rule-based attribution (captum LRP).

canonized=True: each linear layer carries its BatchNorm folded in (weight and bias give the
pre-activation y directly) — the streamlined threshold form is exactly this restructuring.
canonized=False: linear layer, then a separate BatchNorm1d/2d mapping its output to y, as the
Brevitas model computes it. Both are functionally identical to the reference on byte/256 inputs.
"""
import numpy as np
import torch
import torch.nn as nn


class Sign(nn.Module):
    """Quantised activation on the pre-activation y: r = s * (m * #(y >= theta_ck) + o).

    theta (C, L) holds, per channel, the y-value midway between the integer accumulators on
    either side of each integer threshold T: y = a*acc + b crosses it exactly where acc >= T
    flips, with half an accumulator step of margin. The real-valued thresholds of the float
    model would put ties (acc within rounding of the boundary) on either side."""

    def __init__(self, theta, act):
        super().__init__()
        self.register_buffer("theta", torch.as_tensor(theta, dtype=torch.float32))
        self.s, self.m, self.o = act["scale"], act["mult"], act["offset"]

    def forward(self, y):
        theta = self.theta.view(1, self.theta.shape[0], *([1] * (y.dim() - 2)), self.theta.shape[1])
        count = (y.unsqueeze(-1) >= theta).sum(-1).to(y.dtype)
        return self.s * (self.m * count + self.o)


def exact_thresholds(T, a, b, theta, relu=False):
    """Per-channel y-space thresholds equivalent to "acc >= T" (T (C, L) integers, y = a*acc + b
    with a >= 0 after the streamliner's sign flips). A channel with a = 0 is constant: on for
    level k iff b >= theta_k (or relu with theta_k <= 0), as the streamliner decided it."""
    T, a, b, theta = (np.asarray(v, np.float64) for v in (T, a, b, theta))
    mid = a[:, None] * (T - 0.5) + b[:, None]
    on = (b[:, None] >= theta[None, :]) | (relu & (theta[None, :] <= 0))
    return np.where((a == 0)[:, None], np.where(on, -np.inf, np.inf), mid)


class NHWCFlatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x.permute(0, 2, 3, 1), 1) if x.dim() == 4 else x


class Twin(nn.Module):
    def __init__(self, layers, gradcam_index):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.gradcam_layer = self.layers[gradcam_index] if gradcam_index is not None else None

    def forward(self, x):
        return self.layers(x if x.dim() == 4 else x.flatten(1))


def build_twin(ref, canonized=True):
    layers, gradcam_index = [], None
    metas = [m for m in ref.meta["layers"]]
    s_in, m_in, o_in = ref.input_scale, 1.0, 0.0
    li = 0
    for kind, arg, name in ref.plan:
        if kind == "in_thresh":
            # the input quantiser's preprocessing y = scale * pixel + bias as a BatchNorm (LRP knows
            # it), then the quantiser's exact levels
            iq, thr = ref.meta["input_quant"], ref.stages[arg]
            pre = nn.BatchNorm2d(len(iq["scale"]), eps=0.0)
            pre.running_mean.data, pre.running_var.data = torch.zeros(len(iq["scale"])), torch.ones(len(iq["scale"]))
            pre.weight.data, pre.bias.data = torch.tensor(iq["scale"]).float(), torch.tensor(iq["bias"]).float()
            a = np.asarray(iq["scale"], np.float64) * ref.input_scale
            T = np.broadcast_to(thr.T.numpy(), (len(a), thr.T.shape[1]))
            layers += [pre, Sign(exact_thresholds(T, a, iq["bias"], iq["theta"]), iq["act"])]
            s_in, m_in, o_in = iq["act"]["scale"], iq["act"]["mult"], iq["act"]["offset"]
        elif kind == "linear":
            st = ref.stages[arg]
            lm = metas[li]
            li += 1
            coef = st.coef.double()                       # acc = sum c v + const
            const = st.const.double()
            a, b = torch.tensor(lm["scale"], dtype=torch.float64), torch.tensor(lm["bias"], dtype=torch.float64)
            # v = (r/s - o)/m  =>  acc = (1/(s m)) sum c r + const - (o/m) sum c
            csum = coef.flatten(1).sum(1)
            gain = 1.0 / (s_in * m_in)
            acc_w, acc_b = coef * gain, const - (o_in / m_in) * csum
            if st.conv:
                if layers and isinstance(layers[-1], NHWCFlatten):
                    layers.pop()
                lin = nn.Conv2d(coef.shape[1], coef.shape[0], tuple(st.conv["kernel"]), tuple(st.conv["stride"]),
                                padding=0, bias=True)
                shape = (-1, 1, 1, 1)
            else:
                if layers and not isinstance(layers[-1], NHWCFlatten) and _prev_spatial(layers):
                    layers.append(NHWCFlatten())
                lin = nn.Linear(coef.shape[1], coef.shape[0], bias=True)
                shape = (-1, 1)
            if canonized or lm["thresh"] is None:
                w, bias = acc_w * a.view(shape), acc_b * a + b
                lin.weight.data, lin.bias.data = w.float(), bias.float()
                layers.append(lin)
            else:
                a0, b0 = torch.tensor(lm["lin_scale"], dtype=torch.float64), torch.tensor(lm["lin_bias"], dtype=torch.float64)
                lin.weight.data = (acc_w * a0.view(shape)).float()
                lin.bias.data = (acc_b * a0 + b0).float()
                bn = (nn.BatchNorm2d if st.conv else nn.BatchNorm1d)(len(a), eps=0.0)
                bn.running_mean.data, bn.running_var.data = b0.float(), torch.ones(len(a))
                bn.weight.data, bn.bias.data = (a / a0).float(), b.float()
                layers += [lin, bn]
            if lm["thresh"] is None:
                break
            act = lm["act"]
            thr = ref.stages[arg + 1]
            layers.append(Sign(exact_thresholds(thr.T.numpy(), lm["scale"], lm["bias"], lm["theta"],
                                                act.get("relu", False)), act))
            if ref.gradcam_layer is thr:
                gradcam_index = len(layers) - 1
            s_in, m_in, o_in = act["scale"], act["mult"], act["offset"]
        elif kind == "pool":
            (kh, kw), (sh, sw) = arg
            layers.append(nn.MaxPool2d((kh, kw), (sh, sw)))
        elif kind == "flatten":
            layers.append(NHWCFlatten())
    twin = Twin(layers, gradcam_index).eval()
    return twin


def _prev_spatial(layers):
    for l in reversed(layers):
        if isinstance(l, (nn.Conv2d, nn.MaxPool2d)):
            return True
        if isinstance(l, nn.Linear):
            return False
    return False
