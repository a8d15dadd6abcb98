"""Max-pooling of training on all threads: :class:`ParallelPool`, :class:`ParallelMaxPoolGrad`
and :class:`TiledMaxPoolGrad`.

Part of :mod:`binary_net.theano_ext`. Theano's ``Pool`` and ``MaxPoolGrad`` carry
their own OpenMP loop over the images and channels (``openmp=True``), off unless
Theano's global ``openmp`` flag is set; :class:`~binary_net.theano_ext.rewrites.FuseBinarization`
turns it on for the functions this package compiles. Each image and channel is
one task that writes only its own plane, so the results are Theano's own, bit
for bit. Where the pooling windows tile the image (the reference networks' 2x2
pooling), :class:`TiledMaxPoolGrad` computes the gradient in one
pass (``csrc/theano_ext/max_pool_grad.c``), again Theano's numbers bit for bit.
"""
import numpy as np
import theano.tensor as T
from theano import gof
from theano.tensor.signal import pool

from .cop import FLOAT_DTYPES, FusedCOp

__all__ = ['ParallelPool', 'ParallelMaxPoolGrad', 'TiledMaxPoolGrad', 'parallel_pool_op',
           'tiled_max_pool_grad']


class ParallelPool(pool.Pool):
    """Theano's Pool with OpenMP over images and channels (an op unequal to the
    serial one, so that Theano's merge pass does not swap the serial one back in)."""
    __props__ = pool.Pool.__props__ + ('openmp',)


class ParallelMaxPoolGrad(pool.MaxPoolGrad):
    """MaxPoolGrad with OpenMP over images and channels (see :class:`ParallelPool`)."""
    __props__ = pool.MaxPoolGrad.__props__ + ('openmp',)

    def __init__(self, ignore_border, mode='max', ndim=2, openmp=None):
        # MaxPoolGrad's own constructor takes no mode; Theano rebuilds ops from
        # their props (mode included), so accept it and insist on max.
        if mode != 'max':
            raise ValueError('ParallelMaxPoolGrad is max-pooling only, got mode=%r' % (mode,))
        pool.MaxPoolGrad.__init__(self, ignore_border, ndim=ndim, openmp=openmp)


class TiledMaxPoolGrad(FusedCOp):
    """The gradient of 2-D max pooling whose windows tile the image.

    ``TiledMaxPoolGrad(ws)(x, z, gz)`` equals Theano's
    ``MaxPoolGrad(ignore_border=True)(x, z, gz, ws, ws, (0, 0))``: windows of
    ``ws`` with stride ``ws`` and no padding, ``z`` the pooled maxima and ``gz``
    their gradient. Each input equal to its window's maximum gets the window's
    gradient (every one of them, on ties, as in Theano), every other input 0.

    Parameters
    ----------
    ws : tuple of 2 ints
        The pooling window, which is also the stride.
    """

    __props__ = ('ws',)

    def __init__(self, ws):
        self.ws = tuple(int(v) for v in ws)
        if len(self.ws) != 2 or min(self.ws) < 1:
            raise ValueError('TiledMaxPoolGrad needs a 2-D window of positive sizes, got %r'
                             % (ws,))
        FusedCOp.__init__(self, 'max_pool_grad.c', 'APPLY_SPECIFIC(bn_max_pool_grad)')

    def c_support_code_apply(self, node, name):
        window = '#define BN_POOL_WH %d\n#define BN_POOL_WW %d\n' % self.ws
        return (window + FusedCOp.c_support_code_apply(self, node, name)
                + '#undef BN_POOL_WH\n#undef BN_POOL_WW\n')

    def make_node(self, x, z, gz):
        x, z, gz = (T.as_tensor_variable(v) for v in (x, z, gz))
        if (any(v.ndim != 4 for v in (x, z, gz)) or x.dtype not in FLOAT_DTYPES
                or z.dtype != x.dtype or gz.dtype != x.dtype):
            raise TypeError('TiledMaxPoolGrad needs three 4-D float tensors of one dtype, '
                            'got %s, %s and %s' % (x.type, z.type, gz.type))
        return gof.Apply(self, [x, z, gz], [x.type()])

    def perform(self, node, inputs, outputs):
        x, z, gz = inputs
        (wh, ww), (zh, zw) = self.ws, z.shape[2:]
        up = lambda a: a.repeat(wh, axis=2).repeat(ww, axis=3)
        gx = np.zeros_like(x)
        tiled = x[:, :, :zh * wh, :zw * ww]
        gx[:, :, :zh * wh, :zw * ww] = np.where(tiled == up(z), 0 + up(gz), 0)
        outputs[0][0] = gx

    def infer_shape(self, node, shapes):
        return [shapes[0]]


def tiled_max_pool_grad(node):
    """A :class:`TiledMaxPoolGrad` output for a Theano ``MaxPoolGrad`` node whose
    windows tile the image (constant window = stride, no padding, border ignored),
    else None."""
    op = node.op
    if not isinstance(op, pool.MaxPoolGrad) or op.ndim != 2 or not op.ignore_border:
        return None
    x, z, gz, ws, stride, pad = node.inputs
    if not all(isinstance(a, T.TensorConstant) for a in (ws, stride, pad)):
        return None
    ws, stride, pad = (tuple(int(v) for v in np.ravel(a.data)) for a in (ws, stride, pad))
    if ws != stride or any(pad) or x.ndim != 4:
        return None
    return TiledMaxPoolGrad(ws)(x, z, gz)


def parallel_pool_op(op):
    """The OpenMP twin of a serial Theano pooling op, or None."""
    if type(op) is pool.Pool:
        return ParallelPool(ignore_border=op.ignore_border, mode=op.mode, ndim=op.ndim,
                            openmp=True)
    if type(op) is pool.MaxPoolGrad:
        return ParallelMaxPoolGrad(op.ignore_border, ndim=op.ndim, openmp=True)
    return None

