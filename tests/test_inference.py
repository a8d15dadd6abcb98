"""Tests for binary_net.infer: folded numpy inference against the Theano network.

Theano compiles C code per graph, so each network below is compiled once (module
fixtures) and its deterministic output reused by every test that needs it.
"""
import subprocess
import sys

import numpy as np
import pytest

from binary_net import infer, networks
from binary_net.errors import ModelFileError
from binary_net.infer import fold, numerics, quantize
from binary_net.spec import expected_param_shapes
from helpers import RandomCase, variants_spec

WIDE = dict(input_bits=48, input_frac=40, param_bits=48, act_bits=48)


SPECS = {
    'mnist': lambda: networks.mnist_spec(num_units=64),
    'cifar10': lambda: networks.cifar10_spec(filters=(8, 8, 16, 16, 16, 16), dense_units=32),
    'svhn': lambda: networks.svhn_spec(filters=(8, 8, 16, 16, 16, 16), dense_units=32),
    'variants': variants_spec,
}


def theano_scores(spec, values, X):
    """lasagne.layers.get_output(net, deterministic=True) of the spec's Theano network."""
    import lasagne
    import theano
    import theano.tensor as T

    net = networks.build(spec)
    lasagne.layers.set_all_param_values(net, values)
    x = T.tensor4('x')
    output = lasagne.layers.get_output(net, x, deterministic=True)
    return theano.function([x], output)(X)


class Case(RandomCase):
    """Random weights in [-1, 1], batch-norm statistics fitted to X_calib; 48 test images."""

    def __init__(self, key):
        super().__init__(key, SPECS[key](), 48, float32=True)
        self.float_scores = self.net.predict_scores(self.X)


@pytest.fixture(scope='module', params=sorted(SPECS))
def case(request):
    return Case(request.param)


@pytest.fixture(scope='module')
def mnist_case():
    return Case('mnist')


@pytest.fixture(scope='module')
def variants_case():
    return Case('variants')


def agreement(a, b):
    return np.mean(a.argmax(axis=1) == b.argmax(axis=1))


# ---------------------------------------------------------------------------
# Float mode against Theano
# ---------------------------------------------------------------------------

def test_float_mode_equals_theano(case):
    expected = theano_scores(case.spec, case.values, case.X)
    got = case.float_scores
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
    # The networks are not degenerate: predictions vary between images.
    assert len(np.unique(got.argmax(axis=1))) > 1


