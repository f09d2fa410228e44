"""Streamlined qonnx graph (README contract) -> layer IR (hw/layers.py), and the IR run by the
unit twins (the graph-level reference the RTL is checked against)."""
from pathlib import Path

import numpy as np
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper

from hw import units as U
from hw.errors import CompileError
from hw.layers import MVAU, SWG, Graph, Pool, Thresholding
from model.streamline import metadata_or_empty

HOST_OPS = ("Mul", "Add")


def _dt(model, tensor):
    dt = model.get_tensor_datatype(tensor)
    return dt


def _int_init(model, node, idx, what):
    arr = model.get_initializer(node.input[idx])
    if arr is None:
        raise CompileError(f"node {node.name} ({node.op_type}): {what} '{node.input[idx]}' is not an initializer")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise CompileError(f"node {node.name} ({node.op_type}): {what} holds non-finite values")
    return arr


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _thresholds(model, node, rows, what, expected):
    """A MultiThreshold's thresholds as (rows, T), sorted per row, and its output datatype, checked
    against the contract; `what` names the node in errors, `expected` the shapes it may have."""
    t = _int_init(model, node, 1, "thresholds")
    if t.ndim != 2 or t.shape[0] not in (1, rows):
        raise CompileError(f"{what}: thresholds {t.shape}, expected {expected}")
    if t.shape[0] == 1:
        t = np.repeat(t, rows, axis=0)
    if np.any(np.diff(t, axis=1) < 0):
        raise CompileError(f"{what}: thresholds are not sorted per channel")
    if float(_attr(node, "out_scale", 1.0)) != 1.0 or float(_attr(node, "out_bias", 0.0)) != 0.0:
        raise CompileError(f"{what}: out_scale/out_bias must be 1/0")
    odt = _dt(model, node.output[0])
    if odt.signed() or not odt.is_integer() or (1 << odt.bitwidth()) - 1 < t.shape[1]:
        raise CompileError(f"{what}: output {odt.name} cannot hold {t.shape[1]} thresholds")
    return t, odt


def _input_thresholds(model, node, shape) -> Thresholding:
    """The contract's Thresh_in: MultiThreshold on global_in (UINT8, NHWC), thresholds (C, T) or
    (1, T), output BINARY or UINTn counting the thresholds passed."""
    what = f"node {node.name} (MultiThreshold on the input)"
    layout = _attr(node, "data_layout", "NCHW")
    layout = layout.decode() if isinstance(layout, bytes) else layout
    if layout != "NHWC":
        raise CompileError(f"{what}: data_layout {layout}, expected NHWC")
    c = shape[3]
    t, odt = _thresholds(model, node, c, what, f"({c}, T) or (1, T)")
    return Thresholding(node.name, shape[1] * shape[2], c, U.thresh_clip(t, 8), out_bits=odt.bitwidth())


