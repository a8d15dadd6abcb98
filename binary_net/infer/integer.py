"""True integer inference: ``mode='int'``, computed in numpy integers, bit-exact with the C export.

:mod:`binary_net.infer.fixed`'s fixed mode *simulates* fixed point in float64. This
module computes the same network in integers only, exactly as the C99 code written
by :mod:`binary_net.deploy.export` (``python -m binary_net export``) does, so that a label
or score predicted here is the label or score the device will produce.

:class:`IntegerContext` is the context of ``mode='int'`` (named in
:mod:`binary_net.infer.modes`). Like fixed mode it needs static
activation ranges: call :meth:`FoldedNetwork.calibrate` first. It then reuses
:meth:`FoldedNetwork.fixed_point_formats` (fixed mode's defaults) for the number
of fraction bits of every tensor, and :func:`compile_network` turns the folded
network into an :class:`IntegerNetwork` of integer layers holding only integer
constants.

Arithmetic
----------
Every value ``v`` is an integer *code* ``q`` with a per-tensor number of fraction
bits ``f``: ``v = q * 2**-f``.

* **Input**: int8, Q0.7 (``f = 7``): ``q = clip(round_half_even(x * 128), -128,
  127)`` for ``x`` in [-1, 1] (:func:`input_codes`, as fixed mode's input).
* **Parameters** (folded batch-norm scale and offset, alpha, biases, weights of
  full-precision layers): int16 codes, with fixed mode's per-tensor formats
  (16 bits, fraction bits from the tensor's largest magnitude), rounded half to
  even when the model is compiled. Binary weights are bits (see
  :mod:`binary_net.kernels` for the packing).
* **Activations** (every layer's output): int16 codes with the fraction bits fixed
  mode gives that op's output (from the calibrated ranges). Max pooling and
  rectify are exact on codes and keep their input's format.
* **Accumulators**: int64. Sums of products, the XNOR popcount products (int32
  from the kernels), ``K``, ``alpha`` and the biases are combined in int64 with
  no intermediate rounding; the largest magnitude every accumulator can reach is
  bounded when the network is compiled, and a network that could exceed
  ``2**62`` is refused (ValueError) rather than allowed to overflow.
* **Requantizing** an accumulator ``a`` with ``F`` fraction bits to an output with
  ``f`` fraction bits, ``s = F - f`` (:func:`requantize`): for ``s > 0``,
  ``floor((a + 2**(s-1)) / 2**s)``: round to nearest, **ties toward +infinity**
  ("add half, arithmetic shift right"); for ``s <= 0``, ``a * 2**-s`` (exact);
  then **saturate** to int16 ``[-32768, 32767]``.
* **Biases and offsets** stay int16 codes: the code ``b`` with ``f_b`` fraction
  bits enters an accumulator with ``F`` fraction bits as ``b * 2**(F - f_b)``
  when ``F >= f_b``; otherwise it is requantized once, at compile time, to ``F``
  fraction bits (rounding as above), and enters unshifted.
* **K** of an XNOR layer (the mean ``|x|`` over its ``n`` inputs, or over the
  ``n = C*fh*fw`` inputs of a receptive field for a convolution, padded
  positions counting 0): the integer sum ``S`` of ``|q|``, multiplied by the
  reciprocal ``M = round(2**r / n)`` with ``r = 29 + bit_length(n)`` (so ``2**29 <
  M <= 2**30``, an int32), then requantized from ``r + f_in`` to the fraction
  bits fixed mode gives K (a non-negative int16).
* **XNOR products**: ``sum sign(x) * sign(w) = n - 2 * popcount(x XOR w)`` on bits
  packed by sign (``sign(0) = +1``), through :class:`binary_net.kernels.PackedDense`
  and :class:`~binary_net.kernels.PackedConv2D` (padding contributes 0).
  A layer's accumulator is ``prod * K * alpha[j] + b[j] * 2**shift`` (with
  ``bias_before_scaling``: ``(prod * 2**p + b[j]) * K * alpha[j]``), requantized.
* **Softmax** is left out: it is monotonic, so the label is the argmax (first
  maximum) of the integer logits. ``predict_scores(X, mode='int')`` returns those
  int64 codes; their fraction bits are :attr:`IntegerNetwork.output_frac`.

Compared with fixed mode, int mode differs only in rounding details: ties go
toward +infinity instead of to even, K is a sum times a 30-bit reciprocal
instead of a division, and max pooling does not requantize. Their predictions
agree on all but a handful of images.
"""
import numpy as np

