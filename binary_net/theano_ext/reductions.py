"""Fused reductions and scalings of training: :class:`AbsSum` and :class:`Scale`.

Part of :mod:`binary_net.theano_ext`; their C is ``csrc/theano_ext/abs_sum.c`` and
``scale.c``. :class:`~binary_net.theano_ext.rewrites.FuseBinarization` puts them in
place of ``Sum(abs(X))`` (the sums of alpha, K and the ``xalpha`` refresh, with
``sign(X)`` from the same pass) and of a ``Dot22Scalar`` whose ``Dot22`` twin is
computed anyway. Both compute exactly what they replace.
"""
import numpy as np
import theano
import theano.tensor as T
from theano import gof

from .cop import FLOAT_DTYPES, FusedCOp

__all__ = ['AbsSum', 'Scale']


class AbsSum(FusedCOp):
    """``sum(|X|, axis)`` of a matrix in one pass, accumulated in float64.

    Equal to Theano's ``Sum{axis, acc_dtype=float64}(abs(X))``. With
    ``with_sign=True`` it also returns ``sign(X)`` (+1 where ``x >= 0``, else
    -1) from the same pass, first; its gradient is then the straight-through
    estimator when ``straight_through`` (as :func:`binary_net.binarize.sign`)
    and zero otherwise.

    Parameters
    ----------
    axis : 0 or 1
        0 sums each column (a dense layer's alpha), 1 each row (K, or a
        flattened convolution's alpha).
    with_sign : bool
    straight_through : bool
    """

    __props__ = ('axis', 'with_sign', 'straight_through')

    def __init__(self, axis, with_sign=False, straight_through=True):
        if axis not in (0, 1):
            raise ValueError('axis must be 0 or 1, got %r' % (axis,))
        FusedCOp.__init__(self, 'abs_sum.c', 'APPLY_SPECIFIC(bn_%sabs_sum_%d)'
                          % ('sign_' if with_sign else '', axis))
        self.axis = axis
        self.with_sign = bool(with_sign)
        self.straight_through = bool(straight_through)

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.ndim != 2 or x.dtype not in FLOAT_DTYPES:
            raise TypeError('AbsSum needs a float32 or float64 matrix, got %s' % x.type)
        summed = T.TensorType(x.dtype, (x.broadcastable[1 - self.axis],))()
        outputs = [x.type(), summed] if self.with_sign else [summed]
        return gof.Apply(self, [x], outputs)

    def perform(self, node, inputs, outputs):
        (x,) = inputs
        summed = np.abs(x).sum(axis=self.axis, dtype=np.float64).astype(x.dtype)
        if self.with_sign:
            outputs[0][0] = np.where(x >= 0, 1, -1).astype(x.dtype)
            outputs[1][0] = summed
        else:
            outputs[0][0] = summed

    def infer_shape(self, node, shapes):
        (shape,) = shapes
        summed = (shape[1 - self.axis],)
        return [shape, summed] if self.with_sign else [summed]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        g_sum = output_grads[-1]
        total = x.zeros_like()
        if not isinstance(g_sum.type, theano.gradient.DisconnectedType):
            pattern = ('x', 0) if self.axis == 0 else (0, 'x')
            total = total + g_sum.dimshuffle(pattern) * T.sgn(x)
        if self.with_sign and self.straight_through:
            g_sign = output_grads[0]
            if not isinstance(g_sign.type, theano.gradient.DisconnectedType):
                total = total + g_sign * T.cast(T.le(abs(x), 1), g_sign.dtype)
        return [total]

    def connection_pattern(self, node):
        return [[True] * len(node.outputs)]


class Scale(FusedCOp):
    """``s * X`` for a matrix ``X`` and a scalar ``s`` of its dtype (out of place).

    Replaces ``Dot22Scalar(a, b, s)`` by ``Scale(Dot22(a, b), s)`` where that
    ``Dot22`` is computed anyway; numpy's ``s * dot(a, b)`` rounds the same way.
    """

    __props__ = ()

    def __init__(self):
        FusedCOp.__init__(self, 'scale.c', 'APPLY_SPECIFIC(bn_scale)')

    def make_node(self, x, s):
        x = T.as_tensor_variable(x)
        s = T.as_tensor_variable(s)
        if x.dtype not in FLOAT_DTYPES or s.dtype != x.dtype or s.ndim != 0:
            raise TypeError('Scale needs a float tensor and a scalar of its dtype, '
                            'got %s and %s' % (x.type, s.type))
        return gof.Apply(self, [x, s], [x.type()])

    def perform(self, node, inputs, outputs):
        x, s = inputs
        outputs[0][0] = np.asarray(s * x, dtype=x.dtype)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, output_grads):
        x, s = inputs
        (gz,) = output_grads
        return [gz * s, T.sum(gz * x).astype(s.dtype)]