def read_graph(onnx_path) -> Graph:
    """Streamlined graph (README contract) -> list of Thresholding / SWG / MVAU / Pool layers."""
    path = Path(onnx_path)
    if not path.is_file():
        raise CompileError(f"{path}: no such graph (export and streamline the model first)")
    try:
        model = ModelWrapper(str(path))
    except Exception as e:  # onnx raises several unrelated types
        raise CompileError(f"{path}: not a readable ONNX graph ({type(e).__name__}: {e})") from None
    gin = model.graph.input[0].name
    shape = tuple(model.get_tensor_shape(gin))
    if len(shape) != 4 or shape[0] != 1:
        raise CompileError(f"{path}: input '{gin}' has shape {shape}, expected (1, H, W, C)")
    dt = _dt(model, gin)
    if dt.name != "UINT8":
        raise CompileError(f"{path}: input '{gin}' is {dt.name}, expected UINT8 pixels")
    name = metadata_or_empty(model).get("model", "")
    layers = []
    cur = gin
    cur_shape = shape
    cur_bits, cur_signed = 8, False
    host = False
    for node in model.graph.node:
        op = node.op_type
        if host:
            if op not in HOST_OPS:
                raise CompileError(f"node {node.name} ({op}) after the final accumulators: only "
                                   f"{'/'.join(HOST_OPS)} (host-side scale and bias) may follow")
            continue
        if node.input[0] != cur:
            raise CompileError(f"node {node.name} ({op}) does not consume the stream tensor '{cur}': "
                               "the graph must be a single chain")
        out_shape = tuple(model.get_tensor_shape(node.output[0]) or ())
        if op == "MultiThreshold" and not layers and cur == gin:
            layers.append(_input_thresholds(model, node, cur_shape))
            cur_bits, cur_signed = layers[-1].out_bits, False
        elif op == "Im2Col":
            k = list(_attr(node, "kernel_size"))
            s = list(_attr(node, "stride"))
            pad = list(_attr(node, "pad_amount", [0, 0, 0, 0]))
            pad_value = _attr(node, "pad_value", 0)
            dil = list(_attr(node, "dilations", [1, 1]))
            if len(cur_shape) != 4 or k[0] != k[1] or s[0] != s[1]:
                raise CompileError(f"node {node.name} (Im2Col): only square kernels and strides on (1, H, W, C) "
                                   f"are supported (kernel {k}, stride {s}, input {cur_shape})")
            if dil != [1, 1]:
                raise CompileError(f"node {node.name} (Im2Col): dilation {dil} not supported")
            if _attr(node, "depthwise", 0):
                raise CompileError(f"node {node.name} (Im2Col): depthwise windows are not supported")
            if len(pad) != 4 or any(p < 0 for p in pad):
                raise CompileError(f"node {node.name} (Im2Col): pad_amount {pad}, expected [top, left, bottom, "
                                   "right] >= 0")
            if cur_bits is None or cur_signed:
                raise CompileError(f"node {node.name} (Im2Col): input must be unsigned activations or pixels")
            if any(pad) and not 0 <= pad_value < (1 << cur_bits):
                raise CompileError(f"node {node.name} (Im2Col): pad_value {pad_value} is not a UINT{cur_bits} "
                                   "value of its input")
            _, h, w, c = cur_shape
            if h + pad[0] + pad[2] < k[0] or w + pad[1] + pad[3] < k[0]:
                raise CompileError(f"node {node.name} (Im2Col): kernel {k[0]} is larger than the padded "
                                   f"{h + pad[0] + pad[2]} x {w + pad[1] + pad[3]} image")
            layers.append(SWG(node.name, h, c, k[0], s[0], cur_bits, ifm_w=w if w != h else 0,
                              pad=tuple(int(p) for p in pad), pad_value=int(pad_value) if any(pad) else 0))
            want = (1, layers[-1].ofm, layers[-1].ofm_w, k[0] * k[0] * c)
            if out_shape and out_shape != want:
                raise CompileError(f"node {node.name} (Im2Col): output shape {out_shape}, expected {want}")
        elif op in ("MatMul", "XnorPopcountMatMul"):
            w = _int_init(model, node, 1, "weight")
            if w.ndim != 2:
                raise CompileError(f"node {node.name} ({op}): weight shape {w.shape}, expected (MW, MH)")
            if np.any(w != np.round(w)):
                raise CompileError(f"node {node.name} ({op}): weights are not integers")
            wt = w.T.astype(np.int64)
            mh, mw = wt.shape
            if cur_shape[-1] != mw:
                raise CompileError(f"node {node.name} ({op}): input has {cur_shape[-1]} elements, weights {mw} rows")
            idt = _dt(model, node.input[0])
            if op == "XnorPopcountMatMul":
                if not set(np.unique(wt)) <= {0, 1} or idt.name != "BINARY":
                    raise CompileError(f"node {node.name} (XnorPopcountMatMul): needs BINARY input and {{0,1}} "
                                       f"weights (input is {idt.name})")
                mode, in_bits, in_signed, w_bits = U.MODE_XNOR, 1, False, 1
            else:
                if not idt.is_integer() or idt.name == "BIPOLAR":
                    raise CompileError(f"node {node.name} (MatMul): input datatype {idt.name} is not supported "
                                       "(need UINTn/INTn/BINARY)")
                in_bits, in_signed = idt.bitwidth(), bool(idt.signed())
                if set(np.unique(wt)) <= {-1, 1}:
                    mode, w_bits = U.MODE_BIPOLAR, 1
                else:
                    mode = U.MODE_INT
                    w_bits = U.signed_bits(int(wt.min()), int(wt.max()))
            pixels = int(np.prod(cur_shape[:-1]))
            lo, hi = U.mvau_acc_range(wt, mode, in_bits, in_signed)
            after = layers[-1].c if layers and isinstance(layers[-1], SWG) else 0
            layers.append(MVAU(node.name, mw, mh, mode, in_bits, in_signed, w_bits, wt, pixels=pixels,
                               acc_lo=lo, acc_hi=hi, after_swg=after))
            cur_bits, cur_signed = None, True
        elif op == "MultiThreshold":
            if not layers or not isinstance(layers[-1], MVAU) or layers[-1].thresholds is not None:
                raise CompileError(f"node {node.name} (MultiThreshold) must directly follow a MatMul")
            mv = layers[-1]
            t, odt = _thresholds(model, node, mv.mh, f"node {node.name} (MultiThreshold)", f"({mv.mh}, T)")
            mv.thresholds = U.clip_thresholds(t, mv.acc_lo, mv.acc_hi)
            mv.thresh_name = node.name
            mv.act_bits = odt.bitwidth()
            cur_bits, cur_signed = odt.bitwidth(), False
        elif op == "MaxPoolNHWC":
            ks = list(_attr(node, "kernel_shape"))
            st = list(_attr(node, "strides"))
            pads = list(_attr(node, "pads", [0, 0, 0, 0]))
            if ks[0] != ks[1] or st != ks or any(pads) or cur_shape[1] != cur_shape[2]:
                raise CompileError(f"node {node.name} (MaxPoolNHWC): only square K x K pools with stride K and "
                                   f"no padding (kernel {ks}, strides {st}, pads {pads})")
            if cur_signed or cur_bits is None:
                raise CompileError(f"node {node.name} (MaxPoolNHWC): input must be unsigned activations")
            layers.append(Pool(node.name, cur_shape[1], cur_shape[3], ks[0], cur_bits))
        elif op == "Reshape":
            pass     # NHWC flatten: the element order of the stream does not change
        else:
            raise CompileError(f"node {node.name}: op type {op} is not supported by the BitLens compiler")
        cur = node.output[0]
        cur_shape = out_shape if out_shape else cur_shape
        if op in ("MatMul", "XnorPopcountMatMul") and not any(
                n.op_type == "MultiThreshold" and n.input[0] == cur for n in model.graph.node):
            host = True
    if not layers or not isinstance(layers[-1], MVAU) or layers[-1].thresholds is not None:
        raise CompileError(f"{path}: the graph must end with a MatMul whose accumulators are the output")
    return Graph(layers, tuple(shape[1:]), 8, name)



def reference(graph: Graph, images):
    """The IR run by the unit twins: uint8 (N, H, W, C) -> final accumulators (N, classes)."""
    x = np.asarray(images, dtype=np.int64)
    if x.ndim == 3:
        x = x[None]
    for l in graph.layers:
        if isinstance(l, Thresholding):
            x = U.thresh_ref(x, l.thresholds)
        elif isinstance(l, SWG):
            x = U.swg_ref(x, l.k, l.s, l.pad, l.pad_value)
        elif isinstance(l, Pool):
            x = U.pool_ref(x, l.k)
        else:
            if x.shape[-1] != l.mw:          # Reshape (NHWC flatten) in front of a classifier
                x = x.reshape(x.shape[0], l.mw)
            x = U.mvau_ref(x, l.weights, l.thresholds, l.mode)
    return x.reshape(x.shape[0], -1)
