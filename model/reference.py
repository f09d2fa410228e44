"""The bit-exact reference, built from the streamlined graph (never from the Brevitas model).

- `predict_int(x_uint8_nhwc)`: the fast path. First layer: exact integer GEMM (all values are
  integers below 2^24, so float32 BLAS is exact); binary layers: XNOR + popcount on bit-packed
  64-bit words; thresholds; OR-pooling. Returns the accumulators the accelerator streams out.
- `forward(x)`: the differentiable path for explain/, x float (N, C, H, W) with pixel = byte/256.
  Forward values are the same integers; backward is the straight-through estimator Brevitas trains
  with (identity through rounding, zeroed where the pre-activation leaves the quantiser's range),
  or its guided variant (`set_guided(True)`: only positive gradients pass the activations).
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from qonnx.core.modelwrapper import ModelWrapper

from model import xnor_kernel
from model.streamline import StreamlineError, metadata


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper
            return helper.get_attribute_value(a)
    return default


class _STE(torch.autograd.Function):
    """Forward: the exact integer activation. Backward: grad * mask / (s*m), guided optional."""

    @staticmethod
    def forward(ctx, y, v_exact, mask, gain, guided):
        ctx.save_for_backward(mask)
        ctx.gain, ctx.guided = gain, guided
        return v_exact

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        if ctx.guided:
            g = g.clamp(min=0)
        return g * mask * ctx.gain, None, None, None, None


class ThresholdAct(nn.Module):
    """acc -> integer activation v via sorted thresholds; y = a*acc + b drives the backward pass.
    Its output is the feature map GradCAM hooks (values are the integer levels, bits for BNNs)."""

    def __init__(self, T, a, b, act):
        super().__init__()
        self.register_buffer("T", torch.tensor(T, dtype=torch.float32))
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.tensor(b, dtype=torch.float32))
        self.act, self.guided = act, False
        self.lo, self.hi = act["clip"]
        # real-valued thresholds in accumulator units: an accumulator within rounding of one is a
        # tie, where float Brevitas may land on either side
        with np.errstate(divide="ignore", invalid="ignore"):
            self.tau = (np.asarray(act["theta"])[None, :] - np.asarray(b)[:, None]) / np.asarray(a)[:, None]
        self.relu = act.get("relu", False)

    def forward(self, acc):  # acc (N, C, ...) channels on dim 1
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        a, b = self.a.view(shape), self.b.view(shape)
        y = a * acc + b
        T = self.T.view(1, self.T.shape[0], *([1] * (acc.dim() - 2)), self.T.shape[1])
        v = (acc.detach().unsqueeze(-1) >= T).sum(-1).to(acc.dtype)
        mask = ((y >= self.lo) & (y <= self.hi)).to(acc.dtype)
        if self.relu:
            mask = mask * (y > 0).to(acc.dtype)
        gain = 1.0 / (self.act["scale"] * self.act["mult"])
        return _STE.apply(y, v, mask.detach(), gain, self.guided)


class LinearStage(nn.Module):
    """A MatMul / XnorPopcountMatMul (optionally behind an Im2Col) in integer form."""

    def __init__(self, W, kind, conv=None):
        super().__init__()
        W = np.asarray(W, np.float32)  # (K, MH) in the graph's row order
        self.kind, self.conv = kind, conv
        K, MH = W.shape
        if kind == "xnor":
            # P = sum_i v_i (2w_i - 1) + sum_i (1 - w_i): popcount of matches, linear in the bits v
            coef, const = 2 * W - 1, (1 - W).sum(0)
        else:
            coef, const = W, np.zeros(MH, np.float32)
        self.register_buffer("W", torch.from_numpy(W.copy()))
        self.register_buffer("const", torch.from_numpy(const.astype(np.float32)))
        if conv:
            kh, kw = conv["kernel"]
            cin = K // (kh * kw)
            w4 = coef.reshape(kh, kw, cin, MH).transpose(3, 2, 0, 1)  # -> (Cout, Cin, kh, kw)
            self.register_buffer("coef", torch.from_numpy(np.ascontiguousarray(w4)))
        else:
            self.register_buffer("coef", torch.from_numpy(np.ascontiguousarray(coef.T)))  # (MH, K)
        self.words = _pack_words(W.T) if kind == "xnor" else None

    def forward(self, v):
        if self.conv:
            p = self.conv["pads"]
            if any(p):
                v = F.pad(v, (p[1], p[3], p[0], p[2]), value=float(self.conv.get("pad_value", 0)))
            out = F.conv2d(v, self.coef, stride=self.conv["stride"])
            return out + self.const.view(1, -1, 1, 1)
        return F.linear(v, self.coef) + self.const


class Reference(nn.Module):
    def __init__(self, graph):
        super().__init__()
        mw = graph if isinstance(graph, ModelWrapper) else ModelWrapper(str(graph))
        self.meta = meta = metadata(mw)
        layer_meta = {m["mvau"]: m for m in meta["layers"]}
        self.input_scale = float(meta["input_scale"])
        self.input_shape = tuple(meta["input_shape"])  # NHWC without batch
        self.in_max = 255 if meta["input_dtype"] == "UINT8" else None
        self.stages = nn.ModuleList()
        self.plan = []  # (kind, index into stages or params)
        pending_conv = cur_meta = None
        last_spatial_act = None
        out_scale = out_bias = None
        for node in mw.graph.node:
            op = node.op_type
            if op == "Im2Col":
                pending_conv = dict(kernel=list(_attr(node, "kernel_size")), stride=list(_attr(node, "stride")),
                                    pads=list(_attr(node, "pad_amount", [0, 0, 0, 0])),
                                    pad_value=_attr(node, "pad_value", 0))
            elif op in ("MatMul", "XnorPopcountMatMul"):
                W = mw.get_initializer(node.input[1])
                if W is None:
                    raise StreamlineError(f"node {node.name} ({op}): weights are not an initializer")
                kind = "xnor" if op == "XnorPopcountMatMul" else "int"
                if kind == "int" and not np.all(W == np.round(W)):
                    raise StreamlineError(f"node {node.name} (MatMul): weights are not integers")
                self.stages.append(LinearStage(W, kind, pending_conv))
                self.plan.append(("linear", len(self.stages) - 1, node.name))
                pending_conv = None
                cur_meta = layer_meta.get(node.name)
            elif op == "MultiThreshold":
                T = mw.get_initializer(node.input[1])
                lm = cur_meta
                if lm is None:
                    raise StreamlineError(f"node {node.name}: no BitLens metadata for its layer")
                act = ThresholdAct(T, lm["scale"], lm["bias"], dict(lm["act"], theta=lm["theta"]))
                self.stages.append(act)
                self.plan.append(("act", len(self.stages) - 1, node.name))
                if "kernel" in lm:
                    last_spatial_act = act
            elif op == "MaxPoolNHWC":
                k, s = list(_attr(node, "kernel_shape")), list(_attr(node, "strides"))
                self.plan.append(("pool", (k, s), node.name))
                if last_spatial_act is not None:
                    self.gradcam_candidate = last_spatial_act
            elif op == "Reshape":
                self.plan.append(("flatten", None, node.name))
            elif op == "Mul":
                out_scale = mw.get_initializer(node.input[1])
            elif op == "Add":
                out_bias = mw.get_initializer(node.input[1])
            else:
                raise StreamlineError(f"node {node.name} ({op}): not part of the streamlined form")
        if out_scale is None or out_bias is None:
            raise StreamlineError("streamlined graph lacks the final Mul/Add (scale/bias)")
        self.register_buffer("out_scale", torch.tensor(np.asarray(out_scale, np.float32)))
        self.register_buffer("out_bias", torch.tensor(np.asarray(out_bias, np.float32)))
        # GradCAM: the last activation with spatial extent before the last pooling, if any conv
        self.gradcam_layer = getattr(self, "gradcam_candidate", None) or last_spatial_act
        self.classes = int(meta["classes"])
        self.eval()

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.is_file():
            raise StreamlineError(f"{path}: no streamlined graph (run `make export`)")
        return cls(path)

    def set_guided(self, on=True):
        for m in self.stages:
            if isinstance(m, ThresholdAct):
                m.guided = bool(on)
        return self

    # ------------------------------------------------------ differentiable path
    def forward(self, x):
        """x float (N, C, H, W), pixel = byte/256 -> float logits, exact forward values."""
        z = x / self.input_scale
        v = z.detach().round()
        if self.in_max is not None:
            v = v.clamp(0, self.in_max)
        v = v + (z - z.detach())  # straight-through input quantiser
        h = v if x.dim() == 4 else v.flatten(1)
        for kind, arg, _ in self.plan:
            if kind == "linear":
                st = self.stages[arg]
                if st.conv is None and h.dim() > 2:
                    h = h.permute(0, 2, 3, 1).flatten(1)  # NHWC flatten order (graph contract)
                h = st(h)
            elif kind == "act":
                h = self.stages[arg](h)
            elif kind == "pool":
                (kh, kw), (sh, sw) = arg
                h = F.max_pool2d(h, (kh, kw), (sh, sw))
            elif kind == "flatten":
                if h.dim() > 2:
                    h = h.permute(0, 2, 3, 1).flatten(1)
        return h * self.out_scale + self.out_bias

    def accumulators(self, x):
        """Differentiable path up to the integer output accumulators."""
        return (self.forward(x) - self.out_bias) / self.out_scale

    # --------------------------------------------------------------- fast path
    @torch.no_grad()
    def predict_int(self, images, batch=256):
        """uint8 (N, H, W, C) (or (N, K)) -> int64 accumulators (N, classes), bit-exact."""
        images = np.asarray(images)
        outs = []
        for i in range(0, len(images), batch):
            outs.append(self._predict_batch(images[i:i + batch]))
        return np.concatenate(outs) if outs else np.zeros((0, self.classes), np.int64)

    def _predict_batch(self, x, margins=None):
        v = x.astype(np.float32).reshape(len(x), *self.input_shape)
        for kind, arg, name in self.plan:
            if kind == "linear":
                st = self.stages[arg]
                if st.kind == "xnor" and st.conv and v.shape[-1] % 64 == 0 and not any(st.conv["pads"]):
                    # pack each pixel's channels into 64-bit words first: the packed patch is then
                    # just the im2col of words (patch order kh, kw, c with c innermost)
                    words = _pack_words(v)
                    v = _popcount_words(_im2col(words, st.conv), st.words, st.W.shape[0])
                    continue
                if st.conv:
                    v = _im2col(v, st.conv)
                elif v.ndim > 2:
                    v = v.reshape(len(v), -1)
                if st.kind == "xnor":
                    v = _xnor_popcount(v, st.words, st.W.shape[0])
                else:
                    v = v.astype(np.float32, copy=False) @ st.W.numpy()  # exact: integers < 2^24
            elif kind == "act":
                T = self.stages[arg].T.numpy()
                if margins is not None:
                    tau = self.stages[arg].tau
                    d = np.abs(v.reshape(len(v), -1, tau.shape[0])[..., None] - tau[None, None])
                    d = np.where(np.isfinite(d), d, np.inf)
                    margins.append(d.reshape(len(v), -1).min(1))
                if T.shape[1] == 1:
                    v = v >= T[:, 0]    # stays bool: packing and OR-pooling read it directly
                else:
                    v = (v[..., None] >= T).sum(-1).astype(np.float32)
            elif kind == "pool":
                v = _maxpool_nhwc(v, *arg)
            elif kind == "flatten":
                v = v.reshape(len(v), -1)
        return np.rint(v).astype(np.int64)

    @torch.no_grad()
    def tie_margin(self, images, batch=256):
        """Per image: smallest distance, in accumulator units, between any accumulator and the
        real threshold it is compared with. Near 0 (< 1e-3) means a tie: float arithmetic may
        resolve it either way."""
        out = []
        for i in range(0, len(images), batch):
            m = []
            self._predict_batch(np.asarray(images[i:i + batch]), m)
            out.append(np.min(np.stack(m), 0) if m else np.full(len(images[i:i + batch]), np.inf))
        return np.concatenate(out)

    def logits_from_acc(self, acc):
        return acc.astype(np.float32) * self.out_scale.numpy() + self.out_bias.numpy()

    # ------------------------------------------------------------ float twins
    def float_twin(self, canonized=True):
        from model.twin import build_twin
        return build_twin(self, canonized)


def _im2col(v, conv):
    """NHWC -> (N, OH, OW, kh*kw*C) with c innermost, as qonnx Im2Col."""
    kh, kw = conv["kernel"]
    sh, sw = conv["stride"]
    p = conv["pads"]
    if any(p):
        v = np.pad(v, ((0, 0), (p[0], p[2]), (p[1], p[3]), (0, 0)), constant_values=conv.get("pad_value", 0))
    n, h, w, c = v.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    s = v.strides
    win = np.lib.stride_tricks.as_strided(v, (n, oh, ow, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1], s[2], s[3]))
    return np.ascontiguousarray(win).reshape(n, oh, ow, kh * kw * c)


def _pack_words(bits):
    """{0,1} array (..., K) -> uint64 words (..., ceil(K/64)), bit i of a row at bit i % 64 of
    word i // 64. Padding bits are 0 on both operands, so they never count as mismatches."""
    b = np.packbits(np.ascontiguousarray(bits).astype(np.uint8), axis=-1, bitorder="little")
    pad = (-b.shape[-1]) % 8
    if pad:
        b = np.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(b).view(np.uint64)


