"""Tests for binary_net.data on tiny files written in the official formats."""
import doctest
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
import scipy.io

from binary_net import data as datasets
from binary_net.data import cli
from binary_net.data import DatasetError

REAL_DATA_ROOT = '/work/shared/data'
DEBIAN_DATASETS = '/usr/share/datasets'


# ---------------------------------------------------------------------------
# Writers for the official formats
# ---------------------------------------------------------------------------

def idx_bytes(array):
    """An IDX file of unsigned bytes, as MNIST ships it."""
    array = np.asarray(array, dtype=np.uint8)
    header = b'\x00\x00\x08' + bytes([array.ndim]) + struct.pack('>%dI' % array.ndim, *array.shape)
    return header + array.tobytes()


def write_file(path, content, gz=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if gz:
        path += '.gz'
        content = gzip.compress(content)
    with open(path, 'wb') as stream:
        stream.write(content)
    return path


def make_idx_dataset(root, subdir='mnist', n_train=30, n_test=8, gz=True, seed=0):
    """Write the four IDX files; return {'train': (X, y), 'test': (X, y)} as written."""
    rng = np.random.RandomState(seed)
    written = {}
    for split, count, prefix in (('train', n_train, 'train'), ('test', n_test, 't10k')):
        images = rng.randint(0, 256, size=(count, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=count).astype(np.uint8)
        directory = os.path.join(root, subdir)
        write_file(os.path.join(directory, prefix + '-images-idx3-ubyte'), idx_bytes(images), gz)
        write_file(os.path.join(directory, prefix + '-labels-idx1-ubyte'), idx_bytes(labels), gz)
        written[split] = (images, labels)
    return written


def cifar_batch(rng, count, str_keys=False):
    batch = {b'batch_label': b'testing batch',
             b'labels': [int(v) for v in rng.randint(0, 10, size=count)],
             b'data': rng.randint(0, 256, size=(count, 3072)).astype(np.uint8),
             b'filenames': [b'img_%d.png' % i for i in range(count)]}
    if str_keys:
        batch = {key.decode(): value for key, value in batch.items()}
    return batch


def cifar_batches(per_batch=4, str_keys=False, seed=1):
    rng = np.random.RandomState(seed)
    names = datasets.CIFAR10_TRAIN_BATCHES + (datasets.CIFAR10_TEST_BATCH,)
    return {name: cifar_batch(rng, per_batch, str_keys) for name in names}


def make_cifar(root, per_batch=4, str_keys=False):
    """Write the six batch pickles (protocol 2, as Python 2 did); return the batches."""
    batches = cifar_batches(per_batch, str_keys)
    directory = os.path.join(root, 'cifar10', 'cifar-10-batches-py')
    os.makedirs(directory, exist_ok=True)
    for name, batch in batches.items():
        with open(os.path.join(directory, name), 'wb') as stream:
            pickle.dump(batch, stream, protocol=2)
    return batches


def svhn_arrays(count, seed):
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(32, 32, 3, count)).astype(np.uint8)
    y = rng.randint(1, 11, size=(count, 1)).astype(np.uint8)
    y[0, 0] = 10  # always include the label that means digit 0
    return X, y


def write_svhn(path, X, y):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {'X': X, 'y': y}, format='5')


def make_svhn(root, counts=(('train', 6), ('test', 5), ('extra', 3))):
    written = {}
    for seed, (split, count) in enumerate(counts):
        X, y = svhn_arrays(count, seed)
        write_svhn(os.path.join(root, 'SVHN', 'format2', '%s_32x32.mat' % split), X, y)
        written[split] = (X, y)
    return written


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert '\n' not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ---------------------------------------------------------------------------
# Data root and MNIST / Fashion-MNIST
# ---------------------------------------------------------------------------

def test_data_root_prefers_argument_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv('PYLEARN2_DATA_PATH', str(tmp_path / 'env'))
    assert datasets.data_root(str(tmp_path / 'arg')) == str(tmp_path / 'arg')
    assert datasets.data_root() == str(tmp_path / 'env')
    monkeypatch.delenv('PYLEARN2_DATA_PATH')
    assert datasets.data_root() == os.path.expanduser(os.path.join('~', 'pylearn2_data'))


