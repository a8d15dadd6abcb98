/*
 * Packing and the XNOR-popcount matrix product: the core of xnor_kernels.c.
 *
 * Included by xnor_kernels.c (compiled into the ctypes library of
 * binary_net.kernels) and by the fused Theano ops of binary_net.theano_ext
 * (csrc/theano_ext/xnor_dot.c, compiled by Theano), so that both run the same
 * product. It holds the compile-time choice of the code path (AVX-512 VPOPCNTDQ,
 * AVX2, NEON, portable), the thread helpers, the sign packing xk_pack_f32/f64,
 * the panel layout xk_pack_panels, the register-blocked product xk_gemm and its
 * reference xk_gemm_ref. The layouts are described at the top of xnor_kernels.c.
 * Every function is defined here (static or XK_EXPORT): include it once per
 * program.
 */
#ifndef BINARY_NET_XNOR_KERNELS_H
#define BINARY_NET_XNOR_KERNELS_H

#include <stdint.h>
#include <stdlib.h>

#include "xk_threads.h"

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__) && defined(__AVX512VL__) \
    && defined(__AVX512BW__)
#define XK_PATH_AVX512 1
#include <immintrin.h>
#ifndef XK_MR
#define XK_MR 4
#endif
#define XK_NR 32
#define XK_ISA "avx512-vpopcntdq"
#elif defined(__AVX2__)
#define XK_PATH_AVX2 1
#include <immintrin.h>
#ifndef XK_MR
#define XK_MR 3
#endif
#define XK_NR 32           /* byte-interleaved panels (lookup tables) */
#define XK_PR 6            /* rows of A per table tile (8 spilled accumulators) */
#define XK_ISA "avx2"
#elif defined(__aarch64__) && defined(__ARM_NEON) && !defined(XK_NO_NEON)
/* aarch64 (Raspberry Pi 3/4/5 class): NEON micro-kernel, see "NEON" below. */
#define XK_PATH_NEON 1
#include <arm_neon.h>
#define XK_MR 4
#define XK_NR 8
#define XK_ISA "neon"
#else
#define XK_MR 4
#define XK_NR 8
#define XK_ISA "portable"
#if defined(__SSE2__)
#include <emmintrin.h>     /* packing only; the product uses __builtin_popcountll */
#endif
#endif

/* XK_NR: columns per panel (xk_pack_panels); XK_PR: rows of A per tile of the
 * products. XK_MR: rows per tile of the word micro-kernels (all paths but AVX2, whose
 * products use lookup tables on byte-interleaved panels: see "AVX2 products"). */
#ifndef XK_PR
#define XK_PR XK_MR
#endif

/* Exported functions; a file that includes this header into another program (the
 * fused Theano ops) defines XK_EXPORT first, as static functions of its own. */
#ifndef XK_EXPORT
#define XK_EXPORT __attribute__((visibility("default")))
#endif
#define XK_INLINE static inline __attribute__((always_inline))

/* Optional software prefetch run from inside the micro-kernels' word loops, so
 * that a steady trickle of cache lines (per_step per word) is requested while
 * the vector units are busy; see xk_dense_*. NULL everywhere else. */
typedef struct {
    const char *p, *end;
    int64_t per_step;
    int l1;             /* prefetch into L1 (panels of a few KiB), else into L2 */
} xk_prefetch;

#ifdef XK_NO_PREFETCH
#define XK_PF_STEP(pf) ((void)(pf))
#else
#define XK_PF_STEP(pf)                                                             \
    do {                                                                           \
        if (pf)                                                                    \
            for (int64_t k_ = 0; k_ < (pf)->per_step && (pf)->p < (pf)->end; k_++) { \
                if ((pf)->l1) __builtin_prefetch((pf)->p, 0, 3);                   \
                else __builtin_prefetch((pf)->p, 0, 2);                            \
                (pf)->p += 64;                                                     \
            }                                                                      \
    } while (0)
#endif

/* n bytes (at least 1) starting on a 64-byte line, so that the products' vector loads
 * of panels and tables never straddle two lines (malloc gives 16 bytes); free() it.
 * NULL when out of memory. */
XK_INLINE void *xk_alloc(size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, 64, n > 0 ? n : 1) == 0 ? p : NULL;
}

/* ------------------------------------------------------------------------ */
/* Introspection and threads                                                 */
/* ------------------------------------------------------------------------ */

XK_EXPORT const char *xk_isa(void) { return XK_ISA; }
XK_EXPORT int xk_panel_width(void) { return XK_NR; }
XK_EXPORT int xk_tile_rows(void) { return XK_PR; }

XK_EXPORT int xk_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

XK_EXPORT int xk_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}


/* ------------------------------------------------------------------------ */
/* Packing signs                                                             */
/* ------------------------------------------------------------------------ */

