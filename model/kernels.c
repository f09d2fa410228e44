/* Native kernels of BitLens' bit-exact reference: model/kernels.py compiles this file once
   (-O3 -shared -fPIC, with -march=native -fopenmp where the compiler takes them), caches the
   library under .cache/bitlens/ keyed by this file's content, and binds it with ctypes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#define R 4
#define NB 8   /* = NB in Python, which lays out the weights */

/* out[m, n] = K - sum_k popcount(x[m, k] ^ w[n, k]): matches of two {0,1} vectors packed
   little-endian into 64-bit words (padding bits 0 on both sides). Blocks of 4 rows x 4 weight
   rows keep 16 sums in registers, so every word loaded serves four popcounts. */
void xnor_gemm(const uint64_t *x, const uint64_t *w, float *out,
               int64_t M, int64_t N, int64_t Kw, int64_t K)
{
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

/* Copies the R input windows of rows m0.. into buf (R x Kl elements): kh runs of kw*C
   contiguous elements each. Rows past M repeat the last row and are never emitted. Element loops, not
   memcpy: the runs are a few words long and a library call each cost more than the copy. The
   row's position is divided out once per block and stepped after: a 64-bit division costs
   more cycles than a short row's whole dot product. */
#define GATHER(NAME, T) \
static inline __attribute__((always_inline)) \
void NAME(const T *x, const int64_t *g, int64_t m0, int64_t M, T *buf, int64_t Kl) \
{ \
    int64_t H = g[1], W = g[2], C = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], OH = g[8], OW = g[9]; \
    int64_t seg = kw * C, img = m0 / (OH * OW), r = m0 % (OH * OW), oy = r / OW, ox = r % OW; \
    for (int i = 0; i < R; i++) { \
        const T *xb = x + ((img * H + oy * sh) * W + ox * sw) * C; \
        T *d = buf + i * Kl; \
        for (int64_t dy = 0; dy < kh; dy++) \
            for (int64_t e = 0; e < seg; e++) d[dy * seg + e] = xb[dy * W * C + e]; \
        if (m0 + i + 1 < M && ++ox == OW) { \
            ox = 0; \
            if (++oy == OH) { oy = 0; img++; } \
        } \
    } \
}
GATHER(gather64, uint64_t)
GATHER(gather16, int16_t)
GATHER(gather8, uint8_t)

/* One block's values (R rows x NB neurons, int64) -> the output: bits of value >= thr, or int32
   values. Branch-free: a data-dependent branch here mispredicts half the time and cost more
   than the popcounts. */
static inline __attribute__((always_inline))
void emit(int64_t v[R][NB], int64_t m0, int64_t mr, int64_t n0, int64_t MH, const int32_t *thr, void *out)
{
    int64_t NWo = (MH + 63) / 64, nr = MH - n0 < NB ? MH - n0 : NB;
    for (int i = 0; i < mr; i++) {
        if (thr) {
            uint64_t bits = 0;
            for (int j = 0; j < NB; j++) bits |= (uint64_t)(v[i][j] >= thr[n0 + j]) << j;
            ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] |= (bits & ((1ull << nr) - 1)) << (n0 % 64);
        } else {
            for (int j = 0; j < nr; j++) ((int32_t *)out)[(m0 + i) * MH + n0 + j] = (int32_t)v[i][j];
        }
    }
}

#ifdef __AVX2__
/* popcount of each byte of d by a 16-entry table of nibble counts */
static inline __m256i vcount(__m256i d, __m256i lut, __m256i low)
{
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(d, low)),
                           _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(d, 4), low)));
}
#endif

/* Rows m0..m0+R-1 of an XNOR layer. Per block of NB neurons, with AVX2 the first four go through
   the scalar popcnt units and the other four through a vector nibble-table popcount at the same
   time: the two run on separate execution ports (measured ~20 % faster than either alone). */
