/*
 * The two gradients of a convolution with a +-1 operand, on Intel AMX (BF16 tiles).
 *
 * Compiled into the kernel library of binary_net.kernels beside xnor_kernels.c (see
 * binary_net/kernels/build.py). In training, a binary convolution's forward product
 * is CorrMM(sign(x), flip(sign(W))); its gradients are
 *     gradWeights: gW[f,c,i,j] = sum_{n,oh,ow} xs[n,c,oh+i-ph,ow+j-pw] * gz[n,f,oh,ow]
 *     gradInputs:  gx[n,c,h,w] = sum_{f,i,j}   ws[f,c,i,j] * gz[n,f,h+ph-i,w+pw-j]
 * (stride 1, zero padding ph, pw), where xs and ws hold only +1, -1 (or 0), which
 * BF16 represents exactly. The float gradient gz is split into three BF16 numbers,
 *     gz = hi + mid + lo     (hi = gz with its low 16 bits cleared, mid likewise for
 *                             gz - hi, lo = gz - hi - mid, which fits in BF16),
 * exactly for every finite gz of magnitude above about 2^-110 (a smaller one loses
 * bits to BF16's denormals, which AMX flushes). Every product of a +-1 with a part is
 * exact, so the result is the float32 sum of the exact terms, only in another order
 * than a float32 GEMM's: TDPBF16PS accumulates in float32 (round to nearest even).
 *
 * Layouts: every image plane is taken as a flat array with the padded row length
 * Wp = W + 2*pw, so that output position q = oh*Wp + ow and tap (i, j) reads input
 * position q + i*Wp + j of the padded plane: each tap is one shifted, strided tile
 * load, with no im2col. The ow >= OW columns of that flat output are zeros in the
 * converted gradient and are dropped from gx.
 *
 *   gradWeights: C[c, f] (per tap) += A[c, q] * B[q, f], summed in acc[group][tap]
 *       (4 KiB each: the 2x2 tiles of a block of 32 channels and 32 filters);
 *       A: the +-1 input, xb[n][Cp][Lx], a row per channel, shifted by the tap;
 *       B: gz in the VNNI layout of pairs of positions, zv[part][n][Qr/2][Fp][2].
 *   gradInputs: C[c, p] += A[c, f] * B[f, p - s_tap]   over taps and f
 *       A: the +-1 weights, wt[tap][Cp][Fp];
 *       B: gz in the VNNI layout of pairs of filters, zv[part][n][Fp/2][Le][2],
 *          position q stored at q + M0 (M0 = the largest tap shift), so that the
 *          shift by a tap is a shift of the tile's start.
 *
 * Each output block is 2x2 tiles of 16x16 float32 (tiles 0-3), with two A tiles
 * (4, 5) and two B tiles (6, 7): per step of 32 along the sum, 2 A loads, 6 B loads
 * (three parts) and 12 TDPBF16PS. gradWeights splits the output blocks over the
 * threads, gradInputs the images; every output element is summed by one thread in
 * a fixed order, so the result does not depend on the thread count.
 *
 * Without AMX at compile time (another CPU, BINARY_NET_ISA=avx2 or portable), or
 * where the kernel does not grant the tile state, xk_amx_available() is 0 and the
 * products return -2.
 */
#include <stdint.h>
#include <string.h>

#include "xk_threads.h"

#define XK_AMX_EXPORT __attribute__((visibility("default")))

/* dims: N, C, H, W, F, kh, kw, ph, pw (stride 1). */
enum { D_N, D_C, D_H, D_W, D_F, D_KH, D_KW, D_PH, D_PW, D_COUNT };

typedef struct {
    int64_t N, C, H, W, F, kh, kw, ph, pw;
    int64_t Hp, Wp, OH, OW, Cp, Fp, taps, smax;
    int64_t Qr, Lx;     /* gradWeights: positions summed (x32), input row length */
    int64_t Pr, Le;     /* gradInputs: positions computed (x32), gradient row length */
} geometry;

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

