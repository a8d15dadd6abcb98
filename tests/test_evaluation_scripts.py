"""End-to-end tests of test/mnist_test.py, test/cifar10_test.py and test/svhn_test.py.

Each script runs in a subprocess on tiny datasets written in the official formats
into a temporary PYLEARN2_DATA_PATH, with small random-weight models.
"""
import os
import pickle
import re

import numpy as np
import pytest
import scipy.io

from binary_net import data as datasets, modelfile, networks
from binary_net import infer as inference
from binary_net.spec import expected_param_shapes, original_conventions
from helpers import REPO, run_python, write_mnist

N_TEST = {'mnist': 30, 'cifar10': 25, 'svhn': 22}
N_TRAIN = {'mnist': 40, 'cifar10': 40, 'svhn': 35}
SPECS = {
    'mnist': lambda: networks.mnist_spec(num_units=32),
    'cifar10': lambda: networks.cifar10_spec(filters=(4, 4, 8, 8, 8, 8), dense_units=16),
    'svhn': lambda: networks.svhn_spec(filters=(4, 4, 8, 8, 8, 8), dense_units=16),
}
LAST_LINE = re.compile(r'^Test error: \d+\.\d\d% \((\d+) images, mode (\w+)\)$')


# ---------------------------------------------------------------------------
# Tiny datasets in the official formats
# ---------------------------------------------------------------------------

def write_cifar10(root, rng):
    directory = os.path.join(root, 'cifar10', 'cifar-10-batches-py')
    os.makedirs(directory)
    sizes = [N_TRAIN['cifar10'] // 5] * 5 + [N_TEST['cifar10']]
    names = ['data_batch_%d' % i for i in range(1, 6)] + ['test_batch']
    for name, count in zip(names, sizes):
        batch = {b'data': rng.randint(0, 256, size=(count, 3072)).astype(np.uint8),
                 b'labels': [int(v) for v in rng.randint(0, 10, size=count)]}
        with open(os.path.join(directory, name), 'wb') as stream:
            pickle.dump(batch, stream, protocol=2)


def write_svhn(root, rng):
    directory = os.path.join(root, 'SVHN', 'format2')
    os.makedirs(directory)
    for name, count in (('train', N_TRAIN['svhn']), ('test', N_TEST['svhn'])):
        scipy.io.savemat(os.path.join(directory, '%s_32x32.mat' % name),
                         {'X': rng.randint(0, 256, size=(32, 32, 3, count)).astype(np.uint8),
                          'y': rng.randint(1, 11, size=(count, 1)).astype(np.uint8)})


def random_values(spec, rng):
    """Random arrays of the right shapes (inv_std positive, alpha = mean |W|)."""
    values = []
    for _, _, name, shape in expected_param_shapes(spec):
        if name == 'inv_std':
            value = rng.uniform(0.05, 0.3, shape)
        elif name == 'beta_filter':
            value = np.full(shape, 1.0 / np.prod(shape))
        elif name == 'xalpha':
            W = values[-2] if values[-2].ndim == 2 else values[-3]
            value = np.abs(W).reshape(len(W), -1).mean(axis=1) if W.ndim == 4 \
                else np.abs(W).mean(axis=0)
        else:
            value = rng.uniform(-1, 1, shape)
        values.append(np.asarray(value, dtype=np.float32))
    return values


def original_layout(spec, values):
    """The arrays as the original theano-xnor-net stores them: beta_filter (F, C, fh, fw)."""
    marked = original_conventions(spec)
    return [np.full(shape, np.float32(1) / np.float32(np.prod(shape[1:])), np.float32)
            if name == 'beta_filter' else v
            for v, (_, _, name, shape) in zip(values, expected_param_shapes(marked))]


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """Data root, models and subprocess environment shared by the tests."""
    rng = np.random.RandomState(42)
    root = str(tmp_path_factory.mktemp('data'))
    write_mnist(root, rng, N_TRAIN['mnist'], N_TEST['mnist'])
    write_cifar10(root, rng)
    write_svhn(root, rng)
    models = str(tmp_path_factory.mktemp('models'))
    paths = {}
    for name, make_spec in SPECS.items():
        spec = make_spec()
        values = random_values(spec, rng)
        paths[name] = os.path.join(models, name + '.npz')
        modelfile.save_model(paths[name], values, spec)
        paths[name + '_positional'] = os.path.join(models, name + '_positional.npz')
        np.savez(paths[name + '_positional'], *original_layout(spec, values))
    variables = dict(os.environ, PYLEARN2_DATA_PATH=root)
    return {'root': root, 'models': paths, 'env': variables, 'tmp': models}


def run_script(env, dataset, *args):
    script = os.path.join(REPO, 'test', '%s_test.py' % dataset)
    return run_python([script] + list(args), env=env['env'])


def expected_last_line(env, dataset, model, n, mode='float', **options):
    """The last line the script must print, computed in this process."""
    values, spec, _ = modelfile.load_model(model)
    if spec is None:  # the original's conventions (tests/test_original.py checks them)
        spec = original_conventions(SPECS[dataset]())
    network = inference.fold(spec, values)
    data = datasets.load(dataset, env['root'])
    X, y = data['test']
    y = datasets.relabel(y, network.labels)

    def scale(pixels):
        return datasets.scale_pixels(pixels, network.pixel_scaling, dataset)

    if mode == 'fixed':
        network.calibrate(scale(data['train'][0][:1000]))
    predicted = network.predict(scale(X[:n]), mode, **options)
    return 'Test error: %.2f%% (%d images, mode %s)' % (100.0 * np.mean(predicted != y[:n]), n, mode)


def last_line(result):
    return result.stdout.strip().splitlines()[-1]


def assert_error(result, pattern):
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith('error: ')]
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('dataset', sorted(SPECS))
def test_script_float_mode(env, dataset):
    model = env['models'][dataset]
    result = run_script(env, dataset, '--model', model, '--no', '20', '--batch-size', '8')
    assert result.returncode == 0, result.stderr
    line = last_line(result)
    assert LAST_LINE.match(line)
    assert line == expected_last_line(env, dataset, model, 20)
    assert 'network description from the file' in result.stdout
    assert 'Accuracy: ' in result.stdout and 'Time: ' in result.stdout
    assert '20/20' in result.stderr  # the progress bar