static inline __attribute__((always_inline))
void xnor_rows(const uint64_t *x, const int64_t *g, const uint64_t *w, int64_t MH, int64_t K,
               const int32_t *thr, void *out, int64_t Kw, uint64_t *buf, int64_t m0, int64_t M)
{
    int64_t mr = M - m0 < R ? M - m0 : R, NWo = (MH + 63) / 64;
    gather64(x, g, m0, M, buf, Kw);
    for (int64_t n0 = 0; n0 < MH; n0 += NB) {
        const uint64_t *wb = w + (n0 / NB) * Kw * NB;
#ifdef __AVX2__
        const __m256i lut = _mm256_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4,0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4);
        const __m256i low = _mm256_set1_epi8(0x0f);
        int64_t s[R][4];
        __m256i tot[R];
        memset(s, 0, sizeof s);
        for (int i = 0; i < R; i++) tot[i] = _mm256_setzero_si256();
        for (int64_t k0 = 0; k0 < Kw; k0 += 31) {   /* byte counters hold 31 words of 8 bits */
            int64_t k1 = Kw - k0 < 31 ? Kw : k0 + 31;
            __m256i acc[R];
            for (int i = 0; i < R; i++) acc[i] = _mm256_setzero_si256();
            for (int64_t k = k0; k < k1; k++) {
                const uint64_t *wk = wb + k * NB;
                uint64_t w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3];
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wk + 4));
                for (int i = 0; i < R; i++) {
                    uint64_t xv = buf[i * Kw + k];
                    s[i][0] += __builtin_popcountll(xv ^ w0);
                    s[i][1] += __builtin_popcountll(xv ^ w1);
                    s[i][2] += __builtin_popcountll(xv ^ w2);
                    s[i][3] += __builtin_popcountll(xv ^ w3);
                    __m256i d = _mm256_xor_si256(_mm256_set1_epi64x((long long)xv), wv);
                    acc[i] = _mm256_add_epi8(acc[i], vcount(d, lut, low));
                }
            }
            for (int i = 0; i < R; i++)
                tot[i] = _mm256_add_epi64(tot[i], _mm256_sad_epu8(acc[i], _mm256_setzero_si256()));
        }
        int64_t nr = MH - n0 < NB ? MH - n0 : NB;
        if (thr) {
            /* matches >= thr  <=>  mismatches <= K - thr  <=>  !(mismatches > K - thr) */
            const __m256i Kv = _mm256_set1_epi64x(K);
            __m256i tlo = _mm256_sub_epi64(Kv, _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(thr + n0))));
            __m256i thi = _mm256_sub_epi64(Kv, _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(thr + n0 + 4))));
            for (int i = 0; i < mr; i++) {
                __m256i lo = _mm256_set_epi64x(s[i][3], s[i][2], s[i][1], s[i][0]);
                int m = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(lo, tlo)))
                      | _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(tot[i], thi))) << 4;
                uint64_t bits = (uint64_t)(~m & 0xff) & ((1ull << nr) - 1);
                ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] |= bits << (n0 % 64);
            }
        } else {
            int64_t v[R][NB];
            for (int i = 0; i < R; i++) {
                for (int j = 0; j < 4; j++) v[i][j] = K - s[i][j];
                _mm256_storeu_si256((__m256i *)&v[i][4], _mm256_sub_epi64(_mm256_set1_epi64x(K), tot[i]));
            }
            emit(v, m0, mr, n0, MH, 0, out);
        }
#else
        int64_t v[R][NB];
        for (int i = 0; i < R; i++) for (int j = 0; j < NB; j++) v[i][j] = K;
        for (int64_t k = 0; k < Kw; k++) {
            const uint64_t *wk = wb + k * NB;
            for (int i = 0; i < R; i++) {
                uint64_t xv = buf[i * Kw + k];
                for (int j = 0; j < NB; j++) v[i][j] -= __builtin_popcountll(xv ^ wk[j]);
            }
        }
        emit(v, m0, mr, n0, MH, thr, out);
#endif
    }
}

/* The common short patches (3x3 windows of 1, 2, 4 words per pixel, rows of 1 word) get their
   own copies with a constant trip count, which the compiler unrolls. */
#define ROWS(KW) static void xnor_rows_##KW(const uint64_t *x, const int64_t *g, const uint64_t *w, \
    int64_t MH, int64_t K, const int32_t *thr, void *out, int64_t Kw, uint64_t *buf, int64_t m0, int64_t M) \
    { xnor_rows(x, g, w, MH, K, thr, out, KW, buf, m0, M); }
ROWS(1) ROWS(9) ROWS(18) ROWS(36)
static void xnor_rows_any(const uint64_t *x, const int64_t *g, const uint64_t *w, int64_t MH, int64_t K,
                          const int32_t *thr, void *out, int64_t Kw, uint64_t *buf, int64_t m0, int64_t M)
{ xnor_rows(x, g, w, MH, K, thr, out, Kw, buf, m0, M); }

/* An XNOR layer whose binary activation is max-pooled next: the pooled bit is the OR of the
   window's bits, so a neuron that has passed its threshold at one position of a pooling window
   needs no other position computed. The caller runs the blocked kernel on every window's first
   position (a convolution at the pooling stride); this goes through the other positions in turn,
   computing only the neurons still 0 (on MNIST, CNV's conv2 and conv4 keep ~45 % of that work).
   Two neurons at a time, so each input word loaded serves both: which neurons are left differs
   per window, which rules out the blocked kernel's register tiles (this runs at ~0.7 of its
   words per cycle). */
