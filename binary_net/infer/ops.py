"""The ops of a folded network: small classes holding folded parameters and their arithmetic.

Each op keeps its parameters (``params``, float64) and geometry, and writes its
arithmetic once, in :meth:`Op.forward`, through the hooks of a mode context;
running it (:meth:`Op.__call__`) asks the mode's context, which computes it so
or otherwise (see :mod:`binary_net.infer.context`):

====================  ======================================================
op                    computes (per sample, NCHW or flat)
====================  ======================================================
:class:`XnorDense`    ``(sign(x) @ W_sign) * K * alpha + b``, K = mean |x|
:class:`XnorConv`     ``(sign(X) (*) W_sign) * K * alpha[f] + b[f]``, K = box
                      average of ``mean_c |X|`` (same stride, zero padding)
:class:`Conv`         full-precision convolution ``X (*) W + b``
:class:`Dense`        full-precision ``x @ W + b`` (input flattened)
:class:`Affine`       a folded batch norm: ``x * scale + offset`` per channel
:class:`MaxPool`      max over non-overlapping windows, border ignored
:class:`Rectify`      ``max(x, 0)``
:class:`Softmax`      softmax over the classes
====================  ======================================================

XNOR weights are kept as their signs only (int8 +-1, sign(0) = +1), with alpha
apart; convolution weights are stored ready for cross-correlation.
"""
import numpy as np

from .numerics import conv2d, matmul_rows, sign

__all__ = ['Op', 'XnorDense', 'XnorConv', 'Conv', 'Dense', 'Affine', 'MaxPool', 'Rectify',
           'Softmax', 'OPS', 'bias_shape']


class Op:
    """One step of a folded network.

    Attributes
    ----------
    kind : str
        Short name of the op type.
    layer : int or None
        1-based number of the spec layer it came from (for messages).
    index : int
        Position in the :class:`FoldedNetwork` (set by the network).
    params : dict of str -> float64 ndarray
        Real-valued parameters (quantized in fixed mode).
    quantize_output : bool
        Whether fixed mode quantizes the output.
    """

    kind = 'op'
    quantize_output = True

    def __init__(self, layer=None):
        self.layer = layer
        self.index = None
        self.params = {}
        self._cache = {}

    def cached(self, key, make):
        """A value derived from the parameters, computed once per key (mode, name, widths)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def transposed(self, w):
        """A C-contiguous copy of ``w.T`` for :func:`matmul_rows`, made once per array ``w``.

        ``w`` is a value the context caches (``ctx.param``, ``ctx.binary``); the copy
        is cached beside a reference to ``w`` itself, so it is never confused with
        the copy of another array.
        """
        key = ('transposed', id(w))
        entry = self._cache.get(key)
        if entry is None or entry[0] is not w:
            entry = self._cache[key] = (w, np.ascontiguousarray(w.T))
        return entry[1]

    def __call__(self, x, ctx):
        """The op's output for ``x`` in ``ctx``'s mode: ``ctx.<kind>(self, x)``.

        The mode's context decides how the op is computed (see
        :mod:`binary_net.infer.context`); a context without a method for this
        kind raises a ValueError naming the op and the mode.
        """
        method = getattr(ctx, self.kind, None)
        if method is None:
            raise ValueError('%s op does not support mode %r'
                             % (self.kind, getattr(ctx, 'mode', type(ctx).__name__)))
        return method(self, x)

    def forward(self, x, ctx):
        """The arithmetic shared by the float, calibration and fixed modes, through
        ``ctx``'s hooks (:class:`~binary_net.infer.context.FloatContext`)."""
        raise NotImplementedError

    def describe(self):
        return self.kind

    def __repr__(self):
        return '<%s>' % self.describe()


def bias_shape(x, vector):
    """Broadcast a per-channel (4D) or per-unit (2D) vector against x."""
    return vector.reshape((1, -1) + (1,) * (x.ndim - 2))


def _binary_product(op, x, ctx, product):
    """``product(sign(x), W_sign)`` (or ``product(x, W_sign)`` for a real input) in ctx.dtype.

    With a binary input every term is +-1 or 0 (padding), so the sums are small
    integers, exact in float32 (up to 2**24 terms): they are computed in float32,
    the fastest exact choice, whatever the mode's dtype.
    """
    if not op.binary_input:
        return product(x, ctx.binary(op, 'W_sign'))
    W = op.cached(('float32', 'W_sign'), lambda: op.W_sign.astype(np.float32))
    return product(sign(x, np.float32), W).astype(ctx.dtype, copy=False)


