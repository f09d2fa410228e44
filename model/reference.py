"""The bit-exact reference, built from the streamlined graph (never from the Brevitas model).

- `predict_int(x_uint8_nhwc)`: the fast path. Every layer is one native kernel call on a batch
  (model/kernels.py): integer dot products for the 8-bit first layer, XNOR + popcount on
  bit-packed 64-bit words for binary layers, each binary activation's threshold fused into the
  layer that feeds it, OR-pooling on the packed words. Returns the accumulators the accelerator
  streams out. Without a C compiler the same integers come from numpy (`_predict_batch`).
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
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper

from model import kernels
from model.streamline import StreamlineError, metadata
from model.twin import build_twin


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
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
        if self.T.shape[1] == 1:   # a binary activation: one comparison, no count over thresholds
            v = (acc.detach() >= T[..., 0]).to(acc.dtype)
        else:
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
        self.register_buffer("W", torch.from_numpy(W.copy()))
        self._derived_from = None

    def _derived(self):
        """(coef, const, words) from W: the integer form the float paths compute with, and the
        packed weight rows of the numpy path. Recomputed when W is changed in place (the
        cascading-randomisation sanity check shuffles it), so every path sees the same W."""
        W = self._buffers["W"]
        if self._derived_from is None or self._derived_from[0] is not W or self._derived_from[1] != W._version:
            Wn = W.numpy()
            K, MH = Wn.shape
            if self.kind == "xnor":
                # P = sum_i v_i (2w_i - 1) + sum_i (1 - w_i): popcount of matches, linear in the bits v
                coef, const = 2 * Wn - 1, (1 - Wn).sum(0)
            else:
                coef, const = Wn, np.zeros(MH, np.float32)
            if self.conv:
                kh, kw = self.conv["kernel"]
                coef = coef.reshape(kh, kw, K // (kh * kw), MH).transpose(3, 2, 0, 1)  # -> (Cout, Cin, kh, kw)
            else:
                coef = coef.T  # (MH, K)
            self._derived_cache = (torch.from_numpy(np.ascontiguousarray(coef, np.float32)),
                                   torch.from_numpy(np.asarray(const, np.float32)),
                                   _pack_words(Wn.T) if self.kind == "xnor" else None)
            self._derived_from = (W, W._version)
        return self._derived_cache

    coef = property(lambda self: self._derived()[0])
    const = property(lambda self: self._derived()[1])
    words = property(lambda self: self._derived()[2])

    def native_step(self, dtype, bits, group, thr, pool=None):
        """This layer as one native kernel call: a function of a batch h (integer values of
        `dtype`, or packed bits with `group` bits per word group), thr the real thresholds of a
        fused binary activation or None, pool the (kernel, stride) of a max-pooling fused behind
        it. The function returns packed bits of acc >= thr (then `bits` of the result is True),
        pooled if asked, or int32 accumulators."""
        pre = []
        if self.kind == "xnor" and not bits:   # {0,1} values: pack each pixel's channels / each row
            K = self.W.shape[0]
            group = K if self.conv is None else K // (self.conv["kernel"][0] * self.conv["kernel"][1])
            pre.append(_pack_words)
            dtype = np.dtype(np.uint64)
        elif self.kind == "int" and bits:
            pre.append(lambda h: _unpack_words(h, group).astype(np.int16))
            dtype = np.dtype(np.int16)
        if self.conv and any(self.conv["pads"]):
            p, v = self.conv["pads"], int(self.conv.get("pad_value", 0))
            pre.append(lambda h: np.pad(h, ((0, 0), (p[0], p[2]), (p[1], p[3]), (0, 0)), constant_values=v))
        layer = self._native_layer(dtype, group, thr, pool)
        conv = self.conv is not None

        def step(h, ptr):
            if pre:
                for f in pre:
                    h = f(h)
                ptr = None
            if conv:
                return layer(h, ptr)
            out, ptr = layer(h.reshape(len(h), 1, 1, -1), ptr)
            return out.reshape(len(h), -1), ptr
        step.layer = layer
        return step, thr is not None

    def _native_layer(self, dtype, group, thr, pool=None):
        """The kernel for this layer's weights and input: XNOR-popcount for binary layers (with
        the max-pooling behind their binary activation, if any, fused in); for integer ones,
        bytes (the 8-bit first layer) take signed sums when the weights are +-1 and the
        activation binary, else a byte multiply-add kernel (the short-window one when int16 sums
        suffice); everything else the int16 kernel."""
        K, MH = self.W.shape
        W = self.W.numpy()
        conv = self.conv or dict(kernel=[1, 1], stride=[1, 1])
        geo = dict(kernel=conv["kernel"], stride=conv["stride"], thr=thr)
        if self.kind == "xnor":   # the weight rows packed as the input is: groups of `group` bits
            words = _pack_words(W.T.reshape(MH, K // group, group)).reshape(MH, -1)
            return kernels.Layer("xnor", kernels.xnor_weights(words), MH, (K,), pool=pool, **geo)
        sign = None
        if dtype == np.uint8 and thr is not None:
            sign = kernels.u8_sign_weights(W, conv["kernel"], conv["stride"])
        if sign is not None:   # +-1 weights on bytes: signed sums, 16 outputs at a time
            return kernels.Layer("u8_sign", sign[0], MH, (sign[1],), **geo)
        short = kernels.u8_short_weights(W) if dtype == np.uint8 else None
        if short is not None:   # few inputs per window: 64 neurons at a time in int16
            w8, Kp = short
            return kernels.Layer("u8_short", w8, MH, (Kp,), **geo)
        small = kernels.u8_weights(W) if dtype == np.uint8 else None
        if small is not None:   # bytes against small weights: the byte multiply-add kernel
            w8, Kp, span = small
            return kernels.Layer("u8", w8, MH, (Kp, span), **geo)
        w, Kp = kernels.int_weights(W)
        return kernels.Layer("int", w, MH, (Kp,), **geo)

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
            elif op == "MultiThreshold" and node.input[0] == mw.graph.input[0].name:
                # input thresholding (a quantiser that is not affine in the byte): y = a * byte + b
                iq = meta["input_quant"]
                a = np.asarray(iq["scale"], np.float64) * self.input_scale
                act = ThresholdAct(mw.get_initializer(node.input[1]), a, iq["bias"], dict(iq["act"], theta=iq["theta"]))
                self.stages.append(act)
                self.plan.append(("in_thresh", len(self.stages) - 1, node.name))
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
        self._program = self._program_state = None
        # where every weight and threshold tensor lives (buffer dict, name)
        self._slots = [(m._buffers, k) for m in self.stages for k in ("W", "T") if k in m._buffers]
        self.native_ok = self._native_supported()
        self.eval()

    def _native_supported(self):
        """Whether every layer fits the native kernels: 8-bit input, int16 weights, int32 sums,
        unpadded binary convolutions (a pad has no bit in the packed words), and weights that are
        still bits / integers (they may have been changed in place since the graph was read)."""
        if self.in_max != 255:
            return False
        vmax = 255   # largest input value of the next integer layer
        for kind, arg, _ in self.plan:
            if kind == "linear":
                st = self.stages[arg]
                W = st.W.numpy()
                if st.kind == "xnor" and ((st.conv and any(st.conv["pads"])) or not np.isin(W, (0, 1)).all()):
                    return False
                wmax = float(np.abs(W).max(initial=0))
                if st.kind == "int" and (not np.array_equal(W, np.round(W)) or wmax > 2**15 - 1
                                         or W.shape[0] * vmax * wmax >= 2**31 - 2):
                    return False
            elif kind in ("act", "in_thresh"):
                vmax = self.stages[arg].T.shape[1]
        return True

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
        """x float (N, C, H, W), pixel = byte/256 -> float logits, exact forward values. Where no
        gradient can flow (no_grad, or an input that does not require it) and nothing hooks
        the layers, the values come from the native kernels: the same integers, the same final
        float ops, many times faster (occlusion and deletion/insertion curves run this way)."""
        if not (torch.is_grad_enabled() and x.requires_grad) and self._values_only(x):
            with torch.no_grad():
                v = (x / self.input_scale).round().clamp(0, self.in_max)
                b = v.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
                acc = torch.from_numpy(self.predict_int(b)).to(torch.float32)
                return acc * self.out_scale + self.out_bias
        z = x / self.input_scale
        v = z.detach().round()
        if self.in_max is not None:
            v = v.clamp(0, self.in_max)
        v = v + (z - z.detach())  # straight-through input quantiser
        h = v if x.dim() == 4 else v.flatten(1)
        for kind, arg, _ in self.plan:
            if kind == "in_thresh":
                h = self.stages[arg](h)
            elif kind == "linear":
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

    def _values_only(self, x):
        """Whether forward may take the native path for x (see forward)."""
        if len(self.input_shape) != 3 or x.dim() != 4 or x.dtype != torch.float32:
            return False
        h, w, c = self.input_shape
        if tuple(x.shape[1:]) != (c, h, w):
            return False
        from torch.nn.modules import module as M
        if M._global_forward_hooks or M._global_forward_pre_hooks or any(
                m._forward_hooks or m._forward_pre_hooks for m in self.modules()):
            return False
        return self._native_ready()

    def accumulators(self, x):
        """Differentiable path up to the integer output accumulators."""
        return (self.forward(x) - self.out_bias) / self.out_scale

    # --------------------------------------------------------------- fast path
    def predict_int(self, images, batch=256):
        """uint8 (N, H, W, C) (or (N, K)) -> int64 accumulators (N, classes), bit-exact."""
        images = np.asarray(images)
        fast = images.dtype == np.uint8 and self._native_ready()
        step = self._native_batch if fast else self._predict_batch
        if len(images) <= batch:
            return step(images) if len(images) else np.zeros((0, self.classes), np.int64)
        return np.concatenate([step(images[i:i + batch]) for i in range(0, len(images), batch)])

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
            elif kind == "in_thresh":   # exact on bytes: no ties to count
                T = self.stages[arg].T.numpy()
                v = (v[..., None] >= T).sum(-1).astype(np.float32)
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

    def _native_ready(self):
        """Whether the native kernels can run this model as its weights are now; (re)binds them
        on the first call and whenever a weight or threshold tensor was replaced or changed in
        place (its version counter moved)."""
        if not kernels.available():
            return False
        state = self._program_state
        if state is None or any(bufs[k] is not t or t._version != v for (bufs, k), (t, v) in zip(self._slots, state)):
            self.native_ok = self._native_supported()
            self._program = self._native_program() if self.native_ok else None
            self._program_state = [(bufs[k], bufs[k]._version) for bufs, k in self._slots]
        return self.native_ok

    def _native_batch(self, x):
        """The same integers as _predict_batch, a native kernel per layer (after _native_ready)."""
        h, ptr = x.reshape(len(x), *self.input_shape), None
        for step in self._program:
            h, ptr = step(h, ptr)   # ptr: h's address when a kernel wrote it (else None)
        return h.astype(np.int64)   # a copy: kernels reuse their output buffers

    def _native_program(self):
        """The plan as a list of batch -> batch steps, each layer bound to its kernel once.
        Activations travel as integer values (n, H, W, C) / (n, K) (bytes into the first layer,
        as they are) or as packed bits: words per pixel (n, H, W, Cw) or per row (n, Kw), each
        group of `group` bits padded to whole words, so a pixel's words stay together through
        NHWC flattening."""
        steps, plan, i = [], self.plan, 0
        dtype, bits, group, ndim = np.dtype(np.uint8), False, None, 1 + len(self.input_shape)
        while i < len(plan):
            kind, arg, _ = plan[i]
            if kind == "linear":
                st = self.stages[arg]
                nxt = plan[i + 1] if i + 1 < len(plan) else None
                act = self.stages[nxt[1]] if nxt and nxt[0] == "act" else None
                thr = act.T.numpy()[:, 0] if act is not None and act.T.shape[1] == 1 else None
                after = plan[i + 2] if thr is not None and i + 2 < len(plan) else None
                # a max-pooling of an XNOR convolution's bits runs inside its kernel
                pool = after[1] if after and after[0] == "pool" and st.kind == "xnor" and st.conv else None
                if not st.conv and ndim > 2:
                    steps.append(_flatten)   # NHWC flatten: words of a pixel stay together
                    ndim = 2
                step, bits = st.native_step(dtype, bits, group, thr, pool)
                steps.append(step)
                group = st.W.shape[1] if bits else None
                dtype = np.dtype(np.uint64 if bits else np.int32)
                i += 1 + (thr is not None) + (pool is not None)
                continue
            if kind in ("act", "in_thresh"):
                T = self.stages[arg].T.numpy()
                steps.append(lambda h, ptr, T=T: ((h[..., None] >= T).sum(-1, dtype=np.int16), None))
                dtype = np.dtype(np.int16)
            elif kind == "pool":
                if bits:
                    steps.append(lambda h, ptr, arg=arg: (kernels.or_pool(h, *arg), None))
                else:
                    steps.append(lambda h, ptr, arg=arg: (_maxpool_nhwc(h, *arg), None))
            elif kind == "flatten":
                steps.append(_flatten)
                ndim = 2
            i += 1
        return steps

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


def _flatten(h, ptr):
    return h.reshape(len(h), -1), ptr   # contiguous: a view at the same address


def _unpack_words(words, group):
    """Inverse of _pack_words for rows of `group` bits: (..., Kw) words -> (..., K) {0,1}."""
    b = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1, bitorder="little")
    b = b.reshape(*b.shape[:-1], -1, 64 * -(-group // 64))[..., :group]
    return b.reshape(*b.shape[:-2], -1)


def _popcount_words(xw, ww, K, chunk=8192):
    """xw (..., Kw) and ww (MH, Kw) packed words -> matches K - popcount(x ^ w), float32 (..., MH).
    One word position at a time: an outer XOR of (rows x MH) words, popcounted and accumulated,
    keeps every pass contiguous (a broadcast over the short word axis is several times slower)."""
    lead = xw.shape[:-1]
    xw = xw.reshape(-1, xw.shape[-1])
    if kernels.available():
        return kernels.xnor_gemm(xw, ww, K).reshape(*lead, len(ww))
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
