"""XNOR-Net (Rastegari et al., 2016) for Theano and Lasagne.

Importing the package repairs Theano 1.0.5 and Lasagne 0.1 for Python 3.11 (see
:mod:`binary_net.compat`); the layers and helpers are loaded on first use, so
``import binary_net`` stays cheap.
"""
import importlib

from . import compat

compat.install_import_hook()

__version__ = '0.1.0'

_EXPORTS = {
    'XnorDenseLayer': 'layers', 'XnorConvLayer': 'layers',
    'BatchNormLayer': 'layers', 'batch_norm': 'layers',
    'binary_updates': 'updates',
    'squared_hinge_loss': 'objectives', 'categorical_accuracy': 'objectives',
    'save_model': 'modelfile', 'load_model': 'modelfile',
}


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module('.' + _EXPORTS[name], __name__)
        return getattr(module, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
