"""Tests for binary_net.binarize against independent numpy references.

Every expected value here is computed with numpy (explicit loops where the
operation is a convolution), never with the Theano expression under test.
Theano compiles C code per graph, so each fixture compiles one function that
serves many tests.
"""
import doctest

import numpy as np
import pytest
import theano
import theano.tensor as T

from binary_net import binarize


# ---------------------------------------------------------------------------
# numpy references
# ---------------------------------------------------------------------------

def ref_sign(x):
    """sign with sign(0) = +1 (also for -0.0)."""
    return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def ref_ste_mask(x):
    """The straight-through estimator: 1 where |x| <= 1, else 0."""
    return (np.abs(x) <= 1).astype(x.dtype)


def ref_alpha(W):
    """mean |W| per output filter (conv, W (F, C, h, w)) or unit (dense, W (in, out))."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim == 2:
        return np.array([np.mean(np.abs(W[:, j])) for j in range(W.shape[1])])
    return np.array([np.mean(np.abs(W[f])) for f in range(W.shape[0])])


def ref_dense_K(x):
    """mean |x| of each sample, as a column."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([[np.mean(np.abs(row))] for row in x])


def ref_conv_K(X, filter_size, stride, pad):
    """Channel-mean of |X| averaged over each receptive field, by explicit loops.

    Padded positions count as 0 but the divisor is always rows * cols, as the
    paper's box filter k = 1 / (rows * cols) does.
    """
    X = np.asarray(X, dtype=np.float64)
    n, c, rows, cols = X.shape
    fh, fw = filter_size
    sh, sw = stride
    ph, pw = pad
    out_rows = (rows + 2 * ph - fh) // sh + 1
    out_cols = (cols + 2 * pw - fw) // sw + 1
    A = np.abs(X).mean(axis=1)
    K = np.zeros((n, 1, out_rows, out_cols))
    for b in range(n):
        for oy in range(out_rows):
            for ox in range(out_cols):
                total = 0.0
                for i in range(fh):
                    for j in range(fw):
                        y, x = oy * sh - ph + i, ox * sw - pw + j
                        if 0 <= y < rows and 0 <= x < cols:
                            total += A[b, y, x]
                K[b, 0, oy, ox] = total / (fh * fw)
    return K


# ---------------------------------------------------------------------------
# sign and the straight-through estimator
# ---------------------------------------------------------------------------

def special_points(dtype):
    """Zeros, the boundary +-1, and values one ulp inside and outside it."""
    one = dtype(1)
    pts = [0.0, -0.0, 1.0, -1.0,
           np.nextafter(one, dtype(2)), -np.nextafter(one, dtype(2)),
           np.nextafter(one, dtype(0)), -np.nextafter(one, dtype(0)),
           1e-30, -1e-30, 0.5, -0.5, 0.999, -0.999, 1.001, -1.001, 7.0, -7.0, 1e6, -1e6]
    rng = np.random.RandomState(0)
    pts += list(rng.uniform(-3, 3, size=40))
    return np.array(pts, dtype=dtype)


def _sign_functions(dtype, mode):
    x = T.vector('x', dtype=dtype)
    c = T.vector('c', dtype=dtype)
    y = binarize.sign(x)
    g_ste = theano.grad(T.sum(y * c), x)
    g_zero = theano.grad(T.sum(binarize.sign(x, straight_through=False) * c), x)
    return theano.function([x, c], [y, g_ste, g_zero], mode=mode)


@pytest.fixture(scope='module', params=[
    ('float64', None), ('float32', None),
    ('float64', theano.compile.mode.Mode(linker='py', optimizer='fast_compile'))],
    ids=['float64-c', 'float32-c', 'float64-python'])
def sign_case(request):
    dtype, mode = request.param
    return np.dtype(dtype).type, _sign_functions(dtype, mode)


def test_sign_values_are_exactly_plus_minus_one(sign_case):
    dtype, f = sign_case
    x = special_points(dtype)
    c = np.ones_like(x)
    y, _, _ = f(x, c)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, ref_sign(x))
    assert set(np.unique(y)) == {-1.0, 1.0}
    # sign(0) = +1, also for a negative zero
    assert y[0] == 1.0 and y[1] == 1.0


def test_straight_through_gradient_is_one_inside_unit_interval(sign_case):
    dtype, f = sign_case
    x = special_points(dtype)
    c = np.random.RandomState(1).uniform(0.5, 2.0, size=x.shape).astype(dtype)
    _, g, _ = f(x, c)
    np.testing.assert_array_equal(g, c * ref_ste_mask(x))
    # boundary and just inside: passed; just outside: cancelled
    assert g[2] == c[2] and g[3] == c[3]          # +-1
    assert g[4] == 0 and g[5] == 0                # one ulp outside
    assert g[6] == c[6] and g[7] == c[7]          # one ulp inside
    assert g[0] == c[0]                           # at zero