from .. import kernels
from .context import FloatContext
from .fixed import FIXED_DEFAULTS
from .numerics import conv2d, quantize_codes
from .ops import Affine, Conv, Dense, MaxPool, Rectify, Softmax, XnorConv, XnorDense

__all__ = ['INPUT_BITS', 'INPUT_FRAC', 'PARAM_BITS', 'ACT_BITS', 'ROUNDING',
           'ACC_LIMIT', 'input_codes', 'requantize', 'reciprocal', 'align_code',
           'compile_network', 'integer_network', 'IntegerNetwork', 'IntegerContext',
           'IntLayer', 'IntXnorDense', 'IntXnorConv', 'IntConv', 'IntDense', 'IntAffine',
           'IntMaxPool', 'IntRectify']

# Fixed mode's default formats (FIXED_DEFAULTS), which the integer path computes exactly.
INPUT_BITS, INPUT_FRAC = FIXED_DEFAULTS['input_bits'], FIXED_DEFAULTS['input_frac']
PARAM_BITS = FIXED_DEFAULTS['param_bits']
ACT_BITS = FIXED_DEFAULTS['act_bits']
ROUNDING = 'half_up'   # requantizing: round to nearest, ties toward +infinity
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
ACC_LIMIT = 1 << 62    # every accumulator (and K's product) stays below this
MAX_RIGHT_SHIFT = 62
MAX_LEFT_SHIFT = 47    # 32767 * 2**47 < 2**62
# Above this, float64 matrix products of integer codes are no longer exact.
_FLOAT_EXACT = 1 << 53


# ---------------------------------------------------------------------------
# Integer building blocks (the C export implements the same formulas)
# ---------------------------------------------------------------------------

def input_codes(X):
    """The int8 Q0.7 codes of float images in [-1, 1]: ``clip(round(x * 128), -128, 127)``.

    Rounds half to even (as fixed mode's input). Returns int8 with X's shape.
    """
    return quantize_codes(X, INPUT_BITS, INPUT_FRAC, 'half_even').astype(np.int8)


def requantize(acc, shift):
    """Scale int64 accumulators by ``2**-shift`` to int16 codes.

    ``shift > 0``: ``floor((acc + 2**(shift-1)) / 2**shift)``, round to nearest with
    ties toward +infinity; ``shift <= 0``: ``acc * 2**-shift`` (saturated first so
    that it cannot overflow). The result is saturated to ``[-32768, 32767]``.

    Parameters
    ----------
    acc : int64 array_like, ``|acc| < 2**62``
    shift : int in ``[-47, 62]``

    Returns
    -------
    int64 ndarray of values in the int16 range.
    """
    acc = np.asarray(acc, dtype=np.int64)
    shift = int(shift)
    if shift > 0:
        out = (acc + np.int64(1 << (shift - 1))) >> np.int64(shift)
    elif shift < 0:
        out = np.clip(acc, INT16_MIN, INT16_MAX) << np.int64(-shift)
    else:
        out = acc
    return np.clip(out, INT16_MIN, INT16_MAX)


