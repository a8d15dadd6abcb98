"""The original theano-xnor-net's fixed-point simulation, as a preset of ``mode='fixed'``.

``network.predict(X, 'fixed', preset='original')`` (``--mode fixed --fixed-preset
original`` in the evaluation scripts) reproduces the fixed mode of the original's
``test/mnist_test.py`` and ``test/cifar10_test.py`` (``test/fxp_helper.py``,
``test/xnornet_layers.py``, ``test/inf_layers.py``), beside this package's
calibrated scheme (:class:`binary_net.infer.fixed.FixedContext`, ``preset=
'calibrated'``, the default). Its rules, all taken from that code:

* A format is ``(magnitude bits, integer bits)`` plus a sign: ``q(x) = clip(round(x
  * 2**(m - i)), -(2**m - 1), 2**m - 1) / 2**(m - i)`` (symmetric saturation; no
  ``-2**m`` code).
* The network input: ``(7, 0)``, rounded half to even (``numpy.around``).
* Parameters: every real-valued parameter except weights (biases ``b``, ``xalpha``,
  ``beta_filter``, the folded batch norm's scale and offset) with 15 magnitude
  bits and ``max(0, ceil(log2(max |p|)))`` integer bits, rounded half to even.
  Weights ``W`` are not quantized: the binary ones are signs, and the
  full-precision first convolution and last dense layer keep float32 weights.
* Activations, per layer type (``data_bits=15`` and the ``*_int_bits`` of the
  scripts), rounded as ``theano.tensor.round`` does (half to even from Theano 0.9,
  the default here; ``rounding='half_away'`` gives Theano 0.8's behaviour):

  ===========  ================================  ================================
  layer        MNIST (mnist_test.py)             CIFAR-10 (cifar10_test.py)
  ===========  ================================  ================================
  XNOR dense   input and output (15, 10)         input and output (15, 10)
  XNOR conv    --                                input and output (15, 8)
  conv         --                                output (15, 8)
  batch norm   output (15, 3)                    output (15, 3)
  dense        output (20, 17)                   output after softmax (15, 10)
  ===========  ================================  ================================

  The original has no SVHN test script; SVHN (the CIFAR-10 architecture) uses the
  CIFAR-10 column. A convolution quantizes before its bias is added (Lasagne adds
  it after ``convolve``), so its output is the quantized sum plus the quantized
  bias; an XNOR layer's K is computed from its quantized input and the quantized
  ``beta_filter`` value ``1 / (C * fh * fw)``; the dense output is quantized after
  its nonlinearity, so CIFAR-10's softmax probabilities are rounded to 1/32 and
  ties go to the lowest class, as Theano's argmax does.

Arithmetic is float32, as the original's Theano graph (``floatX=float32``).
"""
import math

import numpy as np

from .context import FloatContext
from .numerics import ROUNDINGS, conv2d, matmul_rows, round_to_nearest, sign
from .ops import Softmax

__all__ = ['OriginalFixedContext', 'ORIGINAL_FORMATS', 'quantize_original', 'param_int_bits']

INPUT_FORMAT = (7, 0)
PARAM_BITS = 15
_CONV_NET = {'xnor_dense': (15, 10), 'xnor_conv': (15, 8), 'conv': (15, 8),
             'affine': (15, 3), 'dense': (15, 10)}
#: Activation formats (magnitude bits, integer bits) per op kind and network.
ORIGINAL_FORMATS = {'mnist': {'xnor_dense': (15, 10), 'affine': (15, 3), 'dense': (20, 17)},
                    'cifar10': _CONV_NET,
                    'svhn': _CONV_NET}  # no svhn_test.py in the original: CIFAR-10's


def quantize_original(x, mag_bits, int_bits, rounding='half_even'):
    """The original's ``fixed_point`` / ``to_fixed_point_theano`` in float32.

    ``clip(round(x * 2**(mag_bits - int_bits)), -(2**mag_bits - 1), 2**mag_bits - 1)
    / 2**(mag_bits - int_bits)``.
    """
    scale = np.float32(2.0 ** (mag_bits - int_bits))
    limit = np.float32(2.0 ** mag_bits - 1)
    y = np.asarray(x, dtype=np.float32) * scale
    y = round_to_nearest(y, rounding)
    return (np.clip(y, -limit, limit) / scale).astype(np.float32)


def param_int_bits(value):
    """``max(0, ceil(log2(max |p|)))``, the original's integer bits of a parameter.

    The original fails (``math domain error``) on a parameter of zeros; it gets 0
    integer bits here.
    """
    peak = float(np.max(np.abs(value))) if np.size(value) else 0.0
    return max(0, int(math.ceil(math.log(peak, 2)))) if peak > 0 else 0


