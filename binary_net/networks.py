"""Network descriptions, the reference networks, and building Lasagne graphs from them.

A network is described by a plain, JSON-serializable dict (a *spec*), saved in
every model file, so that any tool can rebuild a saved network without being
told its architecture::

    {"format": 1, "name": "mnist", "input_shape": [null, 1, 28, 28],
     "loss": "squared_hinge",
     "layers": [{"type": "xnor_dense", "num_units": 4096, ...},
                {"type": "batch_norm", "epsilon": 1e-4, "alpha": 0.1}, ...]}

Layer types and the parameter arrays each holds, in file order:

=============  ===============================  ==================================
type           keys                             arrays
=============  ===============================  ==================================
xnor_conv      num_filters, filter_size,        W, b, beta_filter, xalpha
               stride, pad (explicit pair),
               flip_filters, binary_input,
               scale_input, scale_weights
xnor_dense     num_units, binary_input,         W, b, xalpha
               scale_input, scale_weights,
               bias_before_scaling
conv           num_filters, filter_size,        W, b
               stride, pad, flip_filters,
               nonlinearity
dense          num_units, nonlinearity          W, b
batch_norm     epsilon, alpha                   beta, gamma, mean, inv_std
max_pool       pool_size                        (none)
dropout        p                                (none)
=============  ===============================  ==================================

Dense layers flatten their input. Nonlinearities are named: 'identity',
'softmax' or 'rectify'.
"""
import lasagne
from lasagne import nonlinearities
from lasagne.layers import (Conv2DLayer, DenseLayer, DropoutLayer, InputLayer,
                            MaxPool2DLayer)

from . import layers as xnor_layers

FORMAT_VERSION = 1
NONLINEARITIES = {'identity': nonlinearities.identity,
                  'softmax': nonlinearities.softmax,
                  'rectify': nonlinearities.rectify}
PARAMS_PER_TYPE = {'xnor_conv': 4, 'xnor_dense': 3, 'conv': 2, 'dense': 2,
                   'batch_norm': 4, 'max_pool': 0, 'dropout': 0}


def xnor_dense(num_units, binary_input=True, scale_input=True, scale_weights=True,
               bias_before_scaling=False):
    """Spec entry of an :class:`~binary_net.layers.XnorDenseLayer`."""
    return dict(type='xnor_dense', num_units=num_units, binary_input=binary_input,
                scale_input=scale_input, scale_weights=scale_weights,
                bias_before_scaling=bias_before_scaling)


def xnor_conv(num_filters, filter_size=3, stride=1, pad=1, binary_input=True,
              scale_input=True, scale_weights=True):
    """Spec entry of an :class:`~binary_net.layers.XnorConvLayer` (square sizes)."""
    return dict(type='xnor_conv', num_filters=num_filters,
                filter_size=[filter_size] * 2, stride=[stride] * 2, pad=[pad] * 2,
                flip_filters=True, binary_input=binary_input,
                scale_input=scale_input, scale_weights=scale_weights)


def conv(num_filters, filter_size=3, stride=1, pad=1, nonlinearity='identity'):
    """Spec entry of a full-precision Lasagne convolution (a true convolution)."""
    return dict(type='conv', num_filters=num_filters, filter_size=[filter_size] * 2,
                stride=[stride] * 2, pad=[pad] * 2, flip_filters=True,
                nonlinearity=nonlinearity)


def dense(num_units, nonlinearity='identity'):
    """Spec entry of a full-precision Lasagne dense layer."""
    return dict(type='dense', num_units=num_units, nonlinearity=nonlinearity)


def batch_norm(epsilon=1e-4, alpha=0.1):
    """Spec entry of a :class:`~binary_net.layers.BatchNormLayer`."""
    return dict(type='batch_norm', epsilon=epsilon, alpha=alpha)


def max_pool(pool_size=2):
    """Spec entry of a max-pooling layer (stride = pool size, border ignored)."""
    return dict(type='max_pool', pool_size=[pool_size] * 2)


def dropout(p=0.5):
    """Spec entry of a dropout layer (identity at inference)."""
    return dict(type='dropout', p=p)


def make_spec(name, input_shape, layers, loss):
    """Assemble a spec dict; see the module docstring."""
    return {'format': FORMAT_VERSION, 'name': name, 'input_shape': list(input_shape),
            'loss': loss, 'layers': layers}


