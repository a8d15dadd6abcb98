"""pylearn2 master through binary_net.compat's repairs, and --loader pylearn2.

The tests that need pylearn2 skip where it is not installed (it is not on PyPI for
Python 3; see the README for running them against its master).
"""
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from binary_net import data as datasets

HAVE_PYLEARN2 = importlib.util.find_spec('pylearn2') is not None
needs_pylearn2 = pytest.mark.skipif(not HAVE_PYLEARN2,
                                    reason='pylearn2 is not installed (not on PyPI for '
                                           'Python 3); run by hand with its master on the path')
MNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
               't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


@pytest.fixture(scope='module')
def mnist_raw_root(mnist_root, tmp_path_factory):
    """A copy of the real MNIST .gz files, plus the uncompressed IDX files beside them."""
    root = tmp_path_factory.mktemp('pl2data')
    (root / 'mnist').mkdir()
    gz = []
    for name in MNIST_FILES:
        source = os.path.join(mnist_root, 'mnist', name + '.gz')
        if not os.path.isfile(source):
            pytest.skip('the real MNIST .gz files are not in %s' % mnist_root)
        shutil.copy(source, str(root / 'mnist' / (name + '.gz')))
        gz.append(str(root / 'mnist' / (name + '.gz')))
    written = datasets.gunzip_idx_files(gz)
    assert written == [path[:-3] for path in gz]
    return str(root)


def test_gunzip_leaves_the_uncompressed_idx_files(mnist_raw_root, mnist_root):
    import gzip
    for name in MNIST_FILES:
        raw = os.path.join(mnist_raw_root, 'mnist', name)
        with gzip.open(os.path.join(mnist_root, 'mnist', name + '.gz'), 'rb') as f:
            assert open(raw, 'rb').read() == f.read()
    # kept, not rewritten, on a second call
    before = os.stat(os.path.join(mnist_raw_root, 'mnist', MNIST_FILES[0])).st_mtime_ns
    datasets.gunzip_idx_files([os.path.join(mnist_raw_root, 'mnist', MNIST_FILES[0] + '.gz')])
    assert os.stat(os.path.join(mnist_raw_root, 'mnist', MNIST_FILES[0])).st_mtime_ns == before


@pytest.mark.skipif(HAVE_PYLEARN2, reason='pylearn2 is installed')
def test_loader_pylearn2_without_pylearn2_is_a_clear_error(tmp_path):
    with pytest.raises(datasets.DatasetError, match='--loader pylearn2 needs pylearn2'):
        datasets.load('mnist', str(tmp_path), loader='pylearn2')
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(repo, 'train', 'mnist_train.py'),
                             '--data-path', str(tmp_path), '--loader', 'pylearn2'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: --loader pylearn2 needs pylearn2')


@needs_pylearn2
def test_compat_repairs_let_pylearn2_import():
    import collections

    import pylearn2.datasets.mnist  # noqa: F401
    import pylearn2.space  # noqa: F401  (imported the removed theano.sandbox.cuda)
    import six
    import theano.compat
    import theano.sandbox.cuda
    from pylearn2.datasets import cifar10, svhn  # noqa: F401
    assert theano.compat.six is six
    assert theano.sandbox.cuda.cuda_available is False
    assert collections.Sized is collections.abc.Sized
    if importlib.util.find_spec('tables'):
        import tables
        assert tables.openFile is tables.open_file
        assert tables.File.getNode is tables.File.get_node


@needs_pylearn2
def test_pylearn2_mnist_equals_this_packages_loader(mnist_raw_root, monkeypatch):
    ours = datasets.load('mnist', mnist_raw_root)
    theirs = datasets.load('mnist', mnist_raw_root, loader='pylearn2')
    for split in ('train', 'test'):
        for a, b in zip(ours[split], theirs[split]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    # and the float pixels pylearn2 gives are bitwise the ones this package trains on
    from pylearn2.datasets.mnist import MNIST
    monkeypatch.setenv('PYLEARN2_DATA_PATH', mnist_raw_root)
    X = MNIST(which_set='test').X
    np.testing.assert_array_equal(X.reshape(-1, 1, 28, 28) * 2.0 - 1.0,
                                  datasets.to_unit_range(ours['test'][0]))
    splits = datasets.prepare_original('mnist', mnist_raw_root, loader='pylearn2')
    np.testing.assert_array_equal(splits.y_valid, ours['train'][1][40000:50000])


@needs_pylearn2
def test_pylearn2_cifar10_equals_this_packages_loader():
    root = os.environ.get('PYLEARN2_DATA_PATH')
    if not root or not os.path.isfile(os.path.join(root, datasets.CIFAR10_DIR, 'data_batch_5')):
        pytest.skip('CIFAR-10 batches not under $PYLEARN2_DATA_PATH')
    ours = datasets.load('cifar10', root)
    theirs = datasets.load('cifar10', root, loader='pylearn2')
    for split in ('train', 'test'):
        for a, b in zip(ours[split], theirs[split]):
            np.testing.assert_array_equal(a, b)
