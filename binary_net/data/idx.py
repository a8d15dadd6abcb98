"""MNIST and Fashion-MNIST: IDX files of unsigned bytes, raw or gzipped.

A reader of :mod:`binary_net.data`: :func:`read_idx` parses one IDX file (header
sizes in Python integers, so no header overflows), and :func:`load_mnist` /
:func:`load_fashion_mnist` read the four files of a dataset from its folder under
the data root (``mnist/``, ``fashion-mnist/``), the raw file winning over
``NAME.gz`` as in pylearn2's layout.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from .files import DatasetError, data_root, describe, missing_error, open_data_file, present
from .registry import DATASETS, NUM_CLASSES

_IDX_UNSIGNED_BYTE = 0x08
_IDX_SPLITS = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}


def _read_file_bytes(path):
    """Read a whole file, transparently un-gzipping ``*.gz``."""
    with open_data_file(path) as raw:
        if not path.endswith('.gz'):
            return raw.read()
        return _gunzip(raw, path)


def _gunzip(raw, path):
    try:
        with gzip.GzipFile(fileobj=raw, mode='rb') as stream:
            return stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        # EOFError is how gzip reports a truncated stream.
        raise DatasetError('%s is not a valid gzip file (%s)' % (path, describe(err))) from None


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
        if present(path):
            return path
    return None


def _load_idx_split(directory, image_name, label_name, title, name, root):
    """Read one split's image and label files and check they belong together."""
    paths = []
    for base_name in (image_name, label_name):
        path = _find_idx_file(directory, base_name)
        if path is None:
            raise missing_error(title, name, root, os.path.join(directory, base_name) + '(.gz)')
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
    title, subdir = DATASETS[name].title, DATASETS[name].subdir
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
    """Load Fashion-MNIST from ``<root>/fashion-mnist/``, as :func:`load_mnist` loads MNIST.

    The same file names, array shapes and types: ``{'train': (X, y), 'test': (X, y)}``
    with X uint8 (N, 1, 28, 28) and y int64 (N,), ten classes of clothing.
    """
    return _load_idx_dataset('fashion-mnist', data_path)
