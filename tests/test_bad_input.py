"""Every bad input gets one line: crafted model files, non-finite weights, datasets with
impossible headers or string labels, FIFOs, out-of-range arguments. Each case checks
the exit status, the single ``error:`` line (no traceback) and that the files that
existed before are unchanged."""
import importlib.util
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import scipy.io

from binary_net import data as datasets, modelfile, networks
from binary_net.cli import evaluate as evaluation, pack
from binary_net.deploy import packed
from binary_net.data import DatasetError
from binary_net.modelfile import ModelFileError
from helpers import REPO, assert_one_line_error, random_model, run_python, unit_images, write_mnist

MNIST_SPEC = networks.mnist_spec(num_units=16, dropout_p=0)


def mnist_values(seed=0):
    rng = np.random.RandomState(seed)
    return random_model(MNIST_SPEC, unit_images(rng, 16, (1, 28, 28)), rng)


def snapshot(directory):
    """{name: bytes} of every file under ``directory``."""
    found = {}
    for base, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(base, name)
            if os.path.isfile(path):
                found[os.path.relpath(path, directory)] = open(path, 'rb').read()
    return found


def assert_one_error_line(result, *fragments, status=2):
    assert result.returncode == status, (result.returncode, result.stderr)
    assert 'Traceback' not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tool(*args):
    return run_python(['-m', 'binary_net'] + list(args))


def evaluate(*args):
    return run_python([os.path.join('test', 'mnist_test.py')] + list(args))


# ---------------------------------------------------------------------------
# Non-finite parameters: refused at the single reader, in every tool
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def nan_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp('nan')
    values = mnist_values()
    values[0] = values[0].copy()
    values[0][0, 1] = np.nan
    values[0][2] = np.inf
    path = str(directory / 'nan.npz')
    modelfile.save_model(path, values, MNIST_SPEC)
    return path


def test_non_finite_parameters_are_refused_at_load(nan_model):
    with pytest.raises(ModelFileError) as excinfo:
        modelfile.load_model(nan_model)
    assert_one_line_error(excinfo, nan_model, 'arr_0', '1 NaN and 16 infinite values',
                          'non-finite')


@pytest.mark.parametrize('mode', ['float', 'fixed', 'xnor', 'int'])
def test_every_mode_refuses_nan_weights(nan_model, mode, tmp_path):
    before = snapshot(os.path.dirname(nan_model))
    result = evaluate('--model', nan_model, '--mode', mode, '--data-path', str(tmp_path))
    assert_one_error_line(result, 'arr_0', 'NaN')
    assert snapshot(os.path.dirname(nan_model)) == before


def test_summary_export_and_pack_refuse_nan_weights(nan_model, tmp_path):
    before = snapshot(os.path.dirname(nan_model))
    assert_one_error_line(tool('summary', '--model', nan_model), 'arr_0', 'NaN')
    assert_one_error_line(tool('export', '--model', nan_model, '--out', str(tmp_path / 'c')),
                          'arr_0', 'NaN')
    assert not (tmp_path / 'c').exists() or not os.listdir(tmp_path / 'c')
    out = tmp_path / 'nan.packed.npz'
    assert_one_error_line(tool('pack', '--model', nan_model, '--out', str(out)), 'arr_0', 'NaN')
    assert not out.exists() and os.listdir(tmp_path) in ([], ['c'])
    assert snapshot(os.path.dirname(nan_model)) == before


def test_packed_file_with_nan_is_refused(tmp_path):
    path = str(tmp_path / 'm.packed.npz')
    packed.save_packed(path, mnist_values(), MNIST_SPEC)
    with zipfile.ZipFile(path) as archive:
        arrays = {name[:-4]: np.load(io.BytesIO(archive.read(name))) for name in archive.namelist()}
    name = next(key for key in sorted(arrays) if key.endswith('_alpha'))
    arrays[name] = arrays[name].copy()
    arrays[name][0] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError) as excinfo:
        packed.load_packed(path)
    assert_one_line_error(excinfo, path, name, '1 NaN value')


