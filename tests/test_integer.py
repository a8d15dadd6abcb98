"""Tests for binary_net.infer.integer: mode='int', true integer infer.

The models here are built without Theano, so the tests stay fast: random weights
with batch-norm statistics fitted to what reaches each batch norm, or, for the
accuracy check on real MNIST, ``fitted_mnist_model`` (a quickly *fitted*, not
gradient-trained, reference MNIST network; see its docstring).
"""
import functools
import os
import re

import numpy as np
import pytest
import scipy.linalg

from binary_net import data as datasets, infer, modelfile, networks
from binary_net.infer import fold, integer
from binary_net.infer.integer import requantize
from helpers import REPO, RandomCase, prefix_output, run_python, unit_images, variants_spec


# ---------------------------------------------------------------------------
# Models (shared with test_export.py)
# ---------------------------------------------------------------------------

def fitted_mnist_model(spec, X, y, rng):
    """Weights for ``mnist_spec`` fitted in a second, without gradient training.

    The first XNOR layer projects the binarized image on 64 principal directions
    of the binarized images and on random directions; the next two are
    orthogonal (Hadamard sign patterns, randomly permuted, random magnitudes);
    every batch norm standardizes what reaches it on X; the output dense layer is
    a ridge regression of the +-1 targets on the last XNOR layer's output. On
    MNIST it makes about a quarter of the errors of chance (roughly 25%), with
    the realistic activation ranges that matter for fixed-point arithmetic.
    """
    values = []
    n = len(X)
    for number, entry in enumerate(spec['layers'], 1):
        kind = entry['type']
        if kind in ('max_pool', 'dropout'):
            continue
        h = prefix_output(spec, values, number, X).reshape(n, -1)
        last = number == len(spec['layers'])
        if kind == 'xnor_dense':
            units = entry['num_units']
            if number == 1:
                B = np.where(h >= 0, 1.0, -1.0)
                _, _, Vt = np.linalg.svd(B - B.mean(axis=0), full_matrices=False)
                k = min(64, units)
                W = np.hstack([Vt[:k].T, rng.standard_normal((h.shape[1], units - k))])
            else:
                signs = scipy.linalg.hadamard(units) * rng.choice([-1, 1], units)[:, None]
                W = signs[:, rng.permutation(units)] * rng.uniform(0.5, 1.5, (units, units))
            values += [W, np.zeros(units), np.abs(W).mean(axis=0)]
        elif kind == 'batch_norm':
            c = h.shape[1]
            mean = np.zeros(c) if last else h.mean(axis=0)
            inv_std = np.ones(c) if last else 1.0 / (h.std(axis=0) + 1e-3)
            values += [np.zeros(c), np.ones(c), mean, inv_std]
        elif kind == 'dense':
            F = np.hstack([h, np.ones((n, 1))])
            T = 2.0 * np.eye(entry['num_units'])[y] - 1
            solution = np.linalg.solve(F.T @ F + 1e-2 * n * np.eye(F.shape[1]), F.T @ T)
            values += [solution[:-1], solution[-1]]
        else:
            raise ValueError('fitted_mnist_model does not handle %s layers' % kind)
    return [np.asarray(v, dtype=np.float32) for v in values]


SMALL_SPECS = {
    'mnist': lambda: networks.mnist_spec(num_units=64),
    'cifar10': lambda: networks.cifar10_spec(filters=(8, 8, 16, 16, 32, 32), dense_units=32),
    'variants': variants_spec,
}


class Case(RandomCase):
    """A small calibrated network with random weights, and random test images."""

    def __init__(self, key):
        super().__init__(key, SMALL_SPECS[key](), 40, spread=0.2, gamma=(0.7, 1.3),
                         jitter_inv_std=False)
        self.net.calibrate(self.X_calib)


@functools.lru_cache(maxsize=None)
def get_case(key):
    return Case(key)