static inline __attribute__((always_inline))
void pool_rest_px(const uint64_t *x, const int64_t *g, const int64_t *pg, const uint64_t *w, int64_t MH,
                  const int32_t *lim, uint64_t *out, int64_t Kw, int64_t q)
{
    int64_t H = g[1], W = g[2], C = g[3], kw = g[5], sh = g[6], sw = g[7];
    int64_t pkh = pg[0], pkw = pg[1], psh = pg[2], psw = pg[3], POH = pg[4], POW = pg[5];
    int64_t NWo = (MH + 63) / 64, img = q / (POH * POW), r = q % (POH * POW), py = r / POW, px = r % POW;
    int64_t seg = kw * C, kh = Kw / seg;
    uint64_t left[NWo], xv[Kw], any = 0;
#ifdef __AVX2__
    /* Long windows split each neuron's words: about two thirds through the vector unit, the rest
       through scalar popcnt at the same time (Kw = 18: ~25 % faster than scalar alone; at 9
       words the vector set-up costs more than it saves). 31 words at most per byte counter. */
    const int64_t VW = Kw >= 16 && Kw <= 124 ? (2 * Kw / 3) & ~3ll : 0;
    const __m256i lut = _mm256_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4,0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4);
    const __m256i low = _mm256_set1_epi8(0x0f);
#endif
    for (int64_t j = 0; j < NWo; j++) {
        left[j] = ~out[j] & (j < NWo - 1 || MH % 64 == 0 ? ~0ull : (1ull << (MH % 64)) - 1);
        any |= left[j];
    }
    for (int64_t p = 1; p < pkh * pkw && any; p++) {
        const uint64_t *xb = x + ((img * H + (py * psh + p / pkw) * sh) * W + (px * psw + p % pkw) * sw) * C;
        for (int64_t a = 0; a < kh; a++)
            for (int64_t e = 0; e < seg; e++) xv[a * seg + e] = xb[a * W * C + e];
        any = 0;
        for (int64_t j = 0; j < NWo; j++) {
            uint64_t m = left[j], pass = 0;
            const uint64_t *wj = w + j * 64 * Kw;
            const int32_t *lj = lim + j * 64;
            while (m & (m - 1)) {   /* two neurons a step: each x word loaded serves both */
                int64_t a = __builtin_ctzll(m);
                m &= m - 1;
                int64_t b = __builtin_ctzll(m);
                m &= m - 1;
                const uint64_t *wa = wj + a * Kw, *wb = wj + b * Kw;
                int64_t sa = 0, sb = 0, k = 0;
#ifdef __AVX2__
                if (VW) {   /* the first VW words through the vector table popcount */
                    __m256i ca = _mm256_setzero_si256(), cb = _mm256_setzero_si256();
                    for (; k < VW; k += 4) {
                        __m256i xk = _mm256_loadu_si256((const __m256i *)(xv + k));
                        ca = _mm256_add_epi8(ca, vcount(_mm256_xor_si256(xk, _mm256_loadu_si256((const __m256i *)(wa + k))), lut, low));
                        cb = _mm256_add_epi8(cb, vcount(_mm256_xor_si256(xk, _mm256_loadu_si256((const __m256i *)(wb + k))), lut, low));
                    }
                    __m256i za = _mm256_sad_epu8(ca, _mm256_setzero_si256()), zb = _mm256_sad_epu8(cb, _mm256_setzero_si256());
                    __m256i t = _mm256_add_epi64(_mm256_unpacklo_epi64(za, zb), _mm256_unpackhi_epi64(za, zb));
                    __m128i u = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                    sa = _mm_cvtsi128_si64(u);
                    sb = _mm_extract_epi64(u, 1);
                }
#endif
                for (; k < Kw; k++) {
                    sa += __builtin_popcountll(xv[k] ^ wa[k]);
                    sb += __builtin_popcountll(xv[k] ^ wb[k]);
                }
                pass |= (uint64_t)(sa <= lj[a]) << a | (uint64_t)(sb <= lj[b]) << b;
            }
            if (m) {
                int64_t a = __builtin_ctzll(m), s = 0;
                for (int64_t k = 0; k < Kw; k++) s += __builtin_popcountll(xv[k] ^ wj[a * Kw + k]);
                pass |= (uint64_t)(s <= lj[a]) << a;
            }
            out[j] |= pass;
            left[j] &= ~pass;
            any |= left[j];
        }
    }
}
#define POOLREST(KW) static void pool_rest_px_##KW(const uint64_t *x, const int64_t *g, const int64_t *pg, \
    const uint64_t *w, int64_t MH, const int32_t *lim, uint64_t *out, int64_t Kw, int64_t q) \
    { pool_rest_px(x, g, pg, w, MH, lim, out, KW, q); }
POOLREST(9) POOLREST(18) POOLREST(36)
static void pool_rest_px_any(const uint64_t *x, const int64_t *g, const int64_t *pg, const uint64_t *w,
                             int64_t MH, const int32_t *lim, uint64_t *out, int64_t Kw, int64_t q)
{ pool_rest_px(x, g, pg, w, MH, lim, out, Kw, q); }

/* x, g as in xnor_layer (the layer's own OH x OW output); w (MH, Kw) words; lim (MH) int32: the
   most mismatches that still pass (K - thr); pg = pooling kh, kw, sh, sw, POH, POW. out (n, POH,
   POW, ceil(MH/64)) words holds the bits of each window's first position and receives the
   pooled bits. */
