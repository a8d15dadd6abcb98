"""Fused reductions and scalings of training: :class:`AbsSum`, :class:`FastSum` and
:class:`Scale`.

Part of :mod:`binary_net.theano_ext`; their C is ``csrc/theano_ext/abs_sum.c``,
``fast_sum.c`` and ``scale.c``. :class:`~binary_net.theano_ext.rewrites.FuseBinarization` puts them in
place of ``Sum(abs(X))`` (the sums of alpha, K and the ``xalpha`` refresh, with
``sign(X)`` from the same pass) and of a ``Dot22Scalar`` whose ``Dot22`` twin is
computed anyway. Both compute exactly what they replace. :class:`FastSum` replaces Theano's
float64-accumulated ``Sum`` (batch norm's statistics and their gradients) by a
threaded one that sums in another, fixed order.
"""
import numpy as np
import theano
import theano.tensor as T
from theano import gof
from theano.tensor.elemwise import Sum as CAReduceSum

from .cop import FLOAT_DTYPES, FusedCOp

__all__ = ['AbsSum', 'FastSum', 'Scale', 'fast_sum_eligible']


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


class FastSum(FusedCOp):
    """``Sum{axis, acc_dtype=float64}`` of a float tensor on all threads.

    Each output is accumulated in float64 by one thread in a fixed order (see
    ``csrc/theano_ext/fast_sum.c``), so a result does not depend on the thread
    count; the order differs from Theano's ``CAReduce``, so results agree with
    Theano's to float64 rounding before the cast to the output dtype.

    Parameters
    ----------
    axis : tuple of int
        The summed axes (sorted, at least one).
    """

    __props__ = ('axis',)

    def __init__(self, axis):
        FusedCOp.__init__(self, 'fast_sum.c')
        self.axis = tuple(sorted(int(a) for a in axis))
        if not self.axis:
            raise ValueError('FastSum needs at least one axis')

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.dtype not in FLOAT_DTYPES or x.ndim > 32 or any(
                a < 0 or a >= x.ndim for a in self.axis):
            raise TypeError('FastSum needs a float tensor with axes %s, got %s'
                            % (self.axis, x.type))
        kept = tuple(b for d, b in enumerate(x.broadcastable) if d not in self.axis)
        return gof.Apply(self, [x], [T.TensorType(x.dtype, kept)()])

    def perform(self, node, inputs, outputs):
        (x,) = inputs
        outputs[0][0] = np.asarray(x.sum(axis=self.axis, dtype=np.float64), dtype=x.dtype)

    def infer_shape(self, node, shapes):
        (shape,) = shapes
        return [tuple(s for d, s in enumerate(shape) if d not in self.axis)]

    def c_code(self, node, name, inames, onames, sub):
        (x,), (z,) = inames, onames
        mask = sum(1 << a for a in self.axis)
        dtype = 'npy_' + node.inputs[0].dtype
        nd = node.inputs[0].ndim
        return """
{
    PyArrayObject* bn_xc = PyArray_GETCONTIGUOUS(%(x)s);
    if (!bn_xc) %(fail)s
    npy_intp bn_kept[%(nk)d];
    int bn_k = 0;
    for (int d = 0; d < %(nd)d; ++d)
        if (!((%(mask)dUL >> d) & 1)) bn_kept[bn_k++] = PyArray_DIMS(bn_xc)[d];
    bn_forget_if_input(&%(z)s, bn_xc, %(x)s);
    if (bn_prepare_output(&%(z)s, %(nko)d, bn_kept, %(typenum)s)) { Py_DECREF(bn_xc); %(fail)s }
    npy_intp bn_nout = PyArray_SIZE(%(z)s);
    bn_fast_sum_%(dtype)s((const %(dtype)s*)PyArray_DATA(bn_xc), %(nd)d, PyArray_DIMS(bn_xc),
                          %(mask)dUL, (%(dtype)s*)PyArray_DATA(%(z)s), bn_nout,
                          bn_threads_for(PyArray_SIZE(bn_xc)));
    Py_DECREF(bn_xc);
}
""" % dict(x=x, z=z, fail=sub['fail'], nd=nd, nk=max(1, nd - len(self.axis)),
           nko=nd - len(self.axis), mask=mask, dtype=dtype,
           typenum='NPY_' + node.inputs[0].dtype.upper())


def fast_sum_eligible(node):
    """Whether ``node`` is a float64-accumulated Theano ``Sum`` that :class:`FastSum`
    computes (a float input, an output of the same dtype, at least one axis)."""
    op = node.op
    if type(op) is not CAReduceSum:
        return False
    x = node.inputs[0]
    if x.dtype not in FLOAT_DTYPES or node.outputs[0].dtype != x.dtype or x.ndim == 0:
        return False
    if op.acc_dtype != 'float64':
        return False
    return op.axis is None or len(op.axis) > 0