def test_failed_pack_leaves_an_existing_output_unchanged(tmp_path, monkeypatch):
    """pack writes beside --out and moves its file into place only after the round trip."""
    model = str(tmp_path / 'm.npz')
    out = str(tmp_path / 'm.packed.npz')
    modelfile.save_model(model, mnist_values(), MNIST_SPEC)
    with open(out, 'wb') as stream:
        stream.write(b'an older packed file')
    real_load_packed = packed.load_packed

    def corrupting_load(path):   # the round trip reads other scores back
        network, spec, extra = real_load_packed(path)
        scores = network.predict_scores
        network.predict_scores = lambda X, *args, **kwargs: scores(X, *args, **kwargs) + 1
        return network, spec, extra

    monkeypatch.setattr(packed, 'load_packed', corrupting_load)
    args = type('Args', (), dict(model=model, out=out, dataset=None))
    assert pack.run(args) == 2
    assert open(out, 'rb').read() == b'an older packed file'
    assert sorted(os.listdir(tmp_path)) == ['m.npz', 'm.packed.npz']


# ---------------------------------------------------------------------------
# Crafted model files
# ---------------------------------------------------------------------------

def _patch_zip(path, local_offset, central_offset, value, fmt='<H'):
    """Overwrite a field of the first entry's local and central headers."""
    raw = bytearray(open(path, 'rb').read())
    local = raw.index(b'PK\x03\x04')
    central = raw.index(b'PK\x01\x02')
    struct.pack_into(fmt, raw, local + local_offset, value)
    struct.pack_into(fmt, raw, central + central_offset, value)
    with open(path, 'wb') as stream:
        stream.write(bytes(raw))


def _npy_bytes(shape, descr='<f4', data=b''):
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {'descr': descr, 'fortran_order': False,
                                                 'shape': shape})
    return stream.getvalue() + data


def crafted_models(directory):
    """(name, path, expected fragment) of model files built to break the reader."""
    values = mnist_values()
    cases = []

    def saved(name, spec=MNIST_SPEC, arrays=values):
        path = os.path.join(directory, name + '.npz')
        modelfile.save_model(path, arrays, spec)
        return path

    path = saved('encrypted')
    _patch_zip(path, 6, 8, 0x1)
    cases.append(('encrypted', path, 'is encrypted'))
    path = saved('compression')
    _patch_zip(path, 8, 10, 93)
    cases.append(('compression', path, 'compression method 93'))
    strings = list(values)
    strings[1] = np.array(['x'] * 16)
    cases.append(('string dtype', saved('strings', arrays=strings), 'dtype <U1'))
    spec = json.loads(json.dumps(MNIST_SPEC))
    spec['layers'][0]['num_units'] = 'sixteen'
    cases.append(('num_units', saved('num_units', spec), "num_units must be an integer"))
    spec = json.loads(json.dumps(MNIST_SPEC))
    spec['layers'][0]['num_units'] = 16.5
    cases.append(('fractional num_units', saved('fraction', spec), 'got 16.5'))
    spec = json.loads(json.dumps(MNIST_SPEC))
    spec['input_shape'] = [None, 1, 100000, 1000000]
    cases.append(('huge input', saved('huge_input', spec), 'values per sample'))
    path = os.path.join(directory, 'huge_header.npz')
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('arr_0.npy', _npy_bytes((10 ** 11,), data=b'\0' * 64))
    cases.append(('header shape 10^11', path, 'promises shape (100000000000,)'))
    path = os.path.join(directory, 'not_json.npz')
    modelfile.save_model(path, values, MNIST_SPEC)
    with zipfile.ZipFile(path, 'a') as archive:
        archive.comment = modelfile.COMMENT_PREFIX + b'[1, 2]'
    cases.append(('description not a dict', path, 'corrupt network description'))
    return cases


def test_crafted_model_files_are_one_line_errors(tmp_path):
    cases = crafted_models(str(tmp_path))
    for name, path, fragment in cases:
        with pytest.raises(ModelFileError) as excinfo:
            modelfile.load_model(path)
        assert_one_line_error(excinfo, path, fragment)
        assert not packed.is_packed(path)


def test_crafted_model_files_in_every_tool(tmp_path):
    data = str(tmp_path / 'data')
    write_mnist(data, np.random.RandomState(0), 20, 10)
    models = tmp_path / 'models'
    models.mkdir()
    cases = crafted_models(str(models))
    before = snapshot(str(tmp_path))
    for name, path, fragment in cases:
        assert_one_error_line(tool('summary', '--model', path), fragment)
        assert_one_error_line(evaluate('--model', path, '--data-path', data), fragment)
    assert_one_error_line(tool('pack', '--model', cases[0][1], '--out', str(tmp_path / 'p.npz')),
                          cases[0][2])
    assert snapshot(str(tmp_path)) == before


