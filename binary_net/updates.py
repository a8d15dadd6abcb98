"""BinaryNet's update rule for networks with binary layers.

Courbariaux, Hubara et al. train binary networks by keeping real-valued
weights: the gradient is taken at the binarized weights and applied to the real
ones, each binary layer's step is scaled by its Glorot factor, and the real
weights are clipped to [-1, 1] so that the straight-through estimator keeps
passing gradients.
"""
from collections import OrderedDict

import numpy as np
import theano
import theano.tensor as T
import lasagne

from . import binarize


def binary_layers(network):
    """The layers of ``network`` that have binary weights (a ``W_binary`` attribute)."""
    return [layer for layer in lasagne.layers.get_all_layers(network)
            if hasattr(layer, 'W_binary')]


def learning_rate_scale(layer):
    """BinaryNet's W_LR_scale = 1 / sqrt(1.5 / (fan_in + fan_out)) for a binary layer.

    Parameters
    ----------
    layer : an XNOR layer; dense ``W`` is ``(fan_in, fan_out)``, convolution
        ``W`` is ``(filters, channels, rows, cols)`` with fan_in = channels *
        rows * cols and fan_out = filters * rows * cols.

    Returns
    -------
    float

    Examples
    --------
    >>> from binary_net.layers import XnorDenseLayer
    >>> from binary_net.updates import learning_rate_scale
    >>> round(learning_rate_scale(XnorDenseLayer((None, 784), 4096)), 4)   # sqrt(4880 / 1.5)
    57.038
    """
    shape = layer.W.get_value(borrow=True).shape
    if len(shape) == 2:
        fan_in, fan_out = shape
    else:
        receptive_field = int(np.prod(shape[2:]))
        fan_in, fan_out = shape[1] * receptive_field, shape[0] * receptive_field
    return float(1. / np.sqrt(1.5 / (fan_in + fan_out)))


def binary_updates(loss, network, update_rule=lasagne.updates.adam,
                   learning_rate=1e-3, **update_kwargs):
    """Updates for all trainable parameters of a network with binary layers.

    Parameters
    ----------
    loss : Theano scalar
        The training loss, built from ``network``'s non-deterministic output.
    network : a :class:`Layer` instance
        The output layer.
    update_rule : callable
        Any Lasagne update rule ``rule(grads, params, learning_rate, **kw)``,
        Adam by default.
    learning_rate : float or Theano scalar
    **update_kwargs
        Passed to ``update_rule``.

    Returns
    -------
    OrderedDict
        Parameter (and optimizer state) updates. For each binary layer: the
        gradient is taken at ``W_binary``, the step on ``W`` is scaled by
        :func:`learning_rate_scale`, ``W`` is clipped to [-1, 1] and the stored
        ``xalpha`` is refreshed. Other trainable parameters follow
        ``update_rule`` unchanged.

    Examples
    --------
    One SGD step with learning rate 1 on a 2 x 2 XNOR layer: the gradient at
    ``W_binary`` is ``sign(x) K alpha``, the step is scaled by
    :func:`learning_rate_scale` (here ``1 / sqrt(1.5 / 4)``) and ``W`` is clipped.

    >>> import numpy as np, theano, theano.tensor as T, lasagne
    >>> from binary_net.layers import XnorDenseLayer
    >>> from binary_net.updates import binary_layers, binary_updates, learning_rate_scale
    >>> x = T.matrix('x')
    >>> W0 = np.array([[0.9, -0.5], [0.2, 0.3]], dtype='float32')
    >>> net = XnorDenseLayer(lasagne.layers.InputLayer((None, 2), x), 2, W=W0, b=None)
    >>> binary_layers(net) == [net]
    True
    >>> loss = lasagne.layers.get_output(net).sum()
    >>> updates = binary_updates(loss, net, lasagne.updates.sgd, learning_rate=1.0)
    >>> step = theano.function([x], loss, updates=updates)
    >>> round(float(step(np.array([[1, 1]], dtype='float32'))), 6)   # products (2, 0) . alpha
    1.1
    >>> grad = np.array([[0.55, 0.4], [0.55, 0.4]])   # sign(x_i) * K * alpha_j
    >>> expected = np.clip(W0 - learning_rate_scale(net) * grad, -1, 1)
    >>> np.allclose(net.W.get_value(), expected, atol=1e-6)
    True
    >>> float(net.W.get_value()[0, 1])   # -0.5 - 1.633 * 0.4, clipped
    -1.0
    >>> np.allclose(net.xalpha.get_value(), np.abs(net.W.get_value()).mean(axis=0))
    True
    """
    layers = binary_layers(network)
    binary_params = [layer.W for layer in layers]
    binary_grads = theano.grad(loss, wrt=[layer.W_binary for layer in layers])
    updates = OrderedDict()
    if layers:
        updates = update_rule(binary_grads, binary_params, learning_rate, **update_kwargs)
        for layer in layers:
            W = layer.W
            stepped = W + learning_rate_scale(layer) * (updates[W] - W)
            updates[W] = T.clip(stepped, -1., 1.)
            updates[layer.xalpha] = binarize.weight_scale(updates[W])
    others = [p for p in lasagne.layers.get_all_params(network, trainable=True)
              if p not in binary_params]
    if others:
        updates.update(update_rule(loss, others, learning_rate, **update_kwargs))
    return updates