/* The scalar end of both row packers below: the words their vector loops left (all
 * of them on the portable path) and the last partial word, one element at a time;
 * bit k of a word is x[k] >= 0. pack_row_f32 and pack_row_f64 differ only in their
 * vector loops. */
#define XK_PACK_SCALAR_TAIL(T)                                                      \
    do {                                                                            \
        for (; w < nw; w++) {                                                       \
            const T *p = x + (w << 6);                                              \
            uint64_t word = 0;                                                      \
            for (int k = 0; k < 64; k++) word |= (uint64_t)(p[k] >= (T)0) << k;     \
            out[w] = word;                                                          \
        }                                                                           \
        int64_t rem = n & 63;                                                       \
        if (rem) {                                                                  \
            const T *p = x + (nw << 6);                                             \
            uint64_t word = 0;                                                      \
            for (int64_t k = 0; k < rem; k++) word |= (uint64_t)(p[k] >= (T)0) << k; \
            out[nw] = word;                                                         \
        }                                                                           \
    } while (0)

/* One contiguous row of n floats -> ceil(n/64) words. */
static void pack_row_f32(const float *x, int64_t n, uint64_t *out)
{
    int64_t nw = n >> 6, w = 0;
#if defined(XK_PATH_AVX512)
    const __m512 z = _mm512_setzero_ps();
    for (; w < nw; w++) {
        const float *p = x + (w << 6);
        uint64_t m0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p), z, _CMP_GE_OQ);
        uint64_t m1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 16), z, _CMP_GE_OQ);
        uint64_t m2 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 32), z, _CMP_GE_OQ);
        uint64_t m3 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 48), z, _CMP_GE_OQ);
        out[w] = m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
    }
#elif defined(XK_PATH_AVX2)
    const __m256 z = _mm256_setzero_ps();
    for (; w < nw; w++) {
        const float *p = x + (w << 6);
        uint64_t word = 0;
        for (int k = 0; k < 8; k++) {
            __m256 v = _mm256_loadu_ps(p + 8 * k);
            uint64_t m = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, z, _CMP_GE_OQ));
            word |= m << (8 * k);
        }
        out[w] = word;
    }
#elif defined(__SSE2__)
    const __m128 z = _mm_setzero_ps();
    for (; w < nw; w++) {
        const float *p = x + (w << 6);
        uint64_t word = 0;
        for (int k = 0; k < 16; k++) {
            uint64_t m = (uint32_t)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(p + 4 * k), z));
            word |= m << (4 * k);
        }
        out[w] = word;
    }
#endif
    XK_PACK_SCALAR_TAIL(float);
}

static void pack_row_f64(const double *x, int64_t n, uint64_t *out)
{
    int64_t nw = n >> 6, w = 0;
#if defined(XK_PATH_AVX512)
    const __m512d z = _mm512_setzero_pd();
    for (; w < nw; w++) {
        const double *p = x + (w << 6);
        uint64_t word = 0;
        for (int k = 0; k < 8; k++) {
            uint64_t m = _mm512_cmp_pd_mask(_mm512_loadu_pd(p + 8 * k), z, _CMP_GE_OQ);
            word |= m << (8 * k);
        }
        out[w] = word;
    }
#elif defined(XK_PATH_AVX2)
    const __m256d z = _mm256_setzero_pd();
    for (; w < nw; w++) {
        const double *p = x + (w << 6);
        uint64_t word = 0;
        for (int k = 0; k < 16; k++) {
            __m256d v = _mm256_loadu_pd(p + 4 * k);
            uint64_t m = (uint32_t)_mm256_movemask_pd(_mm256_cmp_pd(v, z, _CMP_GE_OQ));
            word |= m << (4 * k);
        }
        out[w] = word;
    }
#elif defined(__SSE2__)
    const __m128d z = _mm_setzero_pd();
    for (; w < nw; w++) {
        const double *p = x + (w << 6);
        uint64_t word = 0;
        for (int k = 0; k < 32; k++) {
            uint64_t m = (uint32_t)_mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(p + 2 * k), z));
            word |= m << (2 * k);
        }
        out[w] = word;
    }
#endif
    XK_PACK_SCALAR_TAIL(double);
}

/*
 * x is C-contiguous with logical shape (pre, n, post); the packed axis is the
 * middle one. out has shape (pre, post, ceil(n/64)).
 * post == 1 packs contiguous rows; otherwise, for each block of positions q,
 * the n values of each q (stride post apart) are OR-ed bit by bit into words,
 * reading x contiguously along q so the loop vectorizes.
 */
#define XK_QBLOCK 256

