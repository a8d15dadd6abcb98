
/* Popcount of packed signs: bn_xor_popcount(a, b, words) counts the 1 bits of
 * a[k] ^ b[k] over the words. BN_POPCOUNT selects how (the export chose
 * @POPCOUNT_NAME@; -DBN_POPCOUNT=BN_POPCOUNT_BUILTIN|_SWAR|_TABLE overrides it):
 *   BUILTIN  __builtin_popcountll: one instruction on CPUs that have one (x86
 *            POPCNT, aarch64 CNT), but a libgcc call (__popcountdi2) on
 *            Cortex-M, which has none. Needs GCC or Clang, else SWAR is used.
 *   SWAR     32-bit SIMD-within-a-register with Harley-Seal carry-save adders:
 *            4 words at a time reduced to one 32-bit count. Integer ops only.
 *   TABLE    a 256-entry byte table (256 bytes of constant data).
 * BINARY_NET_PORTABLE_POPCOUNT (older name) selects SWAR. */
#define BN_POPCOUNT_BUILTIN 1
#define BN_POPCOUNT_SWAR 2
#define BN_POPCOUNT_TABLE 3
#ifndef BN_POPCOUNT
#ifdef BINARY_NET_PORTABLE_POPCOUNT
#define BN_POPCOUNT BN_POPCOUNT_SWAR
#else
#define BN_POPCOUNT @POPCOUNT@
#endif
#endif
#if BN_POPCOUNT == BN_POPCOUNT_BUILTIN && !(defined(__GNUC__) || defined(__clang__))
#undef BN_POPCOUNT
#define BN_POPCOUNT BN_POPCOUNT_SWAR
#endif

#if BN_POPCOUNT == BN_POPCOUNT_BUILTIN

static long bn_xor_popcount(const uint64_t *a, const uint64_t *b, long words)
{
    long k, pc = 0;
    for (k = 0; k < words; k++)
        pc += __builtin_popcountll(a[k] ^ b[k]);
    return pc;
}

#elif BN_POPCOUNT == BN_POPCOUNT_TABLE

static const uint8_t bn_popcount_table[256] = {
#define BN_B2(n) n, n + 1, n + 1, n + 2
#define BN_B4(n) BN_B2(n), BN_B2(n + 1), BN_B2(n + 1), BN_B2(n + 2)
#define BN_B6(n) BN_B4(n), BN_B4(n + 1), BN_B4(n + 1), BN_B4(n + 2)
    BN_B6(0), BN_B6(1), BN_B6(1), BN_B6(2)
#undef BN_B6
#undef BN_B4
#undef BN_B2
};

static long bn_xor_popcount(const uint64_t *a, const uint64_t *b, long words)
{
    long k, pc = 0;
    for (k = 0; k < words; k++) {
        uint64_t x = a[k] ^ b[k];
        uint32_t lo = (uint32_t)x, hi = (uint32_t)(x >> 32);
        pc += bn_popcount_table[lo & 0xff] + bn_popcount_table[(lo >> 8) & 0xff]
              + bn_popcount_table[(lo >> 16) & 0xff] + bn_popcount_table[lo >> 24]
              + bn_popcount_table[hi & 0xff] + bn_popcount_table[(hi >> 8) & 0xff]
              + bn_popcount_table[(hi >> 16) & 0xff] + bn_popcount_table[hi >> 24];
    }
    return pc;
}

#else

/* Bit count of a 32-bit word (SWAR: 2-, 4-, then 8-bit fields, then a multiply). */
static uint32_t bn_popcount32(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
}

/* Carry-save adder: per bit, carry:sum = a + b + c (Harley-Seal). */
#define BN_CSA(carry, sum, a, b, c)                 \
    do {                                            \
        uint32_t u_ = (a) ^ (b), c_ = (c);          \
        carry = ((a) & (b)) | (u_ & c_);            \
        sum = u_ ^ c_;                              \
    } while (0)

/* Harley-Seal over the 32-bit halves: groups of 4 words (8 halves) go through
 * carry-save adders into ones, twos, fours and eights, and only the eights are
 * counted per group; a 32-bit core has no 64-bit SWAR to spare. */
static long bn_xor_popcount(const uint64_t *a, const uint64_t *b, long words)
{
    uint32_t ones = 0, twos = 0, fours = 0, twos_a, twos_b, fours_a, fours_b, eights;
    long k = 0, eights_total = 0, total;
    for (; k + 4 <= words; k += 4) {
        uint64_t x0 = a[k] ^ b[k], x1 = a[k + 1] ^ b[k + 1];
        uint64_t x2 = a[k + 2] ^ b[k + 2], x3 = a[k + 3] ^ b[k + 3];
        BN_CSA(twos_a, ones, ones, (uint32_t)x0, (uint32_t)(x0 >> 32));
        BN_CSA(twos_b, ones, ones, (uint32_t)x1, (uint32_t)(x1 >> 32));
        BN_CSA(fours_a, twos, twos, twos_a, twos_b);
        BN_CSA(twos_a, ones, ones, (uint32_t)x2, (uint32_t)(x2 >> 32));
        BN_CSA(twos_b, ones, ones, (uint32_t)x3, (uint32_t)(x3 >> 32));
        BN_CSA(fours_b, twos, twos, twos_a, twos_b);
        BN_CSA(eights, fours, fours, fours_a, fours_b);
        eights_total += (long)bn_popcount32(eights);
    }
    total = 8 * eights_total + 4 * (long)bn_popcount32(fours) + 2 * (long)bn_popcount32(twos)
            + (long)bn_popcount32(ones);
    for (; k < words; k++) {
        uint64_t x = a[k] ^ b[k];
        total += (long)(bn_popcount32((uint32_t)x) + bn_popcount32((uint32_t)(x >> 32)));
    }
    return total;
}

#undef BN_CSA

#endif

/* Pack the signs of x[0], x[step], ..., x[(n-1)*step]: bit k % 64 of word k / 64
 * is 1 where x >= 0; the unused high bits of the last word are 0. */
static void bn_pack_signs(const int16_t *x, long n, long step, uint64_t *out)
{
    long k, words = (n + 63) / 64;
    for (k = 0; k < words; k++)
        out[k] = 0;
    for (k = 0; k < n; k++)
        if (x[k * step] >= 0)
            out[k >> 6] |= (uint64_t)1 << (k & 63);
}