def _packed_conv_file(path):
    spec = networks.make_spec('pool', (None, 1, 8, 8),
                              [networks.xnor_conv(4), networks.max_pool(), networks.batch_norm(),
                               networks.dense(10)], 'cross_entropy')
    rng = np.random.RandomState(2)
    packed.save_packed(path, random_model(spec, unit_images(rng, 8, (1, 8, 8)), rng), spec)


def _rewrite_packed_header(path, change):
    with zipfile.ZipFile(path) as archive:
        arrays = {name[:-4]: np.load(io.BytesIO(archive.read(name))) for name in archive.namelist()}
    header = json.loads(arrays[packed.PACKED_MARKER].tobytes().decode())
    change(header)
    arrays[packed.PACKED_MARKER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)


def _set_pool(header, value):
    next(op for op in header['ops'] if op['op'] == 'max_pool')['pool_size'] = value


@pytest.mark.parametrize('change, fragment', [
    (lambda h: _set_pool(h, [0, 0]), 'pool_size must be an integer 1..'),
    (lambda h: _set_pool(h, 'big'), "got 'big'"),
    (lambda h: h.update(input_shape=[1, 100000, 1000000]), 'values per sample'),
    (lambda h: h['ops'][0].update(stride=[1, -1]), 'stride must be'),
    (lambda h: h['ops'][0].update(filter_shape=[4, 1, 3]), 'filter_shape must be 4 positive'),
    (lambda h: h.update(ops={'not': 'a list'}), 'ops must be a list'),
])
def test_crafted_packed_headers_are_one_line_errors(tmp_path, change, fragment):
    path = str(tmp_path / 'p.packed.npz')
    _packed_conv_file(path)
    packed.load_packed(path)        # the untouched file loads
    _rewrite_packed_header(path, change)
    before = open(path, 'rb').read()
    with pytest.raises(ModelFileError) as excinfo:
        packed.load_packed(path)
    assert_one_line_error(excinfo, path, fragment)
    result = tool('summary', '--model', path)
    assert_one_error_line(result, fragment)
    assert open(path, 'rb').read() == before


# ---------------------------------------------------------------------------
# FIFOs and other non-regular files
# ---------------------------------------------------------------------------

def test_fifo_as_model_is_refused_at_once(tmp_path):
    fifo = str(tmp_path / 'model.npz')
    os.mkfifo(fifo)
    assert not packed.is_packed(fifo)
    for result in (evaluate('--model', fifo, '--data-path', str(tmp_path)),
                   tool('summary', '--model', fifo),
                   tool('pack', '--model', fifo, '--out', str(tmp_path / 'out.npz')),
                   tool('export', '--model', fifo, '--out', str(tmp_path / 'c'))):
        assert_one_error_line(result, fifo, 'is a FIFO (named pipe), not a regular file')
    assert sorted(os.listdir(tmp_path)) == ['model.npz']
    with pytest.raises(ModelFileError) as excinfo:
        modelfile.load_model('/dev/zero')
    assert_one_line_error(excinfo, '/dev/zero is a character device')


def test_fifo_or_directory_as_dataset_file_is_refused(tmp_path):
    root = str(tmp_path)
    write_mnist(root, np.random.RandomState(0), 20, 10)
    images = os.path.join(root, 'mnist', 'train-images-idx3-ubyte.gz')
    os.remove(images)
    os.mkfifo(images)
    result = run_python(['-m', 'binary_net.data', 'check', 'mnist', '--data-path', root])
    assert_one_error_line(result, images, 'is a FIFO')
    cifar = os.path.join(root, 'cifar10', 'cifar-10-batches-py')
    os.makedirs(os.path.join(cifar, 'data_batch_1'))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_cifar10(root)
    assert_one_line_error(excinfo, 'data_batch_1 is a directory')