static int make_geometry(const int64_t *d, geometry *g)
{
    for (int k = 0; k < D_COUNT; k++)
        if (d[k] < 0) return -1;
    g->N = d[D_N]; g->C = d[D_C]; g->H = d[D_H]; g->W = d[D_W]; g->F = d[D_F];
    g->kh = d[D_KH]; g->kw = d[D_KW]; g->ph = d[D_PH]; g->pw = d[D_PW];
    if (g->kh < 1 || g->kw < 1 || g->ph >= g->kh || g->pw >= g->kw) return -1;
    g->Hp = g->H + 2 * g->ph;
    g->Wp = g->W + 2 * g->pw;
    g->OH = g->Hp - g->kh + 1;
    g->OW = g->Wp - g->kw + 1;
    if (g->OH < 1 || g->OW < 1) return -1;
    g->Cp = round_up(g->C, 32);
    g->Fp = round_up(g->F, 32);
    g->taps = g->kh * g->kw;
    g->smax = (g->kh - 1) * g->Wp + g->kw - 1;
    g->Qr = round_up(g->OH * g->Wp, 32);
    g->Lx = round_up(g->Qr + g->smax, 32);
    g->Pr = round_up(g->H * g->Wp, 32);
    g->Le = round_up(g->ph * g->Wp + g->Pr + g->smax, 16);
    return 0;
}

/* A float known to be BF16-exact (+-1, 0) as BF16: its upper half. */
static inline uint16_t to_bf16(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return (uint16_t)(u >> 16);
}

