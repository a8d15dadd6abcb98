/*
 * popcount_check.c -- checks bn_xor_popcount() of the export's popcount.c
 * (compiled with -DBN_POPCOUNT=BN_POPCOUNT_BUILTIN, _SWAR or _TABLE) against a
 * bit-by-bit count, for rows of 0..100 words of random, all-ones and all-zero
 * XORs (all ones is the worst case for SWAR's byte accumulators). Prints the
 * number of rows checked; exit status 1 on the first mismatch.
 */
#include <stdint.h>
#include <stdio.h>

#include "popcount.c"

#define MAX_WORDS 100

static uint64_t state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static long reference(const uint64_t *a, const uint64_t *b, long words)
{
    long k, bit, n = 0;
    for (k = 0; k < words; k++)
        for (bit = 0; bit < 64; bit++)
            n += (long)(((a[k] ^ b[k]) >> bit) & 1u);
    return n;
}

int main(void)
{
    static uint64_t a[MAX_WORDS], b[MAX_WORDS];
    long words, k, rows = 0;
    int pattern;
    for (pattern = 0; pattern < 4; pattern++)
        for (words = 0; words <= MAX_WORDS; words++) {
            for (k = 0; k < words; k++) {
                a[k] = next();
                b[k] = pattern == 0 ? next() : pattern == 1 ? ~a[k] : pattern == 2 ? a[k]
                       : a[k] ^ (next() & next());
            }
            if (bn_xor_popcount(a, b, words) != reference(a, b, words)) {
                printf("mismatch: pattern %d, %ld words: %ld, not %ld\n", pattern, words,
                       bn_xor_popcount(a, b, words), reference(a, b, words));
                return 1;
            }
            rows++;
        }
    /* bn_pack_signs is in the same file; keep the compiler quiet about it. */
    (void)bn_pack_signs;
    printf("%ld rows\n", rows);
    return 0;
}
