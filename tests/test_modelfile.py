"""Tests for binary_net.modelfile: round trips, the on-disk layout, atomic saving,
and a one-line ModelFileError for every kind of bad file."""
import gc
import os
import zipfile

import numpy as np
import pytest
import theano
import theano.tensor as T
import lasagne

from binary_net import modelfile, networks
from binary_net.modelfile import ModelFileError, check_shapes, load_model, save_model
from helpers import assert_one_line_error


def tiny_spec():
    return networks.make_spec(
        'tiny', (None, 1, 6, 6),
        [networks.xnor_conv(3, pad=1), networks.batch_norm(), networks.max_pool(),
         networks.xnor_dense(5), networks.batch_norm(), networks.dropout(0.5),
         networks.dense(4), networks.batch_norm()],
        'squared_hinge')


def random_values(params, seed):
    rng = np.random.RandomState(seed)
    values = []
    for p in params:
        v = p.get_value()
        r = rng.uniform(-1, 1, v.shape)
        if p.name == 'inv_std':
            r = np.abs(r) + 0.5
        values.append(r.astype(v.dtype))
    return values


@pytest.fixture
def saved(tmp_path):
    spec = tiny_spec()
    net = networks.build(spec)
    params = lasagne.layers.get_all_params(net)
    values = random_values(params, 0)
    path = str(tmp_path / 'model.npz')
    save_model(path, values, spec, extra={'epoch': 3, 'val_error': 0.25})
    return dict(spec=spec, values=values, path=path, params=params)


# ---------------------------------------------------------------------------
# Round trip and layout
# ---------------------------------------------------------------------------

def test_round_trip_reproduces_network_outputs_bitwise(saved):
    spec = saved['spec']
    x = T.tensor4('x')
    net1 = networks.build(spec, input_var=x)
    lasagne.layers.set_all_param_values(net1, saved['values'])
    values, loaded_spec, extra = load_model(saved['path'])
    net2 = networks.build(loaded_spec, input_var=x)
    check_shapes(values, lasagne.layers.get_all_params(net2), saved['path'])
    lasagne.layers.set_all_param_values(net2, values)
    f = theano.function([x], [lasagne.layers.get_output(net1, deterministic=True),
                              lasagne.layers.get_output(net2, deterministic=True)])
    X = np.random.RandomState(1).randn(5, 1, 6, 6).astype(theano.config.floatX)
    y1, y2 = f(X)
    assert y1.shape == (5, 4)
    assert np.unique(y1).size > 10            # a non-trivial output
    assert y1.tobytes() == y2.tobytes()
    # and a network with other values really gives other outputs
    lasagne.layers.set_all_param_values(net2, random_values(
        lasagne.layers.get_all_params(net2), 7))
    assert not np.array_equal(f(X)[1], y1)


def test_values_spec_and_extra_survive(saved):
    values, spec, extra = load_model(saved['path'])
    assert spec == saved['spec']
    assert extra == {'epoch': 3, 'val_error': 0.25}
    assert len(values) == len(saved['values']) == networks.count_arrays(spec)
    for a, b in zip(values, saved['values']):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_file_holds_exactly_positional_arrays(saved):
    with zipfile.ZipFile(saved['path']) as archive:
        names = archive.namelist()
    n = len(saved['values'])
    assert sorted(names) == sorted('arr_%d.npy' % i for i in range(n))
    with np.load(saved['path']) as data:
        assert sorted(data.files) == sorted('arr_%d' % i for i in range(n))
        for i, v in enumerate(saved['values']):
            np.testing.assert_array_equal(data['arr_%d' % i], v)


def test_position_only_file_loads_without_spec(tmp_path, saved):
    path = str(tmp_path / 'old.npz')
    np.savez(path, *saved['values'])
    values, spec, extra = load_model(path)
    assert spec is None and extra == {}
    for a, b in zip(values, saved['values']):
        np.testing.assert_array_equal(a, b)


def test_saving_without_spec(tmp_path):
    path = str(tmp_path / 'plain.npz')
    save_model(path, [np.arange(3.0)])
    values, spec, extra = load_model(path)
    assert spec is None and extra == {}
    np.testing.assert_array_equal(values[0], np.arange(3.0))


def test_saved_file_has_normal_permissions(saved):
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(saved['path']).st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------
# Atomic saving
# ---------------------------------------------------------------------------

