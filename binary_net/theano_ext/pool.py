"""Max-pooling of training on all threads: :class:`ParallelPool` and :class:`ParallelMaxPoolGrad`.

Part of :mod:`binary_net.theano_ext`. Theano's ``Pool`` and ``MaxPoolGrad`` carry
their own OpenMP loop over the images and channels (``openmp=True``), off unless
Theano's global ``openmp`` flag is set; :class:`~binary_net.theano_ext.rewrites.FuseBinarization`
turns it on for the functions this package compiles. Each image and channel is
one task that writes only its own plane, so the results are Theano's own, bit
for bit.
"""
from theano.tensor.signal import pool

__all__ = ['ParallelPool', 'ParallelMaxPoolGrad', 'parallel_pool_op']


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


def parallel_pool_op(op):
    """The OpenMP twin of a serial Theano pooling op, or None."""
    if type(op) is pool.Pool:
        return ParallelPool(ignore_border=op.ignore_border, mode=op.mode, ndim=op.ndim,
                            openmp=True)
    if type(op) is pool.MaxPoolGrad:
        return ParallelMaxPoolGrad(op.ignore_border, ndim=op.ndim, openmp=True)
    return None

