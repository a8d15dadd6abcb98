"""Fused C ops that make XNOR training fast, and the graph rewrites that use them.

The layers build XNOR-Net's arithmetic out of plain Theano expressions
(``W_binary = sign(W)``, ``alpha = mean(|W|, axis=0)``, ...; see
:mod:`binary_net.binarize`), and :func:`theano.grad` differentiates those. This
module only changes how a *compiled* function computes them. Two global
optimizers, registered in Theano's ``optdb`` under the tag ``binary_net_fused`` when this
module is imported (it is by :mod:`binary_net.training`), rewrite the optimized graph of
the functions this package compiles (:func:`fused_mode`, :func:`function`);
other Theano programs in the same process are never rewritten:

:class:`FuseBinarization` (before elementwise fusion):

* ``Sum{axis, acc_dtype=float64}(abs(X))`` (the sum inside ``alpha``, ``K`` and
  the ``xalpha`` refresh of :func:`binary_net.updates.binary_updates`) becomes
  one pass of :class:`AbsSum` over ``X``, instead of an ``abs`` array followed by
  Theano's slow strided column reduction;
* when the same ``X`` is also binarized (``sign(W)`` and ``alpha`` of one
  layer), both come out of that single pass (``AbsSum(with_sign=True)``);
* ``Dot22Scalar(a, b, s)`` whose twin ``Dot22(a, b)`` is computed anyway (Theano
  folds the 0.1 of Adam's first moment, or the 2 of a variance gradient, into a
  *second* copy of a gradient GEMM) becomes :class:`Scale` of that twin: one
  elementwise pass instead of a duplicated 4096 x 100 x 4096 GEMM;
* a binary layer's forward product ``dot(sign(x), sign(W))`` becomes
  :class:`XnorDot` (64-bit sign words and popcount: exact integers);
* every other ``Dot22`` (numpy's GEMM) becomes :class:`Dot22Into`, which writes
  into the previous call's output instead of allocating 64 MiB each step.
* with a BLAS library linked (:mod:`binary_net.compat` links scipy's
  OpenBLAS), Theano's ``CorrMM`` convolution ops (forward and both gradients)
  become :class:`ParallelCorrMM` and its two gradient twins: the same C code
  with OpenMP over the images of the batch and a single-threaded GEMM per
  image, instead of a multithreaded GEMM per image that scales badly on small
  products.
* a binary convolution's forward product ``CorrMM(sign(x), flip(sign(W)))``
  becomes :class:`XnorCorr`, the popcount kernels of :mod:`binary_net.kernels`
  (exact integers).

:class:`FastElemwiseRewrite` (after fusion and the in-place rewrites): fused
elementwise loops over same-shape arrays and broadcast scalars (Adam's moments,
the clipped weight update, ...) become :class:`FastElemwise`, the same scalar
code in a vectorized OpenMP loop (Theano's own loop is not vectorized there).

Every replacement but the convolutions computes exactly what it replaces: sums
accumulate in float64 in the same order, ``s * D`` is the same single rounding
as ``Dot22Scalar``, a sum of +-1 products is an exact integer, elementwise code
is the same scalar code. The parallel weight gradient adds per-thread partial
sums (another summation order, fixed for a thread count), and the straightforward
graph's GEMMs run in the linked BLAS while :class:`Dot22Into` uses numpy's, so a
seeded run is reproducible with itself and agrees with the straightforward graph
within 1e-4 relative after 20 steps (tests/test_train_speed_numbers.py).

The C code runs its loops with OpenMP (``OMP_NUM_THREADS`` threads; one thread
for small arrays) and is compiled and cached by Theano's own ``cmodule``
machinery, with the ``-march`` flags Theano detects for the machine.
:func:`function` compiles a function that is called many times (the training
step) to keep its buffers between calls.

Switches, for comparisons and debugging:

* ``BINARY_NET_FUSED=0`` in the environment, :func:`set_enabled` or the context
  manager :func:`enabled` turn the rewrites off for functions compiled meanwhile
  (and make :func:`function` plain ``theano.function``);
* ``mode.excluding('binary_net_fused')`` does the same for one function.
"""
import contextlib
import hashlib
import os

import numpy as np
import theano
import theano.scalar as ts
import theano.tensor as T
from theano import gof
from theano.tensor import blas
from theano.tensor.elemwise import Elemwise, Sum
from theano.tensor.nnet import corr


from . import binarize, kernels

# libgomp reads its wait policy when first loaded, i.e. with the first compiled op.
kernels.prefer_sleeping_openmp_threads()

_enabled = os.environ.get('BINARY_NET_FUSED', '1').strip().lower() not in ('0', 'false', 'no', 'off')



class ParallelCorrMM(corr.CorrMM):
    """Theano's CorrMM with OpenMP over the batch (an op unequal to the serial one,
    so that Theano's merge pass does not swap the serial one back in)."""
    __props__ = corr.CorrMM.__props__ + ('openmp',)


class ParallelCorrMMGradWeights(corr.CorrMM_gradWeights):
    """CorrMM_gradWeights with OpenMP over the batch (see :class:`ParallelCorrMM`)."""
    __props__ = corr.CorrMM_gradWeights.__props__ + ('openmp',)


class ParallelCorrMMGradInputs(corr.CorrMM_gradInputs):
    """CorrMM_gradInputs with OpenMP over the batch (see :class:`ParallelCorrMM`)."""
    __props__ = corr.CorrMM_gradInputs.__props__ + ('openmp',)


_CORR_OPS = {corr.CorrMM: ParallelCorrMM, corr.CorrMM_gradWeights: ParallelCorrMMGradWeights,
             corr.CorrMM_gradInputs: ParallelCorrMMGradInputs}

# Below this many elements the loops run on one thread (thread start-up costs more).
_PARALLEL_MIN = 1 << 16


def is_enabled():
    """Whether functions compiled now use the fused ops."""
    return _enabled


def set_enabled(value):
    """Turn the graph rewrite on or off for functions compiled from now on."""
    global _enabled
    _enabled = bool(value)


@contextlib.contextmanager
def enabled(value):
    """Context manager: compile with the rewrite on (True) or off (False)."""
    previous = _enabled
    set_enabled(value)
    try:
        yield
    finally:
        set_enabled(previous)


_C_TYPES = {'float32': 'npy_float32', 'float64': 'npy_float64'}
_NPY_TYPENUMS = {'float32': 'NPY_FLOAT32', 'float64': 'NPY_FLOAT64'}

