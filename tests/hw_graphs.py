"""Small synthetic streamlined graphs following README's contract, for hw/ and sim/ tests."""
import numpy as np
from onnx import TensorProto, helper

QDOM = "qonnx.custom_op.general"


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


class _G:
    def __init__(self, in_shape, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.vis, self.dts = [], {}, [], {"global_in": "UINT8"}
        self.cur, self.shape, self.n = "global_in", tuple(in_shape), dict(MVAU=0, Thresh=0, SWG=0, Pool=0)
        self.in_shape = tuple(in_shape)

    def _name(self, kind):
        i = self.n[kind]
        self.n[kind] += 1
        return f"{kind}_{i}"

    def _out(self, name, shape, dt=None):
        self.vis.append(_vi(name, shape))
        if dt:
            self.dts[name] = dt
        self.cur, self.shape = name, tuple(shape)

    def reshape(self, k):
        s = f"shape_{len(self.nodes)}"
        self.inits[s] = np.array([1, k], dtype=np.int64)
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node("Reshape", [self.cur, s], [out], name=f"Reshape_{len(self.nodes)}"))
        dt = self.dts.get(self.cur)
        self._out(out, (1, k), dt)

    def im2col(self, k, s, pad=(0, 0, 0, 0), pad_value=0):
        """pad = [top, left, bottom, right] (qonnx pad_amount), pad_value in the input's datatype."""
        name = self._name("SWG")
        _, h, w, c = self.shape
        out = f"t{len(self.nodes)}"
        extra = dict(pad_value=int(pad_value)) if any(pad) else {}
        self.nodes.append(helper.make_node("Im2Col", [self.cur], [out], name=name, domain=QDOM, stride=[s, s],
                                           kernel_size=[k, k], input_shape=f"(1,{h},{w},{c})",
                                           pad_amount=list(pad), **extra))
        oh = (h + pad[0] + pad[2] - k) // s + 1
        ow = (w + pad[1] + pad[3] - k) // s + 1
        self._out(out, (1, oh, ow, k * k * c), self.dts[self.cur])

    def thresh_in(self, n_thr, per_channel=True):
        """The contract's input thresholding: MultiThreshold `Thresh_in` on the UINT8 pixels (NHWC),
        thresholds (C, T) or (1, T) in 0..256 (with the edge values 0, 255 and 256 where T allows)."""
        c = self.shape[-1]
        t = self.rng.integers(1, 256, (c if per_channel else 1, n_thr))
        if n_thr >= 3:
            t[0, 0], t[0, -1] = 0, 256
            if t.shape[0] > 1:
                t[1, -1] = 255
        t = np.sort(t, axis=1).astype(np.float32)
        self.inits["Thresh_in_T"] = t
        out = "thresh_in_out"
        odt = "BINARY" if n_thr == 1 else f"UINT{int(np.ceil(np.log2(n_thr + 1)))}"
        self.nodes.append(helper.make_node("MultiThreshold", [self.cur, "Thresh_in_T"], [out], name="Thresh_in",
                                           domain=QDOM, out_dtype=odt, data_layout="NHWC"))
        self._out(out, self.shape, odt)
        return t

    def matmul(self, mh, xnor, out_name=None):
        name = self._name("MVAU")
        mw = self.shape[-1]
        w = self.rng.integers(0, 2, (mw, mh)) if xnor else self.rng.choice([-1, 1], (mw, mh))
        wn = f"{name}_W"
        self.inits[wn] = w.astype(np.float32)
        self.dts[wn] = "BINARY" if xnor else "BIPOLAR"
        out = out_name or f"t{len(self.nodes)}"
        op = "XnorPopcountMatMul" if xnor else "MatMul"
        self.nodes.append(helper.make_node(op, [self.cur, wn], [out], name=name,
                                           **({"domain": QDOM} if xnor else {})))
        self._out(out, self.shape[:-1] + (mh,), "INT32")
        return w

    def thresh(self, n_thr, lo, hi, layout):
        name = self._name("Thresh")
        mh = self.shape[-1]
        t = np.sort(self.rng.integers(lo, hi + 1, (mh, n_thr)), axis=1).astype(np.float32)
        tn = f"{name}_T"
        self.inits[tn] = t
        out = f"t{len(self.nodes)}"
        odt = "BINARY" if n_thr == 1 else f"UINT{int(np.ceil(np.log2(n_thr + 1)))}"
        self.nodes.append(helper.make_node("MultiThreshold", [self.cur, tn], [out], name=name, domain=QDOM,
                                           out_dtype=odt, data_layout=layout))
        self._out(out, self.shape, odt)

    def pool(self, k):
        name = self._name("Pool")
        _, h, w, c = self.shape
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node("MaxPoolNHWC", [self.cur], [out], name=name, domain=QDOM,
                                           kernel_shape=[k, k], pads=[0, 0, 0, 0], strides=[k, k]))
        self._out(out, (1, h // k, w // k, c), self.dts[self.cur])

    def finish(self, path):
        from qonnx.core.datatype import DataType
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.basic import qonnx_make_model
        classes = self.shape[-1]
        for nm, arr in (("scale", self.rng.uniform(0.5, 1.5, classes)), ("bias", self.rng.normal(size=classes))):
            self.inits[nm] = arr.astype(np.float32)
        self.nodes.append(helper.make_node("Mul", [self.cur, "scale"], ["scaled"], name="Scale"))
        self.nodes.append(helper.make_node("Add", ["scaled", "bias"], ["global_out"], name="Bias"))
        graph = helper.make_graph(self.nodes, "bitlens_synth", [_vi("global_in", self.in_shape)],
                                  [_vi("global_out", (1, classes))],
                                  initializer=[helper.make_tensor(k, TensorProto.FLOAT if v.dtype != np.int64
                                                                  else TensorProto.INT64, v.shape, v.flatten().tolist())
                                               for k, v in self.inits.items()],
                                  value_info=self.vis + [_vi("scaled", (1, classes))])
        model = ModelWrapper(qonnx_make_model(graph, producer_name="bitlens-test"))
        for k, v in self.dts.items():
            model.set_tensor_datatype(k, DataType[v])
        model.save(str(path))
        return path


def make_mlp(path, seed=0, hidden=(16, 8), classes=4, in_shape=(1, 6, 6, 1), uint2=False):
    """UINT8 image -> Reshape -> MatMul(bipolar) -> MultiThreshold -> XnorPopcountMatMul ... -> acc_out.
    uint2: the first activation is UINT2 and the next layer is MatMul(bipolar) on it."""
    g = _G(in_shape, seed)
    k = int(np.prod(in_shape[1:]))
    g.reshape(k)
    g.matmul(hidden[0], xnor=False)
    r = 255 * k
    if uint2:
        g.thresh(3, -r // 8, r // 8, "NC")
    else:
        g.thresh(1, -r // 8, r // 8, "NC")
    for i, h in enumerate(hidden[1:]):
        mw = g.shape[-1]
        if uint2 and i == 0:
            g.matmul(h, xnor=False)
            g.thresh(1, -mw, mw, "NC")
        else:
            g.matmul(h, xnor=True)
            d = int(np.sqrt(mw)) + 1
            g.thresh(1, mw // 2 - d, mw // 2 + d, "NC")
    mw = g.shape[-1]
    xnor = g.dts[g.cur] == "BINARY"
    g.matmul(classes, xnor=xnor, out_name="acc_out")
    return g.finish(path)


def make_conv(path, seed=0, in_shape=(1, 8, 8, 2), classes=5):
    """Im2Col -> MatMul(bipolar, UINT8) -> MultiThreshold(NHWC) -> MaxPoolNHWC -> Im2Col ->
    XnorPopcountMatMul -> MultiThreshold(UINT2) -> Reshape -> MatMul(UINT2 x bipolar) -> acc_out."""
    g = _G(in_shape, seed)
    g.im2col(3, 1)
    mw = g.shape[-1]
    g.matmul(4, xnor=False)
    g.thresh(1, -255 * mw // 8, 255 * mw // 8, "NHWC")
    g.pool(2)
    g.im2col(2, 1)
    mw = g.shape[-1]
    g.matmul(6, xnor=True)
    d = int(np.sqrt(mw)) + 1
    g.thresh(3, mw // 2 - d, mw // 2 + d, "NHWC")
    g.reshape(int(np.prod(g.shape[1:])))
    g.matmul(classes, xnor=False, out_name="acc_out")
    return g.finish(path)


def make_thresh_mlp(path, seed=0, hidden=(16,), classes=4, in_shape=(1, 6, 6, 1), n_thr=1, per_channel=True):
    """Thresh_in (BINARY, or UINTn for n_thr > 1) -> Reshape -> XnorPopcountMatMul (or MatMul with
    bipolar weights on UINTn) -> MultiThreshold -> ... -> acc_out: FINN's TFC with a 1-bit input."""
    g = _G(in_shape, seed)
    g.thresh_in(n_thr, per_channel)
    g.reshape(int(np.prod(in_shape[1:])))
    for h in hidden:
        mw = g.shape[-1]
        xnor = g.dts[g.cur] == "BINARY"
        g.matmul(h, xnor=xnor)
        if xnor:
            d = int(np.sqrt(mw)) + 1
            g.thresh(1, mw // 2 - d, mw // 2 + d, "NC")
        else:
            r = n_thr * mw
            g.thresh(1, -r // 8, r // 8, "NC")
    g.matmul(classes, xnor=g.dts[g.cur] == "BINARY", out_name="acc_out")
    return g.finish(path)


def make_padded_conv(path, seed=0, in_shape=(1, 6, 6, 2), classes=3, thresh_in=0,
                     pad0=(1, 1, 1, 1), pad1=(1, 0, 1, 0), stride1=2):
    """[Thresh_in ->] Im2Col(3x3, pad0, pad 0 on pixels / 1 on UINT2) -> MatMul(bipolar) ->
    MultiThreshold(UINT2) -> Im2Col(3x3, stride1, pad1, pad value 2: UINT2 code of real 0 in a
    symmetric 2-bit quantiser) -> MatMul(UINT2 x bipolar) -> MultiThreshold(BINARY) -> Reshape ->
    XnorPopcountMatMul -> acc_out. The default pad1 is unequal on the two axes: the padded image of
    the second window generator is not square."""
    g = _G(in_shape, seed)
    if thresh_in:
        g.thresh_in(thresh_in)
    g.im2col(3, 1, pad0, 0 if not thresh_in else 1)
    mw = g.shape[-1]
    g.matmul(4, xnor=False)
    r = int(np.sqrt(mw)) * (128 if not thresh_in else thresh_in)      # about one standard deviation
    g.thresh(3, -r, r, "NHWC")
    g.im2col(3, stride1, pad1, 2)
    mw = g.shape[-1]
    g.matmul(6, xnor=False)
    r = int(np.sqrt(mw)) * 2
    g.thresh(1, -r, r, "NHWC")
    g.reshape(int(np.prod(g.shape[1:])))
    g.matmul(classes, xnor=True, out_name="acc_out")
    return g.finish(path)


def run_qonnx(path, images):
    """execute_onnx per image -> acc_out (N, classes) int64."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    model = ModelWrapper(str(path))
    outs = []
    for img in images:
        ctx = execute_onnx(model, {"global_in": img[None].astype(np.float32)}, return_full_exec_context=True)
        outs.append(np.asarray(ctx["acc_out"]).reshape(-1))
    return np.rint(np.array(outs)).astype(np.int64)


# ------------------------------------------------------------------ edge graphs
# Graphs whose weights and thresholds are chosen from the activations two constant images produce
# (EDGE_IMAGES: every pixel 255, every pixel 0), so that each layer's accumulator reaches the ends
# of its range: +-255*MW on the 8-bit input layer, popcount MW (all match) and 0 (all mismatch) on
# XNOR layers, +-3*MW on a 2-bit input layer. Thresholds sit at those ends, so a hidden accumulator
# one short of its end flips a bit the next layer's all-match row turns into a wrong output.
EDGE_IMAGES = (255, 0)


def _set(g, name, arr):
    g.inits[name] = np.asarray(arr, dtype=np.float32)
    return np.asarray(arr)


def _match_rows(g, name, w, acts):
    """XNOR weight columns 2i / 2i+1 equal / oppose the activation bits of edge image i."""
    for i, a in enumerate(acts):
        w[:, 2 * i], w[:, 2 * i + 1] = a, 1 - a
    return _set(g, name, w)


def _popcount(bits, w):
    return (bits[:, None] == w).sum(0)


def make_edge_mlp(path, seed=0, hidden=(16, 12), classes=6, in_shape=(1, 6, 6, 1)):
    """UINT8 -> MatMul(bipolar; column 0 all +1, column 1 all -1) -> threshold at +255*MW / -255*MW+1
    -> XNOR layers whose columns 0-3 match / mismatch the two edge images' activations, thresholds
    at MW and 1 -> acc_out (XNOR, same columns). Returns (path, ends): ends lists (tensor, image
    index in EDGE_IMAGES, channel, value) the accumulators must reach."""
    g = _G(in_shape, seed)
    k = int(np.prod(in_shape[1:]))
    g.reshape(k)
    x = np.array([[p] * k for p in EDGE_IMAGES])
    w = g.matmul(hidden[0], xnor=False)
    w[:, 0], w[:, 1] = 1, -1
    w = _set(g, "MVAU_0_W", w)
    acc = x @ w
    ends = [(g.cur, 0, 0, 255 * k), (g.cur, 0, 1, -255 * k)]
    g.thresh(1, -255 * k // 8, 255 * k // 8, "NC")
    t = g.inits["Thresh_0_T"]
    t[0, 0], t[1, 0] = 255 * k, -255 * k + 1
    bits = (acc >= t[:, 0]).astype(np.int64)
    layers = list(hidden[1:]) + [classes]
    for i, h in enumerate(layers):
        last = i == len(layers) - 1
        mw = g.shape[-1]
        w = g.matmul(h, xnor=True, out_name="acc_out" if last else None)
        w = _match_rows(g, f"MVAU_{i + 1}_W", w, bits)
        pc = np.array([_popcount(b, w) for b in bits])
        for j in range(len(EDGE_IMAGES)):
            ends += [(g.cur, j, 2 * j, mw), (g.cur, j, 2 * j + 1, 0)]
        if not last:
            d = int(np.sqrt(mw)) + 1
            g.thresh(1, mw // 2 - d, mw // 2 + d, "NC")
            t = g.inits[f"Thresh_{i + 1}_T"]
            t[0:4, 0] = (mw, 1, mw, 1)
            bits = (pc >= t[:, 0]).astype(np.int64)
    return g.finish(path), ends


def make_edge_conv(path, seed=0, in_shape=(1, 8, 8, 2), classes=4):
    """Im2Col 3x3 -> MatMul(UINT8 x bipolar; column 0 all +1, 1 all -1) -> threshold at the ends ->
    MaxPool 2 -> Im2Col 2x2 -> XNOR (columns 0-3 match / mismatch the edge images' windows) ->
    MultiThreshold UINT2 with every threshold at the popcount the all-255 image gives (0..MW), so
    that image drives every 2-bit activation to 3 -> Reshape -> MatMul(UINT2 x bipolar; column 0 all
    +1, 1 all -1) -> acc_out at +-3*MW. A constant image gives every window the same patch, so the
    ends hold at every output pixel. Returns (path, ends) as make_edge_mlp."""
    g = _G(in_shape, seed)
    g.im2col(3, 1)
    mw = g.shape[-1]
    w = g.matmul(4, xnor=False)
    w[:, 0], w[:, 1] = 1, -1
    w = _set(g, "MVAU_0_W", w)
    acc = np.array([[p] * mw for p in EDGE_IMAGES]) @ w
    ends = [(g.cur, 0, 0, 255 * mw), (g.cur, 0, 1, -255 * mw)]
    g.thresh(1, -255 * mw // 8, 255 * mw // 8, "NHWC")
    t = g.inits["Thresh_0_T"]
    t[0, 0], t[1, 0] = 255 * mw, -255 * mw + 1
    bits = (acc >= t[:, 0]).astype(np.int64)
    g.pool(2)
    g.im2col(2, 1)
    mw = g.shape[-1]
    patch = np.tile(bits, (1, mw // bits.shape[1]))      # (kh, kw, c) order, c innermost
    w = _match_rows(g, "MVAU_1_W", g.matmul(6, xnor=True), patch)
    pc = np.array([_popcount(b, w) for b in patch])
    for j in range(len(EDGE_IMAGES)):
        ends += [(g.cur, j, 2 * j, mw), (g.cur, j, 2 * j + 1, 0)]
    g.thresh(3, 0, mw, "NHWC")
    _set(g, "Thresh_1_T", np.repeat(pc[0][:, None], 3, axis=1))
    g.reshape(int(np.prod(g.shape[1:])))
    mw = g.shape[-1]
    w = g.matmul(classes, xnor=False, out_name="acc_out")
    w[:, 0], w[:, 1] = 1, -1
    _set(g, "MVAU_2_W", w)
    ends += [("acc_out", 0, 0, 3 * mw), ("acc_out", 0, 1, -3 * mw)]
    return g.finish(path), ends
