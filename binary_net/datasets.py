"""Image-classification datasets in pylearn2's on-disk layout, without pylearn2.

The original BinaryNet / XNOR-Net training scripts read their data through pylearn2,
which no longer installs. This module reads the same files from the same places, and
can download them, using only numpy, scipy, tqdm and the standard library. It must
never import Theano or Lasagne, so that data can be prepared on machines without them.

Data root
---------
Every loader takes ``data_path``; when it is ``None`` the root is the environment
variable ``PYLEARN2_DATA_PATH`` (as for pylearn2), and when that is unset it is
``~/pylearn2_data`` (:data:`DEFAULT_DATA_ROOT`). Under the root::

    mnist/            train-images-idx3-ubyte  train-labels-idx1-ubyte
                      t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte
                      (each raw or gzipped as NAME.gz; raw wins if both exist)
    fashion-mnist/    the same four IDX names (Debian's dataset-fashion-mnist
                      package installs them in /usr/share/datasets/fashion-mnist/,
                      so PYLEARN2_DATA_PATH=/usr/share/datasets works for it)
    cifar10/cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch
                      (the official Python pickles, read with a restricted
                      unpickler that builds only dicts, lists, strings, numbers
                      and numpy arrays: nothing in a batch can run code)
    SVHN/format2/     train_32x32.mat  test_32x32.mat  [extra_32x32.mat]

Loaders (:func:`load_mnist`, :func:`load_fashion_mnist`, :func:`load_cifar10`,
:func:`load_svhn`, or :func:`load` by name) return uint8 images shaped NCHW and int64
labels. :func:`prepare` adds the preprocessing of the original scripts and splits off
a validation set: the *last* ``valid_size`` images of the training file, by default
10000 for MNIST and Fashion-MNIST and 5000 for CIFAR-10 and SVHN
(:data:`DEFAULT_VALID_SIZE`).

Downloading
-----------
``python -m binary_net.datasets download NAME [--data-path DIR] [--base-url URL]``
fetches the official files into the layout above (``--extra`` adds SVHN's extra
set). Downloads go to ``FILE.part``, resume with an HTTP Range request, are checked
against known MD5 sums and only then renamed into place. yann.lecun.com often refuses
downloads; ``--base-url https://ossci-datasets.s3.amazonaws.com/mnist/`` is a mirror
of the same MNIST files. For MNIST and Fashion-MNIST the MD5 is that of the
*uncompressed* IDX data, because mirrors re-gzip the files with different headers.
"""
import argparse
import collections
import gzip
import hashlib
import http.client
import math
import os
import pickle
import shlex
import shutil
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

import numpy as np

from . import safeopen

__all__ = [
    'DatasetError', 'DownloadInterrupted', 'Splits', 'ZCA', 'DATASET_NAMES', 'DEFAULT_DATA_ROOT',
    'DEFAULT_VALID_SIZE', 'data_root', 'read_idx', 'load', 'load_mnist',
    'load_fashion_mnist', 'load_cifar10', 'load_svhn', 'to_unit_range',
    'hinge_targets', 'global_contrast_normalize', 'prepare', 'download', 'main',
]

DEFAULT_DATA_ROOT = os.path.join('~', 'pylearn2_data')
DATASET_NAMES = ('mnist', 'fashion-mnist', 'cifar10', 'svhn')
DEFAULT_VALID_SIZE = {'mnist': 10000, 'fashion-mnist': 10000, 'cifar10': 5000, 'svhn': 5000}
NUM_CLASSES = 10


