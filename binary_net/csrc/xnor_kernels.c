/*
 * Bit-packed XNOR-popcount kernels for binary_net.kernels.
 *
 * Compiled on the user's machine at first use (see binary_net/kernels/build.py) with
 * "-O3 -march=native -fopenmp -shared -fPIC" and loaded with ctypes.
 *
 * Bit layout (shared by every function here): a vector of n signs is stored in
 * ceil(n/64) uint64 words; element k lives in word k/64, bit k%64 (least
 * significant bit first); the bit is 1 where the value is >= 0 (so sign(0) = +1)
 * and 0 where it is < 0 or NaN. Unused trailing bits are 0.
 *
 * For two such vectors a, b of n valid bits,
 *     sum_k sign(a_k) * sign(b_k) = n - 2 * popcount(a XOR b),
 * because zero trailing bits XOR to zero. Everything below computes that.
 *
 * Matrix product ("gemm"): C[i, j] = n - 2 * popcount(A[i, :] ^ B[j, :]).
 * A is row-major (M rows of W words, row stride lda). B is pre-arranged in
 * "panels" of XK_NR columns (xk_pack_panels): panel p holds words [w][c] =
 * B[p*NR + c, w] at P + (p*W + w)*NR + c, zero for columns past N. The
 * micro-kernel broadcasts one word of each of XK_MR rows of A and XORs it with the
 * NR words of one panel row, so every lane of a vector belongs to one output element
 * and no horizontal reduction is ever needed; each loaded word is reused MR or NR
 * times. The AVX2 path's products arrange their panels by bytes instead (byte q of
 * column c at byte q*32 + c) and count with lookup tables of A's nibbles.
 *
 * Code paths, chosen at compile time, give bit-identical results:
 *   - AVX-512 with VPOPCNTDQ: XOR, VPOPCNTQ, VPADDQ on 512-bit vectors, 4x32 tile
 *     (3 vector operations per 512 bits).
 *   - AVX2: for each byte of A two 16-entry tables, popcount(nibble ^ x),
 *     against the nibbles of one byte of 32 columns: two VPSHUFB and two byte
 *     additions per 256 bits and row, 6x32 tile (about 4.5 operations per 256 bits
 *     with the nibble split of the panel shared by the tile's rows).
 *   - aarch64 with NEON: EOR, CNT (vcntq_u8) and pairwise adds, 4x8 tile.
 *   - portable: __builtin_popcountll, 4x8 tile.
 *
 * Exported functions take nthreads (<= 0: OpenMP's default) and split their
 * work with OpenMP when built with -fopenmp.
 */
#include "xnor_kernels.h"
#include "xk_ceiling.h"

/* ------------------------------------------------------------------------ */
/* Dense layer: packing the activations overlapped with the product          */
/* ------------------------------------------------------------------------ */

/*
 * out (M x N int32, row stride ldc) = sign(x) @ sign(W), for float rows x
 * (M x K, contiguous) and weights given as panels of K-bit columns.
 *
 * Packing reads every float once and is bound by memory bandwidth; the product
 * is bound by the vector units. An input of up to XK_DENSE_PACK_FIRST bytes goes
 * in blocks of about XK_DENSE_BLOCK bytes: a block is packed into a small
 * per-thread buffer and multiplied with every panel, and meanwhile the
 * micro-kernels prefetch the next block's floats into L2, a few lines per word
 * step, so that its packing then reads from cache (one parallel region for a
 * small batch). A larger one is packed whole, then multiplied. Returns 0, or -1
 * when out of memory.
 */
#ifndef XK_DENSE_BLOCK
#define XK_DENSE_BLOCK (128 * 1024)
#endif
/* Inputs of more bytes than this (beyond a core's L2) are packed whole first, then
 * multiplied by xk_gemm: packing alone streams at memory speed, and in the block by
 * block overlap it ran slower, not hidden. Measured on Zen 4, one thread, median of
 * 25 (ms, overlapped -> packed first): AVX2 16384x576x128 11.3 -> 7.9, 4096x2304x256
 * 13.7 -> 11.2, 256x4096x4096 15.0 -> 12.2; AVX-512 5.7 -> 5.5, 5.7 -> 5.1, 4.9 -> 4.7.
 * The packed copy is 1/32 of the floats' size. */
#ifndef XK_DENSE_PACK_FIRST
#define XK_DENSE_PACK_FIRST (1 << 20)
#endif

/* One block of xk_dense: rows packed rows (buf) times every panel into out. The
 * word paths meanwhile prefetch the next block's floats (next, nbytes; next NULL:
 * none) a few lines per word step; tab: XK_TAB_SCRATCH(W) bytes for the AVX2 path. */
static void dense_block(const uint64_t *buf, int64_t rows, int64_t W, const uint64_t *P,
                        int64_t N, int64_t K, int32_t *out, int64_t ldc, const char *next,
                        int64_t nbytes, uint8_t *tab)
{
#if defined(XK_PATH_AVX2)
    (void)next;
    (void)nbytes;
    range_product(buf, W, rows, P, W, N, K, 0, N, out, ldc, tab);
#else
    (void)tab;
    int64_t np = (N + XK_NR - 1) / XK_NR;
    xk_prefetch pf = {NULL, NULL, 0, 0};
    if (next) {
        int64_t lines = (nbytes + 63) / 64, steps = 0;
        for (int64_t i = 0; i < rows; i += XK_MR)
            steps += tile_steps(rows - i < XK_MR ? rows - i : XK_MR, W);
        steps *= np;
        pf.p = next;
        pf.end = next + nbytes;
        pf.per_step = steps > 0 ? (lines + steps - 1) / steps : lines;
    }
    for (int64_t p = 0; p < np; p++) {
        int64_t j0 = p * XK_NR, ncols = N - j0 < XK_NR ? N - j0 : XK_NR;
        for (int64_t i = 0; i < rows; i += XK_MR)
            tile(buf + i * W, W, rows - i < XK_MR ? rows - i : XK_MR, P + p * W * XK_NR, W, K,
                 out + i * ldc + j0, ldc, ncols, NULL, pf.p ? &pf : NULL);
    }
#endif
}