#define DEFINE_PACK(SUFFIX, T)                                                   \
XK_EXPORT void xk_pack_##SUFFIX(const T *x, int64_t pre, int64_t n, int64_t post, \
                                uint64_t *out, int nthreads)                     \
{                                                                                \
    int64_t nw = (n + 63) >> 6;                                                  \
    int nt = resolve_threads(nthreads);                                          \
    int big = pre * n * post > (1 << 16);                                        \
    (void)nt; (void)big;                                                         \
    if (post == 1) {                                                             \
        _Pragma("omp parallel for schedule(guided) num_threads(nt) if(big)")     \
        for (int64_t r = 0; r < pre; r++)                                        \
            pack_row_##SUFFIX(x + r * n, n, out + r * nw);                       \
        return;                                                                  \
    }                                                                            \
    int64_t nqb = (post + XK_QBLOCK - 1) / XK_QBLOCK;                            \
    int64_t ntask = pre * nqb * nw;                                              \
    _Pragma("omp parallel for schedule(guided) num_threads(nt) if(big)")         \
    for (int64_t t = 0; t < ntask; t++) {                                        \
        int64_t g = t % nw, qb = (t / nw) % nqb, r = t / (nw * nqb);             \
        int64_t q0 = qb * XK_QBLOCK;                                             \
        int64_t nq = post - q0 < XK_QBLOCK ? post - q0 : XK_QBLOCK;              \
        int64_t c0 = g << 6;                                                     \
        int64_t nc = n - c0 < 64 ? n - c0 : 64;                                  \
        uint64_t acc[XK_QBLOCK];                                                 \
        for (int64_t q = 0; q < nq; q++) acc[q] = 0;                             \
        const T *base = x + (r * n + c0) * post + q0;                            \
        for (int64_t c = 0; c < nc; c++) {                                       \
            const T *xc = base + c * post;                                       \
            for (int64_t q = 0; q < nq; q++)                                     \
                acc[q] |= (uint64_t)(xc[q] >= 0) << c;                           \
        }                                                                        \
        uint64_t *o = out + (r * post + q0) * nw + g;                            \
        for (int64_t q = 0; q < nq; q++) o[q * nw] = acc[q];                     \
    }                                                                            \
}

DEFINE_PACK(f32, float)
DEFINE_PACK(f64, double)

/* ------------------------------------------------------------------------ */
/* Panels                                                                    */
/* ------------------------------------------------------------------------ */

/* B: N rows of W words (row stride ldb) -> ceil(N/NR) panels of W*NR words: word w of
 * column c at word w*NR + c of its panel, or, on the AVX2 path, byte q (0 <= q < 8W)
 * of column c at byte q*NR + c. Columns past N are zero. */
