"""Lasagne layers for XNOR-Net, and the batch normalization Lasagne 0.1 lacks.

Each layer keeps the real-valued weights ``W`` as its trainable parameter; the
binary weights ``W_binary = sign(W)`` and the scale ``alpha = mean |W|`` are
Theano expressions derived from it (see :mod:`binary_net.binarize`), so the
update rule in :mod:`binary_net.updates` can take gradients at ``W_binary``.
"""
import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne import init, nonlinearities
from lasagne.layers import Conv2DLayer, DenseLayer, Layer

from . import binarize
from .spec import explicit_pad


class _XnorMixin:
    """What XNOR dense and convolution layers share: options, W_binary, alpha, xalpha."""

    def _setup_binary(self, binary_input, scale_input, scale_weights):
        self.binary_input = binary_input
        self.scale_input = scale_input and binary_input
        self.scale_weights = scale_weights
        self.params[self.W].add('binary')
        self.W_binary = binarize.sign(self.W)
        self.alpha = binarize.weight_scale(self.W)
        # A stored copy of alpha, kept up to date by binary_updates(), so that
        # a saved model carries it (the original's files hold it as 'xalpha').
        alpha_now = np.abs(self.W.get_value()).reshape(self.W.get_value().shape[0], -1)
        alpha_now = (alpha_now.mean(axis=0) if self.W.ndim == 2
                     else alpha_now.mean(axis=1))
        self.xalpha = self.add_param(alpha_now.astype(theano.config.floatX),
                                     alpha_now.shape, name='xalpha',
                                     trainable=False, regularizable=False)

    def _binary_input(self, input):
        return binarize.sign(input) if self.binary_input else input

    def _scaled(self, product, K):
        """Apply K and alpha to the binary product; the bias follows (or precedes)."""
        bias = self._bias_term()
        if bias is not None and self.bias_before_scaling:
            product = product + bias
        if self.scale_input:
            product = product * K
        if self.scale_weights:
            product = product * self._alpha_term()
        if bias is not None and not self.bias_before_scaling:
            product = product + bias
        return self.nonlinearity(product)


class XnorDenseLayer(_XnorMixin, DenseLayer):
    """A fully connected XNOR layer: ``(sign(x) . sign(W)) * K * alpha + b``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        The layer feeding into this layer, or the expected input shape.
    num_units : int
        The number of units of the layer.
    W, b : Theano shared variable, numpy array or callable
        Initial real-valued weights ``(num_inputs, num_units)`` and biases
        ``(num_units,)``; ``b=None`` for no bias.
    nonlinearity : callable or None
        Applied to the output; None (the default) is the identity, since the
        next XNOR layer's sign acts as the activation.
    binary_input : bool
        Binarize the input (XNOR-Net). False gives the paper's binary-weight
        network: real inputs times ``sign(W) * alpha``.
    scale_input : bool
        Multiply by K, the mean absolute input of each sample.
    scale_weights : bool
        Multiply by alpha, the mean absolute weight of each unit.
    bias_before_scaling : bool
        Add ``b`` before K and alpha, as the original Theano code did, instead
        of after them as in the paper's equation.
    **kwargs
        Passed to :class:`lasagne.layers.DenseLayer`.

    Attributes
    ----------
    W : shared variable, the trainable real-valued weights.
    W_binary : Theano expression ``sign(W)``.
    alpha : Theano expression ``mean |W|`` per unit.
    xalpha : shared variable, a non-trainable copy of alpha saved with the model.

    Examples
    --------
    The paper's equation, checked against numpy (sign(0) = +1):

    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.layers import XnorDenseLayer
    >>> W = np.array([[0.5, -0.2], [-0.3, 0.4], [0.1, 0.1]], dtype='float32')
    >>> layer = XnorDenseLayer((None, 3), num_units=2, W=W)
    >>> x = np.array([[1.0, -2.0, 0.0]], dtype='float32')
    >>> y = layer.get_output_for(T.constant(x)).eval()
    >>> y.round(4)
    array([[ 0.9   , -0.2333]], dtype=float32)
    >>> sign_x, sign_W = np.where(x >= 0, 1, -1), np.where(W >= 0, 1, -1)
    >>> K, alpha = np.abs(x).mean(), np.abs(W).mean(axis=0)
    >>> np.allclose(y, (sign_x @ sign_W) * K * alpha)
    True
    >>> layer.W_binary.eval()
    array([[ 1., -1.],
           [-1.,  1.],
           [ 1.,  1.]], dtype=float32)
    """

    def __init__(self, incoming, num_units, W=init.GlorotUniform(),
                 b=init.Constant(0.), nonlinearity=None, binary_input=True,
                 scale_input=True, scale_weights=True, bias_before_scaling=False,
                 **kwargs):
        super().__init__(incoming, num_units, W=W, b=b, nonlinearity=nonlinearity,
                         **kwargs)
        self.bias_before_scaling = bias_before_scaling
        self._setup_binary(binary_input, scale_input, scale_weights)

    def _bias_term(self):
        return self.b

    def _alpha_term(self):
        return self.alpha

    def get_output_for(self, input, **kwargs):
        if input.ndim > 2:
            input = input.flatten(2)
        K = binarize.dense_input_scale(input) if self.scale_input else None
        product = T.dot(self._binary_input(input), self.W_binary)
        return self._scaled(product, K)


