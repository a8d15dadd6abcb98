#section support_code
/* Scale: s * X elementwise, out of place (one rounding per element, as numpy's s * D). */
#ifndef BINARY_NET_THEANO_EXT_SCALE
#define BINARY_NET_THEANO_EXT_SCALE
#define BN_DEFINE_SCALE(NAME, TYPE)                                             \
static void NAME(const TYPE* X, npy_intp size, TYPE s, TYPE* out, int nthreads) \
{                                                                               \
    npy_intp i;                                                                 \
    _Pragma("omp parallel for schedule(dynamic, 16384) num_threads(nthreads)")  \
    for (i = 0; i < size; ++i) out[i] = s * X[i];                               \
}
BN_DEFINE_SCALE(bn_scale_npy_float32, npy_float32)
BN_DEFINE_SCALE(bn_scale_npy_float64, npy_float64)
#endif

#section support_code_apply
/* z = s * x. 0, or -1 with a Python error set. */
int APPLY_SPECIFIC(bn_scale)(PyArrayObject* x, PyArrayObject* s, PyArrayObject** z)
{
    PyArrayObject* xc = PyArray_GETCONTIGUOUS(x);
    if (!xc) return -1;
    bn_forget_if_input(z, xc, x);
    if (bn_prepare_output(z, PyArray_NDIM(xc), PyArray_DIMS(xc), TYPENUM_INPUT_0)) {
        Py_DECREF(xc);
        return -1;
    }
    npy_intp size = PyArray_SIZE(xc);
    BN_CAT(bn_scale_, DTYPE_INPUT_0)((const DTYPE_INPUT_0*)PyArray_DATA(xc), size,
                                     ((DTYPE_INPUT_0*)PyArray_DATA(s))[0],
                                     (DTYPE_INPUT_0*)PyArray_DATA(*z), bn_threads_for(size));
    Py_DECREF(xc);
    return 0;
}
