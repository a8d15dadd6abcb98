"""The numpy-facing kernel functions: packing, products, the float epilogues.

Part of :mod:`binary_net.kernels`: each function checks its operands
(:mod:`~binary_net.kernels.operands`) and calls one C kernel through the ctypes
bindings (:mod:`~binary_net.kernels.library`). Products return exact int32 results;
the whole-layer functions apply XNOR-Net's scaling (K, alpha), the bias and a
following batch norm or max pooling in float32 exactly as numpy does (same
operations, same order; compiled with ``-ffp-contract=off``).
"""
import numpy as np

from .library import SCALE_INPUT, SCALE_WEIGHTS, get_library, nthreads
from .operands import f32_vector, pair, product_operands
from .reference import pack_bits, words_for

__all__ = ['pack_signs', 'xnor_matmul', 'xnor_matmul_reference', 'pack_signs_mean_abs',
           'pack_channels_mean_abs', 'batch_norm_pack_channels', 'conv_epilogue']


def pack_signs(x, axis=-1):
    """Pack the signs of ``x`` along ``axis`` into 64-bit words.

    Parameters
    ----------
    x : array_like
        Real values (float32/float64 are packed by the C kernel; other real or
        integer dtypes by numpy). A bit is 1 where ``x >= 0`` (so zeros give +1)
        and 0 where ``x < 0`` or NaN.
    axis : int, optional
        The axis to pack; it is moved to the end and replaced by the words.

    Returns
    -------
    numpy.ndarray of uint64
        Shape ``x.shape`` without ``axis``, plus ``(ceil(n / 64),)`` where
        ``n = x.shape[axis]``; C-contiguous. Element ``k`` of the packed axis
        is bit ``k % 64`` of word ``k // 64``; unused trailing bits are 0.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError('pack_signs needs an array with at least one dimension')
    if np.iscomplexobj(x):
        raise TypeError('pack_signs needs real values, got %s' % x.dtype)
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        raise getattr(np, 'exceptions', np).AxisError(axis, x.ndim)
    n = x.shape[axis]
    out_shape = x.shape[:axis] + x.shape[axis + 1:] + (words_for(n),)
    if x.dtype == np.float16:
        x = x.astype(np.float32)   # exact, so signs are unchanged
    if x.dtype not in (np.float32, np.float64):
        return pack_bits(x, axis).reshape(out_shape)
    out = np.empty(out_shape, dtype=np.uint64)
    if out.size == 0:
        return out
    x = np.ascontiguousarray(x)
    pre = int(np.prod(x.shape[:axis], dtype=np.int64))
    post = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    lib = get_library()
    fn = lib.lib.xk_pack_f32 if x.dtype == np.float32 else lib.lib.xk_pack_f64
    fn(x.ctypes.data, pre, n, post, out.ctypes.data, nthreads())
    return out


def xnor_matmul(a_packed, b_packed, n):
    """Exact sign-matrix product from packed signs.

    Parameters
    ----------
    a_packed : numpy.ndarray of uint64, shape (M, words)
        Rows packed with :func:`pack_signs` from vectors of length ``n``.
    b_packed : numpy.ndarray of uint64, shape (N, words)
        Rows packed likewise (e.g. the columns of a weight matrix).
    n : int
        Number of valid bits per row; ``ceil(n / 64) <= words``. Bits at
        positions ``>= n`` are ignored.

    Returns
    -------
    numpy.ndarray of int32, shape (M, N)
        ``out[i, j] = sum_k sign(a_ik) * sign(b_jk)
        = n - 2 * popcount(a_i XOR b_j)`` over the ``n`` valid bits.
    """
    a, b, n = product_operands(a_packed, b_packed, n)
    lib = get_library()
    nt = nthreads()
    return lib.gemm(a, lib.panels(b, nt), b.shape[0], n, nt)


def xnor_matmul_reference(a_packed, b_packed, n):
    """:func:`xnor_matmul` by the C reference kernel: one popcount per pair of words,
    no blocking, no vectors (kept beside the fast kernels to test them against)."""
    a, b, n = product_operands(a_packed, b_packed, n)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    if out.size:
        get_library().function('xk_gemm_ref')(
            a.ctypes.data, a.shape[0], a.shape[1], b.ctypes.data,
                                           b.shape[0], n, out.ctypes.data)
    return out


def pack_signs_mean_abs(x, mean_abs=True):
    """Packed signs of the rows of ``x`` and their mean absolute values, in one pass.

    Parameters
    ----------
    x : array_like, shape (rows, n)
        float32 (other dtypes are converted).
    mean_abs : bool
        Also compute ``np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)``,
        bit for bit (numpy's summation order is reproduced), the K of an XNOR
        dense layer.

    Returns
    -------
    packed : numpy.ndarray of uint64, shape (rows, ceil(n / 64))
        As ``pack_signs(x)``.
    K : numpy.ndarray of float32, shape (rows, 1), or None
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError('x must be 2-D (rows, n), got shape %s' % (x.shape,))
    rows, n = x.shape
    packed = np.empty((rows, words_for(n)), dtype=np.uint64)
    K = np.empty((rows, 1), dtype=np.float32) if mean_abs else None
    if rows and n:
        get_library().function('xk_pack_mean_abs_f32')(
            x.ctypes.data, rows, n, packed.ctypes.data, None if K is None else K.ctypes.data,
            nthreads())
    elif K is not None:
        K[...] = np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)
    return packed, K