XK_EXPORT void xk_pack_panels(const uint64_t *B, int64_t N, int64_t W, int64_t ldb,
                              uint64_t *P, int nthreads)
{
    int64_t np = (N + XK_NR - 1) / XK_NR;
    int nt = resolve_threads(nthreads);
    (void)nt;
    _Pragma("omp parallel for schedule(static) num_threads(nt) if(N * W > (1 << 16))")
    for (int64_t p = 0; p < np; p++) {
        uint64_t *dst = P + p * W * XK_NR;
        for (int c = 0; c < XK_NR; c++) {
            int64_t j = p * XK_NR + c;
            const uint64_t *src = B + j * ldb;
            for (int64_t w = 0; w < W; w++) {
                uint64_t v = j < N ? src[w] : 0;
#if defined(XK_PATH_AVX2)
                uint8_t *d = (uint8_t *)(dst + w * XK_NR) + c;
                for (int k = 0; k < 8; k++) d[k * XK_NR] = (uint8_t)(v >> (8 * k));
#else
                dst[w * XK_NR + c] = v;
#endif
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Micro-kernels: r (<= MR) rows of A times one panel, all W words.          */
/* C[i*ldc + c] = n - 2*count for c < ncols.                                 */
/* ------------------------------------------------------------------------ */

#if defined(XK_PATH_AVX512)

/* One word step of micro(): word 0 of r rows of A (stride lda) against one panel row
 * pw of 32 words, into acc (also the loop of xk_ceiling). */
XK_INLINE void micro_step(const int r, const uint64_t *A, int64_t lda, const uint64_t *pw,
                          __m512i acc[][4])
{
    __m512i b0 = _mm512_loadu_si512((const void *)(pw));
    __m512i b1 = _mm512_loadu_si512((const void *)(pw + 8));
    __m512i b2 = _mm512_loadu_si512((const void *)(pw + 16));
    __m512i b3 = _mm512_loadu_si512((const void *)(pw + 24));
    for (int i = 0; i < r; i++) {
        __m512i a = _mm512_set1_epi64((long long)A[i * lda]);
        acc[i][0] = _mm512_add_epi64(acc[i][0], _mm512_popcnt_epi64(_mm512_xor_si512(a, b0)));
        acc[i][1] = _mm512_add_epi64(acc[i][1], _mm512_popcnt_epi64(_mm512_xor_si512(a, b1)));
        acc[i][2] = _mm512_add_epi64(acc[i][2], _mm512_popcnt_epi64(_mm512_xor_si512(a, b2)));
        acc[i][3] = _mm512_add_epi64(acc[i][3], _mm512_popcnt_epi64(_mm512_xor_si512(a, b3)));
    }
}

XK_INLINE void micro(const int r, const uint64_t *A, int64_t lda, const uint64_t *P,
                     int64_t W, int64_t n, int32_t *C, int64_t ldc, int64_t ncols,
                     const int32_t *corr, xk_prefetch *pf)
{
    __m512i acc[XK_MR][4];
    for (int i = 0; i < r; i++)
        for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_si512();
    for (int64_t w = 0; w < W; w++) {
        XK_PF_STEP(pf);
        micro_step(r, A + w, lda, P + w * XK_NR, acc);
    }
    /* Counts are < 2^31: the low dwords of two accumulators, interleaved into
     * one vector of 16 int32 (one permute), give 16 results per store. */
    const __m512i vn = _mm512_set1_epi32((int)n);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14,
                                           16, 18, 20, 22, 24, 26, 28, 30);
    for (int i = 0; i < r; i++) {
        int32_t *ci = C + i * ldc;
        for (int h = 0; h < 2; h++) {
            __m512i cnt = _mm512_permutex2var_epi32(acc[i][2 * h], even, acc[i][2 * h + 1]);
            __m512i v = _mm512_sub_epi32(vn, _mm512_add_epi32(cnt, cnt));
            if (corr)
                v = _mm512_add_epi32(
                    v, _mm512_loadu_si512((const void *)(corr + i * XK_NR + 16 * h)));
            int64_t left = ncols - 16 * h;
            if (left >= 16)
                _mm512_storeu_si512((void *)(ci + 16 * h), v);
            else if (left > 0)
                _mm512_mask_storeu_epi32(ci + 16 * h, (__mmask16)((1u << left) - 1u), v);
        }
    }
}

#elif defined(XK_PATH_AVX2)

/* No word micro-kernel: the AVX2 path's products count with lookup tables (below). */
#define XK_LUT _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, \
                                0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4)

#elif defined(XK_PATH_NEON)

/* NEON: for each row of A and each pair of columns, per word one EOR, one CNT
 * (vcntq_u8: bit counts of the 16 bytes) and one UADALP (vpadalq_u8: pairwise
 * add-accumulate of the bytes into 16-bit lanes, four per column). A 16-bit
 * lane gains at most 16 per word, so the lanes are widened into 64-bit totals
 * (vpaddlq_u16, vpaddlq_u32) every XK_NEON_BLOCK words. */
#define XK_NEON_BLOCK 4096

XK_INLINE void micro(const int r, const uint64_t *A, int64_t lda, const uint64_t *P,
                     int64_t W, int64_t n, int32_t *C, int64_t ldc, int64_t ncols,
                     const int32_t *corr, xk_prefetch *pf)
{
    uint64_t tot[XK_MR][XK_NR];
    for (int i = 0; i < r; i++)
        for (int c = 0; c < XK_NR; c++) tot[i][c] = 0;
    for (int64_t w0 = 0; w0 < W; w0 += XK_NEON_BLOCK) {
        int64_t w1 = W - w0 < XK_NEON_BLOCK ? W : w0 + XK_NEON_BLOCK;
        uint16x8_t acc[XK_MR][XK_NR / 2];
        for (int i = 0; i < r; i++)
            for (int c = 0; c < XK_NR / 2; c++) acc[i][c] = vdupq_n_u16(0);
        for (int64_t w = w0; w < w1; w++) {
            XK_PF_STEP(pf);
            const uint64_t *pw = P + w * XK_NR;
            uint64x2_t p[XK_NR / 2];
            for (int c = 0; c < XK_NR / 2; c++) p[c] = vld1q_u64(pw + 2 * c);
            for (int i = 0; i < r; i++) {
                uint64x2_t a = vdupq_n_u64(A[i * lda + w]);
                for (int c = 0; c < XK_NR / 2; c++)
                    acc[i][c] = vpadalq_u8(acc[i][c],
                                           vcntq_u8(vreinterpretq_u8_u64(veorq_u64(a, p[c]))));
            }
        }
        for (int i = 0; i < r; i++)
            for (int c = 0; c < XK_NR / 2; c++) {
                uint64x2_t s = vpaddlq_u32(vpaddlq_u16(acc[i][c]));
                tot[i][2 * c] += vgetq_lane_u64(s, 0);
                tot[i][2 * c + 1] += vgetq_lane_u64(s, 1);
            }
    }
    for (int i = 0; i < r; i++)
        for (int64_t c = 0; c < ncols && c < XK_NR; c++)
            C[i * ldc + c] = (int32_t)(n - 2 * (int64_t)tot[i][c])
                             + (corr ? corr[i * XK_NR + c] : 0);
}

#else

XK_INLINE void micro(const int r, const uint64_t *A, int64_t lda, const uint64_t *P,
                     int64_t W, int64_t n, int32_t *C, int64_t ldc, int64_t ncols,
                     const int32_t *corr, xk_prefetch *pf)
{
    int64_t acc[XK_MR][XK_NR];
    for (int i = 0; i < r; i++)
        for (int c = 0; c < XK_NR; c++) acc[i][c] = 0;
    for (int64_t w = 0; w < W; w++) {
        XK_PF_STEP(pf);
        const uint64_t *pw = P + w * XK_NR;
        for (int i = 0; i < r; i++) {
            uint64_t a = A[i * lda + w];
            for (int c = 0; c < XK_NR; c++) acc[i][c] += __builtin_popcountll(a ^ pw[c]);
        }
    }
    for (int i = 0; i < r; i++)
        for (int64_t c = 0; c < ncols && c < XK_NR; c++)
            C[i * ldc + c] = (int32_t)(n - 2 * acc[i][c]) + (corr ? corr[i * XK_NR + c] : 0);
}

#endif

#if !defined(XK_PATH_AVX2)
/* rows x (one panel): full MR-row tiles, then one remainder tile. corr, if not
 * NULL, holds rows x NR int32 (rows NR apart) added to the results. */
static void tile(const uint64_t *A, int64_t lda, int64_t rows, const uint64_t *P, int64_t W,
                 int64_t n, int32_t *C, int64_t ldc, int64_t ncols, const int32_t *corr,
                 xk_prefetch *pf)
{
    int64_t i = 0;
    for (; i + XK_MR <= rows; i += XK_MR)
        micro(XK_MR, A + i * lda, lda, P, W, n, C + i * ldc, ldc, ncols,
              corr ? corr + i * XK_NR : NULL, pf);
    switch (rows - i) {
#define XK_REM(R) case R: if (R < XK_MR) micro(R < XK_MR ? R : 1, A + i * lda, lda, P, W, n, \
                                                 C + i * ldc, ldc, ncols,                   \
                                                 corr ? corr + i * XK_NR : NULL, pf); break;
    XK_REM(1) XK_REM(2) XK_REM(3) XK_REM(4) XK_REM(5) XK_REM(6) XK_REM(7)
#undef XK_REM
    default: break;
    }
}
#endif

/* ------------------------------------------------------------------------ */
/* AVX2 products: lookup tables of A's nibbles against byte-interleaved      */
/* panels of 32 columns                                                      */
/* ------------------------------------------------------------------------ */

#if defined(XK_PATH_AVX2)
/*
 * For a byte a of a row of A and the same byte b_c of 32 columns,
 * popcount(a ^ b_c) = T_lo[lo(b_c)] + T_hi[hi(b_c)], where T_lo[x] =
 * popcount(lo(a) ^ x) and T_hi[x] = popcount(hi(a) ^ x) are 16-entry tables that
 * depend on a only. A panel vector holds byte q of 32 columns, so two VPSHUFB (one
 * per nibble, the tables as the shuffled operand) and two byte additions count
 * 256 bit products: 4 vector operations per 256 bits and row, plus 3 per panel
 * vector to split its nibbles, shared by the XK_PR rows of a tile (about 4.5 in
 * all, against 6.5 for Harley-Seal and 8 for Mula's lookup on word panels).
 * Tables: 32 bytes per byte of A (T_lo, T_hi), built once per row and used by
 * every panel.
 */
#define XK_TAB_BYTES(W) ((W) * 8 * 32)      /* table bytes per row of W words */
/* Byte counts gain at most 8 per byte of the rows and are widened into 16-bit
 * totals every 31 bytes; 16-bit totals into int32 every 264 such blocks. */
#define XK_TAB_CHUNK (31 * 264)

/* Tables of rows x W words of A (row stride lda) into T (rows x XK_TAB_BYTES(W)). */
static void build_tables(const uint64_t *A, int64_t lda, int rows, int64_t W, uint8_t *T)
{
    const __m256i lut = XK_LUT, x = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                     12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
                                                     8, 9, 10, 11, 12, 13, 14, 15);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    int64_t nb = 8 * W;
    for (int r = 0; r < rows; r++) {
        const uint8_t *a = (const uint8_t *)(A + r * lda);
        uint8_t *t = T + r * XK_TAB_BYTES(W);
        for (int64_t q0 = 0; q0 < nb; q0 += 16) {
            __m128i v;
            if (nb - q0 >= 16) {
                v = _mm_loadu_si128((const __m128i *)(a + q0));
            } else {                        /* the last word of an odd count */
                uint64_t last;
                __builtin_memcpy(&last, a + q0, 8);
                v = _mm_cvtsi64_si128((long long)last);
            }
            /* low nibbles in the low lane, high nibbles in the high lane */
            __m256i s = _mm256_setr_m128i(_mm_and_si128(v, m4),
                                          _mm_and_si128(_mm_srli_epi16(v, 4), m4));
            int nk = nb - q0 < 16 ? (int)(nb - q0) : 16;
            for (int k = 0; k < nk; k++) {
                __m256i nib = _mm256_shuffle_epi8(s, _mm256_set1_epi8((char)k));
                _mm256_storeu_si256((__m256i *)(t + (q0 + k) * 32),
                                    _mm256_shuffle_epi8(lut, _mm256_xor_si256(nib, x)));
            }
        }
    }
}

