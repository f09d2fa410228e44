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
    """Quantised activation on the pre-activation y: r = s * (m * #(y >= theta_k) + o)."""

    def __init__(self, theta, act):
        super().__init__()
        self.register_buffer("theta", torch.tensor(theta, dtype=torch.float32))
        self.s, self.m, self.o = act["scale"], act["mult"], act["offset"]
        self.relu = act.get("relu", False)

    def forward(self, y):
        yy = y.clamp(min=0) if self.relu else y
        count = (yy.unsqueeze(-1) >= self.theta).sum(-1).to(y.dtype)
        return self.s * (self.m * count + self.o)


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
        if kind == "linear":
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
            layers.append(Sign(lm["theta"], act))
            if ref.gradcam_layer is ref.stages[arg + 1]:
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