def pack_channels_mean_abs(x, mean_abs=True):
    """Packed channel signs of images and their channel mean of ``|x|``, in one pass.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        float32 (other dtypes are converted).
    mean_abs : bool
        Also compute ``np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)``,
        bit for bit (the first step of an XNOR convolution's K).

    Returns
    -------
    packed : numpy.ndarray of uint64, shape (N, H, W, ceil(C / 64))
        As ``pack_signs(x, axis=1)``.
    mean : numpy.ndarray of float32, shape (N, 1, H, W), or None
    """
    return _pack_channels(x, None, None, mean_abs)[1:]


def batch_norm_pack_channels(x, scale, offset, mean_abs=True, keep_y=True):
    """A batch norm ``y = x * scale[c] + offset[c]`` (float32, numpy's two roundings)
    and :func:`pack_channels_mean_abs` of ``y``, in one pass.

    Returns
    -------
    y : float32 (N, C, H, W), or None with ``keep_y=False`` (not stored)
    packed : uint64 (N, H, W, ceil(C / 64))
    mean : float32 (N, 1, H, W), or None
    """
    return _pack_channels(x, scale, offset, mean_abs, keep_y)


def _pack_channels(x, scale, offset, mean_abs, keep_y=True):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError('x must be 4-D (N, C, H, W), got shape %s' % (x.shape,))
    N, C, H, Wd = x.shape
    packed = np.empty((N, H, Wd, words_for(C)), dtype=np.uint64)
    mean = np.empty((N, 1, H, Wd), dtype=np.float32) if mean_abs else None
    y = None
    if scale is not None:
        scale, offset = f32_vector(scale, C, 'scale'), f32_vector(offset, C, 'offset')
        if keep_y or not x.size:
            y = np.empty(x.shape, np.float32)
    if x.size:
        get_library().function('xk_pack_channels_mean_abs_f32')(
            x.ctypes.data, N, C, H * Wd, _addr(scale), _addr(offset), _addr(y),
            packed.ctypes.data, _addr(mean), nthreads())
    else:
        if y is not None:
            y[...] = x * scale.reshape(1, -1, 1, 1) + offset.reshape(1, -1, 1, 1)
        if mean is not None:
            mean[...] = np.mean(np.abs(x if y is None else y), axis=1, keepdims=True,
                                dtype=np.float32)
    return (y if keep_y else None), packed, mean