_SUPPORT_CODE = r"""
#ifndef BINARY_NET_THEANO_OPS_SUPPORT
#define BINARY_NET_THEANO_OPS_SUPPORT
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_max_threads(void) { return 1; }
#endif
#include <math.h>

/* Per-column sums of |X| for a C-contiguous (n, m) X, accumulated in double
   over i = 0 .. n-1 (the order of Theano's CAReduce), optionally writing
   sign(X) (+1 for x >= 0, else -1) in the same pass. Threads take blocks of
   up to BN_COL_BLOCK columns (dynamically, so that a busy core does not hold
   the others back) and sum each column of a block in that order; blocks of
   4 KiB rows or more keep the hardware prefetchers streaming. */
#define BN_COL_BLOCK 1024
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

/* out = s * X elementwise (one rounding per element, as numpy's s * D). */
#define BN_DEFINE_SCALE(NAME, TYPE)                                             \
static void NAME(const TYPE* X, npy_intp size, TYPE s, TYPE* out, int nthreads) \
{                                                                               \
    npy_intp i;                                                                 \
    _Pragma("omp parallel for schedule(dynamic, 16384) num_threads(nthreads)")  \
    for (i = 0; i < size; ++i) out[i] = s * X[i];                               \
}

BN_DEFINE_COLSUM(bn_colsum_npy_float32, npy_float32)
BN_DEFINE_COLSUM(bn_colsum_npy_float64, npy_float64)
BN_DEFINE_ROWSUM(bn_rowsum_npy_float32, npy_float32)
BN_DEFINE_ROWSUM(bn_rowsum_npy_float64, npy_float64)
BN_DEFINE_SCALE(bn_scale_npy_float32, npy_float32)
BN_DEFINE_SCALE(bn_scale_npy_float64, npy_float64)

static int bn_threads_for(npy_intp size)
{
    return size >= %(parallel_min)d ? omp_get_max_threads() : 1;
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

/* ---- XNOR products of +-1 matrices with 64-bit words and popcount ---- */
#include <stdint.h>
#include <string.h>

/* Bit i of the result: the sign bit of element i of the 64 (or fewer) values
   (1 for negative; the operands here are exactly +1 or -1). */
#if defined(__AVX512DQ__) || defined(__AVX__)
#include <immintrin.h>
#endif
static inline uint64_t bn_negmask_npy_float32(const npy_float32* v, npy_intp count)
{
    uint64_t bits = 0;
    npy_intp t = 0;
#if defined(__AVX512DQ__)
    if (count == 64) {
        for (; t < 64; t += 16)
            bits |= (uint64_t)_mm512_movepi32_mask(
                _mm512_castps_si512(_mm512_loadu_ps(v + t))) << t;
        return bits;
    }
#elif defined(__AVX__)
    if (count == 64) {
        for (; t < 64; t += 8)
            bits |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_loadu_ps(v + t)) << t;
        return bits;
    }
#endif
    for (; t < count; ++t) {
        uint32_t u;
        memcpy(&u, v + t, sizeof u);
        bits |= (uint64_t)(u >> 31) << t;
    }
    return bits;
}
static inline uint64_t bn_negmask_npy_float64(const npy_float64* v, npy_intp count)
{
    uint64_t bits = 0;
    npy_intp t = 0;
#if defined(__AVX512DQ__)
    if (count == 64) {
        for (; t < 64; t += 8)
            bits |= (uint64_t)_mm512_movepi64_mask(
                _mm512_castpd_si512(_mm512_loadu_pd(v + t))) << t;
        return bits;
    }
#elif defined(__AVX__)
    if (count == 64) {
        for (; t < 64; t += 4)
            bits |= (uint64_t)(unsigned)_mm256_movemask_pd(_mm256_loadu_pd(v + t)) << t;
        return bits;
    }
#endif
    for (; t < count; ++t) {
        uint64_t u;
        memcpy(&u, v + t, sizeof u);
        bits |= (u >> 63) << t;
    }
    return bits;
}

/* Transpose a 64 x 64 bit matrix in place: afterwards bit i of a[j] is what
   bit j of a[i] was (bit 0 = least significant). */
static inline void bn_transpose64(uint64_t a[64])
{
    uint64_t m = 0x00000000FFFFFFFFULL;
    for (int j = 32; j != 0; j >>= 1, m ^= m << j) {
        for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k | j] ^= t;
            a[k] ^= t << j;
        }
    }
}

/* Pack the rows of an (m, k) matrix: out[r * kw + w] holds the signs of
   elements 64 w .. 64 w + 63 of row r (unused high bits 0). */
#define BN_DEFINE_PACK_ROWS(NAME, TYPE)                                         \
static void NAME(const TYPE* A, npy_intp m, npy_intp k, npy_intp kw,            \
                 uint64_t* out, int nthreads)                                   \
{                                                                               \
    npy_intp r;                                                                 \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads)")          \
    for (r = 0; r < m; ++r)                                                     \
        for (npy_intp w = 0; w < kw; ++w) {                                     \
            npy_intp start = w * 64;                                            \
            out[r * kw + w] = bn_negmask_##TYPE(A + r * k + start,              \
                                               k - start < 64 ? k - start : 64);\
        }                                                                       \
}

/* Pack the columns of a (k, n) matrix: out[c * kw + w] holds the signs of
   elements 64 w .. 64 w + 63 of column c, through 64 x 64 bit transposes. */
#define BN_DEFINE_PACK_COLS(NAME, TYPE)                                         \
static void NAME(const TYPE* B, npy_intp k, npy_intp n, npy_intp kw,            \
                 uint64_t* out, int nthreads)                                   \
{                                                                               \
    npy_intp blocks = (n + 63) / 64, job;                                       \
    _Pragma("omp parallel for schedule(dynamic, 4) num_threads(nthreads)")      \
    for (job = 0; job < blocks * kw; ++job) {                                   \
        npy_intp cb = (job / kw) * 64, w = job %% kw;                           \
        npy_intp cols = n - cb < 64 ? n - cb : 64;                              \
        npy_intp r0 = w * 64, rows = k - r0 < 64 ? k - r0 : 64;                 \
        uint64_t a[64];                                                         \
        for (npy_intp i = 0; i < 64; ++i)                                       \
            a[i] = i < rows ? bn_negmask_##TYPE(B + (r0 + i) * n + cb, cols) : 0; \
        bn_transpose64(a);                                                      \
        for (npy_intp c = 0; c < cols; ++c) out[(cb + c) * kw + w] = a[c];      \
    }                                                                           \
}

/* Number of differing sign bits of two packed rows of kw words. */
static inline int64_t bn_xor_popcount(const uint64_t* a, const uint64_t* b, npy_intp kw)
{
    int64_t ones = 0;
    npy_intp w = 0;
#if defined(__AVX512VPOPCNTDQ__) && defined(__AVX512F__)
    __m512i acc = _mm512_setzero_si512();
    for (; w + 8 <= kw; w += 8)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
            _mm512_loadu_si512((const void*)(a + w)), _mm512_loadu_si512((const void*)(b + w)))));
    ones = _mm512_reduce_add_epi64(acc);
#endif
    for (; w < kw; ++w)
        ones += __builtin_popcountll(a[w] ^ b[w]);
    return ones;
}

/* out (m, n) = A (m, k) . B (k, n) for A, B of +-1, from their packed signs:
   each product is k - 2 popcount(a_row XOR b_col), an exact integer. Threads
   own blocks of columns, whose packed signs stay in cache over all rows. */
#define BN_DEFINE_XNOR_GEMM(NAME, TYPE)                                         \
static void NAME(const uint64_t* a, const uint64_t* b, npy_intp m, npy_intp n,  \
                 npy_intp k, npy_intp kw, TYPE* out, int nthreads)              \
{                                                                               \
    const npy_intp cblock = 128;                                                \
    npy_intp blocks = (n + cblock - 1) / cblock, job;                           \
    _Pragma("omp parallel for schedule(dynamic, 1) num_threads(nthreads)")      \
    for (job = 0; job < blocks; ++job) {                                        \
        npy_intp c0 = job * cblock, c1 = c0 + cblock < n ? c0 + cblock : n;     \
        for (npy_intp r = 0; r < m; ++r) {                                      \
            const uint64_t* ar = a + r * kw;                                    \
            TYPE* orow = out + r * n;                                           \
            for (npy_intp c = c0; c < c1; ++c)                                  \
                orow[c] = (TYPE)(k - 2 * bn_xor_popcount(ar, b + c * kw, kw));  \
        }                                                                       \
    }                                                                           \
}
BN_DEFINE_PACK_ROWS(bn_pack_rows_npy_float32, npy_float32)
BN_DEFINE_PACK_ROWS(bn_pack_rows_npy_float64, npy_float64)
BN_DEFINE_PACK_COLS(bn_pack_cols_npy_float32, npy_float32)
BN_DEFINE_PACK_COLS(bn_pack_cols_npy_float64, npy_float64)
BN_DEFINE_XNOR_GEMM(bn_xnor_gemm_npy_float32, npy_float32)
BN_DEFINE_XNOR_GEMM(bn_xnor_gemm_npy_float64, npy_float64)
#endif
""" % {'parallel_min': _PARALLEL_MIN}