@pytest.fixture(params=sorted(SMALL_SPECS))
def case(request):
    return get_case(request.param)


_FITTED = {}


def fitted_mnist(root, num_units=256, n_fit=3000, n_calib=1000):
    """(spec, values, calibrated network, test images in [-1, 1], test labels), cached."""
    key = (root, num_units, n_fit, n_calib)
    if key not in _FITTED:
        data = datasets.load('mnist', root)
        X_train, y_train = data['train']
        spec = networks.mnist_spec(num_units=num_units)
        values = fitted_mnist_model(spec, datasets.to_unit_range(X_train[:n_fit]),
                                    y_train[:n_fit], np.random.RandomState(0))
        net = fold(spec, values).calibrate(datasets.to_unit_range(X_train[:n_calib]))
        X_test, y_test = data['test']
        _FITTED[key] = (spec, values, net, datasets.to_unit_range(X_test), y_test)
    return _FITTED[key]


# ---------------------------------------------------------------------------
# Integer building blocks
# ---------------------------------------------------------------------------

def test_requantize_rounds_half_up_and_saturates():
    acc = np.array([3, 5, -3, -5, -1, 1, -2, 6, 7, -7])
    # acc / 4 = 0.75 1.25 -0.75 -1.25 -0.25 0.25 -0.5 1.5 1.75 -1.75
    np.testing.assert_array_equal(requantize(acc, 2), [1, 1, -1, -1, 0, 0, 0, 2, 2, -2])
    # ties go toward +infinity: -0.5 -> 0, 0.5 -> 1, -1.5 -> -1, 2.5 -> 3
    np.testing.assert_array_equal(requantize([-1, 1, -3, 5], 1), [0, 1, -1, 3])
    np.testing.assert_array_equal(requantize([5, -5, 0], 0), [5, -5, 0])
    np.testing.assert_array_equal(requantize([3, -3, 5000, -5000, 40000], -3),
                                  [24, -24, 32767, -32768, 32767])
    big = np.array([1 << 61, -(1 << 61), (1 << 40) + (1 << 20), -(1 << 40)])
    np.testing.assert_array_equal(requantize(big, 20), [32767, -32768, 32767, -32768])
    np.testing.assert_array_equal(requantize(big, 62), [1, 0, 0, 0])
    assert requantize([1], 5).dtype == np.int64


def test_reciprocal_is_a_30_bit_fixed_point_inverse():
    for n in list(range(1, 300)) + [784, 1024, 4096, 4608, 8192, (1 << 18) - 1]:
        M, r = integer.reciprocal(n)
        assert (1 << 29) < M <= (1 << 30) or (n & (n - 1) == 0 and M == 1 << 30)
        assert abs(M - 2.0 ** r / n) <= 0.5
        assert r == 29 + n.bit_length()


def test_input_codes_are_int8_q07():
    codes = integer.input_codes(np.array([-1.0, -0.5, 0.0, 0.5, 127 / 128, 1.0, 0.3]))
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, [-128, -64, 0, 64, 127, 127, 38])


def test_align_code_shifts_up_exactly_and_rounds_down():
    codes, shift = integer.align_code([3, -3], 4, 10)
    assert shift == 6 and list(codes) == [3, -3]
    codes, shift = integer.align_code([3, -3, 5], 4, 2)
    assert shift == 0 and list(codes) == [1, -1, 1]   # 0.75, -0.75, 1.25 rounded


# ---------------------------------------------------------------------------
# mode='int'
# ---------------------------------------------------------------------------

def test_int_mode_computes_in_integers_independently_of_batches(case):
    scores = case.net.predict_scores(case.X, mode='int')
    assert scores.dtype == np.int64
    assert scores.min() >= -32768 and scores.max() <= 32767
    np.testing.assert_array_equal(case.net.predict_scores(case.X, mode='int', batch_size=7),
                                  scores)
    program = integer.integer_network(case.net)
    np.testing.assert_array_equal(program.forward(integer.input_codes(case.X)), scores)
    np.testing.assert_array_equal(case.net.predict(case.X, mode='int'), scores.argmax(axis=1))
    assert 'int' in infer.MODES


