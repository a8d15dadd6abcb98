"""The arithmetic of XNOR-Net as Theano expressions, kept apart from the layers.

Rastegari et al. (2016) approximate a real convolution ``X * W`` by
``(sign(X) (*) sign(W)) . K . alpha``: binary operands, a per-filter weight
scale ``alpha`` and a per-position input scale ``K``. Like Larq's quantizers,
these functions know nothing about layers; the layers in :mod:`binary_net.layers`
only call them.
"""
import numpy as np
import theano
import theano.scalar as ts
import theano.tensor as T

from . import compat

compat.apply()


class ScalarSign(ts.UnaryScalarOp):
    """sign with sign(0) = +1; gradient straight-through or zero.

    A scalar op (rather than ``switch(x >= 0, 1, -1)`` plus a gradient trick)
    so that Theano fuses it into neighbouring elementwise C loops and the
    forward value is exactly +-1.
    """

    __props__ = ('straight_through',)

    def __init__(self, straight_through):
        super().__init__(output_types_preference=ts.upgrade_to_float)
        self.straight_through = straight_through

    def impl(self, x):
        return np.asarray(1.0 if x >= 0 else -1.0, dtype=np.asarray(x).dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        (x,), (z,) = inputs, outputs
        return '%(z)s = (%(x)s >= 0) ? 1 : -1;' % locals()

    def c_code_cache_version(self):
        return (1,)

    def grad(self, inputs, output_grads):
        (x,), (gz,) = inputs, output_grads
        if not self.straight_through:
            return [x.zeros_like().astype(theano.config.floatX)]
        # Straight-through estimator (Hubara et al.): pass the gradient where
        # |x| <= 1 and cancel it where the input saturates.
        inside = ts.le(ts.abs_(x), np.asarray(1, dtype=x.type.dtype))
        return [gz * ts.cast(inside, gz.type.dtype)]


_sign_ste = T.Elemwise(ScalarSign(True), name='sign_ste')
_sign_zero_grad = T.Elemwise(ScalarSign(False), name='sign_zero_grad')


def sign(x, straight_through=True):
    """Binarize to +-1 with sign(0) = +1.

    Parameters
    ----------
    x : Theano tensor
    straight_through : bool
        If True the gradient is the straight-through estimator
        ``1 where |x| <= 1, else 0``; if False it is zero (the true derivative
        almost everywhere), which lets finite differences check what surrounds it.

    Returns
    -------
    Theano tensor of the same shape and dtype, with values in {-1, +1}.

    Examples
    --------
    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.binarize import sign
    >>> x = T.vector('x')
    >>> sign(x).eval({x: np.array([-0.5, 0, 2], dtype='float32')})
    array([-1.,  1.,  1.], dtype=float32)

    The straight-through gradient passes where ``|x| <= 1``:

    >>> T.grad(sign(x).sum(), x).eval({x: np.array([-2, -0.5, 0, 1, 3], dtype='float32')})
    array([0., 1., 1., 1., 0.], dtype=float32)
    >>> T.grad(sign(x, straight_through=False).sum(), x).eval(
    ...     {x: np.array([-0.5, 0.5], dtype='float32')})
    array([0., 0.], dtype=float32)
    """
    x = T.as_tensor_variable(x)
    return (_sign_ste if straight_through else _sign_zero_grad)(x)


def weight_scale(W):
    """alpha: the mean absolute weight of each output filter or unit.

    Parameters
    ----------
    W : Theano tensor
        Dense weights ``(num_inputs, num_units)`` or convolution filters
        ``(num_filters, channels, rows, cols)``.

    Returns
    -------
    Theano vector of length ``num_units`` or ``num_filters``.

    Examples
    --------
    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.binarize import weight_scale
    >>> W = np.array([[0.5, -2.0], [-1.5, 1.0]], dtype='float32')   # 2 inputs, 2 units
    >>> weight_scale(T.constant(W)).eval()
    array([1. , 1.5], dtype=float32)
    """
    if W.ndim == 2:
        return T.mean(abs(W), axis=0)
    return T.mean(abs(W).flatten(2), axis=1)


def box_filter(filter_size, dtype=None):
    """The fixed averaging filter ``k`` of the paper, shape ``(1, 1, rows, cols)``.

    Examples
    --------
    >>> from binary_net.binarize import box_filter
    >>> box_filter((2, 2))
    array([[[[0.25, 0.25],
             [0.25, 0.25]]]], dtype=float32)
    """
    rows, cols = filter_size
    return np.full((1, 1, rows, cols), 1.0 / (rows * cols),
                   dtype=dtype or theano.config.floatX)


def dense_input_scale(x):
    """K for a dense layer: the mean absolute input of each sample.

    Parameters
    ----------
    x : Theano matrix ``(batch, num_inputs)``

    Returns
    -------
    Theano matrix ``(batch, 1)``, broadcastable against the layer's output.

    Examples
    --------
    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.binarize import dense_input_scale
    >>> dense_input_scale(T.constant(np.array([[1, -3], [0, 0.5]], dtype='float32'))).eval()
    array([[2.  ],
           [0.25]], dtype=float32)
    """
    return T.mean(abs(x), axis=1, keepdims=True)


def conv_input_scale(x, box, stride, pad):
    """K for a convolution: |X| averaged over channels, then over each receptive field.

    Parameters
    ----------
    x : Theano 4D tensor ``(batch, channels, rows, cols)``
    box : Theano or numpy array ``(1, 1, filter_rows, filter_cols)``
        The averaging filter (see :func:`box_filter`).
    stride : pair of int
    pad : pair of int
        The layer's own stride and zero padding, so that K lines up with the
        layer's output positions; padded positions count as |x| = 0.

    Returns
    -------
    Theano 4D tensor ``(batch, 1, out_rows, out_cols)``.

    Examples
    --------
    Inputs of ones padded by one: a 2 x 2 window at a corner holds one real position.

    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.binarize import box_filter, conv_input_scale
    >>> X = T.constant(np.ones((1, 2, 3, 3), dtype='float32'))
    >>> conv_input_scale(X, box_filter((2, 2)), stride=(1, 1), pad=(1, 1)).eval()[0, 0]
    array([[0.25, 0.5 , 0.5 , 0.25],
           [0.5 , 1.  , 1.  , 0.5 ],
           [0.5 , 1.  , 1.  , 0.5 ],
           [0.25, 0.5 , 0.5 , 0.25]], dtype=float32)
    """
    mean_abs = T.mean(abs(x), axis=1, keepdims=True)
    K = T.nnet.conv2d(mean_abs, box, border_mode=tuple(pad),
                      subsample=tuple(stride), filter_flip=False)
    # A shared box filter is not broadcastable, so neither is K's channel axis;
    # declare it so K broadcasts against the (batch, filters, ...) product.
    return T.addbroadcast(K, 1)
