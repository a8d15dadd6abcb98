"""Numpy reference kernels: the bit packing of signs, and popcounts of packed words.

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

__all__ = ['words_for', 'pack_bits', 'unpack_bits', 'popcount_words']


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
