"""CIFAR-10: the official Python batches, read with a restricted unpickler.

A reader of :mod:`binary_net.data`. The batches (``cifar10/cifar-10-batches-py/``
under the data root) are Python 2 pickles; :class:`_BatchUnpickler` builds only what
they contain (dicts, lists, strings, numbers and numpy's array reconstruction) and
refuses any other name before it is looked up, so nothing in a batch can run code.
:func:`vet_batches` passes every batch through it before pylearn2's plain
``pickle`` reads them (``--loader pylearn2``).
"""
import os
import pickle

import numpy as np

from .files import (DatasetError, check_label_values, data_root, describe, missing_error,
                    open_data_file, present)
from .registry import DATASETS, NUM_CLASSES

CIFAR10_DIR = os.path.join(DATASETS['cifar10'].subdir, 'cifar-10-batches-py')
CIFAR10_TRAIN_BATCHES = tuple('data_batch_%d' % i for i in range(1, 6))
CIFAR10_TEST_BATCH = 'test_batch'
_CIFAR_PIXELS = 3 * 32 * 32


def _batch_field(batch, key, path):
    """Look up ``key`` in a batch pickled by Python 2 (bytes keys) or 3 (str keys)."""
    for candidate in (key.encode('ascii'), key):
        if candidate in batch:
            return batch[candidate]
    raise DatasetError('%s: CIFAR-10 batch has no %r entry' % (path, key))


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a callable or class that CIFAR-10 batches never contain."""


def _latin1_encode(text, encoding='utf-8'):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError('unexpected arguments to _codecs.encode')
    return text.encode('latin-1')


def _empty_bytes(*args):
    """``bytes()`` as Python 3 pickles ``b''`` at protocol 2; nothing else."""
    if args:
        raise pickle.UnpicklingError('unexpected arguments to bytes')
    return b''


def _batch_globals():
    """(module, name) -> object: everything a CIFAR-10 batch pickle may refer to."""
    from numpy.core import multiarray

    return {('numpy.core.multiarray', '_reconstruct'): multiarray._reconstruct,
            ('numpy._core.multiarray', '_reconstruct'): multiarray._reconstruct,
            ('numpy', 'ndarray'): np.ndarray,
            ('numpy', 'dtype'): np.dtype,
            ('_codecs', 'encode'): _latin1_encode,
            ('__builtin__', 'bytes'): _empty_bytes,
            ('builtins', 'bytes'): _empty_bytes}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only what CIFAR-10 batches are made of.

    Plain containers and scalars (dict, list, tuple, bytes/str, int, float, bool,
    None) need no lookup. The one thing a batch needs beyond them is numpy's
    array reconstruction (``numpy.core.multiarray._reconstruct``, ``ndarray``,
    ``dtype``), plus the ``_codecs.encode`` / ``bytes`` calls by which Python 3
    writes bytes at protocol 2. Any other global is refused before it is looked
    up, so no callable named in the file is ever imported or called.
    """

    def find_class(self, module, name):
        try:
            return _batch_globals()[(module, name)]
        except KeyError:
            raise _RefusedGlobal('%s.%s' % (module, name)) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('persistent IDs are not allowed')


def unpickle_batch(path):
    """The object pickled in ``path``, through :class:`_BatchUnpickler`."""
    try:
        with open_data_file(path) as stream:
            # The batches were pickled by Python 2: its str values decode only as bytes.
            return _BatchUnpickler(stream, encoding='bytes').load()
    except _RefusedGlobal as err:
        raise DatasetError('%s is not a CIFAR-10 batch: it refers to %s, which CIFAR-10 '
                           'batches never contain (refused; nothing in it was run)'
                           % (path, err)) from None
    except DatasetError:
        raise
    except Exception as err:  # garbage can make the unpickler raise almost anything
        raise DatasetError('%s is not a readable CIFAR-10 batch (%s)' % (path, describe(err))) from None


def _read_cifar_batch(path):
    """Read one CIFAR-10 batch as uint8 (N, 3, 32, 32) images and int64 labels."""
    batch = unpickle_batch(path)
    if not isinstance(batch, dict):
        raise DatasetError('%s: expected a pickled dict, found %s' % (path, type(batch).__name__))
    data = np.asarray(_batch_field(batch, 'data', path))
    labels = np.asarray(_batch_field(batch, 'labels', path))
    check_label_values(labels, path, 0, NUM_CLASSES - 1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        raise DatasetError('%s: expected uint8 data shaped (N, 3072), found %s %s'
                           % (path, data.dtype, data.shape))
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError('%s holds %d labels for %d images' % (path, labels.size, len(data)))
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError('%s: labels outside 0..9' % path)
    # Each row is the red, green and blue 32x32 planes one after another.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_cifar_batches(directory, batch_names, root):
    parts = []
    for batch_name in batch_names:
        path = os.path.join(directory, batch_name)
        if not present(path):
            raise missing_error('CIFAR-10', 'cifar10', root, path)
        parts.append(_read_cifar_batch(path))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10(data_path=None):
    """Load CIFAR-10 from ``<root>/cifar10/cifar-10-batches-py/``.

    Parameters
    ----------
    data_path : str or None
        The data root (default ``$PYLEARN2_DATA_PATH``, else ``~/pylearn2_data``).

    Returns
    -------
    dict
        ``{'train': (X, y), 'test': (X, y)}`` with X uint8 (N, 3, 32, 32) RGB and y int64:
        the five training batches in order (50000 images) and the test batch (10000).
    """
    root = data_root(data_path)
    directory = os.path.join(root, CIFAR10_DIR)
    return {'train': _read_cifar_batches(directory, CIFAR10_TRAIN_BATCHES, root),
            'test': _read_cifar_batches(directory, (CIFAR10_TEST_BATCH,), root)}


def vet_batches(data_path=None):
    """Read every CIFAR-10 batch through the restricted unpickler, keeping nothing.

    pylearn2 unpickles the six batches with plain ``pickle``, which runs whatever a
    planted batch names; a batch that the restricted unpickler refuses is reported
    (one line) before pylearn2 sees it.
    """
    directory = os.path.join(data_root(data_path), CIFAR10_DIR)
    for batch_name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,):
        path = os.path.join(directory, batch_name)
        if present(path):
            unpickle_batch(path)