class DatasetError(Exception):
    """Data that is missing, corrupt, or asked for in a way that cannot be served."""


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a download; the message names the ``.part`` file kept for resuming."""


Splits = collections.namedtuple('Splits', 'X_train y_train X_valid y_valid X_test y_test')


def data_root(data_path=None):
    """Return the directory that holds the datasets.

    Parameters
    ----------
    data_path : str or None
        Explicit root; wins over everything else.

    Returns
    -------
    str
        ``data_path`` if given, else ``$PYLEARN2_DATA_PATH``, else ``~/pylearn2_data``,
        with ``~`` expanded.
    """
    if data_path is None:
        data_path = os.environ.get('PYLEARN2_DATA_PATH') or DEFAULT_DATA_ROOT
    return os.path.expanduser(str(data_path))


def _download_command(name, root, extra=False):
    """The exact shell command that fetches dataset ``name`` into ``root``."""
    command = 'python -m binary_net.datasets download %s --data-path %s' % (
        name, shlex.quote(os.path.abspath(root)))
    return command + (' --extra' if extra else '')


def _describe(err):
    """``Type: message`` of an exception, squeezed onto one line."""
    return '%s: %s' % (type(err).__name__, ' '.join(str(err).split()))


def _present(path):
    """Whether a data file exists; a directory, FIFO or device there is an error."""
    try:
        return safeopen.check_regular(path)
    except safeopen.NotRegularFileError as err:
        raise DatasetError(str(err)) from None


def _open_data_file(path):
    """Open a data file for reading: regular files only, never blocking on a FIFO."""
    try:
        return safeopen.open_regular(path)
    except OSError as err:
        raise DatasetError('cannot read %s: %s' % (path, err.strerror or err)) from None


def _missing(title, name, root, missing_path, extra=False):
    """The error for absent data: names the path and the command that fetches it."""
    return DatasetError('%s not found: %s is missing; run: %s'
                        % (title, missing_path, _download_command(name, root, extra)))


# ---------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------

_IDX_UNSIGNED_BYTE = 0x08
_IDX_SPLITS = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
_IDX_DATASETS = {'mnist': ('MNIST', 'mnist'), 'fashion-mnist': ('Fashion-MNIST', 'fashion-mnist')}


def _read_file_bytes(path):
    """Read a whole file, transparently un-gzipping ``*.gz``."""
    with _open_data_file(path) as raw:
        if not path.endswith('.gz'):
            return raw.read()
        return _gunzip(raw, path)


def _gunzip(raw, path):
    try:
        with gzip.GzipFile(fileobj=raw, mode='rb') as stream:
            return stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        # EOFError is how gzip reports a truncated stream.
        raise DatasetError('%s is not a valid gzip file (%s)' % (path, _describe(err))) from None


def read_idx(path):
    """Read an IDX file of unsigned bytes, as used by MNIST and Fashion-MNIST.

    Parameters
    ----------
    path : str
        The file; a name ending in ``.gz`` is decompressed on the fly.

    Returns
    -------
    numpy.ndarray
        uint8 array shaped as the header says.

    Raises
    ------
    DatasetError
        On a bad magic number, an element type other than unsigned byte, a truncated
        file or trailing data.
    """
    raw = _read_file_bytes(path)
    if len(raw) < 4 or raw[:2] != b'\x00\x00':
        raise DatasetError('%s is not an IDX file (bad magic number %r)' % (path, raw[:4]))
    element_type, ndim = raw[2], raw[3]
    if element_type != _IDX_UNSIGNED_BYTE:
        raise DatasetError('%s holds IDX element type 0x%02x; only unsigned bytes (0x08) '
                           'are supported' % (path, element_type))
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError('%s is truncated inside its IDX header' % path)
    shape = struct.unpack('>%dI' % ndim, raw[4:header_size])
    # Python integers: a header such as 65536 x 65536 x 65536 x 65536 overflows int64.
    expected, found = math.prod(shape), len(raw) - header_size
    if found != expected:
        problem = 'is truncated' if found < expected else 'has trailing data'
        raise DatasetError('%s %s: header %s promises %d bytes of data, file holds %d'
                           % (path, problem, shape, expected, found))
    # Copy so that callers get an ordinary writable array, not a view of bytes.
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header_size).reshape(shape).copy()


def _find_idx_file(directory, base_name):
    """The raw file if present (pylearn2's own layout), else the gzipped one, else None."""
    for candidate in (base_name, base_name + '.gz'):
        path = os.path.join(directory, candidate)
        if _present(path):
            return path
    return None


def _load_idx_split(directory, image_name, label_name, title, name, root):
    """Read one split's image and label files and check they belong together."""
    paths = []
    for base_name in (image_name, label_name):
        path = _find_idx_file(directory, base_name)
        if path is None:
            raise _missing(title, name, root, os.path.join(directory, base_name) + '(.gz)')
        paths.append(path)
    image_path, label_path = paths
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError('%s: expected images shaped (N, 28, 28), found %s' % (image_path, images.shape))
    if labels.ndim != 1:
        raise DatasetError('%s: expected a 1-d label vector, found shape %s' % (label_path, labels.shape))
    if len(labels) != len(images):
        raise DatasetError('%s holds %d labels but %s holds %d images'
                           % (label_path, len(labels), image_path, len(images)))
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DatasetError('%s: label %d is out of range 0..9' % (label_path, labels.max()))
    return images[:, np.newaxis], labels.astype(np.int64)


def _load_idx_dataset(name, data_path):
    title, subdir = _IDX_DATASETS[name]
    root = data_root(data_path)
    directory = os.path.join(root, subdir)
    return {split: _load_idx_split(directory, image_name, label_name, title, name, root)
            for split, (image_name, label_name) in _IDX_SPLITS.items()}


def load_mnist(data_path=None):
    """Load MNIST from ``<root>/mnist/``.

    Parameters
    ----------
    data_path : str or None
        Data root; see :func:`data_root`.

    Returns
    -------
    dict
        ``{'train': (X, y), 'test': (X, y)}`` with X uint8 (N, 1, 28, 28) and y int64 (N,):
        60000 training and 10000 test images for the real data.
    """
    return _load_idx_dataset('mnist', data_path)


def load_fashion_mnist(data_path=None):
    """Load Fashion-MNIST from ``<root>/fashion-mnist/``.

    Parameters
    ----------
    data_path : str or None
        Data root; see :func:`data_root`.

    Returns
    -------
    dict
        ``{'train': (X, y), 'test': (X, y)}`` with X uint8 (N, 1, 28, 28) and y int64 (N,).
    """
    return _load_idx_dataset('fashion-mnist', data_path)


# ---------------------------------------------------------------------------
# CIFAR-10 (Python 2 pickles)
# ---------------------------------------------------------------------------

CIFAR10_DIR = os.path.join('cifar10', 'cifar-10-batches-py')
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


def _unpickle_batch(path):
    """The object pickled in ``path``, through :class:`_BatchUnpickler`."""
    try:
        with _open_data_file(path) as stream:
            # The batches were pickled by Python 2: its str values decode only as bytes.
            return _BatchUnpickler(stream, encoding='bytes').load()
    except _RefusedGlobal as err:
        raise DatasetError('%s is not a CIFAR-10 batch: it refers to %s, which CIFAR-10 '
                           'batches never contain (refused; nothing in it was run)'
                           % (path, err)) from None
    except DatasetError:
        raise
    except Exception as err:  # garbage can make the unpickler raise almost anything
        raise DatasetError('%s is not a readable CIFAR-10 batch (%s)' % (path, _describe(err))) from None


def _check_label_values(labels, path, first, last):
    """Refuse labels that are not integers (strings, fractions, NaN) with one line."""
    if labels.size == 0:
        return
    if labels.dtype.kind == 'f':
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DatasetError('%s: labels must be integers %d..%d, found non-integer values'
                               % (path, first, last))
    elif labels.dtype.kind not in 'iu':
        raise DatasetError('%s: labels must be integers %d..%d, found %s values'
                           % (path, first, last, labels.dtype))


def _read_cifar_batch(path):
    """Read one CIFAR-10 batch as uint8 (N, 3, 32, 32) images and int64 labels."""
    batch = _unpickle_batch(path)
    if not isinstance(batch, dict):
        raise DatasetError('%s: expected a pickled dict, found %s' % (path, type(batch).__name__))
    data = np.asarray(_batch_field(batch, 'data', path))
    labels = np.asarray(_batch_field(batch, 'labels', path))
    _check_label_values(labels, path, 0, NUM_CLASSES - 1)
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
        if not _present(path):
            raise _missing('CIFAR-10', 'cifar10', root, path)
        parts.append(_read_cifar_batch(path))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10(data_path=None):
    """Load CIFAR-10 from ``<root>/cifar10/cifar-10-batches-py/``.

    Parameters
    ----------
    data_path : str or None
        Data root; see :func:`data_root`.

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


# ---------------------------------------------------------------------------
# SVHN (format 2, MATLAB files)
# ---------------------------------------------------------------------------

SVHN_DIR = os.path.join('SVHN', 'format2')
_SVHN_ZERO_LABEL = 10  # SVHN labels the digit 0 as class 10


def _read_svhn_mat(path):
    """Read one SVHN format-2 file as uint8 (N, 3, 32, 32) images and int64 labels."""
    from scipy.io import loadmat  # scipy is slow to import; only SVHN needs it

    try:
        contents = loadmat(path)
    except Exception as err:  # scipy raises many different types for a damaged file
        raise DatasetError('%s is not a readable MATLAB file (%s)' % (path, _describe(err))) from None
    if 'X' not in contents or 'y' not in contents:
        raise DatasetError('%s: expected variables X and y in the SVHN file' % path)
    images, labels = contents['X'], np.asarray(contents['y'])
    _check_label_values(labels, path, 1, 10)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DatasetError('%s: expected uint8 X shaped (32, 32, 3, N), found %s %s'
                           % (path, images.dtype, images.shape))
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != images.shape[3]:
        raise DatasetError('%s holds %d labels for %d images' % (path, len(labels), images.shape[3]))
    labels[labels == _SVHN_ZERO_LABEL] = 0
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError('%s: labels outside 1..10' % path)
    # MATLAB stores (row, column, channel, image); reorder to (image, channel, row, column).
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels


def _read_svhn_file(directory, file_name, root, extra=False):
    path = os.path.join(directory, file_name)
    if not _present(path):
        raise _missing('SVHN', 'svhn', root, path, extra=extra)
    return _read_svhn_mat(path)


def load_svhn(data_path=None, extra=False):
    """Load SVHN format 2 from ``<root>/SVHN/format2/``.

    Parameters
    ----------
    data_path : str or None
        Data root; see :func:`data_root`.
    extra : bool
        Append the 531131 images of ``extra_32x32.mat`` to the training set, after the
        73257 of ``train_32x32.mat`` (as BinaryNet's SVHN experiment did).

    Returns
    -------
    dict
        ``{'train': (X, y), 'test': (X, y)}`` with X uint8 (N, 3, 32, 32) RGB and y int64
        in 0..9 (SVHN's label 10 becomes 0).
    """
    root = data_root(data_path)
    directory = os.path.join(root, SVHN_DIR)
    X_train, y_train = _read_svhn_file(directory, 'train_32x32.mat', root)
    if extra:
        X_extra, y_extra = _read_svhn_file(directory, 'extra_32x32.mat', root, extra=True)
        X_train, y_train = np.concatenate([X_train, X_extra]), np.concatenate([y_train, y_extra])
    return {'train': (X_train, y_train),
            'test': _read_svhn_file(directory, 'test_32x32.mat', root)}


_LOADERS = {'mnist': load_mnist, 'fashion-mnist': load_fashion_mnist,
            'cifar10': load_cifar10, 'svhn': load_svhn}


def _check_name(name):
    if name not in _LOADERS:
        raise DatasetError('unknown dataset %r; choose one of %s' % (name, ', '.join(DATASET_NAMES)))


def load(name, data_path=None, **kwargs):
    """Load a dataset by name.

    Parameters
    ----------
    name : {'mnist', 'fashion-mnist', 'cifar10', 'svhn'}
        Which dataset.
    data_path : str or None
        Data root; see :func:`data_root`.
    **kwargs
        Passed to the loader (``extra=True`` for SVHN); ``loader='pylearn2'`` reads
        through ``pylearn2.datasets`` instead (:func:`load_pylearn2`).

    Returns
    -------
    dict
        ``{'train': (X, y), 'test': (X, y)}``: uint8 NCHW images and int64 labels.
    """
    _check_name(name)
    if kwargs.pop('loader', 'binary_net') == 'pylearn2':
        return load_pylearn2(name, data_path, **kwargs)
    return _LOADERS[name](data_path=data_path, **kwargs)


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------

def _flatten(X):
    # An explicit width, because reshape(0, -1) is ambiguous for an empty batch.
    return X.reshape(len(X), int(np.prod(X.shape[1:], dtype=np.int64)))


def _row_chunks(n_rows, chunk_size=4096):
    """Slices over the rows, so float64 temporaries of a whole dataset never coexist."""
    return [slice(start, start + chunk_size) for start in range(0, n_rows, chunk_size)]


def to_unit_range(X):
    """Scale 8-bit pixels to [-1, 1], as the BinaryNet scripts do.

    Parameters
    ----------
    X : array_like
        Pixels in 0..255.

    Returns
    -------
    numpy.ndarray
        float32 ``X / 255 * 2 - 1``, same shape.
    """
    return np.asarray(X, dtype=np.float32) / np.float32(255.) * np.float32(2.) - np.float32(1.)


def to_unit_range_original(X, name):
    """Scale 8-bit pixels to [-1, 1] exactly as the original theano-xnor-net did.

    Its loader (``cnn_utils.load_data``) read pylearn2's float32 datasets: MNIST as
    ``X / 255`` then ``* 2.0 - 1.0`` (the same float32 values as
    :func:`to_unit_range`), CIFAR-10 and SVHN as ``X * (2.0 / 255) - 1.0``, which is
    1 ulp away from ``X / 255 * 2 - 1`` for many pixel values.

    Parameters
    ----------
    X : array_like
        Pixels in 0..255.
    name : str
        The dataset.

    Returns
    -------
    float32 numpy.ndarray, same shape.
    """
    if name in ('mnist', 'fashion-mnist'):
        return to_unit_range(X)
    if name not in ('cifar10', 'svhn'):
        raise DatasetError('the original scaled pixels of mnist, cifar10 and svhn; not of %r'
                           % (name,))
    return np.asarray(X, dtype=np.float32) * np.float32(2.0 / 255) - np.float32(1.0)


PIXEL_SCALINGS = ('default', 'original')


def scale_pixels(X, scaling='default', name=None):
    """Scale 8-bit pixels to [-1, 1] as a network was trained.

    Parameters
    ----------
    X : array_like
    scaling : {'default', 'original'}
        :func:`to_unit_range`, or :func:`to_unit_range_original` (files of the
        original theano-xnor-net).
    name : str or None
        The dataset (needed for 'original').
    """
    if scaling == 'original':
        return to_unit_range_original(X, name)
    if scaling not in (None, 'default'):
        raise DatasetError('unknown pixel scaling %r; choose one of %s'
                           % (scaling, ', '.join(PIXEL_SCALINGS)))
    return to_unit_range(X)


def relabel(y, labels='default'):
    """Labels in a network's class numbering.

    Parameters
    ----------
    y : int array
        Labels as this module loads them (SVHN: the digit, 0..9).
    labels : {'default', 'svhn_mat_minus_one'}
        'svhn_mat_minus_one' is the original's (pylearn2's) SVHN numbering: the .mat
        label minus 1, so digits 1..9 are classes 0..8 and digit 0 is class 9.
    """
    y = np.asarray(y)
    if labels == 'svhn_mat_minus_one':
        return (y - 1) % NUM_CLASSES
    if labels not in (None, 'default'):
        raise DatasetError("unknown label numbering %r; choose 'default' or "
                           "'svhn_mat_minus_one'" % (labels,))
    return y


def hinge_targets(y, num_classes=NUM_CLASSES):
    """One-hot targets in {-1, +1} for the squared hinge loss.

    Parameters
    ----------
    y : array_like of int, shape (N,)
        Class labels in ``0 .. num_classes - 1``.
    num_classes : int
        Number of columns.

    Returns
    -------
    numpy.ndarray
        float32 (N, num_classes): +1 in column ``y[i]`` of row i, -1 elsewhere.
    """
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError('labels must be a 1-d integer array, got %s %s' % (y.dtype, y.shape))
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError('labels must lie in 0..%d' % (num_classes - 1))
    targets = np.full((len(y), num_classes), -1., dtype=np.float32)
    targets[np.arange(len(y)), y.astype(np.int64)] = 1.
    return targets


def global_contrast_normalize(X, scale=55., eps=1e-8):
    """Global contrast normalisation of each image, as pylearn2's GCN with ``use_std``.

    Each image is centred on its own mean, divided by ``sqrt(eps + mean of its squared
    centred values)`` (its standard deviation) and multiplied by ``scale``.

    Parameters
    ----------
    X : array_like, shape (N, ...)
        Images; all axes after the first are pooled.
    scale : float
        Standard deviation of every output image.
    eps : float
        Keeps constant images finite (they come out as zeros).

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``X``.
    """
    X = np.asarray(X)
    flat = _flatten(X)
    result = np.empty(flat.shape, dtype=np.float32)
    for rows in _row_chunks(len(flat)):
        block = flat[rows].astype(np.float64)  # float64: sums over 3072 pixels lose digits in float32
        centered = block - block.mean(axis=1, keepdims=True)
        norms = np.sqrt(eps + np.mean(centered ** 2, axis=1, keepdims=True))
        result[rows] = scale * centered / norms
    return result.reshape(X.shape)


class ZCA:
    """ZCA whitening, regularised like pylearn2's ``ZCA(filter_bias=0.1)``.

    ``fit`` learns the mean and ``W = V diag(1 / sqrt(lambda + filter_bias)) V^T`` from
    the eigen-decomposition ``C = V diag(lambda) V^T`` of the training covariance (with
    divisor N); ``apply`` maps ``x -> (x - mean) W``. Fit it on training data only.

    Parameters
    ----------
    filter_bias : float
        Added to every eigenvalue; damps the noisiest directions and keeps the
        transform finite when the covariance is singular.
    """

    def __init__(self, filter_bias=0.1):
        if filter_bias < 0:
            raise ValueError('filter_bias must be >= 0, got %r' % filter_bias)
        self.filter_bias = filter_bias
        self.mean_ = None
        self.whitening_ = None

    def fit(self, X_train):
        """Learn the whitening transform.

        Parameters
        ----------
        X_train : array_like, shape (N, ...)
            Training images; all axes after the first are flattened.

        Returns
        -------
        ZCA
            ``self``.
        """
        flat = _flatten(np.asarray(X_train))
        if len(flat) == 0:
            raise ValueError('cannot fit ZCA on an empty set')
        self.mean_ = flat.mean(axis=0, dtype=np.float64)
        covariance = np.zeros((flat.shape[1], flat.shape[1]))
        for rows in _row_chunks(len(flat)):
            centered = flat[rows] - self.mean_
            covariance += centered.T @ centered
        covariance /= len(flat)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance + self.filter_bias * np.eye(len(covariance)))
        # eigh can return tiny negative values for a singular covariance with no bias.
        eigenvalues = np.maximum(eigenvalues, np.finfo(np.float64).tiny)
        self.whitening_ = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
        return self

    def apply(self, X):
        """Whiten images with the fitted transform.

        Parameters
        ----------
        X : array_like, shape (N, ...)
            Images with as many values per image as the training images had.

        Returns
        -------
        numpy.ndarray
            float32, same shape as ``X``.
        """
        if self.whitening_ is None:
            raise ValueError('ZCA.apply called before fit')
        X = np.asarray(X)
        flat = _flatten(X)
        if flat.shape[1] != len(self.mean_):
            raise ValueError('ZCA was fitted on %d values per image, got %d' % (len(self.mean_), flat.shape[1]))
        result = np.empty(flat.shape, dtype=np.float32)
        for rows in _row_chunks(len(flat)):
            result[rows] = (flat[rows] - self.mean_) @ self.whitening_
        return result.reshape(X.shape)


def _check_count(value, what, low, high):
    """Validate a split size: an int in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DatasetError('%s must be an integer, got %r' % (what, value))
    if not low <= value <= high:
        raise DatasetError('%s=%d is out of range: it must lie in %d..%d' % (what, value, low, high))
    return int(value)


def prepare(name, data_path=None, train_size=None, valid_size=None, gcn=False, zca=False, **load_kwargs):
    """Load a dataset, split off validation data and preprocess it for training.

    Parameters
    ----------
    name : {'mnist', 'fashion-mnist', 'cifar10', 'svhn'}
        Which dataset.
    data_path : str or None
        Data root; see :func:`data_root`.
    train_size : int or None
        Keep only the first ``train_size`` of the images left after the validation
        split; ``None`` keeps them all.
    valid_size : int or None
        Number of validation images, taken from the *end* of the training file;
        ``None`` uses :data:`DEFAULT_VALID_SIZE` (mnist and fashion-mnist 10000,
        cifar10 and svhn 5000); 0 gives an empty validation set.
    gcn : bool
        Apply :func:`global_contrast_normalize` (scale 55) to every image instead of
        scaling pixels to [-1, 1].
    zca : bool
        Then whiten with :class:`ZCA` fitted on the training split only.
    **load_kwargs
        Passed to the loader (``extra=True`` for SVHN).

    Returns
    -------
    Splits
        ``(X_train, y_train, X_valid, y_valid, X_test, y_test)``: float32 NCHW images,
        int64 labels.

    Raises
    ------
    DatasetError
        Missing or corrupt data, or a size that does not fit the training file.
    """
    _check_name(name)
    data = load(name, data_path, **load_kwargs)
    X_file, y_file = data['train']
    n_file = len(X_file)
    valid_size = DEFAULT_VALID_SIZE[name] if valid_size is None else valid_size
    valid_size = _check_count(valid_size, 'valid_size', 0, n_file - 1)
    n_rest = n_file - valid_size
    train_size = n_rest if train_size is None else _check_count(train_size, 'train_size', 1, n_rest)

    X_train, y_train = X_file[:train_size], y_file[:train_size]
    X_valid, y_valid = X_file[n_rest:], y_file[n_rest:]
    X_test, y_test = data['test']

    transform = global_contrast_normalize if gcn else to_unit_range
    X_train, X_valid, X_test = (transform(X) for X in (X_train, X_valid, X_test))
    if zca:
        whitener = ZCA().fit(X_train)
        X_train, X_valid, X_test = (whitener.apply(X) for X in (X_train, X_valid, X_test))
    return Splits(X_train, y_train, X_valid, y_valid, X_test, y_test)


# ---------------------------------------------------------------------------
# The original theano-xnor-net's data: its split, pixel scaling and SVHN labels
# ---------------------------------------------------------------------------

SPLITS = ('default', 'original')
# MNIST and CIFAR-10: the original trained on [0:40000] and validated on [40000:50000]
# of the training file (cnn_utils.load_data: 80% / 20% of 50000); MNIST's last
# 10000 training images were not used.
ORIGINAL_TRAIN_STOP, ORIGINAL_VALID_STOP = 40000, 50000
# SVHN (pylearn2's SVHN 'splitted_train' / 'valid'): per class 400 validation images
# from train_32x32.mat and 200 from extra_32x32.mat, drawn with RandomState(322).
SVHN_VALID_PER_CLASS = (400, 200)
SVHN_SPLIT_SEED = 322


def svhn_original_split(y_train, y_extra, per_class=SVHN_VALID_PER_CLASS,
                        seed=SVHN_SPLIT_SEED):
    """Rows of pylearn2's SVHN ``splitted_train`` and ``valid`` sets (the original's).

    Follows ``pylearn2.datasets.svhn.SVHN.make_data``: one ``RandomState(seed)``
    shuffles the row indices of each class (.mat labels 1..10 in order) of
    ``train`` and takes the first ``per_class[0]``, then of ``extra`` the first
    ``per_class[1]``; the rest of train, then the rest of extra (each in file order)
    form the training set, whose rows the same generator then shuffles. For SVHN's
    real files that is 598,388 training and 6,000 validation images.

    The validation rows here come in file order before their shuffle (pylearn2,
    which builds them with a fresh generator, took them in Python 2's set order,
    which is not reproduced): the same 6,000 images, in another order, which changes
    no validation figure.

    Parameters
    ----------
    y_train, y_extra : int arrays
        Labels as :func:`load_svhn` gives them (the digit, 0..9).
    per_class : pair of int
    seed : int

    Returns
    -------
    train_rows, valid_rows : int64 arrays
        Rows of ``concatenate([train, extra])``.
    """
    def draws(rng, y, count, offset):
        mat = np.where(np.asarray(y) == 0, _SVHN_ZERO_LABEL, np.asarray(y))
        chosen = []
        for label in range(1, 11):
            index = np.nonzero(mat == label)[0]
            if len(index) < count:
                raise DatasetError('SVHN original split: %d images of the digit %d, '
                                   'fewer than the %d it takes for validation'
                                   % (len(index), label % 10, count))
            rng.shuffle(index)
            chosen.append(index[:count])
        valid = np.concatenate(chosen)
        keep = np.ones(len(mat), dtype=bool)
        keep[valid] = False
        return np.nonzero(keep)[0] + offset, np.sort(valid) + offset

    def rows(which):
        rng = np.random.RandomState(seed)  # pylearn2 makes each set with a fresh one
        train_a, valid_a = draws(rng, y_train, per_class[0], 0)
        train_b, valid_b = draws(rng, y_extra, per_class[1], len(y_train))
        chosen = np.concatenate([train_a, train_b] if which == 'train' else [valid_a, valid_b])
        order = np.arange(len(chosen))
        rng.shuffle(order)
        return chosen[order].astype(np.int64)

    return rows('train'), rows('valid')


def prepare_original(name, data_path=None, train_size=None, loader='binary_net'):
    """The original's data: its split, its pixel scaling and (SVHN) its class numbering.

    * MNIST and CIFAR-10: training images [0:40000], validation [40000:50000] of
      the training file;
    * SVHN: train + extra minus a class-balanced validation set of 6,000
      (:func:`svhn_original_split`), classes numbered as the .mat label minus 1
      (digit 0 is class 9, :func:`relabel`); needs ``extra_32x32.mat``;
    * pixels scaled by :func:`to_unit_range_original`.

    Parameters
    ----------
    name : {'mnist', 'cifar10', 'svhn'}
    data_path : str or None
    train_size : int or None
        Keep only the first ``train_size`` training images.
    loader : {'binary_net', 'pylearn2'}
        'pylearn2' reads through ``pylearn2.datasets``, for SVHN its own
        ``splitted_train`` and ``valid`` sets.

    Returns
    -------
    Splits
    """
    if name not in ('mnist', 'cifar10', 'svhn'):
        raise DatasetError('the original split exists for mnist, cifar10 and svhn, not %r'
                           % (name,))
    if name == 'svhn' and loader == 'pylearn2':
        sets = [pylearn2_set(name, which, data_path)
                for which in ('splitted_train', 'valid', 'test')]
        X_all = np.concatenate([sets[0][0], sets[1][0]])
        y_all = np.concatenate([sets[0][1], sets[1][1]]) + 1   # back to .mat labels ...
        y_all %= NUM_CLASSES                                   # ... as digits
        train_rows = np.arange(len(sets[0][0]))
        valid_rows = np.arange(len(sets[0][0]), len(X_all))
        X_test, y_test = sets[2][0], (sets[2][1] + 1) % NUM_CLASSES
        labels = 'svhn_mat_minus_one'
    elif name == 'svhn':
        root = data_root(data_path)
        directory = os.path.join(root, SVHN_DIR)
        X_a, y_a = _read_svhn_file(directory, 'train_32x32.mat', root)
        X_b, y_b = _read_svhn_file(directory, 'extra_32x32.mat', root, extra=True)
        train_rows, valid_rows = svhn_original_split(y_a, y_b, SVHN_VALID_PER_CLASS)
        X_all, y_all = np.concatenate([X_a, X_b]), np.concatenate([y_a, y_b])
        del X_a, X_b
        X_test, y_test = _read_svhn_file(directory, 'test_32x32.mat', root)
        labels = 'svhn_mat_minus_one'
    else:
        data = load(name, data_path, loader=loader)
        X_all, y_all = data['train']
        X_test, y_test = data['test']
        if len(X_all) < ORIGINAL_VALID_STOP:
            raise DatasetError('the original split needs %d training images; %s has %d'
                               % (ORIGINAL_VALID_STOP, name, len(X_all)))
        train_rows = np.arange(ORIGINAL_TRAIN_STOP)
        valid_rows = np.arange(ORIGINAL_TRAIN_STOP, ORIGINAL_VALID_STOP)
        labels = 'default'
    if train_size is not None:
        train_rows = train_rows[:_check_count(train_size, 'train_size', 1, len(train_rows))]
    parts = []
    for X, y in ((X_all[train_rows], y_all[train_rows]), (X_all[valid_rows], y_all[valid_rows]),
                 (X_test, y_test)):
        parts += [to_unit_range_original(X, name), relabel(y, labels)]
    return Splits(*parts)


# ---------------------------------------------------------------------------
# Reading through pylearn2 (--loader pylearn2)
# ---------------------------------------------------------------------------

LOADERS = ('binary_net', 'pylearn2')
_PYLEARN2_CLASSES = {'mnist': ('pylearn2.datasets.mnist', 'MNIST'),
                     'cifar10': ('pylearn2.datasets.cifar10', 'CIFAR10'),
                     'svhn': ('pylearn2.datasets.svhn', 'SVHN')}


def _vet_cifar_batches(data_path):
    """Read every CIFAR-10 batch through the restricted unpickler first.

    pylearn2 unpickles the six batches with plain ``pickle``, which runs whatever a
    planted batch names; a batch that the restricted unpickler refuses is reported
    (one line) before pylearn2 sees it.
    """
    directory = os.path.join(data_root(data_path), CIFAR10_DIR)
    for batch_name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,):
        path = os.path.join(directory, batch_name)
        if _present(path):
            _unpickle_batch(path)


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
        _vet_cifar_batches(data_path)
    module_name, class_name = _PYLEARN2_CLASSES[name]
    previous = os.environ.get('PYLEARN2_DATA_PATH')
    os.environ['PYLEARN2_DATA_PATH'] = data_root(data_path)
    try:
        try:
            from . import compat
            compat.patch_pylearn2()
            dataset_class = getattr(importlib.import_module(module_name), class_name)
        except ImportError as err:
            raise DatasetError('--loader pylearn2 needs pylearn2 (and for SVHN PyTables): %s'
                               % _describe(err)) from None
        try:
            data = dataset_class(which_set=which_set)
        except (OSError, ValueError, KeyError) as err:
            raise DatasetError('pylearn2 could not read %s %s under %s: %s'
                               % (name, which_set, data_root(data_path), _describe(err))) from None
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


# ---------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------

# md5_of: 'file' hashes the downloaded bytes, 'gunzipped' the decompressed content.
RemoteFile = collections.namedtuple('RemoteFile', 'name md5 md5_of')
_DownloadSpec = collections.namedtuple('_DownloadSpec', 'title subdir base_url files extra_files')

_DOWNLOADS = {
    'mnist': _DownloadSpec('MNIST', 'mnist', 'http://yann.lecun.com/exdb/mnist/', (
        RemoteFile('train-images-idx3-ubyte.gz', '6bbc9ace898e44ae57da46a324031adb', 'gunzipped'),
        RemoteFile('train-labels-idx1-ubyte.gz', 'a25bea736e30d166cdddb491f175f624', 'gunzipped'),
        RemoteFile('t10k-images-idx3-ubyte.gz', '2646ac647ad5339dbf082846283269ea', 'gunzipped'),
        RemoteFile('t10k-labels-idx1-ubyte.gz', '27ae3e4e09519cfbb04c329615203637', 'gunzipped'),
    ), ()),
    # The uncompressed sums match the files of the Fashion-MNIST repository (and of
    # Debian's package); the gzipped files on the official host have other sums.
    'fashion-mnist': _DownloadSpec(
        'Fashion-MNIST', 'fashion-mnist', 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/', (
            RemoteFile('train-images-idx3-ubyte.gz', 'f4a8712d7a061bf5bd6d2ca38dc4d50a', 'gunzipped'),
            RemoteFile('train-labels-idx1-ubyte.gz', '9018921c3c673c538a1fc5bad174d6f9', 'gunzipped'),
            RemoteFile('t10k-images-idx3-ubyte.gz', '8181f5470baa50b63fa0f6fddb340f0a', 'gunzipped'),
            RemoteFile('t10k-labels-idx1-ubyte.gz', '15d484375f8d13e6eb1aabb0c3f46965', 'gunzipped'),
        ), ()),
    'cifar10': _DownloadSpec('CIFAR-10', 'cifar10', 'https://www.cs.toronto.edu/~kriz/', (
        RemoteFile('cifar-10-python.tar.gz', 'c58f30108f718f92721af3b95e74349a', 'file'),
    ), ()),
    'svhn': _DownloadSpec('SVHN', SVHN_DIR, 'http://ufldl.stanford.edu/housenumbers/', (
        RemoteFile('train_32x32.mat', 'e26dedcc434d2e4c54c9b2d4a06d8373', 'file'),
        RemoteFile('test_32x32.mat', 'eb5a983be6a315427106f1b164d9cef3', 'file'),
    ), (
        RemoteFile('extra_32x32.mat', 'a93ce644f1a588dc4d68dda5feec44a7', 'file'),
    )),
}