def test_fold_keeps_binary_weights_and_batch_norm_apart(variants_case):
    net = variants_case.net
    kinds = [op.kind for op in net]
    assert kinds == ['conv', 'rectify', 'xnor_conv', 'affine', 'xnor_conv', 'max_pool',
                     'xnor_dense', 'affine', 'xnor_dense', 'dense', 'softmax']
    values = variants_case.values
    flipped = net[2]
    assert flipped.W_sign.dtype == np.int8
    np.testing.assert_array_equal(flipped.W_sign, np.where(values[2] >= 0, 1, -1))
    np.testing.assert_allclose(flipped.params['alpha'],
                               np.abs(values[2]).reshape(6, -1).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(flipped.params['alpha'], values[5], rtol=1e-6)  # == xalpha
    true_conv = net[4]  # flip_filters=True: stored flipped, for cross-correlation
    np.testing.assert_array_equal(true_conv.W_sign, np.where(values[10] >= 0, 1, -1)[:, :, ::-1, ::-1])
    beta, gamma, mean, inv_std = (v.astype(np.float64) for v in values[6:10])
    np.testing.assert_allclose(net[3].params['scale'], gamma * inv_std)
    np.testing.assert_allclose(net[3].params['offset'], beta - mean * gamma * inv_std)


def test_im2col_conv_equals_direct_loops():
    rng = np.random.RandomState(3)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    stride, pad = (2, 1), (1, 2)
    got = infer.conv2d(x, w, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    expected = np.zeros(got.shape)
    for i in range(got.shape[2]):
        for j in range(got.shape[3]):
            window = xp[:, :, i * 2:i * 2 + 3, j:j + 2]
            expected[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # Sums of +-1 terms are exact, so one product per chunk gives the same bits.
    signs, w_signs = np.sign(x).astype(np.float32), np.sign(w).astype(np.float32)
    per_sample = infer.conv2d(signs, w_signs, stride, pad)
    np.testing.assert_array_equal(per_sample, np.rint(per_sample))
    np.testing.assert_array_equal(infer.conv2d(signs, w_signs, stride, pad, per_sample=False),
                                  per_sample)
    old = numerics.IM2COL_MAX_ELEMENTS
    numerics.IM2COL_MAX_ELEMENTS = 10  # one sample per chunk
    try:
        np.testing.assert_array_equal(infer.conv2d(x, w, stride, pad), got)
    finally:
        numerics.IM2COL_MAX_ELEMENTS = old


def test_float_products_are_computed_one_sample_at_a_time():
    # Shapes for which a batched float32 BLAS product rounds a row differently
    # with the matrix's row count or the row's position (OpenBLAS's Haswell / Zen
    # kernels do): each row or sample is its own product, so slices agree bit for bit.
    rng = np.random.RandomState(4)
    for k, f in ((784, 10), (27, 128), (200, 33)):
        x = rng.standard_normal((70, k)).astype(np.float32)
        w = rng.standard_normal((k, f)).astype(np.float32)
        got = infer.matmul_rows(x, np.ascontiguousarray(w.T))
        assert got.dtype == np.float32 and got.shape == (70, f)
        for start, stop in ((0, 1), (1, 2), (3, 10), (5, 70), (64, 70)):
            np.testing.assert_array_equal(
                infer.matmul_rows(x[start:stop], np.ascontiguousarray(w.T)), got[start:stop])
        # Within the float32 rounding of a sum of k products: k * 2**-24 * sum |x w|.
        exact = x.astype(np.float64) @ w.astype(np.float64)
        bound = k * 2.0 ** -24 * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64))
        assert np.all(np.abs(got - exact) <= bound)
    x = rng.standard_normal((9, 3, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    whole = infer.conv2d(x, w, (1, 1), (1, 1))
    for start, stop in ((0, 1), (4, 5), (2, 9)):
        np.testing.assert_array_equal(infer.conv2d(x[start:stop], w, (1, 1), (1, 1)),
                                      whole[start:stop])


def test_a_sample_s_scores_do_not_depend_on_its_batch(case):
    net, X, whole = case.net, case.X, case.float_scores
    for batch_size in (1, 5, 7):
        np.testing.assert_array_equal(net.predict_scores(X, batch_size=batch_size), whole)
    order = np.random.RandomState(2).permutation(len(X))
    np.testing.assert_array_equal(net.predict_scores(X[order]), whole[order])
    # Fixed mode at 48 bits: float64 sums that round, hence per sample too.
    net.calibrate(X)
    wide = net.predict_scores(X, mode='fixed', **WIDE)
    np.testing.assert_array_equal(net.predict_scores(X, mode='fixed', batch_size=7, **WIDE), wide)
    if case.key != 'variants':  # the original's preset: float32 sums that round
        preset = net.predict_scores(X, mode='fixed', preset='original')
        np.testing.assert_array_equal(
            net.predict_scores(X, mode='fixed', preset='original', batch_size=1), preset)


# ---------------------------------------------------------------------------
# Fixed mode
# ---------------------------------------------------------------------------

def test_wide_fixed_point_equals_float(case):
    case.net.calibrate(case.X)  # no activation of X can saturate
    scores = case.net.predict_scores(case.X, mode='fixed', **WIDE)
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores.argmax(axis=1), case.float_scores.argmax(axis=1))
    np.testing.assert_allclose(scores, case.float_scores, rtol=1e-4,
                               atol=1e-5 * np.abs(case.float_scores).max())


# Random binary networks are chaotic: each XNOR layer multiplies the number of
# flipped signs, so after five XNOR convolutions even a 1/512 change of the
# input changes most predictions of the random CIFAR-10 and SVHN networks. Their
# predictions are therefore compared only where errors have not compounded:
# at the first XNOR layer. The MLPs keep their predictions.
STABLE = ('mnist', 'variants')


def first_xnor_output(net, outputs):
    return next(out for op, out in zip(net, outputs) if op.kind.startswith('xnor'))


def test_default_fixed_point_is_close_to_float(case):
    case.net.calibrate(case.X_calib)
    exact, fixed = case.net.trace(case.X), case.net.trace(case.X, mode='fixed')
    first, fixed_first = exact[0], fixed[0]
    assert np.abs(fixed_first - first).max() <= 0.02 * np.abs(first).max()
    assert np.mean(np.sign(first_xnor_output(case.net, exact))
                   == np.sign(first_xnor_output(case.net, fixed))) >= 0.98
    if case.key in STABLE:
        assert agreement(fixed[-1], case.float_scores) >= 0.9


def test_8bit_parameters_differ_from_float_but_stay_close(case):
    case.net.calibrate(case.X_calib)
    exact, fixed = case.net.trace(case.X), case.net.trace(case.X, mode='fixed', param_bits=8)
    scale = np.abs(case.float_scores).max()
    assert np.abs(fixed[-1] - case.float_scores).max() > 1e-3 * scale
    assert np.mean(np.sign(first_xnor_output(case.net, exact))
                   == np.sign(first_xnor_output(case.net, fixed))) >= 0.95
    if case.key in STABLE:
        assert agreement(fixed[-1], case.float_scores) >= 0.8


def test_fixed_mode_is_static_and_independent_of_batches(mnist_case):
    net = mnist_case.net
    with pytest.raises(RuntimeError, match='calibrate'):
        fold(mnist_case.spec, mnist_case.values).predict(mnist_case.X, mode='fixed')
    net.calibrate(mnist_case.X_calib)
    ranges = net.calibration['ranges']
    assert net.calibration['size'] == 64 and len(ranges) == len(net)
    assert 'K' in ranges[0] and ranges[0]['out'] > 0
    whole = net.predict_scores(mnist_case.X, mode='fixed')
    np.testing.assert_array_equal(net.predict_scores(mnist_case.X, mode='fixed', batch_size=5), whole)
    np.testing.assert_array_equal(net.predict_scores(mnist_case.X[:7], mode='fixed'), whole[:7])
    np.testing.assert_array_equal(net.predict(mnist_case.X, mode='fixed'), whole.argmax(axis=1))
    # Calibration does not depend on batches or on the order of the images: the
    # same ranges to the bit, hence the same formats.
    formats = net.fixed_point_formats()
    for batch_size, X_calib in ((9, mnist_case.X_calib), (1, mnist_case.X_calib),
                                (64, mnist_case.X_calib[::-1])):
        net.calibrate(X_calib, batch_size=batch_size)
        assert net.calibration['ranges'] == ranges
        assert net.fixed_point_formats() == formats
    # every op output lies on its 16-bit grid
    formats = net.fixed_point_formats()
    assert formats[0]['K'][0] == 16 and formats[0]['params']['alpha'][0] == 16
    out_bits, out_frac = formats[-1]['out']
    codes = np.ldexp(whole, out_frac)
    np.testing.assert_array_equal(codes, np.round(codes))
    assert np.abs(codes).max() <= 2 ** (out_bits - 1)


def test_quantize_rounds_and_saturates():
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25, 0.75])
    np.testing.assert_array_equal(quantize(ties, 8, 0, 'half_even'), [0, 2, 2, -0, -2, -2, 0, 1])
    np.testing.assert_array_equal(quantize(ties, 8, 0, 'half_away'), [1, 2, 3, -1, -2, -3, 0, 1])
    np.testing.assert_array_equal(quantize([1.0, -1.0, 0.3, -3.0], 8, 7),
                                  [127 / 128, -1.0, 38 / 128, -1.0])
    np.testing.assert_array_equal(quantize([0.126], 4, 3), [0.125])
    np.testing.assert_array_equal(quantize([1000.0, -1000.0], 8, -2), [508.0, -512.0])
    with pytest.raises(ValueError, match='rounding'):
        quantize([1.0], 8, 7, 'up')
    assert infer.fixed_format(1.0, 16) == (1, 14)
    assert infer.fixed_format(0.99, 16) == (0, 15)
    assert infer.fixed_format(0.3, 16) == (-1, 16)
    assert infer.fixed_format(5.0, 8) == (3, 4)
    assert infer.fixed_format(0.0, 8) == (0, 7)


