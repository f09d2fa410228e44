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
   little-endian into 64-bit words (padding bits 0 on both sides). Blocks of 4 rows x 4 weight
   rows keep 16 sums in registers, so every word loaded serves four popcounts. Rows past the
   end of a block repeat a valid row and are never stored. */
void xnor_gemm(const uint64_t *x, const uint64_t *w, float *out,
               int64_t M, int64_t N, int64_t Kw, int64_t K)
{
    /* threads only pay off on conv-sized work; small calls would just wake them */
    #pragma omp parallel for schedule(static) if (M * N * Kw > (1 << 20))
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
        int64_t mr = M - m0 < 4 ? M - m0 : 4;
        const uint64_t *xr[4];
        for (int i = 0; i < 4; i++) xr[i] = x + (m0 + (i < mr ? i : 0)) * Kw;
        for (int64_t n0 = 0; n0 < N; n0 += 4) {
            int64_t nr = N - n0 < 4 ? N - n0 : 4;
            const uint64_t *wr[4];
            for (int j = 0; j < 4; j++) wr[j] = w + (n0 + (j < nr ? j : 0)) * Kw;
            int64_t mism[4][4] = {{0}};
            for (int64_t k = 0; k < Kw; k++) {
                uint64_t w0 = wr[0][k], w1 = wr[1][k], w2 = wr[2][k], w3 = wr[3][k];
                for (int i = 0; i < 4; i++) {
                    uint64_t xv = xr[i][k];
                    mism[i][0] += __builtin_popcountll(xv ^ w0);
                    mism[i][1] += __builtin_popcountll(xv ^ w1);
                    mism[i][2] += __builtin_popcountll(xv ^ w2);
                    mism[i][3] += __builtin_popcountll(xv ^ w3);
                }
            }
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++)
                    out[(m0 + i) * N + n0 + j] = (float)(K - mism[i][j]);
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
