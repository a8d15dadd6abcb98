"""The input preprocessing a model was trained with, stored in and read from its file.

Training feeds every network images scaled to [-1, 1]
(:func:`binary_net.data.to_unit_range`); the conv trainers' ``--gcn`` and
``--zca`` then apply global contrast normalization (pylearn2's, scale 55) and
ZCA whitening fitted on the training split. A :class:`Preprocessing` holds
that transform; :func:`prepare` fits it while loading the data for training,
and the trainer stores it in the model file:

* the JSON metadata (the model's ``extra``) gets ``"preprocessing": {"gcn":
  {"scale": 55.0, "eps": 1e-08} or null, "zca": {"filter_bias": 0.1} or null}``;
* with ZCA, two arrays beside the parameters: ``preprocessing_zca_mean``
  (float32, one value per input) and ``preprocessing_zca_whitening`` (float32,
  inputs x inputs: 37.7 MB for CIFAR-10's 3072 values). The whitening used in
  training is this float32 matrix, so evaluation reproduces it exactly.

:func:`from_file` reads it back from a model or packed file (a file without it
gets the identity); the evaluation scripts and ``python -m binary_net pack``
use it, and the C export refuses such models.
"""
import numpy as np

from .. import modelfile
from ..deploy import packed
from .normalize import ZCA, global_contrast_normalize
from .splits import prepare as prepare_splits

ARRAY_PREFIX = modelfile.PREPROCESSING_PREFIX
META_KEY = 'preprocessing'


