"""The native layer kernels against brute-force numpy, on the shapes where blocked code breaks:
remainders of row and neuron blocks, word counts with their own unrolled copies, counter
flushes, strides, thresholds at +-inf and exactly on an accumulator value; and the portable
(no AVX2) build against the default one."""
import ctypes
import re

import numpy as np
import pytest
import torch

from model import kernels, zoo
from model.reference import Reference, _im2col, _pack_words
from model.streamline import streamline
from tests.nets import randomise_bn

pytestmark = pytest.mark.skipif(not kernels.available(), reason="no C compiler: the reference runs on numpy")


def _windows(x, kernel, stride):
    """(n, H, W, C) -> (n, OH, OW, kh*kw*C) patches: the numpy path's im2col (Im2Col order)."""
    return _im2col(x, dict(kernel=kernel, stride=stride, pads=[0, 0, 0, 0]))


def _thresholds(rng, acc, MH):
    """Per neuron: a threshold exactly on an accumulator value, half-way, +-inf."""
    pick = acc.reshape(-1, MH)[rng.integers(0, acc.reshape(-1, MH).shape[0], MH), np.arange(MH)].astype(float)
    t = pick + rng.choice([0.0, 0.5, -0.5], MH)
    t[::7] = np.inf
    t[3::7] = -np.inf
    return t


def _bits(values, T):
    b = (values >= T).astype(np.uint8)
    return _pack_words(b)


def _check(layer_args, x, acc, rng):
    """The kernels.Layer(*layer_args) without thresholds gives acc; with thresholds, their bits."""
    MH = acc.shape[-1]
    out, _ = kernels.Layer(*layer_args)(x)
    assert np.array_equal(out, acc)
    T = _thresholds(rng, acc, MH)
    out, _ = kernels.Layer(*layer_args, thr=T)(x)
    assert np.array_equal(out, _bits(acc, T))


XNOR_CASES = [  # (n, H, W, Cw, kernel, stride, MH)
    (5, 1, 1, 1, (1, 1), (1, 1), 64),
    (7, 1, 1, 2, (1, 1), (1, 1), 13),
    (3, 1, 1, 40, (1, 1), (1, 1), 70),      # 40 words: the byte counters flush after 31
    (2, 7, 6, 1, (3, 3), (1, 1), 9),        # 9 words: unrolled copy
    (2, 6, 6, 2, (3, 3), (2, 1), 8),        # 18 words, stride 2 rows
    (1, 5, 5, 4, (3, 3), (1, 1), 65),       # 36 words
    (3, 4, 5, 3, (2, 3), (1, 2), 1),
]