class XnorConvLayer(_XnorMixin, Conv2DLayer):
    """A 2D XNOR convolution: ``(sign(X) * sign(W)) . K . alpha + b``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        The layer feeding into this layer, or the expected input shape
        ``(batch, channels, rows, cols)``.
    num_filters : int
        The number of filters (output channels).
    filter_size : int or pair of int
    stride : int or pair of int
    pad : int, pair of int, 'valid', 'same' or 'full'
        Zero padding, applied after binarization: a padded position
        contributes 0 to the binary product (a real zero input gives +1).
    W, b : Theano shared variable, numpy array or callable
        Initial real-valued filters ``(num_filters, channels, rows, cols)`` and
        biases ``(num_filters,)``; ``b=None`` for no bias.
    nonlinearity : callable or None
        None (the default) is the identity.
    flip_filters : bool
        True (Lasagne's default) computes a true convolution; False a
        cross-correlation.
    binary_input, scale_input, scale_weights : bool
        As for :class:`XnorDenseLayer`; K is here ``mean_c |X|`` averaged over
        each receptive field by the box filter ``beta_filter``.
    **kwargs
        Passed to :class:`lasagne.layers.Conv2DLayer`.

    Attributes
    ----------
    W, W_binary, alpha, xalpha : as for :class:`XnorDenseLayer`, per filter.
    beta_filter : shared variable, the fixed ``(1, 1, rows, cols)`` box filter.

    Examples
    --------
    Zero padding after binarization: on an all-zero image (every sign +1), a 3 x 3
    filter of ones counts the real positions under it.

    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.layers import XnorConvLayer
    >>> layer = XnorConvLayer((None, 1, 3, 3), num_filters=1, filter_size=3, pad='same',
    ...                       W=np.ones((1, 1, 3, 3), dtype='float32'),
    ...                       scale_input=False, scale_weights=False)
    >>> layer.get_output_for(T.constant(np.zeros((1, 1, 3, 3), dtype='float32'))).eval()[0, 0]
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]], dtype=float32)
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 W=init.GlorotUniform(), b=init.Constant(0.), nonlinearity=None,
                 flip_filters=True, binary_input=True, scale_input=True,
                 scale_weights=True, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride=stride,
                         pad=explicit_pad(pad, lasagne.utils.as_tuple(filter_size, 2)),
                         W=W, b=b, nonlinearity=nonlinearity, **kwargs)
        self.flip_filters = flip_filters
        self.bias_before_scaling = False
        self.beta_filter = self.add_param(binarize.box_filter(self.filter_size),
                                          (1, 1) + tuple(self.filter_size),
                                          name='beta_filter', trainable=False,
                                          regularizable=False)
        self._setup_binary(binary_input, scale_input, scale_weights)

    def _bias_term(self):
        return None if self.b is None else self.b.dimshuffle('x', 0, 'x', 'x')

    def _alpha_term(self):
        return self.alpha.dimshuffle('x', 0, 'x', 'x')

    def get_output_for(self, input, **kwargs):
        K = (binarize.conv_input_scale(input, self.beta_filter, self.stride, self.pad)
             if self.scale_input else None)
        product = T.nnet.conv2d(self._binary_input(input), self.W_binary,
                                input_shape=self.input_shape,
                                filter_shape=self.get_W_shape(),
                                border_mode=tuple(self.pad),
                                subsample=tuple(self.stride),
                                filter_flip=self.flip_filters)
        return self._scaled(product, K)


class BatchNormLayer(Layer):
    """Batch normalization (Ioffe and Szegedy, 2015), which Lasagne 0.1 lacks.

    ``y = (x - mean) * inv_std * gamma + beta``. In training, mean and inv_std
    come from the batch and the running averages move towards them by
    ``alpha``; with ``deterministic=True`` the running averages are used. As in
    Lasagne master, ``get_output(..., batch_norm_use_averages=...,
    batch_norm_update_averages=...)`` overrides either choice, and ``mean`` and
    ``inv_std`` carry the tag ``batch_norm_stat`` (``get_all_params(net,
    batch_norm_stat=True)``).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    axes : 'auto', int or tuple of int
        Axes to normalize over; 'auto' is all but the second (channels or units).
    epsilon : float
        Added to the variance for numerical stability.
    alpha : float
        Averaging factor of the running mean and inv_std.
    beta, gamma, mean, inv_std : Theano shared variable, numpy array or callable
        Initial values; ``beta=None`` or ``gamma=None`` leaves that term out.
    **kwargs
        Passed to :class:`lasagne.layers.Layer`.

    Examples
    --------
    With ``deterministic=True``, ``(x - mean) * inv_std`` (gamma 1, beta 0):

    >>> import numpy as np, theano.tensor as T
    >>> from binary_net.layers import BatchNormLayer
    >>> layer = BatchNormLayer((None, 2), mean=np.array([1, 2], dtype='float32'),
    ...                        inv_std=np.array([0.5, 2], dtype='float32'))
    >>> x = T.constant(np.array([[3, 2]], dtype='float32'))
    >>> layer.get_output_for(x, deterministic=True).eval()
    array([[1., 0.]], dtype=float32)
    """

    def __init__(self, incoming, axes='auto', epsilon=1e-4, alpha=0.1,
                 beta=init.Constant(0), gamma=init.Constant(1),
                 mean=init.Constant(0), inv_std=init.Constant(1), **kwargs):
        super().__init__(incoming, **kwargs)
        if axes == 'auto':
            axes = (0,) + tuple(range(2, len(self.input_shape)))
        elif isinstance(axes, (int, np.integer)):
            axes = (int(axes),)
        self.axes = tuple(axes)
        self.epsilon = epsilon
        self.alpha = alpha
        shape = [size for axis, size in enumerate(self.input_shape)
                 if axis not in self.axes]
        if any(size is None for size in shape):
            raise ValueError('BatchNormLayer needs fixed sizes on the normalized '
                             'axes; got input shape %r' % (self.input_shape,))
        self.beta = None if beta is None else self.add_param(
            beta, shape, 'beta', trainable=True, regularizable=False)
        self.gamma = None if gamma is None else self.add_param(
            gamma, shape, 'gamma', trainable=True, regularizable=True)
        self.mean = self.add_param(mean, shape, 'mean', trainable=False,
                                   regularizable=False, batch_norm_stat=True)
        self.inv_std = self.add_param(inv_std, shape, 'inv_std', trainable=False,
                                      regularizable=False, batch_norm_stat=True)

    def get_output_for(self, input, deterministic=False, batch_norm_use_averages=None,
                       batch_norm_update_averages=None, **kwargs):
        """Normalize ``input``.

        Parameters
        ----------
        deterministic : bool
            Use the running averages and leave them alone (inference), instead of
            the batch statistics and updating the averages (training).
        batch_norm_use_averages, batch_norm_update_averages : bool or None
            Override either half of that choice (None: follow ``deterministic``),
            as Lasagne master's ``BatchNormLayer``.
        """
        use_averages = (deterministic if batch_norm_use_averages is None
                        else batch_norm_use_averages)
        update_averages = (not deterministic if batch_norm_update_averages is None
                           else batch_norm_update_averages)
        if use_averages and not update_averages:
            mean, inv_std = self.mean, self.inv_std
        else:
            batch_mean = input.mean(self.axes)
            batch_inv_std = T.inv(T.sqrt(input.var(self.axes) + self.epsilon))
            mean, inv_std = ((self.mean, self.inv_std) if use_averages
                             else (batch_mean, batch_inv_std))
            if update_averages:
                mean, inv_std = self._track_running_averages(mean, inv_std, batch_mean,
                                                             batch_inv_std)
        kept = iter(range(input.ndim - len(self.axes)))
        pattern = ['x' if axis in self.axes else next(kept) for axis in range(input.ndim)]

        def broadcast(v):
            return v.dimshuffle(pattern)

        normalized = (input - broadcast(mean)) * broadcast(inv_std)
        if self.gamma is not None:
            normalized = normalized * broadcast(self.gamma)
        if self.beta is not None:
            normalized = normalized + broadcast(self.beta)
        return normalized

    def _track_running_averages(self, mean, inv_std, batch_mean, batch_inv_std):
        """Attach running-average updates (towards the batch statistics) to
        ``mean`` and ``inv_std`` through default_update.

        Any function compiled from this output then updates ``mean`` and
        ``inv_std`` on each call, without the caller collecting updates. The
        clones are tied into the result by a zero term so that Theano keeps them.
        """
        running_mean = theano.clone(self.mean, share_inputs=False)
        running_inv_std = theano.clone(self.inv_std, share_inputs=False)
        running_mean.default_update = ((1 - self.alpha) * running_mean
                                       + self.alpha * batch_mean)
        running_inv_std.default_update = ((1 - self.alpha) * running_inv_std
                                          + self.alpha * batch_inv_std)
        return (mean + 0 * running_mean, inv_std + 0 * running_inv_std)


def batch_norm(layer, **kwargs):
    """Insert a :class:`BatchNormLayer` after ``layer``, moving its nonlinearity after it.

    ``layer``'s bias becomes redundant with beta but is kept, so that model
    files keep the original's array layout.

    Parameters
    ----------
    layer : a :class:`Layer` instance
    **kwargs
        Passed to :class:`BatchNormLayer`.

    Returns
    -------
    The new layer: the batch normalization, followed by the nonlinearity
    ``layer`` had, if it was not the identity.

    Examples
    --------
    >>> import lasagne
    >>> from binary_net.layers import batch_norm
    >>> net = batch_norm(lasagne.layers.DenseLayer((None, 4), 3))   # ReLU by default
    >>> type(net).__name__, type(net.input_layer).__name__
    ('NonlinearityLayer', 'BatchNormLayer')
    >>> net.nonlinearity is lasagne.nonlinearities.rectify
    True
    >>> net.input_layer.input_layer.nonlinearity is lasagne.nonlinearities.identity
    True
    """
    nonlinearity = getattr(layer, 'nonlinearity', None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    normalized = BatchNormLayer(layer, **kwargs)
    if nonlinearity is not None and nonlinearity is not nonlinearities.identity:
        normalized = lasagne.layers.NonlinearityLayer(normalized, nonlinearity)
    return normalized