@pytest.mark.parametrize('gz', [False, True], ids=['raw', 'gz'])
def test_load_mnist_returns_exactly_what_was_written(tmp_path, gz):
    written = make_idx_dataset(str(tmp_path), gz=gz)
    loaded = datasets.load_mnist(str(tmp_path))
    for split in ('train', 'test'):
        X, y = loaded[split]
        images, labels = written[split]
        assert X.dtype == np.uint8 and X.shape == (len(images), 1, 28, 28)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(X[:, 0], images)
        np.testing.assert_array_equal(y, labels)


def test_load_reads_from_environment_root(tmp_path, monkeypatch):
    written = make_idx_dataset(str(tmp_path))
    monkeypatch.setenv('PYLEARN2_DATA_PATH', str(tmp_path))
    np.testing.assert_array_equal(datasets.load('mnist')['test'][1], written['test'][1])


def test_raw_idx_file_wins_over_gz(tmp_path):
    make_idx_dataset(str(tmp_path), gz=True, seed=0)
    raw = make_idx_dataset(str(tmp_path), gz=False, seed=1)
    np.testing.assert_array_equal(datasets.load_mnist(str(tmp_path))['train'][1], raw['train'][1])


def test_load_fashion_mnist_from_its_own_directory(tmp_path):
    written = make_idx_dataset(str(tmp_path), subdir='fashion-mnist', n_train=5, n_test=3)
    loaded = datasets.load('fashion-mnist', str(tmp_path))
    np.testing.assert_array_equal(loaded['train'][0][:, 0], written['train'][0])
    np.testing.assert_array_equal(loaded['test'][1], written['test'][1])


def test_missing_mnist_names_path_and_download_command(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_mnist(str(tmp_path))
    assert str(excinfo.value) == (
        'MNIST not found: %s is missing; run: python -m binary_net download mnist '
        '--data-path %s' % (tmp_path / 'mnist' / 'train-images-idx3-ubyte(.gz)', tmp_path))


def test_missing_label_file_is_named(tmp_path):
    make_idx_dataset(str(tmp_path), gz=False)
    os.remove(tmp_path / 'mnist' / 't10k-labels-idx1-ubyte')
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_mnist(str(tmp_path))
    assert_one_line_error(excinfo, 't10k-labels-idx1-ubyte(.gz) is missing', 'download mnist')


def _corrupt(name, transform):
    """Apply ``transform(bytes) -> bytes`` to the raw MNIST file ``name``."""
    def apply(directory):
        path = os.path.join(directory, name)
        with open(path, 'rb') as stream:
            content = stream.read()
        with open(path, 'wb') as stream:
            stream.write(transform(content))
        return name
    return apply


CORRUPTIONS = {
    'bad magic': _corrupt('train-images-idx3-ubyte', lambda c: b'\x12\x34' + c[2:]),
    'element type': _corrupt('train-images-idx3-ubyte', lambda c: c[:2] + b'\x0d' + c[3:]),
    'truncated data': _corrupt('train-images-idx3-ubyte', lambda c: c[:-5]),
    'truncated header': _corrupt('train-labels-idx1-ubyte', lambda c: c[:6]),
    'trailing data': _corrupt('t10k-images-idx3-ubyte', lambda c: c + b'\x00'),
    'wrong image size': _corrupt('train-images-idx3-ubyte', lambda c: idx_bytes(np.zeros((30, 27, 27)))),
    'count mismatch': _corrupt('train-labels-idx1-ubyte', lambda c: idx_bytes(np.zeros(29))),
    'label out of range': _corrupt('t10k-labels-idx1-ubyte', lambda c: idx_bytes(np.full(8, 10))),
    'empty file': _corrupt('t10k-labels-idx1-ubyte', lambda c: b''),
}


@pytest.mark.parametrize('corruption', sorted(CORRUPTIONS))
def test_corrupt_idx_file_raises_error_naming_it(tmp_path, corruption):
    make_idx_dataset(str(tmp_path), gz=False)
    name = CORRUPTIONS[corruption](str(tmp_path / 'mnist'))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_mnist(str(tmp_path))
    assert_one_line_error(excinfo, name)


@pytest.mark.parametrize('content', [b'this is not gzip', gzip.compress(b'\x00' * 2000)[:30]],
                         ids=['garbage', 'truncated'])
def test_bad_gzip_raises_error_naming_file(tmp_path, content):
    make_idx_dataset(str(tmp_path), gz=True)
    with open(tmp_path / 'mnist' / 't10k-images-idx3-ubyte.gz', 'wb') as stream:
        stream.write(content)
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_mnist(str(tmp_path))
    assert_one_line_error(excinfo, 't10k-images-idx3-ubyte.gz', 'gzip')


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match='unknown dataset'):
        datasets.load('imagenet')


