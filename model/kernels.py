"""Native kernels of the bit-exact reference.

Each layer kernel reads a batch of NHWC feature maps in place (a window of kh x kw pixels at a
stride, or one row per image for a fully connected layer: H = W = kh = kw = 1), keeps each
output in registers and, for a binary activation, compares it with its integer threshold and
writes the packed bit straight into the next layer's input words:

- `xnor_layer`: XNOR-popcount of bit-packed words (binary weights and activations).
- `u8_layer`, `u8_short_layer`: the 8-bit first layer, by byte multiply-adds along the window
  (long windows) or across 64 neurons at a time (short ones, whose sums fit int16).
- `int_layer`: any other integer layer (behind multi-bit activations), in int16 x int16 -> int32.
- `or_pool`: max-pooling of packed binary activations.

`Layer` binds one of them to prepared weights. `xnor_gemm` is the plain packed GEMM the numpy
path of the reference uses. Their C is kernels.c beside this file, compiled once with the C
compiler Verilator needs anyway, cached under .cache/bitlens/, and loaded with ctypes; without a
compiler `available()` is False and the reference stays on numpy. The results are identical
integers either way."""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

# The kernels take output neurons in blocks of NB and output pixels in blocks of R (kernels.c's
# defines); weights are stored block-interleaved, so a block reads one contiguous run per input
# word.
NB = 8
SOURCE = Path(__file__).with_name("kernels.c")
ROOT = Path(__file__).resolve().parents[1]
_lib = None
_tried = False


def _cache_dir():
    return Path(os.environ.get("BITLENS_CACHE", ROOT / ".cache" / "bitlens"))


def _cpu():
    """What -march=native compiles for: a cache carried to another CPU must not be reused."""
    try:
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")]
        return platform.machine() + (flags[0] if flags else "")
    except OSError:
        return platform.machine() + platform.processor()


def _build(flag_sets=(["-march=native", "-fopenmp"], ["-fopenmp"], []), cache=None):
    """Compiles SOURCE (kernels.c) with the first flag set the compiler takes -> the library's
    path (cached by the file's content, compiler and flags, so an edit rebuilds), or None without
    a working compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        return None
    cache = Path(cache) if cache else _cache_dir()
    # compiled from this copy, so the key names what was compiled even if the file changes meanwhile
    source = SOURCE.read_text()
    for flags in flag_sets:
        tag = hashlib.sha256((source + cc + " ".join(flags) + _cpu()).encode()).hexdigest()[:16]
        lib = cache / f"kernels_{tag}.so"
        if lib.is_file():
            return lib
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "kernels.c"
            src.write_text(source)
            tmp = Path(d) / lib.name
            r = subprocess.run([cc, "-O3", "-shared", "-fPIC", *flags, str(src), "-o", str(tmp)], capture_output=True)
            if r.returncode == 0:
                os.replace(tmp, lib)   # atomic: a concurrent build never sees half a library
                return lib
    return None


def _open(path):
    """The compiled library with its functions' argument types set."""
    lib = ctypes.CDLL(str(path))
    p, i64, g = ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)
    lib.xnor_gemm.argtypes = [p, p, p, i64, i64, i64, i64]
    lib.xnor_layer.argtypes = [p, g, p, i64, i64, p, p]
    lib.int_layer.argtypes = [p, g, p, i64, i64, p, p]
    lib.u8_layer.argtypes = [p, g, p, i64, i64, i64, p, p]
    lib.u8_short_layer.argtypes = [p, g, p, i64, i64, p, p]
    lib.u8_sign_layer.argtypes = [p, g, p, i64, i64, p, p]
    lib.or_pool.argtypes = [p, g, p]
    lib.xnor_pool_rest.argtypes = [p, g, p, i64, p, g, p]
    for f in (lib.xnor_gemm, lib.xnor_layer, lib.xnor_pool_rest, lib.int_layer, lib.u8_layer, lib.u8_short_layer, lib.u8_sign_layer, lib.or_pool):
        f.restype = None
    return lib


def _load():
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("BITLENS_NO_NATIVE"):
        return None
    try:
        path = _build()
        _lib = None if path is None else _open(path)
    except OSError:
        _lib = None
    return _lib


def available():
    return _load() is not None


def xnor_gemm(xw, ww, K):
    """xw (M, Kw) and ww (N, Kw) uint64 packed words -> float32 (M, N) matches."""
    lib = _load()
    xw = np.ascontiguousarray(xw, dtype=np.uint64)
    ww = np.ascontiguousarray(ww, dtype=np.uint64)
    out = np.empty((xw.shape[0], ww.shape[0]), np.float32)
    lib.xnor_gemm(xw.ctypes.data, ww.ctypes.data, out.ctypes.data, xw.shape[0], ww.shape[0], xw.shape[1], int(K))
    return out


