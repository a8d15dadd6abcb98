"""Inference without Theano: folded networks in numpy, in float or simulated fixed point.

This module needs only numpy (and :mod:`binary_net.modelfile` for its error type),
so that a trained model can be deployed, checked or exported where neither Theano
nor Lasagne is installed. :func:`fold` turns a network description (a *spec*, see
:mod:`binary_net.networks`) and its parameter arrays into a :class:`FoldedNetwork`,
a short list of small operations:

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

Folding
-------
A batch norm ``(x - mean) * inv_std * gamma + beta`` becomes ``scale = gamma *
inv_std`` and ``offset = beta - mean * scale``, kept as its own :class:`Affine` op:
it is *not* merged into the preceding layer's weights, which would destroy the
binary weights of an XNOR layer. XNOR weights are kept as their signs only (int8
+-1, sign(0) = +1) with ``alpha`` apart. Like the Theano layers, ``alpha`` is
recomputed from the real-valued weights as ``mean |W|`` per unit or filter; it
equals the ``xalpha`` array stored in trained model files (``xalpha`` is checked
for shape but not used), except in layers with ``alpha: 'stored'`` (the original's
position-only files: its inference used the stored ``xalpha``, one step behind W).
Convolution weights are stored ready for
cross-correlation: a layer with ``flip_filters`` (a true convolution, the default of
Lasagne and of the XNOR layers) has its filters flipped once at fold time. Dropout
is the identity at inference and disappears.

Modes
-----
``mode='float'``
    float32 throughout, im2col + matrix products for convolutions. Gives the
    predictions of ``lasagne.layers.get_output(net, deterministic=True)`` with
    scores equal to float32 rounding.
``mode='fixed'``
    A *simulation* of signed fixed-point inference: numpy float64 arithmetic on
    quantized values, not integer code. Every binary product (a sum of +-1 and 0
    terms) is exact. The other sums and products of quantized values are exact
    as long as they need at most float64's 53 significant bits, which holds at
    the default widths (a 16-bit by 16-bit product has 32 bits, and a layer sums
    at most a few thousand of them), so float64 acts as a wide integer
    accumulator; at very wide settings (say 48 bits) float64 rounds, far below
    the quantization steps. Rounding to fixed point happens only where a value
    is quantized:

    * the network input to ``input_bits`` bits with ``input_frac`` fraction bits
      (default 8 bits, 7 fraction bits: steps of 1/128 in [-1, 127/128]);
    * every parameter tensor (folded batch-norm scale and offset, alpha, biases,
      the weights and biases of full-precision layers; not the binary weights,
      which are exact) to ``param_bits`` bits;
    * the output of every op, and the input scale K inside the XNOR ops, to
      ``act_bits`` bits.

    For a parameter tensor the number of integer bits is chosen from its own
    largest magnitude; for an activation from the largest magnitude that op
    produced on a calibration set (:meth:`FoldedNetwork.calibrate`, run once in
    float mode and stored on the network), so that results never depend on the
    batch composition and the formats can be exported to an integer
    implementation. A format with ``bits`` bits and ``m`` integer bits has one
    sign bit and ``f = bits - 1 - m`` fraction bits, where ``m`` is the smallest
    integer with ``max|x| < 2**m`` (``m`` may be negative, giving more fraction
    bits to small tensors; see :func:`fixed_format`). Quantizing rounds
    ``x * 2**f`` to the nearest integer (ties to even, ``'half_even'``, or away
    from zero, ``'half_away'``) and then saturates it to
    ``[-2**(bits-1), 2**(bits-1) - 1]`` (see :func:`quantize`). The final softmax,
    if any, is monotonic and outside the fixed-point datapath: it is computed in
    float64 from the quantized logits and its output is not quantized.
``mode='xnor'``
    Float mode with the binary products of the XNOR ops computed by bit-packed
    XNOR-popcount kernels (:mod:`binary_net.xnor`): bit-identical scores.

Batches
-------
A sample's scores never depend on the batch it comes in (its size, the sample's
position, the other samples), bit for bit, in every mode. A BLAS float product
``X @ W`` would not give that: OpenBLAS's float32 kernels for Haswell and Zen
(AVX2) round a row's sums differently with the matrix's row count and the row's
position in it. So every product that rounds is computed one sample at a time,
as a product of the same shape whatever the batch: full-precision convolutions
and the XNOR ops' K (a box filter) one GEMM per sample (:func:`conv2d`), dense
layers with a real-valued input one matrix-vector product per sample
(:func:`matmul_rows`), both in one numpy call. Binary products (sums of +-1 and
0 terms) are exact in any order and stay batched; everything else is
elementwise or a per-sample reduction. Calibration ranges, the maximum over
samples, therefore do not depend on the calibration batch size or the images'
order either. The scores do depend, within float32 rounding, on the BLAS build,
its kernel family (``OPENBLAS_CORETYPE``) and its thread count, which choose
the summation order: another machine may give scores a few ulps apart, and so
a calibrated range at most an ulp apart (a format changes only if that crosses
a power of two).

Adding a mode
-------------
Every op runs through :meth:`Op.__call__`, which calls the op's method
``forward_<mode>`` if it has one, and otherwise its generic :meth:`Op.forward`
when the mode's context allows it (float and fixed share the generic code and
differ only in the context's hooks: dtype, parameter quantization, activation
quantization). A new mode (``'xnor'`` with bit-packed kernels, ``'int'`` with true
integer arithmetic) is a context class registered with :func:`register_mode` plus
``forward_<mode>`` methods on the ops that need them; a mode whose context sets
``generic = False`` must implement every op, and an op that lacks it raises a
ValueError naming the op and the mode.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import ModelFileError
from .spec import PARAMS_PER_TYPE, expected_param_shapes, layer_plan, output_size

__all__ = ['fold', 'FoldedNetwork', 'Op', 'XnorDense', 'XnorConv', 'Conv', 'Dense',
           'Affine', 'MaxPool', 'Rectify', 'Softmax', 'FixedPointConfig', 'quantize',
           'quantize_codes', 'fixed_format', 'im2col', 'conv2d', 'matmul_rows', 'sign', 'MODES',
           'register_mode', 'ROUNDINGS', 'PARAMS_PER_TYPE', 'expected_param_shapes',
           'FloatContext', 'FixedContext', 'CalibrationContext']

# Largest im2col matrix built at once, in elements; convolutions of bigger batches
# are computed in chunks of samples so that memory stays bounded.
IM2COL_MAX_ELEMENTS = 1 << 23


# ---------------------------------------------------------------------------
# Numerical building blocks
# ---------------------------------------------------------------------------

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
        True: each sample's output is its own matrix product, ``(Ho * Wo, C * fh
        * fw) @ (C * fh * fw, F)``, of the same shape whatever the batch (see
        :func:`matmul_rows` for why), so a sample's result depends on that sample
        only, bit for bit. False: one product per chunk of samples, for products
        that are exact in any order (sums of +-1 terms), where it is faster.

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
    w_mat = w.reshape(f, -1).T
    out = np.empty((n, f, ho, wo), dtype=np.result_type(x.dtype, w.dtype))
    step = max(1, IM2COL_MAX_ELEMENTS // max(1, ho * wo * c * fh * fw))
    for start in range(0, n, step):
        chunk = x[start:start + step]
        cols, _ = im2col(chunk, (fh, fw), stride, pad)
        if per_sample:  # a stack of matrices: numpy's matmul runs one BLAS product each
            cols = cols.reshape(len(chunk), ho * wo, -1)
        product = cols @ w_mat
        out[start:start + len(chunk)] = product.reshape(len(chunk), ho, wo, f) \
                                               .transpose(0, 3, 1, 2)
    return out


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

    Returns
    -------
    ndarray ``(N, F)`` of the result type of ``x`` and ``w_t``.
    """
    return np.matmul(w_t, x.reshape(len(x), -1, 1))[:, :, 0]


