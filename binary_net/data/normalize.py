"""Global contrast normalization and ZCA whitening, fitted on training images.

The numerics behind ``--gcn`` and ``--zca`` in :mod:`binary_net.data`: pylearn2's
GCN (``use_std``) and its ``ZCA(filter_bias=0.1)``, in float64 over chunks of rows.
:mod:`binary_net.data.preprocessing` stores a fitted transform in the model file.
"""
import numpy as np


def flatten(X):
    """``X`` as (N, values per image), also for an empty batch."""
    # An explicit width, because reshape(0, -1) is ambiguous for an empty batch.
    return X.reshape(len(X), int(np.prod(X.shape[1:], dtype=np.int64)))


def row_chunks(n_rows, chunk_size=4096):
    """Slices over the rows, so float64 temporaries of a whole dataset never coexist."""
    return [slice(start, start + chunk_size) for start in range(0, n_rows, chunk_size)]


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
    flat = flatten(X)
    result = np.empty(flat.shape, dtype=np.float32)
    for rows in row_chunks(len(flat)):
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
        flat = flatten(np.asarray(X_train))
        if len(flat) == 0:
            raise ValueError('cannot fit ZCA on an empty set')
        self.mean_ = flat.mean(axis=0, dtype=np.float64)
        covariance = np.zeros((flat.shape[1], flat.shape[1]))
        for rows in row_chunks(len(flat)):
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
        flat = flatten(X)
        if flat.shape[1] != len(self.mean_):
            raise ValueError('ZCA was fitted on %d values per image, got %d' % (len(self.mean_), flat.shape[1]))
        result = np.empty(flat.shape, dtype=np.float32)
        for rows in row_chunks(len(flat)):
            result[rows] = (flat[rows] - self.mean_) @ self.whitening_
        return result.reshape(X.shape)