class XnorDense(Op):
    """Fully connected XNOR layer: ``(sign(x) @ W_sign) * K * alpha + b``.

    Attributes
    ----------
    W_sign : int8 ndarray ``(n_in, units)`` of +-1
    params : ``alpha`` (units,), ``b`` (units,)
    binary_input, scale_input, scale_weights, bias_before_scaling : bool
        As :class:`binary_net.layers.XnorDenseLayer` (``scale_input`` is off for a
        real-valued input). With ``bias_before_scaling`` the result is
        ``(prod + b) * K * alpha``.
    """

    kind = 'xnor_dense'

    def __init__(self, W_sign, alpha, b, binary_input=True, scale_input=True,
                 scale_weights=True, bias_before_scaling=False, layer=None):
        super().__init__(layer)
        self.W_sign = np.asarray(W_sign, dtype=np.int8)
        self.params = {'alpha': np.asarray(alpha, np.float64), 'b': np.asarray(b, np.float64)}
        self.binary_input = bool(binary_input)
        self.scale_input = bool(scale_input) and self.binary_input
        self.scale_weights = bool(scale_weights)
        self.bias_before_scaling = bool(bias_before_scaling)

    def forward(self, x, ctx):
        x = x.reshape(len(x), -1)
        if self.binary_input:   # exact integer sums: one batched product, any order
            out = _binary_product(self, x, ctx, lambda a, w: a @ w)
        else:                   # a float product: one row at a time (matmul_rows)
            out = _binary_product(self, x, ctx,
                                  lambda a, w: matmul_rows(a, self.transposed(w)))
        b = ctx.param(self, 'b')
        if self.bias_before_scaling:
            out += b
        if self.scale_input:
            K = np.mean(np.abs(x), axis=1, keepdims=True, dtype=ctx.dtype)
            out *= ctx.intermediate(self, 'K', K)
        if self.scale_weights:
            out *= ctx.param(self, 'alpha')
        if not self.bias_before_scaling:
            out += b
        return out

    def describe(self):
        return 'xnor_dense %d->%d' % self.W_sign.shape


class XnorConv(Op):
    """XNOR convolution: ``(sign(X) (*) W_sign) * K * alpha[f] + b[f]``.

    Attributes
    ----------
    W_sign : int8 ndarray ``(F, C, fh, fw)`` of +-1, for cross-correlation
        (already flipped if the layer computed a true convolution).
    params : ``alpha`` (F,), ``b`` (F,)
    stride, pad : pairs of int
        Zero padding is applied after binarization: padded positions contribute 0.
    binary_input, scale_input, scale_weights : bool
        K is ``mean_c |X|`` averaged over each receptive field by a box filter,
        with the same stride and padding (padded positions count as 0).
    """

    kind = 'xnor_conv'

    def __init__(self, W_sign, alpha, b, stride=(1, 1), pad=(0, 0), binary_input=True,
                 scale_input=True, scale_weights=True, layer=None):
        super().__init__(layer)
        self.W_sign = np.asarray(W_sign, dtype=np.int8)
        self.params = {'alpha': np.asarray(alpha, np.float64), 'b': np.asarray(b, np.float64)}
        self.stride, self.pad = tuple(stride), tuple(pad)
        self.binary_input = bool(binary_input)
        self.scale_input = bool(scale_input) and self.binary_input
        self.scale_weights = bool(scale_weights)

    def forward(self, x, ctx):
        # A binary input gives exact integer sums, the same in any order: one product
        # per chunk of samples. A real-valued input is a float product: per sample.
        out = _binary_product(self, x, ctx, lambda a, w: conv2d(
            a, w, self.stride, self.pad, per_sample=not self.binary_input))
        if self.scale_input:
            fh, fw = self.W_sign.shape[2:]
            box = np.full((1, 1, fh, fw), 1.0 / (fh * fw), dtype=ctx.dtype)
            mean_abs = np.mean(np.abs(x), axis=1, keepdims=True, dtype=ctx.dtype)
            K = conv2d(mean_abs, box, self.stride, self.pad)
            out *= ctx.intermediate(self, 'K', K)
        if self.scale_weights:
            out *= bias_shape(out, ctx.param(self, 'alpha'))
        out += bias_shape(out, ctx.param(self, 'b'))
        return out

    def describe(self):
        f, c, fh, fw = self.W_sign.shape
        return 'xnor_conv %d->%d %dx%d stride %s pad %s' % (c, f, fh, fw, self.stride, self.pad)