def mnist_spec(num_units=4096, dropout_p=0.5, num_classes=10):
    """The reference MNIST XNOR MLP (23 arrays, as the original's files).

    XNOR dense ``num_units`` binarizing the pixels, then twice (batch norm,
    XNOR dense ``num_units``, dropout), then a full-precision dense layer and
    batch norm, trained with the squared hinge loss.
    """
    hidden = []
    for _ in range(2):
        hidden += [batch_norm(), xnor_dense(num_units)]
        if dropout_p:
            hidden.append(dropout(dropout_p))
    return make_spec('mnist', (None, 1, 28, 28),
                     [xnor_dense(num_units)] + hidden
                     + [dense(num_classes), batch_norm()], 'squared_hinge')


def _conv_net_layers(filters, dense_units):
    """The convolutional part shared by the CIFAR-10 and SVHN reference networks."""
    f1, f2, f3, f4, f5, f6 = filters
    layers = [conv(f1), batch_norm(),
              xnor_conv(f2), max_pool(), batch_norm(),
              xnor_conv(f3), batch_norm(),
              xnor_conv(f4), max_pool(), batch_norm(),
              xnor_conv(f5), batch_norm(),
              xnor_conv(f6), max_pool(), batch_norm()]
    for _ in range(2):
        layers += [xnor_dense(dense_units), batch_norm()]
    return layers


def cifar10_spec(filters=(128, 128, 256, 256, 512, 512), dense_units=1024,
                 num_classes=10):
    """The reference CIFAR-10 XNOR network (62 arrays, as the original's files).

    A full-precision 3x3 convolution, five XNOR convolutions with three 2x2
    max-poolings, two XNOR dense layers, batch norm throughout, and a
    full-precision dense softmax output trained with cross-entropy.
    """
    return make_spec('cifar10', (None, 3, 32, 32),
                     _conv_net_layers(filters, dense_units)
                     + [dense(num_classes, 'softmax')], 'cross_entropy')


def svhn_spec(filters=(64, 64, 128, 128, 256, 256), dense_units=1024, num_classes=10):
    """The reference SVHN XNOR network: CIFAR-10's shape, narrower, with a
    full-precision dense output followed by batch norm (squared hinge loss)."""
    return make_spec('svhn', (None, 3, 32, 32),
                     _conv_net_layers(filters, dense_units)
                     + [dense(num_classes), batch_norm()], 'squared_hinge')


REFERENCE_SPECS = {'mnist': mnist_spec, 'cifar10': cifar10_spec, 'svhn': svhn_spec}


def count_arrays(spec):
    """Number of parameter arrays a model file of this network holds."""
    return sum(PARAMS_PER_TYPE[entry['type']] for entry in spec['layers'])


def _build_layer(entry, incoming):
    kind = entry['type']
    options = {k: v for k, v in entry.items() if k != 'type'}
    if kind == 'xnor_dense':
        return xnor_layers.XnorDenseLayer(incoming, **options)
    if kind == 'xnor_conv':
        return xnor_layers.XnorConvLayer(incoming, **options)
    if kind == 'dense':
        return DenseLayer(incoming, entry['num_units'],
                          nonlinearity=NONLINEARITIES[entry['nonlinearity']])
    if kind == 'conv':
        if not entry.get('flip_filters', True):
            raise ValueError('full-precision conv layers always flip filters in Lasagne 0.1')
        return Conv2DLayer(incoming, entry['num_filters'], tuple(entry['filter_size']),
                           stride=tuple(entry['stride']), pad=tuple(entry['pad']),
                           nonlinearity=NONLINEARITIES[entry['nonlinearity']])
    if kind == 'batch_norm':
        return xnor_layers.BatchNormLayer(incoming, **options)
    if kind == 'max_pool':
        return MaxPool2DLayer(incoming, tuple(entry['pool_size']))
    if kind == 'dropout':
        return DropoutLayer(incoming, p=entry['p'])
    raise ValueError('unknown layer type %r in network description' % kind)


def build(spec, input_var=None):
    """Build the Lasagne network a spec describes.

    Parameters
    ----------
    spec : dict
        A network description (see the module docstring).
    input_var : Theano 4D tensor or None

    Returns
    -------
    The output :class:`lasagne.layers.Layer`.
    """
    if spec.get('format') != FORMAT_VERSION:
        raise ValueError('unsupported network description format %r' % spec.get('format'))
    network = InputLayer(tuple(spec['input_shape']), input_var=input_var)
    for entry in spec['layers']:
        network = _build_layer(entry, network)
    return network
