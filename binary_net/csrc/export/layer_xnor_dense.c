
/* XNOR dense layer: y[j] = requant(prod_j * K * alpha[j] + bias[j] * 2^bias_shift)
 * with prod_j = sum_k sign(x_k) sign(w_jk) = n - 2 popcount(x XOR w_j) and
 * K = requant(sum_k |x_k| * recip, k_shift) (the mean |x| in fixed point).
 * With bias_before:
 *   y[j] = requant((prod_j * 2^pre_shift + bias[j] * 2^bias_shift) * K * alpha[j]).
 * A real-valued input (binary_input 0) gives prod_j = sum_k x_k sign(w_jk). */
static void bn_xnor_dense(const int16_t *x, int16_t *y, long n, long units,
                          const uint64_t *w, int binary_input, int scale_input,
                          int64_t recip, int k_shift, const int16_t *alpha,
                          const int16_t *bias, int bias_shift, int bias_before,
                          int pre_shift, int out_shift, uint64_t *xp)
{
    long words = (n + 63) / 64, j, k;
    int64_t K = 1;
    if (binary_input)
        bn_pack_signs(x, n, 1, xp);
    if (scale_input) {
        int64_t s = 0;
        for (k = 0; k < n; k++)
            s += x[k] < 0 ? -(int64_t)x[k] : (int64_t)x[k];
        K = bn_requant(s * recip, k_shift);
    }
    for (j = 0; j < units; j++) {
        const uint64_t *wj = w + j * words;
        int64_t acc = 0;
        if (binary_input) {
            acc = (int64_t)n - 2 * (int64_t)bn_xor_popcount(xp, wj, words);
        } else {
            for (k = 0; k < n; k++)
                acc += ((wj[k >> 6] >> (k & 63)) & 1) ? (int64_t)x[k] : -(int64_t)x[k];
        }
        if (bias_before)
            acc = acc * ((int64_t)1 << pre_shift) + (int64_t)bias[j] * ((int64_t)1 << bias_shift);
        acc *= K;
        if (alpha != NULL)
            acc *= alpha[j];
        if (!bias_before)
            acc += (int64_t)bias[j] * ((int64_t)1 << bias_shift);
        y[j] = bn_requant(acc, out_shift);
    }
}
