
#if (defined(__GNUC__) || defined(__clang__)) && !defined(BINARY_NET_PORTABLE_POPCOUNT)
#define BN_POPCOUNT64(x) __builtin_popcountll(x)
#else
static int bn_popcount64(uint64_t x)
{
    x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
    x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (int)((x * UINT64_C(0x0101010101010101)) >> 56);
}
#define BN_POPCOUNT64(x) bn_popcount64(x)
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
