"""A binary dense layer with its weights packed once: :class:`PackedDense`.

Part of :mod:`binary_net.kernels`, used by xnor mode (:mod:`binary_net.xnor`) and
the integer path (:mod:`binary_net.integer`): the product ``sign(x) @ sign(W)``, and
the whole XNOR dense layer with the batch norm after it, in one C call
(:class:`PackedDense`); several such layers and the packing of their input, in one
C call (:class:`DenseChain`).
"""
import sys

import numpy as np

from .library import BIAS_BEFORE, SCALE_INPUT, SCALE_WEIGHTS, ChainLayer, get_library, nthreads
from .operands import as_packed, clear_unused_bits, f32_vector
from .ops import pack_signs
from .reference import words_for

__all__ = ['PackedDense', 'DenseChain']


class PackedDense:
    """Binary dense layer ``sign(x) @ sign(W)`` with ``sign(W)`` packed once.

    Parameters
    ----------
    W : array_like, shape (n_in, n_out)
        Real weights, laid out as in Lasagne's ``DenseLayer``. Only their signs
        are kept (``W >= 0`` is +1).

    Attributes
    ----------
    packed : numpy.ndarray of uint64, shape (n_out, ceil(n_in / 64))
        Column ``j`` of ``sign(W)`` packed along ``n_in``; with ``n_in`` this is
        all that :meth:`from_packed` needs.
    n_in, n_out : int
    """

    def __init__(self, W):
        W = np.asarray(W)
        if W.ndim != 2:
            raise ValueError('W must be 2-D (n_in, n_out), got shape %s' % (W.shape,))
        self._set(pack_signs(W, axis=0), W.shape[0])

    def _set(self, packed, n_in):
        self.packed = packed
        self.n_in = int(n_in)
        self._panels = {}      # isa -> panel array, built at first product

    @classmethod
    def from_packed(cls, packed, n_in):
        """Rebuild from :attr:`packed` and :attr:`n_in` without the float weights.

        Parameters
        ----------
        packed : numpy.ndarray of uint64, shape (n_out, ceil(n_in / 64))
        n_in : int

        Returns
        -------
        PackedDense
        """
        packed = as_packed(packed, 'packed')
        n_in = int(n_in)
        if n_in < 0 or packed.shape[1] != words_for(n_in):
            raise ValueError('packed has %d words per row but n_in=%d needs %d'
                             % (packed.shape[1], n_in, words_for(max(n_in, 0))))
        obj = cls.__new__(cls)
        obj._set(clear_unused_bits(packed, n_in), n_in)
        return obj

    @property
    def n_out(self):
        return self.packed.shape[0]

    def __repr__(self):
        return 'PackedDense(n_in=%d, n_out=%d)' % (self.n_in, self.n_out)

    def panel_array(self, lib):
        """The weights in the panel layout of ``lib``'s code path (built once per path,
        and kept: the addresses cached by :meth:`dense_layer` and :class:`DenseChain`
        stay valid when the code path changes and changes back)."""
        panels = self._panels.get(lib.isa)
        if panels is None:
            panels = self._panels[lib.isa] = lib.panels(self.packed, nthreads())
        return panels

    def matmul_packed(self, x_packed):
        """Product with activations that are already packed.

        Parameters
        ----------
        x_packed : numpy.ndarray of uint64, shape (batch, ceil(n_in / 64))
            ``pack_signs(x)`` for ``x`` of shape (batch, n_in).

        Returns
        -------
        numpy.ndarray of int32, shape (batch, n_out)
        """
        xp = as_packed(x_packed, 'x_packed')
        if xp.shape[1] != self.packed.shape[1]:
            raise ValueError('x_packed has %d words per row, expected %d'
                             % (xp.shape[1], self.packed.shape[1]))
        xp = clear_unused_bits(xp, self.n_in)
        lib = get_library()
        return lib.gemm(xp, self.panel_array(lib), self.n_out, self.n_in, nthreads())

    def matmul_signs(self, x):
        """Exact ``sign(x) @ sign(W)``.

        For float32/float64 input the signs of ``x`` are packed inside the C
        kernel a block of rows at a time, and the next block's floats are
        prefetched into cache while the current block is multiplied (packing
        is bound by memory bandwidth, the product by the vector units).

        Parameters
        ----------
        x : array_like, shape (batch, n_in)
            Real activations (more dimensions are flattened to (batch, -1),
            as Lasagne's DenseLayer does).

        Returns
        -------
        numpy.ndarray of int32, shape (batch, n_out)
        """
        x = np.asarray(x)
        if x.ndim != 2:
            if x.ndim < 2:
                raise ValueError('x must be (batch, n_in), got shape %s' % (x.shape,))
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_in:
            raise ValueError('x has %d features, expected n_in=%d' % (x.shape[1], self.n_in))
        if x.dtype == np.float16:
            x = x.astype(np.float32)
        lib = get_library()
        if (x.dtype not in (np.float32, np.float64) or self.n_in == 0
                or x.shape[0] < 4 * lib.mr * max(1, nthreads() or lib.lib.xk_max_threads())):
            # (too few rows to share out by rows: the packed product splits columns too)
            return self.matmul_packed(pack_signs(x, axis=1))
        # Packing and product in one pass, the packing overlapped with the product.
        x = np.ascontiguousarray(x)
        panels = self.panel_array(lib)
        out = np.empty((x.shape[0], self.n_out), dtype=np.int32)
        fn = lib.lib.xk_dense_f32 if x.dtype == np.float32 else lib.lib.xk_dense_f64
        if fn(x.ctypes.data, x.shape[0], self.n_in, panels.ctypes.data, self.n_out,
              out.ctypes.data, self.n_out, nthreads()) != 0:
            raise MemoryError('xnor kernels: out of memory')
        return out


    def dense_layer(self, x_packed, K=None, alpha=None, b=None, bias_before_scaling=False,
                    scale=None, offset=None, next_packed=False, next_mean_abs=False):
        """A whole XNOR dense layer, and the batch norm after it, in one C pass.

        Computes, in float32 and operation by operation as numpy does (so the
        results are bit-identical to the float-mode arithmetic of
        :class:`binary_net.infer.ops.XnorDense` and ``Affine``)::

            p = sign(x) @ sign(W)                       (int32, exact)
            z = (float32(p) * K) * alpha + b            (or ((p + b) * K) * alpha)
            y = z * scale + offset                      (if scale is given)

        and, for a following XNOR layer, the packed signs of ``y`` and its K.
        Rows and blocks of 64 output units are split over the threads (a batch
        of one image too).

        Parameters
        ----------
        x_packed : numpy.ndarray of uint64, shape (batch, ceil(n_in / 64))
            Unused bits must be 0 (as :func:`pack_signs` leaves them).
        K : float32 array (batch,) or (batch, 1), or None
            Per-row input scale; None: not applied.
        alpha, b : float32 arrays (n_out,), or None (not applied)
        bias_before_scaling : bool
        scale, offset : float32 arrays (n_out,), or None
            The folded batch norm applied to ``z``.
        next_packed, next_mean_abs : bool
            Also return ``pack_signs(y)`` and ``np.mean(np.abs(y), axis=1,
            keepdims=True)`` (need ``scale``).

        Returns
        -------
        z, y, y_packed, y_K : arrays, or None where not asked for
        """
        xp = x_packed
        if (type(xp) is not np.ndarray or xp.dtype != np.uint64 or xp.ndim != 2
                or not xp.flags.c_contiguous):
            xp = as_packed(xp, 'x_packed')
        n_words = self.packed.shape[1]
        if xp.shape[1] != n_words:
            raise ValueError('x_packed has %d words per row, expected %d'
                             % (xp.shape[1], n_words))
        rows, n_out = xp.shape[0], self.n_out
        flags = BIAS_BEFORE if bias_before_scaling else 0
        k_addr = None
        if K is not None:
            K = f32_vector(K, rows, 'K')
            k_addr = K.ctypes.data
            flags |= SCALE_INPUT
        if alpha is not None:
            flags |= SCALE_WEIGHTS
        if scale is None and (next_packed or next_mean_abs):
            raise ValueError('next_packed / next_mean_abs need scale and offset')
        lib = get_library()
        # Addresses of the per-layer constants, found once (a ctypes address costs
        # about as much as the whole product of a small layer).
        key = (lib.isa, id(alpha), id(b), id(scale), id(offset))
        const = self._const.get(key) if hasattr(self, '_const') else None
        if const is None:
            vectors = [None if v is None else f32_vector(v, n_out, name) for v, name in
                       ((alpha, 'alpha'), (np.zeros(n_out) if b is None else b, 'b'),
                        (scale, 'scale'), (offset, 'offset'))]
            if (scale is None) != (offset is None):
                raise ValueError('scale and offset go together')
            panels = self.panel_array(lib)
            const = ((alpha, b, scale, offset), vectors, panels.ctypes.data,
                     [None if v is None else v.ctypes.data for v in vectors])
            self.__dict__.setdefault('_const', {})
            if len(self._const) > 16:
                self._const.clear()
            self._const[key] = const
        p_addr, (a_addr, b_addr, s_addr, o_addr) = const[2], const[3]
        # One allocation for all outputs: z, y (float32), then y's packed words and K.
        nw = words_for(n_out)
        n_y = rows * n_out if scale is not None else 0
        n_p = rows * nw if next_packed else 0
        n_k = rows if next_mean_abs else 0
        buf = np.empty(8 * (n_p + (rows * n_out + n_y + n_k + 1) // 2), dtype=np.uint8)
        base = buf.ctypes.data
        yp = buf[:8 * n_p].view(np.uint64).reshape(rows, nw) if next_packed else None
        off = 8 * n_p
        z = buf[off:off + 4 * rows * n_out].view(np.float32).reshape(rows, n_out)
        z_addr = base + off
        off += 4 * rows * n_out
        y = buf[off:off + 4 * n_y].view(np.float32).reshape(rows, n_out) if n_y else None
        y_addr = base + off if n_y else None
        off += 4 * n_y
        yk = buf[off:off + 4 * n_k].view(np.float32).reshape(rows, 1) if n_k else None
        status = lib.function('xk_xnor_dense')(
            xp.ctypes.data, rows, n_words, p_addr, n_out, self.n_in, flags, k_addr, a_addr,
            b_addr, z_addr, s_addr, o_addr, y_addr, base if n_p else None,
            base + off if n_k else None, nthreads())
        if status != 0:
            raise MemoryError('xnor kernels: out of memory')
        return z, y, yp, yk


class DenseChain:
    """XNOR dense layers, each but the last followed by a batch norm, in one C call.

    What float mode computes for "XNOR dense, batch norm, XNOR dense, batch norm,
    ..., XNOR dense [, batch norm]" (the MNIST MLPs, the dense end of the CIFAR-10
    and SVHN networks), bit for bit: the input's packed signs and K, then each
    layer exactly as :meth:`PackedDense.dense_layer` (its product, ``(p * K) *
    alpha + b``, the batch norm, and the next layer's packed input and K). One
    call from Python per batch instead of one per layer and packing: at a batch
    of one image that overhead (ctypes, allocations, argument checks) costs
    about as much as the product of a 784-4096 layer.

    Outputs are views of one buffer per call; a call reuses the last call's buffer
    and arrays when nothing refers to them any more (see :meth:`run`).

    Parameters
    ----------
    layers : sequence of dict
        One per layer, in order: ``packed`` (:class:`PackedDense`), ``scale_input``
        (bool: multiply by the input's K), ``alpha`` (float32 (n_out,) or None),
        ``b`` (float32 (n_out,) or None), ``bias_before_scaling`` (bool), ``scale``
        and ``offset`` (the batch norm after it, float32 (n_out,); None only for
        the last layer). Layer l's ``n_in`` must be layer l-1's ``n_out``.
    """

    def __init__(self, layers):
        layers = [dict(layer) for layer in layers]
        if not layers:
            raise ValueError('a chain needs at least one layer')
        for l, layer in enumerate(layers):
            packed = layer['packed']
            if not isinstance(packed, PackedDense):
                raise TypeError('layer %d: packed must be a PackedDense' % l)
            if (layer.get('scale') is None) != (layer.get('offset') is None):
                raise ValueError('layer %d: scale and offset go together' % l)
            if l + 1 < len(layers):
                if layer.get('scale') is None:
                    raise ValueError('layer %d: every layer but the last needs its batch norm'
                                     % l)
                if layers[l + 1]['packed'].n_in != packed.n_out:
                    raise ValueError('layer %d has %d outputs but layer %d has n_in=%d'
                                     % (l, packed.n_out, l + 1, layers[l + 1]['packed'].n_in))
            n_out = packed.n_out
            layer['vectors'] = [None if layer.get(k) is None else f32_vector(layer[k], n_out, k)
                                for k in ('alpha', 'b', 'scale', 'offset')]
            if layer['vectors'][1] is None:
                layer['vectors'][1] = np.zeros(n_out, np.float32)
        self.layers = layers
        self.n_in = layers[0]['packed'].n_in
        #: Bytes of outputs per row of the batch (z, y, packed y, K of every layer).
        self.bytes_per_row = 8 * words_for(self.n_in) + 4 + sum(
            8 * layer['packed'].n_out + 8 * words_for(layer['packed'].n_out) + 4
            for layer in layers)
        self._plans = {}   # (isa, rows, keep_z) -> (ctypes layers, byte size, views' layout)
        self._spare = {}    # plan key -> the last output buffer (see _outputs)

    def __len__(self):
        return len(self.layers)

    def _plan(self, lib, rows, keep_z=True):
        key = (lib.isa, rows, keep_z)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        specs, size = [], 0

        def take(nbytes, dtype, cols):
            # an array of the output buffer: (byte offset, dtype, columns), or -1
            nonlocal size
            start = size
            size += -(-nbytes // 64) * 64        # every array on its own cache lines
            specs.append((start, dtype, cols))
            return start

        first = self.layers[0]
        w_in = words_for(self.n_in)
        xp0 = take(8 * rows * w_in, np.uint64, w_in)
        K0 = take(4 * rows, np.float32, 1) if first['scale_input'] else -1
        structs = (ChainLayer * len(self.layers))()
        slots = [0, 1 if K0 >= 0 else None]      # where each result is in specs
        for l, layer in enumerate(self.layers):
            packed, n_out, w_out = layer['packed'], layer['packed'].n_out, words_for(
                layer['packed'].n_out)
            nxt = self.layers[l + 1] if l + 1 < len(self.layers) else None
            offsets = []
            for want, nbytes, dtype, cols in (
                    (keep_z or layer.get('scale') is None, 4 * rows * n_out, np.float32, n_out),
                    (layer.get('scale') is not None, 4 * rows * n_out, np.float32, n_out),
                    (nxt is not None, 8 * rows * w_out, np.uint64, w_out),
                    (nxt is not None and nxt['scale_input'], 4 * rows, np.float32, 1)):
                slots.append(len(specs) if want else None)
                offsets.append(take(nbytes, dtype, cols) if want else -1)
            flags = ((BIAS_BEFORE if layer.get('bias_before_scaling') else 0)
                     | (SCALE_INPUT if layer['scale_input'] else 0)
                     | (SCALE_WEIGHTS if layer.get('alpha') is not None else 0))
            addr = [None if v is None else v.ctypes.data for v in layer['vectors']]
            structs[l] = ChainLayer(packed.panel_array(lib).ctypes.data, n_out, packed.n_in,
                                    flags, *addr, *offsets)
        if len(self._plans) > 8:
            self._plans.clear()
            self._spare.clear()
        plan = self._plans[key] = (lib.function('xk_xnor_dense_chain'), structs,
                                   max(size, 64), xp0, K0, specs, slots)
        return plan

    def _outputs(self, key, rows, size, specs):
        """The output buffer, its address and its arrays (views) for a plan.

        Those of the last call are reused when nothing outside refers to any of
        them any more (their reference counts are back to what they were when they
        were made): a new buffer every call costs page faults and about 1 us per
        view, as much as the product of a small layer.
        """
        spare = self._spare.get(key)
        if spare is not None and _refcounts(spare) == spare[3]:
            return spare
        spare = _new_outputs(rows, size, specs)
        spare[3] = _refcounts(spare)   # (no local name refers to the buffer or a view)
        self._spare[key] = spare
        return spare

    def run(self, x, keep_z=True):
        """The whole chain on a batch.

        Parameters
        ----------
        x : float32 array (rows, n_in)
            Real activations (converted to C-contiguous float32 if needed).
        keep_z : bool
            False: the outputs ``z`` of the layers followed by a batch norm are not
            stored (None), only what that batch norm makes of them.

        Returns
        -------
        x_packed : uint64 (rows, ceil(n_in / 64)), the input's packed signs
        K : float32 (rows, 1), its mean |x| (None if the first layer does not scale)
        outputs : list of ``(z, y, y_packed, y_K)`` per layer, as
            :meth:`PackedDense.dense_layer` returns them (``y`` None for a last layer
            without batch norm; ``y_packed``, ``y_K`` None for the last layer and
            ``y_K`` where the next layer does not scale by K)

        The arrays are views of one buffer. When every array of the last call with
        as many rows is unreferenced (and no view of their buffer exists), this
        call writes into them again rather than allocating: nothing anyone holds
        is ever overwritten.
        """
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError('x must be (rows, %d), got shape %s' % (self.n_in, x.shape))
        rows = x.shape[0]
        lib = get_library()
        key = (lib.isa, rows, bool(keep_z))
        fn, structs, size, xp0, K0, specs, slots = self._plan(lib, rows, bool(keep_z))
        _, address, views, _ = self._outputs(key, rows, size, specs)
        if rows:
            status = fn(x.ctypes.data, rows, self.n_in, xp0, K0, len(self.layers), structs,
                        address, nthreads())
            if status != 0:
                raise MemoryError('xnor kernels: out of memory')
        got = [None if i is None else views[i] for i in slots]
        return got[0], got[1], [tuple(got[i:i + 4]) for i in range(2, len(got), 4)]


def _new_outputs(rows, size, specs):
    """``[buffer, its address, its views, None]`` for DenseChain._outputs."""
    buf = np.empty(size, np.uint8)
    return [buf, buf.ctypes.data,
            [np.ndarray((rows, cols), dtype, buf, offset) for offset, dtype, cols in specs], None]


def _refcounts(spare):
    """Reference counts of an output buffer and its views (see DenseChain._outputs)."""
    return [sys.getrefcount(spare[0])] + [sys.getrefcount(v) for v in spare[2]]