# ---------------------------------------------------------------------------
# Datasets: impossible headers, string labels
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('shape', [(65536,) * 4, (2 ** 32 - 1,) * 3, (2 ** 32 - 1, 2)])
def test_idx_header_with_overflowing_size(tmp_path, shape):
    path = str(tmp_path / 'images-idx')
    with open(path, 'wb') as stream:
        stream.write(b'\x00\x00\x08' + bytes([len(shape)]) + struct.pack('>%dI' % len(shape), *shape)
                     + b'\x01' * 100)
    with pytest.raises(DatasetError) as excinfo:
        datasets.read_idx(path)
    promised = 1
    for size in shape:
        promised *= size
    assert_one_line_error(excinfo, path, 'is truncated', 'promises %d bytes' % promised,
                          'file holds 100')
    assert '-' not in str(excinfo.value).split('promises')[1]


def test_cifar_labels_stored_as_strings(tmp_path):
    directory = tmp_path / 'cifar10' / 'cifar-10-batches-py'
    directory.mkdir(parents=True)
    for name in datasets.CIFAR10_TRAIN_BATCHES + (datasets.CIFAR10_TEST_BATCH,):
        batch = {b'data': np.zeros((3, 3072), np.uint8), b'labels': [1, 2, 3]}
        if name == 'data_batch_2':
            batch[b'labels'] = [b'1', b'2', b'3']
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_cifar10(str(tmp_path))
    assert_one_line_error(excinfo, 'data_batch_2', 'labels must be integers 0..9', 'S1')


@pytest.mark.parametrize('labels, fragment', [
    (np.array(['a', 'b', 'c']), 'U1'),
    (np.array([[1.5], [2.0], [3.0]]), 'non-integer values'),
])
def test_svhn_labels_that_are_not_integers(tmp_path, labels, fragment):
    directory = tmp_path / 'SVHN' / 'format2'
    directory.mkdir(parents=True)
    for name in ('train', 'test'):
        scipy.io.savemat(str(directory / ('%s_32x32.mat' % name)),
                         {'X': np.zeros((32, 32, 3, 3), np.uint8), 'y': labels})
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_svhn(str(tmp_path))
    assert_one_line_error(excinfo, 'train_32x32.mat', 'labels must be integers 1..10', fragment)


# ---------------------------------------------------------------------------
# Arguments out of range: argparse says the valid range
# ---------------------------------------------------------------------------

def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'train', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argparse_error(capsys, call):
    with pytest.raises(SystemExit) as excinfo:
        call()
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize('argv, fragment', [
    (['--input-bits', '1'], 'argument --input-bits: must be an integer in 2..53, got 1'),
    (['--act-bits', '1000'], 'argument --act-bits: must be an integer in 2..53, got 1000'),
    (['--param-bits', 'x'], "argument --param-bits: must be an integer in 2..53, got 'x'"),
    (['--no', '0'], 'argument --no: must be an integer at least 1, got 0'),
])
def test_evaluation_arguments_out_of_range(capsys, argv, fragment):
    parser = evaluation.build_parser('mnist')
    line = _argparse_error(capsys, lambda: parser.parse_args(['--model', 'm.npz'] + argv))
    assert fragment in line


@pytest.mark.parametrize('argv, fragment', [
    (['--lr-start', '0'], 'argument --lr-start: must be a number greater than 0, got 0'),
    (['--lr-end', 'nan'], 'argument --lr-end: must be a number greater than 0, got nan'),
    (['--dropout', '1.5'], 'argument --dropout: must be a number in [0, 1), got 1.5'),
    (['--dropout', '1'], 'argument --dropout: must be a number in [0, 1), got 1'),
    (['--num-units', '0'], 'argument --num-units: must be an integer at least 1, got 0'),
    (['--epochs', '-3'], 'argument --epochs: must be an integer at least 1, got -3'),
    (['--seed', '-1'], 'argument --seed: must be an integer in 0..4294967295, got -1'),
])
def test_training_arguments_out_of_range(capsys, tmp_path, argv, fragment):
    script = _load_script('mnist_train')
    model = str(tmp_path / 'never.npz')
    line = _argparse_error(capsys, lambda: script.main(['--model-out', model] + argv))
    assert fragment in line
    assert os.listdir(tmp_path) == []


def test_conv_trainer_arguments_out_of_range(capsys):
    script = _load_script('cifar10_train')
    line = _argparse_error(capsys, lambda: script.main(['--filters', '4', '4', '0', '8', '8', '8']))
    assert 'argument --filters: must be an integer at least 1, got 0' in line
    line = _argparse_error(capsys, lambda: script.main(['--dense-units', '1.5']))
    assert "argument --dense-units: must be an integer at least 1, got '1.5'" in line
