"""The MNIST model that ships in models/, on the real MNIST test set, in every mode."""
import os
import subprocess
import sys

import numpy as np
import pytest

from binary_net import data as datasets, modelfile
from binary_net import infer as inference
from binary_net.deploy.packed import load_packed
from test_export import check_bit_exact, needs_cc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPO, 'models', 'mnist_xnor_1024.npz')
PACKED = os.path.join(REPO, 'models', 'mnist_xnor_1024.packed.npz')


@pytest.fixture(scope='module')
def test_set(mnist_root):
    data = datasets.load('mnist', data_path=mnist_root)
    X_test, y_test = data['test']
    X_train = data['train'][0]
    return datasets.to_unit_range(X_test), y_test, datasets.to_unit_range(X_train[:1000])


@pytest.fixture(scope='module')
def network(test_set):
    values, spec, extra = modelfile.load_model(MODEL)
    net = inference.fold(spec, values)
    net.calibrate(test_set[2])
    return net


@pytest.fixture(scope='module')
def float_predictions(network, test_set):
    return network.predict(test_set[0], mode='float')


def _error(predictions, labels):
    return 100.0 * np.mean(predictions != labels)


def test_file_is_small_and_describes_itself():
    assert os.path.getsize(MODEL) < 20 * 2 ** 20
    values, spec, extra = modelfile.load_model(MODEL)
    assert len(values) == 23 and spec['name'] == 'mnist'
    assert extra['settings']['seed'] == 1234


def test_float_error_is_at_most_the_originals(float_predictions, test_set):
    # The original theano-xnor-net reported 3.2% on MNIST.
    assert _error(float_predictions, test_set[1]) <= 3.2


def test_fixed_and_int_stay_within_0_3_points_of_float(network, float_predictions, test_set):
    float_error = _error(float_predictions, test_set[1])
    for mode in ('fixed', 'int'):
        error = _error(network.predict(test_set[0], mode=mode), test_set[1])
        assert abs(error - float_error) <= 0.3, (mode, error, float_error)


def test_xnor_predicts_exactly_like_float(network, float_predictions, test_set):
    xnor = network.predict(test_set[0], mode='xnor')
    assert np.array_equal(xnor, float_predictions)  # 10,000 of 10,000


def test_packed_file_is_20x_smaller_and_predicts_the_same(float_predictions, test_set):
    assert os.path.getsize(MODEL) / os.path.getsize(PACKED) >= 20
    packed, spec, extra = load_packed(PACKED)
    assert np.array_equal(packed.predict(test_set[0], mode='xnor'), float_predictions)


@needs_cc
def test_c_export_predicts_like_the_integer_path(network, test_set, tmp_path):
    check_bit_exact(network, test_set[0], str(tmp_path), 'mnist')


def test_evaluation_script_end_to_end(mnist_root, float_predictions, test_set):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'test', 'mnist_test.py'), '--model', MODEL,
         '--no', '2000', '--mode', 'xnor', '--data-path', mnist_root],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    expected = _error(float_predictions[:2000], test_set[1][:2000])
    assert result.stdout.strip().splitlines()[-1] == \
        'Test error: %.2f%% (2000 images, mode xnor)' % expected