# ---------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('str_keys', [False, True], ids=['bytes-keys', 'str-keys'])
def test_load_cifar10_returns_batches_in_order(tmp_path, str_keys):
    batches = make_cifar(str(tmp_path), per_batch=4, str_keys=str_keys)
    loaded = datasets.load_cifar10(str(tmp_path))
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    train = [batches[name] for name in datasets.CIFAR10_TRAIN_BATCHES]
    X, y = loaded['train']
    assert X.dtype == np.uint8 and X.shape == (20, 3, 32, 32) and y.dtype == np.int64
    np.testing.assert_array_equal(X.reshape(20, 3072), np.concatenate([b[key('data')] for b in train]))
    np.testing.assert_array_equal(y, np.concatenate([b[key('labels')] for b in train]))
    # Row layout: 1024 red values, then green, then blue, each a 32x32 row-major image.
    first = train[0][key('data')][0]
    np.testing.assert_array_equal(X[0, 1, 2, 3], first[1024 + 2 * 32 + 3])
    X_test, y_test = loaded['test']
    np.testing.assert_array_equal(y_test, batches['test_batch'][key('labels')])
    assert X_test.shape == (4, 3, 32, 32)


def _rewrite_batch(directory, name, batch=None, raw=None):
    with open(os.path.join(directory, name), 'wb') as stream:
        stream.write(raw if raw is not None else pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'not a dict', 'no labels', 'wrong width',
                                    'label count', 'float data'])
def test_corrupt_cifar_batch_raises_error_naming_it(tmp_path, damage):
    batches = make_cifar(str(tmp_path))
    directory = str(tmp_path / 'cifar10' / 'cifar-10-batches-py')
    batch = dict(batches['data_batch_3'])
    if damage == 'garbage':
        _rewrite_batch(directory, 'data_batch_3', raw=b'\x80\x02garbage that is no pickle')
    elif damage == 'truncated':
        _rewrite_batch(directory, 'data_batch_3', raw=pickle.dumps(batch, protocol=2)[:500])
    elif damage == 'not a dict':
        _rewrite_batch(directory, 'data_batch_3', [1, 2, 3])
    else:
        if damage == 'no labels':
            del batch[b'labels']
        elif damage == 'wrong width':
            batch[b'data'] = batch[b'data'][:, :3000]
        elif damage == 'label count':
            batch[b'labels'] = batch[b'labels'][:-1]
        elif damage == 'float data':
            batch[b'data'] = batch[b'data'].astype(np.float32)
        _rewrite_batch(directory, 'data_batch_3', batch)
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_cifar10(str(tmp_path))
    assert_one_line_error(excinfo, 'data_batch_3')


def test_missing_cifar_batch_names_path_and_command(tmp_path):
    make_cifar(str(tmp_path))
    os.remove(tmp_path / 'cifar10' / 'cifar-10-batches-py' / 'test_batch')
    with pytest.raises(DatasetError) as excinfo:
        datasets.load('cifar10', str(tmp_path))
    assert_one_line_error(excinfo, 'CIFAR-10 not found: %s is missing'
                          % (tmp_path / 'cifar10' / 'cifar-10-batches-py' / 'test_batch'),
                          'run: python -m binary_net download cifar10 --data-path %s' % tmp_path)