void xnor_pool_rest(const uint64_t *x, const int64_t *g, const uint64_t *w, int64_t MH,
                    const int32_t *lim, const int64_t *pg, uint64_t *out)
{
    int64_t Q = g[0] * pg[4] * pg[5], Kw = g[4] * g[5] * g[3], NWo = (MH + 63) / 64;
    void (*px)(const uint64_t *, const int64_t *, const int64_t *, const uint64_t *, int64_t, const int32_t *,
               uint64_t *, int64_t, int64_t) =
        Kw == 9 ? pool_rest_px_9 : Kw == 18 ? pool_rest_px_18 : Kw == 36 ? pool_rest_px_36 : pool_rest_px_any;
    #pragma omp parallel for schedule(dynamic, 16) if (Q * MH * Kw > (1 << 12))
    for (int64_t q = 0; q < Q; q++) px(x, g, pg, w, MH, lim, out + q * NWo, Kw, q);
}

/* x (n, H, W, Cw) words; g = n, H, W, Cw, kh, kw, sh, sw, OH, OW; w (ceil(MH/NB), Kw, NB) words
   with Kw = kh*kw*Cw; thr (ceil(MH/NB)*NB) int32 or NULL. out: (n*OH*OW, ceil(MH/64)) words
   (bit n set where K - mismatches >= thr[n]) or (n*OH*OW, MH) int32 matches. */
void xnor_layer(const uint64_t *x, const int64_t *g, const uint64_t *w, int64_t MH, int64_t K,
                const int32_t *thr, void *out)
{
    int64_t M = g[0] * g[8] * g[9], Kw = g[4] * g[5] * g[3];
    void (*rows)(const uint64_t *, const int64_t *, const uint64_t *, int64_t, int64_t, const int32_t *,
                 void *, int64_t, uint64_t *, int64_t, int64_t) =
        Kw == 1 ? xnor_rows_1 : Kw == 9 ? xnor_rows_9 : Kw == 18 ? xnor_rows_18 : Kw == 36 ? xnor_rows_36 : xnor_rows_any;
    if (thr) memset(out, 0, M * ((MH + 63) / 64) * 8);
    #pragma omp parallel if (M * MH * Kw > (1 << 12))
    {
        uint64_t *buf = malloc(R * Kw * 8);
        #pragma omp for schedule(dynamic, 16)
        for (int64_t m0 = 0; m0 < M; m0 += R) rows(x, g, w, MH, K, thr, out, Kw, buf, m0, M);
        free(buf);
    }
}

/* x (n, H, W, C) int16; w (ceil(MH/NB), Kp/2, NB, 2) int16 with Kp = kh*kw*C rounded up to even
   (the pad is zero); thr and out as in xnor_layer, the value being the dot product. Sums are
   int32: the caller keeps K * max|x| * max|w| below 2^31 - 1. */
void int_layer(const int16_t *x, const int64_t *g, const int16_t *w, int64_t MH, int64_t Kp,
               const int32_t *thr, void *out)
{
    int64_t M = g[0] * g[8] * g[9], NWo = (MH + 63) / 64;
    if (thr) memset(out, 0, M * NWo * 8);
    #pragma omp parallel if (M * MH * Kp > (1 << 18))
    {
        int16_t *buf = calloc(R * Kp, 2);
        #pragma omp for schedule(dynamic, 16)
        for (int64_t m0 = 0; m0 < M; m0 += R) {
            int64_t mr = M - m0 < R ? M - m0 : R;
            gather16(x, g, m0, M, buf, Kp);   /* the odd pad element stays 0 from calloc */
            for (int64_t n0 = 0; n0 < MH; n0 += NB) {
                const int16_t *wb = w + (n0 / NB) * Kp * NB;
                int64_t nr = MH - n0 < NB ? MH - n0 : NB;
#ifdef __AVX2__
                /* one madd: 8 neurons x a pair of inputs, summed into 8 int32 lanes */
                __m256i a[R];
                for (int i = 0; i < R; i++) a[i] = _mm256_setzero_si256();
                for (int64_t p = 0; p < Kp / 2; p++) {
                    __m256i wv = _mm256_loadu_si256((const __m256i *)(wb + p * 2 * NB));
                    for (int i = 0; i < R; i++) {
                        int32_t pair;
                        memcpy(&pair, buf + i * Kp + 2 * p, 4);
                        a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_set1_epi32(pair), wv));
                    }
                }
                if (thr) {
                    __m256i t = _mm256_loadu_si256((const __m256i *)(thr + n0));
                    for (int i = 0; i < mr; i++) {
                        int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(t, a[i])));
                        uint64_t bits = (uint64_t)(~m & 0xff) & ((1ull << nr) - 1);
                        ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] |= bits << (n0 % 64);
                    }
                } else {
                    for (int i = 0; i < mr; i++) {
                        int32_t t[NB];
                        _mm256_storeu_si256((__m256i *)t, a[i]);
                        for (int j = 0; j < nr; j++) ((int32_t *)out)[(m0 + i) * MH + n0 + j] = t[j];
                    }
                }
