"""Pixels and labels as a network sees them: [-1, 1] pixels, class numberings, hinge targets.

The last step of :mod:`binary_net.data` before a network: :func:`to_unit_range`
(this package's scaling), :func:`to_unit_range_original` (the original
theano-xnor-net's, 1 ulp apart for some values), :func:`scale_pixels` choosing
between them as a model file says, :func:`relabel` for the original's SVHN class
numbering and :func:`hinge_targets` for the squared hinge loss. Training,
evaluation and the export all scale images here.
"""
import numpy as np

from .files import DatasetError
from .registry import NUM_CLASSES


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
