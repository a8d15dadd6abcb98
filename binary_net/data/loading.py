"""Loading a dataset by name, through this package's readers or pylearn2's.

The front of the readers in :mod:`binary_net.data`: :func:`load` checks the name
against the registry and hands over to :mod:`.idx`, :mod:`.cifar10`, :mod:`.svhn`
or, with ``loader='pylearn2'``, :mod:`.via_pylearn2`.
"""
from .cifar10 import load_cifar10
from .idx import load_fashion_mnist, load_mnist
from .registry import check_name
from .svhn import load_svhn
from .via_pylearn2 import load_pylearn2

#: The readers :func:`load` can use: this package's (default) or pylearn2's.
LOADERS = ('binary_net', 'pylearn2')

#: How :func:`load` reads each dataset with this package's readers.
READERS = {'mnist': load_mnist, 'fashion-mnist': load_fashion_mnist,
            'cifar10': load_cifar10, 'svhn': load_svhn}


def load(name, data_path=None, **kwargs):
    """Load a dataset by name.

    Parameters
    ----------
    name : {'mnist', 'fashion-mnist', 'cifar10', 'svhn'}
        The dataset to read.
    data_path : str or None
        The data root (None: ``$PYLEARN2_DATA_PATH``, else ``~/pylearn2_data``).
    **kwargs
        Passed to the loader (``extra=True`` for SVHN); ``loader='pylearn2'`` reads
        through ``pylearn2.datasets`` instead (:func:`~binary_net.data.via_pylearn2.load_pylearn2`).

    Returns
    -------
    dict
        ``{'train': (X, y), 'test': (X, y)}``: uint8 NCHW images and int64 labels.
    """
    check_name(name)
    if kwargs.pop('loader', 'binary_net') == 'pylearn2':
        return load_pylearn2(name, data_path, **kwargs)
    return READERS[name](data_path=data_path, **kwargs)
