
/* XNOR convolution (cross-correlation, zero padding contributing 0):
 * y[f,i,j] = requant(prod * K[i,j] * alpha[f] + bias[f] * 2^bias_shift), where
 * prod sums C - 2 popcount(x XOR w) over the taps inside the image and
 * K[i,j] = requant(sum of |x| over the receptive field * recip, k_shift).
 * w holds F x fh x fw taps of ceil(C/64) words (channels packed). */
static void bn_xnor_conv(const int16_t *x, int16_t *y, const bn_geometry *g,
                         const uint64_t *w, int binary_input, int scale_input,
                         int64_t recip, int k_shift, const int16_t *alpha,
                         const int16_t *bias, int bias_shift, int out_shift,
                         uint64_t *xp, int32_t *absmap)
{
    long C = g->C, H = g->H, W = g->W, F = g->F, fh = g->fh, fw = g->fw;
    long wc = (C + 63) / 64, plane = H * W, oplane = (long)g->OH * g->OW;
    long p, c, f, oi, oj, u, v;
    if (binary_input)
        for (p = 0; p < plane; p++)
            bn_pack_signs(x + p, C, plane, xp + p * wc);
    if (scale_input)
        for (p = 0; p < plane; p++) {
            int32_t s = 0;
            for (c = 0; c < C; c++) {
                int32_t a = x[c * plane + p];
                s += a < 0 ? -a : a;
            }
            absmap[p] = s;
        }
    for (oi = 0; oi < g->OH; oi++)
        for (oj = 0; oj < g->OW; oj++) {
            int64_t K = 1;
            if (scale_input) {
                int64_t s = 0;
                for (u = 0; u < fh; u++) {
                    long ii = oi * g->sh - g->ph + u;
                    if (ii < 0 || ii >= H)
                        continue;
                    for (v = 0; v < fw; v++) {
                        long jj = oj * g->sw - g->pw + v;
                        if (jj >= 0 && jj < W)
                            s += absmap[ii * W + jj];
                    }
                }
                K = bn_requant(s * recip, k_shift);
            }
            for (f = 0; f < F; f++) {
                int64_t acc = 0;
                for (u = 0; u < fh; u++) {
                    long ii = oi * g->sh - g->ph + u;
                    if (ii < 0 || ii >= H)
                        continue;
                    for (v = 0; v < fw; v++) {
                        long jj = oj * g->sw - g->pw + v;
                        const uint64_t *wt = w + ((f * fh + u) * fw + v) * wc;
                        if (jj < 0 || jj >= W)
                            continue;
                        if (binary_input) {
                            const uint64_t *xt = xp + (ii * W + jj) * wc;
                            acc += (int64_t)C - 2 * (int64_t)bn_xor_popcount(xt, wt, wc);
                        } else {
                            for (c = 0; c < C; c++) {
                                int64_t a = x[c * plane + ii * W + jj];
                                acc += ((wt[c >> 6] >> (c & 63)) & 1) ? a : -a;
                            }
                        }
                    }
                }
                acc *= K;
                if (alpha != NULL)
                    acc *= alpha[f];
                acc += (int64_t)bias[f] * ((int64_t)1 << bias_shift);
                y[f * oplane + oi * g->OW + oj] = bn_requant(acc, out_shift);
            }
        }
}