_CHUNK_SIZE = 1 << 16
_TIMEOUT_S = 60
_USER_AGENT = 'binary_net-datasets/1.0 (python urllib)'


def _say(message, verbose):
    if verbose:
        print(message, file=sys.stderr)


def _content_md5(path, md5_of):
    """MD5 of a file or of its gunzipped content; None if it does not decompress."""
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if md5_of == 'gunzipped' else open
    try:
        with opener(path, 'rb') as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b''):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def _checksum_problem(path, md5, md5_of):
    """None if ``path`` matches ``md5`` (or no sum is known), else what is wrong."""
    if md5 is None:
        return None
    found = _content_md5(path, md5_of)
    if found is None:
        return 'it is not a valid gzip file'
    if found != md5.lower():
        what = 'uncompressed content' if md5_of == 'gunzipped' else 'file'
        return 'MD5 of the %s is %s, expected %s' % (what, found, md5.lower())
    return None


def _resume_offset(response):
    """Start offset of a 206 response's Content-Range, or None if unparsable."""
    content_range = response.headers.get('Content-Range', '')
    try:
        unit, rest = content_range.split(' ', 1)
        return int(rest.split('-', 1)[0]) if unit == 'bytes' else None
    except ValueError:
        return None


def _open_url(url, offset):
    """Open ``url`` asking for bytes from ``offset`` on; None if nothing is left to get."""
    request = urllib.request.Request(url, headers={'User-Agent': _USER_AGENT})
    if offset:
        request.add_header('Range', 'bytes=%d-' % offset)
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the partial file already holds every byte.
            return None
        raise DatasetError('download of %s failed: HTTP %d %s' % (url, err.code, err.reason)) from None
    except (urllib.error.URLError, OSError) as err:
        reason = ' '.join(str(getattr(err, 'reason', err)).split())
        raise DatasetError('download of %s failed: %s (try a mirror with --base-url)' % (url, reason)) from None


