"""Numerical building blocks of folded inference: signs, im2col, products, fixed point.

The bottom of :mod:`binary_net.infer`: numpy only, no ops and no modes. The
products that round (:func:`conv2d` with ``per_sample``, :func:`matmul_rows`) are
computed one sample at a time, so that a sample's result never depends on its
batch (see "Batches" in :mod:`binary_net.infer.network`). :func:`quantize` and
:func:`fixed_format` define the signed fixed-point formats of fixed mode and of
the integer path.
"""
import contextlib
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..threads import blas_threads
from ..spec import output_size

__all__ = ['IM2COL_MAX_ELEMENTS', 'ONE_THREAD_PRODUCT', 'sign', 'im2col', 'conv2d', 'matmul_rows',
           'ROUNDINGS', 'round_to_nearest', 'quantize_codes', 'quantize', 'fixed_format']

#: The per-row products of :func:`matmul_rows` and per-sample products of
#: :func:`conv2d` of fewer multiply-adds than this run on one BLAS thread. OpenBLAS
#: shares out even these, splitting the dot products of a few outputs, which changes
#: their last bits; on two cores it took 0.097 ms for 100 rows of 10 x 1024 against
#: 0.047 on one thread in a loop (2-core Xeon, 2026-12-03), 0.24 against 0.07 ms
#: between the XNOR kernels of the MNIST model; in a loop two threads won from
#: 64 x 1024 (0.21 against 0.29 ms).
ONE_THREAD_PRODUCT = 1 << 16

# Largest im2col matrix built at once, in elements; convolutions of bigger batches
# are computed in chunks of samples so that memory stays bounded.
IM2COL_MAX_ELEMENTS = 1 << 23


def sign(x, dtype=None):
    """+1 where ``x >= 0`` (so sign(0) = +1), -1 elsewhere, as ``dtype`` (default x's)."""
    x = np.asarray(x)
    out = (x >= 0).astype(dtype or x.dtype)
    out *= 2
    out -= 1
    return out


def _pad_hw(x, pad):
    ph, pw = pad
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def im2col(x, filter_size, stride=(1, 1), pad=(0, 0)):
    """Unfold the receptive fields of a batch of images into the rows of a matrix.

    Parameters
    ----------
    x : ndarray ``(N, C, H, W)``
    filter_size : pair of int ``(fh, fw)``
    stride : pair of int
    pad : pair of int
        Zero padding added on both sides of rows and columns.

    Returns
    -------
    cols : ndarray ``(N * Ho * Wo, C * fh * fw)``
        Row ``(n, i, j)`` (in C order) holds the window of sample n at output
        position (i, j), flattened in ``(c, r, s)`` order, the order of
        ``W.reshape(F, -1)``. Built with one strided view and one copy.
    out_shape : pair ``(Ho, Wo)``
    """
    fh, fw = filter_size
    sh, sw = stride
    xp = np.ascontiguousarray(_pad_hw(x, pad))
    n, c, hp, wp = xp.shape
    ho, wo = (hp - fh) // sh + 1, (wp - fw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError('a %dx%d filter does not fit a padded %dx%d input' % (fh, fw, hp, wp))
    s_n, s_c, s_h, s_w = xp.strides
    windows = as_strided(xp, shape=(n, ho, wo, c, fh, fw),
                         strides=(s_n, s_h * sh, s_w * sw, s_c, s_h, s_w), writeable=False)
    return windows.reshape(n * ho * wo, c * fh * fw), (ho, wo)