#else
                int64_t v[R][NB];
                for (int i = 0; i < R; i++)
                    for (int j = 0; j < NB; j++) {
                        int32_t s = 0;
                        for (int64_t k = 0; k < Kp; k++) s += (int32_t)buf[i * Kp + k] * wb[(k / 2) * 2 * NB + j * 2 + k % 2];
                        v[i][j] = s;
                    }
                emit(v, m0, mr, n0, MH, thr, out);
#endif
            }
        }
        free(buf);
    }
}

/* The 8-bit first layer: bytes x small signed weights. One multiply-add of unsigned by signed
   bytes covers 32 inputs (twice the int16 kernel's 16), summed pairwise into int16 lanes; lanes
   are widened to int32 every `span` chunks of 32, before they can overflow (the caller sets
   span from max|w| <= 64, which also keeps each pair sum from saturating). x (n, H, W, C) uint8;
   w (ceil(MH/2), Kp/32, 2, 32) int8 with Kp = kh*kw*C rounded up to 32 (the pad is zero); thr
   and out as in xnor_layer. Chunks that are zero in all R rows of a block add nothing and are
   skipped (an MNIST digit's empty border: ~19 % of the chunks of four images). */
void u8_layer(const uint8_t *x, const int64_t *g, const int8_t *w, int64_t MH, int64_t Kp,
              int64_t span, const int32_t *thr, void *out)
{
    int64_t M = g[0] * g[8] * g[9], NWo = (MH + 63) / 64, nc = Kp / 32;
    if (thr) memset(out, 0, M * NWo * 8);
    #pragma omp parallel if (M * MH * Kp > (1 << 18))
    {
        uint8_t *buf = calloc(R * Kp, 1);
        int64_t *live = malloc(nc * sizeof(int64_t));
        #pragma omp for schedule(dynamic, 16)
        for (int64_t m0 = 0; m0 < M; m0 += R) {
            int64_t mr = M - m0 < R ? M - m0 : R, nl = 0;
            gather8(x, g, m0, M, buf, Kp);   /* the pad bytes stay 0 from calloc */
            for (int64_t c = 0; c < nc; c++) {
                uint8_t any = 0;
                for (int i = 0; i < R; i++)
                    for (int e = 0; e < 32; e++) any |= buf[i * Kp + c * 32 + e];
                live[nl] = c;
                nl += any != 0;
            }
            for (int64_t n0 = 0; n0 < MH; n0 += 2) {
                const int8_t *wb = w + (n0 / 2) * Kp * 2;
                int64_t v[R][2];
#ifdef __AVX2__
                const __m256i ones = _mm256_set1_epi16(1);
                __m256i a32[R][2];
                for (int i = 0; i < R; i++) a32[i][0] = a32[i][1] = _mm256_setzero_si256();
                for (int64_t l0 = 0; l0 < nl; l0 += span) {
                    int64_t l1 = nl - l0 < span ? nl : l0 + span;
                    __m256i a16[R][2];
                    for (int i = 0; i < R; i++) a16[i][0] = a16[i][1] = _mm256_setzero_si256();
                    for (int64_t l = l0; l < l1; l++) {
                        int64_t c = live[l];
                        __m256i w0 = _mm256_loadu_si256((const __m256i *)(wb + c * 64));
                        __m256i w1 = _mm256_loadu_si256((const __m256i *)(wb + c * 64 + 32));
                        for (int i = 0; i < R; i++) {
                            __m256i xv = _mm256_loadu_si256((const __m256i *)(buf + i * Kp + c * 32));
                            a16[i][0] = _mm256_add_epi16(a16[i][0], _mm256_maddubs_epi16(xv, w0));
                            a16[i][1] = _mm256_add_epi16(a16[i][1], _mm256_maddubs_epi16(xv, w1));
                        }
                    }
                    for (int i = 0; i < R; i++)
                        for (int j = 0; j < 2; j++)
                            a32[i][j] = _mm256_add_epi32(a32[i][j], _mm256_madd_epi16(a16[i][j], ones));
                }
                /* eight lane sums at once: horizontal adds pair the vectors up, the two
                   128-bit halves are then added -> (row 0: n0, n0+1, row 1: ..., row 3) */
                __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a32[0][0], a32[0][1]), _mm256_hadd_epi32(a32[1][0], a32[1][1]));
                __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a32[2][0], a32[2][1]), _mm256_hadd_epi32(a32[3][0], a32[3][1]));
                __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
                if (thr) {
                    __m256i t = _mm256_set_epi32(thr[n0 + 1], thr[n0], thr[n0 + 1], thr[n0], thr[n0 + 1], thr[n0], thr[n0 + 1], thr[n0]);
                    uint64_t pass = ~(uint64_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(t, sum)));
                    uint64_t keep = MH - n0 < 2 ? 1 : 3;
                    for (int i = 0; i < mr; i++)
                        ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] |= ((pass >> (2 * i)) & keep) << (n0 % 64);
                    continue;
                }
                int32_t t[8];
                _mm256_storeu_si256((__m256i *)t, sum);
                for (int i = 0; i < R; i++)
                    for (int j = 0; j < 2; j++) v[i][j] = t[2 * i + j];
