#section support_code
/*
 * FastSum: Theano's Sum{axis, acc_dtype=float64} of a float tensor, threaded.
 *
 * The axes of x (C-contiguous) are merged into groups of consecutive axes that
 * are all summed or all kept (axes of length 1 are left out). Each output is
 * accumulated in double by one thread, always in the same order, whatever the
 * thread count:
 *  - the last group summed (a batch norm's per-channel sums of an (N, C, H, W)
 *    tensor): threads share out the outputs; each adds its contiguous runs
 *    with 8 running sums (lane k takes elements k, k + 8, ...), then adds the
 *    8 lanes and the runs in order;
 *  - the last group kept (column sums): threads take blocks of up to
 *    BN_COL_BLOCK columns and add the summed rows in order.
 * The summation order differs from Theano's CAReduce, so results agree with it
 * to float64 rounding before the cast, not bit for bit.
 */
#ifndef BINARY_NET_THEANO_EXT_FAST_SUM
#define BINARY_NET_THEANO_EXT_FAST_SUM

#define BN_SUM_MAX_GROUPS 32

typedef struct {
    int n;                               /* groups */
    npy_intp size[BN_SUM_MAX_GROUPS];    /* elements along each group */
    npy_intp stride[BN_SUM_MAX_GROUPS];  /* its stride in x, in elements */
    int summed[BN_SUM_MAX_GROUPS];
} bn_sum_groups;

/* The groups of a C-contiguous x of shape dims, mask bit d set where axis d is summed. */
static void bn_sum_group(int nd, const npy_intp* dims, unsigned long mask, bn_sum_groups* g)
{
    npy_intp stride = 1;
    npy_intp strides[BN_SUM_MAX_GROUPS];
    for (int d = nd - 1; d >= 0; --d) { strides[d] = stride; stride *= dims[d]; }
    g->n = 0;
    for (int d = 0; d < nd; ++d) {
        if (dims[d] == 1) continue;
        int s = (int)((mask >> d) & 1);
        if (g->n && g->summed[g->n - 1] == s
            && g->stride[g->n - 1] == strides[d] * dims[d]) {
            g->size[g->n - 1] *= dims[d];
            g->stride[g->n - 1] = strides[d];
        } else {
            g->size[g->n] = dims[d];
            g->stride[g->n] = strides[d];
            g->summed[g->n] = s;
            g->n++;
        }
    }
}

/* Offset in x of the index'th combination of the groups in which[0..count). */
static npy_intp bn_sum_offset(npy_intp index, const bn_sum_groups* g, const int* which, int count)
{
    npy_intp off = 0;
    for (int k = count - 1; k >= 0; --k) {
        npy_intp size = g->size[which[k]];
        off += (index % size) * g->stride[which[k]];
        index /= size;
    }
    return off;
}

#define BN_DEFINE_FAST_SUM(NAME, TYPE)                                              \
static void NAME(const TYPE* x, int nd, const npy_intp* dims, unsigned long mask,   \
                 TYPE* out, npy_intp nout, int nthreads)                            \
{                                                                                   \
    bn_sum_groups g;                                                                \
    if (nout == 0) return;                                                          \
    bn_sum_group(nd, dims, mask, &g);                                               \
    int kept[BN_SUM_MAX_GROUPS], summed[BN_SUM_MAX_GROUPS], nk = 0, ns = 0;         \
    for (int k = 0; k < g.n; ++k) {                                                 \
        if (g.summed[k]) summed[ns++] = k; else kept[nk++] = k;                     \
    }                                                                               \
    npy_intp nsum = 1;                                                              \
    for (int k = 0; k < ns; ++k) nsum *= g.size[summed[k]];                         \
    if (nsum == 0 || ns == 0) {                                                     \
        npy_intp o;                                                                 \
        for (o = 0; o < nout; ++o)                                                  \
            out[o] = ns ? (TYPE)0 : x[bn_sum_offset(o, &g, kept, nk)];              \
        return;                                                                     \
    }                                                                               \
    if (nk == 0 || g.summed[g.n - 1]) {                                             \
        /* the last group summed: contiguous runs of run elements */                \
        npy_intp run = g.size[g.n - 1], nrun = nsum / run, o;                       \
        _Pragma("omp parallel for schedule(static) num_threads(nthreads)")          \
        for (o = 0; o < nout; ++o) {                                                \
            npy_intp base = bn_sum_offset(o, &g, kept, nk);                         \
            double total = 0.0;                                                     \
            for (npy_intp r = 0; r < nrun; ++r) {                                   \
                const TYPE* p = x + base + bn_sum_offset(r, &g, summed, ns - 1);    \
                double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                          \
                npy_intp j = 0;                                                     \
                for (; j + 8 <= run; j += 8)                                        \
                    for (int k = 0; k < 8; ++k) lane[k] += (double)p[j + k];        \
                double acc = 0.0;                                                   \
                for (int k = 0; k < 8; ++k) acc += lane[k];                         \
                for (; j < run; ++j) acc += (double)p[j];                           \
                total += acc;                                                       \
            }                                                                       \
            out[o] = (TYPE)total;                                                   \
        }                                                                           \
        return;                                                                     \
    }                                                                               \
    /* the last group kept: blocks of columns, rows in order */                     \
    npy_intp cols = g.size[g.n - 1], nrows = nout / cols;                           \
    npy_intp width = ((cols + nthreads - 1) / nthreads + 15) & ~((npy_intp)15);     \
    if (width > BN_COL_BLOCK) width = BN_COL_BLOCK;                                 \
    if (width < 64) width = 64;                                                     \
    npy_intp nblocks = (cols + width - 1) / width, ntask = nrows * nblocks, t;      \
    _Pragma("omp parallel for schedule(dynamic, 1) num_threads(nthreads)")          \
    for (t = 0; t < ntask; ++t) {                                                   \
        npy_intp row = t / nblocks, cb = (t % nblocks) * width;                     \
        npy_intp w = cols - cb < width ? cols - cb : width;                         \
        npy_intp base = bn_sum_offset(row, &g, kept, nk - 1) + cb;                  \
        double acc[BN_COL_BLOCK];                                                   \
        for (npy_intp j = 0; j < w; ++j) acc[j] = 0.0;                              \
        for (npy_intp r = 0; r < nsum; ++r) {                                       \
            const TYPE* p = x + base + bn_sum_offset(r, &g, summed, ns);            \
            for (npy_intp j = 0; j < w; ++j) acc[j] += (double)p[j];                \
        }                                                                           \
        for (npy_intp j = 0; j < w; ++j) out[row * cols + cb + j] = (TYPE)acc[j];   \
    }                                                                               \
}

BN_DEFINE_FAST_SUM(bn_fast_sum_npy_float32, npy_float32)
BN_DEFINE_FAST_SUM(bn_fast_sum_npy_float64, npy_float64)
#endif
