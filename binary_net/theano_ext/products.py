"""Matrix products of training: :class:`Dot22Into` and the popcount :class:`XnorDot`.

Part of :mod:`binary_net.theano_ext`. The rewrite
:class:`~binary_net.theano_ext.rewrites.FuseBinarization` runs a binary layer's forward
product ``dot(sign(x), sign(W))`` as :class:`XnorDot` (C in
``csrc/theano_ext/xnor_dot.c``, sharing the product of :mod:`binary_net.kernels` through
``csrc/xnor_kernels.h``) and every other ``Dot22`` as :class:`Dot22Into`. Both give the
GEMM's numbers bit for bit.
"""
import numpy as np
import theano.tensor as T
from theano import gof

from .cop import FLOAT_DTYPES, FusedCOp

__all__ = ['Dot22Into', 'XnorDot']


class _MatrixProduct:
    """Node, shape and gradient of ``dot(x, y)`` of two matrices, for the ops below."""

    #: The dtypes the op takes (None: any; both operands of one dtype).
    dtypes = None

    def make_node(self, x, y):
        x, y = T.as_tensor_variable(x), T.as_tensor_variable(y)
        if (x.ndim != 2 or y.ndim != 2 or x.dtype != y.dtype
                or (self.dtypes is not None and x.dtype not in self.dtypes)):
            raise TypeError('%s needs two %smatrices of one dtype, got %s and %s'
                            % (type(self).__name__, 'float ' if self.dtypes else '',
                               x.type, y.type))
        out = T.TensorType(x.dtype, (x.broadcastable[0], y.broadcastable[1]))()
        return gof.Apply(self, [x, y], [out])

    def infer_shape(self, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def grad(self, inputs, output_grads):
        x, y = inputs
        (gz,) = output_grads
        return [T.dot(gz, y.T), T.dot(x.T, gz)]


class Dot22Into(_MatrixProduct, gof.Op):
    """``dot(x, y)`` of two matrices, written into the previous call's output.

    Theano's ``Dot22`` (a Python op when Theano has no BLAS of its own) lets
    numpy allocate a fresh result on every call, and a fresh 64 MiB gradient
    costs more in page faults than the GEMM spends writing it. This op passes
    the output kept from the previous call (functions compiled by
    :func:`binary_net.theano_ext.function` keep it) to ``numpy.dot(out=...)``: the same BLAS call,
    the same numbers, no new memory.
    """

    __props__ = ()

    def perform(self, node, inputs, outputs):
        x, y = inputs
        z = outputs[0][0]
        if (z is not None and z.shape == (x.shape[0], y.shape[1])
                and z.dtype == node.outputs[0].dtype and z.flags.c_contiguous
                and z.flags.writeable and not np.may_share_memory(z, x)
                and not np.may_share_memory(z, y)):
            np.dot(x, y, out=z)
        else:
            outputs[0][0] = np.asarray(np.dot(x, y), dtype=node.outputs[0].dtype)



class XnorDot(_MatrixProduct, FusedCOp):
    """``dot(A, B)`` for matrices whose entries are all +1 or -1, by XNOR-popcount.

    Both operands are packed into 64-bit sign words (B by columns) and multiplied
    by the product of :mod:`binary_net.kernels` (``csrc/xnor_kernels.h``, compiled
    into the op); each product is ``k - 2 popcount(a XOR b)``:
    an exact integer, so the result equals the float GEMM's bit for bit (every
    partial sum of +-1 products is an integer below 2**24). The rewrite uses
    it for a binary layer's forward product ``sign(x) . sign(W)`` only, where
    both operands are outputs of a sign; on other values it is wrong.
    """

    __props__ = ()
    dtypes = FLOAT_DTYPES

    def __init__(self):
        FusedCOp.__init__(self, 'xnor_dot.c', 'APPLY_SPECIFIC(bn_xnor_dot)')

    def perform(self, node, inputs, outputs):
        a, b = inputs
        outputs[0][0] = np.asarray(np.dot(a, b), dtype=node.outputs[0].dtype)
