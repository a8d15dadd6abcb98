"""The original theano-xnor-net's data: its split, pixel scaling and SVHN labels (``--split original``).

Part of :mod:`binary_net.data`, beside :func:`binary_net.data.prepare`: MNIST and
CIFAR-10 as the original's ``cnn_utils.load_data`` split them, SVHN as pylearn2's
``splitted_train`` / ``valid`` (:func:`svhn_original_split`), pixels scaled as it
did and SVHN classes numbered as it did.
"""
import os

import numpy as np

from .files import DatasetError, data_root
from .loading import load
from .registry import NUM_CLASSES
from .scaling import relabel, to_unit_range_original
from .splits import Splits, check_count
from .svhn import SVHN_DIR, ZERO_LABEL, read_svhn_file
from .via_pylearn2 import pylearn2_set


#: The splits a trainer offers (``--split``): this package's and the original's.
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
        mat = np.where(np.asarray(y) == 0, ZERO_LABEL, np.asarray(y))
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
        X_a, y_a = read_svhn_file(directory, 'train_32x32.mat', root)
        X_b, y_b = read_svhn_file(directory, 'extra_32x32.mat', root, extra=True)
        train_rows, valid_rows = svhn_original_split(y_a, y_b, SVHN_VALID_PER_CLASS)
        X_all, y_all = np.concatenate([X_a, X_b]), np.concatenate([y_a, y_b])
        del X_a, X_b
        X_test, y_test = read_svhn_file(directory, 'test_32x32.mat', root)
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
        train_rows = train_rows[:check_count(train_size, 'train_size', 1, len(train_rows))]
    parts = []
    for X, y in ((X_all[train_rows], y_all[train_rows]), (X_all[valid_rows], y_all[valid_rows]),
                 (X_test, y_test)):
        parts += [to_unit_range_original(X, name), relabel(y, labels)]
    return Splits(*parts)