def conv_epilogue(product, K=None, alpha=None, b=None, pool=None, scale=None, offset=None,
                  out=None):
    """The float arithmetic after an XNOR convolution's product, in one C pass.

    Computes, in float32 and in numpy's order (bit-identical to the float mode of
    :class:`binary_net.infer.ops.XnorConv`, ``MaxPool`` and ``Affine``)::

        z = (float32(product) * K) * alpha[f] + b[f]
        pooled = max over pool windows of z          (if pool is given)
        y = (pooled or z) * scale[f] + offset[f]     (if scale is given)

    Parameters
    ----------
    product : int32 array (N, F, OH, OW)
    K : float32 array (N, 1, OH, OW), or None (not applied)
    alpha, b : float32 arrays (F,), or None (not applied)
    pool : pair (ph, pw) or None
        Non-overlapping max pooling; a partial border is dropped.
    scale, offset : float32 arrays (F,), or None
    out : tuple (z, pooled, y) of C-contiguous float32 arrays, or None
        Where to write the results (None entries, or None: new arrays).

    Returns
    -------
    z, pooled, y : float32 arrays, or None where not asked for
    """
    p, (flags, K, alpha, b), (ph, pw), scale, offset = _epilogue_args(
        product, K, alpha, b, pool, scale, offset)
    N, F, OH, OW = p.shape
    out = out or (None, None, None)
    z = _target(out[0], p.shape, 'z')
    pooled = None if pool is None else _target(out[1], (N, F, OH // ph, OW // pw), 'pooled')
    y = None
    if scale is not None:
        y = _target(out[2], z.shape if pooled is None else pooled.shape, 'y')
    if z.size:
        get_library().function('xk_conv_epilogue')(
            p.ctypes.data, N, F, OH, OW, flags, _addr(K), _addr(alpha), b.ctypes.data,
            z.ctypes.data, ph, pw, _addr(pooled),
            _addr(scale), _addr(offset), _addr(y), nthreads())
    return z, pooled, y


def conv_epilogue_pack(product, K=None, alpha=None, b=None, pool=None, scale=None, offset=None,
                       mean_abs=True, out=None):
    """:func:`conv_epilogue` and :func:`pack_channels_mean_abs` of its last result, in
    one C pass that never stores z: the input of the next XNOR convolution.

    The last result v is y (if scale is given), else the pooled z (if pool is
    given), else z; the packed signs and mean |v| are bit-identical to
    ``pack_channels_mean_abs(v, mean_abs)``.

    Parameters
    ----------
    product, K, alpha, b, pool, scale, offset
        As for :func:`conv_epilogue`.
    mean_abs : bool
        Whether to compute mean |v| over the channels.
    out : tuple (pooled, y) of C-contiguous float32 arrays or None entries, or None
        Where to store the pooled z and y as well; None entries are not stored.

    Returns
    -------
    packed : uint64 (N, VH, VW, ceil(F / 64)), v being (N, F, VH, VW)
    mean : float32 (N, 1, VH, VW), or None
    """
    p, (flags, K, alpha, b), (ph, pw), scale, offset = _epilogue_args(
        product, K, alpha, b, pool, scale, offset)
    N, F, OH, OW = p.shape
    VH, VW = (OH // ph, OW // pw) if pool is not None else (OH, OW)
    pooled, y = out or (None, None)
    if pooled is not None:
        pooled = _target(pooled, (N, F, VH, VW), 'pooled') if pool is not None else None
    if y is not None:
        y = _target(y, (N, F, VH, VW), 'y') if scale is not None else None
    packed = np.empty((N, VH, VW, words_for(F)), dtype=np.uint64)
    mean = np.empty((N, 1, VH, VW), dtype=np.float32) if mean_abs else None
    if not packed.size:
        if mean is not None:
            mean[...] = np.nan      # no channels: numpy's mean of nothing
    elif get_library().function('xk_conv_epilogue_pack')(
            p.ctypes.data, N, F, OH, OW, flags, _addr(K), _addr(alpha), b.ctypes.data, ph, pw,
            _addr(pooled), _addr(scale), _addr(offset), _addr(y), packed.ctypes.data,
            _addr(mean), nthreads()):
        raise MemoryError('xnor kernels: out of memory')
    return packed, mean


def _epilogue_args(product, K, alpha, b, pool, scale, offset):
    """The checked operands of the epilogues: (product, (flags, K, alpha, b), (ph, pw),
    scale, offset), as C-contiguous arrays of the C functions' types."""
    p = np.ascontiguousarray(product, dtype=np.int32)
    if p.ndim != 4:
        raise ValueError('product must be 4-D (N, F, OH, OW), got shape %s' % (p.shape,))
    N, F, OH, OW = p.shape
    flags = 0
    if K is not None:
        K = np.ascontiguousarray(K, dtype=np.float32)
        if K.shape != (N, 1, OH, OW):
            raise ValueError('K has shape %s, expected %s' % (K.shape, (N, 1, OH, OW)))
        flags |= SCALE_INPUT
    if alpha is not None:
        alpha = f32_vector(alpha, F, 'alpha')
        flags |= SCALE_WEIGHTS
    b = np.zeros(F, np.float32) if b is None else f32_vector(b, F, 'b')
    ph, pw = (0, 0) if pool is None else pair(pool, 'pool')
    if pool is not None and min(ph, pw) < 1:
        raise ValueError('pool must be >= 1, got %r' % ((ph, pw),))
    if scale is not None:
        scale, offset = f32_vector(scale, F, 'scale'), f32_vector(offset, F, 'offset')
    return p, (flags, K, alpha, b), (ph, pw), scale, offset


def _target(given, shape, name):
    """``given`` if it is a C-contiguous float32 array of ``shape``, a new one if None."""
    if given is None:
        return np.empty(shape, np.float32)
    if given.shape != shape or given.dtype != np.float32 or not given.flags.c_contiguous:
        raise ValueError('out %s must be C-contiguous float32 %s' % (name, shape))
    return given


def _addr(a):
    return None if a is None else a.ctypes.data
