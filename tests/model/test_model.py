"""Foundation: data, zoo, training, streamlining, the bit-exact reference."""
import gzip
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn as nn

from model import data as D
from model import zoo
from model.export import qonnx_accumulators
from tests.nets import export_to, randomise_bn
from model.reference import Reference
from model.streamline import StreamlineError, streamline

torch.set_num_threads(1)


def test_embedded_mnist_splits():
    x, y = D.load_split("mnist", "test")
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8 and y.shape == (10000,)
    assert set(np.unique(y)) == set(range(10))
    assert D.load_split("mnist", "val")[0].shape[0] == 10000


def _write_idx(path, arr, magic):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes())


def test_mnist_idx_folder(tmp_path):
    imgs = np.random.randint(0, 256, (7, 28, 28), np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs, 0x803)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 0x801)
    x, y = D.load_split("mnist", "test", tmp_path)
    assert np.array_equal(x[..., 0], imgs) and np.array_equal(y, labels)


def test_cifar_folder(tmp_path):
    d = {"data": np.random.randint(0, 256, (5, 3072), np.uint8), "labels": [1, 2, 3, 4, 5]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(d))
    x, y = D.load_split("cifar10", "test", tmp_path)
    assert x.shape == (5, 32, 32, 3) and x[0, 0, 0, 0] == d["data"][0, 0] and list(y) == d["labels"]


