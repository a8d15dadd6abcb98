
/* Popcount of packed signs: bn_xor_popcount(a, b, words) counts the 1 bits of
 * a[k] ^ b[k] over the words. BN_POPCOUNT selects how (the export chose
 * @POPCOUNT_NAME@; -DBN_POPCOUNT=BN_POPCOUNT_BUILTIN|_SWAR|_TABLE overrides it):
 *   BUILTIN  __builtin_popcountll: one instruction on CPUs that have one (x86
 *            POPCNT, aarch64 CNT), but a libgcc call (__popcountdi2) on
 *            Cortex-M, which has none. Needs GCC or Clang, else SWAR is used.
 *   SWAR     32-bit SIMD-within-a-register: bit counts of both halves of a word
 *            summed in nibbles, then in bytes, the bytes of up to 15 words
 *            accumulated before one horizontal sum. Integer ops only.
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

/* Bit counts of the 2-bit fields of x, gathered into its 8 nibbles (each <= 4). */
static uint32_t bn_nibble_counts(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    return (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
}

static long bn_xor_popcount(const uint64_t *a, const uint64_t *b, long words)
{
    long k = 0, pc = 0;
    while (k < words) {
        /* Each word adds at most 16 to each byte: 15 words stay below 256. */
        long end = words - k > 15 ? k + 15 : words;
        uint32_t bytes = 0;
        for (; k < end; k++) {
            uint64_t x = a[k] ^ b[k];
            uint32_t n = bn_nibble_counts((uint32_t)x) + bn_nibble_counts((uint32_t)(x >> 32));
            bytes += (n & 0x0f0f0f0fu) + ((n >> 4) & 0x0f0f0f0fu);
        }
        bytes = (bytes & 0x00ff00ffu) + ((bytes >> 8) & 0x00ff00ffu);
        pc += (long)((bytes + (bytes >> 16)) & 0xffffu);
    }
    return pc;
}

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