def _download_to_part(url, part_path, verbose):
    """Fetch ``url`` into ``part_path``, continuing a partial file if the server allows."""
    offset = os.path.getsize(part_path) if os.path.isfile(part_path) else 0
    response = _open_url(url, offset)
    if response is None:
        return
    with response:
        if offset and (response.status != 206 or _resume_offset(response) != offset):
            # The server ignored the Range header (200) or answered another range:
            # the body starts elsewhere, so restart the file from scratch.
            if response.status == 206:
                response.close()
                os.remove(part_path)
                return _download_to_part(url, part_path, verbose)
            offset = 0
        length = response.headers.get('Content-Length')
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        from tqdm import tqdm  # only downloads need it

        with open(part_path, 'ab' if offset else 'wb') as out, \
                tqdm(total=total, initial=offset, unit='B', unit_scale=True, unit_divisor=1024,
                     desc=os.path.basename(part_path)[:-len('.part')], disable=not verbose) as bar:
            try:
                for chunk in iter(lambda: response.read(_CHUNK_SIZE), b''):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise DatasetError('download of %s was interrupted (%s); run the same command again '
                                   'to resume' % (url, _describe(err))) from None
            except KeyboardInterrupt:
                raise DownloadInterrupted('download of %s stopped at byte %d; %s is kept: run the '
                                          'same command again to resume' % (url, received, part_path)) from None
    if total is not None and received < total:
        raise DatasetError('download of %s stopped at %d of %d bytes; run the same command again '
                           'to resume' % (url, received, total))


