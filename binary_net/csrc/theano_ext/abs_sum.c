#section support_code
/* AbsSum: sum(|X|, axis) of a float matrix in one pass, optionally with sign(X). */
#ifndef BINARY_NET_THEANO_EXT_ABS_SUM
#define BINARY_NET_THEANO_EXT_ABS_SUM

/* Per-column sums of |X| for a C-contiguous (n, m) X, accumulated in double
   over i = 0 .. n-1 (the order of Theano's CAReduce), optionally writing
   sign(X) (+1 for x >= 0, else -1) in the same pass. Threads take blocks of
   up to BN_COL_BLOCK columns (dynamically, so that a busy core does not hold
   the others back) and sum each column of a block in that order; blocks of
   4 KiB rows or more keep the hardware prefetchers streaming. */
#define BN_DEFINE_COLSUM(NAME, TYPE)                                            \
static void NAME(const TYPE* X, npy_intp n, npy_intp m, TYPE* sgn, TYPE* out,   \
                 int nthreads)                                                  \
{                                                                               \
    npy_intp width = ((m + nthreads - 1) / nthreads + 15) & ~((npy_intp)15);    \
    if (width > BN_COL_BLOCK) width = BN_COL_BLOCK;                             \
    if (width < 64) width = 64;                                                 \
    npy_intp blocks = (m + width - 1) / width, b;                               \
    _Pragma("omp parallel for schedule(dynamic, 1) num_threads(nthreads)")      \
    for (b = 0; b < blocks; ++b) {                                              \
        npy_intp cb = b * width;                                                \
        npy_intp w = m - cb < width ? m - cb : width;                           \
        double acc[BN_COL_BLOCK];                                               \
        for (npy_intp j = 0; j < w; ++j) acc[j] = 0.0;                          \
        for (npy_intp i = 0; i < n; ++i) {                                      \
            const TYPE* row = X + i * m + cb;                                   \
            if (sgn) {                                                          \
                TYPE* srow = sgn + i * m + cb;                                  \
                for (npy_intp j = 0; j < w; ++j) {                              \
                    TYPE v = row[j];                                            \
                    acc[j] += fabs((double)v);                                  \
                    srow[j] = v >= 0 ? (TYPE)1 : (TYPE)-1;                      \
                }                                                               \
            } else {                                                            \
                for (npy_intp j = 0; j < w; ++j)                                \
                    acc[j] += fabs((double)row[j]);                             \
            }                                                                   \
        }                                                                       \
        for (npy_intp j = 0; j < w; ++j) out[cb + j] = (TYPE)acc[j];            \
    }                                                                           \
}

/* Per-row sums of |X| (over j = 0 .. m-1, in double), optionally with sign(X). */
#define BN_DEFINE_ROWSUM(NAME, TYPE)                                            \
static void NAME(const TYPE* X, npy_intp n, npy_intp m, TYPE* sgn, TYPE* out,   \
                 int nthreads)                                                  \
{                                                                               \
    npy_intp i;                                                                 \
    _Pragma("omp parallel for schedule(dynamic, 8) num_threads(nthreads)")      \
    for (i = 0; i < n; ++i) {                                                   \
        const TYPE* row = X + i * m;                                            \
        double acc = 0.0;                                                       \
        for (npy_intp j = 0; j < m; ++j) acc += fabs((double)row[j]);           \
        if (sgn) {                                                              \
            TYPE* srow = sgn + i * m;                                           \
            for (npy_intp j = 0; j < m; ++j)                                    \
                srow[j] = row[j] >= 0 ? (TYPE)1 : (TYPE)-1;                     \
        }                                                                       \
        out[i] = (TYPE)acc;                                                     \
    }                                                                           \
}

BN_DEFINE_COLSUM(bn_colsum_npy_float32, npy_float32)
BN_DEFINE_COLSUM(bn_colsum_npy_float64, npy_float64)
BN_DEFINE_ROWSUM(bn_rowsum_npy_float32, npy_float32)
BN_DEFINE_ROWSUM(bn_rowsum_npy_float64, npy_float64)
#endif

#section support_code_apply
/* The sums (and, if sgn is not NULL, the signs) of x along axis. 0, or -1 with a
   Python error set. */
static int APPLY_SPECIFIC(bn_abs_sum)(PyArrayObject* x, PyArrayObject** sgn,
                                      PyArrayObject** summed, int axis)
{
    PyArrayObject* xc = PyArray_GETCONTIGUOUS(x);
    if (!xc) return -1;
    npy_intp n = PyArray_DIMS(xc)[0], m = PyArray_DIMS(xc)[1];
    npy_intp sum_dims[1] = {axis == 0 ? m : n};
    bn_forget_if_input(summed, xc, x);
    if (bn_prepare_output(summed, 1, sum_dims, TYPENUM_INPUT_0)) {
        Py_DECREF(xc);
        return -1;
    }
    DTYPE_INPUT_0* sign_data = NULL;
    if (sgn) {
        bn_forget_if_input(sgn, xc, x);
        if (bn_prepare_output(sgn, 2, PyArray_DIMS(xc), TYPENUM_INPUT_0)) {
            Py_DECREF(xc);
            return -1;
        }
        sign_data = (DTYPE_INPUT_0*)PyArray_DATA(*sgn);
    }
    (axis == 0 ? BN_CAT(bn_colsum_, DTYPE_INPUT_0) : BN_CAT(bn_rowsum_, DTYPE_INPUT_0))(
        (const DTYPE_INPUT_0*)PyArray_DATA(xc), n, m, sign_data,
        (DTYPE_INPUT_0*)PyArray_DATA(*summed), bn_threads_for(n * m));
    Py_DECREF(xc);
    return 0;
}

/* The entry points AbsSum calls (its func_name): sums only, or signs and sums. */
int APPLY_SPECIFIC(bn_abs_sum_0)(PyArrayObject* x, PyArrayObject** summed)
{
    return APPLY_SPECIFIC(bn_abs_sum)(x, NULL, summed, 0);
}

int APPLY_SPECIFIC(bn_abs_sum_1)(PyArrayObject* x, PyArrayObject** summed)
{
    return APPLY_SPECIFIC(bn_abs_sum)(x, NULL, summed, 1);
}

int APPLY_SPECIFIC(bn_sign_abs_sum_0)(PyArrayObject* x, PyArrayObject** sgn,
                                      PyArrayObject** summed)
{
    return APPLY_SPECIFIC(bn_abs_sum)(x, sgn, summed, 0);
}

int APPLY_SPECIFIC(bn_sign_abs_sum_1)(PyArrayObject* x, PyArrayObject** sgn,
                                      PyArrayObject** summed)
{
    return APPLY_SPECIFIC(bn_abs_sum)(x, sgn, summed, 1);
}
