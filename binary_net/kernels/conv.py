"""A binary 2-D cross-correlation with its filters packed once: :class:`PackedConv2D`.

Part of :mod:`binary_net.kernels`, used by xnor mode, the integer path and the
fused Theano op :class:`binary_net.theano_ext.conv.XnorCorr`. Padding is applied
after binarization (a padded position contributes 0); the C kernel gathers padded
taps as -1 and adds per-panel border corrections computed here once per input size.
"""
import numpy as np

from .library import get_library, nthreads
from .operands import clear_unused_bits, pair
from .ops import pack_signs
from .reference import popcount_words, words_for

__all__ = ['PackedConv2D']


class PackedConv2D:
    """Binary 2-D cross-correlation of ``sign(x)`` with ``sign(W)``, W packed once.

    Padding rule: the input is binarized first and zero-padded afterwards, so a
    padded position contributes 0 to every sum, while a real 0 in ``x`` is
    binarized to +1. That is, with ``s = sign(x)`` (+1/-1) embedded in a zero
    array of shape (N, C, H + 2*ph, W + 2*pw)::

        out[n, f, i, j] = sum_{c, u, v} s_pad[n, c, i*sh + u, j*sw + v] * sign(W[f, c, u, v])

    This is a cross-correlation: the filter is not flipped (callers that want a
    true convolution flip ``W`` first).

    Parameters
    ----------
    W : array_like, shape (F, C, fh, fw)
        Real filters; only their signs are kept.
    stride : int or (sh, sw), optional
    pad : int or (ph, pw), optional
        Zeros added on each side of the height and width.

    Attributes
    ----------
    packed : numpy.ndarray of uint64, shape (F, fh, fw, ceil(C / 64))
        The channels of each filter tap, packed. With :attr:`filter_shape`,
        :attr:`stride` and :attr:`pad` this is all :meth:`from_packed` needs.
    filter_shape : tuple (F, C, fh, fw)
    stride, pad : tuple of two ints
    """

    def __init__(self, W, stride=(1, 1), pad=(0, 0)):
        W = np.asarray(W)
        if W.ndim != 4:
            raise ValueError('W must be 4-D (F, C, fh, fw), got shape %s' % (W.shape,))
        self._set(pack_signs(W, axis=1), W.shape, stride, pad)

    def _set(self, packed, filter_shape, stride, pad):
        self.filter_shape = tuple(int(v) for v in filter_shape)
        self.stride = pair(stride, 'stride')
        self.pad = pair(pad, 'pad')
        if min(self.stride) < 1:
            raise ValueError('stride must be >= 1, got %r' % (self.stride,))
        if min(self.pad) < 0:
            raise ValueError('pad must be >= 0, got %r' % (self.pad,))
        F, C, fh, fw = self.filter_shape
        self.packed = packed
        self._wk = np.ascontiguousarray(packed.reshape(F, fh * fw * packed.shape[-1]))
        # Sum over channels of sign(W) for each tap: 2 * (#ones) - C.
        self._tap_sums = 2 * popcount_words(packed).sum(axis=-1) - C    # (F, fh, fw)
        self._borders = {}
        self._tables = {}       # the filters' lookup tables, per code path that has any

    @classmethod
    def from_packed(cls, packed, filter_shape, stride=(1, 1), pad=(0, 0)):
        """Rebuild from :attr:`packed` and the geometry, without the float weights.

        Parameters
        ----------
        packed : numpy.ndarray of uint64, shape (F, fh, fw, ceil(C / 64))
        filter_shape : tuple (F, C, fh, fw)
        stride, pad : int or pair of ints

        Returns
        -------
        PackedConv2D
        """
        packed = np.asarray(packed)
        if packed.dtype != np.uint64:
            raise TypeError('packed must be uint64, got %s' % packed.dtype)
        F, C, fh, fw = (int(v) for v in filter_shape)
        if packed.shape != (F, fh, fw, words_for(C)):
            raise ValueError('packed has shape %s, expected %s for filter_shape %s'
                             % (packed.shape, (F, fh, fw, words_for(C)), tuple(filter_shape)))
        obj = cls.__new__(cls)
        obj._set(clear_unused_bits(np.ascontiguousarray(packed), C),
                 (F, C, fh, fw), stride, pad)
        return obj

    def __repr__(self):
        return 'PackedConv2D(filter_shape=%s, stride=%s, pad=%s)' % (
            self.filter_shape, self.stride, self.pad)

    def output_shape(self, input_shape):
        """(N, F, OH, OW) for an input of shape (N, C, H, W)."""
        N, C, H, Wd = input_shape
        F, _, fh, fw = self.filter_shape
        (sh, sw), (ph, pw) = self.stride, self.pad
        return (N, F, (H + 2 * ph - fh) // sh + 1, (Wd + 2 * pw - fw) // sw + 1)

    def _border(self, H, Wd, nr):
        """Per-panel corrections for output pixels whose window overlaps the padding.

        The kernel gathers padded taps as -1; the correction is the sum of
        sign(W) over those taps, which turns their contribution back into 0. It
        depends only on geometry and sign(W), so it is computed once per input
        size (and panel width ``nr`` of the compiled kernels) and cached.

        Returns
        -------
        pidx : int64 (n_panels,)
            For each panel of ``nr`` output pixels, -1 if none of its pixels
            touches the padding, else its index into ``pcorr``.
        pcorr : int32 (n_border_panels, F, nr)
        """
        key = (H, Wd, nr)
        hit = self._borders.get(key)
        if hit is not None:
            return hit
        F, C, fh, fw = self.filter_shape
        (sh, sw), (ph, pw) = self.stride, self.pad
        _, _, OH, OW = self.output_shape((1, C, H, Wd))
        rows = np.arange(OH)[:, None] * sh - ph + np.arange(fh)[None, :]
        cols = np.arange(OW)[:, None] * sw - pw + np.arange(fw)[None, :]
        vh = (rows >= 0) & (rows < H)           # (OH, fh) tap inside the image
        vw = (cols >= 0) & (cols < Wd)          # (OW, fw)
        # padded[u, v, oh, ow]: tap (u, v) of output pixel (oh, ow) is padding
        padded = ~(vh.T[:, None, :, None] & vw.T[None, :, None, :])
        corr = np.einsum('fuv,uvij->fij', self._tap_sums, padded.astype(np.int64))
        n_panels = -(-OH * OW // nr)
        flat = np.zeros((F, n_panels * nr), dtype=np.int32)
        flat[:, :OH * OW] = corr.reshape(F, OH * OW)
        per_panel = flat.reshape(F, n_panels, nr).transpose(1, 0, 2)   # (panels, F, nr)
        has = np.flatnonzero(per_panel.any(axis=(1, 2)))
        pidx = np.full(n_panels, -1, dtype=np.int64)
        pidx[has] = np.arange(has.size)
        hit = (pidx, np.ascontiguousarray(per_panel[has]))
        self._borders[key] = hit
        return hit

    def conv_packed(self, x_packed, out=None):
        """Cross-correlation of input channels that are already packed.

        Parameters
        ----------
        x_packed : numpy.ndarray of uint64, shape (N, H, W, ceil(C / 64))
            ``pack_signs(x, axis=1)`` for ``x`` of shape (N, C, H, W).
        out : numpy.ndarray of int32 or None
            A C-contiguous buffer of at least N * F * OH * OW elements to write the
            result into (reusing one saves the page faults of a new large array);
            the result is then a view of its beginning.

        Returns
        -------
        numpy.ndarray of int32, shape (N, F, OH, OW)
        """
        xp = np.asarray(x_packed)
        F, C, fh, fw = self.filter_shape
        if xp.dtype != np.uint64 or xp.ndim != 4 or xp.shape[3] != words_for(C):
            raise ValueError('x_packed must be uint64 (N, H, W, %d), got %s %s'
                             % (words_for(C), xp.dtype, xp.shape))
        xp = clear_unused_bits(np.ascontiguousarray(xp), C)
        N, H, Wd, wc = xp.shape
        out_shape = self.output_shape((N, C, H, Wd))
        if out_shape[2] < 1 or out_shape[3] < 1:
            raise ValueError('input %dx%d is smaller than the %dx%d filter with pad %s'
                             % (H, Wd, fh, fw, self.pad))
        size = int(np.prod(out_shape))
        if out is None:
            out = np.empty(out_shape, dtype=np.int32)
        elif (out.dtype != np.int32 or not out.flags.c_contiguous or out.size < size
              or not out.flags.writeable):
            raise ValueError('out must be a writeable C-contiguous int32 array of at least '
                             '%d elements' % size)
        else:
            out = out.reshape(-1)[:size].reshape(out_shape)
        if out.size == 0:
            return out
        lib = get_library()
        pidx, pcorr = self._border(H, Wd, lib.nr)
        (sh, sw), (ph, pw) = self.stride, self.pad
        tables = self._tables.get(lib.isa)
        if tables is None:
            tables = self._tables[lib.isa] = lib.conv_tables(self._wk, nthreads())
        status = lib.lib.xk_conv2d_tables(
            xp.ctypes.data, N, H, Wd, wc, self._wk.ctypes.data, F, fh, fw,
            sh, sw, ph, pw, C * fh * fw, pidx.ctypes.data if pcorr.size else None,
            pcorr.ctypes.data if pcorr.size else None,
            tables.ctypes.data if tables.size else None, out.ctypes.data, nthreads())
        if status != 0:
            raise MemoryError('xnor kernels: out of memory')
        return out

    def conv_packed_reference(self, x_packed):
        """:meth:`conv_packed` by the C reference kernel (tap by tap, no panels, no
        border tables), kept beside the fast one to test it against."""
        xp = clear_unused_bits(np.ascontiguousarray(x_packed, dtype=np.uint64),
                                self.filter_shape[1])
        N, H, Wd, wc = xp.shape
        F, C, fh, fw = self.filter_shape
        out = np.empty(self.output_shape((N, C, H, Wd)), dtype=np.int32)
        if out.size:
            (sh, sw), (ph, pw) = self.stride, self.pad
            get_library().function('xk_conv2d_ref')(
                xp.ctypes.data, N, H, Wd, wc, self._wk.ctypes.data, F, fh, fw, sh, sw, ph, pw,
                C * fh * fw, out.ctypes.data)
        return out

    def conv_signs(self, x):
        """Exact cross-correlation of ``sign(x)`` (zero-padded after binarizing) with ``sign(W)``.

        Parameters
        ----------
        x : array_like, shape (N, C, H, W)
            Real input; zeros binarize to +1, padding contributes 0.

        Returns
        -------
        numpy.ndarray of int32, shape (N, F, OH, OW)
            ``OH = (H + 2*ph - fh) // sh + 1``, ``OW = (W + 2*pw - fw) // sw + 1``.
        """
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.filter_shape[1]:
            raise ValueError('x must be (N, %d, H, W), got shape %s'
                             % (self.filter_shape[1], x.shape))
        return self.conv_packed(pack_signs(x, axis=1))