#define DEFINE_DENSE(SUFFIX, T)                                                          \
XK_EXPORT int xk_dense_##SUFFIX(const T *x, int64_t M, int64_t K, const uint64_t *P,     \
                                int64_t N, int32_t *out, int64_t ldc, int nthreads)      \
{                                                                                        \
    if (M <= 0 || N <= 0) return 0;                                                      \
    int64_t W = (K + 63) >> 6, np = (N + XK_NR - 1) / XK_NR;                             \
    int64_t row_bytes = K * (int64_t)sizeof(T);                                          \
    if ((double)M * (double)row_bytes > XK_DENSE_PACK_FIRST) {                           \
        uint64_t *xp = (uint64_t *)malloc((size_t)(M * (W > 0 ? W : 1)) * 8);            \
        if (!xp) return -1;                                                              \
        xk_pack_##SUFFIX(x, M, K, 1, xp, nthreads);                                      \
        int status = xk_gemm(xp, M, W, W, P, N, K, out, ldc, nthreads);                  \
        free(xp);                                                                        \
        return status;                                                                   \
    }                                                                                    \
    int64_t rb = XK_DENSE_BLOCK / (row_bytes > 0 ? row_bytes : 1);                       \
    /* every block streams all panels once: with big weights, take more rows */          \
    if (rb < np * W * XK_NR / 8192) rb = np * W * XK_NR / 8192;                          \
    if (rb < 2 * XK_PR) rb = 2 * XK_PR;                                                  \
    rb = (rb / XK_PR) * XK_PR;                                                           \
    int nt = resolve_threads(nthreads);                                                  \
    if (rb * nt > M) rb = ((M + nt - 1) / nt + XK_PR - 1) / XK_PR * XK_PR;               \
    if (rb < 1) rb = 1;                                                                  \
    int64_t nblk = (M + rb - 1) / rb;                                                    \
    int64_t cb = nblk / (4 * (int64_t)nt);                                               \
    if (cb > 4) cb = 4;                                                                  \
    if (cb < 1) cb = 1;                                                                  \
    int64_t nchunk = (nblk + cb - 1) / cb;                                               \
    int big = (double)M * (double)N * (double)(W + 1) > 1e5 && nblk > 1;                 \
    int failed = 0;                                                                      \
    (void)nt; (void)big;                                                                 \
    _Pragma("omp parallel num_threads(nt) if(big)")                                      \
    {                                                                                    \
        uint64_t *buf = (uint64_t *)xk_alloc((size_t)(rb * (W > 0 ? W : 1)) * 8);        \
        size_t scratch = XK_TAB_SCRATCH(W);                                              \
        uint8_t *tab = scratch ? (uint8_t *)xk_alloc(scratch) : NULL;                    \
        if (scratch && !tab) {                                                           \
            free(buf);                                                                   \
            buf = NULL;                                                                  \
        }                                                                                \
        if (!buf) {                                                                      \
            _Pragma("omp atomic write")                                                  \
            failed = 1;                                                                  \
        }                                                                                \
        /* chunks of cb consecutive blocks, handed out dynamically (robust when a   */ \
        /* core is busy with something else); prefetching stays within a chunk      */ \
        _Pragma("omp for schedule(dynamic, 1)")                                          \
        for (int64_t ch = 0; ch < nchunk; ch++) {                                        \
          int64_t b1 = (ch + 1) * cb < nblk ? (ch + 1) * cb : nblk;                      \
          for (int64_t b = ch * cb; buf && b < b1; b++) {                                \
            int64_t i0 = b * rb, rows = M - i0 < rb ? M - i0 : rb;                       \
            for (int64_t i = 0; i < rows; i++)                                           \
                pack_row_##SUFFIX(x + (i0 + i) * K, K, buf + i * W);                     \
            const char *next = NULL;                                                     \
            int64_t nbytes = 0;                                                          \
            if (b + 1 < b1) {                                                            \
                next = (const char *)(x + (i0 + rb) * K);                                \
                nbytes = (M - (i0 + rb) < rb ? M - (i0 + rb) : rb) * row_bytes;          \
            }                                                                            \
            dense_block(buf, rows, W, P, N, K, out + i0 * ldc, ldc, next, nbytes, tab);  \
          }                                                                              \
        }                                                                                \
        free(buf);                                                                       \
        free(tab);                                                                       \
    }                                                                                    \
    return failed ? -1 : 0;                                                              \
}

DEFINE_DENSE(f32, float)
DEFINE_DENSE(f64, double)

/* ------------------------------------------------------------------------ */
/* Convolution                                                               */
/* ------------------------------------------------------------------------ */

#if !defined(XK_PATH_AVX2)
/* Gather panel (NR output pixels from q0 of one image) in the packed domain. */
static void gather_panel(const uint64_t *x_img, int64_t H, int64_t Wd, int64_t Wc, int64_t fh,
                         int64_t fw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OW,
                         int64_t OHW, int64_t q0, uint64_t *panel)
{
    int64_t K = fh * fw * Wc;
    for (int c = 0; c < XK_NR; c++) {
        int64_t q = q0 + c;
        if (q >= OHW) {
            for (int64_t k = 0; k < K; k++) panel[k * XK_NR + c] = 0;
            continue;
        }
        int64_t oh = q / OW, ow = q % OW, k = 0;
        for (int64_t i = 0; i < fh; i++) {
            int64_t ih = oh * sh - ph + i;
            for (int64_t j = 0; j < fw; j++, k += Wc) {
                int64_t iw = ow * sw - pw + j;
                if (ih >= 0 && ih < H && iw >= 0 && iw < Wd) {
                    const uint64_t *src = x_img + (ih * Wd + iw) * Wc;
                    for (int64_t g = 0; g < Wc; g++) panel[(k + g) * XK_NR + c] = src[g];
                } else {
                    for (int64_t g = 0; g < Wc; g++) panel[(k + g) * XK_NR + c] = 0;
                }
            }
        }
    }
}

#endif

#if defined(XK_PATH_AVX2)
/*
 * The AVX2 path: lookup tables of the filters (xk_conv_tables, or built here)
 * against byte panels of 32 output pixels. The input is first rearranged into
 * zero-padded byte planes (as many bytes as the packed input, plus the padding),
 * plane g*8 + b holding byte b of channel word g of every pixel, so that a panel's
 * byte q (tap (i, j), word g, byte b) of 32 pixels is a few contiguous runs of a
 * plane (one run per output row the panel touches, at stride 1), copied rather
 * than gathered bit by bit. Padded taps read zero bytes, i.e. -1 inputs, and the
 * same border corrections as above undo them. Panels are gathered in passes of at
 * most XK_CONV_BUFFER bytes (of any images), each multiplied by tasks of
 * XK_CONV_PANELS panels times XK_CONV_FILTERS filters.
 */
#define XK_CONV_PANELS 8         /* panels per task */
#define XK_CONV_FILTERS (8 * XK_PR)   /* filters per task */
#ifndef XK_CONV_BUFFER
#define XK_CONV_BUFFER (32 << 20)     /* bytes of panels per pass */
#endif

/* Zero-padded byte planes of one image: (8*Wc, H + 2ph, Wd + 2pw) bytes. */
static void byte_planes(const uint64_t *x, int64_t H, int64_t Wd, int64_t Wc, int64_t ph,
                        int64_t pw, uint8_t *bp)
{
    int64_t Hp = H + 2 * ph, Wp = Wd + 2 * pw, plane = Hp * Wp;
    __builtin_memset(bp, 0, (size_t)(8 * Wc * plane));
    for (int64_t ih = 0; ih < H; ih++)
        for (int64_t iw = 0; iw < Wd; iw++) {
            const uint64_t *px = x + (ih * Wd + iw) * Wc;
            uint8_t *d = bp + (ih + ph) * Wp + iw + pw;
            for (int64_t g = 0; g < Wc; g++)
                for (int b = 0; b < 8; b++) d[(g * 8 + b) * plane] = (uint8_t)(px[g] >> (8 * b));
        }
}

