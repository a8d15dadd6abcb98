
/* Full-precision convolution (cross-correlation, zero padding):
 * y[f,i,j] = requant(sum x * w + bias[f] * 2^bias_shift); w is F x C x fh x fw. */
static void bn_conv(const int16_t *x, int16_t *y, const bn_geometry *g, const int16_t *w,
                    const int16_t *bias, int bias_shift, int out_shift)
{
    long C = g->C, H = g->H, W = g->W, fh = g->fh, fw = g->fw;
    long plane = H * W, oplane = (long)g->OH * g->OW;
    long f, c, oi, oj, u, v;
    for (f = 0; f < g->F; f++)
        for (oi = 0; oi < g->OH; oi++)
            for (oj = 0; oj < g->OW; oj++) {
                int64_t acc = (int64_t)bias[f] * ((int64_t)1 << bias_shift);
                for (c = 0; c < C; c++)
                    for (u = 0; u < fh; u++) {
                        long ii = oi * g->sh - g->ph + u;
                        if (ii < 0 || ii >= H)
                            continue;
                        for (v = 0; v < fw; v++) {
                            long jj = oj * g->sw - g->pw + v;
                            if (jj >= 0 && jj < W)
                                acc += (int32_t)x[c * plane + ii * W + jj]
                                       * (int32_t)w[((f * C + c) * fh + u) * fw + v];
                        }
                    }
                y[f * oplane + oi * g->OW + oj] = bn_requant(acc, out_shift);
            }
}