/* One byte step of tab_micro(): the tables t of r rows (tb bytes apart) against the
 * panel vector p (one byte of 32 columns), added into the byte counts acc (also the
 * loop of xk_ceiling). */
XK_INLINE void tab_step(const int r, const uint8_t *t, int64_t tb, const uint8_t *p,
                        __m256i acc[])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i b = _mm256_loadu_si256((const __m256i *)p);
    __m256i lo = _mm256_and_si256(b, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
    for (int i = 0; i < r; i++) {
        const uint8_t *ti = t + i * tb;
        __m256i tl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ti));
        __m256i th = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ti + 16)));
        acc[i] = _mm256_add_epi8(acc[i], _mm256_shuffle_epi8(tl, lo));
        acc[i] = _mm256_add_epi8(acc[i], _mm256_shuffle_epi8(th, hi));
    }
}

/* r rows (tables T) times one panel (nb bytes per column): C[i*ldc + c] = n -
 * 2 * count (+ corr[i*32 + c] if corr is not NULL), c < ncols. */
XK_INLINE void tab_micro(const int r, const uint8_t *T, int64_t nb, const uint8_t *P, int64_t n,
                         int32_t *C, int64_t ldc, int64_t ncols, const int32_t *corr)
{
    const __m256i zero = _mm256_setzero_si256();
    const int64_t tb = nb * 32;
    __m256i cnt[XK_PR][4];
    for (int i = 0; i < r; i++)
        for (int k = 0; k < 4; k++) cnt[i][k] = zero;
    for (int64_t c0 = 0; c0 < nb; c0 += XK_TAB_CHUNK) {
        int64_t c1 = nb - c0 < XK_TAB_CHUNK ? nb : c0 + XK_TAB_CHUNK;
        __m256i t16[XK_PR][2];
        for (int i = 0; i < r; i++) t16[i][0] = t16[i][1] = zero;
        for (int64_t q0 = c0; q0 < c1; q0 += 31) {
            int64_t q1 = c1 - q0 < 31 ? c1 : q0 + 31;
            __m256i acc[XK_PR];
            for (int i = 0; i < r; i++) acc[i] = zero;
            for (int64_t q = q0; q < q1; q++) tab_step(r, T + q * 32, tb, P + q * 32, acc);
            /* 16-bit totals: [0] holds columns 0-7 and 16-23, [1] 8-15 and 24-31 */
            for (int i = 0; i < r; i++) {
                t16[i][0] = _mm256_add_epi16(t16[i][0], _mm256_unpacklo_epi8(acc[i], zero));
                t16[i][1] = _mm256_add_epi16(t16[i][1], _mm256_unpackhi_epi8(acc[i], zero));
            }
        }
        for (int i = 0; i < r; i++) {   /* int32 totals of columns 8k .. 8k+7 */
            cnt[i][0] = _mm256_add_epi32(
                cnt[i][0], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(t16[i][0])));
            cnt[i][1] = _mm256_add_epi32(
                cnt[i][1], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(t16[i][1])));
            cnt[i][2] = _mm256_add_epi32(
                cnt[i][2], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(t16[i][0], 1)));
            cnt[i][3] = _mm256_add_epi32(
                cnt[i][3], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(t16[i][1], 1)));
        }
    }
    const __m256i vn = _mm256_set1_epi32((int)n);
    for (int i = 0; i < r; i++) {
        int32_t *ci = C + i * ldc;
        for (int k = 0; k < 4; k++) {
            __m256i v = _mm256_sub_epi32(vn, _mm256_add_epi32(cnt[i][k], cnt[i][k]));
            if (corr)
                v = _mm256_add_epi32(
                    v, _mm256_loadu_si256((const __m256i *)(corr + i * XK_NR + 8 * k)));
            int64_t left = ncols - 8 * k;
            if (left >= 8) {
                _mm256_storeu_si256((__m256i *)(ci + 8 * k), v);
            } else if (left > 0) {
                int32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, v);
                for (int64_t j = 0; j < left; j++) ci[8 * k + j] = tmp[j];
            }
        }
    }
}