def test_sign_without_straight_through_has_zero_gradient(sign_case):
    dtype, f = sign_case
    x = special_points(dtype)
    c = np.random.RandomState(2).uniform(0.5, 2.0, size=x.shape).astype(dtype)
    _, _, g0 = f(x, c)
    assert g0.shape == x.shape
    np.testing.assert_array_equal(g0, np.zeros_like(x))


def test_sign_of_matrix_keeps_shape_and_is_fused_with_neighbours():
    x = T.matrix('x', dtype='float64')
    f = theano.function([x], 3 * binarize.sign(x * 2 - 1))
    v = np.random.RandomState(3).randn(4, 5)
    v[0, 0] = 0.5  # 2 * 0.5 - 1 = 0 -> +1
    np.testing.assert_array_equal(f(v), 3 * ref_sign(v * 2 - 1))


# ---------------------------------------------------------------------------
# alpha, dense K and convolution K
# ---------------------------------------------------------------------------

CONV_K_CASES = [
    # (input shape, filter size, stride, pad)
    ((2, 3, 7, 6), (3, 3), (1, 1), (0, 0)),
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 9, 8), (3, 5), (2, 2), (1, 2)),
    ((3, 1, 5, 5), (2, 2), (2, 1), (1, 1)),     # full padding for a 2x2 filter
    ((2, 4, 6, 7), (5, 3), (2, 2), (4, 2)),     # full padding, stride 2
    ((1, 3, 8, 8), (1, 1), (1, 1), (0, 0)),
]


@pytest.fixture(scope='module')
def scale_function():
    """One compiled function for alpha (dense and conv), dense K and all conv K cases."""
    W2 = T.dmatrix('W2')
    W4 = T.dtensor4('W4')
    x2 = T.dmatrix('x2')
    xs = [T.dtensor4('x%d' % i) for i in range(len(CONV_K_CASES))]
    outs = [binarize.weight_scale(W2), binarize.weight_scale(W4),
            binarize.dense_input_scale(x2)]
    for x, (_, fs, stride, pad) in zip(xs, CONV_K_CASES):
        box = binarize.box_filter(fs, dtype='float64')
        outs.append(binarize.conv_input_scale(x, box, stride, pad))
    return theano.function([W2, W4, x2] + xs, outs)


@pytest.fixture(scope='module')
def scale_results(scale_function):
    rng = np.random.RandomState(4)
    W2 = rng.randn(7, 5)
    W4 = rng.randn(4, 3, 3, 2)
    x2 = rng.randn(6, 11)
    x2[1] = 0.0                       # an all-zero sample: K = 0
    xs = []
    for shape, _, _, _ in CONV_K_CASES:
        X = rng.randn(*shape)
        X[X < -1.2] = 0.0             # exact zeros count as |0|
        xs.append(X)
    outs = scale_function(W2, W4, x2, *xs)
    return dict(W2=W2, W4=W4, x2=x2, xs=xs, outs=outs)


def test_box_filter_is_uniform_average():
    box = binarize.box_filter((3, 5), dtype='float64')
    assert box.shape == (1, 1, 3, 5)
    np.testing.assert_allclose(box, 1.0 / 15)
    assert binarize.box_filter((2, 2)).dtype == np.dtype(theano.config.floatX)


def test_dense_alpha_is_mean_abs_weight_per_output_unit(scale_results):
    alpha = scale_results['outs'][0]
    assert alpha.shape == (5,)
    np.testing.assert_allclose(alpha, ref_alpha(scale_results['W2']), rtol=1e-12)


def test_conv_alpha_is_mean_abs_weight_per_filter(scale_results):
    alpha = scale_results['outs'][1]
    assert alpha.shape == (4,)
    np.testing.assert_allclose(alpha, ref_alpha(scale_results['W4']), rtol=1e-12)


def test_dense_K_is_mean_abs_input_per_sample(scale_results):
    K = scale_results['outs'][2]
    assert K.shape == (6, 1)
    np.testing.assert_allclose(K, ref_dense_K(scale_results['x2']), rtol=1e-12)
    assert K[1, 0] == 0.0


@pytest.mark.parametrize('case', range(len(CONV_K_CASES)))
def test_conv_K_matches_loops_with_stride_and_padding(scale_results, case):
    shape, fs, stride, pad = CONV_K_CASES[case]
    K = scale_results['outs'][3 + case]
    expected = ref_conv_K(scale_results['xs'][case], fs, stride, pad)
    assert K.shape == expected.shape
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-14)


def test_conv_K_reference_detects_padding():
    """The loop reference itself: with padding, border positions average fewer values."""
    X = np.ones((1, 2, 3, 3))
    K = ref_conv_K(X, (3, 3), (1, 1), (1, 1))
    assert K[0, 0, 1, 1] == 1.0
    assert K[0, 0, 0, 0] == pytest.approx(4 / 9)


def test_docstring_examples_hold():
    """The usage Examples in binary_net.binarize's docstrings run as doctests and hold."""
    result = doctest.testmod(binarize, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 10