/* Workspace in bytes: which = 0 gradWeights, 1 gradInputs; -1 for bad dims. */
XK_AMX_EXPORT int64_t xk_amx_workspace(int which, const int64_t *dims, int nthreads)
{
    geometry g;
    if (make_geometry(dims, &g)) return -1;
    int64_t nt = resolve_threads(nthreads);
    if (which == 0)
        return 2 * (g.N * g.Cp * g.Lx + 3 * g.N * g.Qr * g.Fp)
               + 4 * g.taps * g.Cp * g.Fp + 64;
    return 2 * (g.taps * g.Cp * g.Fp + 3 * g.N * g.Fp * g.Le)
           + 4 * nt * g.Cp * g.Pr + 64;
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512F__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_state = -1;      /* -1 unknown, 0 refused, 1 granted */

XK_AMX_EXPORT int xk_amx_available(void)
{
    if (amx_state < 0)
        amx_state = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    return amx_state;
}

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Eight tiles of 16 rows x 64 bytes (this thread's tile state). */
static void configure_tiles(void)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

static char *align64(void *p) { return (char *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* One step of 32 along the sum into the 2x2 block of tiles 0-3: the A rows a (32
 * rows of 32 BF16, row length lda elements) times the three parts of B (16 rows of
 * 32 pairs each, row length ldb pairs, the parts `part` elements apart). */
static inline void step_2x2(const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb,
                            int64_t part)
{
    _tile_loadd(4, a, 2 * lda);
    _tile_loadd(5, a + 16 * lda, 2 * lda);
    for (int p = 0; p < 3; p++, b += part) {
        _tile_loadd(6, b, 4 * ldb);
        _tile_loadd(7, b + 32, 4 * ldb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* x (N, C, H, W) -> xb[n][Cp][Lx]: the zero-padded planes, flat with row length Wp. */
static void convert_input(const float *x, const geometry *g, uint16_t *xb, int nt)
{
    #pragma omp parallel for num_threads(nt) schedule(static) collapse(2)
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t c = 0; c < g->Cp; c++) {
            uint16_t *row = xb + (n * g->Cp + c) * g->Lx;
            memset(row, 0, 2 * g->Lx);
            if (c >= g->C) continue;
            const float *plane = x + (n * g->C + c) * g->H * g->W;
            for (int64_t h = 0; h < g->H; h++) {
                uint16_t *dst = row + (h + g->ph) * g->Wp + g->pw;
                const float *src = plane + h * g->W;
                for (int64_t w = 0; w < g->W; w++) dst[w] = to_bf16(src[w]);
            }
        }
}

/* The three BF16 parts of 16 floats, each in the upper half of a 32-bit lane (the
 * lower half zero); a NaN gives a quiet NaN and zeros, an infinity itself and zeros. */
static inline void split3_v(__m512 v, __m512i *hi, __m512i *mid, __m512i *lo)
{
    const __m512i upper = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i expo = _mm512_set1_epi32(0x7f800000);
    __m512i u = _mm512_castps_si512(v);
    __m512i h = _mm512_and_si512(u, upper);
    __m512 r1 = _mm512_sub_ps(v, _mm512_castsi512_ps(h));
    __m512i m = _mm512_and_si512(_mm512_castps_si512(r1), upper);
    __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(m));
    __mmask16 finite = _mm512_cmpneq_epi32_mask(_mm512_and_si512(u, expo), expo);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    *hi = _mm512_mask_mov_epi32(h, nan, _mm512_set1_epi32(0x7fc00000));
    *mid = _mm512_maskz_mov_epi32(finite, m);
    *lo = _mm512_maskz_mov_epi32(finite, _mm512_castps_si512(r2));
}

/* 16 lanes of BF16-in-the-upper-half values at positions q..q+15 -> 8 words, word k
 * holding positions 2k (lower half) and 2k+1 (upper half). */
static inline __m256i pair_positions(__m512i v)
{
    __m512i lo = _mm512_and_si512(_mm512_srli_epi64(v, 16), _mm512_set1_epi64(0xffff));
    __m512i hi = _mm512_and_si512(_mm512_srli_epi64(v, 32), _mm512_set1_epi64(0xffff0000));
    return _mm512_cvtepi64_epi32(_mm512_or_si512(lo, hi));
}

/* gz (N, F, OH, OW) -> zv[part][n][Qr/2][Fp][2] (pairs of positions). The planes of
 * 16 filters are first laid out flat with row length Wp in a buffer of the thread
 * (zeros in the dropped columns and past the last row); then each step of 32
 * positions writes 16 whole cache lines per part. */
static int convert_grad_positions(const float *gz, const geometry *g, uint16_t *zv, int nt)
{
    const int64_t part = g->N * g->Qr * g->Fp / 2;     /* in 32-bit words */
    const int64_t blocks = g->Fp / 16;
    uint32_t *words = (uint32_t *)zv;
    int failed = 0;
    __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                         11, 12, 13, 14, 15),
                                       _mm512_set1_epi32((int)g->Fp));
    #pragma omp parallel num_threads(nt)
    {
        float *rows = aligned_alloc(64, 4 * 16 * g->Qr);
        if (!rows) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static) collapse(2)
        for (int64_t n = 0; n < g->N; n++)
            for (int64_t fb = 0; fb < blocks; fb++) {
                if (!rows) continue;
                memset(rows, 0, 4 * 16 * g->Qr);
                for (int64_t k = 0; k < 16 && fb * 16 + k < g->F; k++) {
                    const float *plane = gz + (n * g->F + fb * 16 + k) * g->OH * g->OW;
                    for (int64_t oh = 0; oh < g->OH; oh++)
                        memcpy(rows + k * g->Qr + oh * g->Wp, plane + oh * g->OW, 4 * g->OW);
                }
                uint32_t *d = words + n * g->Qr / 2 * g->Fp + fb * 16;
                for (int64_t q0 = 0; q0 < g->Qr; q0 += 32, d += 16 * g->Fp)
                    for (int64_t k = 0; k < 16; k++) {
                        const float *row = rows + k * g->Qr + q0;
                        __m512i h0, m0, l0, h1, m1, l1;
                        split3_v(_mm512_load_ps(row), &h0, &m0, &l0);
                        split3_v(_mm512_load_ps(row + 16), &h1, &m1, &l1);
                        __m512i ph = _mm512_inserti64x4(
                            _mm512_castsi256_si512(pair_positions(h0)), pair_positions(h1), 1);
                        __m512i pm = _mm512_inserti64x4(
                            _mm512_castsi256_si512(pair_positions(m0)), pair_positions(m1), 1);
                        __m512i pl = _mm512_inserti64x4(
                            _mm512_castsi256_si512(pair_positions(l0)), pair_positions(l1), 1);
                        _mm512_i32scatter_epi32(d + k, index, ph, 4);
                        _mm512_i32scatter_epi32(d + k + part, index, pm, 4);
                        _mm512_i32scatter_epi32(d + k + 2 * part, index, pl, 4);
                    }
            }
        free(rows);
    }
    return failed ? -1 : 0;
}

/* gz (N, F, OH, OW) -> zv[part][n][Fp/2][Le][2] (pairs of filters), position q at
 * e = q + smax, zero outside the output. */
static void convert_grad_filters(const float *gz, const geometry *g, uint16_t *zv, int nt)
{
    const int64_t part = g->N * g->Fp * g->Le / 2;     /* in 32-bit words */
    const int64_t body = g->OH * g->Wp;
    uint32_t *words = (uint32_t *)zv;
    #pragma omp parallel for num_threads(nt) schedule(static) collapse(2)
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t fp = 0; fp < g->Fp / 2; fp++) {
            uint32_t *d = words + (n * g->Fp / 2 + fp) * g->Le;
            for (int k = 0; k < 3; k++) {
                memset(d + k * part, 0, 4 * g->smax);
                memset(d + k * part + g->smax + body, 0, 4 * (g->Le - g->smax - body));
            }
            int64_t f0 = 2 * fp, f1 = 2 * fp + 1;
            const float *p0 = gz + (n * g->F + f0) * g->OH * g->OW;
            const float *p1 = gz + (n * g->F + f1) * g->OH * g->OW;
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->Wp; ow += 16) {
                    int64_t nl = g->OW - ow, ns = g->Wp - ow;
                    __mmask16 ml = nl >= 16 ? 0xffff : nl > 0 ? (__mmask16)((1u << nl) - 1) : 0;
                    __mmask16 ms = ns >= 16 ? 0xffff : (__mmask16)((1u << ns) - 1);
                    __m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
                    if (f0 < g->F) v0 = _mm512_maskz_loadu_ps(ml, p0 + oh * g->OW + ow);
                    if (f1 < g->F) v1 = _mm512_maskz_loadu_ps(ml, p1 + oh * g->OW + ow);
                    __m512i h0, m0, l0, h1, m1, l1;
                    split3_v(v0, &h0, &m0, &l0);
                    split3_v(v1, &h1, &m1, &l1);
                    uint32_t *o = d + g->smax + oh * g->Wp + ow;
                    _mm512_mask_storeu_epi32(o, ms, _mm512_or_si512(h1, _mm512_srli_epi32(h0, 16)));
                    _mm512_mask_storeu_epi32(o + part, ms,
                                             _mm512_or_si512(m1, _mm512_srli_epi32(m0, 16)));
                    _mm512_mask_storeu_epi32(o + 2 * part, ms,
                                             _mm512_or_si512(l1, _mm512_srli_epi32(l0, 16)));
                }
        }
}