static void tab_tile(int r, const uint8_t *T, int64_t nb, const uint8_t *P, int64_t n, int32_t *C,
                     int64_t ldc, int64_t ncols, const int32_t *corr)
{
    switch (r) {
#define XK_TAB(R) case R: if (R <= XK_PR) tab_micro(R <= XK_PR ? R : 1, T, nb, P, n, C, ldc, \
                                                 ncols, corr); break;
    XK_TAB(1) XK_TAB(2) XK_TAB(3) XK_TAB(4) XK_TAB(5) XK_TAB(6) XK_TAB(7) XK_TAB(8)
#undef XK_TAB
    default: break;
    }
}
#define XK_TAB_SCRATCH(W) ((size_t)XK_PR * XK_TAB_BYTES((W) > 0 ? (W) : 1))
#else
#define XK_TAB_SCRATCH(W) ((size_t)0)
#endif

/* ------------------------------------------------------------------------ */
/* Products: blocks of rows times ranges of panels, shared out over threads  */
/* ------------------------------------------------------------------------ */

/* Output columns per block: whole 64-byte lines of int32 results, so that two
 * threads never write the same cache line, and one packed word of the next
 * layer's input per row (see xk_xnor_dense). */
#define XK_CB 64
/* Up to this many rows, products prefetch the weights' panels (range_product). */
#ifndef XK_STREAM_ROWS
#define XK_STREAM_ROWS 8
#endif

