
/* Full-precision dense layer: y[j] = requant(sum_k x_k w[j][k] + bias[j] * 2^bias_shift);
 * w is units x n (transposed). */
static void bn_dense(const int16_t *x, int16_t *y, long n, long units, const int16_t *w,
                     const int16_t *bias, int bias_shift, int out_shift)
{
    long j, k;
    for (j = 0; j < units; j++) {
        const int16_t *wj = w + j * n;
        int64_t acc = (int64_t)bias[j] * ((int64_t)1 << bias_shift);
        for (k = 0; k < n; k++)
            acc += (int32_t)x[k] * (int32_t)wj[k];
        y[j] = bn_requant(acc, out_shift);
    }
}