# ------------------------------------------------------------------ whole-layer kernels
def _blocks(a, to=-1):
    """(MH, ...) -> (ceil(MH/NB), ..., NB): NB consecutive neurons side by side (zero rows pad),
    the neuron axis moved to position `to`."""
    pad = (-len(a)) % NB
    a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
    a = a.reshape(len(a) // NB, NB, *a.shape[1:])
    return np.ascontiguousarray(np.moveaxis(a, 1, to))


def xnor_weights(words):
    """Packed weight rows (MH, Kw) -> the layout xnor_layer reads."""
    return _blocks(np.asarray(words, np.uint64))


def int_weights(W):
    """Integer weights (K, MH) -> (int16 layout int_layer reads, Kp)."""
    Wt = np.asarray(W).T.astype(np.int16)
    if Wt.shape[1] % 2:
        Wt = np.concatenate([Wt, np.zeros((len(Wt), 1), np.int16)], 1)
    Kp = Wt.shape[1]
    return _blocks(Wt.reshape(len(Wt), Kp // 2, 2), to=-2), Kp


def u8_weights(W):
    """Integer weights (K, MH) -> (int8 layout u8_layer reads, Kp, span), or None when some
    |w| > 64 (a pair of byte products could then saturate int16)."""
    W = np.asarray(W)
    wmax = int(np.abs(W).max(initial=0))
    if wmax > 64:
        return None
    K, MH = W.shape
    Kp = -(-K // 32) * 32
    m = np.zeros((MH + MH % 2, Kp), np.int8)
    m[:MH, :K] = W.T
    m = m.reshape(len(m) // 2, 2, Kp // 32, 32).transpose(0, 2, 1, 3)
    span = (2**15 - 1) // (2 * 255 * max(wmax, 1))   # chunks of 32 an int16 lane can sum
    return np.ascontiguousarray(m), Kp, span


def u8_short_weights(W):
    """Integer weights (K, MH) -> (int8 layout u8_short_layer reads, Kp), or None when int16
    sums of bytes could overflow (K * 255 * max|w| >= 2^15 - 1)."""
    W = np.asarray(W)
    K, MH = W.shape
    if K * 255 * int(np.abs(W).max(initial=0)) >= 2**15 - 1:
        return None
    Kp, MHp = K + K % 2, -(-MH // 64) * 64
    m = np.zeros((MHp, Kp), np.int8)
    m[:MH, :K] = W.T
    m = m.reshape(MHp // 64, 64, Kp // 2, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(m), Kp


def u8_sign_weights(W, kernel=(1, 1), stride=(1, 1)):
    """Weights (K, MH) all +-1 -> (the per-neuron sum indices u8_sign_layer reads, K), or None
    when some weight is not +-1, the layer steps more than one input along a row, or a window is
    too long for the kernel's table (K > 48)."""
    W = np.asarray(W)
    K, MH = W.shape
    if stride[1] != 1 or K > 3 * 16 or not np.isin(W, (-1, 1)).all():
        return None
    nch, MHp = -(-K // 3), -(-MH // 64) * 64
    neg = np.zeros((MHp, nch * 3), np.int32)
    neg[:MH, :K] = W.T < 0
    idx = np.arange(nch, dtype=np.int32) * 8 + (neg.reshape(MHp, nch, 3) << np.arange(3)).sum(-1)
    return np.ascontiguousarray(idx, np.int32), K


def int_thresholds(T, dtype=np.int32, block=64):
    """Real thresholds (MH,) -> the least integer accumulator that passes each, padded to a
    multiple of `block` with thresholds no accumulator reaches. acc >= T <=> acc >= ceil(T) for
    integer acc; accumulators stay strictly inside the dtype's range (the callers check), so
    clipping to it keeps every threshold's meaning."""
    lim = np.iinfo(dtype).max
    t = np.ceil(np.asarray(T, np.float64))
    t = np.clip(np.nan_to_num(t, nan=lim, posinf=lim, neginf=-lim), -lim, lim).astype(dtype)
    return np.concatenate([t, np.full((-len(t)) % block, lim, dtype)])


def or_pool(x, kernel, stride, lib=None):
    """Max-pooling of packed binary activations (n, H, W, Cw) words: the OR of each window."""
    x = np.ascontiguousarray(x, np.uint64)
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((n, oh, ow, c), np.uint64)
    g = (ctypes.c_int64 * 10)(n, h, w, c, kh, kw, sh, sw, oh, ow)
    (lib or _load()).or_pool(_ptr(x), g, _ptr(out))
    return out


def _ptr(a):
    return a.__array_interface__["data"][0]   # several times cheaper than a.ctypes.data


class Layer:
    """One layer bound to its prepared weights (and thresholds of a fused binary activation):
    `layer(x)` runs a batch. kind "xnor": x (n, H, W, Cw) uint64 words, weights from
    xnor_weights(), args (K,); "int": x int16, weights from int_weights(), args (Kp,); "u8": x
    uint8, weights from u8_weights(), args (Kp, span); "u8_short": x uint8, weights from
    u8_short_weights(), args (Kp,); "u8_sign": x uint8, weights from u8_sign_weights(), args
    (K,), thresholds required. thr: the real thresholds (MH,) of a fused binary activation,
    kept as the integer form the kind compares with. Returns (n, OH, OW, ceil(MH/64)) packed bits
    of value >= thr or, without thr, (n, OH, OW, MH) int32 values. pool: (kernel, stride) of a
    max-pooling of those bits fused into an XNOR layer (the output is then the pooled bits): the
    first position of each window runs blocked, the others only for the neurons still 0."""

    DTYPES = {"xnor": np.uint64, "int": np.int16, "u8": np.uint8, "u8_short": np.uint8, "u8_sign": np.uint8}

    def __init__(self, kind, weights, MH, args, kernel=(1, 1), stride=(1, 1), thr=None, lib=None, pool=None):
        lib = lib or _load()
        self.fn = getattr(lib, f"{kind}_layer")
        self.dtype = self.DTYPES[kind]
        self.w, self.MH, self.args = weights, int(MH), tuple(int(a) for a in args)
        (self.kh, self.kw), (self.sh, self.sw) = kernel, stride
        if kind == "u8_sign" and thr is None:
            raise ValueError("the +-1 byte kernel computes a binary activation: it needs thresholds")
        self.thr = None if thr is None else int_thresholds(thr, np.int16 if kind in ("u8_short", "u8_sign") else np.int32)
        if kind == "u8_sign":   # one vector per threshold: a compare with no broadcast
            self.thr = np.ascontiguousarray(np.repeat(self.thr, 16))
        self.width, self.out_dtype = ((MH + 63) // 64, np.uint64) if thr is not None else (MH, np.int32)
        self._w, self._t = _ptr(weights), None if thr is None else _ptr(self.thr)
        self.pool = None
        if pool is not None:
            if kind != "xnor" or thr is None:
                raise ValueError("only an XNOR layer with a binary activation can fuse its pooling")
            (pkh, pkw), (psh, psw) = pool
            self.pool = (int(pkh), int(pkw), int(psh), int(psw))
            self.rows = np.ascontiguousarray(np.moveaxis(weights, -1, 1).reshape(-1, weights.shape[1])[:MH])
            K = self.args[0]   # most mismatches that still pass: K - thr, within [-1, K]
            self.lim = np.clip(K - self.thr.astype(np.int64), -1, K).astype(np.int32)
            self.rest = lib.xnor_pool_rest
        self._local = threading.local()

    def __call__(self, x, ptr=None):
        """x -> (out, its address). Pass `ptr` when x is known contiguous at that address (the
        previous layer's output). The output buffer and geometry are kept per input shape and
        thread and reused by the next call of that shape: at a few microseconds each, ctypes
        set-up and address look-ups would otherwise cost as much as a small layer."""
        if ptr is None:
            x = np.ascontiguousarray(x, self.dtype)
            ptr = _ptr(x)
        elif x.dtype != self.dtype:
            raise TypeError(f"layer input is {x.dtype}, expected {np.dtype(self.dtype)}")
        bufs = self._local.__dict__.setdefault("bufs", {})
        b = bufs.get(x.shape)
        if b is None:
            n, h, w, c = x.shape
            oh, ow = (h - self.kh) // self.sh + 1, (w - self.kw) // self.sw + 1
            g = (ctypes.c_int64 * 10)(n, h, w, c, self.kh, self.kw, self.sh, self.sw, oh, ow)
            rest = None
            if self.pool:
                pkh, pkw, psh, psw = self.pool
                poh, pow_ = (oh - pkh) // psh + 1, (ow - pkw) // psw + 1
                # every window's first position: the convolution at the pooling stride
                first = (ctypes.c_int64 * 10)(n, h, w, c, self.kh, self.kw, self.sh * psh, self.sw * psw, poh, pow_)
                rest = (g, (ctypes.c_int64 * 6)(pkh, pkw, psh, psw, poh, pow_))
                g, oh, ow = first, poh, pow_
            out = np.empty((n, oh, ow, self.width), self.out_dtype)
            b = bufs[x.shape] = (g, rest, out, _ptr(out))
            if len(bufs) > 8:   # a few batch shapes in use at a time: drop the oldest
                del bufs[next(iter(bufs))]
        g, rest, out, optr = b
        self.fn(ptr, g, self._w, self.MH, *self.args, self._t, optr)
        if rest:
            self.rest(ptr, rest[0], _ptr(self.rows), self.MH, _ptr(self.lim), rest[1], optr)
        return out, optr