# ---------------------------------------------------------------------------
# SVHN
# ---------------------------------------------------------------------------

def test_load_svhn_transposes_and_maps_label_10_to_0(tmp_path):
    written = make_svhn(str(tmp_path))
    loaded = datasets.load_svhn(str(tmp_path))
    for split in ('train', 'test'):
        X, y = loaded[split]
        X_mat, y_mat = written[split]
        assert X.dtype == np.uint8 and X.shape == (X_mat.shape[3], 3, 32, 32) and y.dtype == np.int64
        np.testing.assert_array_equal(X, X_mat.transpose(3, 2, 0, 1))
        assert X[1, 2, 5, 7] == X_mat[5, 7, 2, 1]  # (image, channel, row, column)
        assert y[0] == 0
        np.testing.assert_array_equal(y, np.where(y_mat[:, 0] == 10, 0, y_mat[:, 0]))


def test_load_svhn_extra_is_appended_to_train(tmp_path):
    written = make_svhn(str(tmp_path))
    X, y = datasets.load('svhn', str(tmp_path), extra=True)['train']
    assert len(X) == 9
    np.testing.assert_array_equal(X[6:], written['extra'][0].transpose(3, 2, 0, 1))
    assert y[6] == 0


def test_missing_svhn_extra_names_extra_option(tmp_path):
    make_svhn(str(tmp_path), counts=(('train', 2), ('test', 2)))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_svhn(str(tmp_path), extra=True)
    assert_one_line_error(excinfo, 'extra_32x32.mat is missing', 'download svhn', '--extra')


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'wrong shape', 'label count'])
def test_corrupt_svhn_file_raises_error_naming_it(tmp_path, damage):
    make_svhn(str(tmp_path), counts=(('train', 4), ('test', 3)))
    path = str(tmp_path / 'SVHN' / 'format2' / 'train_32x32.mat')
    if damage == 'garbage':
        with open(path, 'wb') as stream:
            stream.write(b'MATLAB? no, garbage' * 20)
    elif damage == 'truncated':
        with open(path, 'rb') as stream:
            content = stream.read()
        with open(path, 'wb') as stream:
            stream.write(content[:len(content) // 2])
    elif damage == 'wrong shape':
        write_svhn(path, np.zeros((28, 28, 3, 4), np.uint8), np.ones((4, 1), np.uint8))
    else:
        write_svhn(path, np.zeros((32, 32, 3, 4), np.uint8), np.ones((3, 1), np.uint8))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_svhn(str(tmp_path))
    assert_one_line_error(excinfo, 'train_32x32.mat')


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------

def test_to_unit_range_maps_0_and_255_to_minus_one_and_one():
    X = np.array([[0, 51, 255]], dtype=np.uint8)
    result = datasets.to_unit_range(X)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [[-1., 51 / 255 * 2 - 1, 1.]], rtol=1e-6)


def test_hinge_targets_are_plus_one_at_label_minus_one_elsewhere():
    targets = datasets.hinge_targets(np.array([2, 0, 9]))
    assert targets.dtype == np.float32 and targets.shape == (3, 10)
    expected = -np.ones((3, 10), np.float32)
    expected[[0, 1, 2], [2, 0, 9]] = 1
    np.testing.assert_array_equal(targets, expected)
    assert datasets.hinge_targets([1], num_classes=3).tolist() == [[-1, 1, -1]]
    for bad in ([10], [-1], [[1]], [0.5]):
        with pytest.raises(ValueError):
            datasets.hinge_targets(bad)


def test_global_contrast_normalize_gives_zero_mean_and_scaled_std():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(5, 3, 4, 4)).astype(np.uint8)
    X[4] = 7  # a constant image must stay finite
    result = datasets.global_contrast_normalize(X, scale=55.)
    assert result.dtype == np.float32 and result.shape == X.shape
    flat = result.reshape(5, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(flat[:4].std(axis=1), 55., rtol=1e-5)
    np.testing.assert_array_equal(flat[4], 0)


def test_zca_whitened_training_data_has_identity_covariance():
    rng = np.random.RandomState(0)
    mixing = rng.randn(6, 6)
    X = (rng.randn(2000, 6) @ mixing + 3.).reshape(2000, 1, 2, 3)
    whitened = datasets.ZCA(filter_bias=1e-9).fit(X).apply(X)
    assert whitened.dtype == np.float32 and whitened.shape == X.shape
    flat = whitened.reshape(2000, 6).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.T @ flat / 2000, np.eye(6), atol=1e-4)
    # ZCA (unlike other whitenings) is symmetric: it changes the data as little as possible.
    zca = datasets.ZCA(filter_bias=0.).fit(X)
    np.testing.assert_allclose(zca.whitening_, zca.whitening_.T, atol=1e-10)