/* Copy n (<= 32) bytes; the common run lengths as fixed-size copies. */
XK_INLINE void copy_run(uint8_t *d, const uint8_t *s, int64_t n)
{
    switch (n) {
    case 32: __builtin_memcpy(d, s, 32); break;
    case 16: __builtin_memcpy(d, s, 16); break;
    case 8: __builtin_memcpy(d, s, 8); break;
    case 4: __builtin_memcpy(d, s, 4); break;
    default: for (int64_t k = 0; k < n; k++) d[k] = s[k]; break;
    }
}

/* The byte panel of output pixels q0 .. q0+31 of one image (bp: its byte planes):
 * byte q = ((i*fw + j)*Wc + g)*8 + b of pixel q0 + c at panel[q*32 + c]; pixels
 * past OHW are zero. */
static void gather_bytes(const uint8_t *bp, int64_t Hp, int64_t Wp, int64_t Wc, int64_t fh,
                         int64_t fw, int64_t sh, int64_t sw, int64_t OW, int64_t OHW, int64_t q0,
                         uint8_t *panel)
{
    int64_t plane = Hp * Wp, nb = fh * fw * Wc * 8, ncols = OHW - q0 < 32 ? OHW - q0 : 32;
    if (ncols < 32)
        for (int64_t q = 0; q < nb; q++) __builtin_memset(panel + q * 32 + ncols, 0, 32 - ncols);
    /* runs of consecutive pixels in one output row: (first column, length, offset) */
    int64_t rc[32], rn[32], ro[32], nrun = 0;
    for (int64_t c = 0; c < ncols;) {
        int64_t oh = (q0 + c) / OW, ow = (q0 + c) % OW;
        int64_t len = OW - ow < ncols - c ? OW - ow : ncols - c;
        if (sw != 1) len = 1;
        rc[nrun] = c;
        rn[nrun] = len;
        ro[nrun++] = oh * sh * Wp + ow * sw;
        c += len;
    }
    for (int64_t i = 0; i < fh; i++)
        for (int64_t j = 0; j < fw; j++)
            for (int64_t gb = 0; gb < 8 * Wc; gb++) {
                const uint8_t *src = bp + gb * plane + i * Wp + j;
                uint8_t *dst = panel + (((i * fw + j) * Wc) * 8 + gb) * 32;
                for (int64_t r = 0; r < nrun; r++) copy_run(dst + rc[r], src + ro[r], rn[r]);
            }
}

static int conv2d_tables(const uint64_t *xp, int64_t N, int64_t H, int64_t Wd, int64_t Wc,
                         const uint64_t *wk, int64_t F, int64_t fh, int64_t fw, int64_t sh,
                         int64_t sw, int64_t ph, int64_t pw, int64_t nbits, const int64_t *pidx,
                         const int32_t *pcorr, const uint8_t *tables, int32_t *out,
                         int nthreads)
{
    int64_t OH = (H + 2 * ph - fh) / sh + 1, OW = (Wd + 2 * pw - fw) / sw + 1;
    int64_t OHW = OH * OW, K = fh * fw * Wc, nb = 8 * K;
    int64_t Hp = H + 2 * ph, Wp = Wd + 2 * pw, ipb = 8 * Wc * Hp * Wp;   /* plane bytes */
    int64_t npi = (OHW + 31) / 32, pbytes = 32 * (nb > 0 ? nb : 1), npan = N * npi;
    int64_t pass = XK_CONV_BUFFER / pbytes;                    /* panels per pass */
    if (pass < 1) pass = 1;
    if (pass > npan) pass = npan;
    int64_t tabrow = XK_TAB_BYTES(K), nfg = (F + XK_PR - 1) / XK_PR;
    uint8_t *own = tables ? NULL : (uint8_t *)xk_alloc((size_t)(F * tabrow));
    const uint8_t *tab = tables ? tables : own;
    uint8_t *planes = (uint8_t *)xk_alloc((size_t)(N * ipb));
    uint8_t *panels = (uint8_t *)xk_alloc((size_t)(pass * pbytes));
    if (!tab || !planes || !panels) {
        free(own);
        free(planes);
        free(panels);
        return -1;
    }
    int nt = resolve_threads(nthreads);
    int big = (double)N * (double)OHW * (double)F * (double)(K + 1) > 1e5;
    int64_t nfr = (F + XK_CONV_FILTERS - 1) / XK_CONV_FILTERS;
    (void)nt; (void)big;
    _Pragma("omp parallel num_threads(nt) if(big)")
    {
        if (own) {
            _Pragma("omp for schedule(static)")
            for (int64_t g = 0; g < nfg; g++) {
                int64_t f0 = g * XK_PR;
                build_tables(wk + f0 * K, K, F - f0 < XK_PR ? (int)(F - f0) : XK_PR, K,
                             own + f0 * tabrow);
            }
        }
        _Pragma("omp for schedule(static)")
        for (int64_t m = 0; m < N; m++)
            byte_planes(xp + m * H * Wd * Wc, H, Wd, Wc, ph, pw, planes + m * ipb);
        /* passes of at most `pass` panels (of any images): gather, then multiply */
        for (int64_t g0 = 0; g0 < npan; g0 += pass) {
            int64_t np = npan - g0 < pass ? npan - g0 : pass;
            _Pragma("omp for schedule(static)")
            for (int64_t g = 0; g < np; g++)
                gather_bytes(planes + ((g0 + g) / npi) * ipb, Hp, Wp, Wc, fh, fw, sh, sw, OW,
                             OHW, ((g0 + g) % npi) * 32, panels + g * pbytes);
            int64_t npc = (np + XK_CONV_PANELS - 1) / XK_CONV_PANELS;
            _Pragma("omp for schedule(dynamic, 1)")
            for (int64_t t = 0; t < npc * nfr; t++) {
                int64_t p0 = (t / nfr) * XK_CONV_PANELS, fa = (t % nfr) * XK_CONV_FILTERS;
                int64_t p1 = p0 + XK_CONV_PANELS < np ? p0 + XK_CONV_PANELS : np;
                int64_t fz = fa + XK_CONV_FILTERS < F ? fa + XK_CONV_FILTERS : F;
                for (int64_t f0 = fa; f0 < fz; f0 += XK_PR) {
                    int r = fz - f0 < XK_PR ? (int)(fz - f0) : XK_PR;
                    for (int64_t g = p0; g < p1; g++) {
                        int64_t img = (g0 + g) / npi, p = (g0 + g) % npi, q0 = p * 32;
                        int64_t k = pidx ? pidx[p] : -1;
                        tab_tile(r, tab + f0 * tabrow, nb, panels + g * pbytes, nbits,
                                 out + (img * F + f0) * OHW + q0, OHW,
                                 OHW - q0 < 32 ? OHW - q0 : 32,
                                 k >= 0 ? pcorr + (k * F + f0) * 32 : NULL);
                    }
                }
            }
        }
    }
    free(own);
    free(planes);
    free(panels);
    return 0;
}
#endif