def _fetch(url, destination, md5, md5_of, verbose):
    """Download ``url`` to ``destination`` through ``destination.part``, verified."""
    part_path = destination + '.part'
    if os.path.isfile(part_path):
        _say('resuming %s from byte %d' % (url, os.path.getsize(part_path)), verbose)
    _download_to_part(url, part_path, verbose)
    problem = _checksum_problem(part_path, md5, md5_of)
    if problem:
        os.remove(part_path)  # a bad file must not be resumed from
        raise DatasetError('download of %s is corrupt: %s; the partial file was deleted' % (url, problem))
    os.replace(part_path, destination)  # atomic: the final name never holds a partial file


def _already_present(destination, remote):
    """True if a verified copy of ``remote`` is already in place (raw IDX counts too)."""
    candidates = [destination]
    if remote.md5_of == 'gunzipped':
        candidates.insert(0, destination[:-len('.gz')])  # the uncompressed pylearn2 copy
    for candidate in candidates:
        if os.path.isfile(candidate):
            md5_of = 'file' if candidate != destination else remote.md5_of
            if _checksum_problem(candidate, remote.md5, md5_of) is None:
                return True
    return False


def _cifar_batches_present(cifar_dir):
    batch_dir = os.path.join(cifar_dir, 'cifar-10-batches-py')
    return all(os.path.isfile(os.path.join(batch_dir, name))
               for name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,))


