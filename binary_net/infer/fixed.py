"""``mode='fixed'``: a simulation of signed fixed-point inference, and its one set of defaults.

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

:data:`FIXED_DEFAULTS` are the widths and rounding every user of fixed point
starts from: the evaluation scripts' flags, :class:`FixedPointConfig`, and the
integer path and C export (:mod:`binary_net.infer.integer`), which compute the
same formats in integers.
"""
import numpy as np

from .context import FloatContext
from .numerics import ROUNDINGS, fixed_format, quantize

__all__ = ['FIXED_DEFAULTS', 'FixedPointConfig', 'FixedContext']

#: Default widths (bits, sign included) and rounding of fixed point: the network
#: input with 8 bits of which 7 are fraction bits, parameters and activations with
#: 16 bits, round half to even.
FIXED_DEFAULTS = dict(input_bits=8, input_frac=7, param_bits=16, act_bits=16,
                      rounding='half_even')


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

    def __init__(self, input_bits=FIXED_DEFAULTS['input_bits'],
                 input_frac=FIXED_DEFAULTS['input_frac'], param_bits=FIXED_DEFAULTS['param_bits'],
                 act_bits=FIXED_DEFAULTS['act_bits'], rounding=FIXED_DEFAULTS['rounding']):
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


class FixedContext(FloatContext):
    """``mode='fixed'``: float64 arithmetic on quantized values (see the module docstring).

    Parameters
    ----------
    network : FoldedNetwork
        Calibrated (:meth:`FoldedNetwork.calibrate`).
    **options
        The :class:`FixedPointConfig` (defaults :data:`FIXED_DEFAULTS`).
    """

    mode = 'fixed'
    dtype = np.float64

    def __init__(self, network, **options):
        super().__init__(network)
        if network.calibration is None:
            raise RuntimeError('fixed mode needs static activation ranges: call '
                               'FoldedNetwork.calibrate(X_calib) first')
        self.config = FixedPointConfig(**options)
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