def test_zca_filter_bias_shrinks_small_directions_like_pylearn2():
    rng = np.random.RandomState(1)
    X = rng.randn(5000, 3) * np.array([10., 1., 0.1])
    flat = datasets.ZCA().fit(X).apply(X).astype(np.float64)
    variances = np.diag(flat.T @ flat / len(flat))
    empirical = X.var(axis=0)
    # Per direction: variance / (variance + 0.1) (axes are nearly uncorrelated here).
    np.testing.assert_allclose(variances, empirical / (empirical + 0.1), atol=0.02)


def test_zca_errors():
    with pytest.raises(ValueError):
        datasets.ZCA().apply(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        datasets.ZCA().fit(np.zeros((4, 3))).apply(np.zeros((2, 5)))
    with pytest.raises(ValueError):
        datasets.ZCA(filter_bias=-1)


def test_prepare_splits_last_images_off_for_validation(tmp_path):
    written = make_idx_dataset(str(tmp_path), n_train=30, n_test=8)
    splits = datasets.prepare('mnist', str(tmp_path), train_size=15, valid_size=10)
    assert isinstance(splits, datasets.Splits)
    images, labels = written['train']
    np.testing.assert_array_equal(splits.X_train, datasets.to_unit_range(images[:15, None]))
    np.testing.assert_array_equal(splits.y_train, labels[:15])
    np.testing.assert_array_equal(splits.X_valid, datasets.to_unit_range(images[20:, None]))
    np.testing.assert_array_equal(splits.y_valid, labels[20:])
    np.testing.assert_array_equal(splits.y_test, written['test'][1])
    for X in (splits.X_train, splits.X_valid, splits.X_test):
        assert X.dtype == np.float32 and X.shape[1:] == (1, 28, 28)
        assert X.min() >= -1 and X.max() <= 1
    for y in (splits.y_train, splits.y_valid, splits.y_test):
        assert y.dtype == np.int64
    assert datasets.hinge_targets(splits.y_train).shape == (15, 10)


def test_prepare_default_sizes(tmp_path):
    make_idx_dataset(str(tmp_path), n_train=30)
    splits = datasets.prepare('mnist', str(tmp_path), valid_size=0)
    assert len(splits.X_train) == 30 and splits.X_valid.shape == (0, 1, 28, 28)
    assert datasets.DEFAULT_VALID_SIZE == {'mnist': 10000, 'fashion-mnist': 10000,
                                           'cifar10': 5000, 'svhn': 5000}
    with pytest.raises(DatasetError, match='valid_size=10000'):
        datasets.prepare('mnist', str(tmp_path))  # the default 10000 does not fit 30 images


@pytest.mark.parametrize('sizes', [dict(valid_size=-1), dict(valid_size=30), dict(valid_size=2.5),
                                   dict(valid_size=True), dict(valid_size=10, train_size=0),
                                   dict(valid_size=10, train_size=21), dict(valid_size=10, train_size='5')])
def test_prepare_rejects_invalid_sizes(tmp_path, sizes):
    make_idx_dataset(str(tmp_path), n_train=30)
    with pytest.raises(DatasetError):
        datasets.prepare('mnist', str(tmp_path), **sizes)


def test_prepare_gcn_normalizes_each_image(tmp_path):
    make_cifar(str(tmp_path), per_batch=3)
    splits = datasets.prepare('cifar10', str(tmp_path), valid_size=5, gcn=True)
    assert splits.X_train.shape == (10, 3, 32, 32) and splits.X_valid.shape == (5, 3, 32, 32)
    for X in (splits.X_train, splits.X_valid, splits.X_test):
        flat = X.reshape(len(X), -1)
        assert X.dtype == np.float32
        np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-3)
        np.testing.assert_allclose(flat.std(axis=1), 55., rtol=1e-4)