@pytest.mark.parametrize("n,H,W,Cw,kernel,stride,MH", XNOR_CASES)
def test_xnor_layer(n, H, W, Cw, kernel, stride, MH):
    rng = np.random.default_rng(n * 100 + MH)
    x = rng.integers(0, 2**64, (n, H, W, Cw), dtype=np.uint64)
    Kw = kernel[0] * kernel[1] * Cw
    w = rng.integers(0, 2**64, (MH, Kw), dtype=np.uint64)
    x[0, 0, 0] = w[0, :Cw]                      # an exact match somewhere
    x[-1] = ~np.uint64(0)                       # all mismatches against zero weights: the
    w[MH // 2:] = 0                             # largest counts every counter must hold
    K = 64 * Kw
    patches = _windows(x, kernel, stride)
    acc = K - np.bitwise_count(patches[..., None, :] ^ w).sum(-1).astype(np.int64)
    wl = kernels.xnor_weights(w)
    _check(("xnor", wl, MH, (K,), kernel, stride), x, acc, rng)


POOL_CASES = [  # (n, H, W, Cw, kernel, stride, MH, pool kernel, pool stride)
    (3, 8, 8, 1, (3, 3), (1, 1), 64, (2, 2), (2, 2)),     # 9 words, one output word
    (2, 9, 8, 2, (3, 3), (1, 1), 70, (2, 2), (2, 2)),     # 18 words, 7x6 output: floor, 2 words
    (2, 7, 7, 4, (3, 3), (1, 1), 130, (3, 3), (2, 2)),    # 36 words, overlapping windows
    (2, 6, 7, 3, (2, 2), (1, 1), 5, (2, 2), (1, 1)),      # 12 words (generic copy), stride 1
    (3, 8, 9, 1, (3, 3), (2, 1), 9, (2, 3), (2, 2)),      # strided convolution, 2x3 windows
    (2, 6, 6, 3, (3, 3), (1, 1), 66, (2, 2), (2, 2)),     # 27 words: 16 of them vector, 11 scalar
    (1, 5, 5, 14, (3, 3), (1, 1), 3, (2, 2), (2, 2)),     # 126 words: too many for byte counters
]


@pytest.mark.parametrize("n,H,W,Cw,kernel,stride,MH,pk,ps", POOL_CASES)
def test_xnor_layer_with_fused_pooling(n, H, W, Cw, kernel, stride, MH, pk, ps):
    """Pooled bits = OR over the window of (matches >= thr), whichever position passes first."""
    rng = np.random.default_rng(n * 10 + MH)
    x = rng.integers(0, 2**64, (n, H, W, Cw), dtype=np.uint64)
    Kw = kernel[0] * kernel[1] * Cw
    w = rng.integers(0, 2**64, (MH, Kw), dtype=np.uint64)
    K = 64 * Kw
    acc = K - np.bitwise_count(_windows(x, kernel, stride)[..., None, :] ^ w).sum(-1).astype(np.int64)
    T = _thresholds(rng, acc, MH)
    T[1::5] = np.median(acc.reshape(-1, MH), 0)[1::5]   # near the middle: positions pass in any order
    win = _windows((acc >= T).astype(np.uint8), pk, ps)   # (n, POH, POW, pkh*pkw*MH)
    want = _pack_words(win.reshape(*win.shape[:3], -1, MH).max(3))
    layer = kernels.Layer("xnor", kernels.xnor_weights(w), MH, (K,), kernel, stride, T, pool=(pk, ps))
    out, _ = layer(x)
    assert np.array_equal(out, want)
    again, _ = layer(x)                                   # the kept output buffer is rewritten whole
    assert np.array_equal(again, want)


def test_only_xnor_layers_with_thresholds_fuse_pooling():
    w = kernels.xnor_weights(np.zeros((4, 9), np.uint64))
    with pytest.raises(ValueError, match="binary activation"):
        kernels.Layer("xnor", w, 4, (576,), (3, 3), (1, 1), pool=((2, 2), (2, 2)))


INT_CASES = [  # (n, H, W, C, kernel, stride, MH, wmax)
    (5, 1, 1, 784, (1, 1), (1, 1), 64, 1),
    (4, 1, 1, 3001, (1, 1), (1, 1), 10, 1),     # several int16 spans of the byte kernel
    (6, 1, 1, 33, (1, 1), (1, 1), 7, 64),        # |w| = 64: one chunk per span
    (3, 8, 7, 1, (3, 3), (1, 1), 64, 1),         # the short-window kernel
    (2, 6, 6, 3, (3, 3), (2, 1), 70, 2),
    (2, 5, 5, 2, (2, 2), (1, 1), 5, 3),
]


@pytest.mark.parametrize("n,H,W,C,kernel,stride,MH,wmax", INT_CASES)
def test_integer_layers(n, H, W, C, kernel, stride, MH, wmax):
    """The int16 kernel, the byte kernel and (where sums fit int16) the short-window kernel."""
    rng = np.random.default_rng(C + MH)
    x = rng.integers(0, 256, (n, H, W, C)).astype(np.uint8)
    flat = x.reshape(n, -1)
    flat[4:, flat.shape[1] // 4: flat.shape[1] // 2] = 0   # zero chunks in the second block of rows
    x[0] = 255
    K = kernel[0] * kernel[1] * C
    Wt = rng.integers(-wmax, wmax + 1, (K, MH))
    if wmax == 1:
        Wt = 2 * (Wt >= 0) - 1                   # the bipolar first layer: +-1
    Wt[:, 0], Wt[:, -1] = wmax, -wmax            # with x = 255: the largest sums there are
    acc = _windows(x.astype(np.int64), kernel, stride) @ Wt
    w16, Kp = kernels.int_weights(Wt)
    _check(("int", w16, MH, (Kp,), kernel, stride), x.astype(np.int16), acc, rng)
    w8, Kp8, span = kernels.u8_weights(Wt)
    _check(("u8", w8, MH, (Kp8, span), kernel, stride), x, acc, rng)
    short = kernels.u8_short_weights(Wt)
    assert (short is not None) == (K * 255 * wmax < 2**15 - 1)
    if short is not None:
        _check(("u8_short", short[0], MH, (short[1],), kernel, stride), x, acc, rng)
    # signed inputs (levels of a multi-bit activation) through the int16 kernel
    xs = rng.integers(-3, 4, (n, H, W, C)).astype(np.int16)
    accs = _windows(xs.astype(np.int64), kernel, stride) @ Wt
    _check(("int", w16, MH, (Kp,), kernel, stride), xs, accs, rng)


SIGN_CASES = [  # (n, H, W, C, kernel, stride, MH)
    (4, 32, 32, 1, (3, 3), (1, 1), 64),    # CNV's first layer on MNIST: 30 = 16 + 14 outputs a row
    (3, 8, 7, 1, (3, 3), (1, 1), 64),      # 5 outputs a row: one short block
    (2, 6, 40, 3, (3, 3), (2, 1), 70),     # 27 taps (9 groups), channels copied apart, 2 words
    (2, 5, 20, 2, (2, 2), (1, 1), 5),      # 8 taps: a last group of two
    (1, 4, 17, 1, (1, 1), (1, 1), 3),      # one tap
]


@pytest.mark.parametrize("n,H,W,C,kernel,stride,MH", SIGN_CASES)
def test_sign_byte_layer(n, H, W, C, kernel, stride, MH):
    """The +-1 first-layer kernel: bits of (bytes . weights >= thr), against numpy."""
    rng = np.random.default_rng(H * W + MH)
    x = rng.integers(0, 256, (n, H, W, C)).astype(np.uint8)
    x[-1, -1] = 255                               # the largest inputs: sums at their extremes
    K = kernel[0] * kernel[1] * C
    Wt = 2 * rng.integers(0, 2, (K, MH)) - 1
    Wt[:, 0], Wt[:, -1] = 1, -1                   # the largest sums of either sign
    acc = _windows(x.astype(np.int64), kernel, stride) @ Wt
    T = _thresholds(rng, acc, MH)
    idx, K_ = kernels.u8_sign_weights(Wt, kernel, stride)
    out, _ = kernels.Layer("u8_sign", idx, MH, (K_,), kernel, stride, T)(x)
    assert np.array_equal(out, _bits(acc, T))


GUARDED = """
import ctypes, mmap
import numpy as np
from model import kernels
n, H, W = 2, 9, 32
size, page = n * H * W, mmap.PAGESIZE
pages = -(-size // page) * page
buf = mmap.mmap(-1, pages + page)
libc = ctypes.CDLL(None)
base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
assert libc.mprotect(ctypes.c_void_p(base + pages), page, 0) == 0   # PROT_NONE after the input
x = np.frombuffer(buf, np.uint8, size, pages - size).reshape(n, H, W, 1)
x[:] = np.random.default_rng(0).integers(0, 256, x.shape)
Wt = 2 * np.random.default_rng(1).integers(0, 2, (9, 64)) - 1
idx, K = kernels.u8_sign_weights(Wt, (3, 3), (1, 1))
out, _ = kernels.Layer("u8_sign", idx, 64, (K,), (3, 3), (1, 1), np.zeros(64))(x)
print("read inside")
"""


def test_sign_byte_layer_reads_nothing_past_its_input():
    """The 16-byte loads of the last row end inside the input: a page right after it that
    cannot be read would crash the process otherwise."""
    import subprocess
    import sys
    from pathlib import Path
    r = subprocess.run([sys.executable, "-c", GUARDED], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert r.returncode == 0 and "read inside" in r.stdout, r.stderr[-500:]


def test_sign_byte_layer_takes_only_what_it_computes():
    ones = np.ones((9, 4), np.int64)
    assert kernels.u8_sign_weights(ones, (3, 3), (1, 2)) is None          # strided along a row
    assert kernels.u8_sign_weights(np.where(np.eye(9, 4) > 0, 0, 1)) is None   # a zero weight
    assert kernels.u8_sign_weights(np.ones((49, 4), np.int64)) is None     # too long a window
    with pytest.raises(ValueError, match="thresholds"):
        kernels.Layer("u8_sign", kernels.u8_sign_weights(ones)[0], 4, (9,), (3, 3), (1, 1))


def test_or_pool():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2**64, (3, 7, 6, 2), dtype=np.uint64)
    win = _windows(x, (2, 2), (2, 2)).reshape(3, 3, 3, 4, 2)
    assert np.array_equal(kernels.or_pool(x, (2, 2), (2, 2)), np.bitwise_or.reduce(win, axis=3))


def test_default_build_is_the_native_one(tmp_path):
    """The first flag set (-march=native) compiles: a broken vector path would otherwise fall
    back to the portable flags without a word."""
    first = kernels._build(flag_sets=[["-march=native", "-fopenmp"]], cache=tmp_path)
    assert first is not None and first.name == kernels._build(cache=tmp_path).name


def test_an_edit_of_kernels_c_rebuilds(tmp_path, monkeypatch):
    """The cache is keyed by kernels.c's content: an edited file compiles to a new library
    instead of loading the one built from the old text."""
    first = kernels._build(flag_sets=[[]], cache=tmp_path / "cache")
    edited = tmp_path / "kernels.c"
    edited.write_text(kernels.SOURCE.read_text() + "\nint bitlens_edit_marker(void) { return 7; }\n")
    monkeypatch.setattr(kernels, "SOURCE", edited)
    second = kernels._build(flag_sets=[[]], cache=tmp_path / "cache")
    assert second is not None and second != first
    assert ctypes.CDLL(str(second)).bitlens_edit_marker() == 7


def test_block_size_agrees_with_kernels_c():
    """Python lays the weights out in blocks of NB neurons; the C reads them with its own NB."""
    assert re.search(r"^#define NB (\d+)", kernels.SOURCE.read_text(), re.M).group(1) == str(kernels.NB)


def test_portable_build_matches(tmp_path):
    """The scalar code (no AVX2) gives the same integers as the default build."""
    path = kernels._build(flag_sets=[["-fopenmp", "-mno-avx2"], ["-fopenmp"]], cache=tmp_path)
    lib = kernels._open(path)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 2**64, (3, 6, 6, 2), dtype=np.uint64)
    w = kernels.xnor_weights(rng.integers(0, 2**64, (13, 18), dtype=np.uint64))
    T = rng.integers(500, 700, 13) + 0.5
    for thr, pool in ((None, None), (T, None), (T, ((2, 2), (2, 2)))):
        a = kernels.Layer("xnor", w, 13, (1152,), (3, 3), (1, 1), thr, pool=pool)(x)[0]
        b = kernels.Layer("xnor", w, 13, (1152,), (3, 3), (1, 1), thr, lib=lib, pool=pool)(x)[0]
        assert np.array_equal(a, b)
    xb = rng.integers(0, 256, (4, 9, 9, 1)).astype(np.uint8)
    Wt = 2 * rng.integers(0, 2, (9, 70)) - 1
    for kind, (wl, *args) in [("u8", kernels.u8_weights(Wt)), ("u8_short", kernels.u8_short_weights(Wt)),
                              ("int", kernels.int_weights(Wt))]:
        xi = xb.astype(np.int16) if kind == "int" else xb
        a = kernels.Layer(kind, wl, 70, args, (3, 3), (1, 1))(xi)[0]
        b = kernels.Layer(kind, wl, 70, args, (3, 3), (1, 1), lib=lib)(xi)[0]
        assert np.array_equal(a, b), kind
    idx, K = kernels.u8_sign_weights(Wt, (3, 3), (1, 1))
    Tb = rng.integers(-300, 300, 70) + 0.5
    a = kernels.Layer("u8_sign", idx, 70, (K,), (3, 3), (1, 1), Tb)(xb)[0]
    b = kernels.Layer("u8_sign", idx, 70, (K,), (3, 3), (1, 1), Tb, lib=lib)(xb)[0]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["tfc-w1a1", "cnv-w1a1", "tfc-w2a2", "cnv-w2a2"])