def _popcount_words(xw, ww, K, chunk=8192):
    """xw (..., Kw) and ww (MH, Kw) packed words -> matches K - popcount(x ^ w), float32 (..., MH).
    One word position at a time: an outer XOR of (rows x MH) words, popcounted and accumulated,
    keeps every pass contiguous (a broadcast over the short word axis is several times slower)."""
    lead = xw.shape[:-1]
    xw = xw.reshape(-1, xw.shape[-1])
    if xnor_kernel.available():
        return xnor_kernel.xnor_gemm(xw, ww, K).reshape(*lead, len(ww))
    out = np.empty((len(xw), len(ww)), np.float32)
    wt = np.ascontiguousarray(ww.T)
    for i in range(0, len(xw), chunk):
        xt = np.ascontiguousarray(xw[i:i + chunk].T)
        mism = np.zeros((xt.shape[1], len(ww)), np.int32)
        for k in range(len(wt)):
            mism += np.bitwise_count(np.bitwise_xor.outer(xt[k], wt[k]))
        out[i:i + chunk] = K - mism
    return out.reshape(*lead, len(ww))


def _xnor_popcount(bits, wwords, K):
    """bits (..., K) in {0,1}; wwords (MH, ceil(K/64)) packed weights -> matches (..., MH)."""
    return _popcount_words(_pack_words(bits), wwords, K)


def _maxpool_nhwc(v, k, s):
    kh, kw = k
    sh, sw = s
    n, h, w, c = v.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    st = v.strides
    win = np.lib.stride_tricks.as_strided(v, (n, oh, ow, kh, kw, c), (st[0], st[1] * sh, st[2] * sw, st[1], st[2], st[3]))
    return win.max(axis=(3, 4))