def test_prepare_fits_zca_on_the_training_split_only(tmp_path):
    make_idx_dataset(str(tmp_path), n_train=40, n_test=8)
    plain = datasets.prepare('mnist', str(tmp_path), valid_size=10, gcn=True)
    whitened = datasets.prepare('mnist', str(tmp_path), valid_size=10, gcn=True, zca=True)
    zca = datasets.ZCA().fit(plain.X_train)
    for name in ('X_train', 'X_valid', 'X_test'):
        np.testing.assert_allclose(getattr(whitened, name), zca.apply(getattr(plain, name)),
                                   rtol=1e-4, atol=1e-4)
    # Centred with the training mean: the training split has zero mean, the others not.
    np.testing.assert_allclose(whitened.X_train.mean(axis=0), 0, atol=1e-3)
    assert np.abs(whitened.X_test.mean(axis=0)).max() > 1e-2
    assert whitened.X_train.shape == (30, 1, 28, 28) and whitened.X_valid.shape == (10, 1, 28, 28)


def test_prepare_svhn_maps_labels(tmp_path):
    make_svhn(str(tmp_path))
    splits = datasets.prepare('svhn', str(tmp_path), valid_size=2, extra=True)
    assert len(splits.X_train) == 7 and len(splits.X_valid) == 2 and splits.y_train[0] == 0


# ---------------------------------------------------------------------------
# Downloading, against a local HTTP server
# ---------------------------------------------------------------------------