# Part of every op's cache version, so that a change to the shared C code
# never reuses a module compiled from the old one.
_SUPPORT_VERSION = hashlib.sha1(_SUPPORT_CODE.encode()).hexdigest()[:12]


_openmp = []


def _openmp_supported():
    """Whether the C++ compiler builds OpenMP code (Theano's own probe, run once)."""
    if not _openmp:
        try:
            _openmp.append(bool(theano.config.cxx) and gof.op.OpenMPOp.test_gxx_support())
        except Exception:  # a probe that fails means no OpenMP, not a failed import
            _openmp.append(False)
    return _openmp[0]


class _FusedOp(gof.Op):
    """What the ops here share: C support code and OpenMP compile flags."""

    def c_support_code(self):
        return _SUPPORT_CODE

    def c_headers(self):
        return ['<math.h>']

    def c_compile_args(self):
        return ['-O3'] + (['-fopenmp'] if _openmp_supported() else [])

    def c_libraries(self):
        return ['gomp'] if _openmp_supported() else []


class AbsSum(_FusedOp):
    """``sum(|X|, axis)`` of a matrix in one pass, accumulated in float64.

    Equal to Theano's ``Sum{axis, acc_dtype=float64}(abs(X))``. With
    ``with_sign=True`` it also returns ``sign(X)`` (+1 where ``x >= 0``, else
    -1) from the same pass, first; its gradient is then the straight-through
    estimator when ``straight_through`` (as :func:`binary_net.binarize.sign`)
    and zero otherwise.

    Parameters
    ----------
    axis : 0 or 1
        0 sums each column (a dense layer's alpha), 1 each row (K, or a
        flattened convolution's alpha).
    with_sign : bool
    straight_through : bool
    """

    __props__ = ('axis', 'with_sign', 'straight_through')

    def __init__(self, axis, with_sign=False, straight_through=True):
        if axis not in (0, 1):
            raise ValueError('axis must be 0 or 1, got %r' % (axis,))
        self.axis = axis
        self.with_sign = bool(with_sign)
        self.straight_through = bool(straight_through)

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.ndim != 2 or x.dtype not in _C_TYPES:
            raise TypeError('AbsSum needs a float32 or float64 matrix, got %s' % x.type)
        summed = T.TensorType(x.dtype, (x.broadcastable[1 - self.axis],))()
        outputs = [x.type(), summed] if self.with_sign else [summed]
        return gof.Apply(self, [x], outputs)

    def perform(self, node, inputs, outputs):
        (x,) = inputs
        summed = np.abs(x).sum(axis=self.axis, dtype=np.float64).astype(x.dtype)
        if self.with_sign:
            outputs[0][0] = np.where(x >= 0, 1, -1).astype(x.dtype)
            outputs[1][0] = summed
        else:
            outputs[0][0] = summed

    def infer_shape(self, node, shapes):
        (shape,) = shapes
        summed = (shape[1 - self.axis],)
        return [shape, summed] if self.with_sign else [summed]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        g_sum = output_grads[-1]
        total = x.zeros_like()
        if not isinstance(g_sum.type, theano.gradient.DisconnectedType):
            pattern = ('x', 0) if self.axis == 0 else (0, 'x')
            total = total + g_sum.dimshuffle(pattern) * T.sgn(x)
        if self.with_sign and self.straight_through:
            g_sign = output_grads[0]
            if not isinstance(g_sign.type, theano.gradient.DisconnectedType):
                total = total + g_sign * T.cast(T.le(abs(x), 1), g_sign.dtype)
        return [total]

    def connection_pattern(self, node):
        return [[True] * len(node.outputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        (x,) = inputs
        if self.with_sign:
            sgn, summed = outputs
        else:
            sgn, summed = None, outputs[0]
        dtype = node.inputs[0].dtype
        ctype, typenum = _C_TYPES[dtype], _NPY_TYPENUMS[dtype]
        kernel = ('bn_colsum_' if self.axis == 0 else 'bn_rowsum_') + ctype
        fail = sub['fail']
        code = """
        {
            PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
            if (!xc) %(fail)s
            npy_intp n = PyArray_DIMS(xc)[0], m = PyArray_DIMS(xc)[1];
            npy_intp sum_dims[1] = {%(axis)d == 0 ? m : n};
            bn_forget_if_input(&%(summed)s, xc, %(x)s);
            if (bn_prepare_output(&%(summed)s, 1, sum_dims, %(typenum)s)) {
                Py_DECREF(xc);
                %(fail)s
            }
            %(ctype)s* sign_data = NULL;
        """
        if sgn is not None:
            code += """
            bn_forget_if_input(&%(sgn)s, xc, %(x)s);
            if (bn_prepare_output(&%(sgn)s, 2, PyArray_DIMS(xc), %(typenum)s)) {
                Py_DECREF(xc);
                %(fail)s
            }
            sign_data = (%(ctype)s*)PyArray_DATA(%(sgn)s);
            """
        code += """
            %(kernel)s((const %(ctype)s*)PyArray_DATA(xc), n, m, sign_data,
                       (%(ctype)s*)PyArray_DATA(%(summed)s), bn_threads_for(n * m));
            Py_DECREF(xc);
        }
        """
        return code % dict(x=x, sgn=sgn, summed=summed, ctype=ctype, typenum=typenum,
                           kernel=kernel, fail=fail, axis=self.axis)

    def c_code_cache_version(self):
        return (2, _SUPPORT_VERSION)


class Scale(_FusedOp):
    """``s * X`` for a matrix ``X`` and a scalar ``s`` of its dtype (out of place).

    Replaces ``Dot22Scalar(a, b, s)`` by ``Scale(Dot22(a, b), s)`` where that
    ``Dot22`` is computed anyway; numpy's ``s * dot(a, b)`` rounds the same way.
    """

    __props__ = ()

    def make_node(self, x, s):
        x = T.as_tensor_variable(x)
        s = T.as_tensor_variable(s)
        if x.dtype not in _C_TYPES or s.dtype != x.dtype or s.ndim != 0:
            raise TypeError('Scale needs a float tensor and a scalar of its dtype, '
                            'got %s and %s' % (x.type, s.type))
        return gof.Apply(self, [x, s], [x.type()])

    def perform(self, node, inputs, outputs):
        x, s = inputs
        outputs[0][0] = np.asarray(s * x, dtype=x.dtype)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, output_grads):
        x, s = inputs
        (gz,) = output_grads
        return [gz * s, T.sum(gz * x).astype(s.dtype)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, s = inputs
        (z,) = outputs
        dtype = node.inputs[0].dtype
        return """
        {
            PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
            if (!xc) %(fail)s
            bn_forget_if_input(&%(z)s, xc, %(x)s);
            if (bn_prepare_output(&%(z)s, PyArray_NDIM(xc), PyArray_DIMS(xc), %(typenum)s)) {
                Py_DECREF(xc);
                %(fail)s
            }
            npy_intp size = PyArray_SIZE(xc);
            bn_scale_%(ctype)s((const %(ctype)s*)PyArray_DATA(xc), size,
                               ((%(ctype)s*)PyArray_DATA(%(s)s))[0],
                               (%(ctype)s*)PyArray_DATA(%(z)s), bn_threads_for(size));
            Py_DECREF(xc);
        }
        """ % dict(x=x, s=s, z=z, fail=sub['fail'], ctype=_C_TYPES[dtype],
                   typenum=_NPY_TYPENUMS[dtype])

    def c_code_cache_version(self):
        return (2, _SUPPORT_VERSION)


class Dot22Into(gof.Op):
    """``dot(x, y)`` of two matrices, written into the previous call's output.

    Theano's ``Dot22`` (a Python op when Theano has no BLAS of its own) lets
    numpy allocate a fresh result on every call, and a fresh 64 MiB gradient
    costs more in page faults than the GEMM spends writing it. This op passes
    the output kept from the previous call (functions compiled by
    :func:`function` keep it) to ``numpy.dot(out=...)``: the same BLAS call,
    the same numbers, no new memory.
    """

    __props__ = ()

    def make_node(self, x, y):
        x, y = T.as_tensor_variable(x), T.as_tensor_variable(y)
        if x.ndim != 2 or y.ndim != 2 or x.dtype != y.dtype:
            raise TypeError('Dot22Into needs two matrices of one dtype, got %s and %s'
                            % (x.type, y.type))
        out = T.TensorType(x.dtype, (x.broadcastable[0], y.broadcastable[1]))()
        return gof.Apply(self, [x, y], [out])

    def perform(self, node, inputs, outputs):
        x, y = inputs
        z = outputs[0][0]
        if (z is not None and z.shape == (x.shape[0], y.shape[1])
                and z.dtype == node.outputs[0].dtype and z.flags.c_contiguous
                and z.flags.writeable and not np.may_share_memory(z, x)
                and not np.may_share_memory(z, y)):
            np.dot(x, y, out=z)
        else:
            outputs[0][0] = np.asarray(np.dot(x, y), dtype=node.outputs[0].dtype)

    def infer_shape(self, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def grad(self, inputs, output_grads):
        x, y = inputs
        (gz,) = output_grads
        return [T.dot(gz, y.T), T.dot(x.T, gz)]


class XnorDot(_FusedOp):
    """``dot(A, B)`` for matrices whose entries are all +1 or -1, by XNOR-popcount.

    Both operands are packed into 64-bit sign words (B by columns, through
    64 x 64 bit transposes), and each product is ``k - 2 popcount(a XOR b)``:
    an exact integer, so the result equals the float GEMM's bit for bit (every
    partial sum of +-1 products is an integer below 2**24). The rewrite uses
    it for a binary layer's forward product ``sign(x) . sign(W)`` only, where
    both operands are outputs of a sign; on other values it is wrong.
    """

    __props__ = ()

    def make_node(self, a, b):
        a, b = T.as_tensor_variable(a), T.as_tensor_variable(b)
        if a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.dtype not in _C_TYPES:
            raise TypeError('XnorDot needs two float matrices of one dtype, got %s and %s'
                            % (a.type, b.type))
        out = T.TensorType(a.dtype, (a.broadcastable[0], b.broadcastable[1]))()
        return gof.Apply(self, [a, b], [out])

    def perform(self, node, inputs, outputs):
        a, b = inputs
        outputs[0][0] = np.asarray(np.dot(a, b), dtype=node.outputs[0].dtype)

    def infer_shape(self, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def grad(self, inputs, output_grads):
        a, b = inputs
        (gz,) = output_grads
        return [T.dot(gz, b.T), T.dot(a.T, gz)]

    def c_code(self, node, name, inputs, outputs, sub):
        a, b = inputs
        (z,) = outputs
        dtype = node.inputs[0].dtype
        return """
        {
            PyArrayObject* ac = PyArray_GETCONTIGUOUS(%(a)s);
            PyArrayObject* bc = ac ? PyArray_GETCONTIGUOUS(%(b)s) : NULL;
            if (!bc) { Py_XDECREF(ac); %(fail)s }
            npy_intp m = PyArray_DIMS(ac)[0], k = PyArray_DIMS(ac)[1];
            npy_intp n = PyArray_DIMS(bc)[1];
            if (PyArray_DIMS(bc)[0] != k) {
                PyErr_Format(PyExc_ValueError, "XnorDot: shapes (%%ld, %%ld) and (%%ld, %%ld) "
                             "do not align", (long)m, (long)k, (long)PyArray_DIMS(bc)[0], (long)n);
                Py_DECREF(ac); Py_DECREF(bc); %(fail)s
            }
            npy_intp dims[2] = {m, n};
            bn_forget_if_input(&%(z)s, ac, %(a)s);
            bn_forget_if_input(&%(z)s, bc, %(b)s);
            if (bn_prepare_output(&%(z)s, 2, dims, %(typenum)s)) {
                Py_DECREF(ac); Py_DECREF(bc); %(fail)s
            }
            npy_intp kw = (k + 63) / 64;
            uint64_t* bits = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)((m + n) * kw + 1));
            if (!bits) {
                PyErr_NoMemory(); Py_DECREF(ac); Py_DECREF(bc); %(fail)s
            }
            uint64_t* abits = bits;
            uint64_t* bbits = bits + m * kw;
            bn_pack_rows_%(ctype)s((const %(ctype)s*)PyArray_DATA(ac), m, k, kw, abits,
                                   bn_threads_for(m * k));
            bn_pack_cols_%(ctype)s((const %(ctype)s*)PyArray_DATA(bc), k, n, kw, bbits,
                                   bn_threads_for(k * n));
            bn_xnor_gemm_%(ctype)s(abits, bbits, m, n, k, kw,
                                   (%(ctype)s*)PyArray_DATA(%(z)s), bn_threads_for(m * n * kw));
            free(bits);
            Py_DECREF(ac);
            Py_DECREF(bc);
        }
        """ % dict(a=a, b=b, z=z, fail=sub['fail'], ctype=_C_TYPES[dtype],
                   typenum=_NPY_TYPENUMS[dtype])

    def c_code_cache_version(self):
        return (4, _SUPPORT_VERSION)


class XnorCorr(gof.Op):
    """Cross-correlation of two +-1 tensors by XNOR-popcount (the forward product
    of a binary convolution in training), computed by :class:`binary_net.kernels.PackedConv2D`.

    ``XnorCorr(pad, stride)(x, w)`` equals Theano's ``CorrMM`` with border
    ``pad`` and subsample ``stride`` for ``x`` (N, C, H, W) and ``w`` (F, C, fh,
    fw) whose entries are all +1 or -1, zero padding contributing 0: every
    output is an exact integer, so the result is bit-identical to the float
    convolution's. The rewrite uses it only where both operands come from a sign.
    """

    __props__ = ('pad', 'stride')

    def __init__(self, pad=(0, 0), stride=(1, 1)):
        self.pad = tuple(int(v) for v in pad)
        self.stride = tuple(int(v) for v in stride)

    def make_node(self, x, w):
        x, w = T.as_tensor_variable(x), T.as_tensor_variable(w)
        if x.ndim != 4 or w.ndim != 4 or x.dtype != w.dtype or x.dtype not in _C_TYPES:
            raise TypeError('XnorCorr needs two 4-D float tensors of one dtype')
        out = T.TensorType(x.dtype, (x.broadcastable[0], w.broadcastable[0], False, False))()
        return gof.Apply(self, [x, w], [out])

    def perform(self, node, inputs, outputs):
        x, w = inputs
        conv = kernels.PackedConv2D(w, stride=self.stride, pad=self.pad)
        outputs[0][0] = conv.conv_signs(x).astype(node.outputs[0].dtype)


def _xnor_corr_geometry(op):
    """(pad, stride) if a CorrMM op is a plain symmetric-padded correlation, else None."""
    if op.filter_dilation != (1, 1) or op.num_groups != 1 or op.unshared:
        return None
    border = op.border_mode
    if isinstance(border, tuple) and all(isinstance(b, tuple) for b in border):
        if any(lo != hi for lo, hi in border):
            return None
        pad = tuple(lo for lo, _ in border)
    elif isinstance(border, tuple):
        pad = tuple(border)
    elif border == 'valid':
        pad = (0, 0)
    else:
        return None
    return pad, tuple(op.subsample)


class FastElemwise(_FusedOp):
    """A Theano ``Elemwise`` run as one flat, vectorized OpenMP loop.

    For elementwise nodes whose operands are arrays of the output's shape or
    broadcast scalars. Theano's own loop reads broadcast scalars through
    pointers that may alias the output, so gcc does not vectorize it (the
    fused Adam + clip update of a binary layer runs 3x slower than the float
    layer's, for that reason alone); here the scalars are loaded once, the
    arrays are flattened (C-contiguous), and the loop is ``omp parallel for
    simd``. The per-element code is the scalar op's own C code, so every
    element is computed by the same operations in the same order. In-place
    patterns are kept.

    With ``abs_sum_of=q`` (a matrix output ``q``) it also returns the column
    sums of ``|output q|``, accumulated in float64 row after row, as
    :class:`AbsSum` (axis 0) would compute them in a second pass: the binary
    layers' clipped weight update and its ``xalpha`` refresh in one pass.

    Parameters
    ----------
    elemwise : theano.tensor.Elemwise
        The op it replaces.
    abs_sum_of : int or None
    """

    __props__ = ('elemwise', 'abs_sum_of')

    def __init__(self, elemwise, abs_sum_of=None):
        self.elemwise = elemwise
        self.abs_sum_of = abs_sum_of
        self.destroy_map = {out: [inp] for out, inp in elemwise.inplace_pattern.items()}

    def __str__(self):
        if self.abs_sum_of is None:
            return 'FastElemwise{%s}' % self.elemwise
        return 'FastElemwise{%s, abs_sum_of=%d}' % (self.elemwise, self.abs_sum_of)

    def make_node(self, *inputs):
        node = self.elemwise.make_node(*inputs)
        outputs = [o.type() for o in node.outputs]
        if self.abs_sum_of is not None:
            summed = node.outputs[self.abs_sum_of]
            if summed.ndim != 2 or summed.dtype not in _C_TYPES:
                raise TypeError('abs_sum_of needs a float matrix output, got %s' % summed.type)
            outputs.append(T.TensorType(summed.dtype, (summed.broadcastable[1],))())
        return gof.Apply(self, node.inputs, outputs)

    def _elemwise_node(self, node):
        if not hasattr(node.tag, 'elemwise_node'):
            node.tag.elemwise_node = self.elemwise.make_node(*node.inputs)
        return node.tag.elemwise_node

    def _elemwise_outputs(self, node):
        return node.outputs if self.abs_sum_of is None else node.outputs[:-1]

    def perform(self, node, inputs, outputs):
        enode = self._elemwise_node(node)
        self.elemwise.prepare_node(enode, None, None, 'py')
        self.elemwise.perform(enode, inputs, outputs[:len(enode.outputs)])
        if self.abs_sum_of is not None:
            value = outputs[self.abs_sum_of][0]
            outputs[-1][0] = np.abs(value).sum(axis=0, dtype=np.float64).astype(value.dtype)

    def infer_shape(self, node, shapes):
        out_shapes = self.elemwise.infer_shape(self._elemwise_node(node), shapes)
        if self.abs_sum_of is not None:
            out_shapes = list(out_shapes) + [(out_shapes[self.abs_sum_of][1],)]
        return out_shapes

    def _scalar_node(self, node):
        fake = gof.Apply(self.elemwise.scalar_op,
                         [ts.get_scalar_type(dtype=i.type.dtype).make_variable()
                          for i in node.inputs],
                         [ts.get_scalar_type(dtype=o.type.dtype).make_variable()
                          for o in self._elemwise_outputs(node)])
        self.elemwise.scalar_op.prepare_node(fake, None, None, 'c')
        return fake

    def task_code(self, node, name, inames, onames, fail):
        return self.elemwise.scalar_op.c_code(
            self._scalar_node(node), name + '_scalar_', ['%s_i' % n for n in inames],
            ['%s_i' % n for n in onames], {'fail': fail})

    def _scalar_part(self, method, *args):
        """What the scalar op's ``c_*`` method returns, or '' / [] if it has none."""
        try:
            return getattr(self.elemwise.scalar_op, method)(*args)
        except gof.utils.MethodNotDefined:
            return '' if method.startswith('c_support') else []

    def c_support_code(self):
        return _SUPPORT_CODE + '\n' + self._scalar_part('c_support_code')

    def c_support_code_apply(self, node, name):
        return self._scalar_part('c_support_code_apply', self._scalar_node(node),
                                 name + '_scalar_')

    def c_headers(self):
        return _FusedOp.c_headers(self) + list(self._scalar_part('c_headers'))

    def c_compile_args(self):
        return (_FusedOp.c_compile_args(self) + ['-fno-math-errno']
                + list(self._scalar_part('c_compile_args')))

    def c_libraries(self):
        return _FusedOp.c_libraries(self) + list(self._scalar_part('c_libraries'))

    def c_code_cache_version_apply(self, node):
        version = self.elemwise.scalar_op.c_code_cache_version_apply(self._scalar_node(node))
        if not version:
            return ()
        return (3, _SUPPORT_VERSION, version, tuple(i.type.dtype for i in node.inputs),
                tuple(o.type.dtype for o in node.outputs))

    def c_code(self, node, name, inames, onames, sub):
        fail = sub['fail']
        sum_name = None
        if self.abs_sum_of is not None:
            onames, sum_name = list(onames[:-1]), onames[-1]
        scalar = [all(i.broadcastable) for i in node.inputs]
        ctype = lambda v: 'npy_' + v.type.dtype  # noqa: E731
        num = len(node.inputs)
        first = scalar.index(False)
        lines = ['{', 'PyArrayObject* bn_c[%d] = {0};' % num]
        cleanup = 'for (int k = 0; k < %d; ++k) Py_XDECREF(bn_c[k]);' % num
        on_fail = '{ %s %s }' % (cleanup, fail)
        for k, iname in enumerate(inames):
            if not scalar[k]:
                lines.append('bn_c[%d] = PyArray_GETCONTIGUOUS(%s); if (!bn_c[%d]) %s'
                             % (k, iname, k, on_fail))
        lines.append('int bn_nd = PyArray_NDIM(bn_c[%d]); npy_intp* bn_dims = '
                     'PyArray_DIMS(bn_c[%d]);' % (first, first))
        for k in range(num):
            if not scalar[k] and k != first:
                lines.append(
                    'if (PyArray_NDIM(bn_c[{k}]) != bn_nd || !PyArray_CompareLists('
                    'PyArray_DIMS(bn_c[{k}]), bn_dims, bn_nd)) {{ PyErr_SetString('
                    'PyExc_ValueError, "FastElemwise: input shapes differ"); {f} }}'
                    .format(k=k, f=on_fail))
        for k, iname in enumerate(inames):
            if scalar[k]:
                lines.append('if (PyArray_SIZE(%s) != 1) { PyErr_SetString(PyExc_ValueError, '
                             '"FastElemwise: broadcast input of size != 1"); %s }'
                             % (iname, on_fail))
        for o, oname in enumerate(onames):
            if o in self.destroy_map:
                k = self.destroy_map[o][0]
                lines.append('Py_XDECREF(%s); %s = bn_c[%d]; Py_INCREF(%s);'
                             % (oname, oname, k, oname))
            else:
                typenum = 'NPY_' + node.outputs[o].dtype.upper()
                lines.append('if (%s) { for (int k = 0; k < %d; ++k) if (bn_c[k] == %s) '
                             '{ Py_DECREF(%s); %s = NULL; break; } }'
                             % (oname, num, oname, oname, oname))
                lines.append('if (bn_prepare_output(&%s, bn_nd, bn_dims, %s)) %s'
                             % (oname, typenum, on_fail))
        lines.append('npy_intp bn_n = PyArray_SIZE(bn_c[%d]);' % first)
        seen = set()
        for k, iname in enumerate(inames):
            if iname in seen:
                continue
            seen.add(iname)
            t = ctype(node.inputs[k])
            if scalar[k]:
                lines.append('const %s %s_s = ((%s*)PyArray_DATA(%s))[0];' % (t, iname, t, iname))
            else:
                lines.append('const %s* %s_p = (const %s*)PyArray_DATA(bn_c[%d]);'
                             % (t, iname, t, k))
        for o, oname in enumerate(onames):
            t = ctype(node.outputs[o])
            lines.append('%s* %s_p = (%s*)PyArray_DATA(%s);' % (t, oname, t, oname))
        lines.append('int bn_threads = bn_threads_for(bn_n);')
        body = []
        seen = set()
        for k, iname in enumerate(inames):
            if iname in seen:
                continue
            seen.add(iname)
            t = ctype(node.inputs[k])
            body.append('    %s %s_i = %s;' % (t, iname, ('%s_s' % iname) if scalar[k]
                                               else '%s_p[bn_i]' % iname))
        for o, oname in enumerate(onames):
            body.append('    %s %s_i;' % (ctype(node.outputs[o]), oname))
        body.append('    {')
        body.append(self.task_code(node, name, inames, onames, fail))
        body.append('    }')
        for oname in onames:
            body.append('    %s_p[bn_i] = %s_i;' % (oname, oname))
        if sum_name is None:
            lines.append('#pragma omp parallel for simd schedule(dynamic, 16384) '
                         'num_threads(bn_threads)')
            lines.append('for (npy_intp bn_i = 0; bn_i < bn_n; ++bn_i) {')
            lines.extend(body)
            lines.append('}')
        else:
            # Column blocks (as bn_colsum_*), rows in order, |output| summed in double.
            t = ctype(node.outputs[-1])
            summed = onames[self.abs_sum_of]
            lines.append("""
npy_intp bn_rows = bn_dims[0], bn_cols = bn_dims[1];
npy_intp bn_sum_dims[1] = {bn_cols};
if (bn_prepare_output(&%(s)s, 1, bn_sum_dims, %(typenum)s)) %(on_fail)s
%(t)s* bn_sum_p = (%(t)s*)PyArray_DATA(%(s)s);
npy_intp bn_width = ((bn_cols + bn_threads - 1) / bn_threads + 15) & ~((npy_intp)15);
if (bn_width > BN_COL_BLOCK) bn_width = BN_COL_BLOCK;
if (bn_width < 64) bn_width = 64;
npy_intp bn_blocks = (bn_cols + bn_width - 1) / bn_width, bn_b;
#pragma omp parallel for schedule(dynamic, 1) num_threads(bn_threads)
for (bn_b = 0; bn_b < bn_blocks; ++bn_b) {
  npy_intp bn_cb = bn_b * bn_width;
  npy_intp bn_w = bn_cols - bn_cb < bn_width ? bn_cols - bn_cb : bn_width;
  double bn_acc[BN_COL_BLOCK];
  for (npy_intp j = 0; j < bn_w; ++j) bn_acc[j] = 0.0;
  for (npy_intp bn_r = 0; bn_r < bn_rows; ++bn_r) {
    npy_intp bn_base = bn_r * bn_cols + bn_cb;
    #pragma omp simd
    for (npy_intp bn_j = 0; bn_j < bn_w; ++bn_j) {
      npy_intp bn_i = bn_base + bn_j;
""" % dict(s=sum_name, typenum=_NPY_TYPENUMS[node.outputs[-1].dtype], on_fail=on_fail,
           t=t))
            lines.extend(body)
            lines.append('      bn_acc[bn_j] += fabs((double)%s_i);' % summed)
            lines.append("""    }
  }
  for (npy_intp j = 0; j < bn_w; ++j) bn_sum_p[bn_cb + j] = (%s)bn_acc[j];
}""" % t)
        lines.append(cleanup)
        lines.append('}')
        return '\n'.join(lines)


def _fast_elemwise_eligible(node):
    """Whether ``node`` is an Elemwise that :class:`FastElemwise` can run."""
    if type(node.op) is not Elemwise:
        return False
    out = node.outputs[0]
    if out.ndim == 0 or all(out.broadcastable):
        return False
    pattern = out.broadcastable
    if any(o.broadcastable != pattern for o in node.outputs):
        return False
    for v in node.inputs + node.outputs:
        if v.type.dtype not in ('float32', 'float64', 'int8', 'int16', 'int32', 'int64',
                                'uint8', 'uint16', 'uint32', 'uint64', 'bool'):
            return False
    scalar = [all(i.broadcastable) for i in node.inputs]
    for i, is_scalar in zip(node.inputs, scalar):
        if not is_scalar and i.broadcastable != pattern:
            return False
    if all(scalar):
        return False
    if any(scalar[i] for i in node.op.inplace_pattern.values()):
        return False
    op = FastElemwise(node.op)
    try:
        apply = gof.Apply(op, node.inputs, [o.type() for o in node.outputs])
        if not op.c_code_cache_version_apply(apply):
            return False
        names = ['V%d' % k for k in range(len(node.inputs))]
        code = op.task_code(apply, 'probe', names, ['O%d' % k for k in range(len(node.outputs))],
                            'BN_FAIL_MARKER')
    except (gof.utils.MethodNotDefined, NotImplementedError, TypeError):
        return False
    return 'BN_FAIL_MARKER' not in code


# ---------------------------------------------------------------------------
# The graph rewrite
# ---------------------------------------------------------------------------

def _is_sign(node):
    return (isinstance(node.op, Elemwise)
            and isinstance(node.op.scalar_op, binarize.ScalarSign))


def _is_binary(var):
    """True if every entry of ``var`` is +1 or -1: the output of a sign."""
    owner = var.owner
    if owner is None:
        return False
    if isinstance(owner.op, (T.Subtensor, T.DimShuffle)):   # flips, transposes
        return _is_binary(owner.inputs[0])
    if isinstance(owner.op, AbsSum):
        return owner.op.with_sign and var.index == 0
    return _is_sign(owner)


def _abs_sum_pattern(node):
    """(X, axis) if ``node`` is ``Sum{axis, acc_dtype=float64}(abs(X))`` on a
    float matrix with the output in X's dtype, else None."""
    if type(node.op) is not Sum or node.op.acc_dtype != 'float64':
        return None
    if node.op.axis is None or len(node.op.axis) != 1 or node.op.axis[0] not in (0, 1):
        return None
    (inner,) = node.inputs
    if inner.owner is None or not isinstance(inner.owner.op, Elemwise):
        return None
    if not isinstance(inner.owner.op.scalar_op, ts.Abs):
        return None
    (x,) = inner.owner.inputs
    if x.ndim != 2 or x.dtype not in _C_TYPES or node.outputs[0].dtype != x.dtype:
        return None
    return x, node.op.axis[0]


def _same_variable(a, b, depth=3):
    """True if a and b are the same variable or the same computation of it."""
    if a is b:
        return True
    if depth == 0 or a.owner is None or b.owner is None:
        return False
    if a.owner.op != b.owner.op or a.index != b.index:
        return False
    if len(a.owner.inputs) != len(b.owner.inputs):
        return False
    return all(_same_variable(x, y, depth - 1)
               for x, y in zip(a.owner.inputs, b.owner.inputs))


class FuseBinarization(gof.Optimizer):
    """Rewrites abs-sums, sign + alpha pairs and duplicated GEMMs (see the module doc)."""

    def add_requirements(self, fgraph):
        fgraph.attach_feature(gof.toolbox.ReplaceValidate())

    def apply(self, fgraph):
        if not _enabled:
            return
        self._fuse_abs_sums(fgraph)
        self._share_duplicated_dots(fgraph)
        self._reuse_dot_outputs(fgraph)
        self._parallel_convolutions(fgraph)

    @staticmethod
    def _parallel_convolutions(fgraph):
        """CorrMM ops (forward, weight and input gradients) with OpenMP over the
        batch, one single-threaded BLAS GEMM per image, when a BLAS library is
        linked: a multithreaded GEMM per small image product scales badly. The
        weight gradient then sums per-thread partial sums (another summation
        order, fixed for a given thread count)."""
        if not theano.config.blas.ldflags or theano.config.cxx == '':
            return
        for node in list(fgraph.apply_nodes):
            if type(node.op) not in _CORR_OPS or node not in fgraph.apply_nodes:
                continue
            op = node.op
            geometry = _xnor_corr_geometry(op)
            if (type(op) is corr.CorrMM and geometry is not None
                    and all(_is_binary(v) for v in node.inputs)):
                new = XnorCorr(*geometry)(*node.inputs)
                if new.type == node.outputs[0].type:
                    try:
                        fgraph.replace_all_validate([(node.outputs[0], new)],
                                                    reason='binary_net_fused')
                        continue
                    except gof.InconsistencyError:
                        pass
            new_op = _CORR_OPS[type(op)](border_mode=op.border_mode, subsample=op.subsample,
                              filter_dilation=op.filter_dilation,
                              num_groups=op.num_groups, unshared=op.unshared,
                              openmp=True)
            # the same inputs (the gradients' shape inputs included), the same types
            new = gof.Apply(new_op, list(node.inputs),
                            [out.type() for out in node.outputs]).outputs[0]
            try:
                fgraph.replace_all_validate([(node.outputs[0], new)],
                                            reason='binary_net_fused')
            except gof.InconsistencyError:
                continue

    @staticmethod
    def _fuse_abs_sums(fgraph):
        signed = set()
        for node in fgraph.toposort():
            if node not in fgraph.apply_nodes:
                continue
            found = _abs_sum_pattern(node)
            if found is None:
                continue
            x, axis = found
            old_sum = node.outputs[0]
            sign_nodes = [] if x in signed else [
                client for client, _ in getattr(x, 'clients', [])
                if client != 'output' and _is_sign(client)
                and client.outputs[0].type == x.type]
            try:
                if sign_nodes:
                    op = AbsSum(axis, with_sign=True,
                                straight_through=sign_nodes[0].op.scalar_op.straight_through)
                    new_sign, new_sum = op(x)
                    pairs = [(s.outputs[0], new_sign) for s in sign_nodes]
                    pairs.append((old_sum, new_sum))
                else:
                    pairs = [(old_sum, AbsSum(axis)(x))]
                if any(old.type != new.type for old, new in pairs):
                    continue
                fgraph.replace_all_validate(pairs, reason='binary_net_fused')
            except gof.InconsistencyError:
                continue
            if sign_nodes:
                signed.add(x)

    @staticmethod
    def _share_duplicated_dots(fgraph):
        plain = [n for n in fgraph.apply_nodes if type(n.op) is blas.Dot22]
        for node in list(fgraph.apply_nodes):
            if type(node.op) is not blas.Dot22Scalar or node not in fgraph.apply_nodes:
                continue
            a, b, s = node.inputs
            twins = [d for d in plain if d in fgraph.apply_nodes
                     and _same_variable(d.inputs[0], a) and _same_variable(d.inputs[1], b)]
            if not twins or s.dtype != node.outputs[0].dtype:
                continue
            new = Scale()(twins[0].outputs[0], s)
            if new.type != node.outputs[0].type:
                continue
            try:
                fgraph.replace_all_validate([(node.outputs[0], new)],
                                            reason='binary_net_fused')
            except gof.InconsistencyError:
                continue


    @staticmethod
    def _reuse_dot_outputs(fgraph):
        for node in list(fgraph.apply_nodes):
            if type(node.op) is not blas.Dot22 or node not in fgraph.apply_nodes:
                continue
            if all(_is_binary(v) for v in node.inputs):
                new = XnorDot()(*node.inputs)
            else:
                new = Dot22Into()(*node.inputs)
            if new.type != node.outputs[0].type:
                continue
            try:
                fgraph.replace_all_validate([(node.outputs[0], new)],
                                            reason='binary_net_fused')
            except gof.InconsistencyError:
                continue


class FastElemwiseRewrite(gof.Optimizer):
    """Runs eligible elementwise nodes as :class:`FastElemwise` (after fusion and
    in-place rewrites, so the fused, in-place loops are the ones replaced); a
    column ``AbsSum`` of one of their matrix outputs joins the same pass."""

    def add_requirements(self, fgraph):
        fgraph.attach_feature(gof.toolbox.ReplaceValidate())

    @staticmethod
    def _abs_sum_client(node):
        """(output index, AbsSum node) for an AbsSum(axis=0) reading an output."""
        for index, out in enumerate(node.outputs):
            if out.ndim != 2 or out.dtype not in _C_TYPES:
                continue
            for client, _ in getattr(out, 'clients', []):
                if (client != 'output' and isinstance(client.op, AbsSum)
                        and client.op.axis == 0 and not client.op.with_sign):
                    return index, client
        return None

    def apply(self, fgraph):
        if not _enabled:
            return
        for node in list(fgraph.toposort()):
            if node not in fgraph.apply_nodes or not _fast_elemwise_eligible(node):
                continue
            summed = self._abs_sum_client(node)
            if summed is None:
                new = FastElemwise(node.op)(*node.inputs, return_list=True)
                pairs = list(zip(node.outputs, new))
            else:
                index, sum_node = summed
                new = FastElemwise(node.op, abs_sum_of=index)(*node.inputs, return_list=True)
                pairs = list(zip(node.outputs, new[:-1])) + [(sum_node.outputs[0], new[-1])]
            if any(old.type != new_var.type for old, new_var in pairs):
                continue
            try:
                fgraph.replace_all_validate(pairs, reason='binary_net_fast_elemwise')
            except gof.InconsistencyError:
                continue


def function(inputs, outputs=None, mode=None, **kwargs):
    """``theano.function`` compiled for speed, for a training step called many times.

    With the rewrites enabled (:func:`is_enabled`) the function keeps its
    intermediate arrays between calls (``allow_gc=False``: more memory, no
    re-allocation and page faults for weight-sized buffers each step), unless
    the user configured ``allow_gc`` in ``THEANO_FLAGS`` or ``.theanorc``.
    Otherwise it is plain ``theano.function``. Either way the results are the
    same.

    Theano's global ``openmp=True`` is deliberately not used: the fused ops
    already run their loops with OpenMP, and with no BLAS library configured
    (``blas.ldflags=``, see :mod:`binary_net.compat`) Theano's OpenMP
    convolution calls numpy from its worker threads and crashes; the
    convolutions get OpenMP from the rewrite only when a BLAS is linked.
    """
    if not _enabled:
        return theano.function(inputs, outputs, mode=mode, **kwargs)
    from . import compat
    mode = fused_mode(mode)
    if not compat._user_configured('allow_gc', None):
        try:
            mode = mode.clone(link_kwargs={'allow_gc': False})
        except TypeError:  # a linker without that option
            pass
    return theano.function(inputs, outputs, mode=mode, **kwargs)


# The rewrites are registered under their own tag only (not 'fast_run'), so they
# apply to the functions this package compiles (fused_mode(), function()) and
# never to other Theano programs in the same process.
FUSED_TAG = 'binary_net_fused'


def fused_mode(mode=None):
    """A Theano mode (default: the default mode) with this package's rewrites included.

    Functions compiled with it get the fused ops; ``theano.function`` without it
    (any other program in the same process) is never rewritten.
    """
    return theano.compile.get_mode(mode).including(FUSED_TAG)


# After the BLAS rewrites (Dot22 and Dot22Scalar exist), after specialization
# (the sums are in their final form) and before elementwise fusion (49).
if 'binary_net_fuse_binarization' not in theano.compile.optdb._names:
    theano.compile.optdb.register('binary_net_fuse_binarization', FuseBinarization(),
                                  48.7, FUSED_TAG)
# After elementwise fusion (49) and the in-place rewrites (75).
if 'binary_net_fast_elemwise' not in theano.compile.optdb._names:
    theano.compile.optdb.register('binary_net_fast_elemwise', FastElemwiseRewrite(),
                                  75.5, FUSED_TAG)
