"""Native XNOR-popcount GEMM for the bit-exact reference.

numpy's popcount path makes three passes over a (rows x MH) temporary per packed word; this C
kernel does the whole dot product in registers (hardware popcount, OpenMP over rows). It is
compiled once with the C compiler Verilator needs anyway, cached under .cache/bitlens/, and
loaded with ctypes. Without a compiler `available()` is False and the reference stays on numpy:
the results are identical integers either way."""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = r"""
#include <stdint.h>
/* out[m, n] = K - sum_k popcount(x[m, k] ^ w[n, k]): matches of two {0,1} vectors packed
   little-endian into 64-bit words (padding bits 0 on both sides). */
void xnor_gemm(const uint64_t *x, const uint64_t *w, float *out,
               int64_t M, int64_t N, int64_t Kw, int64_t K)
{
    /* threads only pay off on conv-sized work; small calls would just wake them */
    #pragma omp parallel for schedule(static) if (M * N * Kw > (1 << 20))
    for (int64_t m = 0; m < M; m++) {
        const uint64_t *xr = x + m * Kw;
        float *o = out + m * N;
        for (int64_t n = 0; n < N; n++) {
            const uint64_t *wr = w + n * Kw;
            int64_t mism = 0;
            for (int64_t k = 0; k < Kw; k++)
                mism += __builtin_popcountll(xr[k] ^ wr[k]);
            o[n] = (float)(K - mism);
        }
    }
}
"""
ROOT = Path(__file__).resolve().parents[1]
_lib = None
_tried = False


def _cache_dir():
    return Path(os.environ.get("BITLENS_CACHE", ROOT / ".cache" / "bitlens"))


def _build():
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        return None
    tag = hashlib.sha256((SOURCE + cc).encode()).hexdigest()[:16]
    lib = _cache_dir() / f"xnor_gemm_{tag}.so"
    if not lib.is_file():
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "xnor_gemm.c"
            src.write_text(SOURCE)
            tmp = Path(d) / lib.name
            for flags in (["-march=native", "-fopenmp"], ["-fopenmp"], []):
                r = subprocess.run([cc, "-O3", "-shared", "-fPIC", *flags, str(src), "-o", str(tmp)],
                                   capture_output=True)
                if r.returncode == 0:
                    break
            else:
                return None
            os.replace(tmp, lib)   # atomic: a concurrent build never sees half a library
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
        if path is None:
            return None
        lib = ctypes.CDLL(str(path))
        f = lib.xnor_gemm
        p = ctypes.c_void_p
        f.argtypes = [p, p, p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
        f.restype = None
        _lib = lib
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
