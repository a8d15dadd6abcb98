"""Numpy reference kernels: the bit packing of signs, popcounts of packed words, and
the two gradients of a convolution (float64).

Part of :mod:`binary_net.kernels`, beside the C kernels it defines the layout of
(as Larq Compute Engine keeps a reference kernel beside each optimized one). Pure
numpy: no compiler, no ctypes. The bit layout, everywhere in the package: a vector
of ``n`` signs takes ``ceil(n / 64)`` little-endian uint64 words; element ``k`` is
bit ``k % 64`` (least significant bit first) of word ``k // 64``; the bit is 1 for
+1 (a value ``>= 0``) and 0 for -1 (a value ``< 0``, or NaN); unused trailing bits
are 0. Equivalently, the bytes of a row are ``numpy.packbits(signs >= 0,
bitorder='little')`` zero-padded to a multiple of 8.
"""
import numpy as np

__all__ = ['words_for', 'pack_bits', 'unpack_bits', 'popcount_words',
           'conv_grad_weights_reference', 'conv_grad_inputs_reference']


def words_for(n):
    """The number of 64-bit words that hold ``n`` packed signs: ``ceil(n / 64)``."""
    return (int(n) + 63) // 64


def pack_bits(signs, axis=-1):
    """Pack the signs of ``signs`` along ``axis`` into uint64 words (the layout above).

    The layout of :func:`binary_net.kernels.pack_signs`, which runs the C kernel
    for float32/float64 input and this for other dtypes.

    Parameters
    ----------
    signs : array_like
        A value is +1 where it is ``>= 0`` and -1 elsewhere (NaN too).
    axis : int

    Returns
    -------
    uint64 ndarray: ``signs.shape`` without ``axis``, plus ``(ceil(n / 64),)``.

    Examples
    --------
    >>> pack_bits([1.0, -2.0, 0.0, -0.5])
    array([5], dtype=uint64)
    """
    bits = np.moveaxis(np.asarray(signs) >= 0, axis, -1)
    n = bits.shape[-1]
    padded = np.zeros(bits.shape[:-1] + (words_for(n) * 64,), dtype=bool)
    padded[..., :n] = bits
    packed = np.packbits(padded, axis=-1, bitorder='little')
    return np.ascontiguousarray(packed).view('<u8').astype(np.uint64, copy=False)


def unpack_bits(words, n, axis=-1):
    """Inverse of :func:`pack_bits`: int8 signs (+1/-1), the ``n`` elements placed at ``axis``.

    Parameters
    ----------
    words : uint64 ndarray ``(..., ceil(n / 64))``
    n : int
    axis : int
        Where the unpacked axis goes in the result.

    Returns
    -------
    int8 ndarray: ``words.shape`` without its last axis, with ``n`` inserted at ``axis``.

    Examples
    --------
    >>> unpack_bits(pack_bits([1.0, -2.0, 0.0, -0.5]), 4)
    array([ 1, -1,  1, -1], dtype=int8)
    """
    words = np.ascontiguousarray(np.asarray(words).astype('<u8', copy=False))
    raw = words.view(np.uint8).reshape(words.shape[:-1] + (words.shape[-1] * 8,))
    bits = np.unpackbits(raw, axis=-1, count=int(n), bitorder='little')
    signs = bits.astype(np.int8)
    signs *= 2
    signs -= 1
    return np.ascontiguousarray(np.moveaxis(signs, -1, axis))


def popcount_words(p):
    """Number of set bits in each uint64 of ``p`` (numpy, any shape)."""
    p = np.ascontiguousarray(p, dtype=np.uint64)
    bits = np.unpackbits(p.view(np.uint8).reshape(p.shape + (8,)), axis=-1)
    return bits.sum(axis=-1, dtype=np.int64)


def conv_grad_weights_reference(x, gz, kernel_size, pad):
    """The weight gradient of a stride-1 cross-correlation, in float64 (numpy).

    ``gw[f, c, i, j] = sum over n, oh, ow of xpad[n, c, oh + i, ow + j] * gz[n, f, oh, ow]``,
    ``xpad`` being ``x`` (N, C, H, W) zero-padded by ``pad`` = (ph, pw) on each side:
    Theano's ``CorrMM_gradWeights``. The reference of
    :func:`binary_net.kernels.sign_conv_grad_weights`.
    """
    kh, kw = kernel_size
    ph, pw = pad
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gz = np.asarray(gz, np.float64)
    oh, ow = gz.shape[2:]
    out = np.empty((gz.shape[1], xp.shape[1], kh, kw))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = np.einsum('nchw,nfhw->fc', xp[:, :, i:i + oh, j:j + ow], gz)
    return out


def conv_grad_inputs_reference(w, gz, pad):
    """The input gradient of a stride-1 cross-correlation, in float64 (numpy).

    ``gx[n, c, h, w] = sum over f, i, j of w[f, c, i, j] * gz[n, f, h + ph - i, w + pw - j]``
    (terms outside ``gz`` left out), for weights ``w`` (F, C, kh, kw): Theano's
    ``CorrMM_gradInputs``. The reference of :func:`binary_net.kernels.sign_conv_grad_inputs`.
    """
    w = np.asarray(w, np.float64)
    gz = np.asarray(gz, np.float64)
    _, _, kh, kw = w.shape
    ph, pw = pad
    n, _, oh, ow = gz.shape
    gxp = np.zeros((n, w.shape[1], oh + kh - 1, ow + kw - 1))
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i:i + oh, j:j + ow] += np.einsum('fc,nfhw->nchw', w[:, :, i, j], gz)
    return gxp[:, :, ph:gxp.shape[2] - ph, pw:gxp.shape[3] - pw]