def test_reference_native_path_equals_numpy_path(name, tmp_path):
    """Whole networks: the per-layer kernels and the numpy path give the same accumulators."""
    from brevitas.export import export_qonnx
    torch.manual_seed(4)
    net = randomise_bn(zoo.build(name))
    export_qonnx(net, torch.zeros(1, *net.in_shape), str(tmp_path / "m.onnx"), dynamo=False)
    ref = Reference(streamline(tmp_path / "m.onnx"))
    assert ref.native_ok
    c, h, w = net.in_shape
    x = np.random.default_rng(1).integers(0, 256, (37 if name.startswith("cnv") else 300, h, w, c), dtype=np.uint8)
    x[0], x[1] = 0, 255
    assert np.array_equal(ref.predict_int(x, batch=16), ref._predict_batch(x))
    layers = [s.layer for s in ref._program if hasattr(s, "layer")]
    assert sum(bool(la.pool) for la in layers) == (2 if name == "cnv-w1a1" else 0)   # CNV's binary pools fused
    first = {"tfc-w1a1": "u8_layer", "cnv-w1a1": "u8_sign_layer", "tfc-w2a2": "u8_layer", "cnv-w2a2": "u8_short_layer"}
    assert layers[0].fn.__name__ == first[name]


def _zoo_reference(name, tmp_path, seed=4):
    from brevitas.export import export_qonnx
    torch.manual_seed(seed)
    net = randomise_bn(zoo.build(name))
    export_qonnx(net, torch.zeros(1, *net.in_shape), str(tmp_path / "m.onnx"), dynamo=False)
    return net, Reference(streamline(tmp_path / "m.onnx"))


