
/* Max pooling over non-overlapping ph x pw windows; a partial border is dropped. */
static void bn_max_pool(const int16_t *x, int16_t *y, long C, long H, long W, long ph, long pw)
{
    long OH = H / ph, OW = W / pw, c, i, j, u, v;
    for (c = 0; c < C; c++)
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++) {
                int16_t m = x[(c * H + i * ph) * W + j * pw];
                for (u = 0; u < ph; u++)
                    for (v = 0; v < pw; v++) {
                        int16_t a = x[(c * H + i * ph + u) * W + j * pw + v];
                        if (a > m)
                            m = a;
                    }
                y[(c * OH + i) * OW + j] = m;
            }
}