@pytest.mark.parametrize("setup,msg", [
    (lambda p: None, "expected MNIST IDX"),
    (lambda p: ((p / "t10k-images-idx3-ubyte").write_bytes(b"junk"), (p / "t10k-labels-idx1-ubyte").write_bytes(b"junk")), "not an IDX file"),
])
def test_bad_data_folder_is_one_line_error(tmp_path, setup, msg):
    setup(tmp_path)
    with pytest.raises(D.DataError, match=msg) as e:
        D.load_split("mnist", "test", tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(D.DataError, match="not a folder"):
        D.load_split("mnist", "test", tmp_path / "missing")


def _one_line(e, path):
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def _idx_pair(folder, n=7, size=(28, 28), labels=None, prefix="t10k"):
    imgs = np.random.default_rng(0).integers(0, 256, (n, *size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, np.uint8)
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", imgs, 0x803)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x801)
    return imgs, labels


def test_fashion_mnist_from_data_dir_and_missing_package(tmp_path, monkeypatch):
    imgs, labels = _idx_pair(tmp_path)
    x, y = D.load_split("fashion-mnist", "test", tmp_path)
    assert np.array_equal(x[..., 0], imgs) and np.array_equal(y, labels)
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.setattr(D, "FASHION_DIR", tmp_path / "absent")
    with pytest.raises(D.DataError) as e:
        D.load_split("fashion-mnist", "test")
    msg = _one_line(e, tmp_path / "absent")
    assert "dataset-fashion-mnist" in msg and "make setup" in msg and "DATA_DIR" in msg


@pytest.mark.skipif(not D.FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_installed_fashion_mnist_splits():
    x, y = D.load_split("fashion-mnist", "test")
    assert x.shape == (10000, 28, 28, 1) and set(np.unique(y)) == set(range(10))
    assert list(y[:5]) == [9, 2, 1, 1, 6]  # ankle boot, pullover, trouser, ... (MNIST's test set starts 7, 2, 1)
    xv, yv = D.load_split("fashion-mnist", "val")
    assert xv.shape == (10000, 28, 28, 1) and np.bincount(yv).min() > 900


def test_idx_train_val_split_is_the_default_one(tmp_path, monkeypatch):
    monkeypatch.setitem(D.DATASETS, "fashion-mnist", dict(D.DATASETS["fashion-mnist"], train=5, val=3))
    imgs, labels = _idx_pair(tmp_path, n=9, prefix="train")
    xt, yt = D.load_split("fashion-mnist", "train", tmp_path)
    xv, yv = D.load_split("fashion-mnist", "val", tmp_path)
    assert np.array_equal(xt[..., 0], imgs[:5]) and np.array_equal(xv[..., 0], imgs[5:8])
    assert list(yv) == list(labels[5:8])


def test_dataset_smaller_than_split(tmp_path):
    _idx_pair(tmp_path, n=12, prefix="train")
    with pytest.raises(D.DataError, match="12 training images, fewer than the 50000 \\+ 10000") as e:
        D.load_split("mnist", "train", tmp_path)
    _one_line(e, tmp_path / "train-images-idx3-ubyte.gz")


def _cifar100(folder, n=6, labels=None, name="test", proto=4):
    d = {"data": np.random.default_rng(1).integers(0, 256, (n, 3072), dtype=np.uint8),
         "fine_labels": list(range(90, 90 + n)) if labels is None else labels, "coarse_labels": [0] * n}
    sub = folder / "cifar-100-python"
    sub.mkdir(exist_ok=True)
    (sub / name).write_bytes(pickle.dumps(d, protocol=proto))
    return d


@pytest.mark.parametrize("proto", [2, 5])
def test_cifar100_folder(tmp_path, monkeypatch, proto):
    d = _cifar100(tmp_path, proto=proto)
    x, y = D.load_split("cifar100", "test", tmp_path)
    assert x.shape == (6, 32, 32, 3) and list(y) == d["fine_labels"]  # fine labels, up to 99
    assert np.array_equal(x[2].transpose(2, 0, 1).ravel(), d["data"][2])  # CHW rows -> HWC
    assert zoo.build("tfc-w1a1", "cifar100")(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    d = _cifar100(tmp_path, n=10, name="train", proto=proto)
    with pytest.raises(D.DataError, match="fewer than the 40000 \\+ 10000"):
        D.load_split("cifar100", "train", tmp_path)
    monkeypatch.setitem(D.DATASETS, "cifar100", dict(D.DATASETS["cifar100"], train=6, val=4))
    xv, yv = D.load_split("cifar100", "val", tmp_path)
    assert list(yv) == d["fine_labels"][6:] and xv.shape[0] == 4


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("dataset,name", [("cifar10", "test_batch"), ("cifar100", "cifar-100-python/test")])
def test_malicious_cifar_pickle_is_refused(tmp_path, dataset, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    evil = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "fine_labels": [0], "x": _Evil(marker)}
    path.write_bytes(pickle.dumps(evil))
    with pytest.raises(D.DataError, match="refused to load (posix|nt).system") as e:
        D.load_split(dataset, "test", tmp_path)
    _one_line(e, path)
    assert not marker.exists()
    # builtins are no way round it either (eval, getattr, ...)
    path.write_bytes(b"cbuiltins\neval\n(Vopen('" + str(marker).encode() + b"', 'w')\ntR.")
    with pytest.raises(D.DataError, match="refused to load builtins.eval"):
        D.load_split(dataset, "test", tmp_path)
    assert not marker.exists()


def _gz(path, payload):
    with gzip.open(path, "wb") as f:
        f.write(payload)


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])


def _cifar10_batch(path, data=None, labels=None):
    data = np.zeros((3, 3072), np.uint8) if data is None else data
    path.write_bytes(pickle.dumps({"data": data, "labels": [1, 2, 3] if labels is None else labels}))


@pytest.mark.parametrize("dataset,make,bad,msg", [
    ("mnist", lambda p: _idx_pair(p, labels=[0, 1, 2, 3, 4, 5]), "t10k-images-idx3-ubyte.gz", "7 images but t10k-labels-idx1-ubyte.gz holds 6 labels"),
    ("mnist", lambda p: _idx_pair(p, labels=[0, 1, 2, 3, 10, 5, 6]), "t10k-labels-idx1-ubyte.gz", "label 10 at index 4 is outside 0..9"),
    ("fashion-mnist", lambda p: _idx_pair(p, size=(32, 32)), "t10k-images-idx3-ubyte.gz", "images are 32x32, fashion-mnist has 28x28"),
    ("mnist", lambda p: (_idx_pair(p), _gz(p / "t10k-images-idx3-ubyte.gz", struct.pack(">IIII", 0x803, 7, 28, 28) + bytes(7 * 28 * 28 - 5))),
     "t10k-images-idx3-ubyte.gz", "IDX header says 7x28x28 = 5488 bytes of data, the file holds 5483"),
    ("mnist", lambda p: (_idx_pair(p), _gz(p / "t10k-labels-idx1-ubyte.gz", struct.pack(">I", 0x801) + b"\0\0")),
     "t10k-labels-idx1-ubyte.gz", "IDX header too short \\(6 bytes; 1 dimensions need 8\\)"),
    ("mnist", lambda p: (_idx_pair(p), _truncate(p / "t10k-images-idx3-ubyte.gz")), "t10k-images-idx3-ubyte.gz", "truncated gzip file"),
    ("cifar10", lambda p: _cifar10_batch(p / "test_batch", labels=[1, 2]), "test_batch", "3 images but 2 labels"),
    ("cifar10", lambda p: _cifar10_batch(p / "test_batch", labels=[1, 2, -1]), "test_batch", "label -1 at index 2 is outside 0..9"),
    ("cifar10", lambda p: _cifar10_batch(p / "test_batch", data=np.zeros((3, 784), np.uint8)), "test_batch", "shape \\(3, 784\\); cifar10 images are rows of 3x32x32 = 3072"),
    ("cifar10", lambda p: (_cifar10_batch(p / "test_batch"), _truncate(p / "test_batch")), "test_batch", "not a cifar10 python batch"),
    ("cifar100", lambda p: _cifar100(p, labels=[0, 1, 2, 3, 4, 100]), "cifar-100-python/test", "label 100 at index 5 is outside 0..99"),
])
def test_invalid_data_is_one_line_error(tmp_path, dataset, make, bad, msg):
    make(tmp_path)
    with pytest.raises(D.DataError, match=msg) as e:
        D.load_split(dataset, "test", tmp_path)
    _one_line(e, tmp_path / bad)


@pytest.mark.parametrize("name", zoo.all_names())
def test_zoo_builds_and_runs(name):
    net = zoo.build(name).eval()
    assert net(torch.rand(2, *net.in_shape)).shape == (2, 10)
    assert (net.gradcam_layer is not None) == name.startswith("cnv")


def test_unknown_model_error():
    with pytest.raises(zoo.ModelError, match="unknown model 'xyz-w1a1'"):
        zoo.build("xyz-w1a1")


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(zoo.ModelError, match="not a readable checkpoint"):
        zoo.load_checkpoint(bad, "tfc-w1a1")
    torch.save(dict(model="tfc-fp", state_dict={}), bad)
    with pytest.raises(zoo.ModelError, match="for model 'tfc-fp', not 'tfc-w1a1'"):
        zoo.load_checkpoint(bad, "tfc-w1a1")


def test_training_writes_results_and_resumes(tmp_path):
    from model.train import train
    r = train("tfc-w1a1", epochs=1, out=tmp_path, limit=600, quiet=True)
    saved = json.loads((tmp_path / "train.json").read_text())
    for k in ("test_accuracy", "epochs", "seed", "seconds"):
        assert k in saved
    assert saved["test_accuracy"] == r["test_accuracy"] > 0.3  # 600 images already beat chance


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import model.train as T
    a = T.train("tfc-w1a1", epochs=2, out=tmp_path / "a", limit=300, quiet=True)
    real, calls = T.accuracy, []

    def interrupt(*args, **kw):  # dies in epoch 2, after epoch 1's checkpoint was written
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(T, "accuracy", interrupt)
    with pytest.raises(KeyboardInterrupt):
        T.train("tfc-w1a1", epochs=2, out=tmp_path / "b", limit=300, quiet=True)
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(T, "accuracy", real)
    b = T.train("tfc-w1a1", epochs=2, out=tmp_path / "b", limit=300, quiet=True)
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and a["test_accuracy"] == b["test_accuracy"]


class AdHoc(nn.Module):
    """Not a zoo model: conv + pool + 2-bit ReLU/HardTanh + binary layers + float scale/bias."""

    def __init__(self):
        super().__init__()
        import brevitas.nn as qnn
        from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
        from model.zoo import _quant_parts
        inq = _quant_parts(1, 1)[0]
        self.q0 = inq()
        self.c1 = qnn.QuantConv2d(1, 8, 3, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
        self.b1 = nn.BatchNorm2d(8)
        self.a1 = qnn.QuantReLU(bit_width=2)
        self.p1 = nn.MaxPool2d(2)
        self.c2 = qnn.QuantConv2d(8, 8, 3, bias=False, weight_bit_width=2)
        self.b2 = nn.BatchNorm2d(8)
        self.a2 = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        self.l3 = qnn.QuantLinear(8 * 3 * 3, 16, bias=True, weight_quant=SignedBinaryWeightPerTensorConst)
        self.b3 = nn.BatchNorm1d(16)
        self.a3 = qnn.QuantHardTanh(bit_width=2, max_val=1.0, min_val=-1.0)
        self.l4 = qnn.QuantLinear(16, 5, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
        self.scale = nn.Parameter(torch.rand(5) + 0.5)
        self.shift = nn.Parameter(torch.randn(5))
        self.in_shape = (1, 12, 12)

    def forward(self, x):
        x = self.p1(self.a1(self.b1(self.c1(self.q0(x)))))
        x = self.a2(self.b2(self.c2(x)))
        x = self.a3(self.b3(self.l3(torch.flatten(x, 1))))
        return self.l4(x) * self.scale + self.shift


def _check_bit_exact(net, path, n=16, seed=0):
    from qonnx.core.onnx_exec import execute_onnx
    g = streamline(export_to(net, path))
    ref = Reference(g)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *net.in_shape[1:], net.in_shape[0]), dtype=np.uint8)
    x[0] = 0
    x[1] = 255  # extremes
    acc = ref.predict_int(x)
    for i in range(n):
        q = execute_onnx(g, {"global_in": x[i:i + 1].astype(np.float32)}, return_full_exec_context=True)
        assert np.array_equal(q["acc_out"][0], acc[i]), f"image {i}: qonnx {q['acc_out'][0]} != reference {acc[i]}"
    # export's fast path (qonnx without its per-node rounding, conv graphs image by image over
    # processes) agrees too and leaves qonnx's setting as it was
    before = os.environ.get("SANITIZE_QUANT_TENSORS")
    assert np.array_equal(qonnx_accumulators(g, x, quiet=True), acc)
    assert os.environ.get("SANITIZE_QUANT_TENSORS") == before
    xf = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32)) / 256
    with torch.no_grad():
        b = net(xf).numpy()
    margin = ref.tie_margin(x)
    close = np.isclose(ref.logits_from_acc(acc), b, rtol=1e-4, atol=1e-4).all(1)
    assert np.all(close | (margin < 1e-3)), "disagreements with Brevitas outside ties"
    # differentiable path: same forward values, non-zero straight-through gradients
    xf.requires_grad_(True)
    out = ref(xf)
    assert torch.equal(out.detach(), torch.from_numpy(ref.logits_from_acc(acc)))
    out[:, 0].sum().backward()
    assert xf.grad.abs().sum() > 0
    return g, ref