class Preprocessing:
    """Images in [-1, 1] -> network inputs: optional GCN, then optional ZCA.

    Parameters
    ----------
    gcn : dict or None
        ``{'scale': s, 'eps': e}`` for :func:`binary_net.data.global_contrast_normalize`.
    zca_mean, zca_whitening : numpy arrays or None
        ``x -> (x - mean) @ whitening`` on each flattened image (float64
        arithmetic, as :class:`binary_net.data.ZCA`).
    zca_filter_bias : float or None, recorded only
    """

    def __init__(self, gcn=None, zca_mean=None, zca_whitening=None, zca_filter_bias=None):
        if (zca_mean is None) != (zca_whitening is None):
            raise ValueError('ZCA needs both its mean and its whitening matrix')
        self.gcn = dict(gcn) if gcn else None
        self.zca_mean = None if zca_mean is None else np.asarray(zca_mean)
        self.zca_whitening = None if zca_whitening is None else np.asarray(zca_whitening)
        if self.zca_mean is not None:
            n = self.zca_mean.size
            if self.zca_mean.ndim != 1 or self.zca_whitening.shape != (n, n):
                raise ValueError('ZCA mean of shape %s and whitening matrix of shape %s '
                                 'do not fit' % (self.zca_mean.shape, self.zca_whitening.shape))
        self.zca_filter_bias = zca_filter_bias

    @classmethod
    def fit(cls, X_train, gcn=False, zca=False, gcn_scale=55., gcn_eps=1e-8, filter_bias=0.1):
        """Fit on training images in [-1, 1]: GCN parameters, ZCA on the GCN output."""
        pre = cls(gcn=dict(scale=float(gcn_scale), eps=float(gcn_eps)) if gcn else None)
        if zca:
            whitener = ZCA(filter_bias=filter_bias).fit(pre._gcn(X_train))
            # Stored, and therefore used, in float32.
            pre = cls(pre.gcn, whitener.mean_.astype(np.float32),
                      whitener.whitening_.astype(np.float32), filter_bias)
        return pre

    @property
    def is_identity(self):
        return self.gcn is None and self.zca_mean is None

    def describe(self):
        parts = []
        if self.gcn:
            parts.append('GCN (scale %g)' % self.gcn['scale'])
        if self.zca_mean is not None:
            parts.append('ZCA whitening (%d values)' % self.zca_mean.size)
        return ' + '.join(parts) or 'none (pixels scaled to [-1, 1])'

    def _gcn(self, X):
        if not self.gcn or len(X) == 0:
            return np.asarray(X, dtype=np.float32)
        return global_contrast_normalize(X, scale=self.gcn['scale'],
                                                  eps=self.gcn['eps'])

    def apply(self, X):
        """Transform images in [-1, 1] (N, ...) into float32 network inputs."""
        X = self._gcn(X)
        if self.zca_mean is None:
            return X
        flat = X.reshape(len(X), int(np.prod(X.shape[1:])))
        if flat.shape[1] != self.zca_mean.size:
            raise ValueError('the ZCA whitening was fitted on %d values per image, got %d'
                             % (self.zca_mean.size, flat.shape[1]))
        mean = self.zca_mean.astype(np.float64)
        whitening = self.zca_whitening.astype(np.float64)
        out = np.empty(flat.shape, dtype=np.float32)
        for start in range(0, len(flat), 1000):
            out[start:start + 1000] = (flat[start:start + 1000] - mean) @ whitening
        return out.reshape(X.shape)

    # -- storage ---------------------------------------------------------------
    def to_meta(self):
        """The JSON part, for the model's ``extra`` under ``"preprocessing"``."""
        return {'gcn': self.gcn,
                'zca': None if self.zca_mean is None else {'filter_bias': self.zca_filter_bias}}

    def arrays(self):
        """The arrays part, named as stored in model files."""
        if self.zca_mean is None:
            return {}
        return {ARRAY_PREFIX + 'zca_mean': self.zca_mean,
                ARRAY_PREFIX + 'zca_whitening': self.zca_whitening}

    @classmethod
    def from_meta(cls, meta, arrays, source='model'):
        """Rebuild from :meth:`to_meta` and :meth:`arrays`; ModelFileError if they do not fit."""
        if meta is None:
            return cls()
        try:
            gcn = meta.get('gcn')
            if gcn is not None:
                gcn = dict(scale=float(gcn['scale']), eps=float(gcn['eps']))
            zca = meta.get('zca')
            if zca is None:
                return cls(gcn)
            mean = arrays.get(ARRAY_PREFIX + 'zca_mean')
            whitening = arrays.get(ARRAY_PREFIX + 'zca_whitening')
            if mean is None or whitening is None:
                raise ValueError('its ZCA arrays are missing')
            if mean.dtype.kind != 'f' or whitening.dtype.kind != 'f':
                raise ValueError('its ZCA arrays are not floating point')
            return cls(gcn, mean, whitening, zca.get('filter_bias'))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise modelfile.ModelFileError('%s has malformed preprocessing: %s'
                                           % (source, modelfile.first_line(error))) from None


def from_file(path):
    """The preprocessing stored in a model or packed file (identity if none)."""
    if packed.is_packed(path):
        extra = packed.load_packed(path)[2]
    else:
        extra = modelfile.load_model(path)[2]
    meta = extra.get(META_KEY) if isinstance(extra, dict) else None
    if meta is None:
        return Preprocessing()
    return Preprocessing.from_meta(meta, modelfile.load_named_arrays(path, ARRAY_PREFIX), path)


def prepare(name, data_path=None, train_size=None, valid_size=None, gcn=False, zca=False,
            **load_kwargs):
    """:func:`binary_net.data.prepare` with the preprocessing fitted and returned.

    The splits are scaled to [-1, 1] there and transformed here by a
    :class:`Preprocessing` fitted on the training split, so that evaluation,
    applying the stored transform to test images in [-1, 1], computes exactly
    what training saw.

    Returns
    -------
    (binary_net.data.Splits, Preprocessing)
    """
    splits = prepare_splits(name, data_path=data_path, train_size=train_size,
                            valid_size=valid_size, **load_kwargs)
    pre = Preprocessing.fit(splits.X_train, gcn=gcn, zca=zca)
    if pre.is_identity:
        return splits, pre
    return splits._replace(X_train=pre.apply(splits.X_train), X_valid=pre.apply(splits.X_valid),
                           X_test=pre.apply(splits.X_test)), pre