def conv2d(x, w, stride=(1, 1), pad=(0, 0), per_sample=True):
    """Cross-correlation of ``x (N, C, H, W)`` with ``w (F, C, fh, fw)`` by im2col + matmul.

    Zero padding ``pad`` is added to ``x`` as given (so for a binarized input,
    padded positions contribute 0). The batch is split into chunks so that no
    im2col matrix exceeds :data:`IM2COL_MAX_ELEMENTS` elements.

    Parameters
    ----------
    x, w : ndarray
    stride, pad : pairs of int
    per_sample : bool
        True: each sample's output is its own matrix product, ``(F, C * fh * fw)
        @ (C * fh * fw, Ho * Wo)``, of the same shape whatever the batch (see
        :func:`matmul_rows` for why), so a sample's result depends on that sample
        only, bit for bit. (The same dot products as ``(Ho * Wo, C * fh * fw) @
        (C * fh * fw, F)``, in the output's layout: with OpenBLAS's SkylakeX and
        Cooperlake kernels bit for bit the same numbers, with its Haswell and Zen
        kernels within 5e-7 relative; three times faster for a first layer of 3
        channels, which spent most of its time copying.) False: one product per
        chunk of samples, for products that are exact in any order (sums of +-1
        terms), where it is faster. Per-sample products of fewer than
        :data:`ONE_THREAD_PRODUCT` multiply-adds run on one BLAS thread.

    Returns
    -------
    ndarray ``(N, F, Ho, Wo)`` of the result type of ``x`` and ``w``.
    """
    n, c, h, wd = x.shape
    f, c_w, fh, fw = w.shape
    if c != c_w:
        raise ValueError('input has %d channels but the filters expect %d' % (c, c_w))
    ho = output_size(h, fh, stride[0], pad[0])
    wo = output_size(wd, fw, stride[1], pad[1])
    w_rows = w.reshape(f, -1)
    out = np.empty((n, f, ho, wo), dtype=np.result_type(x.dtype, w.dtype))
    step = max(1, IM2COL_MAX_ELEMENTS // max(1, ho * wo * c * fh * fw))
    # Per sample, a product of fewer than ONE_THREAD_PRODUCT multiply-adds (the box
    # filter of an XNOR convolution's K) on one BLAS thread, as in matmul_rows.
    threads = blas_threads(1) if per_sample and f * c * fh * fw * ho * wo < ONE_THREAD_PRODUCT \
        else contextlib.nullcontext()
    with threads:
        for start in range(0, n, step):
            _conv_chunk(x[start:start + step], w_rows, (fh, fw), stride, pad, per_sample,
                        out[start:start + step])
    return out


def _conv_chunk(chunk, w_rows, filter_size, stride, pad, per_sample, out):
    """conv2d of a chunk of samples into ``out`` (see :func:`conv2d`)."""
    n, f = len(chunk), len(w_rows)
    cols, (ho, wo) = im2col(chunk, filter_size, stride, pad)
    if per_sample:
        # A stack of products, one BLAS call each, written straight into the
        # output's (F, Ho * Wo) layout: no product buffer to fill, no transposed copy.
        np.matmul(w_rows, cols.reshape(n, ho * wo, -1).transpose(0, 2, 1),
                  out=out.reshape(n, f, ho * wo))
    else:
        out[...] = (cols @ w_rows.T).reshape(n, ho, wo, f).transpose(0, 3, 1, 2)


def matmul_rows(x, w_t):
    """``x @ w_t.T`` one row at a time: row i of the result depends on ``x[i]`` only.

    A BLAS matrix product rounds a row's sums differently depending on how many
    rows the matrix has and where the row sits in it (OpenBLAS's Haswell and Zen
    float32 kernels do, its SkylakeX kernels mostly do not), so one batched
    ``x @ W`` would give a sample scores that depend on the batch it came in.
    Here every row is its own matrix-vector product ``w_t (F, K) @ x[i] (K,)`` of
    the same shape, which numpy's stacked matmul runs in one call (a loop in C).

    Parameters
    ----------
    x : ndarray ``(N, K)``
    w_t : ndarray ``(F, K)``, the transposed weights (C-contiguous is fastest).

    A product of fewer than :data:`ONE_THREAD_PRODUCT` multiply-adds per row runs on
    one BLAS thread (:func:`binary_net.threads.blas_threads`): too little to share out,
    and its bits then do not depend on the thread count either.

    Returns
    -------
    ndarray ``(N, F)`` of the result type of ``x`` and ``w_t``.
    """
    small = w_t.shape[0] * w_t.shape[1] < ONE_THREAD_PRODUCT
    with blas_threads(1) if small else contextlib.nullcontext():
        return np.matmul(w_t, x.reshape(len(x), -1, 1))[:, :, 0]


ROUNDINGS = ('half_even', 'half_away')


def round_to_nearest(y, rounding):
    """``y`` rounded to the nearest integer, ties to even ('half_even') or away from zero
    ('half_away')."""
    if rounding == 'half_even':
        return np.rint(y)
    if rounding == 'half_away':
        return np.copysign(np.floor(np.abs(y) + 0.5), y)
    raise ValueError('unknown rounding %r; choose one of %s' % (rounding, ', '.join(ROUNDINGS)))


def quantize_codes(x, bits, frac, rounding='half_even'):
    """The integer codes of ``x`` in signed fixed point: ``clip(round(x * 2**frac))``.

    Parameters
    ----------
    x : array_like
    bits : int
        Total width including the sign bit.
    frac : int
        Fraction bits (may be negative or exceed ``bits - 1``).
    rounding : {'half_even', 'half_away'}
        Round to nearest, ties to even or ties away from zero.

    Returns
    -------
    float64 ndarray of integers in ``[-2**(bits-1), 2**(bits-1) - 1]`` (float64
    holds them exactly for ``bits <= 53``).
    """
    y = round_to_nearest(np.ldexp(np.asarray(x, dtype=np.float64), frac), rounding)
    return np.clip(y, -2.0 ** (bits - 1), 2.0 ** (bits - 1) - 1, out=y)


def quantize(x, bits, frac, rounding='half_even'):
    """Round ``x`` to signed ``bits``-bit fixed point with ``frac`` fraction bits.

    Round to the nearest multiple of ``2**-frac`` (see :func:`quantize_codes`),
    then saturate to the representable range ``[-2**(bits-1), 2**(bits-1) - 1]
    * 2**-frac``.

    Returns
    -------
    float64 ndarray of the quantized values.
    """
    return np.ldexp(quantize_codes(x, bits, frac, rounding), -frac)


def fixed_format(max_abs, bits):
    """The format ``(int_bits, frac_bits)`` of a ``bits``-bit tensor whose largest magnitude is ``max_abs``.

    ``int_bits`` is the smallest integer m with ``max_abs < 2**m`` (negative for
    tensors smaller than 1/2), and ``frac_bits = bits - 1 - int_bits`` (one bit is
    the sign). A tensor of zeros gets ``int_bits = 0``.
    """
    max_abs = float(max_abs)
    if not math.isfinite(max_abs):
        raise ValueError('cannot choose a fixed-point format for a range of %r' % max_abs)
    int_bits = math.frexp(max_abs)[1] if max_abs > 0 else 0
    return int_bits, bits - 1 - int_bits