#else
                for (int i = 0; i < R; i++)
                    for (int j = 0; j < 2; j++) {
                        int64_t t = 0;
                        for (int64_t k = 0; k < Kp; k++) t += buf[i * Kp + k] * wb[(k / 32) * 64 + j * 32 + k % 32];
                        v[i][j] = t;
                    }
#endif
                int64_t nr = MH - n0 < 2 ? MH - n0 : 2;
                for (int i = 0; i < mr; i++) {
                    if (thr) {
                        uint64_t bits = (uint64_t)(v[i][0] >= thr[n0]) | ((uint64_t)(v[i][1] >= thr[n0 + 1]) & (nr > 1)) << 1;
                        ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] |= bits << (n0 % 64);
                    } else {
                        for (int j = 0; j < nr; j++) ((int32_t *)out)[(m0 + i) * MH + n0 + j] = (int32_t)v[i][j];
                    }
                }
            }
        }
        free(buf);
        free(live);
    }
}

/* The 8-bit first layer when its window is short (a 3x3 window of one channel: 9 inputs): the
   window-vectorised kernel would pad 9 inputs to 32. This one keeps 64 neurons of a row in four
   int16 vectors and takes the inputs a pair at a time; the caller guarantees K * 255 * max|w| <
   2^15 - 1, so int16 sums neither saturate nor wrap. w (ceil(MH/64), Kp/2, 64, 2) int8 with Kp
   = K rounded up to even; thr (ceil(MH/64)*64) int16 or NULL; out as in xnor_layer. */
void u8_short_layer(const uint8_t *x, const int64_t *g, const int8_t *w, int64_t MH, int64_t Kp,
                    const int16_t *thr, void *out)
{
    int64_t M = g[0] * g[8] * g[9], NWo = (MH + 63) / 64, np_ = Kp / 2;
    #pragma omp parallel if (M * MH * Kp > (1 << 18))
    {
        uint8_t *buf = calloc(R * Kp, 1);
        #pragma omp for schedule(dynamic, 16)
        for (int64_t m0 = 0; m0 < M; m0 += R) {
            int64_t mr = M - m0 < R ? M - m0 : R;
            gather8(x, g, m0, M, buf, Kp);
            for (int i = 0; i < mr; i++) {
                const uint8_t *xr = buf + i * Kp;
                for (int64_t n0 = 0; n0 < MH; n0 += 64) {
                    const int8_t *wg = w + (n0 / 64) * np_ * 128;
                    int16_t v[64];
#ifdef __AVX2__
                    __m256i a[4];
                    for (int j = 0; j < 4; j++) a[j] = _mm256_setzero_si256();
                    for (int64_t p = 0; p < np_; p++) {
                        int16_t pr;
                        memcpy(&pr, xr + 2 * p, 2);
                        __m256i xv = _mm256_set1_epi16(pr);
                        for (int j = 0; j < 4; j++)
                            a[j] = _mm256_add_epi16(a[j], _mm256_maddubs_epi16(xv, _mm256_loadu_si256((const __m256i *)(wg + p * 128 + 32 * j))));
                    }
                    if (thr) {
                        /* lanes where thr > acc, in neuron order: packs interleaves the 128-bit
                           halves, the permute puts them back */
                        __m256i t[4], m[2];
                        for (int j = 0; j < 4; j++) t[j] = _mm256_cmpgt_epi16(_mm256_loadu_si256((const __m256i *)(thr + n0 + 16 * j)), a[j]);
                        m[0] = _mm256_permute4x64_epi64(_mm256_packs_epi16(t[0], t[1]), 0xd8);
                        m[1] = _mm256_permute4x64_epi64(_mm256_packs_epi16(t[2], t[3]), 0xd8);
                        uint64_t below = (uint64_t)(uint32_t)_mm256_movemask_epi8(m[0]) | (uint64_t)(uint32_t)_mm256_movemask_epi8(m[1]) << 32;
                        int64_t nr = MH - n0 < 64 ? MH - n0 : 64;
                        ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] = ~below & (nr == 64 ? ~0ull : (1ull << nr) - 1);
                        continue;
                    }
                    for (int j = 0; j < 4; j++) _mm256_storeu_si256((__m256i *)(v + 16 * j), a[j]);
#else
                    for (int j = 0; j < 64; j++) {
                        int32_t s = 0;
                        for (int64_t k = 0; k < Kp; k++) s += xr[k] * wg[(k / 2) * 128 + j * 2 + k % 2];
                        v[j] = (int16_t)s;
                    }
                    if (thr) {
                        uint64_t bits = 0;
                        int64_t nr = MH - n0 < 64 ? MH - n0 : 64;
                        for (int j = 0; j < nr; j++) bits |= (uint64_t)(v[j] >= thr[n0 + j]) << j;
                        ((uint64_t *)out)[(m0 + i) * NWo + n0 / 64] = bits;
                        continue;
                    }
#endif
                    for (int j = 0; j < 64 && n0 + j < MH; j++) ((int32_t *)out)[(m0 + i) * MH + n0 + j] = v[j];
                }
            }
        }
        free(buf);
    }
}

