#section support_code
/* XnorDot: dot(A, B) of two +-1 float matrices by XNOR-popcount, with the
   packing and product of binary_net.kernels (csrc/xnor_kernels.h), compiled
   here as static functions of this module. */
#ifndef BINARY_NET_THEANO_EXT_XNOR_DOT
#define BINARY_NET_THEANO_EXT_XNOR_DOT
#define XK_EXPORT static __attribute__((unused))
#include "xnor_kernels.h"
#endif

#section support_code_apply
/* z (m, n) = a (m, k) . b (k, n) for a, b of +-1: both packed into 64-bit sign
   words (a by rows, b by columns), b arranged in panels, and each product
   k - 2 popcount(a_row XOR b_col), an exact integer. 0, or -1 with a Python
   error set. */
int APPLY_SPECIFIC(bn_xnor_dot)(PyArrayObject* a, PyArrayObject* b, PyArrayObject** z)
{
#if ITEMSIZE_INPUT_0 == 4
#define BN_XK_PACK xk_pack_f32
#else
#define BN_XK_PACK xk_pack_f64
#endif
    PyArrayObject* ac = PyArray_GETCONTIGUOUS(a);
    PyArrayObject* bc = ac ? PyArray_GETCONTIGUOUS(b) : NULL;
    if (!bc) { Py_XDECREF(ac); return -1; }
    npy_intp m = PyArray_DIMS(ac)[0], k = PyArray_DIMS(ac)[1];
    npy_intp n = PyArray_DIMS(bc)[1];
    if (PyArray_DIMS(bc)[0] != k) {
        PyErr_Format(PyExc_ValueError, "XnorDot: shapes (%ld, %ld) and (%ld, %ld) "
                     "do not align", (long)m, (long)k, (long)PyArray_DIMS(bc)[0], (long)n);
        Py_DECREF(ac); Py_DECREF(bc); return -1;
    }
    npy_intp dims[2] = {m, n};
    bn_forget_if_input(z, ac, a);
    bn_forget_if_input(z, bc, b);
    if (bn_prepare_output(z, 2, dims, TYPENUM_INPUT_0)) {
        Py_DECREF(ac); Py_DECREF(bc); return -1;
    }
    npy_intp kw = (k + 63) / 64;
    npy_intp panel_cols = (n + XK_NR - 1) / XK_NR * XK_NR;
    size_t words = (size_t)((m + n + panel_cols) * kw) + (size_t)(m * n + 1) / 2 + 1;
    uint64_t* bits = (uint64_t*)malloc(sizeof(uint64_t) * words);
    if (!bits) {
        PyErr_NoMemory(); Py_DECREF(ac); Py_DECREF(bc); return -1;
    }
    uint64_t* abits = bits;
    uint64_t* bbits = abits + m * kw;
    uint64_t* panels = bbits + n * kw;
    int32_t* prod = (int32_t*)(panels + panel_cols * kw);
    DTYPE_OUTPUT_0* out = (DTYPE_OUTPUT_0*)PyArray_DATA(*z);
    if (kw == 0) {
        for (npy_intp i = 0; i < m * n; ++i) out[i] = 0;
    } else {
        BN_XK_PACK((const DTYPE_INPUT_0*)PyArray_DATA(ac), m, k, 1, abits, bn_threads_for(m * k));
        BN_XK_PACK((const DTYPE_INPUT_0*)PyArray_DATA(bc), 1, k, n, bbits, bn_threads_for(k * n));
        xk_pack_panels(bbits, n, kw, kw, panels, bn_threads_for(n * kw));
        if (xk_gemm(abits, m, kw, kw, panels, n, k, prod, n, bn_threads_for(m * n * kw))) {
            free(bits); PyErr_NoMemory(); Py_DECREF(ac); Py_DECREF(bc); return -1;
        }
        for (npy_intp i = 0; i < m * n; ++i) out[i] = (DTYPE_OUTPUT_0)prod[i];
    }
    free(bits);
    Py_DECREF(ac);
    Py_DECREF(bc);
    return 0;
#undef BN_XK_PACK
}
