"""SVHN format 2: the MATLAB files ``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``.

A reader of :mod:`binary_net.data` (``SVHN/format2/`` under the data root, read with
scipy). Classes are the digits: the ``.mat`` label 10 (the digit 0) becomes 0.
"""
import os

import numpy as np

from .files import DatasetError, check_label_values, data_root, describe, missing_error, present
from .registry import DATASETS, NUM_CLASSES

SVHN_DIR = DATASETS['svhn'].subdir
#: SVHN's .mat files label the digit 0 as class 10.
ZERO_LABEL = 10


def _read_svhn_mat(path):
    """Read one SVHN format-2 file as uint8 (N, 3, 32, 32) images and int64 labels."""
    from scipy.io import loadmat  # scipy is slow to import; only SVHN needs it

    try:
        contents = loadmat(path)
    except Exception as err:  # scipy raises many different types for a damaged file
        raise DatasetError('%s is not a readable MATLAB file (%s)' % (path, describe(err))) from None
    if 'X' not in contents or 'y' not in contents:
        raise DatasetError('%s: expected variables X and y in the SVHN file' % path)
    images, labels = contents['X'], np.asarray(contents['y'])
    check_label_values(labels, path, 1, 10)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DatasetError('%s: expected uint8 X shaped (32, 32, 3, N), found %s %s'
                           % (path, images.dtype, images.shape))
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != images.shape[3]:
        raise DatasetError('%s holds %d labels for %d images' % (path, len(labels), images.shape[3]))
    labels[labels == ZERO_LABEL] = 0
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError('%s: labels outside 1..10' % path)
    # MATLAB stores (row, column, channel, image); reorder to (image, channel, row, column).
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels


def read_svhn_file(directory, file_name, root, extra=False):
    """Read ``directory/file_name``, or say it is missing and how to fetch it."""
    path = os.path.join(directory, file_name)
    if not present(path):
        raise missing_error('SVHN', 'svhn', root, path, extra=extra)
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
    X_train, y_train = read_svhn_file(directory, 'train_32x32.mat', root)
    if extra:
        X_extra, y_extra = read_svhn_file(directory, 'extra_32x32.mat', root, extra=True)
        X_train, y_train = np.concatenate([X_train, X_extra]), np.concatenate([y_train, y_extra])
    return {'train': (X_train, y_train),
            'test': read_svhn_file(directory, 'test_32x32.mat', root)}