def test_every_layer_follows_fixed_mode(case):
    """Each op's integer codes, scaled by their fraction bits, stay within a few
    steps of fixed mode's simulation of the same formats (they differ only in
    tie rounding, K's reciprocal and the carried errors)."""
    program = integer.integer_network(case.net)
    fixed = case.net.trace(case.X, mode='fixed')
    ints = case.net.trace(case.X, mode='int')
    for op, f, q in zip(case.net, fixed, ints):
        if op.kind == 'softmax':
            continue
        frac = program.by_op[op.index].out_frac
        value = q * 2.0 ** -frac
        step = 2.0 ** -frac
        if op.index == 0:   # same input, same arithmetic up to rounding ties
            assert np.abs(value - f).max() <= step
        scale = np.abs(f).max()
        assert np.mean(np.abs(value - f) <= 0.02 * scale + 4 * step) >= 0.97, op
    agree = np.mean(ints[-1].argmax(axis=1) == fixed[-1].argmax(axis=1))
    assert agree >= 0.95


def test_int_mode_needs_calibration_and_takes_no_options(case):
    net = fold(case.spec, case.values)
    with pytest.raises(RuntimeError, match='calibrate'):
        net.predict(case.X[:2], mode='int')
    with pytest.raises(ValueError, match="mode 'int' does not take the options act_bits"):
        case.net.predict(case.X[:2], mode='int', act_bits=8)


def test_recalibrating_recompiles(case):
    net = fold(case.spec, case.values).calibrate(case.X_calib)
    first = integer.integer_network(net)
    assert integer.integer_network(net) is first
    net.calibrate(case.X_calib[:8])
    assert integer.integer_network(net) is not first


def test_networks_that_could_overflow_int64_are_refused():
    spec = networks.make_spec('odd', (None, 1, 4, 4), [networks.dense(3)], 'squared_hinge')
    rng = np.random.RandomState(3)
    W = rng.uniform(-1, 1, (16, 3)).astype(np.float32) * np.float32(1e-9)   # 45 fraction bits
    b = np.array([1e9, -1e9, 5.0], np.float32)                             # -15 fraction bits
    net = fold(spec, [W, b]).calibrate(unit_images(rng, 8, (1, 4, 4)))
    with pytest.raises(ValueError, match=r'op 0 \(dense\).*2\*\*62'):
        net.predict(unit_images(rng, 2, (1, 4, 4)), mode='int')


def test_int_error_within_0_3_points_of_float_on_mnist(mnist_root):
    """All 10,000 real MNIST test images through a fitted mnist_spec(256) network."""
    _, _, net, X, y = fitted_mnist(mnist_root)
    errors = {mode: 100.0 * np.mean(net.predict(X, mode, batch_size=2000) != y)
              for mode in ('float', 'fixed', 'int')}
    assert errors['float'] < 40, errors          # the fitted model does classify
    assert abs(errors['int'] - errors['float']) <= 0.3, errors
    assert abs(errors['int'] - errors['fixed']) <= 0.1, errors


def test_evaluation_script_reports_int_mode(mnist_root, tmp_path):
    spec, values, net, X, y = fitted_mnist(mnist_root)
    path = str(tmp_path / 'fitted.npz')
    modelfile.save_model(path, values, spec)
    result = run_python([os.path.join(REPO, 'test', 'mnist_test.py'), '--model', path,
                         '--mode', 'int', '--no', '500', '--data-path', mnist_root])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(re.match(r'^Mode: int \(int8 Q0\.7 input, int16', line) for line in lines), lines
    error = 100.0 * np.mean(net.predict(X[:500], mode='int') != y[:500])
    assert lines[-1] == 'Test error: %.2f%% (500 images, mode int)' % error
