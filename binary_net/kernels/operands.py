"""Checking and normalizing the operands of the kernels (numpy only).

Part of :mod:`binary_net.kernels`: the functions and classes that call the C kernels
(:mod:`~binary_net.kernels.ops`, :mod:`~binary_net.kernels.dense`,
:mod:`~binary_net.kernels.conv`) pass their arguments through these first, so that
the C code only ever sees C-contiguous arrays of the right dtype and shape, with the
unused bits of packed words cleared.
"""
import numpy as np

from .reference import words_for

__all__ = ['as_packed', 'clear_unused_bits', 'check_n', 'product_operands', 'f32_vector',
           'pair']


def as_packed(p, name):
    """``p`` as a C-contiguous 2-D uint64 array (rows, words); TypeError/ValueError
    naming ``name`` otherwise."""
    p = np.asarray(p)
    if p.dtype != np.uint64:
        raise TypeError('%s must be a uint64 array of packed signs, got %s' % (name, p.dtype))
    if p.ndim != 2:
        raise ValueError('%s must be 2-D (rows, words), got shape %s' % (name, p.shape))
    return np.ascontiguousarray(p)


def clear_unused_bits(p, n):
    """Return ``p`` with every bit at position >= n zeroed (copying only if needed)."""
    full, rem = divmod(n, 64)
    n_words = p.shape[-1]
    dirty = False
    if rem and full < n_words:
        mask = np.uint64((1 << rem) - 1)
        dirty = bool(np.any(p[..., full] & ~mask))
    start = full + (1 if rem else 0)
    if not dirty and start < n_words:
        dirty = bool(np.any(p[..., start:]))
    if not dirty:
        return p
    p = p.copy()
    if rem and full < n_words:
        p[..., full] &= np.uint64((1 << rem) - 1)
    p[..., start:] = 0
    return p


def check_n(n, n_words):
    """``n`` as an int of valid bits that fit in ``n_words`` words (ValueError otherwise)."""
    n = int(n)
    if n < 0 or n > 2 ** 31 - 1:
        raise ValueError('n must be in [0, 2**31), got %d' % n)
    if words_for(n) > n_words:
        raise ValueError('n=%d needs %d words but the packed arrays have %d'
                         % (n, words_for(n), n_words))
    return n


def product_operands(a_packed, b_packed, n):
    """Checked operands of a product, unused bits cleared: (a, b, n)."""
    a = as_packed(a_packed, 'a_packed')
    b = as_packed(b_packed, 'b_packed')
    if a.shape[1] != b.shape[1]:
        raise ValueError('a_packed and b_packed have %d and %d words per row'
                         % (a.shape[1], b.shape[1]))
    n = check_n(n, a.shape[1])
    return clear_unused_bits(a, n), clear_unused_bits(b, n), n


def f32_vector(v, size, name):
    """``v`` as a C-contiguous float32 vector of ``size`` values (ValueError naming ``name``)."""
    if type(v) is not np.ndarray or v.dtype != np.float32 or not v.flags.c_contiguous:
        v = np.ascontiguousarray(v, dtype=np.float32)
    if v.ndim != 1:
        v = v.reshape(-1)
    if v.size != size:
        raise ValueError('%s has %d values, expected %d' % (name, v.size, size))
    return v



def pair(v, name):
    """An int or a pair of ints as a tuple of two ints (ValueError naming ``name``)."""
    if np.ndim(v) == 0:
        v = (v, v)
    v = tuple(int(t) for t in v)
    if len(v) != 2:
        raise ValueError('%s must be an int or a pair, got %r' % (name, v))
    return v
