#section support_code
/*
 * What every fused Theano op of binary_net.theano_ext shares (loaded through
 * Theano's COp; see binary_net/theano_ext/cop.py): OpenMP, the thread count for
 * an array size, and the reuse of the output kept from the previous call.
 * Theano compiles this as C++, with the -march flags it detects.
 */
#ifndef BINARY_NET_THEANO_EXT_SUPPORT
#define BINARY_NET_THEANO_EXT_SUPPORT
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_max_threads(void) { return 1; }
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Below this many elements the loops run on one thread (thread start-up costs more). */
#define BN_PARALLEL_MIN (1 << 16)
/* Column blocks of the per-column sums (AbsSum, FastElemwise's abs_sum_of). */
#define BN_COL_BLOCK 1024
/* Token pasting after macro expansion: BN_CAT(bn_colsum_, DTYPE_INPUT_0). */
#define BN_CAT_(a, b) a##b
#define BN_CAT(a, b) BN_CAT_(a, b)

static int bn_threads_for(npy_intp size)
{
    return size >= BN_PARALLEL_MIN ? omp_get_max_threads() : 1;
}

/* Drop the output kept from the previous call if it is (a copy of) an input:
   never write into an operand. */
static void bn_forget_if_input(PyArrayObject** out, PyArrayObject* a, PyArrayObject* b)
{
    if (*out && (*out == a || *out == b)) {
        Py_DECREF(*out);
        *out = NULL;
    }
}

/* Make *out a C-contiguous array of the given shape and type, reusing it if it
   already is one. Returns 0 on success, -1 with a Python error set. */
static int bn_prepare_output(PyArrayObject** out, int nd, npy_intp* dims, int typenum)
{
    if (*out && PyArray_NDIM(*out) == nd && PyArray_TYPE(*out) == typenum
        && PyArray_IS_C_CONTIGUOUS(*out) && PyArray_ISWRITEABLE(*out)) {
        int same = 1;
        for (int d = 0; d < nd; ++d) same &= PyArray_DIMS(*out)[d] == dims[d];
        if (same) return 0;
    }
    Py_XDECREF(*out);
    *out = (PyArrayObject*)PyArray_EMPTY(nd, dims, typenum, 0);
    return *out ? 0 : -1;
}
#endif
