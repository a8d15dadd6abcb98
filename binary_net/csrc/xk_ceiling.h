/*
 * The ceiling of the product's inner loop on this core: xk_ceiling(steps) runs the
 * micro-kernel's inner loop (its step function, in the same tile) on data that
 * stays in L1 (no stores, no epilogue), for `steps` word steps, so that a benchmark
 * can put a kernel's time per 256-bit word beside what the core's vector units allow
 * for that loop, measured, with no clock rate to assume (perf cannot count cycles in
 * many virtual machines). Returns the 256-bit words counted (0 on the paths without
 * one: NEON, portable) and a checksum in *sink so that nothing is optimized away.
 *
 * Included by xnor_kernels.c after xnor_kernels.h (it uses tab_step, micro_step).
 */
#ifndef BINARY_NET_XK_CEILING_H
#define BINARY_NET_XK_CEILING_H

XK_EXPORT int64_t xk_ceiling(int64_t steps, uint64_t *sink)
{
#if defined(XK_PATH_AVX2)
    /* tab_micro's loop: 6 rows of tables against one panel vector per step, the
     * byte counts widened every 31 steps; 124 bytes of 32 columns (4 KB) and their
     * tables (24 KB) stay in L1. */
    enum { NB = 124 };
    uint8_t P[NB * 32] __attribute__((aligned(32)));
    uint8_t T[XK_PR * NB * 32] __attribute__((aligned(32)));
    for (int k = 0; k < NB * 32; k++) P[k] = (uint8_t)(k * 37 + 11);
    for (int k = 0; k < XK_PR * NB * 32; k++) T[k] = (uint8_t)((k * 13) & 3);
    const __m256i zero = _mm256_setzero_si256();
    __m256i t16 = zero;
    int64_t done = 0;
    while (done < steps) {
        for (int q0 = 0; q0 < NB; q0 += 31) {
            __m256i acc[XK_PR];
            for (int i = 0; i < XK_PR; i++) acc[i] = zero;
            for (int q = q0; q < q0 + 31 && q < NB; q++)
                tab_step(XK_PR, T + q * 32, NB * 32, P + q * 32, acc);
            for (int i = 0; i < XK_PR; i++)
                t16 = _mm256_add_epi16(t16, _mm256_add_epi16(_mm256_unpacklo_epi8(acc[i], zero),
                                                             _mm256_unpackhi_epi8(acc[i], zero)));
        }
        done += NB;
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, t16);
    *sink = out[0] ^ out[1] ^ out[2] ^ out[3];
    return done * XK_PR;             /* one 256-bit word per row and step */
#elif defined(XK_PATH_AVX512)
    /* micro()'s loop: 4 rows broadcast against a panel row of 32 words per step;
     * 64 words of 4 rows (2 KB) and of the panel (16 KB) stay in L1. */
    enum { W = 64 };
    uint64_t A[XK_MR * W] __attribute__((aligned(64)));
    uint64_t P[W * XK_NR] __attribute__((aligned(64)));
    for (int k = 0; k < XK_MR * W; k++) A[k] = 0x9e3779b97f4a7c15ULL * (uint64_t)(k + 1);
    for (int k = 0; k < W * XK_NR; k++) P[k] = 0xc2b2ae3d27d4eb4fULL * (uint64_t)(k + 7);
    __m512i acc[XK_MR][4];
    for (int i = 0; i < XK_MR; i++)
        for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_si512();
    int64_t done = 0;
    while (done < steps) {
        for (int w = 0; w < W; w++) micro_step(XK_MR, A + w, W, P + w * XK_NR, acc);
        done += W;
    }
    __m512i s = _mm512_setzero_si512();
    for (int i = 0; i < XK_MR; i++)
        for (int c = 0; c < 4; c++) s = _mm512_add_epi64(s, acc[i][c]);
    *sink = (uint64_t)_mm512_reduce_add_epi64(s);
    return done * XK_MR * 8;         /* 32 words = 8 256-bit words per row and step */
#else
    (void)steps;
    *sink = 0;
    return 0;
#endif
}

#endif /* BINARY_NET_XK_CEILING_H */