/* The filters' lookup tables of the AVX2 convolution (xk_conv2d_tables), built once
 * by the caller for many calls: xk_conv_table_bytes(F, K) bytes (0 on the other
 * paths, which need none) for F filters of K words. */
XK_EXPORT int64_t xk_conv_table_bytes(int64_t F, int64_t K)
{
#if defined(XK_PATH_AVX2)
    return F * (int64_t)XK_TAB_BYTES(K);
#else
    (void)F;
    (void)K;
    return 0;
#endif
}

XK_EXPORT void xk_conv_tables(const uint64_t *wk, int64_t F, int64_t K, uint8_t *T, int nthreads)
{
#if defined(XK_PATH_AVX2)
    int64_t nfg = (F + XK_PR - 1) / XK_PR;
    int nt = resolve_threads(nthreads);
    (void)nt;
    _Pragma("omp parallel for schedule(static) num_threads(nt) if(F * K > (1 << 12))")
    for (int64_t g = 0; g < nfg; g++) {
        int64_t f0 = g * XK_PR;
        build_tables(wk + f0 * K, K, F - f0 < XK_PR ? (int)(F - f0) : XK_PR, K,
                     T + f0 * XK_TAB_BYTES(K));
    }
#else
    (void)wk; (void)F; (void)K; (void)T; (void)nthreads;
#endif
}

#define XK_CONV_GROUP 4          /* panels gathered per task */

/*
 * Cross-correlation of binarized, zero-padded images with binarized filters.
 *
 * xp:  (N, H, Wd, Wc) words: the C input channels of each pixel, packed.
 * wk:  (F, fh*fw*Wc) words: filter f, tap (i, j), channel word g at
 *      wk[f*K + (i*fw + j)*Wc + g].
 * out: (N, F, OH, OW) int32.
 *
 * Each output pixel's receptive field is gathered into panel columns (im2col in
 * the packed domain); taps that fall in the padding are gathered as all-zero
 * words, i.e. as if the input were -1 there, so the result at such a pixel is
 * off by sum over padded taps of sum_c sign(W[f, c, tap]). That correction
 * depends only on geometry and sign(W); the caller precomputes it per panel:
 * pidx[p] (p < ceil(OH*OW/NR)) is -1 for a panel without border pixels, else k,
 * and pcorr[(k*F + f)*NR + c] is the correction of filter f at pixel p*NR + c.
 * The micro-kernels add it as they store, so padded positions contribute
 * exactly 0.
 *
 * Each task gathers a few panels (NR output pixels each, of one image) into a
 * small per-thread buffer and multiplies all F filters with them, a block of
 * filters at a time so that few output planes (pages) are written at once. The
 * AVX2 path instead multiplies byte panels with the filters' lookup tables
 * (conv2d_tables): tables from xk_conv_tables, or NULL to build them here.
 * Returns 0, or -1 when out of memory.
 */
XK_EXPORT int xk_conv2d_tables(const uint64_t *xp, int64_t N, int64_t H, int64_t Wd,
                               int64_t Wc, const uint64_t *wk, int64_t F, int64_t fh,
                               int64_t fw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                               int64_t nbits, const int64_t *pidx, const int32_t *pcorr,
                               const uint8_t *tables, int32_t *out, int nthreads)
{
    int64_t OH = (H + 2 * ph - fh) / sh + 1, OW = (Wd + 2 * pw - fw) / sw + 1;
    if (N <= 0 || F <= 0 || OH <= 0 || OW <= 0) return 0;
#if defined(XK_PATH_AVX2)
    return conv2d_tables(xp, N, H, Wd, Wc, wk, F, fh, fw, sh, sw, ph, pw, nbits, pidx, pcorr,
                         tables, out, nthreads);
#else
    (void)tables;
    int64_t OHW = OH * OW, K = fh * fw * Wc;
    int64_t npi = (OHW + XK_NR - 1) / XK_NR;                          /* panels per image */
    int64_t gpi = (npi + XK_CONV_GROUP - 1) / XK_CONV_GROUP;          /* groups per image */
    int64_t ntask = N * gpi;
    int64_t fb = 2 * XK_MR;       /* filter rows per pass: few output planes at a time */
    int nt = resolve_threads(nthreads);
    int big = (double)N * (double)OHW * (double)F * (double)(K + 1) > 1e5 && ntask > 1;
    int failed = 0;
    (void)nt; (void)big;
    _Pragma("omp parallel num_threads(nt) if(big)")
    {
        size_t pwords = (size_t)(K > 0 ? K : 1) * XK_NR;
        uint64_t *panels = (uint64_t *)xk_alloc(XK_CONV_GROUP * pwords * sizeof(uint64_t));
        if (!panels) {
            _Pragma("omp atomic write")
            failed = 1;
        }
        _Pragma("omp for schedule(dynamic, 1)")
        for (int64_t t = 0; t < ntask; t++) {
            if (!panels) continue;
            int64_t img = t / gpi, p0 = (t % gpi) * XK_CONV_GROUP;
            int64_t ng = npi - p0 < XK_CONV_GROUP ? npi - p0 : XK_CONV_GROUP;
            const uint64_t *x_img = xp + img * H * Wd * Wc;
            for (int64_t g = 0; g < ng; g++)
                gather_panel(x_img, H, Wd, Wc, fh, fw, sh, sw, ph, pw, OW, OHW,
                             (p0 + g) * XK_NR, panels + g * pwords);
            /* Filter blocks outside, panels inside, so that few output planes
             * (often exactly 4 KiB apart) are written at a time. */
            int32_t *o = out + img * F * OHW;
            for (int64_t f0 = 0; f0 < F; f0 += fb) {
                int64_t rows = F - f0 < fb ? F - f0 : fb;
                for (int64_t g = 0; g < ng; g++) {
                    int64_t q0 = (p0 + g) * XK_NR, ncols = OHW - q0 < XK_NR ? OHW - q0 : XK_NR;
                    int64_t k = pidx ? pidx[p0 + g] : -1;
                    tile(wk + f0 * K, K, rows, panels + g * pwords, K, nbits,
                         o + f0 * OHW + q0, OHW, ncols,
                         k >= 0 ? pcorr + (k * F + f0) * XK_NR : NULL, NULL);
                }
            }
        }
        free(panels);
    }
    return failed ? -1 : 0;
#endif
}

/* xk_conv2d_tables without prebuilt tables (the AVX2 path builds them per call). */
XK_EXPORT int xk_conv2d(const uint64_t *xp, int64_t N, int64_t H, int64_t Wd, int64_t Wc,
                        const uint64_t *wk, int64_t F, int64_t fh, int64_t fw,
                        int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t nbits,
                        const int64_t *pidx, const int32_t *pcorr,
                        int32_t *out, int nthreads)
{
    return xk_conv2d_tables(xp, N, H, Wd, Wc, wk, F, fh, fw, sh, sw, ph, pw, nbits, pidx, pcorr,
                            NULL, out, nthreads);
}