def test_export_carries_the_trained_dataset_to_the_graph_and_sim(tmp_path, monkeypatch):
    """A model trained on Fashion-MNIST: export verifies on Fashion-MNIST, refuses another
    DATASET, and the streamlined graph's metadata makes sim stream Fashion-MNIST test images."""
    from model import golden, paths
    from model.export import export
    from model.streamline import metadata
    from qonnx.core.modelwrapper import ModelWrapper
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    (tmp_path / "data").mkdir()
    imgs, _ = _idx_pair(tmp_path / "data", n=5)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    torch.manual_seed(0)
    out = zoo.model_dir("tfc-w1a1")
    out.mkdir(parents=True)
    net = randomise_bn(zoo.build("tfc-w1a1", "fashion-mnist"))
    torch.save(dict(model="tfc-w1a1", dataset="fashion-mnist", state_dict=net.state_dict(), seed=0), out / "model.pt")
    with pytest.raises(zoo.ModelError, match="trained on fashion-mnist, not mnist \\(DATASET=fashion-mnist"):
        export("tfc-w1a1", "mnist", quiet=True)
    r = export("tfc-w1a1", None, quiet=True)
    assert r["dataset"] == "fashion-mnist" and r["images"] == 5 and r["reference_vs_qonnx_equal"] == 5
    graph = out / "streamlined.onnx"
    assert metadata(ModelWrapper(str(graph)))["dataset"] == "fashion-mnist"
    x, source = golden.sample_images(graph, 3)
    assert source == "fashion-mnist test" and np.array_equal(x[..., 0], imgs[:3])