def test_rounding_modes_differ_on_ties(variants_case):
    net = variants_case.net
    net.calibrate(variants_case.X_calib)
    rng = np.random.RandomState(5)
    # odd multiples of 1/256 lie exactly between two 8-bit inputs with 7 fraction bits
    X = ((2 * rng.randint(-128, 128, size=(16, 2, 11, 11)) + 1) / 256.).astype(np.float32)
    even = net.predict_scores(X, mode='fixed', rounding='half_even')
    away = net.predict_scores(X, mode='fixed', rounding='half_away')
    assert not np.array_equal(even, away)
    assert agreement(even, away) >= 0.6


def test_unknown_modes_and_options_are_rejected(mnist_case):
    net = mnist_case.net
    with pytest.raises(ValueError, match="unknown inference mode 'bogus'.*fixed, float"):
        net.predict(mnist_case.X, mode='bogus')
    with pytest.raises(ValueError, match="mode 'float' does not take the options input_bits"):
        net.predict(mnist_case.X, input_bits=8)
    net.calibrate(mnist_case.X_calib)
    with pytest.raises(ValueError, match='rounding'):
        net.predict(mnist_case.X, mode='fixed', rounding='down')
    with pytest.raises(ValueError, match='param_bits'):
        net.predict(mnist_case.X, mode='fixed', param_bits=1)
    with pytest.raises(ValueError, match='float images'):
        net.predict(np.zeros((2, 1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r'\(N,\) \+ \(1, 28, 28\)'):
        net.predict(np.zeros((2, 3, 32, 32), np.float32))


def test_new_modes_plug_in(mnist_case):
    class GenericProbe(infer.FloatContext):
        mode = 'probe'

    class StrictProbe(infer.FloatContext):  # implements one op kind, the first op's
        mode = 'strict_probe'
        generic = False

        def xnor_dense(self, op, x):
            return op.forward(x, self)

    infer.register_mode('probe', GenericProbe)
    infer.register_mode('strict_probe', StrictProbe)
    try:
        X = mnist_case.X[:4]
        np.testing.assert_array_equal(mnist_case.net.predict_scores(X, mode='probe'),
                                      mnist_case.float_scores[:4])
        with pytest.raises(ValueError, match="affine op does not support mode 'strict_probe'"):
            mnist_case.net.predict_scores(X, mode='strict_probe')
    finally:
        del infer.MODES['probe'], infer.MODES['strict_probe']


# ---------------------------------------------------------------------------
# Validation and deployment
# ---------------------------------------------------------------------------

def test_arrays_that_do_not_fit_are_named():
    spec = networks.mnist_spec(num_units=64)
    rng = np.random.RandomState(1)
    good = [rng.uniform(-1, 1, shape).astype(np.float32)
            for *_, shape in expected_param_shapes(spec)]
    fold(spec, good)
    bad = list(good)
    bad[0] = np.zeros((784, 32), np.float32)
    bad[4] = np.zeros((32,), np.float32)
    with pytest.raises(ModelFileError) as error:
        fold(spec, bad, source='m.npz')
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith('m.npz does not fit the mnist network: ')
    assert 'arr_0 has shape (784, 32) but xnor_dense layer 1 needs (784, 64) for W' in message
    assert 'arr_4 has shape (32,) but batch_norm layer 2 needs (64,) for gamma' in message
    assert 'arr_1 ' not in message

    with pytest.raises(ModelFileError, match='holds 22 arrays but the mnist network needs 23$'):
        fold(spec, good[:22])
    cifar = networks.cifar10_spec(filters=(8, 8, 16, 16, 16, 16), dense_units=32)
    with pytest.raises(ModelFileError) as error:
        fold(cifar, good)
    assert str(error.value).startswith('model holds 23 arrays but the cifar10 network needs 62; '
                                       'first misfits: arr_0 has shape (784, 64) but conv layer 1 '
                                       'needs (8, 3, 3, 3) for W')
    with pytest.raises(ModelFileError, match="layer 2 has unknown type 'bogus'"):
        fold(dict(spec, layers=[spec['layers'][0], {'type': 'bogus'}]), good)


def test_inference_imports_neither_theano_nor_lasagne():
    code = ('import sys, binary_net.infer, binary_net.spec, binary_net.summary; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("theano", "lasagne")]; '
            'sys.exit(bool(bad))')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0
