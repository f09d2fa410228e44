"""Streamline a Brevitas QONNX export into BitLens' integer graph (see README: the contract).

The pass walks the single data path of the export and carries, for the tensor at hand, how its
integer form maps to the real values Brevitas computes:
- an activation tensor holds integers v with real = s * (m * v + o)  (bipolar bits: m=2, o=-1);
- after a MatMul/Conv the accumulator acc (an exact integer) has real = a_c * acc + b_c per
  channel; BatchNorm, Mul, Add, Sub, Div and bias only update (a, b);
- an activation quantiser then turns (a, b) into integer thresholds on acc (DESIGN.md), flipping
  the weights of channels with a < 0 so every comparison is acc >= T.
Before the first layer, flattening and affine preprocessing (FINN's `2x - 1`) are recorded and
the input quantiser is evaluated on all 256 pixel bytes: an affine result folds into the first
layer, any other monotone one becomes the input thresholding stage `Thresh_in`.
Anything else is an error naming the node and its type.
"""
import copy
import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.intquant import max_int, min_int
from qonnx.transformation.general import GiveUniqueNodeNames, SortGraph
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model


class StreamlineError(ValueError):
    pass


QONNX_DOMAIN = "qonnx.custom_op.general"


class QConst:
    """A quantised constant: integer values times a (broadcastable) positive scale."""

    def __init__(self, ints, scale, bits):
        self.ints, self.scale, self.bits = np.asarray(ints, np.float64), np.asarray(scale, np.float64), bits

    def value(self):
        return self.ints * self.scale


class IntAct:
    def __init__(self, name, shape, layout, dtype, s, m, o, perm=None):
        self.name, self.shape, self.layout, self.dtype = name, tuple(shape), layout, dtype
        self.s, self.m, self.o = float(s), float(m), float(o)
        self.perm = perm  # for a flattened NHWC tensor: our position -> Brevitas (C,H,W) index


class FloatIn:
    """The float graph input before its quantiser: shape and the preprocessing ops seen so far."""

    def __init__(self, shape):
        self.shape, self.ops = tuple(shape), []


class Acc:
    def __init__(self, layer, a, b, lo, hi, shape, layout):
        self.layer = layer  # pending dict: kind, name, input, weights (K, MH) ints, ...
        self.a, self.b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        self.lo, self.hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        self.shape, self.layout = tuple(shape), layout
        self.a0, self.b0 = self.a.copy(), self.b.copy()  # linear layer alone, before BN etc.
        self.relu = False


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dtype_name(signed, bits):
    if bits == 1 and not signed:
        return "BINARY"
    return f"{'INT' if signed else 'UINT'}{bits}"