/* Images per chunk of the gradWeights sum: what the per-image operands of about
 * 2.5 MiB of L2 hold (at least one). */
static int64_t images_per_chunk(const geometry *g)
{
    int64_t per_image = 2 * (g->Cp * g->Lx + 3 * g->Qr * g->Fp);
    int64_t nb = (int64_t)(5 << 19) / (per_image > 0 ? per_image : 1);
    return nb < 1 ? 1 : nb;
}

XK_AMX_EXPORT int xk_amx_grad_weights(const float *x, const float *gz, float *gw,
                                      const int64_t *dims, void *workspace, int nthreads)
{
    geometry g;
    if (make_geometry(dims, &g)) return -1;
    if (!xk_amx_available()) return -2;
    int nt = resolve_threads(nthreads);
    char *ws = align64(workspace);
    uint16_t *xb = (uint16_t *)ws;
    uint16_t *zv = xb + g.N * g.Cp * g.Lx;
    float *acc = (float *)(zv + 3 * g.N * g.Qr * g.Fp);
    const int64_t part = g.N * g.Qr * g.Fp;
    const int64_t nc2 = g.Cp / 32, nf2 = g.Fp / 32, groups = nc2 * nf2;
    const int64_t chunk = images_per_chunk(&g);
    convert_input(x, &g, xb, nt);
    if (convert_grad_positions(gz, &g, zv, nt)) return -3;
    memset(acc, 0, 4 * g.taps * g.Cp * g.Fp);
    #pragma omp parallel num_threads(nt)
    {
        configure_tiles();
#ifdef _OPENMP
        int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        int64_t tid = 0, nth = 1;
#endif
        int64_t g0 = groups * tid / nth, g1 = groups * (tid + 1) / nth;
        for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
            int64_t n1 = n0 + chunk < g.N ? n0 + chunk : g.N;
            for (int64_t grp = g0; grp < g1; grp++) {
                int64_t c0 = grp / nf2 * 32, f0 = grp % nf2 * 32;
                for (int64_t t = 0; t < g.taps; t++) {
                    int64_t s = t / g.kw * g.Wp + t % g.kw;
                    float *cb = acc + (grp * g.taps + t) * 1024;
                    /* the next block of accumulators, 4 KiB, while this one runs */
                    for (int k = 0; k < 64; k++) _mm_prefetch((const char *)(cb + 1024) + 64 * k,
                                                              _MM_HINT_T0);
                    _tile_loadd(0, cb, 64);
                    _tile_loadd(1, cb + 256, 64);
                    _tile_loadd(2, cb + 512, 64);
                    _tile_loadd(3, cb + 768, 64);
                    for (int64_t n = n0; n < n1; n++) {
                        const uint16_t *ab = xb + (n * g.Cp + c0) * g.Lx + s;
                        const uint16_t *bb = zv + n * g.Qr * g.Fp + 2 * f0;
                        for (int64_t q0 = 0; q0 < g.Qr; q0 += 32)
                            step_2x2(ab + q0, g.Lx, bb + q0 * g.Fp, g.Fp, part);
                    }
                    _tile_stored(0, cb, 64);
                    _tile_stored(1, cb + 256, 64);
                    _tile_stored(2, cb + 512, 64);
                    _tile_stored(3, cb + 768, 64);
                }
            }
        }
        _tile_release();
    }
    /* acc[group][tap][tile][16][16] -> gw[f][c][i][j] */
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t f = 0; f < g.F; f++)
        for (int64_t c = 0; c < g.C; c++) {
            int64_t grp = c / 32 * nf2 + f / 32;
            int64_t tile = (c % 32) / 16 * 2 + (f % 32) / 16;
            const float *a = acc + grp * g.taps * 1024 + tile * 256 + (c % 16) * 16 + f % 16;
            for (int64_t t = 0; t < g.taps; t++)
                gw[(f * g.C + c) * g.taps + t] = a[t * 1024];
        }
    return 0;
}