def _extract_cifar(archive, cifar_dir):
    """Unpack cifar-10-batches-py/ from the archive, into place only once complete."""
    staging = tempfile.mkdtemp(prefix='.extract-', dir=cifar_dir)
    try:
        staged_batches = os.path.join(staging, 'cifar-10-batches-py')
        os.mkdir(staged_batches)
        try:
            with tarfile.open(archive, 'r:gz') as tar:
                for member in tar:
                    parts = member.name.split('/')
                    # Take only plain files directly under cifar-10-batches-py/, so
                    # that no archive member can write outside the staging directory.
                    if not member.isfile() or len(parts) != 2 or parts[0] != 'cifar-10-batches-py' \
                            or parts[1] in ('', '.', '..'):
                        continue
                    with tar.extractfile(member) as source, \
                            open(os.path.join(staged_batches, parts[1]), 'wb') as target:
                        shutil.copyfileobj(source, target)
        except (tarfile.TarError, EOFError, zlib.error) as err:
            raise DatasetError('%s is not a valid CIFAR-10 archive (%s)' % (archive, _describe(err))) from None
        if not _cifar_batches_present(staging):
            raise DatasetError('%s lacks some of the CIFAR-10 batches' % archive)
        final = os.path.join(cifar_dir, 'cifar-10-batches-py')
        if os.path.isdir(final):
            shutil.rmtree(final)  # an incomplete earlier copy; the checks above found it lacking
        os.replace(staged_batches, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name, data_path=None, base_url=None, checksums=None, extra=False, progress=True):
    """Download a dataset's official files into the pylearn2 layout.

    Files already present with the right checksum are skipped; a ``FILE.part`` left by
    an interrupted run is resumed with an HTTP Range request.

    Parameters
    ----------
    name : {'mnist', 'fashion-mnist', 'cifar10', 'svhn'}
        Which dataset.
    data_path : str or None
        Data root; see :func:`data_root`.
    base_url : str or None
        Directory URL that holds the files (a mirror); default the official site.
    checksums : dict or None
        ``{file name: md5 hex or None}`` overriding the built-in sums; for MNIST and
        Fashion-MNIST the sum is of the uncompressed content. None skips the check.
    extra : bool
        SVHN only: also fetch ``extra_32x32.mat`` (1.3 GB).
    progress : bool
        Show progress bars and messages on stderr.

    Returns
    -------
    list of str
        Paths of the dataset's files (for CIFAR-10, the batch directory).

    Raises
    ------
    DatasetError
        Network failure, an interrupted transfer (the ``.part`` file is kept for
        resuming), or a checksum mismatch (the ``.part`` file is deleted).
    """
    _check_name(name)
    spec = _DOWNLOADS[name]
    checksums = checksums or {}
    base_url = (base_url or spec.base_url).rstrip('/') + '/'
    target_dir = os.path.join(data_root(data_path), spec.subdir)
    os.makedirs(target_dir, exist_ok=True)
    if name == 'cifar10' and _cifar_batches_present(target_dir):
        _say('CIFAR-10 already present in %s' % target_dir, progress)
        return [os.path.join(target_dir, 'cifar-10-batches-py')]

    paths = []
    for remote in spec.files + (spec.extra_files if extra else ()):
        remote = remote._replace(md5=checksums.get(remote.name, remote.md5))
        destination = os.path.join(target_dir, remote.name)
        if _already_present(destination, remote):
            _say('%s already present' % destination, progress)
        else:
            _fetch(base_url + remote.name, destination, remote.md5, remote.md5_of, progress)
        paths.append(destination)
    if name == 'cifar10':
        _extract_cifar(paths[0], target_dir)
        return [os.path.join(target_dir, 'cifar-10-batches-py')]
    if name in ('mnist', 'fashion-mnist'):
        gunzip_idx_files(paths, progress)
    return paths