@pytest.mark.parametrize("name", ["tfc-w1a1", "cnv-w1a1", "tfc-w2a2", "sfc-w1a2"])
def test_zoo_streamlines_bit_exact(name, tmp_path):
    torch.manual_seed(1)
    net = randomise_bn(zoo.build(name))
    g, ref = _check_bit_exact(net, tmp_path / "m.onnx", n=4 if name.startswith("cnv") else 16)
    ops = [n.op_type for n in g.graph.node]
    if name.endswith("w1a1"):
        assert "XnorPopcountMatMul" in ops and ops[-2:] == ["Mul", "Add"]
    for canon in (True, False):
        twin = ref.float_twin(canon)
        x = torch.randint(0, 256, (4, *net.in_shape)).float() / 256
        assert torch.allclose(twin(x), ref(x), atol=1e-4)


def test_ad_hoc_model_streamlines_bit_exact(tmp_path):
    torch.manual_seed(3)
    net = randomise_bn(AdHoc())
    g, _ = _check_bit_exact(net, tmp_path / "adhoc.onnx", n=12)
    assert [n.op_type for n in g.graph.node].count("MaxPoolNHWC") == 1


def test_unsupported_op_names_node(tmp_path):
    class Bad(AdHoc):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))
    with pytest.raises(StreamlineError, match=r"node .*Sigmoid"):
        streamline(export_to(Bad().eval(), tmp_path / "bad.onnx"))