class Conv(Op):
    """Full-precision convolution ``X (*) W + b`` (W stored for cross-correlation)."""

    kind = 'conv'

    def __init__(self, W, b, stride=(1, 1), pad=(0, 0), layer=None):
        super().__init__(layer)
        self.params = {'W': np.asarray(W, np.float64), 'b': np.asarray(b, np.float64)}
        self.stride, self.pad = tuple(stride), tuple(pad)

    def forward(self, x, ctx):
        out = conv2d(x, ctx.param(self, 'W'), self.stride, self.pad)
        out += bias_shape(out, ctx.param(self, 'b'))
        return out

    def describe(self):
        f, c, fh, fw = self.params['W'].shape
        return 'conv %d->%d %dx%d stride %s pad %s' % (c, f, fh, fw, self.stride, self.pad)


class Dense(Op):
    """Full-precision fully connected layer ``x @ W + b`` (input flattened)."""

    kind = 'dense'

    def __init__(self, W, b, layer=None):
        super().__init__(layer)
        self.params = {'W': np.asarray(W, np.float64), 'b': np.asarray(b, np.float64)}

    def forward(self, x, ctx):
        out = matmul_rows(x.reshape(len(x), -1), self.transposed(ctx.param(self, 'W')))
        out += ctx.param(self, 'b')
        return out

    def describe(self):
        return 'dense %d->%d' % self.params['W'].shape


class Affine(Op):
    """A folded batch norm: ``x * scale + offset`` per channel (axis 1)."""

    kind = 'affine'

    def __init__(self, scale, offset, layer=None):
        super().__init__(layer)
        self.params = {'scale': np.asarray(scale, np.float64),
                       'offset': np.asarray(offset, np.float64)}

    @classmethod
    def from_batch_norm_float32(cls, beta, gamma, mean, inv_std, layer=None):
        """The original's inference fold, in float32: ``scale = gamma * inv_std``,
        ``offset = -mean * inv_std * gamma + beta`` (its test scripts' formula and order)."""
        beta, gamma, mean, inv_std = (np.asarray(v, np.float32) for v in (beta, gamma, mean, inv_std))
        return cls(gamma * inv_std, -mean * inv_std * gamma + beta, layer)

    @classmethod
    def from_batch_norm(cls, beta, gamma, mean, inv_std, layer=None):
        """``scale = gamma * inv_std``, ``offset = beta - mean * scale`` (in float64)."""
        scale = np.asarray(gamma, np.float64) * np.asarray(inv_std, np.float64)
        offset = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
        return cls(scale, offset, layer)

    def forward(self, x, ctx):
        return x * bias_shape(x, ctx.param(self, 'scale')) + bias_shape(x, ctx.param(self, 'offset'))

    def describe(self):
        return 'affine (batch norm) x%d' % len(self.params['scale'])


class MaxPool(Op):
    """Max pooling over non-overlapping ``pool_size`` windows; a partial border is dropped."""

    kind = 'max_pool'

    def __init__(self, pool_size=(2, 2), layer=None):
        super().__init__(layer)
        self.pool_size = tuple(pool_size)

    def forward(self, x, ctx):
        # The elementwise maximum of the ph * pw strided window positions: the same
        # values as a max over reshaped windows, several times faster in numpy.
        ph, pw = self.pool_size
        ho, wo = x.shape[2] // ph, x.shape[3] // pw
        out = None
        for i in range(ph):
            for j in range(pw):
                tap = x[:, :, i:ho * ph:ph, j:wo * pw:pw]
                out = tap.copy() if out is None else np.maximum(out, tap, out=out)
        return out

    def describe(self):
        return 'max_pool %dx%d' % self.pool_size


class Rectify(Op):
    """``max(x, 0)``."""

    kind = 'rectify'

    def forward(self, x, ctx):
        return np.maximum(x, 0)


class Softmax(Op):
    """Softmax over axis 1. Monotonic, so it never changes a prediction; in fixed
    mode it is computed in float64 from the quantized logits and not quantized."""

    kind = 'softmax'
    quantize_output = False

    def forward(self, x, ctx):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


#: The op classes by kind (the names of the context methods they dispatch to).
OPS = {cls.kind: cls for cls in (XnorDense, XnorConv, Conv, Dense, Affine, MaxPool, Rectify,
                                 Softmax)}
