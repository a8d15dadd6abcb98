"""Reading the datasets through ``pylearn2.datasets`` (``--loader pylearn2``).

The alternative to the readers of :mod:`binary_net.data`, for runs that must read
exactly what the original read: pylearn2 master, repaired by
:func:`binary_net.compat.patch_pylearn2`, gives its float arrays, turned back here
into the same uint8 images and int64 labels as :func:`binary_net.data.load`.
CIFAR-10 batches first pass through the restricted unpickler
(:func:`binary_net.data.cifar10.vet_batches`).
"""
import os

import numpy as np

from .cifar10 import vet_batches
from .files import DatasetError, data_root, describe
from .registry import NUM_CLASSES

_PYLEARN2_CLASSES = {'mnist': ('pylearn2.datasets.mnist', 'MNIST'),
                     'cifar10': ('pylearn2.datasets.cifar10', 'CIFAR10'),
                     'svhn': ('pylearn2.datasets.svhn', 'SVHN')}


def pylearn2_set(name, which_set, data_path=None):
    """One pylearn2 dataset as uint8 NCHW images and its own int64 labels.

    pylearn2 (master, with :func:`binary_net.compat.patch_pylearn2`) reads
    ``$PYLEARN2_DATA_PATH``; ``data_path`` sets it for the call. Its float pixels
    (MNIST ``u / 255``, CIFAR-10 and SVHN ``u``) are turned back into the exact
    bytes. SVHN labels stay pylearn2's (.mat label - 1); SVHN builds pylearn2's HDF5
    copies under ``SVHN/format2/h5`` on first use (PyTables needed).

    Parameters
    ----------
    name : {'mnist', 'cifar10', 'svhn'}
    which_set : str
        pylearn2's ``which_set`` ('train', 'test'; SVHN also 'extra',
        'splitted_train', 'valid').
    """
    import importlib

    if name not in _PYLEARN2_CLASSES:
        raise DatasetError('--loader pylearn2 reads mnist, cifar10 and svhn, not %r' % (name,))
    if name == 'cifar10':
        vet_batches(data_path)
    module_name, class_name = _PYLEARN2_CLASSES[name]
    previous = os.environ.get('PYLEARN2_DATA_PATH')
    os.environ['PYLEARN2_DATA_PATH'] = data_root(data_path)
    try:
        try:
            from .. import compat
            compat.patch_pylearn2()
            dataset_class = getattr(importlib.import_module(module_name), class_name)
        except ImportError as err:
            raise DatasetError('--loader pylearn2 needs pylearn2 (and for SVHN PyTables): %s'
                               % describe(err)) from None
        try:
            data = dataset_class(which_set=which_set)
        except (OSError, ValueError, KeyError) as err:
            raise DatasetError('pylearn2 could not read %s %s under %s: %s'
                               % (name, which_set, data_root(data_path), describe(err))) from None
    finally:
        if previous is None:
            os.environ.pop('PYLEARN2_DATA_PATH', None)
        else:
            os.environ['PYLEARN2_DATA_PATH'] = previous
    X = np.asarray(data.X[:], dtype=np.float64)
    if name == 'mnist':
        X = X * 255.0
    shape = (-1, 1, 28, 28) if name == 'mnist' else (-1, 3, 32, 32)
    images = np.rint(X).astype(np.uint8).reshape(shape)
    return images, np.asarray(data.y[:]).reshape(-1).astype(np.int64)


def load_pylearn2(name, data_path=None, extra=False):
    """Like :func:`load`, reading through ``pylearn2.datasets`` (MNIST, CIFAR10, SVHN).

    Labels are this module's (SVHN: the digit); see :func:`pylearn2_set`.
    """
    train, test = pylearn2_set(name, 'train', data_path), pylearn2_set(name, 'test', data_path)
    if name == 'svhn':
        if extra:
            more = pylearn2_set(name, 'extra', data_path)
            train = (np.concatenate([train[0], more[0]]), np.concatenate([train[1], more[1]]))
        train, test = [(X, (y + 1) % NUM_CLASSES) for X, y in (train, test)]
    return {'train': train, 'test': test}