ROUNDINGS = ('half_even', 'half_away')


def _round(y, rounding):
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
    y = _round(np.ldexp(np.asarray(x, dtype=np.float64), frac), rounding)
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


class FixedPointConfig:
    """Bit widths and rounding of ``mode='fixed'``.

    Parameters
    ----------
    input_bits, input_frac : int
        Width and fraction bits of the network input (default 8 and 7).
    param_bits : int
        Width of every real-valued parameter tensor (default 16).
    act_bits : int
        Width of every op's output and of the XNOR ops' K (default 16).
    rounding : {'half_even', 'half_away'}
    """

    def __init__(self, input_bits=8, input_frac=7, param_bits=16, act_bits=16,
                 rounding='half_even'):
        for name, value in (('input_bits', input_bits), ('param_bits', param_bits),
                            ('act_bits', act_bits)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 2 <= value <= 53:
                raise ValueError('%s must be an integer in 2..53, got %r' % (name, value))
        if isinstance(input_frac, bool) or not isinstance(input_frac, (int, np.integer)):
            raise ValueError('input_frac must be an integer, got %r' % (input_frac,))
        if rounding not in ROUNDINGS:
            raise ValueError('unknown rounding %r; choose one of %s'
                             % (rounding, ', '.join(ROUNDINGS)))
        self.input_bits, self.input_frac = int(input_bits), int(input_frac)
        self.param_bits, self.act_bits = int(param_bits), int(act_bits)
        self.rounding = rounding

    def key(self):
        return (self.input_bits, self.input_frac, self.param_bits, self.act_bits,
                self.rounding)

    def __repr__(self):
        return ('FixedPointConfig(input_bits=%d, input_frac=%d, param_bits=%d, '
                'act_bits=%d, rounding=%r)' % self.key())


# ---------------------------------------------------------------------------
# Mode contexts
# ---------------------------------------------------------------------------

class FloatContext:
    """``mode='float'``: float32, no quantization. The base of every context.

    The hooks a generic :meth:`Op.forward` calls:

    * ``dtype``: the arithmetic's dtype;
    * ``network_input(X)``: the first op's input;
    * ``param(op, name)``: a real-valued parameter of ``op`` as used in the arithmetic;
    * ``binary(op, name)``: a +-1 array (exact in every mode) in ``dtype``;
    * ``intermediate(op, key, x)``: a named value inside an op (the XNOR ops' K);
    * ``output(op, x)``: what the next op receives.
    """

    mode = 'float'
    dtype = np.float32
    generic = True  # ops without forward_<mode> may run their generic forward()

    def __init__(self, network):
        self.network = network

    def network_input(self, X):
        return np.asarray(X, dtype=self.dtype)

    def param(self, op, name):
        return op.cached(('float', name), lambda: op.params[name].astype(self.dtype))

    def binary(self, op, name):
        return op.cached((np.dtype(self.dtype).name, name),
                         lambda: getattr(op, name).astype(self.dtype))

    def intermediate(self, op, key, x):
        return x

    def output(self, op, x):
        return x


class CalibrationContext(FloatContext):
    """Float arithmetic that records the largest magnitude of every op's output and intermediates."""

    def __init__(self, network):
        super().__init__(network)
        self.ranges = [dict() for _ in network.ops]

    def _record(self, op, key, x):
        if x.size:
            peak = float(np.max(np.abs(x)))
            self.ranges[op.index][key] = max(self.ranges[op.index].get(key, 0.0), peak)

    def intermediate(self, op, key, x):
        self._record(op, key, x)
        return x

    def output(self, op, x):
        self._record(op, 'out', x)
        return x


class FixedContext(FloatContext):
    """``mode='fixed'``: float64 arithmetic on quantized values (see the module docstring)."""

    mode = 'fixed'
    dtype = np.float64

    def __init__(self, network, input_bits=8, input_frac=7, param_bits=16, act_bits=16,
                 rounding='half_even'):
        super().__init__(network)
        if network.calibration is None:
            raise RuntimeError('fixed mode needs static activation ranges: call '
                               'FoldedNetwork.calibrate(X_calib) first')
        self.config = FixedPointConfig(input_bits, input_frac, param_bits, act_bits, rounding)
        self.ranges = network.calibration['ranges']

    def network_input(self, X):
        c = self.config
        return quantize(X, c.input_bits, c.input_frac, c.rounding)

    def param(self, op, name):
        c = self.config

        def make():
            value = op.params[name]
            _, frac = fixed_format(np.max(np.abs(value)) if value.size else 0, c.param_bits)
            return quantize(value, c.param_bits, frac, c.rounding)

        return op.cached(('fixed', name, c.param_bits, c.rounding), make)

    def _quantize_activation(self, op, key, x):
        c = self.config
        try:
            peak = self.ranges[op.index][key]
        except (IndexError, KeyError):
            raise RuntimeError('no calibrated range for %r of op %d (%s); calibrate again'
                               % (key, op.index, op.kind)) from None
        _, frac = fixed_format(peak, c.act_bits)
        return quantize(x, c.act_bits, frac, c.rounding)

    def intermediate(self, op, key, x):
        return self._quantize_activation(op, key, x)

    def output(self, op, x):
        if not op.quantize_output:
            return x
        return self._quantize_activation(op, 'out', x)


MODES = {'float': FloatContext, 'fixed': FixedContext}


def register_mode(name, context_class):
    """Make ``mode=name`` available to :meth:`FoldedNetwork.predict_scores`.

    Parameters
    ----------
    name : str
    context_class : callable ``(network, **options) -> context``
        Usually a subclass of :class:`FloatContext` with ``mode = name``; see
        "Adding a mode" in the module docstring.
    """
    MODES[name] = context_class


def _make_context(network, mode, options):
    try:
        factory = MODES[mode]
    except (KeyError, TypeError):
        raise ValueError('unknown inference mode %r; choose one of %s'
                         % (mode, ', '.join(sorted(MODES)))) from None
    try:
        return factory(network, **options)
    except TypeError as error:
        if options:
            raise ValueError('mode %r does not take the options %s (%s)'
                             % (mode, ', '.join(sorted(options)), error)) from None
        raise


# ---------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------

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
        method = getattr(self, 'forward_' + ctx.mode, None)
        if method is not None:
            return method(x, ctx)
        if ctx.generic:
            return self.forward(x, ctx)
        raise ValueError('%s op does not support mode %r' % (self.kind, ctx.mode))

    def forward(self, x, ctx):
        """The arithmetic shared by the float and fixed modes, through ``ctx``'s hooks."""
        raise NotImplementedError

    def describe(self):
        return self.kind

    def __repr__(self):
        return '<%s>' % self.describe()


def _bias_shape(x, vector):
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
            out *= _bias_shape(out, ctx.param(self, 'alpha'))
        out += _bias_shape(out, ctx.param(self, 'b'))
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
        out += _bias_shape(out, ctx.param(self, 'b'))
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
        return x * _bias_shape(x, ctx.param(self, 'scale')) + _bias_shape(x, ctx.param(self, 'offset'))

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


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------

class FoldedNetwork:
    """A folded network: a sequence of :class:`Op` applied in order.

    Behaves as a read-only list of ops (``len``, indexing, iteration).

    Parameters
    ----------
    ops : list of :class:`Op`
    input_shape : tuple
        Shape of one input sample, e.g. ``(1, 28, 28)``.
    name : str or None
        The spec's name ('mnist', ...).

    Attributes
    ----------
    calibration : dict or None
        Set by :meth:`calibrate`: ``{'size': number of calibration images,
        'ranges': [{'out': max |output|, 'K': max |K|}, ...] one dict per op}``.
        Plain floats, so it can be stored as JSON and assigned back.
    """

    def __init__(self, ops, input_shape, name=None):
        self.ops = list(ops)
        for i, op in enumerate(self.ops):
            op.index = i
        self.input_shape = tuple(input_shape)
        self.name = name
        self.calibration = None
        # How the images were scaled to [-1, 1] in training: 'default' (this
        # package) or 'original' (the original's; see datasets.scale_pixels).
        self.pixel_scaling = 'default'
        # The class numbering of the labels it was trained on: 'default', or
        # 'svhn_mat_minus_one' (the original's SVHN: .mat label - 1, digit 0 -> 9).
        self.labels = 'default'

    def __len__(self):
        return len(self.ops)

    def __getitem__(self, i):
        return self.ops[i]

    def __iter__(self):
        return iter(self.ops)

    def __repr__(self):
        return 'FoldedNetwork(%s: %s)' % (self.name, ', '.join(op.describe() for op in self.ops))

    def describe(self):
        """One line per op."""
        return '\n'.join('%2d  %s%s' % (op.index, op.describe(),
                                        '' if op.layer is None else '  (layer %d)' % op.layer)
                         for op in self.ops)

    def _check_input(self, X):
        X = np.asarray(X)
        if not np.issubdtype(X.dtype, np.floating):
            raise ValueError('expected float images in [-1, 1] (datasets.to_unit_range), '
                             'got %s' % X.dtype)
        if X.ndim != len(self.input_shape) + 1 or X.shape[1:] != self.input_shape:
            raise ValueError('expected inputs shaped (N,) + %s, got %s'
                             % (self.input_shape, X.shape))
        return X

    def _run(self, X, ctx, batch_size):
        X = self._check_input(X)
        batch_size = len(X) if not batch_size else int(batch_size)
        outputs = []
        for start in range(0, len(X), max(1, batch_size)):
            x = ctx.network_input(X[start:start + batch_size])
            for op in self.ops:
                x = ctx.output(op, op(x, ctx))
            outputs.append(x)
        if not outputs:
            return np.empty((0,) + self.output_shape(), dtype=ctx.dtype)
        return np.concatenate(outputs)

    def output_shape(self):
        """Shape of one sample's scores, found by running a zero sample in float mode."""
        if not hasattr(self, '_output_shape'):
            x = np.zeros((1,) + self.input_shape, np.float32)
            ctx = FloatContext(self)
            for op in self.ops:
                x = op(x, ctx)
            self._output_shape = x.shape[1:]
        return self._output_shape

    def calibrate(self, X_calib, batch_size=500):
        """Record static activation ranges for fixed mode from a float run.

        Parameters
        ----------
        X_calib : float ndarray ``(N,) + input_shape`` in [-1, 1]
            A fixed calibration set, e.g. the first 1000 training images.
        batch_size : int
            Only bounds memory; the ranges do not depend on it, nor on the
            images' order, bit for bit (every sample is computed on its own).

        Returns
        -------
        self, with :attr:`calibration` set (it replaces any earlier calibration).
        """
        X_calib = self._check_input(X_calib)
        if len(X_calib) == 0:
            raise ValueError('the calibration set is empty')
        ctx = CalibrationContext(self)
        self._run(X_calib, ctx, batch_size)
        self.calibration = {'size': int(len(X_calib)), 'ranges': ctx.ranges}
        return self

    def predict_scores(self, X, mode='float', batch_size=None, **options):
        """The network's output (class scores) for a batch of images.

        Parameters
        ----------
        X : float ndarray ``(N,) + input_shape``, values in [-1, 1]
        mode : str
            'float' or 'fixed' (see the module docstring), or a mode added with
            :func:`register_mode`; anything else raises ValueError.
        batch_size : int or None
            Images per step (None: all at once). Results do not depend on it,
            bit for bit (see "Batches" in the module docstring).
        **options
            The mode's options; for 'fixed': ``input_bits=8, input_frac=7,
            param_bits=16, act_bits=16, rounding='half_even'``.

        Returns
        -------
        ndarray ``(N, classes)``: float32 in float mode, float64 in fixed mode.
        """
        return self._run(X, _make_context(self, mode, options), batch_size)

    def predict(self, X, mode='float', batch_size=None, **options):
        """Predicted labels: the argmax of :meth:`predict_scores` (int64, shape (N,))."""
        scores = self.predict_scores(X, mode, batch_size, **options)
        return np.argmax(scores.reshape(len(scores), -1), axis=1).astype(np.int64)

    def trace(self, X, mode='float', **options):
        """Every op's output for one batch, for comparing modes layer by layer.

        Parameters are as for :meth:`predict_scores` (one batch, no batch_size).

        Returns
        -------
        list of ndarray, one per op (``trace(X)[-1]`` is ``predict_scores(X)``).
        """
        X = self._check_input(X)
        ctx = _make_context(self, mode, options)
        x, outputs = ctx.network_input(X), []
        for op in self.ops:
            x = ctx.output(op, op(x, ctx))
            outputs.append(x)
        return outputs

    def fixed_point_formats(self, **options):
        """The fixed-point format of every quantized tensor, for export to integer code.

        Parameters
        ----------
        **options : the fixed-mode options (see :meth:`predict_scores`).

        Returns
        -------
        list of dict, one per op: ``{'op': kind, 'out': (bits, frac) or None,
        'K': (bits, frac) (XNOR ops with K), 'params': {name: (bits, frac)}}``.
        """
        ctx = FixedContext(self, **options)
        c = ctx.config
        formats = []
        for op, ranges in zip(self.ops, ctx.ranges):
            entry = {'op': op.kind, 'params': {}}
            entry['out'] = ((c.act_bits, fixed_format(ranges.get('out', 0.0), c.act_bits)[1])
                            if op.quantize_output else None)
            if 'K' in ranges:
                entry['K'] = (c.act_bits, fixed_format(ranges['K'], c.act_bits)[1])
            for name, value in op.params.items():
                peak = np.max(np.abs(value)) if value.size else 0.0
                entry['params'][name] = (c.param_bits, fixed_format(peak, c.param_bits)[1])
            formats.append(entry)
        return formats


# ---------------------------------------------------------------------------
# Folding a spec and its arrays
# ---------------------------------------------------------------------------

def _shape_str(shape):
    return '(%s)' % ', '.join(str(s) for s in shape) if len(shape) != 1 else '(%d,)' % shape[0]


def _misfits(values, expected):
    return ['arr_%d has shape %s but %s layer %d needs %s for %s'
            % (i, _shape_str(np.shape(v)), kind, number, _shape_str(shape), name)
            for i, (v, (number, kind, name, shape)) in enumerate(zip(values, expected))
            if tuple(np.shape(v)) != tuple(shape)]


def _summarize(misfits, limit=4):
    shown = '; '.join(misfits[:limit])
    if len(misfits) > limit:
        shown += '; and %d more' % (len(misfits) - limit)
    return shown


def fold(spec, param_values, source='model'):
    """Fold a network description and its parameter arrays into a :class:`FoldedNetwork`.

    Parameters
    ----------
    spec : dict
        A network description (see :mod:`binary_net.networks`).
    param_values : list of ndarray
        The arrays in model-file order (``modelfile.load_model(path)[0]``).
    source : str
        Names the arrays' origin (a file name) in error messages.

    Returns
    -------
    FoldedNetwork

    Raises
    ------
    binary_net.modelfile.ModelFileError
        One line: a malformed description, or arrays whose count or shapes do
        not fit it, naming them, e.g. ``arr_0 has shape (784, 1024) but
        xnor_dense layer 1 needs (784, 4096) for W``.
    """
    input_shape, plan = layer_plan(spec)
    name = spec.get('name') or 'given'
    expected = [(number, entry['type'], array, shape)
                for number, entry, _, arrays in plan for array, shape in arrays]
    values = list(param_values)
    if len(values) != len(expected):
        misfits = _misfits(values, expected)
        detail = ('; first misfits: ' + _summarize(misfits, 3)) if misfits else ''
        raise ModelFileError('%s holds %d arrays but the %s network needs %d%s'
                             % (source, len(values), name, len(expected), detail))
    misfits = _misfits(values, expected)
    if misfits:
        raise ModelFileError('%s does not fit the %s network: %s'
                             % (source, name, _summarize(misfits)))

    ops, position = [], 0
    for number, entry, geometry, arrays in plan:
        kind = entry['type']
        arr = [np.asarray(values[position + i]) for i in range(len(arrays))]
        position += len(arrays)
        if kind == 'xnor_dense':
            W, b = arr[0], arr[1]
            alpha = _alpha(entry, W, arr[2], axis=0)
            ops.append(XnorDense(np.where(W >= 0, 1, -1), alpha, b,
                                 binary_input=entry.get('binary_input', True),
                                 scale_input=entry.get('scale_input', True),
                                 scale_weights=entry.get('scale_weights', True),
                                 bias_before_scaling=entry.get('bias_before_scaling', False),
                                 layer=number))
        elif kind == 'xnor_conv':
            W, b = arr[0], arr[1]
            alpha = _alpha(entry, W.reshape(len(W), -1), arr[3], axis=1)
            if entry.get('beta_filter', 'box') == 'full':
                _check_averaging_filter(arr[2], '%s: xnor_conv layer %d' % (source, number))
            if geometry['flip']:
                W = W[:, :, ::-1, ::-1]
            ops.append(XnorConv(np.where(W >= 0, 1, -1), alpha, b, geometry['stride'],
                                geometry['pad'],
                                binary_input=entry.get('binary_input', True),
                                scale_input=entry.get('scale_input', True),
                                scale_weights=entry.get('scale_weights', True),
                                layer=number))
        elif kind == 'conv':
            W, b = arr
            if geometry['flip']:
                W = W[:, :, ::-1, ::-1]
            ops.append(Conv(np.ascontiguousarray(W), b, geometry['stride'], geometry['pad'],
                            layer=number))
        elif kind == 'dense':
            ops.append(Dense(arr[0], arr[1], layer=number))
        elif kind == 'batch_norm':
            fold_bn = (Affine.from_batch_norm_float32 if entry.get('fold') == 'float32'
                       else Affine.from_batch_norm)
            ops.append(fold_bn(*arr, layer=number))
        elif kind == 'max_pool':
            ops.append(MaxPool(geometry['pool'], layer=number))
        if kind in ('conv', 'dense'):
            nonlinearity = entry.get('nonlinearity', 'identity')
            if nonlinearity == 'rectify':
                ops.append(Rectify(layer=number))
            elif nonlinearity == 'softmax':
                ops.append(Softmax(layer=number))
            elif nonlinearity not in ('identity', None, 'linear'):
                raise ModelFileError('bad network description: %s layer %d has unknown '
                                     'nonlinearity %r' % (kind, number, nonlinearity))
    network = FoldedNetwork(ops, input_shape, name=spec.get('name'))
    network.pixel_scaling = spec.get('pixel_scaling', 'default')
    network.labels = spec.get('labels', 'default')
    return network


def _alpha(entry, W, xalpha, axis):
    """alpha of an XNOR layer: mean |W| (``alpha: 'weights'``, the default) or the
    stored ``xalpha`` (``alpha: 'stored'``, as the original's inference used it: the
    value of the last training step, one update behind W)."""
    source = entry.get('alpha', 'weights')
    if source == 'stored':
        return np.asarray(xalpha, dtype=np.float64)
    if source != 'weights':
        raise ModelFileError("bad network description: alpha must be 'weights' or 'stored', "
                             "got %r" % (source,))
    return np.mean(np.abs(W), axis=axis, dtype=np.float64)


def _check_averaging_filter(beta_filter, what):
    """The original's K filter must be its constant 1 / (C * fh * fw) (never trained).

    K computed from it then equals this package's box average of ``mean_c |X|``.
    """
    value = np.float32(1) / np.float32(np.prod(beta_filter.shape[1:]))
    if not np.all(beta_filter == value):
        raise ModelFileError('%s beta_filter is not the constant averaging filter '
                             '1/(C*fh*fw) = %r the original writes' % (what, float(value)))


# Modes defined in their own modules register themselves when imported; this one is
# imported here so that mode='xnor' is always available (binary_net.xnor).
from . import xnor as _xnor  # noqa: E402,F401
from . import integer as _integer  # noqa: E402,F401  (mode='int', binary_net.integer)
from . import fixed_original as _fixed_original  # noqa: E402,F401  (mode='fixed', preset='original')