def gunzip_idx_files(paths, progress=False):
    """Leave the uncompressed IDX file beside each ``.gz``, as pylearn2's download
    script does (pylearn2's MNIST reads only those); each written atomically.

    Parameters
    ----------
    paths : list of str
        ``*.gz`` files; others are ignored. An existing uncompressed file is kept.

    Returns
    -------
    list of str, the uncompressed files.
    """
    written = []
    for path in paths:
        if not path.endswith('.gz'):
            continue
        raw = path[:-3]
        if not os.path.isfile(raw):
            fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(raw) + '.',
                                       suffix='.tmp', dir=os.path.dirname(raw))
            try:
                with os.fdopen(fd, 'wb') as out, gzip.open(path, 'rb') as source:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.replace(tmp, raw)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            _say('wrote %s' % raw, progress)
        written.append(raw)
    return written


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m binary_net.datasets',
        description='Download and check the datasets of the BinaryNet / XNOR-Net experiments, '
                    'kept in pylearn2\'s layout under --data-path (default $PYLEARN2_DATA_PATH, '
                    'else ~/pylearn2_data).')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)

    fetch = commands.add_parser(
        'download', help='fetch a dataset\'s official files (resumable, checksum-verified)',
        description='Fetch the official files of a dataset into pylearn2\'s layout. An interrupted '
                    'download resumes when the command is run again.')
    fetch.add_argument('name', choices=DATASET_NAMES, help='dataset to fetch')
    fetch.add_argument('--data-path', metavar='DIR', help='data root (default $PYLEARN2_DATA_PATH, '
                       'else ~/pylearn2_data)')
    fetch.add_argument('--base-url', metavar='URL',
                       help='download from this directory URL instead of the official site, e.g. the '
                            'MNIST mirror https://ossci-datasets.s3.amazonaws.com/mnist/')
    fetch.add_argument('--extra', action='store_true', help='svhn: also fetch extra_32x32.mat (1.3 GB)')
    fetch.add_argument('--quiet', action='store_true', help='no progress bars')

    check = commands.add_parser('check', help='load a dataset and print its shapes',
                                description='Load a dataset from disk and print its array shapes.')
    check.add_argument('name', choices=DATASET_NAMES, help='dataset to load')
    check.add_argument('--data-path', metavar='DIR', help='data root (default $PYLEARN2_DATA_PATH, '
                       'else ~/pylearn2_data)')
    check.add_argument('--extra', action='store_true', help='svhn: include extra_32x32.mat')
    return parser


def main(argv=None):
    """Command-line entry point.

    Parameters
    ----------
    argv : list of str or None
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a :class:`DatasetError` (as every other
        command), 130 after Ctrl-C (an interrupted download keeps its ``.part``
        file for resuming).
    """
    args = _build_parser().parse_args(argv)
    kwargs = {'extra': True} if args.extra else {}
    try:
        if args.command == 'download':
            paths = download(args.name, args.data_path, base_url=args.base_url,
                             progress=not args.quiet, **kwargs)
            print('%s ready: %s' % (args.name, ', '.join(paths)))
        else:
            data = load(args.name, args.data_path, **kwargs)
            for split, (X, y) in data.items():
                print('%s %s: X %s %s, y %s %s' % (args.name, split, X.dtype, X.shape, y.dtype, y.shape))
    except DatasetError as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print('interrupted%s' % (': %s' % err if str(err) else ''), file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
