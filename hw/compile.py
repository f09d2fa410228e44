"""Compile a streamlined BitLens graph into a FINN-architecture accelerator.

graph (qonnx) -> layer IR (Thresholding / SWG / MVAU / Pool) -> folding (given or chosen) -> analytic estimates
-> RTL folder: units, generated top `bitlens_top` (FINN port names), memory files, manifest.

    python -m hw.compile --model tfc-w1a1 --board ulx3s [--folding F.json] [--target-fps N]
"""
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw import units as U
from hw.boards import DEFAULT_BOARD, get_board
from model import cli, paths, publish

ROOT = Path(__file__).resolve().parents[1]
FIT_LIMIT = 0.8          # fraction of a part's LUT/FF/BRAM the chooser may fill (routing headroom)
# Without a folding or a target FPS the chooser stays within this share of the part: the fastest
# design that fits the whole part (e.g. ~50k LUT for TFC on ULX3S) takes an hour to place and to
# Verilate, while the board's UART caps the useful rate far below it anyway.
DEFAULT_SHARE = 0.1
LINK_FIFO_DEPTH = 2
HOST_OPS = ("Mul", "Add")


class CompileError(ValueError):
    pass


class FoldingError(CompileError):
    pass


class FitError(CompileError):
    pass


# ----------------------------------------------------------------------------- IR
@dataclass
class Thresholding:
    """The graph's input MultiThreshold (Thresh_in): pixel bytes -> counts of thresholds passed."""
    name: str
    pixels: int
    c: int
    thresholds: np.ndarray = field(repr=False)      # (C, T) integers clipped to 0..2^in_bits
    out_bits: int = 1
    in_bits: int = 8
    pe: int = 1
    pe_fixed: bool = False                           # PE given by a folding config

    @property
    def n_thr(self):
        return int(self.thresholds.shape[1])

    @property
    def in_elems(self):
        return self.pe

    @property
    def out_elems(self):
        return self.pe

    def legal_pe(self):
        return U.thresh_legal_pe(self.pixels, self.c)

    def cycles(self, pe=None):
        return U.thresh_cycles(self.pixels, self.c, pe or self.pe)

    def resources(self, kbit, pe=None):
        return U.thresh_resources(self.c, pe or self.pe, self.n_thr, self.in_bits, self.out_bits, kbit)


@dataclass
class SWG:
    """Im2Col: bl_swg on an ifm x ifm_w image, behind a bl_pad when pad = [top, left, bottom, right]
    is not all zero."""
    name: str
    ifm: int
    c: int
    k: int
    s: int
    bits: int
    simd: int = 1
    ifm_w: int = 0                                   # 0: square (ifm)
    pad: tuple = (0, 0, 0, 0)
    pad_value: int = 0

    @property
    def w(self):
        return self.ifm_w or self.ifm

    @property
    def padded(self):
        return any(self.pad)

    @property
    def hp(self):
        return self.ifm + self.pad[0] + self.pad[2]

    @property
    def wp(self):
        return self.w + self.pad[1] + self.pad[3]

    @property
    def ofm(self):
        return U.conv_out_dim(self.hp, self.k, self.s)

    @property
    def ofm_w(self):
        return U.conv_out_dim(self.wp, self.k, self.s)

    @property
    def in_elems(self):
        return self.simd

    @property
    def out_elems(self):
        return self.simd

    @property
    def out_bits(self):
        return self.bits

    def cycles(self):
        # bl_pad emits the padded image at one beat per cycle, which the window generator's cycles
        # (over the padded image) already cover
        return U.swg_cycles(self.hp, self.c, self.k, self.s, self.simd, ifm_w=self.wp)

    def resources(self, kbit):
        r = U.swg_resources(self.hp, self.c, self.k, self.s, self.simd, self.bits, kbit, ifm_w=self.wp)
        if self.padded:
            p = U.pad_resources(self.ifm, self.w, self.c, self.simd, self.bits, self.pad)
            r = {k: r[k] + p[k] for k in r}
        return r


