"""Image-classification datasets in pylearn2's on-disk layout, without pylearn2.

The original BinaryNet / XNOR-Net training scripts read their data through pylearn2,
which no longer installs. This package reads the same files from the same places, and
can download them, using only numpy, scipy, tqdm and the standard library. It never
imports Theano or Lasagne, so that data can be prepared on machines without them.

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

Modules, from the bottom up
---------------------------
``files`` (the data root, :class:`DatasetError`, opening files), ``registry``
(:data:`DATASETS`: every dataset's name and metadata, the single list of names),
the readers ``idx`` (MNIST, Fashion-MNIST), ``cifar10`` (with the restricted
unpickler) and ``svhn``, ``via_pylearn2`` (``--loader pylearn2``), ``loading``
(:func:`load` by name), ``scaling`` (pixels to [-1, 1], labels, hinge targets),
``normalize`` (GCN, ZCA), ``splits`` (:func:`prepare`), ``original`` (the
original's split, :func:`prepare_original`), ``download`` and ``cli``
(``python -m binary_net download|check``). ``preprocessing``, the GCN/ZCA stored in
a model file, reads model files and is imported on its own
(``from binary_net.data import preprocessing``).

Loaders (:func:`load_mnist`, :func:`load_fashion_mnist`, :func:`load_cifar10`,
:func:`load_svhn`, or :func:`load` by name) return uint8 images shaped NCHW and int64
labels. :func:`prepare` adds the preprocessing of the original scripts and splits off
a validation set: the *last* ``valid_size`` images of the training file, by default
10000 for MNIST and Fashion-MNIST and 5000 for CIFAR-10 and SVHN
(:data:`DEFAULT_VALID_SIZE`).

Examples
--------
>>> from binary_net import data
>>> sorted(data.DATASETS)
['cifar10', 'fashion-mnist', 'mnist', 'svhn']
>>> data.DATASETS['cifar10'].valid_size
5000
>>> data.to_unit_range([0, 255]).tolist()
[-1.0, 1.0]
"""
from .cifar10 import CIFAR10_DIR, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, load_cifar10
from .download import download, gunzip_idx_files
from .files import DEFAULT_DATA_ROOT, DatasetError, DownloadInterrupted, data_root
from .idx import load_fashion_mnist, load_mnist, read_idx
from .loading import LOADERS, load
from .normalize import ZCA, global_contrast_normalize
from .original import (ORIGINAL_TRAIN_STOP, ORIGINAL_VALID_STOP, SPLITS, SVHN_SPLIT_SEED,
                       SVHN_VALID_PER_CLASS, prepare_original, svhn_original_split)
from .registry import DATASET_NAMES, DATASETS, DEFAULT_VALID_SIZE, NUM_CLASSES, RemoteFile
from .scaling import (PIXEL_SCALINGS, hinge_targets, relabel, scale_pixels, to_unit_range,
                      to_unit_range_original)
from .splits import Splits, prepare
from .svhn import SVHN_DIR, load_svhn
from .via_pylearn2 import load_pylearn2, pylearn2_set

__all__ = [
    'DatasetError', 'DownloadInterrupted', 'Splits', 'ZCA', 'DATASETS', 'DATASET_NAMES',
    'DEFAULT_DATA_ROOT', 'DEFAULT_VALID_SIZE', 'NUM_CLASSES', 'LOADERS', 'SPLITS',
    'PIXEL_SCALINGS', 'data_root', 'read_idx', 'load', 'load_mnist', 'load_fashion_mnist',
    'load_cifar10', 'load_svhn', 'load_pylearn2', 'pylearn2_set', 'to_unit_range',
    'to_unit_range_original', 'scale_pixels', 'relabel', 'hinge_targets',
    'global_contrast_normalize', 'prepare', 'prepare_original', 'svhn_original_split',
    'download', 'gunzip_idx_files', 'RemoteFile', 'CIFAR10_DIR', 'CIFAR10_TRAIN_BATCHES',
    'CIFAR10_TEST_BATCH', 'SVHN_DIR', 'ORIGINAL_TRAIN_STOP', 'ORIGINAL_VALID_STOP',
    'SVHN_VALID_PER_CLASS', 'SVHN_SPLIT_SEED',
]