class OriginalFixedContext(FloatContext):
    """``mode='fixed', preset='original'``: see the module docstring.

    Parameters
    ----------
    network : FoldedNetwork
        Its ``name`` ('mnist', 'cifar10', 'svhn') selects the formats.
    rounding : {'half_even', 'half_away'}
        Rounding of the activations (``theano.tensor.round``); the input and the
        parameters are always rounded half to even (``numpy.around``).
    """

    mode = 'original_fixed'
    dtype = np.float32
    generic = False

    def __init__(self, network, rounding='half_even'):
        super().__init__(network)
        if network.name not in ORIGINAL_FORMATS:
            raise ValueError('the original fixed-point preset has formats for %s networks, '
                             'not for %r' % (', '.join(sorted(ORIGINAL_FORMATS)), network.name))
        if rounding not in ROUNDINGS:
            raise ValueError('unknown rounding %r; choose one of %s'
                             % (rounding, ', '.join(ROUNDINGS)))
        self.formats = ORIGINAL_FORMATS[network.name]
        self.rounding = rounding

    def network_input(self, X):
        return quantize_original(X, *INPUT_FORMAT)

    def param(self, op, name):
        def make():
            value = op.params[name].astype(np.float32)
            return quantize_original(value, PARAM_BITS, param_int_bits(value))
        return op.cached(('original_fixed', name), make)

    def activation(self, op, x, kind=None):
        """Quantize an activation with the format of ``kind`` (default: the op's kind)."""
        return quantize_original(x, *self.formats[kind or op.kind], rounding=self.rounding)

    def next_op(self, op):
        ops = self.network.ops
        return ops[op.index + 1] if op.index + 1 < len(ops) else None

    def xnor_dense(self, op, x):
        x = self.activation(op, x.reshape(len(x), -1))
        W = op.cached(('float32', 'W_sign'), lambda: op.W_sign.astype(np.float32))
        # Binary input: exact sums, batched; a real input: one product per sample, as in
        # float mode, so that a sample's scores do not depend on its batch.
        out = sign(x, np.float32) @ W if op.binary_input else matmul_rows(x, op.transposed(W))
        b = self.param(op, 'b')
        if op.bias_before_scaling:
            out += b
        if op.scale_input:
            out *= np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)
        if op.scale_weights:
            out *= self.param(op, 'alpha')
        if not op.bias_before_scaling:
            out += b
        return self.activation(op, out)

    def xnor_conv(self, op, x):
        x = self.activation(op, x)
        W = op.cached(('float32', 'W_sign'), lambda: op.W_sign.astype(np.float32))
        out = conv2d(sign(x, np.float32) if op.binary_input else x, W, op.stride, op.pad)
        if op.scale_input:
            fh, fw = op.W_sign.shape[2:]
            sums = conv2d(np.sum(np.abs(x), axis=1, keepdims=True, dtype=np.float32),
                          np.ones((1, 1, fh, fw), np.float32), op.stride, op.pad)
            out *= sums * _beta_filter_value(op, x.shape[1])
        if op.scale_weights:
            out *= self.param(op, 'alpha').reshape(1, -1, 1, 1)
        out = self.activation(op, out)
        return out + self.param(op, 'b').reshape(1, -1, 1, 1)

    def conv(self, op, x):
        W = op.cached(('float32', 'W'), lambda: op.params['W'].astype(np.float32))
        out = self.activation(op, conv2d(x, W, op.stride, op.pad))
        return out + self.param(op, 'b').reshape(1, -1, 1, 1)

    def dense(self, op, x):
        W = op.cached(('float32', 'W'), lambda: op.params['W'].astype(np.float32))
        out = matmul_rows(x.reshape(len(x), -1), op.transposed(W)) + self.param(op, 'b')
        if isinstance(self.next_op(op), Softmax):
            return out  # quantized after the nonlinearity, by the softmax op
        return self.activation(op, out)

    def affine(self, op, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        out = x * self.param(op, 'scale').reshape(shape) + self.param(op, 'offset').reshape(shape)
        return self.activation(op, out)

    def softmax(self, op, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return self.activation(op, e / e.sum(axis=1, keepdims=True), kind='dense')

    def max_pool(self, op, x):
        return op.forward(x, self)

    def rectify(self, op, x):
        return op.forward(x, self)


def _beta_filter_value(op, channels):
    """The original's quantized K filter value, 1 / (C * fh * fw) in 15 fraction bits."""
    fh, fw = op.W_sign.shape[2:]
    value = np.float32(1) / np.float32(channels * fh * fw)
    return quantize_original(value, PARAM_BITS, param_int_bits(value))