#define SIGN_MAXG 16   /* groups of three taps at most: K <= 48 */
/* One output row of u8_sign_layer (below). */
static inline __attribute__((always_inline))
void sign_row(const uint8_t *x, const int64_t *g, const int32_t *idx, int64_t MH, int64_t K,
              const int16_t *thr, uint64_t *out, uint8_t *rows, int64_t row, int64_t nch)
{
    int64_t n = g[0], H = g[1], W = g[2], C = g[3], kh = g[4], kw = g[5], sh = g[6], OH = g[8], OW = g[9];
    int64_t NWo = (MH + 63) / 64, MHp = NWo * 64, Wp = W + 32;
    int64_t img = row / OH, oy = row % OH;
    /* the window's input rows, one plane per channel, padded so that 16-byte loads stay inside
       (read in place when there is one channel and the loads stay inside x) */
    const uint8_t *plane[SIGN_MAXG * 3];
    int direct = C == 1 && ((img * H + oy * sh + kh - 1) * W + W + 16) <= n * H * W;
    for (int64_t r = 0; r < kh; r++)
        for (int64_t c = 0; c < C; c++) {
            const uint8_t *src = x + (img * H + oy * sh + r) * W * C + c;
            if (direct) {
                plane[r * C + c] = src;
                continue;
            }
            uint8_t *d = rows + (r * C + c) * Wp;
            for (int64_t xx = 0; xx < W; xx++) d[xx] = src[xx * C];
            plane[r * C + c] = d;
        }
    const uint8_t *tap[SIGN_MAXG * 3];   /* where each tap of the window reads, in Im2Col order */
    for (int64_t r = 0, k = 0; r < kh; r++)
        for (int64_t dx = 0; dx < kw; dx++)
            for (int64_t c = 0; c < C; c++, k++) tap[k] = plane[r * C + c] + dx;
    for (int64_t x0 = 0; x0 < OW; x0 += 16) {
        int64_t cnt = OW - x0 < 16 ? OW - x0 : 16;
        uint64_t words[16];
#ifdef __AVX2__
        __m256i T[SIGN_MAXG * 8];
        for (int64_t j = 0; j < nch; j++) {
            __m256i v[3];
            for (int t = 0; t < 3; t++) {
                int64_t k = 3 * j + t;
                if (k < K) {
                    v[t] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(tap[k] + x0)));
                } else {
                    v[t] = _mm256_setzero_si256();
                }
            }
            __m256i s = _mm256_add_epi16(v[0], v[1]), d = _mm256_sub_epi16(v[0], v[1]), z = _mm256_setzero_si256();
            __m256i *Tj = T + 8 * j;   /* bit t of the index: tap t is negated */
            Tj[0] = _mm256_add_epi16(s, v[2]);
            Tj[4] = _mm256_sub_epi16(s, v[2]);
            Tj[2] = _mm256_add_epi16(d, v[2]);
            Tj[6] = _mm256_sub_epi16(d, v[2]);
            Tj[7] = _mm256_sub_epi16(z, Tj[0]);
            Tj[3] = _mm256_sub_epi16(z, Tj[4]);
            Tj[5] = _mm256_sub_epi16(z, Tj[2]);
            Tj[1] = _mm256_sub_epi16(z, Tj[6]);
        }
        for (int64_t n0 = 0; n0 < MHp; n0 += 64) {
            /* field q gathers neurons n0+16q+15 down to n0+16q: each doubles what came before,
               so neuron b ends at bit b; a 1 marks a neuron below its threshold. The four
               fields are independent chains, interleaved. */
            __m256i fail[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int64_t b = 15; b >= 0; b--)
                for (int q = 0; q < 4; q++) {
                    int64_t nn = n0 + 16 * q + b;
                    const int32_t *ix = idx + nn * nch;
                    __m256i acc = T[ix[0]];
                    for (int64_t j = 1; j < nch; j++) acc = _mm256_add_epi16(acc, T[ix[j]]);
                    __m256i below = _mm256_cmpgt_epi16(_mm256_loadu_si256((const __m256i *)(thr + 16 * nn)), acc);
                    fail[q] = _mm256_sub_epi16(_mm256_add_epi16(fail[q], fail[q]), below);
                }
            /* lanes hold outputs 0-7 | 8-15; interleave the four 16-neuron fields into one
               64-bit word per output */
            __m256i u0 = _mm256_unpacklo_epi16(fail[0], fail[1]), u1 = _mm256_unpackhi_epi16(fail[0], fail[1]);
            __m256i v0 = _mm256_unpacklo_epi16(fail[2], fail[3]), v1 = _mm256_unpackhi_epi16(fail[2], fail[3]);
            __m256i w0 = _mm256_unpacklo_epi32(u0, v0), w1 = _mm256_unpackhi_epi32(u0, v0);
            __m256i w2 = _mm256_unpacklo_epi32(u1, v1), w3 = _mm256_unpackhi_epi32(u1, v1);
            __m256i ones = _mm256_set1_epi8(-1);
            _mm256_storeu_si256((__m256i *)(words + 0), _mm256_xor_si256(_mm256_permute2x128_si256(w0, w1, 0x20), ones));
            _mm256_storeu_si256((__m256i *)(words + 4), _mm256_xor_si256(_mm256_permute2x128_si256(w2, w3, 0x20), ones));
            _mm256_storeu_si256((__m256i *)(words + 8), _mm256_xor_si256(_mm256_permute2x128_si256(w0, w1, 0x31), ones));
            _mm256_storeu_si256((__m256i *)(words + 12), _mm256_xor_si256(_mm256_permute2x128_si256(w2, w3, 0x31), ones));
            for (int64_t i = 0; i < cnt; i++) out[(row * OW + x0 + i) * NWo + n0 / 64] = words[i];
        }