def test_guided_mode_changes_gradient(tmp_path):
    torch.manual_seed(0)
    net = randomise_bn(zoo.build("tfc-w1a1"))
    ref = Reference(streamline(export_to(net, tmp_path / "t.onnx")))
    x = (torch.randint(0, 256, (4, 1, 28, 28)).float() / 256).requires_grad_(True)
    g1 = torch.autograd.grad(ref(x)[:, 3].sum(), x)[0]
    ref.set_guided(True)
    g2 = torch.autograd.grad(ref(x)[:, 3].sum(), x)[0]
    assert not torch.allclose(g1, g2)


def test_packed_xnor_matches_bipolar_dot():
    from model.reference import _pack_words, _xnor_popcount
    rng = np.random.default_rng(0)
    for K in (1, 7, 64, 65, 784):
        x = rng.integers(0, 2, (5, K))
        w = rng.integers(0, 2, (K, 3))
        x[0] = w[:, 0]          # all match
        x[1] = 1 - w[:, 0]      # all mismatch
        P = _xnor_popcount(x, _pack_words(w.T), K)
        expect = ((2 * x - 1) @ (2 * w - 1) + K) / 2
        assert np.array_equal(P, expect) and P[0, 0] == K and P[1, 0] == 0


def test_native_xnor_gemm_block_edges():
    """The native kernel works in 4x4 blocks: every remainder of rows and weight rows counts."""
    from model import kernels
    if not kernels.available():
        pytest.skip("no C compiler: the reference runs on its numpy path")
    rng = np.random.default_rng(1)
    for M, N, Kw in [(1, 1, 1), (5, 3, 2), (9, 7, 9), (4, 8, 3), (6, 13, 1)]:
        x = rng.integers(0, 2**63, (M, Kw), dtype=np.uint64)
        w = rng.integers(0, 2**63, (N, Kw), dtype=np.uint64)
        K = 64 * Kw
        expect = K - np.bitwise_count(x[:, None, :] ^ w[None, :, :]).sum(-1)
        assert np.array_equal(kernels.xnor_gemm(x, w, K), expect.astype(np.float32)), (M, N, Kw)


def test_twin_thresholds_decide_ties_like_the_integers():
    """Where a threshold lands exactly on an accumulator value (a tie), float arithmetic of
    y = a*acc + b may fall on either side of the real threshold; the twin's thresholds sit half
    an accumulator step away, so its sign always equals the reference's acc >= T."""
    from model.twin import exact_thresholds
    rng = np.random.default_rng(2)
    acc = np.arange(-300, 301, dtype=np.float64)
    a = rng.uniform(0.01, 3, 40)
    k = rng.integers(-250, 250, 40)
    theta = np.array([0.0])
    b = theta[0] - a * k                      # the real threshold sits exactly on acc = k
    T = np.ceil((theta[0] - b) / a)[:, None]
    mid = exact_thresholds(T, a, b, theta)
    y = (a[:, None].astype(np.float32) * acc[None].astype(np.float32) + b[:, None].astype(np.float32))
    assert np.array_equal(y >= mid.astype(np.float32), acc[None] >= T)
    # constant channels (a = 0) stay on or off as their bias says
    const = exact_thresholds(np.array([[0.0], [5.0]]), np.zeros(2), np.array([1.0, -1.0]), theta)
    assert const[0, 0] == -np.inf and const[1, 0] == np.inf