class Streamliner:
    def __init__(self, model: ModelWrapper, name="model"):
        self.src, self.model_name = model, name
        self.consts = {i.name: onnx.numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
        self.nodes, self.inits, self.dtypes, self.vinfo = [], [], {}, {}
        self.meta = {"layers": []}
        self.counts = {"MVAU": 0, "Thresh": 0, "SWG": 0, "Pool": 0, "Reshape": 0}

    # ---------------------------------------------------------------- helpers
    def _fresh(self, kind):
        i = self.counts[kind]
        self.counts[kind] += 1
        return f"{kind}_{i}"

    def _init(self, name, arr, dtype=None, np_type=np.float32):
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(arr, np_type), name))
        if dtype:
            self.dtypes[name] = dtype

    def _tensor(self, name, shape, dtype=None):
        self.vinfo[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, *shape])
        if dtype:
            self.dtypes[name] = dtype

    def _const(self, node, i):
        name = node.input[i]
        if name not in self.consts:
            return None
        return self.consts[name]

    def _per_channel(self, arr, channels, node):
        arr = np.asarray(arr, np.float64)
        if arr.size == 1:
            return np.full(channels, float(arr.reshape(-1)[0]))
        squeezed = arr.reshape(-1)
        if squeezed.size != channels:
            raise StreamlineError(f"node {node.name} ({node.op_type}): constant of shape {arr.shape} is not per-channel for {channels} channels")
        return squeezed

    # ------------------------------------------------------- constant folding
    def fold_constant(self, node):
        """Evaluate a node whose inputs are all constants (weight quantisers, transposes)."""
        ins = [self.consts.get(n) for n in node.input if n]
        if any(v is None and not isinstance(v, QConst) for v in ins):
            return False
        op, at = node.op_type, _attrs(node)
        if op == "BipolarQuant":
            w, scale = ins[0], ins[1]
            if np.any(scale <= 0):
                raise StreamlineError(f"node {node.name} (BipolarQuant): non-positive scale")
            out = QConst(np.where(w >= 0, 1.0, -1.0), scale, 1)
        elif op == "Quant":
            w, scale, zp, bits = ins[:4]
            bits = int(np.asarray(bits).reshape(-1)[0])
            signed, narrow = int(at.get("signed", 1)), int(at.get("narrow", 0))
            if np.any(zp != 0):
                raise StreamlineError(f"node {node.name} (Quant): weight zero point != 0 is not supported")
            mode = at.get("rounding_mode", "ROUND")
            if isinstance(mode, bytes):
                mode = mode.decode()
            rnd = {"ROUND": np.round, "FLOOR": np.floor, "CEIL": np.ceil}.get(mode.upper())
            if rnd is None:
                raise StreamlineError(f"node {node.name} (Quant): rounding mode {mode} not supported")
            q = np.clip(rnd(w / scale), min_int(signed, narrow, bits), max_int(signed, narrow, bits))
            out = QConst(q, scale, bits)
        elif op == "Transpose":
            perm = at.get("perm")
            v = ins[0]
            if isinstance(v, QConst):
                sc = v.scale if v.scale.size == 1 else np.broadcast_to(v.scale, v.ints.shape).transpose(perm)
                out = QConst(v.ints.transpose(perm), sc, v.bits)
            else:
                out = v.transpose(perm)
        elif op == "Identity":
            out = ins[0]
        else:
            vals = [v.value() if isinstance(v, QConst) else v for v in ins]
            if op == "Mul":
                out = vals[0] * vals[1]
            elif op == "Div":
                out = vals[0] / vals[1]
            elif op == "Add":
                out = vals[0] + vals[1]
            elif op == "Sub":
                out = vals[0] - vals[1]
            elif op == "Neg":
                out = -vals[0]
            elif op == "Pow":
                out = np.power(vals[0], vals[1])
            elif op == "Sqrt":
                out = np.sqrt(vals[0])
            elif op == "Reciprocal":
                out = 1.0 / vals[0]
            elif op == "Reshape":
                out = vals[0].reshape([int(d) for d in vals[1]])
            else:
                raise StreamlineError(f"node {node.name} ({op}): unsupported operation on constants")
        self.consts[node.output[0]] = out
        return True

    # ------------------------------------------------------------ the walk
    def run(self):
        g = self.src.graph
        if len(g.input) != 1 or len(g.output) != 1:
            raise StreamlineError("graphs with more than one input or output are not supported")
        in_name = g.input[0].name
        in_shape = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
        state = FloatIn(in_shape)
        consumers = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        for node in g.node:
            if all((i in self.consts) or not i for i in node.input):
                self.fold_constant(node)
                continue
            data_inputs = [i for i in node.input if i and i not in self.consts]
            if len(data_inputs) != 1:
                raise StreamlineError(f"node {node.name} ({node.op_type}): branching graphs are not supported")
            if len(consumers.get(node.output[0], [])) > 1:
                raise StreamlineError(f"node {node.name} ({node.op_type}): its output feeds several nodes (branching)")
            state = self.step(node, state)
        return self.finish(state, g.output[0].name)

    def step(self, node, state):
        op = node.op_type
        if op in ("Identity", "Dropout"):
            return state
        if isinstance(state, FloatIn):  # still the float graph input
            return self.step_float(node, state)
        if isinstance(state, IntAct):
            return self.step_int(node, state)
        return self.step_acc(node, state)

    def step_float(self, node, state: "FloatIn"):
        """Before the input quantiser: the pixels and what the model does to them (flattening, and
        affine preprocessing such as FINN's `2x - 1`), recorded to be evaluated on every byte."""
        op = node.op_type
        if op in ("Flatten", "Reshape"):
            state.ops.append(("flatten", None, 0))
            return state
        if op in ("Mul", "Div", "Add", "Sub"):
            cidx = 0 if node.input[0] in self.consts else 1
            c = self.consts[node.input[cidx]]
            state.ops.append((op, np.asarray(c.value() if isinstance(c, QConst) else c), cidx))
            return state
        if op not in ("Quant", "BipolarQuant"):
            raise StreamlineError(f"node {node.name} ({op}): before the input quantiser only flattening and "
                                  f"Mul/Div/Add/Sub by constants are supported, found {op}")
        return self._input_quant(node, state)

    def _preprocess(self, state, pixels, dtype):
        """The recorded preprocessing applied to inputs whose every pixel is `pixels[i]`:
        (len(pixels), positions) in Brevitas' (C, H, W) order."""
        x = np.broadcast_to(np.asarray(pixels, dtype).reshape(-1, *[1] * (len(state.shape) - 1)),
                            (len(pixels), *state.shape[1:])).astype(dtype)
        for op, c, cidx in state.ops:
            if op == "flatten":
                x = x.reshape(len(x), -1)
                continue
            c = c.astype(dtype)
            a, b = (c, x) if cidx == 0 else (x, c)
            x = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}[op](a, b)
        return x.reshape(len(pixels), -1)

    def _input_quant(self, node, state):
        """The input quantiser as a function of the pixel byte b (pixel = b/256), found by evaluating
        preprocessing and quantiser on all 256 bytes in float32 as Brevitas does. A map that is
        affine in b folds into the first layer (the accelerator takes the raw bytes); any other
        monotone map becomes an input thresholding stage `Thresh_in` (FINN's Thresholding)."""
        orig = state.shape
        if len(orig) == 4:
            _, c, h, w = orig
            nhwc = (h, w, c)
        elif len(orig) == 2:
            c, nhwc = orig[1], (orig[1],)
        else:
            raise StreamlineError(f"graph input of rank {len(orig)} is not supported (expected NCHW or NC)")
        at = _attrs(node)
        scale = self._const(node, 1)
        if scale is None or np.asarray(scale).size != 1 or float(np.asarray(scale).reshape(-1)[0]) <= 0:
            raise StreamlineError(f"node {node.name} ({node.op_type}): input quantiser needs a positive per-tensor constant scale")
        s = float(np.asarray(scale).reshape(-1)[0])
        y = self._preprocess(state, np.arange(256, dtype=np.float32) / np.float32(256), np.float32)
        if node.op_type == "BipolarQuant":
            L = np.where(y >= 0, 1, -1)
            qmin, qmax, zp, m_out, o_out, theta = -1, 1, 0.0, 2, -1, np.array([0.0])
            levels, dtype, clip = [-1, 1], "BINARY", (-s, s)
        else:
            zp, bits = self._const(node, 2), self._const(node, 3)
            if zp is None or bits is None or np.asarray(zp).size != 1:
                raise StreamlineError(f"node {node.name} (Quant): input quantiser needs a constant per-tensor zero point and bit width")
            zp, bits = float(np.asarray(zp).reshape(-1)[0]), int(np.asarray(bits).reshape(-1)[0])
            signed, narrow = int(at.get("signed", 1)), int(at.get("narrow", 0))
            mode = at.get("rounding_mode", "ROUND")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode.upper() != "ROUND" or bits > 8:
                raise StreamlineError(f"node {node.name} (Quant): input quantiser of {bits} bits with {mode} "
                                      "rounding is not supported (at most 8 bits, ROUND)")
            qmin, qmax = int(min_int(signed, narrow, bits)), int(max_int(signed, narrow, bits))
            L = np.clip(np.round(y / np.float32(s) + np.float32(zp)), qmin, qmax).astype(np.int64)
            levels = list(range(qmin, qmax + 1))
            nlev = qmax - qmin + 1
            obits = max(1, math.ceil(math.log2(nlev)))
            dtype = "BINARY" if obits == 1 else f"UINT{obits}"
            m_out, o_out = 1, qmin - zp
            theta = s * (qmin + np.arange(1, nlev) - 0.5 - zp)
            clip = (s * (qmin - zp), s * (qmax - zp))
        # one map of the byte per channel (Brevitas' positions are in (C, H, W) order)
        per_pos = L.reshape(256, c, -1)
        if not np.all(per_pos == per_pos[:, :, :1]):
            raise StreamlineError(f"node {node.name} ({node.op_type}): the input quantiser treats pixels of one "
                                  "channel differently (per-pixel preprocessing is not supported)")
        table = per_pos[:, :, 0]                                    # (256 bytes, C)
        if np.any(np.diff(table, axis=0) < 0):
            raise StreamlineError(f"node {node.name} ({node.op_type}): the input quantiser is not monotone "
                                  "in the pixel byte")
        pre0 = self._preprocess(state, [0.0, 1.0], np.float64).reshape(2, c, -1)[:, :, 0]
        pre = dict(scale=(pre0[1] - pre0[0]).tolist(), bias=pre0[0].tolist())  # y = scale * pixel + bias
        self.input = ("global_in", nhwc, "UINT8", 1 / 256)
        self._tensor("global_in", nhwc, "UINT8")
        layout = "NHWC" if len(nhwc) == 3 else "NC"
        step = table[1] - table[0]
        affine = np.all(table == table[:, :1]) and np.all(table == table[0] + np.outer(np.arange(256), step))
        if affine and step[0] != 0 and node.op_type == "Quant":
            # L = L0 + m*b exactly: the first layer takes the raw bytes; the map folds into its affine
            self.meta["input_quant"] = dict(mode="affine", mult=int(step[0]), offset=int(table[0, 0]), **pre)
            act = IntAct("global_in", nhwc, layout, "UINT8", s, step[0], table[0, 0] - zp)
        else:
            T = np.stack([(table < lv).sum(0) for lv in levels[1:]], axis=1)   # (C, levels-1) in 0..256
            if np.all(T == T[:1]):
                T = T[:1]
            name = "Thresh_in"
            self._init(name + "_thresholds", T, "UINT32")
            self.nodes.append(helper.make_node("MultiThreshold", ["global_in", name + "_thresholds"], [name + "_out"],
                                               name=name, domain=QONNX_DOMAIN, out_dtype=dtype, data_layout=layout))
            self._tensor(name + "_out", nhwc, dtype)
            self.meta["input_quant"] = dict(mode="threshold", thresh=name, out_dtype=dtype, theta=theta.tolist(),
                                            act=dict(scale=s, mult=m_out, offset=o_out, clip=list(clip)), **pre)
            act = IntAct(name + "_out", nhwc, layout, dtype, s, m_out, o_out)
        if len(orig) == 4 and any(op == "flatten" for op, _, _ in state.ops):
            return self._flatten(act, node)
        return act

    def _flatten(self, act, node):
        if act.layout == "NC":
            return act
        h, w, c = act.shape
        out = self._fresh("Reshape")
        shp = out + "_shape"
        self._init(shp, np.array([-1, h * w * c]), np_type=np.int64)
        self.nodes.append(helper.make_node("Reshape", [act.name, shp], [out + "_out"], name=out))
        self._tensor(out + "_out", (h * w * c,), act.dtype)
        # our flat index (h, w, c) holds Brevitas' flat index (c, h, w)
        perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        return IntAct(out + "_out", (h * w * c,), "NC", act.dtype, act.s, act.m, act.o, perm)

    def step_int(self, node, act):
        op = node.op_type
        if op in ("Flatten", "Reshape"):
            return self._flatten(act, node)
        if op == "MaxPool":
            return self._maxpool(node, act)
        if op in ("MatMul", "Gemm"):
            return self._matmul(node, act)
        if op == "Conv":
            return self._conv(node, act)
        raise StreamlineError(f"node {node.name} ({op}): unsupported on an integer activation tensor")

    def _maxpool(self, node, act):
        at = _attrs(node)
        k, st = at.get("kernel_shape"), at.get("strides", at.get("kernel_shape"))
        pads = at.get("pads", [0, 0, 0, 0])
        if act.layout != "NHWC" or any(pads) or at.get("ceil_mode", 0):
            raise StreamlineError(f"node {node.name} (MaxPool): only unpadded floor-mode 2D pooling of a feature map is supported")
        h, w, c = act.shape
        oh, ow = (h - k[0]) // st[0] + 1, (w - k[1]) // st[1] + 1
        name = self._fresh("Pool")
        self.nodes.append(helper.make_node("MaxPoolNHWC", [act.name], [name + "_out"], name=name,
                                           domain=QONNX_DOMAIN, kernel_shape=list(k), strides=list(st),
                                           pads=[0, 0, 0, 0]))
        self._tensor(name + "_out", (oh, ow, c), act.dtype)
        return IntAct(name + "_out", (oh, ow, c), "NHWC", act.dtype, act.s, act.m, act.o)

    def _weights(self, node, idx, transpose_gemm=False):
        w = self.consts.get(node.input[idx])
        if w is None:
            raise StreamlineError(f"node {node.name} ({node.op_type}): weights must be constant")
        if not isinstance(w, QConst):
            raise StreamlineError(f"node {node.name} ({node.op_type}): weights are not quantised (no Quant/BipolarQuant on them)")
        return w

    def _range(self, act):
        dt = DataType[act.dtype]
        return dt.min(), dt.max()

    def _linear(self, node, act, wi, alpha, out_shape, layout, extra=None):
        """Common part of MatMul and Conv: wi (K, MH) integer weights, alpha (MH,) scales."""
        K, MH = wi.shape
        s, m, o = act.s, act.m, act.o
        xnor = act.dtype == "BINARY" and m == 2 and o == -1 and np.all(np.abs(wi) == 1)
        if xnor:
            a, b = 2 * s * alpha, -s * alpha * K
            lo, hi = np.zeros(MH), np.full(MH, K)
        else:
            a, b = s * alpha * m, s * alpha * o * wi.sum(0)
            vmin, vmax = self._range(act)
            lo = np.where(wi > 0, wi * vmin, wi * vmax).sum(0)
            hi = np.where(wi > 0, wi * vmax, wi * vmin).sum(0)
        layer = dict(kind="xnor" if xnor else "int", name=self._fresh("MVAU"), input=act.name,
                     weights=wi.copy(), in_dtype=act.dtype, wbits=None, extra=extra or {})
        return Acc(layer, a, b, lo, hi, out_shape, layout)

    def _matmul(self, node, act):
        if act.layout != "NC":
            raise StreamlineError(f"node {node.name} ({node.op_type}): a matrix product needs a flattened input")
        q = self._weights(node, 1)
        if node.op_type == "Gemm":
            at = _attrs(node)
            if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
                raise StreamlineError(f"node {node.name} (Gemm): only transB, alpha=beta=1 supported")
            ints = q.ints.T if at.get("transB", 0) else q.ints
            scale = np.broadcast_to(q.scale, q.ints.shape)
            scale = scale.T if at.get("transB", 0) else scale
        else:
            ints, scale = q.ints, np.broadcast_to(q.scale, q.ints.shape)
        K, MH = ints.shape
        if K != act.shape[0]:
            raise StreamlineError(f"node {node.name}: weight rows {K} != input width {act.shape[0]}")
        alpha = scale[0]
        if not np.allclose(scale, alpha[None, :]):
            raise StreamlineError(f"node {node.name} ({node.op_type}): weight scale must be per-tensor or per-output-channel")
        if act.perm is not None:
            ints = ints[act.perm]
        acc = self._linear(node, act, ints, alpha.astype(np.float64), (MH,), "NC")
        acc.layer["wbits"] = q.bits
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            bias = self._per_channel(self.consts[node.input[2]], MH, node)
            acc.b = acc.b + bias
            acc.b0 = acc.b.copy()
        return acc

    def _conv(self, node, act):
        at = _attrs(node)
        if act.layout != "NHWC":
            raise StreamlineError(f"node {node.name} (Conv): input is not a feature map")
        if at.get("group", 1) != 1 or any(d != 1 for d in at.get("dilations", [1, 1])):
            raise StreamlineError(f"node {node.name} (Conv): grouped or dilated convolutions are not supported")
        q = self._weights(node, 1)
        cout, cin, kh, kw = q.ints.shape
        scale = np.broadcast_to(q.scale, q.ints.shape)
        alpha = scale[:, 0, 0, 0]
        if not np.allclose(scale, alpha[:, None, None, None]):
            raise StreamlineError(f"node {node.name} (Conv): weight scale must be per-tensor or per-output-channel")
        st = at.get("strides", [1, 1])
        pads = list(at.get("pads", [0, 0, 0, 0]))
        h, w, c = act.shape
        if c != cin:
            raise StreamlineError(f"node {node.name} (Conv): {cin} input channels expected, tensor has {c}")
        pad_value = 0
        if any(pads):
            v0 = -act.o / act.m
            if v0 != round(v0) or not DataType[act.dtype].allowed(v0):
                raise StreamlineError(f"node {node.name} (Conv): Brevitas pads with 0, which a {act.dtype} activation "
                                      f"(offset {act.o:g}) cannot hold; padding needs an activation with a 0 level "
                                      "(e.g. 2-bit) in front of this convolution, or no padding")
            pad_value = int(v0)
        oh = (h + pads[0] + pads[2] - kh) // st[0] + 1
        ow = (w + pads[1] + pads[3] - kw) // st[1] + 1
        swg = self._fresh("SWG")
        self.nodes.append(helper.make_node("Im2Col", [act.name], [swg + "_out"], name=swg, domain=QONNX_DOMAIN,
                                           stride=list(st), kernel_size=[kh, kw], input_shape=f"(1, {h}, {w}, {c})",
                                           pad_amount=pads, pad_value=pad_value))
        self._tensor(swg + "_out", (oh, ow, kh * kw * c), act.dtype)
        wi = q.ints.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)  # rows (kh, kw, c), c innermost
        patch = IntAct(swg + "_out", (oh, ow, kh * kw * c), "NHWC", act.dtype, act.s, act.m, act.o)
        acc = self._linear(node, patch, wi, alpha.astype(np.float64), (oh, ow, cout), "NHWC",
                           extra=dict(kernel=[kh, kw], stride=list(st), pads=pads, ifm=[h, w, c], swg=swg))
        acc.layer["wbits"] = q.bits
        if len(node.input) > 2 and node.input[2]:
            acc.b = acc.b + self._per_channel(self.consts[node.input[2]], cout, node)
            acc.b0 = acc.b.copy()
        return acc

    def step_acc(self, node, acc):
        op = node.op_type
        C = len(acc.a)
        if op == "BatchNormalization":
            gamma, beta, mean, var = (self._per_channel(self._const(node, i), C, node) for i in (1, 2, 3, 4))
            eps = _attrs(node).get("epsilon", 1e-5)
            sd = np.sqrt(var + eps)
            acc.a, acc.b = acc.a * gamma / sd, (acc.b - mean) * gamma / sd + beta
            return acc
        if op in ("Mul", "Div", "Add", "Sub"):
            cidx = 0 if node.input[0] in self.consts else 1
            c = self.consts[node.input[cidx]]
            c = self._per_channel(c.value() if isinstance(c, QConst) else c, C, node)
            if op == "Mul":
                acc.a, acc.b = acc.a * c, acc.b * c
            elif op == "Div":
                if cidx == 0:
                    raise StreamlineError(f"node {node.name} (Div): dividing by an activation is not linear")
                acc.a, acc.b = acc.a / c, acc.b / c
            elif op == "Add":
                acc.b = acc.b + c
            elif cidx == 1:
                acc.b = acc.b - c
            else:
                acc.a, acc.b = -acc.a, c - acc.b
            return acc
        if op == "Relu":
            acc.relu = True
            return acc
        if op == "BipolarQuant":
            s = self._const(node, 1)
            if s is None or s.size != 1 or s.reshape(-1)[0] <= 0:
                raise StreamlineError(f"node {node.name} (BipolarQuant): activation scale must be a positive per-tensor constant")
            s = float(s.reshape(-1)[0])
            theta = np.array([0.0])
            return self._threshold(node, acc, theta, s, 2, -1, "BINARY", clip=(-s, s), kind="bipolar")
        if op == "Quant":
            scale, zp, bits = (self._const(node, i) for i in (1, 2, 3))
            if scale is None or zp is None or bits is None or scale.size != 1 or zp.size != 1:
                raise StreamlineError(f"node {node.name} (Quant): activation quantiser needs per-tensor constant scale/zero point/bit width")
            at = _attrs(node)
            s, zp, bits = float(scale.reshape(-1)[0]), float(zp.reshape(-1)[0]), int(bits.reshape(-1)[0])
            signed, narrow = int(at.get("signed", 1)), int(at.get("narrow", 0))
            mode = at.get("rounding_mode", "ROUND")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode.upper() != "ROUND":
                raise StreamlineError(f"node {node.name} (Quant): activation rounding {mode} not supported")
            if bits > 8:
                raise StreamlineError(f"node {node.name} (Quant): {bits}-bit activations are not supported (at most 8)")
            qmin, qmax = min_int(signed, narrow, bits), max_int(signed, narrow, bits)
            # level k (1..n) is reached when round(y/s + zp) >= qmin + k, i.e. y >= s*(qmin + k - 0.5 - zp)
            theta = s * (qmin + np.arange(1, qmax - qmin + 1) - 0.5 - zp)
            nlev = int(qmax - qmin + 1)
            obits = max(1, math.ceil(math.log2(nlev)))
            dt = "BINARY" if obits == 1 else f"UINT{obits}"
            return self._threshold(node, acc, theta, s, 1, qmin - zp, dt,
                                   clip=(s * (qmin - zp), s * (qmax - zp)), kind="int")
        if op in ("MaxPool",):
            raise StreamlineError(f"node {node.name} (MaxPool): pooling before the activation quantiser is not supported")
        raise StreamlineError(f"node {node.name} ({op}): unsupported after a linear layer")

    def _threshold(self, node, acc, theta, s_out, m_out, o_out, dtype, clip, kind):
        a, b = acc.a.copy(), acc.b.copy()
        layer = acc.layer
        wi = layer["weights"]
        lo, hi = acc.lo.copy(), acc.hi.copy()
        flip = a < 0
        if np.any(flip):
            if layer["kind"] == "xnor":
                K = wi.shape[0]
                # complemented weight bits count mismatches: P' = K - P
                b = np.where(flip, a * K + b, b)
            else:
                lo, hi = np.where(flip, -acc.hi, lo), np.where(flip, -acc.lo, hi)
            wi[:, flip] = -wi[:, flip]
            a = np.where(flip, -a, a)
        C, nT = len(a), len(theta)
        T = np.empty((C, nT))
        for j in range(C):
            for k, th in enumerate(theta):
                if acc.relu and th <= 0:
                    t = lo[j]  # relu(y) >= th <= 0 always holds
                elif a[j] == 0:
                    t = lo[j] if b[j] >= th else hi[j] + 1
                else:
                    t = math.ceil((th - b[j]) / a[j])
                T[j, k] = min(max(t, lo[j]), hi[j] + 1)  # clipping to the reachable range is exact
        T = np.maximum.accumulate(T, axis=1)
        acc_name = self._emit_linear(layer, acc)
        name = self._fresh("Thresh")
        self._init(name + "_thresholds", T, "INT32" if T.min() < 0 else "UINT32")
        self.nodes.append(helper.make_node("MultiThreshold", [acc_name, name + "_thresholds"], [name + "_out"],
                                           name=name, domain=QONNX_DOMAIN, out_dtype=dtype,
                                           data_layout="NHWC" if acc.layout == "NHWC" else "NC"))
        self._tensor(name + "_out", acc.shape, dtype)
        self.meta["layers"].append(dict(
            mvau=layer["name"], thresh=name, mode=layer["kind"], in_dtype=layer["in_dtype"], out_dtype=dtype,
            scale=a.tolist(), bias=b.tolist(), lin_scale=np.where(flip, -acc.a0, acc.a0).tolist(),
            lin_bias=self._lin_bias_after_flip(acc, flip).tolist(),
            theta=theta.tolist(), act=dict(kind=kind, scale=s_out, mult=m_out, offset=o_out, clip=list(clip),
                                           relu=acc.relu), **layer["extra"]))
        return IntAct(name + "_out", acc.shape, acc.layout, dtype, s_out, m_out, o_out)

    def _lin_bias_after_flip(self, acc, flip):
        if acc.layer["kind"] == "xnor":
            K = acc.layer["weights"].shape[0]
            return np.where(flip, acc.a0 * K + acc.b0, acc.b0)
        return acc.b0

    def _emit_linear(self, layer, acc, out_name=None):
        name = layer["name"]
        wi = layer["weights"]
        out = out_name or name + "_out"
        if layer["kind"] == "xnor":
            self._init(name + "_weights", (wi > 0).astype(np.float32), "BINARY")
            self.nodes.append(helper.make_node("XnorPopcountMatMul", [layer["input"], name + "_weights"], [out],
                                               name=name, domain=QONNX_DOMAIN))
        else:
            wb = layer["wbits"] or 1
            wdt = "BIPOLAR" if np.all(np.abs(wi) == 1) else f"INT{max(2, wb)}"
            self._init(name + "_weights", wi, wdt)
            self.nodes.append(helper.make_node("MatMul", [layer["input"], name + "_weights"], [out], name=name))
        lo, hi = float(np.min(acc.lo)), float(np.max(acc.hi))
        bits = max(int(abs(lo)), int(abs(hi)) + 1).bit_length() + 1
        self._tensor(out, acc.shape, f"INT{min(max(bits, 2), 32)}")
        return out

    def finish(self, state, out_name):
        if isinstance(state, FloatIn):
            raise StreamlineError("the graph has no quantised layers")
        if isinstance(state, IntAct):
            raise StreamlineError("the graph must end in a linear layer (the classifier), not an activation")
        acc = state
        self._emit_linear(acc.layer, acc, "acc_out")
        self._init("out_scale", acc.a)
        self._init("out_bias", acc.b)
        self.nodes.append(helper.make_node("Mul", ["acc_out", "out_scale"], ["scaled_out"], name="Scale_out"))
        self.nodes.append(helper.make_node("Add", ["scaled_out", "out_bias"], ["global_out"], name="Bias_out"))
        self._tensor("scaled_out", acc.shape)
        self.meta["layers"].append(dict(mvau=acc.layer["name"], thresh=None, mode=acc.layer["kind"],
                                        in_dtype=acc.layer["in_dtype"], out_dtype=None, scale=acc.a.tolist(),
                                        bias=acc.b.tolist(), lin_scale=acc.a0.tolist(), lin_bias=acc.b0.tolist(),
                                        **acc.layer["extra"]))
        self.meta.update(model=self.model_name, input_dtype=self.input[2], input_scale=self.input[3],
                         input_shape=list(self.input[1]), classes=int(acc.shape[-1]))
        gin = helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, *self.input[1]])
        gout = helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, *acc.shape])
        vinfo = [v for k, v in self.vinfo.items() if k not in ("global_in", "global_out")]
        graph = helper.make_graph(self.nodes, "bitlens_streamlined", [gin], [gout], self.inits, value_info=vinfo)
        model = qonnx_make_model(graph, producer_name="bitlens")
        model.metadata_props.add(key="bitlens", value=json.dumps(self.meta))
        mw = ModelWrapper(model)
        for k, v in self.dtypes.items():
            mw.set_tensor_datatype(k, DataType[v])
        return mw


