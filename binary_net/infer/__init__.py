"""Inference without Theano: folded networks in numpy, in float, fixed point, XNOR or integers.

This package needs only numpy (and :mod:`binary_net.kernels` for the XNOR and
integer modes), so that a trained model can be deployed, checked or exported
where neither Theano nor Lasagne is installed. It sits above
:mod:`binary_net.spec` and below the commands (evaluation, pack, export,
summary), and imports none of them. :func:`fold` turns a network description
(a *spec*, see :mod:`binary_net.spec`) and its parameter arrays into a
:class:`FoldedNetwork`, a short list of small operations
(:mod:`binary_net.infer.ops`) that run in a mode.

Its modules, from the bottom up:

=======================  =====================================================
module                   holds
=======================  =====================================================
:mod:`.numerics`         sign, im2col, conv2d, matmul_rows, quantize
:mod:`.ops`              the op classes (XnorDense, XnorConv, Conv, Dense,
                         Affine, MaxPool, Rectify, Softmax)
:mod:`.context`          FloatContext (the base of every mode), calibration
:mod:`.fixed`            fixed mode and :data:`FIXED_DEFAULTS`
:mod:`.fixed_original`   the original's fixed-point preset
:mod:`.xnor`             xnor mode: bit-packed kernels, fused layers
:mod:`.integer`          int mode: integer layers, bit-exact with the C export
:mod:`.modes`            the registry: mode name -> context
:mod:`.network`          FoldedNetwork
:mod:`.fold`             fold(spec, arrays)
=======================  =====================================================

Modes
-----
``mode='float'``
    float32 throughout, im2col + matrix products for convolutions. Gives the
    predictions of ``lasagne.layers.get_output(net, deterministic=True)`` with
    scores equal to float32 rounding.
``mode='fixed'``
    A *simulation* of signed fixed-point inference: float64 arithmetic on values
    quantized to :data:`FIXED_DEFAULTS` widths (8-bit input, 16-bit parameters and
    activations, formats from calibrated ranges); see :mod:`binary_net.infer.fixed`.
    ``preset='original'`` is the original theano-xnor-net's scheme
    (:mod:`binary_net.infer.fixed_original`).
``mode='xnor'``
    Float mode with the binary products of the XNOR ops computed by bit-packed
    XNOR-popcount kernels (:mod:`binary_net.infer.xnor`): bit-identical scores.
``mode='int'``
    True integer arithmetic, bit-exact with the C export
    (:mod:`binary_net.infer.integer`).

Adding a mode
-------------
Every op runs through :meth:`Op.__call__ <binary_net.infer.ops.Op.__call__>`,
which hands it to the mode's context: ``ctx.<op kind>(op, x)``, e.g.
``ctx.dense(op, x)``. :class:`FloatContext` answers every kind with the op's
generic arithmetic (:meth:`Op.forward`), so float and fixed share it and differ
only in the context's hooks (dtype, parameter quantization, activation
quantization). A new mode is a context class that overrides the op methods it
computes differently (xnor: the XNOR ops, batch norm and pooling; int: all),
named in :data:`MODES` (:mod:`binary_net.infer.modes`, or :func:`register_mode`
at run time); a context with ``generic = False`` must implement every op, and
an op it lacks raises a ValueError naming the op and the mode.
"""
from . import fixed_original, integer, xnor
from .context import CalibrationContext, FloatContext
from .fixed import FIXED_DEFAULTS, FixedContext, FixedPointConfig
from .fixed_original import OriginalFixedContext
from .fold import fold
from .integer import IntegerContext
from .modes import MODES, PRESETS, fixed_context, make_context, register_mode
from .network import FoldedNetwork
from .numerics import (ROUNDINGS, conv2d, fixed_format, im2col, matmul_rows, quantize,
                       quantize_codes, sign)
from .ops import OPS, Affine, Conv, Dense, MaxPool, Op, Rectify, Softmax, XnorConv, XnorDense
from .xnor import XnorContext

__all__ = ['fold', 'FoldedNetwork', 'Op', 'XnorDense', 'XnorConv', 'Conv', 'Dense', 'Affine',
           'MaxPool', 'Rectify', 'Softmax', 'OPS', 'MODES', 'PRESETS', 'register_mode',
           'make_context', 'fixed_context', 'FloatContext', 'CalibrationContext',
           'FixedContext', 'OriginalFixedContext', 'XnorContext', 'IntegerContext',
           'FIXED_DEFAULTS', 'FixedPointConfig', 'ROUNDINGS', 'quantize', 'quantize_codes',
           'fixed_format', 'im2col', 'conv2d', 'matmul_rows', 'sign', 'fixed_original',
           'integer', 'xnor']
