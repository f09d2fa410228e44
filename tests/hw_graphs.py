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

    def im2col(self, k, s):
        name = self._name("SWG")
        _, h, w, c = self.shape
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node("Im2Col", [self.cur], [out], name=name, domain=QDOM, stride=[s, s],
                                           kernel_size=[k, k], input_shape=f"(1,{h},{w},{c})",
                                           pad_amount=[0, 0, 0, 0]))
        o = (h - k) // s + 1
        self._out(out, (1, o, o, k * k * c), self.dts[self.cur])

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
