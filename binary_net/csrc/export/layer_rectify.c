
/* y = max(x, 0). */
static void bn_rectify(const int16_t *x, int16_t *y, long n)
{
    long k;
    for (k = 0; k < n; k++)
        y[k] = x[k] > 0 ? x[k] : 0;
}