@dataclass
class MVAU:
    name: str
    mw: int
    mh: int
    mode: int
    in_bits: int
    in_signed: bool
    w_bits: int
    weights: np.ndarray = field(repr=False)          # (MH, MW) integers
    thresholds: np.ndarray = field(default=None, repr=False)   # (MH, T) clipped integers or None
    pixels: int = 1
    thresh_name: str = ""
    act_bits: int = 0                                 # activation output bits (0: accumulators)
    acc_lo: int = 0
    acc_hi: int = 0
    pe: int = 1
    simd: int = 1
    after_swg: int = 0                                # channels of the SWG feeding it (0: none)

    @property
    def n_thr(self):
        return 0 if self.thresholds is None else int(self.thresholds.shape[1])

    @property
    def acc_bits(self):
        hi = self.acc_hi + 1 if self.n_thr else self.acc_hi
        return max(U.signed_bits(self.acc_lo, hi), self.in_bits + 1)

    @property
    def out_bits(self):
        return self.act_bits if self.n_thr else self.acc_bits

    @property
    def in_elems(self):
        return self.simd

    @property
    def out_elems(self):
        return self.pe

    def legal_pe(self):
        return U.divisors(self.mh)

    def legal_simd(self):
        # after a window generator the SIMD lanes must come from one pixel's channels (FINN rule)
        return U.divisors(self.after_swg) if self.after_swg else U.divisors(self.mw)

    def cycles(self, pe=None, simd=None):
        return U.mvau_cycles(self.mw, self.mh, pe or self.pe, simd or self.simd, self.pixels)

    def bank_depth(self, kbit):
        """bl_mvau's W_BANK_D for this folding (0: one weight memory)."""
        return U.bank_depth((self.mw // self.simd) * (self.mh // self.pe), self.pe * self.simd * self.w_bits, kbit)

    def latency(self, kbit, simd=None):
        """bl_mvau's pipeline: cycles from a vector's last input beat to its output beat."""
        return U.mvau_latency(simd or self.simd, self.mode, self.in_bits, self.acc_bits, self.w_bits,
                              banked=self.bank_depth(kbit) > 0)

    def resources(self, kbit, pe=None, simd=None):
        return U.mvau_resources(self.mw, self.mh, pe or self.pe, simd or self.simd, self.mode, self.in_bits,
                                self.acc_bits, self.n_thr, self.w_bits, kbit)


@dataclass
class Pool:
    name: str
    ifm: int
    c: int
    k: int
    bits: int
    pe: int = 1

    @property
    def in_elems(self):
        return self.pe

    @property
    def out_elems(self):
        return self.pe

    @property
    def out_bits(self):
        return self.bits

    def cycles(self):
        return U.pool_cycles(self.ifm, self.c, self.pe)

    def resources(self, kbit):
        return U.pool_resources(self.ifm, self.c, self.k, self.pe, self.bits, kbit)


@dataclass
class Graph:
    layers: list
    in_shape: tuple          # (H, W, C)
    in_bits: int
    model: str = ""

    @property
    def mvaus(self):
        return [l for l in self.layers if isinstance(l, MVAU)]


# ----------------------------------------------------------------------------- graph -> IR
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
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _input_thresholds(model, node, shape) -> Thresholding:
    """The contract's Thresh_in: MultiThreshold on global_in (UINT8, NHWC), thresholds (C, T) or
    (1, T), output BINARY or UINTn counting the thresholds passed."""
    what = f"node {node.name} (MultiThreshold on the input)"
    layout = _attr(node, "data_layout", "NCHW")
    layout = layout.decode() if isinstance(layout, bytes) else layout
    if layout != "NHWC":
        raise CompileError(f"{what}: data_layout {layout}, expected NHWC")
    c = shape[3]
    t = _int_init(model, node, 1, "thresholds")
    if t.ndim != 2 or t.shape[0] not in (1, c):
        raise CompileError(f"{what}: thresholds {t.shape}, expected ({c}, T) or (1, T)")
    if t.shape[0] == 1:
        t = np.repeat(t, c, axis=0)
    if np.any(np.diff(t, axis=1) < 0):
        raise CompileError(f"{what}: thresholds are not sorted per channel")
    if float(_attr(node, "out_scale", 1.0)) != 1.0 or float(_attr(node, "out_bias", 0.0)) != 0.0:
        raise CompileError(f"{what}: out_scale/out_bias must be 1/0")
    odt = _dt(model, node.output[0])
    if odt.signed() or not odt.is_integer() or (1 << odt.bitwidth()) - 1 < t.shape[1]:
        raise CompileError(f"{what}: output {odt.name} cannot hold {t.shape[1]} thresholds")
    return Thresholding(node.name, shape[1] * shape[2], c, U.thresh_clip(t, 8), out_bits=odt.bitwidth())


def read_graph(onnx_path) -> Graph:
    """Streamlined graph (README contract) -> list of Thresholding / SWG / MVAU / Pool layers."""
    from qonnx.core.modelwrapper import ModelWrapper
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
    meta = {p.key: p.value for p in model.model.metadata_props}
    name = ""
    if "bitlens" in meta:
        try:
            name = json.loads(meta["bitlens"]).get("model", "")
        except (ValueError, AttributeError):
            name = ""
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
            t = _int_init(model, node, 1, "thresholds")
            if t.ndim != 2 or t.shape[0] not in (1, mv.mh):
                raise CompileError(f"node {node.name} (MultiThreshold): thresholds {t.shape}, expected ({mv.mh}, T)")
            if t.shape[0] == 1:
                t = np.repeat(t, mv.mh, axis=0)
            if np.any(np.diff(t, axis=1) < 0):
                raise CompileError(f"node {node.name} (MultiThreshold): thresholds are not sorted per channel")
            if float(_attr(node, "out_scale", 1.0)) != 1.0 or float(_attr(node, "out_bias", 0.0)) != 0.0:
                raise CompileError(f"node {node.name} (MultiThreshold): out_scale/out_bias must be 1/0")
            odt = _dt(model, node.output[0])
            if odt.signed() or not odt.is_integer() or (1 << odt.bitwidth()) - 1 < t.shape[1]:
                raise CompileError(f"node {node.name} (MultiThreshold): output {odt.name} cannot hold "
                                   f"{t.shape[1]} thresholds")
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


# ----------------------------------------------------------------------------- folding
def load_folding(folding):
    if folding is None:
        return None
    where = ""
    if isinstance(folding, (str, Path)):
        where = f"{folding}: "
        p = Path(folding)
        if not p.is_file():
            raise FoldingError(f"{p}: folding file not found")
        try:
            folding = json.loads(p.read_text())
        except ValueError as e:
            raise FoldingError(f"{p}: not JSON ({e})") from None
    if not isinstance(folding, dict):
        raise FoldingError(where + "folding must be a dict {\"Defaults\": {}, \"MVAU_i\": {\"PE\": p, \"SIMD\": s}}")
    for key, val in folding.items():
        if not isinstance(val, dict):
            raise FoldingError(f"{where}entry '{key}' must be an object like {{\"PE\": 2, \"SIMD\": 4}}, "
                               f"got {type(val).__name__}")
        for k in ("PE", "SIMD"):
            v = val.get(k)
            if key != "Defaults" and v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise FoldingError(f"{where}{key}.{k} must be a positive whole number, got {json.dumps(v)}")
    return folding


def _propagate(graph: Graph):
    """Set SWG SIMD and Pool PE from the MVAUs around them, and the input thresholding's PE (unless
    a folding config gave it) so that it never limits the II of the rest."""
    layers = graph.layers
    for i, l in enumerate(layers):
        if isinstance(l, SWG):
            nxt = layers[i + 1]
            l.simd = nxt.simd
        elif isinstance(l, Pool):
            prev = layers[i - 1]
            l.pe = math.gcd(prev.out_elems, l.c)
    for i, l in enumerate(layers):
        if isinstance(l, Thresholding) and not l.pe_fixed:
            rest = [x.cycles() for x in layers if x is not l]
            l.pe = thresh_default_pe(l, max(rest) if rest else 1, layers[i + 1].in_elems if i + 1 < len(layers)
                                     else 1)


def thresh_default_pe(l: Thresholding, ii: int, nxt_elems: int) -> int:
    """Smallest legal PE whose cycles, and the width-converter link to the next unit (gcd of the two
    beat sizes per cycle), stay within the II; else the one that comes closest."""
    total = l.pixels * l.c

    def worst(pe):
        return max(l.cycles(pe), total // math.gcd(pe, nxt_elems))
    legal = l.legal_pe()
    ok = [pe for pe in legal if worst(pe) <= ii]
    return ok[0] if ok else min(legal, key=lambda pe: (worst(pe), pe))


def apply_folding(graph: Graph, folding: dict):
    known = {l.name for l in graph.layers}
    for key, val in folding.items():
        if key == "Defaults":
            continue
        if key not in known:
            raise FoldingError(f"folding names '{key}', which is not a layer; layers: {', '.join(sorted(known))}")
    for l in graph.layers:
        if isinstance(l, Thresholding):
            cfg = folding.get(l.name)
            l.pe_fixed = cfg is not None and "PE" in cfg     # without one: chosen to keep up (_propagate)
            if l.pe_fixed:
                pe = cfg["PE"]
                if not isinstance(pe, int) or pe not in l.legal_pe():
                    raise FoldingError(f"{l.name}: PE={pe} must divide C={l.c} or be a multiple of it dividing "
                                       f"H*W*C={l.pixels * l.c}; legal PE: {l.legal_pe()}")
                l.pe = pe
    for mv in graph.mvaus:
        cfg = folding.get(mv.name)
        if cfg is None:
            raise FoldingError(f"folding has no entry for {mv.name} (need PE and SIMD)")
        pe, simd = cfg.get("PE", 1), cfg.get("SIMD", 1)
        if not isinstance(pe, int) or pe not in mv.legal_pe():
            raise FoldingError(f"{mv.name}: PE={pe} does not divide MH={mv.mh}; legal PE: {mv.legal_pe()}")
        if not isinstance(simd, int) or simd not in mv.legal_simd():
            what = f"the {mv.after_swg} channels of its window generator" if mv.after_swg else f"MW={mv.mw}"
            raise FoldingError(f"{mv.name}: SIMD={simd} does not divide {what}; legal SIMD: {mv.legal_simd()}")
        mv.pe, mv.simd = pe, simd
    _propagate(graph)


def folding_dict(graph: Graph):
    out = {"Defaults": {}}
    for l in graph.layers:
        if isinstance(l, MVAU):
            out[l.name] = {"PE": l.pe, "SIMD": l.simd}
        elif isinstance(l, SWG):
            out[l.name] = {"SIMD": l.simd}
        elif isinstance(l, (Pool, Thresholding)):
            out[l.name] = {"PE": l.pe}
    return out


def link_fifo_depth(layer, ii=None):
    """Depth of the FIFO in front of a layer. An MVAU that reuses its input over NF > 1 folds takes
    a whole vector (SF beats) in its first fold; a FIFO holding that vector lets a slower producer
    keep filling it during the other folds, so the layer reaches II = SF*NF instead of waiting on
    every element of the first fold. A bl_pad (padded SWG) takes no input while it emits a run of
    border beats, the longest at an image boundary (right border, bottom and top rows, left
    border); a producer running at the design's II (`ii` cycles per image) keeps producing
    meanwhile, and a FIFO holding those beats keeps it from stalling."""
    if isinstance(layer, MVAU) and layer.mh // layer.pe > 1:
        sf = layer.mw // layer.simd
        return max(LINK_FIFO_DEPTH, 1 << (sf - 1).bit_length())
    if isinstance(layer, SWG) and layer.padded and ii:
        need = pad_burst_beats(layer, ii) + 1
        return max(LINK_FIFO_DEPTH, 1 << (need - 1).bit_length())
    return LINK_FIFO_DEPTH


def pad_burst_beats(layer, ii):
    """Input beats a producer delivering one image per `ii` cycles sends while bl_pad emits its
    longest border run."""
    t, lf, b, r = layer.pad
    cf = layer.c // layer.simd
    burst = ((t + b) * layer.wp + lf + r) * cf
    beats = layer.ifm * layer.w * cf
    return -(-burst * beats // ii)


def _links(graph: Graph):
    """Stream links (bits, producer elems, consumer elems) from input to output, for DWCs/FIFOs."""
    links = []
    prev_elems, prev_bits = None, graph.in_bits
    for l in graph.layers:
        if prev_elems is not None:
            links.append((prev_bits, prev_elems, l.in_elems))
        prev_elems, prev_bits = l.out_elems, l.out_bits
    return links


def _dwc_chain(a, b):
    """Element counts a -> ... -> b through converters where one side divides the other."""
    if a == b:
        return [a]
    if a % b == 0 or b % a == 0:
        return [a, b]
    g = math.gcd(a, b)
    return [a, g, b]


def estimate(graph: Graph, board):
    kbit = board.bram_kbit
    rows = []
    for l in graph.layers:
        r = l.resources(kbit)
        extra = {}
        if isinstance(l, MVAU):
            extra = {"PE": l.pe, "SIMD": l.simd, "pipeline_cycles": l.latency(kbit),
                     "weight_banks": -(-(l.mw // l.simd) * (l.mh // l.pe) // l.bank_depth(kbit)) if l.bank_depth(kbit) else 1}
        elif isinstance(l, Thresholding):
            extra = {"PE": l.pe, "thresholds": l.n_thr}
        elif isinstance(l, SWG) and l.padded:
            extra = {"pad": list(l.pad), "pad_value": l.pad_value}
        rows.append(dict(layer=l.name, kind=type(l).__name__, cycles=int(l.cycles()), **r, **extra))
    ii = max(r["cycles"] for r in rows)
    glue = dict(lut=0, ff=0, bram=0)
    for (bits, a, b), l in zip(_links(graph), graph.layers[1:]):
        chain = _dwc_chain(a, b)
        for x, y in zip(chain, chain[1:]):
            for k, v in U.dwc_resources(x * bits, y * bits).items():
                glue[k] += v
        for k, v in U.fifo_resources(b * bits, link_fifo_depth(l, ii), kbit).items():
            glue[k] += v
    for k, v in U.fifo_resources(graph.layers[0].in_elems * graph.in_bits, link_fifo_depth(graph.layers[0], ii),
                                 kbit).items():
        glue[k] += v
    total = {k: sum(r[k] for r in rows) + glue[k] for k in ("lut", "ff", "bram")}
    clk = board.clock_mhz
    return dict(board=board.name, clock_mhz=clk, layers=rows, glue=glue, total=total, analytic_ii=int(ii),
                latency_cycles=int(sum(r["cycles"] + r.get("pipeline_cycles", 0) for r in rows)), fps=clk * 1e6 / ii,
                capacity=dict(lut=board.lut, ff=board.ff, bram=board.bram))


def fits(est, board, limit=1.0):
    t = est["total"]
    return t["lut"] <= limit * board.lut and t["ff"] <= limit * board.ff and t["bram"] <= limit * board.bram


def _fit_message(est, board):
    t = est["total"]
    return (f"design needs {t['lut']} LUT, {t['ff']} FF, {t['bram']} BRAM; {board.name} ({board.part}) has "
            f"{board.lut} LUT, {board.ff} FF, {board.bram} BRAM, of which BitLens fills at most "
            f"{FIT_LIMIT:.0%} ({int(FIT_LIMIT * board.lut)} LUT, {int(FIT_LIMIT * board.ff)} FF, "
            f"{int(FIT_LIMIT * board.bram)} BRAM) to leave room for routing")


def cost(res, board):
    """Share of the part a layer uses, summed over LUT, FF and BRAM: what the chooser minimises."""
    return res["lut"] / board.lut + res["ff"] / board.ff + res["bram"] / max(board.bram, 1)


def choose_folding(graph: Graph, board, target_fps=None, share=DEFAULT_SHARE):
    """Cheapest folding per MVAU meeting an II. Without a target: the smallest II whose LUTs stay
    within `share` of the part and that fits (share=FIT_LIMIT gives the fastest that fits), else
    the most folded design."""
    kbit = board.bram_kbit
    mvs = graph.mvaus
    cands = {}
    for mv in mvs:
        opts = []
        for pe in mv.legal_pe():
            for simd in mv.legal_simd():
                opts.append((mv.cycles(pe, simd), cost(mv.resources(kbit, pe, simd), board), pe, simd))
        cands[mv.name] = opts

    def pick(ii):
        for mv in mvs:
            ok = [o for o in cands[mv.name] if o[0] <= ii]
            if not ok:
                return False
            _, _, mv.pe, mv.simd = min(ok, key=lambda o: (o[1], o[0]))
        _propagate(graph)
        return True

    if target_fps is not None:
        if target_fps <= 0:
            raise FoldingError(f"target FPS must be positive, got {target_fps}")
        ii = int(board.clock_mhz * 1e6 // target_fps)
        if ii < 1 or not pick(ii):
            best = max(min(o[0] for o in cands[mv.name]) for mv in mvs)
            raise FoldingError(f"target {target_fps:g} FPS needs II <= {max(ii, 0)} cycles at {board.clock_mhz} MHz; "
                               f"the fastest folding reaches II {best} "
                               f"({board.clock_mhz * 1e6 / best:.1f} FPS)")
        est = estimate(graph, board)
        if not fits(est, board):
            raise FitError(f"target {target_fps:g} FPS does not fit: " + _fit_message(est, board))
        return
    iis = sorted({o[0] for opts in cands.values() for o in opts})
    floor = max(min(o[0] for o in cands[mv.name]) for mv in mvs)
    iis = [x for x in iis if x >= floor]
    for ii in iis:
        pick(ii)
        est = estimate(graph, board)
        # the weights need their BRAM at any folding: the share bounds the logic only, and of it the
        # LUTs: pipeline registers (one behind most LUTs, as many FFs as LUTs on these parts) must
        # not push a design to a slower folding; fits() still checks the FFs
        t = est["total"]
        if t["lut"] <= share * board.lut and fits(est, board, FIT_LIMIT):
            return
    pick(iis[-1])           # nothing within the share: the most folded design, if it fits at all
    est = estimate(graph, board)
    if not fits(est, board, FIT_LIMIT):
        raise FitError("even the most folded design does not fit: " + _fit_message(est, board))


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


# ----------------------------------------------------------------------------- RTL
# ----------------------------------------------------------------------------- manifest
MANIFEST_KEYS = ("top", "files", "in_width", "in_elem_bits", "in_elems_per_beat", "in_beats", "out_width",
                 "out_elem_bits", "out_elems_per_beat", "out_beats", "out_signed", "analytic_ii", "clock_mhz")


class ManifestError(ValueError):
    pass


def read_manifest(rtl_dir, keys=MANIFEST_KEYS):
    """Read rtl_dir/manifest.json; `keys` are the fields the caller relies on (all by default)."""
    p = Path(rtl_dir) / "manifest.json"
    if not p.is_file():
        raise ManifestError(f"{rtl_dir}: no manifest.json (compile the graph with hw.compile first)")
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise ManifestError(f"{p}: not JSON ({e})") from None
    missing = [k for k in keys if k not in m]
    if missing:
        raise ManifestError(f"{p}: missing keys {', '.join(missing)}")
    for f in m["files"]:
        if not (Path(rtl_dir) / f).is_file():
            raise ManifestError(f"{p}: listed file {f} does not exist")
    return m


def _write(path, text):
    publish.atomic_text(path, text)


def _top_verilog(graph: Graph, in_w_pad, out_w_pad, mem, ii=None):
    lines = ["`timescale 1ns/1ps",
             "// Generated by hw/compile.py: BitLens dataflow accelerator" + (f" for {graph.model}" if graph.model else ""),
             "module bitlens_top (",
             "    input  wire ap_clk,",
             "    input  wire ap_rst_n,",
             f"    input  wire [{in_w_pad - 1}:0] s_axis_0_tdata,",
             "    input  wire s_axis_0_tvalid,",
             "    output wire s_axis_0_tready,",
             f"    output wire [{out_w_pad - 1}:0] m_axis_0_tdata,",
             "    output wire m_axis_0_tvalid,",
             "    input  wire m_axis_0_tready",
             ");"]
    body = []
    n = [0]

    def wire(width):
        i = n[0]
        n[0] += 1
        body.append(f"    wire [{width - 1}:0] d{i};")
        body.append(f"    wire v{i}, r{i};")
        return i

    def inst(module, params, name, src, width_out):
        dst = wire(width_out)
        ps = ", ".join(f".{k}({v})" for k, v in params.items())
        body.append(f"    {module} #({ps}) {name} (.ap_clk(ap_clk), .ap_rst_n(ap_rst_n),")
        body.append(f"        .s_tdata(d{src}), .s_tvalid(v{src}), .s_tready(r{src}),")
        body.append(f"        .m_tdata(d{dst}), .m_tvalid(v{dst}), .m_tready(r{dst}));")
        return dst

    first = graph.layers[0]
    in_w = first.in_elems * graph.in_bits
    cur = wire(in_w)
    body.append(f"    assign d{cur} = s_axis_0_tdata[{in_w - 1}:0];")
    body.append(f"    assign v{cur} = s_axis_0_tvalid;")
    body.append(f"    assign s_axis_0_tready = r{cur};")
    cur_elems, cur_bits = first.in_elems, graph.in_bits
    for idx, l in enumerate(graph.layers):
        tag = l.name.lower()
        chain = _dwc_chain(cur_elems, l.in_elems)
        for j, (a, b) in enumerate(zip(chain, chain[1:])):
            cur = inst("bl_dwc", dict(IN_W=a * cur_bits, OUT_W=b * cur_bits), f"u_dwc_{tag}_{j}", cur, b * cur_bits)
        cur = inst("bl_fifo", dict(WIDTH=l.in_elems * cur_bits, DEPTH=link_fifo_depth(l, ii)), f"u_fifo_{tag}", cur,
                   l.in_elems * cur_bits)
        if isinstance(l, Thresholding):
            p = dict(C=l.c, PE=l.pe, N_THR=l.n_thr, IN_BITS=l.in_bits, OUT_BITS=l.out_bits,
                     THRESH_FILE=f'"{mem[l.name]}"')
            cur = inst("bl_thresholding", p, f"u_{tag}", cur, l.pe * l.out_bits)
        elif isinstance(l, SWG):
            if l.padded:
                t, lf, b, r = l.pad
                p = dict(IFM_H=l.ifm, IFM_W=l.w, C=l.c, SIMD=l.simd, BITS=l.bits, PAD_T=t, PAD_L=lf, PAD_B=b,
                         PAD_R=r, PAD_VAL=l.pad_value)
                cur = inst("bl_pad", p, f"u_{tag}_pad", cur, l.simd * l.bits)
            p = dict(IFM=l.hp, IFM_H=l.hp, IFM_W=l.wp, C=l.c, K=l.k, S=l.s, SIMD=l.simd, BITS=l.bits,
                     BUF_ROWS=U.swg_buf_rows(l.k))
            cur = inst("bl_swg", p, f"u_{tag}", cur, l.simd * l.bits)
        elif isinstance(l, Pool):
            p = dict(IFM=l.ifm, C=l.c, K=l.k, PE=l.pe, BITS=l.bits)
            cur = inst("bl_pool", p, f"u_{tag}", cur, l.pe * l.bits)
        else:
            wf, tf, bank_d = mem[l.name]
            p = dict(MW=l.mw, MH=l.mh, PE=l.pe, SIMD=l.simd, IN_BITS=l.in_bits, IN_SIGNED=int(l.in_signed),
                     MODE=l.mode, W_BITS=l.w_bits, ACC_BITS=l.acc_bits, N_THR=l.n_thr, OUT_BITS=l.out_bits,
                     WEIGHT_FILE=f'"{wf}"', THRESH_FILE=f'"{tf}"', W_BANK_D=bank_d)
            cur = inst("bl_mvau", p, f"u_{tag}", cur, l.pe * l.out_bits)
        cur_elems, cur_bits = l.out_elems, l.out_bits
    out_w = cur_elems * cur_bits
    body.append(f"    assign m_axis_0_tdata = {{{out_w_pad - out_w}'d0, d{cur}}};" if out_w_pad > out_w
                else f"    assign m_axis_0_tdata = d{cur};")
    body.append(f"    assign m_axis_0_tvalid = v{cur};")
    body.append(f"    assign r{cur} = m_axis_0_tready;")
    return "\n".join(lines + body + ["endmodule", ""])


def write_rtl(graph: Graph, out_dir, est, board):
    rtl = Path(out_dir) / "rtl"
    rtl.mkdir(parents=True, exist_ok=True)
    files = []
    kinds = {type(l) for l in graph.layers}
    padded = any(isinstance(l, SWG) and l.padded for l in graph.layers)
    need = ["fifo.v", "dwc.v", "mvau.v"] + (["thresholding.v"] if Thresholding in kinds else []) \
        + (["swg.v"] if SWG in kinds else []) + (["pad.v"] if padded else []) + (["pool.v"] if Pool in kinds else [])
    for f in need:
        publish.atomic_write(rtl / f, lambda tmp, f=f: shutil.copyfile(U.RTL_DIR / f, tmp))
        files.append(f)
    mem = {}
    for mv in graph.mvaus:
        tag = mv.name.lower()
        wf, tf = f"{tag}_w.mem", f"{tag}_t.mem"
        words = U.mvau_weight_words(mv.weights, mv.pe, mv.simd, mv.mode, mv.w_bits)
        width = mv.pe * mv.simd * mv.w_bits
        bank_d = mv.bank_depth(board.bram_kbit)
        if bank_d:            # bank b of bl_mvau reads WEIGHT_FILE + "_bbb.mem"
            wf = f"{tag}_w"
            for b, part in enumerate(U.bank_words(words, bank_d)):
                U.write_memh(rtl / f"{wf}_{b:03d}.mem", part, width)
        else:
            U.write_memh(rtl / wf, words, width)
        if mv.n_thr:
            U.write_memh(rtl / tf, U.mvau_thresh_words(mv.thresholds, mv.pe, mv.acc_bits),
                         mv.pe * mv.n_thr * mv.acc_bits)
        mem[mv.name] = (wf, tf, bank_d)
    for l in graph.layers:
        if isinstance(l, Thresholding):
            tf = f"{l.name.lower()}_t.mem"
            U.write_memh(rtl / tf, U.thresh_words(l.thresholds, l.pe, l.in_bits), l.pe * l.n_thr * (l.in_bits + 1))
            mem[l.name] = tf
    first, last = graph.layers[0], graph.layers[-1]
    h, w, c = graph.in_shape
    in_elems = first.in_elems
    in_w = U.pad8(in_elems * graph.in_bits)
    out_w = U.pad8(last.pe * last.out_bits)
    _write(rtl / "bitlens_top.v", _top_verilog(graph, in_w, out_w, mem, est["analytic_ii"]))
    files.append("bitlens_top.v")
    manifest = {"top": "bitlens_top", "files": files, "in_width": in_w, "in_elem_bits": graph.in_bits,
                "in_elems_per_beat": in_elems, "in_beats": h * w * c // in_elems, "out_width": out_w,
                "out_elem_bits": last.out_bits, "out_elems_per_beat": last.pe, "out_beats": last.mh // last.pe,
                "out_signed": True, "analytic_ii": est["analytic_ii"], "clock_mhz": board.clock_mhz}
    _write(rtl / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def compile_graph(onnx_path, out_dir, board=DEFAULT_BOARD, folding=None, target_fps=None) -> dict:
    """Graph -> RTL folder. Returns {"manifest", "estimates", "folding", "out_dir"}."""
    b = get_board(board) if isinstance(board, str) else board
    graph = read_graph(onnx_path)
    fold = load_folding(folding)
    if fold is not None:
        apply_folding(graph, fold)
        est = estimate(graph, b)
        if not fits(est, b):
            raise FitError(_fit_message(est, b))
    else:
        choose_folding(graph, b, target_fps)
        est = estimate(graph, b)
    if target_fps is not None:
        est["target_fps"] = target_fps
    out_dir = Path(out_dir)
    # built in a staging folder beside out_dir and swapped in whole: a failed or killed compile
    # leaves the previous complete folder (model.publish)
    with publish.staging(out_dir.parent, "hw") as stage:
        work = stage / out_dir.name
        work.mkdir()
        manifest = write_rtl(graph, work, est, b)
        fd = folding_dict(graph)
        _write(work / "folding.json", json.dumps(fd, indent=1))
        _write(work / "estimates.json", json.dumps(est, indent=1))
    return dict(manifest=manifest, estimates=est, folding=fd, out_dir=str(out_dir), graph=graph)


def main(argv=None):
    return cli.run(_main, argv)


def _main(argv=None):
    ap = cli.Parser(prog="python -m hw.compile", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default=DEFAULT_BOARD)
    ap.add_argument("--graph", help="streamlined graph (default build/<model>/streamlined.onnx)")
    ap.add_argument("--out", help="output folder (default build/<model>/<board>/hw)")
    ap.add_argument("--folding", help="FINN-format folding JSON")
    ap.add_argument("--target-fps", type=cli.positive_float)
    a = ap.parse_args(argv)
    graph = a.graph or paths.streamlined(a.model)
    if not Path(graph).is_file():
        raise CompileError(f"{graph}: no streamlined graph (run `make export MODEL={a.model}` first)")
    out = a.out or paths.board_dir(a.model, a.board) / "hw"
    r = compile_graph(graph, out, a.board, a.folding, a.target_fps)
    e = r["estimates"]
    for row in e["layers"]:
        print(f"{row['layer']:>10} {row['kind']:>5} cycles {row['cycles']:>8} LUT {row['lut']:>7} "
              f"FF {row['ff']:>7} BRAM {row['bram']:>4}" + (f"  PE {row['PE']} SIMD {row['SIMD']}" if "PE" in row else ""))
    t = e["total"]
    print(f"II {e['analytic_ii']} cycles, {e['fps']:.1f} FPS at {e['clock_mhz']} MHz; LUT {t['lut']} FF {t['ff']} "
          f"BRAM {t['bram']}; written to {r['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