class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` and honours ``Range: bytes=N-`` when ``server.honor_range``."""

    def do_GET(self):
        server = self.server
        requested_range = self.headers.get('Range')
        server.requests.append((self.path, requested_range))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        status, start = 200, 0
        if requested_range and server.honor_range:
            start = int(requested_range.split('=')[1].split('-')[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header('Content-Range', 'bytes */%d' % len(body))
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        if status == 206:
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(body) - 1, len(body)))
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        # cut_after simulates a dropped connection: fewer bytes than announced.
        self.wfile.write(body[start:start + server.cut_after] if server.cut_after else body[start:])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), RangeHandler)
    httpd.files, httpd.requests, httpd.honor_range, httpd.cut_after = {}, [], True, None
    httpd.url = 'http://127.0.0.1:%d/' % httpd.server_address[1]
    # A short poll interval keeps shutdown() from waiting half a second per test.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def md5(content):
    return hashlib.md5(content).hexdigest()


def serve_mnist(server, n_train=20, n_test=5):
    """Put gzipped MNIST files on the server; return (gz bytes by name, checksums)."""
    rng = np.random.RandomState(3)
    raw = {
        'train-images-idx3-ubyte': idx_bytes(rng.randint(0, 256, (n_train, 28, 28))),
        'train-labels-idx1-ubyte': idx_bytes(rng.randint(0, 10, n_train)),
        't10k-images-idx3-ubyte': idx_bytes(rng.randint(0, 256, (n_test, 28, 28))),
        't10k-labels-idx1-ubyte': idx_bytes(rng.randint(0, 10, n_test)),
    }
    gz = {name + '.gz': gzip.compress(content) for name, content in raw.items()}
    server.files.update({'/mnist/' + name: content for name, content in gz.items()})
    checksums = {name + '.gz': md5(content) for name, content in raw.items()}
    return gz, checksums


def test_download_mnist_then_load(server, tmp_path):
    gz, checksums = serve_mnist(server)
    paths = datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist',
                              checksums=checksums, progress=False)
    assert sorted(os.path.basename(p) for p in paths) == sorted(gz)
    for name, content in gz.items():
        assert (tmp_path / 'mnist' / name).read_bytes() == content
    assert not list((tmp_path / 'mnist').glob('*.part'))
    assert datasets.load_mnist(str(tmp_path))['train'][0].shape == (20, 1, 28, 28)
    # A second run finds verified files and asks for nothing.
    del server.requests[:]
    datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                      checksums=checksums, progress=False)
    assert server.requests == []


def test_download_resumes_partial_file_with_range_request(server, tmp_path):
    gz, checksums = serve_mnist(server)
    name = 'train-images-idx3-ubyte.gz'
    os.makedirs(tmp_path / 'mnist')
    (tmp_path / 'mnist' / (name + '.part')).write_bytes(gz[name][:1000])
    datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                      checksums=checksums, progress=True)  # also runs the progress bar
    assert ('/mnist/' + name, 'bytes=1000-') in server.requests
    assert (tmp_path / 'mnist' / name).read_bytes() == gz[name]
    assert not (tmp_path / 'mnist' / (name + '.part')).exists()


def test_interrupted_download_keeps_part_file_and_resumes(server, tmp_path):
    gz, checksums = serve_mnist(server)
    name = 'train-images-idx3-ubyte.gz'
    server.cut_after = 700
    with pytest.raises(DatasetError) as excinfo:
        datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                          checksums=checksums, progress=False)
    assert_one_line_error(excinfo, name, 'stopped at 700 of %d bytes' % len(gz[name]), 'resume')
    assert (tmp_path / 'mnist' / (name + '.part')).read_bytes() == gz[name][:700]
    assert not (tmp_path / 'mnist' / name).exists()
    server.cut_after = None
    datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                      checksums=checksums, progress=False)
    assert ('/mnist/' + name, 'bytes=700-') in server.requests
    assert (tmp_path / 'mnist' / name).read_bytes() == gz[name]


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    gz, checksums = serve_mnist(server)
    server.honor_range = False
    name = 't10k-labels-idx1-ubyte.gz'
    os.makedirs(tmp_path / 'mnist')
    (tmp_path / 'mnist' / (name + '.part')).write_bytes(b'stale bytes of some other file')
    datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                      checksums=checksums, progress=False)
    assert ('/mnist/' + name, 'bytes=30-') in server.requests
    assert (tmp_path / 'mnist' / name).read_bytes() == gz[name]


def test_download_completes_a_part_file_that_already_holds_everything(server, tmp_path):
    gz, checksums = serve_mnist(server)
    name = 'train-labels-idx1-ubyte.gz'
    os.makedirs(tmp_path / 'mnist')
    (tmp_path / 'mnist' / (name + '.part')).write_bytes(gz[name])
    datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                      checksums=checksums, progress=False)
    assert (tmp_path / 'mnist' / name).read_bytes() == gz[name]


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    _, checksums = serve_mnist(server)
    checksums['train-images-idx3-ubyte.gz'] = '0' * 32
    with pytest.raises(DatasetError) as excinfo:
        datasets.download('mnist', str(tmp_path), base_url=server.url + 'mnist/',
                          checksums=checksums, progress=False)
    assert_one_line_error(excinfo, 'train-images-idx3-ubyte.gz', 'MD5', '0' * 32)
    assert not (tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz').exists()
    assert not (tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz.part').exists()


def test_download_of_missing_url_fails_cleanly(server, tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        datasets.download('svhn', str(tmp_path), base_url=server.url, progress=False)
    assert_one_line_error(excinfo, 'train_32x32.mat', '404')
    assert os.listdir(tmp_path / 'SVHN' / 'format2') == []


def test_download_unreachable_server_suggests_mirror(tmp_path):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(DatasetError) as excinfo:
        datasets.download('mnist', str(tmp_path), base_url='http://127.0.0.1:%d/' % port, progress=False)
    assert_one_line_error(excinfo, '--base-url')


def cifar_archive(batches, evil_member=False):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        members = [('cifar-10-batches-py/' + name, pickle.dumps(batch, protocol=2))
                   for name, batch in batches.items()]
        members.append(('cifar-10-batches-py/readme.html', b'<html></html>'))
        if evil_member:
            members.append(('../escaped', b'must not be written'))
        for member_name, content in members:
            info = tarfile.TarInfo(member_name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_download_cifar10_extracts_batches(server, tmp_path):
    batches = cifar_batches(per_batch=3)
    archive = cifar_archive(batches, evil_member=True)
    server.files['/cifar-10-python.tar.gz'] = archive
    root = tmp_path / 'data'
    datasets.download('cifar10', str(root), base_url=server.url,
                      checksums={'cifar-10-python.tar.gz': md5(archive)}, progress=False)
    X, y = datasets.load_cifar10(str(root))['train']
    assert X.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(y[:3], batches['data_batch_1'][b'labels'])
    assert not (tmp_path / 'escaped').exists() and not (root / 'escaped').exists()
    assert sorted(os.listdir(root / 'cifar10')) == ['cifar-10-batches-py', 'cifar-10-python.tar.gz']


def test_download_svhn_with_extra(server, tmp_path):
    checksums = {}
    for seed, split in enumerate(('train', 'test', 'extra')):
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, dict(zip('Xy', svhn_arrays(2 + seed, seed))), format='5')
        server.files['/%s_32x32.mat' % split] = buffer.getvalue()
        checksums['%s_32x32.mat' % split] = md5(buffer.getvalue())
    datasets.download('svhn', str(tmp_path), base_url=server.url, checksums=checksums,
                      extra=True, progress=False)
    assert len(datasets.load_svhn(str(tmp_path), extra=True)['train'][0]) == 2 + 4


def test_command_line_reports_checksum_failure_as_one_line(server, tmp_path, capsys):
    serve_mnist(server)  # generated files cannot match the official checksums
    status = cli.main(['download', 'mnist', '--data-path', str(tmp_path),
                            '--base-url', server.url + 'mnist/', '--quiet'])
    assert status == 2
    error = capsys.readouterr().err
    assert error.startswith('error: download of ') and error.count('\n') == 1
    assert os.listdir(tmp_path / 'mnist') == []


def test_command_line_check_prints_shapes(tmp_path, capsys):
    make_idx_dataset(str(tmp_path), n_train=6, n_test=2)
    assert cli.main(['check', 'mnist', '--data-path', str(tmp_path)]) == 0
    assert 'mnist train: X uint8 (6, 1, 28, 28), y int64 (6,)' in capsys.readouterr().out
    assert cli.main(['check', 'cifar10', '--data-path', str(tmp_path)]) == 2
    assert 'download cifar10' in capsys.readouterr().err


def test_command_line_help_lists_subcommands():
    result = subprocess.run([sys.executable, '-m', 'binary_net.data', '--help'],
                            capture_output=True, text=True, check=True)
    assert 'download' in result.stdout and 'check' in result.stdout


def test_module_does_not_import_theano_or_lasagne():
    code = ('import sys, binary_net.data; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("theano", "lasagne")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


# ---------------------------------------------------------------------------
# Real data, when this machine has it
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL_DATA_ROOT, 'mnist')),
                    reason='real MNIST not present in /work/shared/data')
def test_real_mnist():
    data = datasets.load_mnist(REAL_DATA_ROOT)
    assert data['train'][0].shape == (60000, 1, 28, 28)
    assert data['test'][0].shape == (10000, 1, 28, 28)
    assert data['train'][1][:5].tolist() == [5, 0, 4, 1, 9]


@pytest.mark.skipif(not os.path.isdir(os.path.join(DEBIAN_DATASETS, 'fashion-mnist')),
                    reason='Debian package dataset-fashion-mnist not installed')
def test_real_fashion_mnist_from_debian_package():
    data = datasets.load_fashion_mnist(DEBIAN_DATASETS)
    assert data['train'][0].shape == (60000, 1, 28, 28)
    assert data['test'][0].shape == (10000, 1, 28, 28)


def test_docstring_examples_hold():
    """The usage Examples in binary_net.data's docstrings run as doctests and hold."""
    result = doctest.testmod(datasets, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 3