/* ------------------------------------------------------------------------ */
/* Whole XNOR dense layers: the float arithmetic of binary_net's float mode,  */
/* bit for bit, fused around the product                                     */
/* ------------------------------------------------------------------------ */

/*
 * These reproduce, in float32 and operation by operation, what numpy computes
 * in binary_net.infer (float mode), so that xnor mode's scores stay
 * bit-identical. That needs the file compiled with -ffp-contract=off (no
 * multiply-add fusion; binary_net/kernels/build.py passes it), and
 * K = np.mean(np.abs(x), axis=1, dtype=float32) summed in numpy's order:
 *
 *   numpy reduces a contiguous row in chunks of its buffer size (8192
 *   elements), adding each chunk's pairwise sum to the running total (which
 *   starts at 0); a pairwise sum of n <= 128 elements uses 8 interleaved
 *   accumulators, combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then adds
 *   the n % 8 last elements one by one; n < 8 elements are added in order
 *   from 0; longer runs are split at n/2 rounded down to a multiple of 8.
 *   The mean is that sum divided by float32(n).
 *
 * tests/test_kernels.py holds this to numpy for many lengths.
 */
#define XK_NUMPY_BUFSIZE 8192
#define XK_PW_BLOCK 128

static float pairwise_abs(const float *a, int64_t n)
{
    if (n < 8) {
        float r = 0.0f;
        for (int64_t i = 0; i < n; i++) r += __builtin_fabsf(a[i]);
        return r;
    }
    if (n <= XK_PW_BLOCK) {
        float r[8];
        for (int k = 0; k < 8; k++) r[k] = __builtin_fabsf(a[k]);
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += __builtin_fabsf(a[i + k]);
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += __builtin_fabsf(a[i]);
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_abs(a, n2) + pairwise_abs(a + n2, n - n2);
}

/* np.mean(np.abs(a[:n]), dtype=np.float32) for one contiguous row. */
static float mean_abs_row(const float *a, int64_t n)
{
    float total = 0.0f;
    for (int64_t c = 0; c < n; c += XK_NUMPY_BUFSIZE)
        total += pairwise_abs(a + c, n - c < XK_NUMPY_BUFSIZE ? n - c : XK_NUMPY_BUFSIZE);
    return total / (float)n;
}

/*
 * x: M rows of n floats (contiguous). out: M rows of ceil(n/64) words, the
 * packed signs; K (if not NULL): M floats, np.mean(np.abs(x), axis=1).
 */
XK_EXPORT void xk_pack_mean_abs_f32(const float *x, int64_t M, int64_t n, uint64_t *out,
                                    float *K, int nthreads)
{
    int64_t nw = (n + 63) >> 6;
    int nt = resolve_threads(nthreads);
    int big = M * n > (1 << 16) && M > 1;
    (void)nt; (void)big;
    _Pragma("omp parallel for schedule(static) num_threads(nt) if(big)")
    for (int64_t i = 0; i < M; i++) {
        if (out) pack_row_f32(x + i * n, n, out + i * nw);
        if (K) K[i] = n > 0 ? mean_abs_row(x + i * n, n) : __builtin_nanf("");
    }
}

/* Epilogue flags of xk_xnor_dense. */
#define XK_SCALE_INPUT 1        /* multiply row i by K[i] */
#define XK_SCALE_WEIGHTS 2      /* multiply column j by alpha[j] */
#define XK_BIAS_BEFORE 4        /* (p + b) * K * alpha instead of p * K * alpha + b */

/*
 * One XNOR dense layer and what follows it, in one pass over the product:
 *
 *   p = sign(x) . sign(W)                 (xp: packed input, M x W words;
 *                                          P: the weights' panels)
 *   z = (float(p) * K[i]) * alpha[j] + b[j]    (or ((float(p) + b[j]) * K[i])
 *                                          * alpha[j] with XK_BIAS_BEFORE;
 *                                          K, alpha only where flagged)
 *   y = z * scale[j] + offset[j]          (the folded batch norm that follows;
 *                                          only if scale is not NULL)
 *   yp = packed signs of y, Ky = mean |y| per row (the next XNOR layer's
 *                                          input; only where not NULL)
 *
 * z and y are M x N float32 (z may be NULL where scale is not: then it is not
 * stored), yp M x ceil(N/64) words. Every float operation is
 * the one numpy performs in float mode, in the same order. Tasks are blocks of
 * rows times blocks of 64 columns (a block gives one word of yp per row), so
 * that a batch of one row is split over the threads too; Ky needs whole rows
 * and is computed after them. Returns 0, -1 when out of memory, -2 when z and scale
 * are both NULL.
 */
XK_EXPORT int xk_xnor_dense(const uint64_t *xp, int64_t M, int64_t W, const uint64_t *P,
                            int64_t N, int64_t n, int flags, const float *K,
                            const float *alpha, const float *b, float *z,
                            const float *scale, const float *offset, float *y,
                            uint64_t *yp, float *Ky, int nthreads)
{
    if (M <= 0 || N <= 0) return 0;
    if (!z && !scale) return -2;
    int64_t ncb = (N + XK_CB - 1) / XK_CB, nwy = ncb, mc, cbr;
    int nt = resolve_threads(nthreads);
    choose_tasks(M, N, W, nt, &mc, &cbr);
    if (mc > 64) mc = 64;            /* a block's int32 results stay in L1 */
    int64_t nmb = (M + mc - 1) / mc, ncr = (ncb + cbr - 1) / cbr, ntask = nmb * ncr;
    int64_t ldp = cbr * XK_CB;       /* columns of a task's results */
    int big = (double)M * (double)N * (double)(W + 1) > 1e5 && ntask > 1;
    int64_t chunk = task_chunk(ntask, nt);
    int failed = 0;
    (void)big; (void)chunk;
    _Pragma("omp parallel num_threads(nt) if(big)")
    {
        int32_t *prod = (int32_t *)malloc((size_t)mc * ldp * sizeof(int32_t));
        size_t scratch = XK_TAB_SCRATCH(W);
        uint8_t *tab = scratch ? (uint8_t *)xk_alloc(scratch) : NULL;
        float *zrow = z ? NULL : (float *)malloc((size_t)ldp * sizeof(float));  /* z unstored */
        if ((scratch && !tab) || (!z && !zrow)) {
            free(prod);
            prod = NULL;
        }
        if (!prod) {
            _Pragma("omp atomic write")
            failed = 1;
        }
        _Pragma("omp for schedule(dynamic, chunk)")
        for (int64_t t = 0; t < ntask; t++) {
            if (!prod) continue;
            int64_t i0 = (t / ncr) * mc, j0 = (t % ncr) * ldp;
            int64_t rows = M - i0 < mc ? M - i0 : mc, cols = N - j0 < ldp ? N - j0 : ldp;
            if (W > 0)
                range_product(xp + i0 * W, W, rows, P, W, N, n, j0, j0 + cols, prod, ldp, tab);
            else
                for (int64_t k = 0; k < rows * ldp; k++) prod[k] = (int32_t)n;
            for (int64_t i = 0; i < rows; i++) {
                const int32_t *pi = prod + i * ldp;
                float *zi = z ? z + (i0 + i) * N + j0 : zrow;
                float ki = (flags & XK_SCALE_INPUT) ? K[i0 + i] : 1.0f;
                if (flags & XK_BIAS_BEFORE) {
                    for (int64_t j = 0; j < cols; j++) zi[j] = (float)pi[j] + b[j0 + j];
                    if (flags & XK_SCALE_INPUT)
                        for (int64_t j = 0; j < cols; j++) zi[j] = zi[j] * ki;
                } else if (flags & XK_SCALE_INPUT) {
                    for (int64_t j = 0; j < cols; j++) zi[j] = (float)pi[j] * ki;
                } else {
                    for (int64_t j = 0; j < cols; j++) zi[j] = (float)pi[j];
                }
                if (flags & XK_SCALE_WEIGHTS)
                    for (int64_t j = 0; j < cols; j++) zi[j] = zi[j] * alpha[j0 + j];
                if (!(flags & XK_BIAS_BEFORE))
                    for (int64_t j = 0; j < cols; j++) zi[j] = zi[j] + b[j0 + j];
                if (scale) {
                    float *yi = y + (i0 + i) * N + j0;
                    for (int64_t j = 0; j < cols; j++) {
                        float v = zi[j] * scale[j0 + j];
                        yi[j] = v + offset[j0 + j];
                    }
                    if (yp) pack_row_f32(yi, cols, yp + (i0 + i) * nwy + j0 / 64);
                }
            }
        }
        free(prod);
        free(tab);
        free(zrow);
        if (scale && Ky) {
            _Pragma("omp for schedule(static)")
            for (int64_t i = 0; i < M; i++) Ky[i] = mean_abs_row(y + i * N, N);
        }
    }
    return failed ? -1 : 0;
}

/*
 * A chain of XNOR dense layers, each followed by its batch norm, in one call: what
 * float mode computes for "XNOR dense, batch norm, XNOR dense, batch norm, ..., XNOR
 * dense [, batch norm]", so that a batch (one image, say) pays one call from Python
 * instead of one per layer and per packing.
 *
 *   x (M x n0 floats, contiguous) -> packed signs and K = mean |x| per row (as
 *   xk_pack_mean_abs_f32; at byte offsets xp0 and K0 of out, K0 < 0: not computed),
 *   then layer l = 0 .. nlayers-1 as xk_xnor_dense, its input layer l-1's packed y
 *   and Ky (layer 0: the packing of x), its results at the byte offsets of L[l] in
 *   out (y, yp, Ky < 0: not computed; z < 0: not stored, for a layer with a batch norm).
 *
 * Each layer's arithmetic is xk_xnor_dense's, so the results are those of calling it
 * layer by layer (tests/test_kernels.py holds the chain to that and to numpy).
 * Returns 0, -1 when out of memory, -2 when a layer lacks its input (yp of the layer
 * before, or Ky where the layer scales by K).
 */
typedef struct {
    const uint64_t *P;          /* the weights' panels (xk_pack_panels) */
    int64_t N, n, flags;        /* units, input bits, XK_SCALE_INPUT | ... */
    const float *alpha, *b, *scale, *offset;   /* alpha, scale, offset may be NULL */
    int64_t z, y, yp, Ky;       /* byte offsets into out; -1 for none (z: only with scale) */
} xk_chain_layer;

XK_EXPORT int xk_xnor_dense_chain(const float *x, int64_t M, int64_t n0, int64_t xp0,
                                  int64_t K0, int64_t nlayers, const xk_chain_layer *L,
                                  char *out, int nthreads)
{
    if (M <= 0 || nlayers <= 0) return 0;
    xk_pack_mean_abs_f32(x, M, n0, (uint64_t *)(out + xp0), K0 >= 0 ? (float *)(out + K0) : NULL,
                         nthreads);
    const uint64_t *xp = (const uint64_t *)(out + xp0);
    const float *K = K0 >= 0 ? (const float *)(out + K0) : NULL;
    for (int64_t l = 0; l < nlayers; l++) {
        const xk_chain_layer *c = &L[l];
        if (!xp || ((c->flags & XK_SCALE_INPUT) && !K)) return -2;
        int status = xk_xnor_dense(
            xp, M, (c->n + 63) >> 6, c->P, c->N, c->n, (int)c->flags, K, c->alpha, c->b,
            c->z >= 0 ? (float *)(out + c->z) : NULL, c->scale, c->offset,
            c->y >= 0 ? (float *)(out + c->y) : NULL,
            c->yp >= 0 ? (uint64_t *)(out + c->yp) : NULL,
            c->Ky >= 0 ? (float *)(out + c->Ky) : NULL, nthreads);
        if (status != 0) return status;
        xp = c->yp >= 0 ? (const uint64_t *)(out + c->yp) : NULL;
        K = c->Ky >= 0 ? (const float *)(out + c->Ky) : NULL;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* XNOR convolutions: the float arithmetic around the product                 */
/* ------------------------------------------------------------------------ */

/*
 * x: (N, C, HW) floats. If scale is not NULL, the batch norm v = x * scale[c] +
 * offset[c] (two roundings, as numpy) is used below instead of x, and written to y
 * (N, C, HW) if y is not NULL. out (if not NULL): (N, HW, ceil(C/64)) words, the channels of
 * each pixel packed (pack_signs(v, axis=1)); mean (if not NULL): (N, HW) floats,
 * np.mean(np.abs(v), axis=1, dtype=float32): numpy adds the channels one after
 * the other, element by element, from 0, then divides by float32(C).
 */
XK_EXPORT void xk_pack_channels_mean_abs_f32(const float *x, int64_t N, int64_t C, int64_t HW,
                                             const float *scale, const float *offset, float *y,
                                             uint64_t *out, float *mean, int nthreads)
{
    int64_t nw = (C + 63) >> 6, nqb = (HW + XK_QBLOCK - 1) / XK_QBLOCK, ntask = N * nqb;
    int nt = resolve_threads(nthreads);
    int big = N * C * HW > (1 << 16) && ntask > 1;
    (void)nt; (void)big;
    _Pragma("omp parallel for schedule(dynamic, 1) num_threads(nt) if(big)")
    for (int64_t t = 0; t < ntask; t++) {
        int64_t img = t / nqb, q0 = (t % nqb) * XK_QBLOCK;
        int64_t nq = HW - q0 < XK_QBLOCK ? HW - q0 : XK_QBLOCK;
        float sum[XK_QBLOCK], tmp[XK_QBLOCK];
        uint64_t acc[XK_QBLOCK];
        for (int64_t q = 0; q < nq; q++) sum[q] = 0.0f;
        for (int64_t g = 0; g < nw; g++) {
            int64_t c0 = g << 6, nc = C - c0 < 64 ? C - c0 : 64;
            for (int64_t q = 0; q < nq; q++) acc[q] = 0;
            for (int64_t c = 0; c < nc; c++) {
                const float *xc = x + (img * C + c0 + c) * HW + q0;
                if (scale) {
                    float *yc = y ? y + (img * C + c0 + c) * HW + q0 : tmp;
                    float sc = scale[c0 + c], of = offset[c0 + c];
                    for (int64_t q = 0; q < nq; q++) {
                        float u = xc[q] * sc;
                        yc[q] = u + of;
                    }
                    xc = yc;
                }
                for (int64_t q = 0; q < nq; q++) {
                    acc[q] |= (uint64_t)(xc[q] >= 0.0f) << c;
                    sum[q] += __builtin_fabsf(xc[q]);
                }
            }
            if (out)
                for (int64_t q = 0; q < nq; q++) out[(img * HW + q0 + q) * nw + g] = acc[q];
        }
        if (mean)
            for (int64_t q = 0; q < nq; q++) mean[img * HW + q0 + q] = sum[q] / (float)C;
    }
}

/* np.maximum(a, b) for floats: NaN in either gives NaN. */
XK_INLINE float np_maximum(float a, float b)
{
    /* Select by bit masks: a branch on this unpredictable comparison costs more
     * than everything else in the epilogue. */
    uint32_t ua, ub, take = -(uint32_t)((a >= b) | (a != a));
    __builtin_memcpy(&ua, &a, 4);
    __builtin_memcpy(&ub, &b, 4);
    uint32_t r = (ua & take) | (ub & ~take);
    float out;
    __builtin_memcpy(&out, &r, 4);
    return out;
}

/*
 * After the int32 product p (N, F, OH, OW) of an XNOR convolution, as float mode:
 *   z = (float(p) * K[n, oh, ow]) * alpha[f] + b[f]    (K, alpha where flagged)
 *   pooled = max over ph x pw windows of z, taps in row order (if ph > 0;
 *            a partial border is dropped), as binary_net's MaxPool
 *   y = v * scale[f] + offset[f], v = pooled or z     (if scale is not NULL)
 * Planes (n, f) are split over the threads.
 */
XK_EXPORT void xk_conv_epilogue(const int32_t *p, int64_t N, int64_t F, int64_t OH, int64_t OW,
                                int flags, const float *K, const float *alpha, const float *b,
                                float *z, int64_t ph, int64_t pw, float *pooled,
                                const float *scale, const float *offset, float *y, int nthreads)
{
    int64_t HW = OH * OW, nplanes = N * F;
    int64_t PH = ph > 0 ? OH / ph : 0, PW = ph > 0 ? OW / pw : 0;
    int nt = resolve_threads(nthreads);
    int big = nplanes * HW > (1 << 15) && nplanes > 1;
    (void)nt; (void)big;
    _Pragma("omp parallel for schedule(static) num_threads(nt) if(big)")
    for (int64_t t = 0; t < nplanes; t++) {
        int64_t img = t / F, f = t % F;
        const int32_t *pp = p + t * HW;
        float *zp = z + t * HW;
        const float *kp = K ? K + img * HW : NULL;
        if (flags & XK_SCALE_INPUT)
            for (int64_t q = 0; q < HW; q++) zp[q] = (float)pp[q] * kp[q];
        else
            for (int64_t q = 0; q < HW; q++) zp[q] = (float)pp[q];
        if (flags & XK_SCALE_WEIGHTS) {
            float a = alpha[f];
            for (int64_t q = 0; q < HW; q++) zp[q] = zp[q] * a;
        }
        float bf = b[f];
        for (int64_t q = 0; q < HW; q++) zp[q] = zp[q] + bf;
        const float *v = zp;
        int64_t nv = HW;
        if (ph > 0) {
            float *po = pooled + t * PH * PW;
            if (ph == 2 && pw == 2) {
                /* the common case, unrolled: taps (0,0), (0,1), (1,0), (1,1) */
                for (int64_t i = 0; i < PH; i++) {
                    const float *r0 = zp + 2 * i * OW, *r1 = r0 + OW;
                    for (int64_t j = 0; j < PW; j++) {
                        float m = np_maximum(r0[2 * j], r0[2 * j + 1]);
                        m = np_maximum(m, r1[2 * j]);
                        po[i * PW + j] = np_maximum(m, r1[2 * j + 1]);
                    }
                }
            } else
            for (int64_t i = 0; i < PH; i++)
                for (int64_t j = 0; j < PW; j++) {
                    const float *w0 = zp + (i * ph) * OW + j * pw;
                    float m = w0[0];
                    for (int64_t u = 0; u < ph; u++)
                        for (int64_t s = 0; s < pw; s++)
                            if (u || s) m = np_maximum(m, w0[u * OW + s]);
                    po[i * PW + j] = m;
                }
            v = po;
            nv = PH * PW;
        }
        if (scale) {
            float sf = scale[f], of = offset[f];
            float *yp = y + t * nv;
            for (int64_t q = 0; q < nv; q++) {
                float u = v[q] * sf;
                yp[q] = u + of;
            }
        }
    }
}

/*
 * xk_conv_epilogue fused with the packing of its result v (y if scale is given, else
 * the pooled z if ph > 0, else z) as the input of the next XNOR convolution, so that
 * v is computed in cache and packed there: out (N, VH, VW, ceil(F/64)) words, bit f % 64
 * of word f / 64 of a pixel set where v >= 0, and, if mean is not NULL, mean (N, VH*VW)
 * = np.mean(np.abs(v), axis=1, dtype=float32), as xk_pack_channels_mean_abs_f32 gives
 * for v. z is not stored; pooled and y only where not NULL. Tasks are blocks of at
 * most XK_QBLOCK pixels of v of one image, its F channels in order (the sum of |v|
 * adds them one after the other, as numpy does), at least 4 per thread where the
 * batch allows. Returns 0, or -1 when out of memory.
 */
XK_EXPORT int xk_conv_epilogue_pack(const int32_t *p, int64_t N, int64_t F, int64_t OH,
                                    int64_t OW, int flags, const float *K, const float *alpha,
                                    const float *b, int64_t ph, int64_t pw, float *pooled,
                                    const float *scale, const float *offset, float *y,
                                    uint64_t *out, float *mean, int nthreads)
{
    int64_t HW = OH * OW, nw = (F + 63) >> 6;
    int64_t wh = ph > 0 ? ph : 1, ww = ph > 0 ? pw : 1;        /* window */
    int64_t VH = OH / wh, VW = OW / ww, VHW = VH * VW;
    if (N <= 0 || F <= 0 || VHW <= 0) return 0;
    int nt = resolve_threads(nthreads);
    int64_t cseg = VW < XK_QBLOCK ? VW : XK_QBLOCK, ncs = (VW + cseg - 1) / cseg;
    int64_t rows = XK_QBLOCK / cseg;               /* rows of v per block */
    while (rows > 1 && N * ((VH + rows - 1) / rows) * ncs < 4 * (int64_t)nt) rows = (rows + 1) / 2;
    if (rows > VH) rows = VH;
    int64_t nrb = (VH + rows - 1) / rows, ntask = N * nrb * ncs;
    int big = N * F * HW > (1 << 15) && ntask > 1, failed = 0;
    (void)big;
    _Pragma("omp parallel num_threads(nt) if(big)")
    {
        /* z of a block's windows, one row of windows' z after the other */
        float *zb = (float *)malloc(sizeof(float) * (size_t)(rows * wh * cseg * ww));
        if (!zb) {
            _Pragma("omp atomic write")
            failed = 1;
        }
        _Pragma("omp for schedule(dynamic, 1)")
        for (int64_t t = 0; t < ntask; t++) {
            if (!zb) continue;
            int64_t img = t / (nrb * ncs), r0 = ((t / ncs) % nrb) * rows, c0 = (t % ncs) * cseg;
            int64_t nr = VH - r0 < rows ? VH - r0 : rows, nc = VW - c0 < cseg ? VW - c0 : cseg;
            int64_t nq = nr * nc, nzr = nr * wh, nzc = nc * ww;
            float vb[XK_QBLOCK], sum[XK_QBLOCK];
            uint64_t acc[XK_QBLOCK];
            for (int64_t q = 0; q < nq; q++) {
                sum[q] = 0.0f;
                acc[q] = 0;
            }
            for (int64_t f = 0; f < F; f++) {
                const int32_t *pp = p + (img * F + f) * HW + r0 * wh * OW + c0 * ww;
                const float *kp = K ? K + img * HW + r0 * wh * OW + c0 * ww : NULL;
                float a = (flags & XK_SCALE_WEIGHTS) ? alpha[f] : 1.0f, bf = b[f];
                for (int64_t u = 0; u < nzr; u++) {    /* z, as xk_conv_epilogue */
                    const int32_t *src = pp + u * OW;
                    float *d = zb + u * nzc;
                    if (flags & XK_SCALE_INPUT)
                        for (int64_t q = 0; q < nzc; q++) d[q] = (float)src[q] * kp[u * OW + q];
                    else
                        for (int64_t q = 0; q < nzc; q++) d[q] = (float)src[q];
                    if (flags & XK_SCALE_WEIGHTS)
                        for (int64_t q = 0; q < nzc; q++) d[q] = d[q] * a;
                    for (int64_t q = 0; q < nzc; q++) d[q] = d[q] + bf;
                }
                float *v = zb;
                if (ph == 2 && pw == 2) {   /* as xk_conv_epilogue, unrolled */
                    v = vb;
                    for (int64_t i = 0; i < nr; i++) {
                        const float *z0 = zb + 2 * i * nzc, *z1 = z0 + nzc;
                        for (int64_t j = 0; j < nc; j++) {
                            float m = np_maximum(z0[2 * j], z0[2 * j + 1]);
                            m = np_maximum(m, z1[2 * j]);
                            v[i * nc + j] = np_maximum(m, z1[2 * j + 1]);
                        }
                    }
                } else if (ph > 0) {        /* max over each window, taps in row order */
                    v = vb;
                    for (int64_t i = 0; i < nr; i++)
                        for (int64_t j = 0; j < nc; j++) {
                            const float *w0 = zb + i * wh * nzc + j * ww;
                            float m = w0[0];
                            for (int64_t e = 0; e < wh; e++)
                                for (int64_t g = 0; g < ww; g++)
                                    if (e || g) m = np_maximum(m, w0[e * nzc + g]);
                            v[i * nc + j] = m;
                        }
                }
                if (ph > 0 && pooled)
                    for (int64_t i = 0; i < nr; i++)
                        __builtin_memcpy(pooled + (img * F + f) * VHW + (r0 + i) * VW + c0,
                                         v + i * nc, sizeof(float) * (size_t)nc);
                if (scale) {
                    float sf = scale[f], of = offset[f];
                    for (int64_t q = 0; q < nq; q++) {
                        float w = v[q] * sf;
                        v[q] = w + of;
                    }
                    if (y)
                        for (int64_t i = 0; i < nr; i++)
                            __builtin_memcpy(y + (img * F + f) * VHW + (r0 + i) * VW + c0,
                                             v + i * nc, sizeof(float) * (size_t)nc);
                }
                const int sh = (int)(f & 63);
                for (int64_t q = 0; q < nq; q++) {
                    acc[q] |= (uint64_t)(v[q] >= 0.0f) << sh;
                    sum[q] += __builtin_fabsf(v[q]);
                }
                if (sh == 63 || f == F - 1) {
                    for (int64_t i = 0; i < nr; i++)
                        for (int64_t j = 0; j < nc; j++)
                            out[(img * VHW + (r0 + i) * VW + c0 + j) * nw + (f >> 6)] =
                                acc[i * nc + j];
                    for (int64_t q = 0; q < nq; q++) acc[q] = 0;
                }
            }
            if (mean)
                for (int64_t i = 0; i < nr; i++)
                    for (int64_t j = 0; j < nc; j++)
                        mean[img * VHW + (r0 + i) * VW + c0 + j] = sum[i * nc + j] / (float)F;
        }
        free(zb);
    }
    return failed ? -1 : 0;
}

/*
 * Reference convolution, kept beside xk_conv2d (same arguments but no border
 * tables): the definition, tap by tap; a tap in the padding contributes 0 and
 * an inside tap C - 2 * popcount over its channel words (C = nbits / (fh*fw)).
 */
XK_EXPORT void xk_conv2d_ref(const uint64_t *xp, int64_t N, int64_t H, int64_t Wd, int64_t Wc,
                             const uint64_t *wk, int64_t F, int64_t fh, int64_t fw,
                             int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t nbits,
                             int32_t *out)
{
    int64_t OH = (H + 2 * ph - fh) / sh + 1, OW = (Wd + 2 * pw - fw) / sw + 1;
    int64_t K = fh * fw * Wc, C = nbits / (fh * fw);
    for (int64_t img = 0; img < N; img++)
        for (int64_t f = 0; f < F; f++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t sum = 0;
                    for (int64_t i = 0; i < fh; i++)
                        for (int64_t j = 0; j < fw; j++) {
                            int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) continue;
                            const uint64_t *x = xp + ((img * H + ih) * Wd + iw) * Wc;
                            const uint64_t *w = wk + f * K + (i * fw + j) * Wc;
                            int64_t count = 0;
                            for (int64_t g = 0; g < Wc; g++) count += __builtin_popcountll(x[g] ^ w[g]);
                            sum += C - 2 * count;
                        }
                    out[((img * F + f) * OH + oh) * OW + ow] = (int32_t)sum;
                }
}