#else
        for (int64_t n0 = 0; n0 < MHp; n0 += 64) {
            for (int64_t i = 0; i < cnt; i++) words[i] = 0;
            for (int64_t b = 0; b < 64; b++) {
                const int32_t *ix = idx + (n0 + b) * nch;
                for (int64_t i = 0; i < cnt; i++) {
                    int32_t acc = 0;
                    for (int64_t k = 0; k < K; k++) {
                        int32_t v = tap[k][x0 + i];
                        acc += ix[k / 3] >> (k % 3) & 1 ? -v : v;
                    }
                    words[i] |= (uint64_t)(acc >= thr[16 * (n0 + b)]) << b;
                }
            }
            for (int64_t i = 0; i < cnt; i++) out[(row * OW + x0 + i) * NWo + n0 / 64] = words[i];
        }
#endif
    }
}
static void sign_row_3(const uint8_t *x, const int64_t *g, const int32_t *idx, int64_t MH, int64_t K,
                       const int16_t *thr, uint64_t *out, uint8_t *rows, int64_t row)
{ sign_row(x, g, idx, MH, K, thr, out, rows, row, 3); }

/* The 8-bit first layer when its weights are all +-1 (a binarised layer on bytes) and its
   activation binary: 16 neighbouring outputs of a row side by side in int16 lanes, and no
   multiplies. The taps are taken three at a time; the 8 signed sums +-a +-b +-c of each three
   are computed once per 16 outputs, and each neuron adds one of them per three taps (a 3x3
   window: 2 additions per neuron, against 9 multiply-adds). Bits are gathered by shifting, 16
   neurons to a lane, then interleaved into each output's words. x (n, H, W, C) uint8 with
   stride 1 along W; idx (ceil(MH/64)*64, ceil(K/3)) int32: per neuron and group of three taps,
   which signed sum (group*8 + 1 bit per tap, set for -1; the taps of a window in Im2Col order,
   a last short group padded with +0 taps); thr (ceil(MH/64)*64, 16) int16, each threshold
   repeated across a vector; out as in xnor_layer (bits). The caller keeps K <= 48. */
void u8_sign_layer(const uint8_t *x, const int64_t *g, const int32_t *idx, int64_t MH, int64_t K,
                   const int16_t *thr, uint64_t *out)
{
    int64_t rows_n = g[0] * g[8], nch = (K + 2) / 3;
    #pragma omp parallel if (rows_n * g[9] * MH * K > (1 << 18))
    {
        uint8_t *rows = calloc(g[4] * g[3] * (g[2] + 32), 1);
        #pragma omp for schedule(dynamic, 4)
        for (int64_t row = 0; row < rows_n; row++) {
            if (nch == 3) sign_row_3(x, g, idx, MH, K, thr, out, rows, row);
            else sign_row(x, g, idx, MH, K, thr, out, rows, row, nch);
        }
        free(rows);
    }
}

/* Max-pooling of binary activations is the OR of the window's packed words. x (n, H, W, Cw)
   words, g as above; out (n, OH, OW, Cw). */
void or_pool(const uint64_t *x, const int64_t *g, uint64_t *out)
{
    int64_t n = g[0], H = g[1], W = g[2], Cw = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], OH = g[8], OW = g[9];
    #pragma omp parallel for schedule(static) if (n * OH * OW * Cw * kh * kw > (1 << 16))
    for (int64_t row = 0; row < n * OH; row++) {
        int64_t img = row / OH, oy = row % OH;
        for (int64_t ox = 0; ox < OW; ox++) {
            const uint64_t *xb = x + ((img * H + oy * sh) * W + ox * sw) * Cw;
            uint64_t *o = out + (row * OW + ox) * Cw;
            for (int64_t c = 0; c < Cw; c++) {
                uint64_t v = 0;
                for (int64_t dy = 0; dy < kh; dy++)
                    for (int64_t dx = 0; dx < kw; dx++) v |= xb[(dy * W + dx) * Cw + c];
                o[c] = v;
            }
        }
    }
}
