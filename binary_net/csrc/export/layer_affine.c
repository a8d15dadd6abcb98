
/* Folded batch norm: y = requant(x * scale[c] + offset[c] * 2^offset_shift) per channel. */
static void bn_affine(const int16_t *x, int16_t *y, long channels, long plane,
                      const int16_t *scale, const int16_t *offset, int offset_shift,
                      int out_shift)
{
    long c, p;
    for (c = 0; c < channels; c++) {
        int64_t off = (int64_t)offset[c] * ((int64_t)1 << offset_shift);
        for (p = 0; p < plane; p++)
            y[c * plane + p] = bn_requant((int64_t)x[c * plane + p] * scale[c] + off, out_shift);
    }
}