XK_AMX_EXPORT int xk_amx_grad_inputs(const float *w, const float *gz, float *gx,
                                     const int64_t *dims, void *workspace, int nthreads)
{
    geometry g;
    if (make_geometry(dims, &g)) return -1;
    if (!xk_amx_available()) return -2;
    int nt = resolve_threads(nthreads);
    char *ws = align64(workspace);
    uint16_t *wt = (uint16_t *)ws;
    uint16_t *zv = wt + g.taps * g.Cp * g.Fp;
    float *tmp_all = (float *)(zv + 3 * g.N * g.Fp * g.Le);
    const int64_t part = g.N * g.Fp * g.Le;
    /* w (F, C, kh, kw) -> wt[tap][Cp][Fp] */
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < g.taps; t++)
        for (int64_t c = 0; c < g.Cp; c++)
            for (int64_t f = 0; f < g.Fp; f++)
                wt[(t * g.Cp + c) * g.Fp + f] =
                    c < g.C && f < g.F ? to_bf16(w[(f * g.C + c) * g.taps + t]) : 0;
    convert_grad_filters(gz, &g, zv, nt);
    const int64_t nc2 = g.Cp / 32, np2 = g.Pr / 32;
    const int64_t row0 = g.ph * g.Wp;    /* first computed position, padded coords */
    #pragma omp parallel num_threads(nt)
    {
        configure_tiles();
#ifdef _OPENMP
        int64_t tid = omp_get_thread_num();
#else
        int64_t tid = 0;
#endif
        float *tmp = tmp_all + tid * g.Cp * g.Pr;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; n++) {
            const uint16_t *zn = zv + n * g.Fp * g.Le;
            for (int64_t c2 = 0; c2 < nc2; c2++)
                for (int64_t p2 = 0; p2 < np2; p2++) {
                    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                    int64_t p0 = row0 + p2 * 32;
                    for (int64_t t = 0; t < g.taps; t++) {
                        int64_t s = t / g.kw * g.Wp + t % g.kw;
                        const uint16_t *ab = wt + (t * g.Cp + c2 * 32) * g.Fp;
                        const uint16_t *bb = zn + 2 * (p0 - s + g.smax);
                        for (int64_t f0 = 0; f0 < g.Fp; f0 += 32)
                            step_2x2(ab + f0, g.Fp, bb + f0 * g.Le, g.Le, part);
                    }
                    float *cb = tmp + c2 * 32 * g.Pr + p2 * 32;
                    const int64_t ldc = 4 * g.Pr;
                    _tile_stored(0, cb, ldc);
                    _tile_stored(1, cb + 16, ldc);
                    _tile_stored(2, cb + 16 * g.Pr, ldc);
                    _tile_stored(3, cb + 16 * g.Pr + 16, ldc);
                }
            for (int64_t c = 0; c < g.C; c++)
                for (int64_t h = 0; h < g.H; h++)
                    memcpy(gx + ((n * g.C + c) * g.H + h) * g.W,
                           tmp + c * g.Pr + h * g.Wp + g.pw, 4 * g.W);
        }
        _tile_release();
    }
    return 0;
}

#else   /* no AMX at compile time */

XK_AMX_EXPORT int xk_amx_available(void) { return 0; }

XK_AMX_EXPORT int xk_amx_grad_weights(const float *x, const float *gz, float *gw,
                                      const int64_t *dims, void *workspace, int nthreads)
{
    (void)x; (void)gz; (void)gw; (void)dims; (void)workspace; (void)nthreads;
    return -2;
}

XK_AMX_EXPORT int xk_amx_grad_inputs(const float *w, const float *gz, float *gx,
                                     const int64_t *dims, void *workspace, int nthreads)
{
    (void)w; (void)gz; (void)gx; (void)dims; (void)workspace; (void)nthreads;
    return -2;
}

#endif