#if !defined(XK_PATH_AVX2)
/* Rows per task: A block of about 64 KiB, but enough tasks to share out. */
static int64_t choose_mc(int64_t M, int64_t ncb, int64_t W, int nt)
{
    int64_t mc = (65536 / 8) / (W > 0 ? W : 1);
    if (mc < XK_MR) mc = XK_MR;
    mc = (mc / XK_MR) * XK_MR;
    if (mc > M) mc = M;
    while (mc > XK_MR && ((M + mc - 1) / mc) * ncb < 8 * (int64_t)nt)
        mc = ((mc / 2 + XK_MR - 1) / XK_MR) * XK_MR;
    return mc > 0 ? mc : 1;
}
#endif

/* Tasks of a product of M rows and N columns: blocks of *mc rows times ranges of
 * *cbr column blocks of XK_CB. The word paths take column blocks one at a time; the
 * AVX2 path builds a tile's tables once per task, so its tasks are XK_PR rows times
 * as wide a range as still leaves enough tasks to share out. */
static void choose_tasks(int64_t M, int64_t N, int64_t W, int nt, int64_t *mc, int64_t *cbr)
{
    int64_t ncb = (N + XK_CB - 1) / XK_CB;
#if defined(XK_PATH_AVX2)
    (void)W;
    *mc = M < XK_PR ? (M > 0 ? M : 1) : XK_PR;
    int64_t nmb = (M + *mc - 1) / *mc, want = nt > 1 ? 8 * (int64_t)nt : 1;
    int64_t ncr = nmb >= want ? 1 : (want + nmb - 1) / nmb;
    if (ncr > ncb) ncr = ncb;
    *cbr = (ncb + ncr - 1) / ncr;
#else
    *mc = choose_mc(M, ncb, W, nt);
    *cbr = 1;
#endif
}

#if !defined(XK_PATH_AVX2)
/* Word-loop iterations of tile() for rows x W (for spreading prefetches). */
static int64_t tile_steps(int64_t rows, int64_t W)
{
    return (rows + XK_MR - 1) / XK_MR * W;
}
#endif

/* Tasks handed to a thread at a time: about 64 chunks per thread. One at a time, the
 * shared counter's cache line moved between the cores at every task, which cost 10%
 * of 16384x576x128 on two threads (2,731 tasks of 1.4 us; 2-core Xeon, 2026-12-03). */
static int64_t task_chunk(int64_t ntask, int nt)
{
    int64_t chunk = ntask / (64 * (int64_t)(nt > 0 ? nt : 1));
    return chunk > 1 ? chunk : 1;
}

/* rows x columns [j0, j1) of the product (j0 a multiple of XK_NR, j1 <= N), into C
 * (the result of column j0 at C). tab: XK_TAB_SCRATCH(W) bytes of scratch.
 * Word paths, panel by panel: with few rows each panel is used briefly and the
 * product streams the weights from memory; then the panel two ahead is prefetched
 * meanwhile, a few lines per word step (the hardware prefetcher stops at each 4 KiB
 * page, often one panel). AVX2: tables of XK_PR rows at a time, then every panel. */