def streamline(qonnx_model, name="model", dataset=None) -> ModelWrapper:
    """Brevitas QONNX export (path or ModelWrapper) -> streamlined integer graph; `dataset` (the
    one the model was trained on) goes into its metadata, where sim and FINN's golden data read it."""
    mw = qonnx_model if isinstance(qonnx_model, ModelWrapper) else ModelWrapper(str(qonnx_model))
    mw = mw.transform(InferShapes()).transform(SortGraph()).transform(GiveUniqueNodeNames())
    out = Streamliner(mw, name).run()
    if dataset is not None:
        meta = metadata(out)
        meta["dataset"] = dataset
        for p in out.model.metadata_props:
            if p.key == "bitlens":
                p.value = json.dumps(meta)
    return out


def metadata(mw: ModelWrapper) -> dict:
    for p in mw.model.metadata_props:
        if p.key == "bitlens":
            return json.loads(p.value)
    raise StreamlineError("not a BitLens streamlined graph (no 'bitlens' metadata)")


def metadata_or_empty(model) -> dict:
    """The 'bitlens' metadata of a graph (ModelWrapper or ModelProto), {} for a graph without it
    or with unreadable metadata (a foreign or synthetic graph: the caller falls back to defaults)."""
    proto = model.model if isinstance(model, ModelWrapper) else model
    for p in proto.metadata_props:
        if p.key == "bitlens":
            try:
                meta = json.loads(p.value)
            except ValueError:
                return {}
            return meta if isinstance(meta, dict) else {}
    return {}


def with_batch(mw: ModelWrapper, batch: int) -> ModelWrapper:
    """A copy of a streamlined graph whose declared shapes have batch size `batch`, so qonnx
    executes many images per call (the graph itself is batch-agnostic)."""
    m = copy.deepcopy(mw.model)
    inits = {i.name for i in m.graph.initializer}
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_value = batch
    for node in m.graph.node:
        if node.op_type == "Im2Col":
            for a in node.attribute:
                if a.name == "input_shape":
                    shape = a.s.decode().strip("()").split(",")
                    a.s = ("(" + ", ".join([str(batch)] + [d.strip() for d in shape[1:]]) + ")").encode()
    return ModelWrapper(m)
