"""Tests for the XNOR layers and batch normalization of binary_net.layers.

Forward passes are checked against numpy references written with explicit loops
(the binary product) and scipy.signal (the input scale K), never against the
Theano expressions under test; gradients are checked against hand-derived numpy
formulas (the straight-through path) and central finite differences (the paths
through alpha and K). Each fixture compiles one Theano function for many checks.
"""
import doctest

import numpy as np
import pytest
import scipy.signal
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import DenseLayer, InputLayer, NonlinearityLayer

from binary_net import binarize, layers
from binary_net.layers import BatchNormLayer, XnorConvLayer, XnorDenseLayer, batch_norm

floatX = theano.config.floatX


# ---------------------------------------------------------------------------
# numpy references
# ---------------------------------------------------------------------------

def sgn(a):
    return np.where(a >= 0, 1.0, -1.0)


def ste_mask(a):
    return (np.abs(a) <= 1).astype(np.float64)


def explicit_pad(pad, fs):
    if pad == 'valid':
        return (0, 0)
    if pad == 'same':
        return (fs[0] // 2, fs[1] // 2)
    if pad == 'full':
        return (fs[0] - 1, fs[1] - 1)
    if isinstance(pad, int):
        return (pad, pad)
    return tuple(pad)


def ref_dense(X, W, b, binary_input=True, scale_input=True, scale_weights=True,
              bias_before_scaling=False, nonlinearity=None):
    X = np.asarray(X, np.float64).reshape(len(X), -1)
    W = np.asarray(W, np.float64)
    Xin = sgn(X) if binary_input else X
    Wb = sgn(W)
    out = np.zeros((X.shape[0], W.shape[1]))
    for n in range(X.shape[0]):
        for j in range(W.shape[1]):
            out[n, j] = sum(Xin[n, i] * Wb[i, j] for i in range(W.shape[0]))
    if b is not None and bias_before_scaling:
        out = out + b
    if binary_input and scale_input:
        out = out * np.abs(X).mean(axis=1)[:, None]
    if scale_weights:
        out = out * np.abs(W).mean(axis=0)[None, :]
    if b is not None and not bias_before_scaling:
        out = out + b
    return nonlinearity(out) if nonlinearity else out


def ref_padded_and_kernel(Xin, Wb, pad, flip):
    """The zero-padded input and the filters as correlated with it (flipped if flip)."""
    n, c, rows, cols = Xin.shape
    ph, pw = pad
    Xp = np.zeros((n, c, rows + 2 * ph, cols + 2 * pw))
    Xp[:, :, ph:ph + rows, pw:pw + cols] = Xin
    return Xp, (Wb[:, :, ::-1, ::-1] if flip else Wb)


def ref_conv_product(Xin, Wb, stride, pad, flip):
    """sum over channels and window of padded input times filter, explicit loops."""
    n, c, rows, cols = Xin.shape
    F, _, fh, fw = Wb.shape
    sh, sw = stride
    ph, pw = pad
    Xp, Wk = ref_padded_and_kernel(Xin, Wb, pad, flip)
    out_rows = (rows + 2 * ph - fh) // sh + 1
    out_cols = (cols + 2 * pw - fw) // sw + 1
    out = np.zeros((n, F, out_rows, out_cols))
    for b in range(n):
        for f in range(F):
            for oy in range(out_rows):
                for ox in range(out_cols):
                    window = Xp[b, :, oy * sh:oy * sh + fh, ox * sw:ox * sw + fw]
                    out[b, f, oy, ox] = np.sum(window * Wk[f])
    return out


def ref_conv_K(X, fs, stride, pad, out_shape):
    """K with scipy.signal: |X| channel mean, zero padded, box-averaged, subsampled."""
    A = np.abs(X).mean(axis=1)
    ph, pw = pad
    K = np.zeros((X.shape[0], 1) + out_shape)
    for b in range(X.shape[0]):
        Ap = np.pad(A[b], ((ph, ph), (pw, pw)))
        full = scipy.signal.correlate2d(Ap, np.ones(fs), mode='valid') / (fs[0] * fs[1])
        K[b, 0] = full[::stride[0], ::stride[1]][:out_shape[0], :out_shape[1]]
    return K


def ref_conv(X, W, b, stride, pad, flip, binary_input=True, scale_input=True,
             scale_weights=True):
    X = np.asarray(X, np.float64)
    W = np.asarray(W, np.float64)
    Xin = sgn(X) if binary_input else X
    out = ref_conv_product(Xin, sgn(W), stride, pad, flip)
    if binary_input and scale_input:
        out = out * ref_conv_K(X, W.shape[2:], stride, pad, out.shape[2:])
    if scale_weights:
        out = out * np.abs(W).reshape(len(W), -1).mean(axis=1)[None, :, None, None]
    if b is not None:
        out = out + np.asarray(b, np.float64)[None, :, None, None]
    return out


def ref_conv_backward(Xin, Wb, C, stride, pad, flip):
    """Gradients of sum(C * conv(Xin, Wb)) wrt Xin and Wb, by explicit loops."""
    n, c, rows, cols = Xin.shape
    F, _, fh, fw = Wb.shape
    sh, sw = stride
    ph, pw = pad
    Xp, Wk = ref_padded_and_kernel(Xin, Wb, pad, flip)
    dXp = np.zeros_like(Xp)
    dWk = np.zeros_like(Wk)
    for b in range(n):
        for f in range(F):
            for oy in range(C.shape[2]):
                for ox in range(C.shape[3]):
                    sl = (slice(oy * sh, oy * sh + fh), slice(ox * sw, ox * sw + fw))
                    dWk[f] += C[b, f, oy, ox] * Xp[(b, slice(None)) + sl]
                    dXp[(b, slice(None)) + sl] += C[b, f, oy, ox] * Wk[f]
    dX = dXp[:, :, ph:ph + rows, pw:pw + cols]
    dW = dWk[:, :, ::-1, ::-1] if flip else dWk
    return dX, dW


def test_reference_conv_flip_is_true_convolution():
    """The loop reference agrees with scipy's true convolution and correlation."""
    rng = np.random.RandomState(0)
    X = rng.randn(1, 1, 6, 5)
    W = rng.randn(1, 1, 3, 2)
    conv = ref_conv_product(X, W, (1, 1), (0, 0), flip=True)[0, 0]
    corr = ref_conv_product(X, W, (1, 1), (0, 0), flip=False)[0, 0]
    np.testing.assert_allclose(conv, scipy.signal.convolve2d(X[0, 0], W[0, 0], 'valid'))
    np.testing.assert_allclose(corr, scipy.signal.correlate2d(X[0, 0], W[0, 0], 'valid'))


# ---------------------------------------------------------------------------
# Forward passes
# ---------------------------------------------------------------------------

def random_input(rng, shape, zero_fraction=0.15):
    X = rng.uniform(-2, 2, size=shape)
    X[rng.uniform(size=shape) < zero_fraction] = 0.0   # exact zeros binarize to +1
    return X.astype(floatX)


def random_weights(rng, shape):
    W = rng.uniform(-1, 1, size=shape)
    W[rng.uniform(size=shape) < 0.1] = 0.0
    return W.astype(floatX)


DENSE_CASES = [
    # (input shape, layer input shape, units, options)
    ((5, 11), (None, 11), 6, {}),
    ((4, 3, 2, 2), (4, 3, 2, 2), 7, {}),           # flattens a 4D input
    ((3, 9), (None, 9), 5, dict(binary_input=False)),
    ((3, 9), (None, 9), 5, dict(scale_input=False)),
    ((3, 9), (None, 9), 5, dict(scale_weights=False)),
    ((6, 8), (None, 8), 3, dict(bias_before_scaling=True)),
    ((6, 8), (None, 8), 3, dict(bias_before_scaling=True, scale_input=False,
                                nonlinearity=lasagne.nonlinearities.rectify)),
    ((2, 13), (None, 13), 4, dict(b=None)),
]

CONV_CASES = [
    # (input shape, layer input shape, filters, filter size, stride, pad, flip, options)
    ((2, 3, 7, 6), (None, 3, 7, 6), 4, (3, 3), (1, 1), 'valid', True, {}),
    ((3, 2, 9, 8), (3, 2, 9, 8), 5, (3, 5), (1, 1), 'same', False, {}),
    ((2, 3, 8, 7), (None, 3, 8, 7), 3, (3, 3), (2, 2), 'full', True, {}),
    ((1, 4, 7, 9), (1, 4, 7, 9), 2, (2, 3), (2, 1), (1, 2), False, {}),
    ((2, 2, 9, 7), (None, 2, 9, 7), 3, (3, 3), (2, 2), 1, True, {}),
    ((2, 3, 9, 7), (None, 3, 9, 7), 3, (3, 3), (2, 2), 1, True, dict(binary_input=False)),
    ((2, 3, 7, 6), (None, 3, 7, 6), 4, (3, 3), (1, 1), 'same', False, dict(scale_input=False)),
    ((2, 3, 9, 9), (None, 3, 9, 9), 2, (5, 5), (2, 2), 'same', True, dict(scale_weights=False)),
    ((1, 2, 5, 6), (None, 2, 5, 6), 3, (2, 2), (1, 1), 'full', False, dict(b=None)),
]


@pytest.fixture(scope='module')
def forward():
    """All dense and conv cases in one compiled function, with their numpy references."""
    rng = np.random.RandomState(42)
    inputs, values, outputs, cases = [], [], [], []
    for shape, layer_shape, units, options in DENSE_CASES:
        x = T.TensorType(floatX, (False,) * len(shape))('x')
        options = dict(options)
        W = random_weights(rng, (int(np.prod(shape[1:])), units))
        b = options.pop('b', rng.uniform(-1, 1, units).astype(floatX))
        layer = XnorDenseLayer(layer_shape, units, W=W, b=b, **options)
        X = random_input(rng, shape)
        ref = ref_dense(X, W, b, **options)
        inputs.append(x)
        values.append(X)
        outputs.append(layer.get_output_for(x))
        cases.append((layer, ref, shape))
    for shape, layer_shape, F, fs, stride, pad, flip, options in CONV_CASES:
        x = T.tensor4('x', dtype=floatX)
        options = dict(options)
        W = random_weights(rng, (F, shape[1]) + fs)
        b = options.pop('b', rng.uniform(-1, 1, F).astype(floatX))
        layer = XnorConvLayer(layer_shape, F, fs, stride=stride, pad=pad, W=W, b=b,
                              flip_filters=flip, **options)
        X = random_input(rng, shape)
        ref = ref_conv(X, W, b, stride, explicit_pad(pad, fs), flip, **options)
        inputs.append(x)
        values.append(X)
        outputs.append(layer.get_output_for(x))
        cases.append((layer, ref, shape))
    # a hand-checked case (see test_zero_input_...): zero input, filters +1 and -1
    hand = XnorConvLayer((1, 1, 3, 3), 2, 3, pad='same', b=None, scale_input=False,
                         scale_weights=False,
                         W=(np.array([1., -1.]).reshape(2, 1, 1, 1)
                         * np.ones((2, 1, 3, 3))).astype(floatX))
    x = T.tensor4('x', dtype=floatX)
    inputs.append(x)
    values.append(np.zeros((1, 1, 3, 3), floatX))
    outputs.append(hand.get_output_for(x))
    f = theano.function(inputs, outputs)
    results = f(*values)
    return dict(cases=[(layer, ref, shape, out)
                       for (layer, ref, shape), out in zip(cases, results)],
                hand=results[-1])


@pytest.mark.parametrize('case', range(len(DENSE_CASES)))
def test_dense_forward_matches_reference(forward, case):
    layer, ref, shape, out = forward['cases'][case]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize('case', range(len(CONV_CASES)))
def test_conv_forward_matches_reference(forward, case):
    layer, ref, shape, out = forward['cases'][len(DENSE_CASES) + case]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize('case', range(len(DENSE_CASES) + len(CONV_CASES)))
def test_output_shape_matches_computed_shape(forward, case):
    layer, ref, shape, out = forward['cases'][case]
    declared = layer.output_shape
    assert declared[0] in (None, shape[0])
    assert tuple(declared[1:]) == out.shape[1:]
    assert layer.get_output_shape_for(shape) == out.shape


def test_forward_references_differ_between_options(forward):
    """Guard against vacuous cases: the option cases really change the output."""
    base = ref_dense(np.full((1, 4), 0.5), np.full((4, 2), 0.25), np.ones(2))
    assert not np.allclose(base, ref_dense(np.full((1, 4), 0.5), np.full((4, 2), 0.25),
                                           np.ones(2), bias_before_scaling=True))
    for layer, ref, shape, out in forward['cases']:
        assert np.abs(ref).max() > 0.1


def test_zero_input_binarizes_to_plus_one_but_padding_contributes_zero(forward):
    """All-zero input, all-one 3x3 filter, 'same' padding, no scaling, no bias."""
    # centre sees 9 (+1 * +1) terms, edges 6, corners 4: zeros are +1, padding is 0
    hand = forward['hand']
    np.testing.assert_array_equal(hand[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    np.testing.assert_array_equal(hand[0, 1], -hand[0, 0])


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------

def test_dense_params_order_and_tags():
    layer = XnorDenseLayer((None, 7), 4)
    assert layer.get_params() == [layer.W, layer.b, layer.xalpha]
    assert layer.get_params(trainable=True) == [layer.W, layer.b]
    assert layer.get_params(binary=True) == [layer.W]
    assert 'binary' in layer.params[layer.W]
    assert 'binary' not in layer.params[layer.b]
    assert layer.get_params(regularizable=True) == [layer.W]
    np.testing.assert_allclose(layer.xalpha.get_value(),
                               np.abs(layer.W.get_value()).mean(axis=0), rtol=1e-6)
    assert layer.xalpha.get_value().shape == (4,)


def test_conv_params_order_and_tags():
    layer = XnorConvLayer((None, 3, 8, 8), 5, 3, pad='same')
    assert layer.get_params() == [layer.W, layer.b, layer.beta_filter, layer.xalpha]
    assert layer.get_params(trainable=True) == [layer.W, layer.b]
    assert layer.get_params(binary=True) == [layer.W]
    assert 'binary' in layer.params[layer.W]
    W = layer.W.get_value()
    np.testing.assert_allclose(layer.xalpha.get_value(),
                               np.abs(W).reshape(5, -1).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(layer.beta_filter.get_value(), np.full((1, 1, 3, 3), 1 / 9.),
                               rtol=1e-6)
    assert layer.pad == (1, 1)


def test_dense_without_bias_has_no_b_param():
    layer = XnorDenseLayer((None, 7), 4, b=None)
    assert layer.get_params() == [layer.W, layer.xalpha]


def test_same_padding_rejects_even_filters():
    with pytest.raises(ValueError):
        XnorConvLayer((None, 1, 6, 6), 2, (2, 3), pad='same')


# ---------------------------------------------------------------------------
# Gradients: the straight-through path
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def ste_gradients():
    """Unscaled layers: d sum(C*Y)/dX and /dW are the STE-masked binary gradients."""
    rng = np.random.RandomState(7)
    Xd = rng.uniform(-2, 2, (4, 9)).astype(floatX)
    Xd[0, :3] = [1.0, -1.0, 0.0]
    Wd = rng.uniform(-1.6, 1.6, (9, 5)).astype(floatX)
    Wd[0, :2] = [1.0, -1.0]
    dense = XnorDenseLayer((None, 9), 5, W=Wd, scale_input=False, scale_weights=False)
    Xc = rng.uniform(-2, 2, (2, 2, 7, 6)).astype(floatX)
    Wc = rng.uniform(-1.6, 1.6, (3, 2, 3, 3)).astype(floatX)
    conv = XnorConvLayer((None, 2, 7, 6), 3, 3, stride=2, pad=1, W=Wc, flip_filters=True,
                         scale_input=False, scale_weights=False)
    xd, xc = T.matrix('xd', dtype=floatX), T.tensor4('xc', dtype=floatX)
    yd = dense.get_output_for(xd)
    yc = conv.get_output_for(xc)
    Cd = rng.randn(4, 5).astype(floatX)
    Cc = rng.randn(*conv.get_output_shape_for(Xc.shape)).astype(floatX)
    ld, lc = T.sum(yd * Cd), T.sum(yc * Cc)
    f = theano.function([xd, xc], theano.grad(ld, [xd, dense.W]) + theano.grad(lc, [xc, conv.W]))
    gXd, gWd, gXc, gWc = f(Xd, Xc)
    return dict(Xd=Xd, Wd=Wd, Cd=Cd, Xc=Xc, Wc=Wc, Cc=Cc,
                gXd=gXd, gWd=gWd, gXc=gXc, gWc=gWc)


def test_dense_straight_through_gradients(ste_gradients):
    g = ste_gradients
    X, W, C = (g[k].astype(np.float64) for k in ('Xd', 'Wd', 'Cd'))
    expected_X = (C @ sgn(W).T) * ste_mask(X)
    expected_W = (sgn(X).T @ C) * ste_mask(W)
    np.testing.assert_allclose(g['gXd'], expected_X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g['gWd'], expected_W, rtol=1e-5, atol=1e-5)
    assert g['gXd'][0, 0] != 0 and g['gXd'][0, 1] != 0    # |x| = 1 passes
    assert np.any(g['gWd'] == 0) and np.any(g['gXd'] == 0)  # saturated entries cut


def test_conv_straight_through_gradients(ste_gradients):
    g = ste_gradients
    X, W, C = (g[k].astype(np.float64) for k in ('Xc', 'Wc', 'Cc'))
    dX, dW = ref_conv_backward(sgn(X), sgn(W), C, (2, 2), (1, 1), flip=True)
    np.testing.assert_allclose(g['gXc'], dX * ste_mask(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g['gWc'], dW * ste_mask(W), rtol=1e-5, atol=1e-5)
    assert np.any(g['gWc'] == 0) and np.any(g['gWc'] != 0)


# ---------------------------------------------------------------------------
# Gradients through alpha and K: finite differences with the sign's gradient off
# ---------------------------------------------------------------------------

def away_from_zero(rng, shape, low, high):
    """Values with |v| in [low, high] and random signs, so a small step keeps every sign."""
    return rng.uniform(low, high, size=shape) * np.where(rng.uniform(size=shape) < 0.5, -1, 1)


@pytest.fixture(scope='module')
def true_gradients():
    rng = np.random.RandomState(11)
    sign = binarize.sign
    with pytest.MonkeyPatch.context() as mp, theano.change_flags(floatX='float64'):
        mp.setattr(binarize, 'sign', lambda x, straight_through=True: sign(x, False))
        Wd = away_from_zero(rng, (6, 4), 0.05, 1.5)
        dense = XnorDenseLayer((None, 6), 4, W=Wd, b=rng.randn(4))
        Wc = away_from_zero(rng, (3, 2, 3, 2), 0.05, 1.5)
        conv = XnorConvLayer((None, 2, 6, 5), 3, (3, 2), stride=2, pad=(1, 1), W=Wc,
                             b=rng.randn(3), flip_filters=True)
        xd, xc = T.dmatrix('xd'), T.dtensor4('xc')
        yd = dense.get_output_for(xd)
        yc = conv.get_output_for(xc)
    Xd = away_from_zero(rng, (3, 6), 0.05, 2.0)
    Xc = away_from_zero(rng, (2, 2, 6, 5), 0.05, 2.0)
    Cd = rng.randn(3, 4)
    Cc = rng.randn(*conv.get_output_shape_for(Xc.shape))
    loss = T.sum(yd * Cd) + T.sum(yc * Cc)
    grads = theano.grad(loss, [xd, dense.W, xc, conv.W])
    f = theano.function([xd, xc], [loss] + grads)
    return dict(f=f, dense=dense, conv=conv, Xd=Xd, Xc=Xc, Cd=Cd)


def central_difference(fun, value, h=1e-6):
    grad = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        old = value[idx]
        value[idx] = old + h
        up = fun()
        value[idx] = old - h
        down = fun()
        value[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


def test_true_gradient_graph_is_float64(true_gradients):
    t = true_gradients
    assert t['dense'].W.dtype == 'float64' and t['conv'].W.dtype == 'float64'
    out = t['f'](t['Xd'], t['Xc'])
    assert all(o.dtype == np.float64 for o in out)


def test_gradient_through_K_matches_finite_differences(true_gradients):
    t = true_gradients
    f, Xd, Xc = t['f'], t['Xd'].copy(), t['Xc'].copy()
    _, gXd, _, gXc, _ = f(Xd, Xc)
    fd_d = central_difference(lambda: f(Xd, Xc)[0], Xd)
    fd_c = central_difference(lambda: f(Xd, Xc)[0], Xc)
    # with the sign's gradient off, only K carries a gradient to the input
    assert np.abs(gXd).max() > 1e-2 and np.abs(gXc).max() > 1e-2
    np.testing.assert_allclose(gXd, fd_d, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gXc, fd_c, rtol=1e-6, atol=1e-7)


def test_gradient_through_alpha_matches_finite_differences(true_gradients):
    t = true_gradients
    f, Xd, Xc = t['f'], t['Xd'], t['Xc']
    for layer, index in ((t['dense'], 2), (t['conv'], 4)):
        W = layer.W.get_value()
        g = f(Xd, Xc)[index]

        def loss():
            layer.W.set_value(W)
            return f(Xd, Xc)[0]
        fd = central_difference(loss, W)
        layer.W.set_value(W)
        assert np.abs(g).max() > 1e-2
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


def test_dense_gradients_through_K_and_alpha_analytically(true_gradients):
    """Y = P K alpha + b with P = sign(X) sign(W) held fixed: dK/dx = sign(x) / n_in
    and dalpha/dw = sign(w) / n_in, so both gradients have a closed form."""
    t = true_gradients
    X, C = t['Xd'], t['Cd']
    W = t['dense'].W.get_value()
    P = sgn(X) @ sgn(W)
    K = np.abs(X).mean(axis=1, keepdims=True)
    alpha = np.abs(W).mean(axis=0, keepdims=True)
    _, gX, gW, _, _ = t['f'](X, t['Xc'])
    expected_X = (C * P * alpha).sum(axis=1, keepdims=True) * sgn(X) / X.shape[1]
    expected_W = (C * P * K).sum(axis=0, keepdims=True) * sgn(W) / W.shape[0]
    np.testing.assert_allclose(gX, expected_X, rtol=1e-10)
    np.testing.assert_allclose(gW, expected_W, rtol=1e-10)


# ---------------------------------------------------------------------------
# Batch normalization
# ---------------------------------------------------------------------------

def bn_ref(X, axes, mean, inv_std, gamma, beta):
    shape = [1 if a in axes else s for a, s in enumerate(X.shape)]
    r = lambda v: np.asarray(v, np.float64).reshape(shape)
    return (X - r(mean)) * r(inv_std) * r(gamma) + r(beta)


@pytest.fixture(scope='module')
def bn():
    rng = np.random.RandomState(3)
    x2, x4, xd = T.matrix('x2'), T.tensor4('x4'), T.matrix('xd')
    l2 = BatchNormLayer((None, 5))
    l4 = BatchNormLayer((None, 3, 5, 6))
    dense = DenseLayer(InputLayer((None, 4)), 3,
                       nonlinearity=lasagne.nonlinearities.rectify)
    net = batch_norm(dense)
    for layer in (l2, l4, net.input_layer):
        n = layer.beta.get_value().shape
        layer.beta.set_value(rng.randn(*n).astype(floatX))
        layer.gamma.set_value(rng.uniform(0.5, 2, n).astype(floatX))
        layer.mean.set_value(rng.randn(*n).astype(floatX))
        layer.inv_std.set_value(rng.uniform(0.5, 2, n).astype(floatX))
    train = theano.function([x2, x4], [l2.get_output_for(x2),
                                       l4.get_output_for(x4)])
    test = theano.function(
        [x2, x4, xd], [l2.get_output_for(x2, deterministic=True),
                       l4.get_output_for(x4, deterministic=True),
                       lasagne.layers.get_output(net, xd, deterministic=True)])
    return dict(rng=rng, l2=l2, l4=l4, dense=dense, net=net, train=train, test=test)


def test_batch_norm_axes_and_params():
    l2 = BatchNormLayer((None, 5))
    l4 = BatchNormLayer((None, 3, 5, 6))
    assert l2.axes == (0,) and l4.axes == (0, 2, 3)
    assert l2.epsilon == 1e-4 and l2.alpha == 0.1
    for layer, n in ((l2, 5), (l4, 3)):
        assert layer.get_params() == [layer.beta, layer.gamma, layer.mean, layer.inv_std]
        assert [p.name for p in layer.get_params()] == ['beta', 'gamma', 'mean', 'inv_std']
        assert layer.get_params(trainable=True) == [layer.beta, layer.gamma]
        assert all(p.get_value().shape == (n,) for p in layer.get_params())
        np.testing.assert_array_equal(layer.inv_std.get_value(), 1)
        np.testing.assert_array_equal(layer.mean.get_value(), 0)
    no_beta = BatchNormLayer((None, 5), beta=None)
    assert no_beta.get_params() == [no_beta.gamma, no_beta.mean, no_beta.inv_std]
    with pytest.raises(ValueError):
        BatchNormLayer((None, None, 4, 4))


def test_batch_norm_training_uses_batch_statistics_and_moves_running_averages(bn):
    rng, l2, l4 = bn['rng'], bn['l2'], bn['l4']
    for step in range(2):
        X2 = (rng.randn(8, 5) * 3 + 1).astype(floatX)
        X4 = rng.randn(4, 3, 5, 6).astype(floatX)
        X4[:, 1] = 2.5    # a constant channel: variance 0, inv_std = 1/sqrt(epsilon)
        before = [(l.mean.get_value(), l.inv_std.get_value()) for l in (l2, l4)]
        out2, out4 = bn['train'](X2, X4)
        for layer, X, out, (mean0, inv0) in ((l2, X2, out2, before[0]),
                                             (l4, X4, out4, before[1])):
            X = X.astype(np.float64)
            axes = layer.axes
            mean = X.mean(axis=axes)
            inv_std = 1 / np.sqrt(X.var(axis=axes) + 1e-4)
            expected = bn_ref(X, axes, mean, inv_std, layer.gamma.get_value(),
                              layer.beta.get_value())
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(layer.mean.get_value(), 0.9 * mean0 + 0.1 * mean,
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(layer.inv_std.get_value(),
                                       0.9 * inv0 + 0.1 * inv_std, rtol=1e-5, atol=1e-5)
        # the constant channel: normalized to 0, so the output is beta there
        np.testing.assert_allclose(out4[:, 1], l4.beta.get_value()[1], atol=1e-4)
        assert 1 / np.sqrt(1e-4) == pytest.approx(
            (l4.inv_std.get_value()[1] - 0.9 * before[1][1][1]) / 0.1, rel=1e-4)


def test_batch_norm_deterministic_uses_running_averages(bn):
    rng, l2, l4, net, dense = bn['rng'], bn['l2'], bn['l4'], bn['net'], bn['dense']
    X2 = rng.randn(6, 5).astype(floatX)
    X4 = rng.randn(2, 3, 5, 6).astype(floatX)
    Xd = rng.randn(7, 4).astype(floatX)
    bnl = net.input_layer
    pre = Xd.astype(np.float64) @ dense.W.get_value() + dense.b.get_value()
    bnl.mean.set_value((pre.mean(axis=0) + 0.1).astype(floatX))   # both signs after BN
    stats = [p.get_value() for l in (l2, l4) for p in (l.mean, l.inv_std)]
    out2, out4, outd = bn['test'](X2, X4, Xd)
    # deterministic passes leave the running averages alone
    for old, new in zip(stats, [p.get_value() for l in (l2, l4) for p in (l.mean, l.inv_std)]):
        np.testing.assert_array_equal(old, new)
    for layer, X, out in ((l2, X2, out2), (l4, X4, out4)):
        expected = bn_ref(X.astype(np.float64), layer.axes, layer.mean.get_value(),
                          layer.inv_std.get_value(), layer.gamma.get_value(),
                          layer.beta.get_value())
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # batch_norm(): dense (identity) -> normalization -> rectify
    normalized = bn_ref(pre, (0,), bnl.mean.get_value(), bnl.inv_std.get_value(),
                        bnl.gamma.get_value(), bnl.beta.get_value())
    np.testing.assert_allclose(outd, np.maximum(normalized, 0), rtol=1e-5, atol=1e-5)
    assert np.any(normalized < 0) and np.any(normalized > 0)
    # rectifying before normalizing would give something else
    wrong = bn_ref(np.maximum(pre, 0), (0,), bnl.mean.get_value(), bnl.inv_std.get_value(),
                   bnl.gamma.get_value(), bnl.beta.get_value())
    assert not np.allclose(outd, wrong, atol=1e-3)


def test_batch_norm_helper_moves_nonlinearity(bn):
    net, dense = bn['net'], bn['dense']
    assert isinstance(net, NonlinearityLayer)
    assert net.nonlinearity is lasagne.nonlinearities.rectify
    assert isinstance(net.input_layer, BatchNormLayer)
    assert net.input_layer.input_layer is dense
    assert dense.nonlinearity is lasagne.nonlinearities.identity
    # the dense bias is kept (model files keep the original's layout)
    assert lasagne.layers.get_all_params(net) == [dense.W, dense.b] + net.input_layer.get_params()


def test_batch_norm_helper_without_nonlinearity_and_kwargs():
    xnor = XnorDenseLayer((None, 6), 4)
    out = batch_norm(xnor, epsilon=1e-3, alpha=0.2)
    assert isinstance(out, BatchNormLayer) and out.input_layer is xnor
    assert out.epsilon == 1e-3 and out.alpha == 0.2
    plain = DenseLayer(InputLayer((None, 3)), 2, nonlinearity=None)
    assert isinstance(batch_norm(plain), BatchNormLayer)


def test_docstring_examples_hold():
    """The usage Examples in binary_net.layers's docstrings run as doctests and hold."""
    result = doctest.testmod(layers, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 15