@pytest.mark.parametrize("name", ["tfc-w1a1", "cnv-w1a1"])
def test_forward_without_gradient_runs_native_with_the_same_values(name, tmp_path, monkeypatch):
    net, ref = _zoo_reference(name, tmp_path)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *net.in_shape, generator=g)          # not on the byte grid: rounding counts
    x[0] = 0
    x[1] = 1
    calls = []
    real = Reference.predict_int
    monkeypatch.setattr(Reference, "predict_int", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    with torch.no_grad():
        fast = ref(x)
    assert calls, "no_grad forward did not take the native path"
    calls.clear()
    slow = ref(x.clone().requires_grad_(True))
    assert not calls and torch.equal(fast, slow.detach())


def test_weights_changed_in_place_reach_every_path(tmp_path):
    """The sanity check shuffles weights and thresholds in place: the float path, the numpy
    path and the native kernels must all compute with the shuffled ones."""
    from explain.metrics import randomise_layer
    from model.reference import LinearStage, ThresholdAct
    _, ref = _zoo_reference("tfc-w1a1", tmp_path)
    x = np.random.default_rng(2).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    xf = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 256).requires_grad_(True)
    before = ref.predict_int(x)
    gen = torch.Generator().manual_seed(1)
    for st in ref.stages:
        if isinstance(st, (LinearStage, ThresholdAct)):
            randomise_layer(st, gen)
            native = ref.predict_int(x)
            assert np.array_equal(native, ref._predict_batch(x))
            assert np.array_equal(native, ref.accumulators(xf).detach().round().numpy().astype(np.int64))
    assert not np.array_equal(native, before)