class Unpicklable:
    def __reduce__(self):
        raise RuntimeError('cannot pickle this')


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_failing_save_leaves_previous_file_and_no_temp_files(saved):
    path = saved['path']
    with open(path, 'rb') as f:
        before = f.read()
    listing = sorted(os.listdir(os.path.dirname(path)))
    # arr_0 is written, then pickling arr_1 fails half-way through the archive
    bad = np.empty(1, dtype=object)
    bad[0] = Unpicklable()
    with pytest.raises(RuntimeError, match='cannot pickle'):
        save_model(path, [np.ones(1000), bad], saved['spec'])
    gc.collect()   # numpy leaves its ZipFile to the collector after a failed savez
    with open(path, 'rb') as f:
        assert f.read() == before
    assert sorted(os.listdir(os.path.dirname(path))) == listing
    values, spec, _ = load_model(path)
    assert spec == saved['spec']


def test_interrupted_atomic_write_cleans_up(tmp_path):
    path = str(tmp_path / 'x.bin')
    modelfile.atomic_write(path, lambda f: f.write(b'old'))

    def interrupted(f):
        f.write(b'partial data')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        modelfile.atomic_write(path, interrupted)
    assert os.listdir(str(tmp_path)) == ['x.bin']
    with open(path, 'rb') as f:
        assert f.read() == b'old'


def test_save_overwrites_and_creates_directories(tmp_path, saved):
    path = str(tmp_path / 'sub' / 'dir' / 'm.npz')
    save_model(path, saved['values'][:2], None)
    save_model(path, saved['values'][:3], saved['spec'])
    values, spec, _ = load_model(path)
    assert len(values) == 3 and spec == saved['spec']
    assert os.listdir(os.path.dirname(path)) == ['m.npz']


# ---------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('keep', [0.1, 0.5, 0.9, 0.995])
def test_truncated_file_raises(saved, keep):
    with open(saved['path'], 'rb') as f:
        data = f.read()
    with open(saved['path'], 'wb') as f:
        f.write(data[:int(len(data) * keep)])
    with pytest.raises(ModelFileError) as excinfo:
        load_model(saved['path'])
    assert_one_line_error(excinfo, saved['path'])


def test_corrupted_array_bytes_raise(saved):
    with open(saved['path'], 'rb') as f:
        data = bytearray(f.read())
    data[200] ^= 0xFF              # inside arr_0's data: the CRC no longer matches
    with open(saved['path'], 'wb') as f:
        f.write(bytes(data))
    with pytest.raises(ModelFileError) as excinfo:
        load_model(saved['path'])
    assert_one_line_error(excinfo, saved['path'])


def test_random_bytes_raise(tmp_path):
    path = str(tmp_path / 'noise.npz')
    with open(path, 'wb') as f:
        f.write(np.random.RandomState(0).bytes(5000))
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, path)


def test_empty_file_raises(tmp_path):
    path = str(tmp_path / 'empty.npz')
    open(path, 'wb').close()
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, path)


def test_foreign_npz_raises(tmp_path):
    path = str(tmp_path / 'foreign.npz')
    np.savez(path, weights=np.ones(3), bias=np.zeros(2))
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, path, 'arr_0')


def test_npz_with_gap_in_positions_raises(tmp_path):
    path = str(tmp_path / 'gap.npz')
    np.savez(path, arr_0=np.ones(3), arr_2=np.zeros(2))
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, path)


def test_pickled_object_array_is_refused(tmp_path):
    path = str(tmp_path / 'pickled.npz')
    obj = np.empty(1, dtype=object)
    obj[0] = {'a': 1}
    np.savez(path, np.ones(2), obj)
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, path)


def test_missing_file_raises(tmp_path):
    path = str(tmp_path / 'nope.npz')
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, path, 'not found')
    with pytest.raises(ModelFileError):
        load_model(str(tmp_path))          # a directory is not a model file either


def test_wrong_shapes_raise(saved):
    values = list(saved['values'])
    params = saved['params']
    check_shapes(values, params, saved['path'])          # fits: no error
    values[1] = np.zeros(7, values[1].dtype)
    with pytest.raises(ModelFileError) as excinfo:
        check_shapes(values, params, saved['path'])
    assert_one_line_error(excinfo, saved['path'], 'arr_1', '(7,)',
                          str(params[1].get_value().shape))
    with pytest.raises(ModelFileError) as excinfo:
        check_shapes(values[:-1], params, saved['path'])
    assert_one_line_error(excinfo, str(len(values) - 1), str(len(params)))


def test_model_file_error_is_an_exception():
    assert issubclass(ModelFileError, Exception)