# ---------------------------------------------------------------- models from outside the zoo

def _randomise_tensor_norm(net, seed=0):
    """FINN's TensorNorm (a scalar BatchNorm exported with Pow on constants) off its identity."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if type(m).__name__ == "TensorNorm":
            m.running_mean.fill_(float(torch.rand(1, generator=g)) * 4 - 2)
            m.running_var.fill_(float(torch.rand(1, generator=g)) * 3 + 0.5)
            m.weight.data.fill_(float(torch.rand(1, generator=g)) + 0.5)
            m.bias.data.fill_(float(torch.rand(1, generator=g)) - 0.5)
    return net


FINN_ZOO = ["tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a",
            "cnv_1w1a", "cnv_1w2a", "cnv_2w2a"]


def test_finn_zoo_names():
    assert sorted(zoo._bnn_pynq_configs()) == sorted(FINN_ZOO)
    assert zoo.twin_of("bnn-pynq:cnv_2w2a") == "cnv-fp" and zoo.slug("bnn-pynq:tfc_1w1a") == "bnn-pynq-tfc_1w1a"
    with pytest.raises(zoo.ModelError, match="unknown FINN zoo model 'bnn-pynq:resnet18_4w4a'"):
        zoo.spec("bnn-pynq:resnet18_4w4a")


@pytest.mark.parametrize("cfg", [c if c in ("cnv_2w2a",) or not c.startswith("cnv") else
                                 pytest.param(c, marks=pytest.mark.slow) for c in FINN_ZOO])
def test_finn_zoo_streamlines_bit_exact(cfg, tmp_path):
    """FINN's own models, unmodified: `2x - 1` before the input quantiser, TensorNorm at the end."""
    from brevitas_examples.bnn_pynq.models import get_model_cfg
    from model.streamline import metadata
    torch.manual_seed(4)
    net = _randomise_tensor_norm(randomise_bn(zoo.build("bnn-pynq:" + cfg)))
    assert net.in_shape == ((1, 32, 32) if cfg.startswith("cnv") else (1, 28, 28))
    g, ref = _check_bit_exact(net, tmp_path / "m.onnx", n=3 if cfg.startswith("cnv") else 16)
    iq = metadata(g)["input_quant"]
    nodes = {n.name: n for n in g.graph.node}
    in_bits = get_model_cfg(cfg).getint("QUANT", "IN_BIT_WIDTH")
    if in_bits == 8:   # round(128 * (2 * b/256 - 1)) = b - 128: the bytes go straight into the first layer
        assert iq["mode"] == "affine" and (iq["mult"], iq["offset"]) == (1, -128) and "Thresh_in" not in nodes
    else:              # sign(2b/256 - 1): b >= 128; 2 bits: levels split at 64 and 193 (0.5 rounds to even)
        T = g.get_initializer("Thresh_in_thresholds")
        assert iq["mode"] == "threshold" and T.tolist() == ([[128]] if in_bits == 1 else [[64, 193]])
        first = g.find_consumer(g.find_consumer("Thresh_in_out").output[0])
        assert first.op_type == ("XnorPopcountMatMul" if in_bits == 1 else "MatMul")


