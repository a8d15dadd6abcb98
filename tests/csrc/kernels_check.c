/*
 * kernels_check.c -- a Python-free check of binary_net/csrc/xnor_kernels.c:
 * xk_gemm, xk_dense_f32 and xk_conv2d against products of signs computed
 * directly from the floats, for shapes around the word, tile and block edges.
 * Built for the host, or for aarch64 with aarch64-linux-gnu-gcc and run under
 * qemu-aarch64 (tests/test_aarch64.py), where it checks the NEON path (or,
 * with -DXK_NO_NEON, the portable one).
 *
 *   cc -O2 -I binary_net/csrc -o kernels_check tests/csrc/kernels_check.c
 *   ./kernels_check [THREADS]       (OpenMP threads when built with -fopenmp; default 1)
 *
 * Prints "isa ISA: N products checked"; exit status 1 at the first mismatch.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "xnor_kernels.c"

static uint64_t state = UINT64_C(0x2545f4914f6cdd1d);

static uint32_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 32);
}

/* Random floats, a sixteenth of them exactly 0 (sign +1). */
static void fill(float *x, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        uint32_t r = next();
        x[k] = (r & 15) == 0 ? 0.0f : (float)((int32_t)(r >> 8) - (1 << 23)) / (1 << 20);
    }
}

static int sgn(float v) { return v >= 0.0f ? 1 : -1; }

static void *alloc(size_t bytes)
{
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    return p;
}

static long checked = 0;
static int threads = 1;

static void fail(const char *what, long a, long b, long c, long got, long want)
{
    printf("mismatch in %s (%ld, %ld, %ld): %ld, not %ld\n", what, a, b, c, got, want);
    exit(1);
}

/* C = sign(X) sign(Y)^T for X (M x K) and Y (N x K), by xk_gemm and xk_dense_f32. */
static void check_product(int64_t M, int64_t N, int64_t K)
{
    int64_t W = (K + 63) / 64, np = (N + XK_NR - 1) / XK_NR;
    float *X = alloc(sizeof(float) * M * K), *Y = alloc(sizeof(float) * N * K);
    uint64_t *A = alloc(8 * M * W), *B = alloc(8 * N * W), *P = alloc(8 * np * W * XK_NR);
    int32_t *C = alloc(4 * M * N), *D = alloc(4 * M * N);
    fill(X, M * K);
    fill(Y, N * K);
    xk_pack_f32(X, M, K, 1, A, threads);
    xk_pack_f32(Y, N, K, 1, B, threads);
    xk_pack_panels(B, N, W, W, P, threads);
    xk_gemm(A, M, W, W, P, N, K, C, N, threads);
    if (xk_dense_f32(X, M, K, P, N, D, N, threads) != 0)
        fail("xk_dense_f32 (memory)", M, N, K, 0, 0);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            long want = 0;
            for (int64_t k = 0; k < K; k++)
                want += sgn(X[i * K + k]) * sgn(Y[j * K + k]);
            if (C[i * N + j] != want)
                fail("xk_gemm", M, N, K, C[i * N + j], want);
            if (D[i * N + j] != want)
                fail("xk_dense_f32", M, N, K, D[i * N + j], want);
            checked += 2;
        }
    free(X); free(Y); free(A); free(B); free(P); free(C); free(D);
}

/* Cross-correlation of sign(x) (N x C x H x Wd) with sign(w) (F x fh x fw x C),
 * without the caller's padding correction: a padded tap counts as input -1. */
static void check_conv(int64_t N, int64_t Cn, int64_t H, int64_t Wd, int64_t F, int64_t fh,
                       int64_t fw, int64_t s, int64_t pad)
{
    int64_t Wc = (Cn + 63) / 64, OH = (H + 2 * pad - fh) / s + 1, OW = (Wd + 2 * pad - fw) / s + 1;
    float *x = alloc(sizeof(float) * N * Cn * H * Wd), *w = alloc(sizeof(float) * F * fh * fw * Cn);
    uint64_t *xp = alloc(8 * N * H * Wd * Wc), *wk = alloc(8 * F * fh * fw * Wc);
    int32_t *out = alloc(4 * N * F * OH * OW);
    fill(x, N * Cn * H * Wd);
    fill(w, F * fh * fw * Cn);
    xk_pack_f32(x, N, Cn, H * Wd, xp, threads);
    xk_pack_f32(w, F * fh * fw, Cn, 1, wk, threads);
    if (xk_conv2d(xp, N, H, Wd, Wc, wk, F, fh, fw, s, s, pad, pad, fh * fw * Cn, NULL, NULL,
                  out, threads) != 0)
        fail("xk_conv2d (memory)", N, Cn, F, 0, 0);
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++)
            for (int64_t oi = 0; oi < OH; oi++)
                for (int64_t oj = 0; oj < OW; oj++) {
                    long want = 0;
                    for (int64_t u = 0; u < fh; u++)
                        for (int64_t v = 0; v < fw; v++) {
                            int64_t ii = oi * s - pad + u, jj = oj * s - pad + v;
                            int inside = ii >= 0 && ii < H && jj >= 0 && jj < Wd;
                            for (int64_t c = 0; c < Cn; c++) {
                                int xs = inside ? sgn(x[((n * Cn + c) * H + ii) * Wd + jj]) : -1;
                                want += xs * sgn(w[((f * fh + u) * fw + v) * Cn + c]);
                            }
                        }
                    long got = out[((n * F + f) * OH + oi) * OW + oj];
                    if (got != want)
                        fail("xk_conv2d", n, f, oi * OW + oj, got, want);
                    checked++;
                }
    free(x); free(w); free(xp); free(wk); free(out);
}

int main(int argc, char **argv)
{
    static const int64_t Ks[] = {1, 63, 64, 65, 130, 1000, 3071, 4000};
    if (argc > 1)
        threads = atoi(argv[1]);
    for (int64_t M = 1; M <= 9; M += 4)
        for (int64_t N = 1; N <= 37; N += 9)
            for (size_t k = 0; k < sizeof Ks / sizeof Ks[0]; k++)
                check_product(M, N, Ks[k]);
    check_product(13, 17, 64 * 300 + 7);
    /* Rows longer than XK_NEON_BLOCK words (the 16-bit lanes are widened). */
    check_product(5, 9, 64 * 4100 + 5);
    check_conv(2, 3, 7, 6, 5, 3, 3, 1, 1);
    check_conv(1, 64, 6, 6, 9, 3, 3, 2, 0);
    check_conv(2, 70, 5, 5, 11, 3, 2, 1, 1);
    check_conv(1, 130, 9, 9, 4, 3, 3, 1, 1);
    printf("isa %s: %ld products checked (%d threads, OpenMP %d)\n", xk_isa(), checked,
           threads, xk_openmp());
    return 0;
}