def test_script_fixed_mode_and_whole_test_set(env):
    model = env['models']['svhn']
    result = run_script(env, 'svhn', '--model', model, '--mode', 'fixed', '--param-bits', '10',
                        '--rounding', 'half_away')
    assert result.returncode == 0, result.stderr
    assert last_line(result) == expected_last_line(env, 'svhn', model, N_TEST['svhn'], 'fixed',
                                                   param_bits=10, rounding='half_away')
    assert 'parameters 10 bits' in result.stdout
    assert 'first %d training images' % N_TRAIN['svhn'] in result.stdout


@pytest.mark.parametrize('dataset', ['mnist', 'cifar10', 'svhn'])
def test_position_only_npz_gets_the_reference_architecture(env, dataset):
    model = env['models'][dataset + '_positional']
    result = run_script(env, dataset, '--model', model, '--no', '12')
    assert result.returncode == 0, result.stderr
    assert 'position-only file: reference %s architecture' % dataset in result.stdout
    # the widths came from the arrays; the original's conventions apply
    assert last_line(result) == expected_last_line(env, dataset, model, 12)


def test_no_larger_than_the_test_set(env):
    result = run_script(env, 'mnist', '--model', env['models']['mnist'], '--no', '31')
    assert_error(result, r'^error: --no 31 is larger than the mnist test set \(30 images\)$')


def test_missing_model(env):
    missing = os.path.join(env['tmp'], 'nothing.npz')
    result = run_script(env, 'cifar10', '--model', missing)
    assert_error(result, '^error: model file not found: .*nothing.npz$')


def test_model_of_another_architecture(env):
    result = run_script(env, 'mnist', '--model', env['models']['cifar10'])
    assert_error(result, r'cifar10\.npz is a cifar10 network for inputs shaped \(3, 32, 32\), '
                         r'but the mnist test set holds images shaped \(1, 28, 28\)')
    result = run_script(env, 'svhn', '--model', env['models']['cifar10_positional'])
    assert_error(result, r'^error: cifar10_positional\.npz holds 62 arrays but the svhn network '
                         r'needs 66$')
    result = run_script(env, 'cifar10', '--model', env['models']['mnist_positional'])
    assert_error(result, r'holds 23 arrays but the cifar10 network needs 62; first misfits: '
                         r'arr_0 has shape \(784, 32\) but conv layer 1 needs \(128, 3, 3, 3\) for W')
    values = modelfile.load_model(env['models']['mnist_positional'])[0]
    values[7] = np.zeros((32, 16), np.float32)  # the second XNOR layer, 16 units instead of 32
    odd = os.path.join(env['tmp'], 'odd.npz')
    np.savez(odd, *values)
    result = run_script(env, 'mnist', '--model', odd)
    line = assert_error(result, r'^error: odd\.npz does not fit the mnist network: ')
    assert 'arr_8 has shape (32,) but xnor_dense layer 3 needs (16,) for b' in line


def test_missing_dataset_and_bad_arguments(env):
    empty = os.path.join(env['tmp'], 'empty')
    os.makedirs(empty, exist_ok=True)
    result = run_script(env, 'mnist', '--model', env['models']['mnist'], '--data-path', empty)
    assert_error(result, '^error: MNIST not found: .* is missing; run: ')
    result = run_script(env, 'mnist', '--model', env['models']['mnist'], '--param-bits', '8')
    assert result.returncode == 2 and '--param-bits applies to --mode fixed only' in result.stderr
    result = run_script(env, 'mnist', '--help')
    assert result.returncode == 0
    for option in ('--model', '--no', '--mode', '--batch-size', '--data-path', '--input-bits',
                   '--input-frac', '--param-bits', '--act-bits', '--rounding'):
        assert option in result.stdout
