#section support_code
/*
 * TiledMaxPoolGrad: the gradient of max pooling whose windows tile the image
 * (window = stride, no padding, the border rows and columns left out).
 *
 * Theano's MaxPoolGrad zeroes gx, then, for each window, adds gz to every input
 * equal to the window's maximum. With windows that do not overlap each input
 * gets at most one such addition, so gx = x == z ? 0 + gz : 0, which is what
 * this loop writes (0 + gz, so that a -0 gradient becomes +0 as in Theano's).
 * One thread writes each image plane: Theano's numbers, bit for bit.
 */
#ifndef BINARY_NET_THEANO_EXT_MAX_POOL_GRAD
#define BINARY_NET_THEANO_EXT_MAX_POOL_GRAD
#define BN_DEFINE_MAX_POOL_GRAD(NAME, TYPE)                                          \
static void NAME(const TYPE* x, const TYPE* z, const TYPE* gz, TYPE* gx,             \
                 npy_intp planes, npy_intp h, npy_intp w, npy_intp zh, npy_intp zw,  \
                 npy_intp wh, npy_intp ww, int nthreads)                             \
{                                                                                    \
    npy_intp p;                                                                      \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads)")               \
    for (p = 0; p < planes; ++p) {                                                   \
        const TYPE* xp = x + p * h * w;                                              \
        const TYPE* zp = z + p * zh * zw;                                            \
        const TYPE* gp = gz + p * zh * zw;                                           \
        TYPE* op = gx + p * h * w;                                                   \
        for (npy_intp i = 0; i < h; ++i) {                                           \
            const TYPE* xr = xp + i * w;                                             \
            TYPE* orow = op + i * w;                                                 \
            npy_intp r = i / wh;                                                     \
            if (r >= zh) {                                                           \
                for (npy_intp j = 0; j < w; ++j) orow[j] = 0;                        \
                continue;                                                            \
            }                                                                        \
            const TYPE* zr = zp + r * zw;                                            \
            const TYPE* gr = gp + r * zw;                                            \
            for (npy_intp c = 0; c < zw; ++c) {                                      \
                const TYPE m = zr[c], g = (TYPE)0 + gr[c];                           \
                for (npy_intp k = 0; k < ww; ++k)                                    \
                    orow[c * ww + k] = xr[c * ww + k] == m ? g : (TYPE)0;            \
            }                                                                        \
            for (npy_intp j = zw * ww; j < w; ++j) orow[j] = 0;                      \
        }                                                                            \
    }                                                                                \
}
BN_DEFINE_MAX_POOL_GRAD(bn_max_pool_grad_npy_float32, npy_float32)
BN_DEFINE_MAX_POOL_GRAD(bn_max_pool_grad_npy_float64, npy_float64)
#endif

#section support_code_apply
/* gx of max pooling over BN_POOL_WH x BN_POOL_WW tiles. 0, or -1 with a Python error set. */
int APPLY_SPECIFIC(bn_max_pool_grad)(PyArrayObject* x, PyArrayObject* z, PyArrayObject* gz,
                                     PyArrayObject** gx)
{
    npy_intp* xd = PyArray_DIMS(x);
    npy_intp* zd = PyArray_DIMS(z);
    if (PyArray_NDIM(x) != 4 || PyArray_NDIM(z) != 4 || PyArray_NDIM(gz) != 4
        || zd[0] != xd[0] || zd[1] != xd[1] || zd[2] != xd[2] / BN_POOL_WH
        || zd[3] != xd[3] / BN_POOL_WW
        || !PyArray_SAMESHAPE(z, gz)) {
        PyErr_SetString(PyExc_ValueError, "TiledMaxPoolGrad: the shapes of x, z and gz do not match");
        return -1;
    }
    PyArrayObject* xc = PyArray_GETCONTIGUOUS(x);
    PyArrayObject* zc = PyArray_GETCONTIGUOUS(z);
    PyArrayObject* gc = PyArray_GETCONTIGUOUS(gz);
    int status = -1;
    if (xc && zc && gc) {
        bn_forget_if_input(gx, xc, x);
        bn_forget_if_input(gx, gc, gz);
        bn_forget_if_input(gx, zc, z);
        if (!bn_prepare_output(gx, 4, xd, TYPENUM_INPUT_0)) {
            npy_intp size = PyArray_SIZE(xc);
            BN_CAT(bn_max_pool_grad_, DTYPE_INPUT_0)(
                (const DTYPE_INPUT_0*)PyArray_DATA(xc), (const DTYPE_INPUT_0*)PyArray_DATA(zc),
                (const DTYPE_INPUT_0*)PyArray_DATA(gc), (DTYPE_INPUT_0*)PyArray_DATA(*gx),
                xd[0] * xd[1], xd[2], xd[3], zd[2], zd[3], BN_POOL_WH, BN_POOL_WW,
                bn_threads_for(size));
            status = 0;
        }
    }
    Py_XDECREF(xc);
    Py_XDECREF(zc);
    Py_XDECREF(gc);
    return status;
}