USER_MODEL = '''
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.quant import SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat


class Net(nn.Module):
    def __init__(self, in_shape, classes):
        super().__init__()
        c, h, w = in_shape
        self.q = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8)
        self.c1 = qnn.QuantConv2d(c, 8, 3, padding=1, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
        self.b1 = nn.BatchNorm2d(8)
        self.a1 = qnn.QuantIdentity(bit_width=2, max_val=1.0, min_val=-1.0)
        self.c2 = qnn.QuantConv2d(8, 8, 3, stride=2, padding=1, bias=False, weight_bit_width=2)
        self.b2 = nn.BatchNorm2d(8)
        self.a2 = qnn.QuantIdentity(bit_width=2, max_val=1.0, min_val=-1.0)
        self.fc = qnn.QuantLinear(8 * ((h + 1) // 2) * ((w + 1) // 2), classes, bias=True,
                                  weight_quant=SignedBinaryWeightPerTensorConst)

    def forward(self, x):
        x = self.a2(self.b2(self.c2(self.a1(self.b1(self.c1(self.q(x)))))))
        return self.fc(torch.flatten(x, 1))


def net(in_shape, classes):
    return Net(in_shape, classes)
'''


def test_user_model_file_padding_and_2bit(tmp_path):
    """A user's own Brevitas model, named path/file.py:function: padded and strided convolutions
    with 2-bit activations, through streamlining to the bit-exact reference."""
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    name = f"{tmp_path / 'mynet.py'}:net"
    torch.manual_seed(5)
    net = zoo.build(name)
    assert net.in_shape == (1, 28, 28) and zoo.spec(name).twin is None and zoo.kind_of(net) == "cnv"
    g, _ = _check_bit_exact(randomise_bn(net), tmp_path / "m.onnx", n=4)
    swg = [n for n in g.graph.node if n.op_type == "Im2Col"]
    assert [list(n.attribute[0].ints) for n in swg] and all(
        any(a.name == "pad_amount" and list(a.ints) == [1, 1, 1, 1] for a in n.attribute) for n in swg)


def test_user_checkpoint_import(tmp_path):
    from model.train import import_checkpoint
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    name = f"{tmp_path / 'mynet.py'}:net"
    torch.manual_seed(6)
    net = zoo.build(name)
    net.train()(torch.rand(4, *net.in_shape))   # a trained checkpoint has its statistics-initialised scales
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "streamlined.onnx").write_text("graph of earlier weights")
    res = import_checkpoint(name, tmp_path / "w.pt", out=tmp_path / "out", quiet=True)
    assert not (tmp_path / "out" / "streamlined.onnx").exists()     # no stale export beside new weights
    assert res["epochs"] == 0 and 0 <= res["test_accuracy"] <= 1
    ckpt = zoo.load_checkpoint(tmp_path / "out" / "model.pt", name)
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in net.state_dict().items())
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(zoo.ModelError, match="does not match"):
        import_checkpoint(name, tmp_path / "bad.pt", out=tmp_path / "out", quiet=True)


@pytest.mark.parametrize("name,msg", [
    ("nofile.py:net", "no such model file"),
    ("model.py", "unknown model"),
    ("{d}/mynet.py:missing", "defines no function 'missing'"),
    ("{d}/mynet.py:notmodule", "returned int, not a torch module"),
    ("{d}/broken.py:net", "importing it failed"),
])
def test_user_model_errors_name_the_cause(tmp_path, name, msg):
    (tmp_path / "mynet.py").write_text(USER_MODEL + "\n\ndef notmodule():\n    return 3\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(zoo.ModelError, match=msg) as e:
        zoo.build(name.format(d=tmp_path))
    assert "\n" not in str(e.value)


def test_input_preprocessing_errors(tmp_path):
    """Preprocessing that differs per pixel, or a quantiser map that falls with the byte, is
    named, not guessed."""
    import brevitas.nn as qnn

    class PerPixel(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("ramp", torch.linspace(0.5, 1.5, 16).view(1, 1, 4, 4))
            self.q = qnn.QuantIdentity(bit_width=2, max_val=1.0, min_val=-1.0)
            self.fc = qnn.QuantLinear(16, 3, bias=False)
            self.in_shape = (1, 4, 4)

        def forward(self, x):
            return self.fc(torch.flatten(self.q(x * self.ramp), 1))

    class Falling(PerPixel):
        def forward(self, x):
            return self.fc(torch.flatten(self.q(1 - 2 * x), 1))

    with pytest.raises(StreamlineError, match="per-pixel preprocessing"):
        streamline(export_to(PerPixel(), tmp_path / "a.onnx"))
    with pytest.raises(StreamlineError, match="not monotone"):
        streamline(export_to(Falling(), tmp_path / "b.onnx"))
