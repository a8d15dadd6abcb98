"""Training, validation and test splits of a dataset, ready for a network.

:func:`prepare` is what a trainer of :mod:`binary_net.train` calls: it loads a
dataset (:func:`binary_net.data.load`), takes the validation images from the end of
the training file and scales pixels to [-1, 1] (or applies GCN and ZCA), giving a
:class:`Splits`. The original's own split is :func:`binary_net.data.original.prepare_original`.
"""
import collections

import numpy as np

from .files import DatasetError
from .loading import load
from .normalize import ZCA, global_contrast_normalize
from .registry import DEFAULT_VALID_SIZE, check_name
from .scaling import to_unit_range

#: A dataset prepared for training: float32 NCHW images and int64 labels of each split.
Splits = collections.namedtuple('Splits', 'X_train y_train X_valid y_valid X_test y_test')


def check_count(value, what, low, high):
    """Validate a split size: an int in [low, high]; returns it as an int."""
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
        The dataset to prepare.
    data_path : str or None
        Data root; see :func:`~binary_net.data.files.data_root`.
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
    check_name(name)
    data = load(name, data_path, **load_kwargs)
    X_file, y_file = data['train']
    n_file = len(X_file)
    valid_size = DEFAULT_VALID_SIZE[name] if valid_size is None else valid_size
    valid_size = check_count(valid_size, 'valid_size', 0, n_file - 1)
    n_rest = n_file - valid_size
    train_size = n_rest if train_size is None else check_count(train_size, 'train_size', 1, n_rest)

    X_train, y_train = X_file[:train_size], y_file[:train_size]
    X_valid, y_valid = X_file[n_rest:], y_file[n_rest:]
    X_test, y_test = data['test']

    transform = global_contrast_normalize if gcn else to_unit_range
    X_train, X_valid, X_test = (transform(X) for X in (X_train, X_valid, X_test))
    if zca:
        whitener = ZCA().fit(X_train)
        X_train, X_valid, X_test = (whitener.apply(X) for X in (X_train, X_valid, X_test))
    return Splits(X_train, y_train, X_valid, y_valid, X_test, y_test)