static void range_product(const uint64_t *A, int64_t lda, int64_t rows, const uint64_t *P,
                          int64_t W, int64_t N, int64_t n, int64_t j0, int64_t j1, int32_t *C,
                          int64_t ldc, uint8_t *tab)
{
    int64_t np = (N + XK_NR - 1) / XK_NR, pbytes = W * XK_NR * 8;
#if defined(XK_PATH_AVX2)
    (void)np;
    for (int64_t i = 0; i < rows; i += XK_PR) {
        int r = rows - i < XK_PR ? (int)(rows - i) : XK_PR;
        build_tables(A + i * lda, lda, r, W, tab);
        for (int64_t jp = j0; jp < j1; jp += XK_NR)
            tab_tile(r, tab, 8 * W, (const uint8_t *)P + jp / XK_NR * pbytes, n,
                     C + i * ldc + (jp - j0), ldc, j1 - jp < XK_NR ? j1 - jp : XK_NR, NULL);
    }
#else
    (void)tab;
    for (int64_t p = j0 / XK_NR; p < np && p * XK_NR < j1; p++) {
        int64_t jp = p * XK_NR, ncols = j1 - jp < XK_NR ? j1 - jp : XK_NR;
        xk_prefetch pf = {NULL, NULL, 0, 0};
        if (rows <= XK_STREAM_ROWS && p + 2 < np) {
            int64_t steps = tile_steps(rows, W), lines = (pbytes + 63) / 64;
            pf.p = (const char *)(P + (p + 2) * W * XK_NR);
            pf.end = pf.p + pbytes;
            pf.per_step = steps > 0 ? (lines + steps - 1) / steps : lines;
            /* Panels of up to 8 KiB go straight into L1, two panels ahead: at a batch
             * of one image (MNIST 3 x 4096, weights in L3 or in memory) that was as
             * fast or up to 10% faster than into L2 in interleaved runs on a busy
             * machine. */
            pf.l1 = pbytes <= 8192;
        }
        tile(A, lda, rows, P + p * W * XK_NR, W, n, C + (jp - j0), ldc, ncols, NULL,
             pf.p ? &pf : NULL);
    }
#endif
}

/*
 * C (M x N int32, row stride ldc) = n - 2 * popcount(A[i] ^ B[j]) with A row-major
 * (M x W words, row stride lda) and B given as panels (xk_pack_panels).
 * Tasks are blocks of rows times ranges of columns (choose_tasks), so both M and N
 * are split over the threads (a batch of a few rows is split by columns).
 * Returns 0, or -1 when out of memory.
 */
XK_EXPORT int xk_gemm(const uint64_t *A, int64_t M, int64_t W, int64_t lda, const uint64_t *P,
                      int64_t N, int64_t n, int32_t *C, int64_t ldc, int nthreads)
{
    if (M <= 0 || N <= 0) return 0;
    int64_t ncb = (N + XK_CB - 1) / XK_CB, mc, cbr;
    int nt = resolve_threads(nthreads);
    choose_tasks(M, N, W, nt, &mc, &cbr);
    int64_t nmb = (M + mc - 1) / mc, ncr = (ncb + cbr - 1) / cbr;
    int64_t ntask = nmb * ncr;
    int big = (double)M * (double)N * (double)(W + 1) > 1e5 && ntask > 1;
    int64_t chunk = task_chunk(ntask, nt);
    int failed = 0;
    (void)big; (void)chunk;
    _Pragma("omp parallel num_threads(nt) if(big)")
    {
        size_t scratch = XK_TAB_SCRATCH(W);
        uint8_t *tab = scratch ? (uint8_t *)xk_alloc(scratch) : NULL;
        if (scratch && !tab) {
            _Pragma("omp atomic write")
            failed = 1;
        }
        _Pragma("omp for schedule(dynamic, chunk)")
        for (int64_t t = 0; t < ntask; t++) {
            if (scratch && !tab) continue;
            int64_t i0 = (t / ncr) * mc, j0 = (t % ncr) * cbr * XK_CB;
            int64_t rows = M - i0 < mc ? M - i0 : mc;
            int64_t j1 = j0 + cbr * XK_CB < N ? j0 + cbr * XK_CB : N;
            range_product(A + i0 * lda, lda, rows, P, W, N, n, j0, j1, C + i0 * ldc + j0, ldc,
                          tab);
        }
        free(tab);
    }
    return failed ? -1 : 0;
}

/*
 * Reference product, kept beside the fast one (as Larq Compute Engine keeps
 * its reference kernels): the definition, one popcount per pair of words,
 * on plain row-major B (N rows of W words). The tests hold xk_gemm to it.
 */
XK_EXPORT void xk_gemm_ref(const uint64_t *A, int64_t M, int64_t W, const uint64_t *B, int64_t N,
                           int64_t n, int32_t *C)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t count = 0;
            for (int64_t w = 0; w < W; w++) count += __builtin_popcountll(A[i * W + w] ^ B[j * W + w]);
            C[i * N + j] = (int32_t)(n - 2 * count);
        }
}

#endif /* BINARY_NET_XNOR_KERNELS_H */
