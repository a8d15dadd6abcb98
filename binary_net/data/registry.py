"""The single registry of datasets: their names, where they live, how to fetch them.

Everything else in :mod:`binary_net.data` (the readers, :func:`~binary_net.data.load`,
the download, the command line) and the other commands that take a dataset name
(``export --dataset``) take the names and metadata from :data:`DATASETS`, the one
table of them. It holds only constants and imports nothing of the package but its
error type.
"""
import collections
import os

from .files import DatasetError

#: Classes of every dataset here (the ten digits, or Fashion-MNIST's ten articles).
NUM_CLASSES = 10

# md5_of: 'file' hashes the downloaded bytes, 'gunzipped' the decompressed content.
RemoteFile = collections.namedtuple('RemoteFile', 'name md5 md5_of')

#: What the package knows of one dataset: ``title`` (for messages), ``subdir`` (its
#: folder under the data root, where the download puts its files), ``valid_size``
#: (validation images taken from the end of the training file by default),
#: ``base_url`` (the official site), ``files`` and ``extra_files`` (what
#: ``download`` fetches; ``extra_files`` only with ``--extra``).
Dataset = collections.namedtuple('Dataset', 'title subdir valid_size base_url files extra_files')

#: name -> :class:`Dataset`; iterating gives the names.
DATASETS = {
    'mnist': Dataset('MNIST', 'mnist', 10000, 'http://yann.lecun.com/exdb/mnist/', (
        RemoteFile('train-images-idx3-ubyte.gz', '6bbc9ace898e44ae57da46a324031adb', 'gunzipped'),
        RemoteFile('train-labels-idx1-ubyte.gz', 'a25bea736e30d166cdddb491f175f624', 'gunzipped'),
        RemoteFile('t10k-images-idx3-ubyte.gz', '2646ac647ad5339dbf082846283269ea', 'gunzipped'),
        RemoteFile('t10k-labels-idx1-ubyte.gz', '27ae3e4e09519cfbb04c329615203637', 'gunzipped'),
    ), ()),
    # The uncompressed sums match the files of the Fashion-MNIST repository (and of
    # Debian's package); the gzipped files on the official host have other sums.
    'fashion-mnist': Dataset(
        'Fashion-MNIST', 'fashion-mnist', 10000, 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/', (
            RemoteFile('train-images-idx3-ubyte.gz', 'f4a8712d7a061bf5bd6d2ca38dc4d50a', 'gunzipped'),
            RemoteFile('train-labels-idx1-ubyte.gz', '9018921c3c673c538a1fc5bad174d6f9', 'gunzipped'),
            RemoteFile('t10k-images-idx3-ubyte.gz', '8181f5470baa50b63fa0f6fddb340f0a', 'gunzipped'),
            RemoteFile('t10k-labels-idx1-ubyte.gz', '15d484375f8d13e6eb1aabb0c3f46965', 'gunzipped'),
        ), ()),
    'cifar10': Dataset('CIFAR-10', 'cifar10', 5000, 'https://www.cs.toronto.edu/~kriz/', (
        RemoteFile('cifar-10-python.tar.gz', 'c58f30108f718f92721af3b95e74349a', 'file'),
    ), ()),
    'svhn': Dataset('SVHN', os.path.join('SVHN', 'format2'), 5000, 'http://ufldl.stanford.edu/housenumbers/', (
        RemoteFile('train_32x32.mat', 'e26dedcc434d2e4c54c9b2d4a06d8373', 'file'),
        RemoteFile('test_32x32.mat', 'eb5a983be6a315427106f1b164d9cef3', 'file'),
    ), (
        RemoteFile('extra_32x32.mat', 'a93ce644f1a588dc4d68dda5feec44a7', 'file'),
    )),
}

#: The dataset names, in the order commands list them.
DATASET_NAMES = tuple(DATASETS)
#: Validation images taken from the end of each training file by default.
DEFAULT_VALID_SIZE = {name: info.valid_size for name, info in DATASETS.items()}


def check_name(name):
    """Raise :class:`DatasetError` unless ``name`` is a key of :data:`DATASETS`."""
    if name not in DATASETS:
        raise DatasetError('unknown dataset %r; choose one of %s' % (name, ', '.join(DATASET_NAMES)))