def reciprocal(n):
    """``(M, r)``: the fixed-point reciprocal ``M = round(2**r / n)``, ``r = 29 + bit_length(n)``.

    ``2**29 < M <= 2**30`` for every n >= 1 (an int32); ties round up.
    """
    n = int(n)
    if n < 1:
        raise ValueError('reciprocal of %d' % n)
    r = 29 + n.bit_length()
    return ((1 << (r + 1)) // n + 1) >> 1, r


def align_code(codes, frac_from, frac_to):
    """How int16 codes with ``frac_from`` fraction bits enter an accumulator with ``frac_to``.

    Returns
    -------
    codes : int64 ndarray
        Unchanged where ``frac_to >= frac_from``; else rounded (ties toward
        +infinity) to ``frac_to`` fraction bits.
    shift : int
        The left shift to apply at run time: ``value = codes * 2**shift``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if frac_to >= frac_from:
        return codes, int(frac_to - frac_from)
    return requantize(codes, frac_from - frac_to), 0


def _param_codes(op, fmt, name):
    """The int16 codes and fraction bits of a real-valued parameter, in fixed mode's format."""
    bits, frac = fmt['params'][name]
    return quantize_codes(op.params[name], bits, frac, 'half_even').astype(np.int64), int(frac)


def _exact_matmul(a, b, bound):
    """``a @ b`` of integer arrays, exactly: in float64 (BLAS) while every partial sum
    stays below 2**53 (``bound`` bounds them), else in int64."""
    if bound < _FLOAT_EXACT:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def _exact_conv(x, w, stride, pad, bound):
    if bound < _FLOAT_EXACT:
        return np.rint(conv2d(x.astype(np.float64), w.astype(np.float64), stride,
                              pad)).astype(np.int64)
    return conv2d(x.astype(np.int64), w.astype(np.int64), stride, pad)


# ---------------------------------------------------------------------------
# Integer layers
# ---------------------------------------------------------------------------

class IntLayer:
    """One step of an :class:`IntegerNetwork`.

    Attributes
    ----------
    kind : str
    op_index : int
        The index of the :class:`~binary_net.infer.ops.Op` it computes.
    in_shape, out_shape : tuple
        Per-sample shapes (``(C, H, W)`` or ``(n,)``).
    in_frac, out_frac : int
        Fraction bits of the input and output codes.
    in_bound : int
        Largest magnitude of an input code (128 for the int8 network input,
        32768 for int16 activations).
    acc_bound : int
        Bound on every accumulator magnitude (checked below ``2**62``).
    """

    kind = 'layer'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        self.op_index = op.index
        self.layer = op.layer
        self.in_shape = tuple(in_shape)
        self.in_frac = int(in_frac)
        self.in_bound = int(in_bound)
        self.out_shape = self.in_shape
        self.out_frac = self.in_frac
        self.out_bound = self.in_bound
        self.acc_bound = 0

    @property
    def in_size(self):
        return int(np.prod(self.in_shape))

    @property
    def out_size(self):
        return int(np.prod(self.out_shape))

    def forward(self, x):
        """Codes of a batch ``(N,) + in_shape`` -> int64 codes ``(N,) + out_shape``."""
        raise NotImplementedError

    def _check(self, what, bound=None):
        bound = self.acc_bound if bound is None else bound
        if bound >= ACC_LIMIT:
            raise ValueError('op %d (%s): the %s could reach %.3g, beyond the int64 '
                             'accumulator limit 2**62; this network does not fit int mode'
                             % (self.op_index, self.kind, what, float(bound)))

    def _check_shift(self, shift, what):
        if not -MAX_LEFT_SHIFT <= shift <= MAX_RIGHT_SHIFT:
            raise ValueError('op %d (%s): %s shift %d is outside [-%d, %d]; its '
                             'calibrated range is degenerate' % (self.op_index, self.kind, what,
                                                                 shift, MAX_LEFT_SHIFT,
                                                                 MAX_RIGHT_SHIFT))
        return int(shift)

    def describe(self):
        return '%s %s -> %s (frac %d -> %d)' % (self.kind, self.in_shape, self.out_shape,
                                                self.in_frac, self.out_frac)

    def __repr__(self):
        return '<%s>' % self.describe()


class _Scaled(IntLayer):
    """Shared part of the XNOR layers: K's reciprocal, alpha, the bias and the output."""

    def _setup_scaling(self, op, fmt, n, prod_bound, prod_frac, bias_before=False):
        self.n = int(n)
        self.binary_input = op.binary_input
        self.scale_input = op.scale_input
        self.scale_weights = op.scale_weights
        self.bias_before = bool(bias_before)
        acc_frac, bound = prod_frac, prod_bound
        b_codes, f_b = _param_codes(op, fmt, 'b')
        self.pre_shift = 0
        if self.bias_before:
            # (prod * 2**p + b') * K * alpha, with b' the bias at p fraction bits.
            k_factor = (INT16_MAX if self.scale_input else 1) * \
                       ((1 << 15) if self.scale_weights else 1)
            p = min(max(f_b, 0), 15)
            while p > 0 and (prod_bound * (1 << p) + (1 << 15)) * k_factor >= ACC_LIMIT:
                p -= 1
            self.pre_shift = p
            self.bias, self.bias_shift = align_code(b_codes, f_b, prod_frac + p)
            acc_frac += p
            bound = bound * (1 << p) + int(np.max(np.abs(self.bias), initial=0)) \
                * (1 << self.bias_shift)
        if self.scale_input:
            if self.n >= 1 << 18:
                raise ValueError('op %d (%s): K averages %d inputs, more than int mode '
                                 'supports (2**18 - 1)' % (op.index, self.kind, self.n))
            self.recip, self.recip_bits = reciprocal(self.n)
            self.K_frac = int(fmt['K'][1])
            self.k_shift = self._check_shift(self.recip_bits + self.in_frac - self.K_frac,
                                             'K')
            self._check('K product', self.n * self.in_bound * self.recip)
            acc_frac += self.K_frac
            bound *= INT16_MAX
        else:
            self.recip, self.recip_bits, self.K_frac, self.k_shift = 1, 0, 0, 0
        if self.scale_weights:
            self.alpha, self.alpha_frac = _param_codes(op, fmt, 'alpha')
            acc_frac += self.alpha_frac
            bound *= int(np.max(np.abs(self.alpha), initial=0))
        else:
            self.alpha, self.alpha_frac = None, 0
        if not self.bias_before:
            self.bias, self.bias_shift = align_code(b_codes, f_b, acc_frac)
            bound += int(np.max(np.abs(self.bias), initial=0)) * (1 << self.bias_shift)
        self.acc_frac = acc_frac
        self.acc_bound = bound
        self._check('accumulator')
        self.out_frac = int(fmt['out'][1])
        self.out_shift = self._check_shift(acc_frac - self.out_frac, 'output')
        self.out_bound = 1 << 15

    def _K(self, abs_sums):
        return requantize(abs_sums * np.int64(self.recip), self.k_shift)

    def _finish(self, prod, K, channel_axis_shape):
        """``prod`` int64 -> output codes, applying the bias, K and alpha."""
        acc = prod
        if self.bias_before:
            acc = acc * np.int64(1 << self.pre_shift) + \
                (self.bias * np.int64(1 << self.bias_shift)).reshape(channel_axis_shape)
        if self.scale_input:
            acc = acc * K
        if self.scale_weights:
            acc = acc * self.alpha.reshape(channel_axis_shape)
        if not self.bias_before:
            acc = acc + (self.bias * np.int64(1 << self.bias_shift)).reshape(channel_axis_shape)
        return requantize(acc, self.out_shift)


class IntXnorDense(_Scaled):
    """``requant(popcount product * K * alpha[j] + b[j])``; see the module docstring.

    Attributes
    ----------
    packed : uint64 ndarray ``(units, ceil(n / 64))``
        Column j of sign(W), element k at bit ``k % 64`` of word ``k // 64``, 1 for +1.
    alpha, bias : int64 ndarrays of int16 codes (alpha None without scale_weights)
    recip, recip_bits, k_shift, bias_shift, pre_shift, out_shift : int
    """

    kind = 'xnor_dense'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        super().__init__(op, fmt, in_shape, in_frac, in_bound)
        n, units = op.W_sign.shape
        if n != self.in_size:
            raise ValueError('op %d: xnor_dense expects %d inputs, gets %s'
                             % (op.index, n, in_shape))
        self.units = int(units)
        self.out_shape = (self.units,)
        self.dense = kernels.PackedDense(op.W_sign)
        self.packed = self.dense.packed
        self.W_sign = op.W_sign
        binary = op.binary_input
        self._setup_scaling(op, fmt, n, n if binary else n * self.in_bound,
                            0 if binary else self.in_frac, op.bias_before_scaling)

    def forward(self, x):
        x = np.asarray(x).reshape(len(x), -1)
        if self.binary_input:
            prod = self.dense.matmul_signs(x).astype(np.int64)
        else:
            prod = _exact_matmul(x, self.W_sign, self.n * self.in_bound)
        K = None
        if self.scale_input:
            K = self._K(np.abs(x.astype(np.int64)).sum(axis=1, keepdims=True))
        return self._finish(prod, K, (1, -1))

    def describe(self):
        return 'xnor_dense %d->%d (frac %d -> %d)' % (self.n, self.units, self.in_frac,
                                                      self.out_frac)


class IntXnorConv(_Scaled):
    """XNOR convolution in integers; K from integer box sums of the channel-summed ``|x|``.

    Attributes
    ----------
    packed : uint64 ndarray ``(F, fh, fw, ceil(C / 64))``
        Channels of each (already flipped, cross-correlation) filter tap, packed.
    stride, pad : pairs of int
    """

    kind = 'xnor_conv'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        super().__init__(op, fmt, in_shape, in_frac, in_bound)
        F, C, fh, fw = op.W_sign.shape
        if len(self.in_shape) != 3 or self.in_shape[0] != C:
            raise ValueError('op %d: xnor_conv expects %d channels, gets %s'
                             % (op.index, C, in_shape))
        if C * (1 << 15) >= 1 << 31:
            raise ValueError('op %d: %d channels exceed the int32 channel sums' % (op.index, C))
        self.filter_shape = (int(F), int(C), int(fh), int(fw))
        self.stride, self.pad = tuple(op.stride), tuple(op.pad)
        self.conv = kernels.PackedConv2D(op.W_sign, self.stride, self.pad)
        self.packed = self.conv.packed
        self.W_sign = op.W_sign
        _, _, OH, OW = self.conv.output_shape((1,) + self.in_shape)
        self.out_shape = (int(F), int(OH), int(OW))
        n = C * fh * fw
        binary = op.binary_input
        self._setup_scaling(op, fmt, n, n if binary else n * self.in_bound,
                            0 if binary else self.in_frac)

    def forward(self, x):
        x = np.asarray(x)
        if self.binary_input:
            prod = self.conv.conv_signs(x).astype(np.int64)
        else:
            prod = _exact_conv(x, self.W_sign, self.stride, self.pad, self.n * self.in_bound)
        K = None
        if self.scale_input:
            abs_sums = np.abs(x.astype(np.int64)).sum(axis=1, keepdims=True)
            fh, fw = self.filter_shape[2:]
            box = _exact_conv(abs_sums, np.ones((1, 1, fh, fw), np.int64), self.stride,
                              self.pad, self.n * self.in_bound)
            K = self._K(box)
        return self._finish(prod, K, (1, -1, 1, 1))

    def describe(self):
        F, C, fh, fw = self.filter_shape
        return 'xnor_conv %d->%d %dx%d stride %s pad %s (frac %d -> %d)' % (
            C, F, fh, fw, self.stride, self.pad, self.in_frac, self.out_frac)


class _Linear(IntLayer):
    """Full-precision layers: int16 weights, int64 sums, requantized."""

    def _setup_linear(self, op, fmt, fan_in):
        self.W, self.W_frac = _param_codes(op, fmt, 'W')
        b_codes, f_b = _param_codes(op, fmt, 'b')
        self.acc_frac = self.in_frac + self.W_frac
        self.bias, self.bias_shift = align_code(b_codes, f_b, self.acc_frac)
        self.prod_bound = int(fan_in) * self.in_bound * int(np.max(np.abs(self.W), initial=0))
        self.acc_bound = self.prod_bound + int(np.max(np.abs(self.bias), initial=0)) \
            * (1 << self.bias_shift)
        self._check('accumulator')
        self.out_frac = int(fmt['out'][1])
        self.out_shift = self._check_shift(self.acc_frac - self.out_frac, 'output')
        self.out_bound = 1 << 15


class IntConv(_Linear):
    """Full-precision convolution: ``requant(sum x * W + b * 2**bias_shift)``."""

    kind = 'conv'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        super().__init__(op, fmt, in_shape, in_frac, in_bound)
        F, C, fh, fw = op.params['W'].shape
        if len(self.in_shape) != 3 or self.in_shape[0] != C:
            raise ValueError('op %d: conv expects %d channels, gets %s' % (op.index, C, in_shape))
        self.filter_shape = (int(F), int(C), int(fh), int(fw))
        self.stride, self.pad = tuple(op.stride), tuple(op.pad)
        _, H, W = self.in_shape
        self.out_shape = (int(F), (H + 2 * self.pad[0] - fh) // self.stride[0] + 1,
                          (W + 2 * self.pad[1] - fw) // self.stride[1] + 1)
        self._setup_linear(op, fmt, C * fh * fw)

    def forward(self, x):
        acc = _exact_conv(np.asarray(x), self.W, self.stride, self.pad, self.prod_bound)
        acc = acc + (self.bias * np.int64(1 << self.bias_shift)).reshape(1, -1, 1, 1)
        return requantize(acc, self.out_shift)

    def describe(self):
        F, C, fh, fw = self.filter_shape
        return 'conv %d->%d %dx%d stride %s pad %s (frac %d -> %d)' % (
            C, F, fh, fw, self.stride, self.pad, self.in_frac, self.out_frac)


class IntDense(_Linear):
    """Full-precision dense layer: ``requant(x @ W + b * 2**bias_shift)``."""

    kind = 'dense'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        super().__init__(op, fmt, in_shape, in_frac, in_bound)
        n, units = op.params['W'].shape
        if n != self.in_size:
            raise ValueError('op %d: dense expects %d inputs, gets %s' % (op.index, n, in_shape))
        self.units = int(units)
        self.out_shape = (self.units,)
        self._setup_linear(op, fmt, n)

    def forward(self, x):
        x = np.asarray(x).reshape(len(x), -1)
        acc = _exact_matmul(x, self.W, self.prod_bound)
        acc = acc + self.bias * np.int64(1 << self.bias_shift)
        return requantize(acc, self.out_shift)

    def describe(self):
        return 'dense %d->%d (frac %d -> %d)' % (self.in_size, self.units, self.in_frac,
                                                 self.out_frac)


class IntAffine(IntLayer):
    """Folded batch norm: ``requant(x * scale[c] + offset[c] * 2**offset_shift)``."""

    kind = 'affine'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        super().__init__(op, fmt, in_shape, in_frac, in_bound)
        self.channels = int(self.in_shape[0])
        if len(op.params['scale']) != self.channels:
            raise ValueError('op %d: batch norm of %d channels gets %s'
                             % (op.index, len(op.params['scale']), in_shape))
        self.plane = int(np.prod(self.in_shape[1:]))
        self.scale, self.scale_frac = _param_codes(op, fmt, 'scale')
        offset, f_o = _param_codes(op, fmt, 'offset')
        self.acc_frac = self.in_frac + self.scale_frac
        self.offset, self.offset_shift = align_code(offset, f_o, self.acc_frac)
        self.acc_bound = self.in_bound * int(np.max(np.abs(self.scale), initial=0)) + \
            int(np.max(np.abs(self.offset), initial=0)) * (1 << self.offset_shift)
        self._check('accumulator')
        self.out_frac = int(fmt['out'][1])
        self.out_shift = self._check_shift(self.acc_frac - self.out_frac, 'output')
        self.out_bound = 1 << 15

    def forward(self, x):
        x = np.asarray(x, dtype=np.int64)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        acc = x * self.scale.reshape(shape) + \
            (self.offset * np.int64(1 << self.offset_shift)).reshape(shape)
        return requantize(acc, self.out_shift)

    def describe(self):
        return 'affine x%d (frac %d -> %d)' % (self.channels, self.in_frac, self.out_frac)


class IntMaxPool(IntLayer):
    """Max over non-overlapping windows of codes (format unchanged, border dropped)."""

    kind = 'max_pool'

    def __init__(self, op, fmt, in_shape, in_frac, in_bound):
        super().__init__(op, fmt, in_shape, in_frac, in_bound)
        self.pool_size = tuple(op.pool_size)
        C, H, W = self.in_shape
        ph, pw = self.pool_size
        self.out_shape = (C, H // ph, W // pw)

    def forward(self, x):
        x = np.asarray(x, dtype=np.int64)
        n = len(x)
        C, ho, wo = self.out_shape
        ph, pw = self.pool_size
        return x[:, :, :ho * ph, :wo * pw].reshape(n, C, ho, ph, wo, pw).max(axis=(3, 5))


class IntRectify(IntLayer):
    """``max(x, 0)`` on codes (format unchanged)."""

    kind = 'rectify'

    def forward(self, x):
        return np.maximum(np.asarray(x, dtype=np.int64), 0)


_LAYERS = {XnorDense: IntXnorDense, XnorConv: IntXnorConv, Conv: IntConv, Dense: IntDense,
           Affine: IntAffine, MaxPool: IntMaxPool, Rectify: IntRectify}


# ---------------------------------------------------------------------------
# The integer network
# ---------------------------------------------------------------------------

class IntegerNetwork:
    """A folded network compiled to integer layers (see the module docstring).

    Attributes
    ----------
    layers : list of :class:`IntLayer`
        In order; a final softmax is left out.
    input_shape : tuple
    input_frac : int (7)
    output_frac : int
        Fraction bits of the integer logits.
    num_classes : int
    name : str or None
    calibration : dict
        The calibration it was compiled from.
    """

    def __init__(self, layers, input_shape, name, calibration):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.input_frac = INPUT_FRAC
        self.name = name
        self.calibration = calibration
        self.by_op = {layer.op_index: layer for layer in self.layers}
        last = self.layers[-1] if self.layers else None
        self.output_frac = last.out_frac if last else INPUT_FRAC
        self.output_shape = last.out_shape if last else self.input_shape
        self.num_classes = int(np.prod(self.output_shape))

    def forward(self, codes, batch_size=None):
        """Integer logits (int64 codes, ``(N, classes)``) of int8 input codes
        ``(N,) + input_shape``."""
        codes = np.asarray(codes)
        if codes.shape[1:] != self.input_shape:
            raise ValueError('expected input codes shaped (N,) + %s, got %s'
                             % (self.input_shape, codes.shape))
        batch_size = len(codes) if not batch_size else int(batch_size)
        outputs = []
        for start in range(0, len(codes), max(1, batch_size)):
            x = codes[start:start + batch_size].astype(np.int64)
            for layer in self.layers:
                x = layer.forward(x)
            outputs.append(x.reshape(len(x), -1))
        if not outputs:
            return np.empty((0, self.num_classes), np.int64)
        return np.concatenate(outputs)

    def predict(self, codes, batch_size=None):
        """Labels: the first maximum of the integer logits (int64, (N,))."""
        return np.argmax(self.forward(codes, batch_size), axis=1).astype(np.int64)

    def describe(self):
        return '\n'.join('%2d  %s' % (i, layer.describe()) for i, layer in enumerate(self.layers))


def compile_network(network):
    """Compile a calibrated :class:`~binary_net.infer.network.FoldedNetwork` to integers.

    Parameters
    ----------
    network : FoldedNetwork
        With :attr:`calibration` set (:meth:`FoldedNetwork.calibrate`).

    Returns
    -------
    IntegerNetwork

    Raises
    ------
    RuntimeError
        The network is not calibrated.
    ValueError
        An op int mode cannot compute (a softmax before the end) or a network
        whose accumulators could overflow int64.
    """
    if network.calibration is None:
        raise RuntimeError('int mode needs static activation ranges: call '
                           'FoldedNetwork.calibrate(X_calib) first')
    formats = network.fixed_point_formats()
    layers = []
    shape, frac, bound = tuple(network.input_shape), INPUT_FRAC, 1 << (INPUT_BITS - 1)
    for op, fmt in zip(network.ops, formats):
        if isinstance(op, Softmax):
            if op.index != len(network.ops) - 1:
                raise ValueError('op %d: int mode computes a softmax only as the last op'
                                 % op.index)
            continue
        try:
            make = _LAYERS[type(op)]
        except KeyError:
            raise ValueError('op %d (%s) is not supported by int mode' % (op.index, op.kind)) \
                from None
        layer = make(op, fmt, shape, frac, bound)
        layers.append(layer)
        shape, frac, bound = layer.out_shape, layer.out_frac, layer.out_bound
    return IntegerNetwork(layers, network.input_shape, network.name, network.calibration)


def integer_network(network):
    """:func:`compile_network`, cached on the network until it is calibrated again."""
    cached = getattr(network, '_integer_network', None)
    if cached is None or cached.calibration is not network.calibration:
        cached = compile_network(network)
        network._integer_network = cached
    return cached


# ---------------------------------------------------------------------------
# mode='int'
# ---------------------------------------------------------------------------

class IntegerContext(FloatContext):
    """``mode='int'``: the ops run as :class:`IntLayer` on int64 codes (no options)."""

    mode = 'int'
    dtype = np.int64
    generic = False
    needs_calibration = True

    def __init__(self, network):
        super().__init__(network)
        self.program = integer_network(network)

    def network_input(self, X):
        return input_codes(X).astype(np.int64)

    def intermediate(self, op, key, x):
        return x

    def output(self, op, x):
        return x

    def layer(self, op, x):
        """The op as its :class:`IntLayer` on int64 codes (every op kind)."""
        compiled = self.program.by_op.get(op.index)
        if compiled is None:          # the final softmax: the logits are the scores
            return x
        return compiled.forward(x)

    xnor_dense = xnor_conv = conv = dense = affine = max_pool = rectify = softmax = layer
