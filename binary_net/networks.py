"""Building Lasagne graphs from network descriptions.

A description (a *spec*) is a plain dict defined, with the reference networks
and the layer-entry helpers, in the Theano-free :mod:`binary_net.spec`; they are
importable from here too (``binary_net.networks.mnist_spec``, ...).
:func:`build` turns one into a Lasagne network of :mod:`binary_net.layers`.
"""
from lasagne import nonlinearities
from lasagne.layers import (Conv2DLayer, DenseLayer, DropoutLayer, InputLayer,
                            MaxPool2DLayer)

from . import layers as xnor_layers
from .spec import (FORMAT_VERSION, REFERENCE_SPECS, batch_norm, cifar10_spec,  # noqa: F401
                   conv, count_arrays, dense, dropout, make_spec, max_pool, mnist_spec,
                   svhn_spec, xnor_conv, xnor_dense)

__all__ = ['build', 'NONLINEARITIES', 'FORMAT_VERSION', 'REFERENCE_SPECS', 'batch_norm',
           'cifar10_spec', 'conv', 'count_arrays', 'dense', 'dropout', 'make_spec',
           'max_pool', 'mnist_spec', 'svhn_spec', 'xnor_conv', 'xnor_dense']

NONLINEARITIES = {'identity': nonlinearities.identity,
                  'softmax': nonlinearities.softmax,
                  'rectify': nonlinearities.rectify}


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
        A network description (see :mod:`binary_net.spec`).
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
