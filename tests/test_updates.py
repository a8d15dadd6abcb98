"""Tests for binary_net.updates (BinaryNet's update rule) and binary_net.objectives.

The expected parameter values are computed in numpy from the gradients the
compiled function reports at the old parameter values, with the update rules
(SGD, and Adam as Kingma and Ba define it) written out independently here.
"""
import doctest
from collections import OrderedDict

import numpy as np
import pytest
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import DenseLayer, InputLayer

from binary_net import updates as updates_module
from binary_net.layers import BatchNormLayer, XnorConvLayer, XnorDenseLayer
from binary_net.objectives import categorical_accuracy, squared_hinge_loss
from binary_net.updates import binary_layers, binary_updates, learning_rate_scale

floatX = theano.config.floatX

# Glorot factors by hand: conv W (3, 2, 3, 3): fan_in = 2*9, fan_out = 3*9;
# dense W (75, 4): fan_in = 75, fan_out = 4.
CONV_SCALE = 1 / np.sqrt(1.5 / (18 + 27))
DENSE_SCALE = 1 / np.sqrt(1.5 / (75 + 4))


def mean_abs_per_unit(W):
    """alpha in numpy: per output unit (dense W (in, out)) or filter (conv W (F, ...))."""
    W = np.abs(np.asarray(W, np.float64))
    return W.mean(axis=0) if W.ndim == 2 else W.reshape(len(W), -1).mean(axis=1)


def build_network(seed):
    rng = np.random.RandomState(seed)
    l_in = InputLayer((None, 2, 5, 5))
    conv = XnorConvLayer(l_in, 3, 3, pad=1)
    bn1 = BatchNormLayer(conv)
    xdense = XnorDenseLayer(bn1, 4)
    out = DenseLayer(xdense, 3, nonlinearity=None)
    # binary weights in [-1, 1] with some exactly at the clipping bounds
    for layer in (conv, xdense):
        W = rng.uniform(-1, 1, layer.W.get_value().shape)
        flat = W.reshape(-1)
        flat[::5] = np.sign(flat[::5])
        flat[1::7] = 1.05 * np.sign(flat[1::7])   # saturated: STE cuts, clip pulls in
        layer.W.set_value(W.astype(floatX))
        layer.xalpha.set_value(mean_abs_per_unit(W).astype(floatX))
        layer.b.set_value(rng.uniform(-0.5, 0.5, layer.b.get_value().shape).astype(floatX))
    # full-precision weights outside [-1, 1] must not be clipped
    Wout = rng.uniform(-2, 2, (4, 3))
    Wout[0, 0], Wout[1, 1] = 1.8, -1.9
    out.W.set_value(Wout.astype(floatX))
    n = bn1.gamma.get_value().shape
    bn1.gamma.set_value(rng.uniform(0.5, 1.5, n).astype(floatX))
    bn1.beta.set_value(rng.uniform(-0.5, 0.5, n).astype(floatX))
    return dict(conv=conv, xdense=xdense, bn1=bn1, out=out,
                binary=[conv, xdense], scales=[CONV_SCALE, DENSE_SCALE],
                others=[conv.b, bn1.beta, bn1.gamma, xdense.b, out.W, out.b])


def compile_step(net, update_rule, learning_rate):
    x = T.tensor4('x')
    t = T.matrix('t')
    loss = squared_hinge_loss(lasagne.layers.get_output(net['out'], x), t)
    updates = binary_updates(loss, net['out'], update_rule=update_rule,
                             learning_rate=learning_rate)
    g_binary = theano.grad(loss, [layer.W_binary for layer in net['binary']])
    g_real = theano.grad(loss, [layer.W for layer in net['binary']])
    g_others = theano.grad(loss, net['others'])
    f = theano.function([x, t], [loss] + g_binary + g_real + g_others, updates=updates)
    return f, updates


def batch(rng, n=6):
    X = rng.randn(n, 2, 5, 5).astype(floatX)
    labels = rng.randint(0, 3, n)
    T_ = -np.ones((n, 3), floatX)
    T_[np.arange(n), labels] = 1
    return X, T_


def snapshot(net):
    return dict(W=[l.W.get_value() for l in net['binary']],
                xalpha=[l.xalpha.get_value() for l in net['binary']],
                others=[p.get_value() for p in net['others']])


def run_step(f, net, rng):
    before = snapshot(net)
    outs = f(*batch(rng))
    nb = len(net['binary'])
    grads = dict(binary=outs[1:1 + nb], real=outs[1 + nb:1 + 2 * nb],
                 others=outs[1 + 2 * nb:])
    return before, grads, snapshot(net)


# ---------------------------------------------------------------------------
# learning-rate scale and layer discovery
# ---------------------------------------------------------------------------

def test_learning_rate_scale_by_hand():
    net = build_network(0)
    assert learning_rate_scale(net['conv']) == pytest.approx(np.sqrt(30.0))
    assert learning_rate_scale(net['xdense']) == pytest.approx(np.sqrt(79 / 1.5))
    assert binary_layers(net['out']) == [net['conv'], net['xdense']]


def test_network_without_binary_layers_gets_plain_rule():
    l_in = InputLayer((None, 4))
    out = DenseLayer(l_in, 2)
    loss = T.sum(lasagne.layers.get_output(out, T.matrix('x')))
    updates = binary_updates(loss, out, update_rule=lasagne.updates.sgd, learning_rate=0.1)
    assert list(updates.keys()) == [out.W, out.b]


# ---------------------------------------------------------------------------
# SGD: exact arithmetic of the rule
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def sgd_step():
    net = build_network(1)
    lr = 0.05
    f, updates = compile_step(net, lasagne.updates.sgd, lr)
    before, grads, after = run_step(f, net, np.random.RandomState(2))
    return dict(net=net, lr=lr, updates=updates, before=before, grads=grads, after=after)


def test_sgd_updates_cover_exactly_the_trainable_params_and_xalpha(sgd_step):
    net, updates = sgd_step['net'], sgd_step['updates']
    expected = {net['conv'].W, net['conv'].xalpha, net['xdense'].W, net['xdense'].xalpha}
    expected |= set(net['others'])
    assert set(updates.keys()) == expected
    assert isinstance(updates, OrderedDict)


def test_gradient_is_taken_at_binary_weights(sgd_step):
    s = sgd_step
    for layer, scale, W0, g, g_real, W1 in zip(s['net']['binary'], s['net']['scales'],
                                               s['before']['W'], s['grads']['binary'],
                                               s['grads']['real'], s['after']['W']):
        # the gradient wrt W differs (alpha's path): the test can tell them apart
        assert not np.allclose(g, g_real, atol=1e-4)
        unclipped = W0.astype(np.float64) - s['lr'] * scale * g
        np.testing.assert_allclose(W1, np.clip(unclipped, -1, 1), rtol=0, atol=2e-6)
        wrong = np.clip(W0 - s['lr'] * scale * g_real, -1, 1)
        assert not np.allclose(W1, wrong, atol=1e-4)


def test_binary_step_is_scaled_and_clipped(sgd_step):
    s = sgd_step
    for scale, W0, g, W1 in zip(s['net']['scales'], s['before']['W'],
                                s['grads']['binary'], s['after']['W']):
        unclipped = W0.astype(np.float64) - s['lr'] * scale * g
        clipped = np.abs(unclipped) > 1
        assert clipped.any() and (~clipped & (g != 0)).any()
        assert np.abs(W1).max() <= 1
        np.testing.assert_array_equal(np.abs(W1[clipped]), 1)
        # an unscaled step would land elsewhere
        moved = ~clipped & (np.abs(g) > 1e-3)
        assert not np.allclose(W1[moved], (W0 - s['lr'] * g)[moved], atol=1e-5)


def test_xalpha_is_refreshed_to_new_mean_abs_weight(sgd_step):
    net = sgd_step['net']
    for W0, xalpha0, xalpha1, W1 in zip(sgd_step['before']['W'], sgd_step['before']['xalpha'],
                                        sgd_step['after']['xalpha'], sgd_step['after']['W']):
        expected = mean_abs_per_unit(W1)
        np.testing.assert_allclose(xalpha1, expected, rtol=1e-6)
        assert not np.allclose(xalpha0, expected, rtol=1e-4)   # it did change


def test_full_precision_params_follow_plain_sgd(sgd_step):
    s = sgd_step
    for p, v0, g, v1 in zip(s['net']['others'], s['before']['others'],
                            s['grads']['others'], s['after']['others']):
        assert np.abs(g).max() > 0, p.name
        np.testing.assert_allclose(v1, v0 - s['lr'] * g.astype(np.float64),
                                   rtol=1e-6, atol=1e-7, err_msg=p.name)
    Wout = s['after']['others'][4]
    assert np.abs(Wout).max() > 1     # not clipped


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------

class NumpyAdam:
    """Adam (Kingma and Ba, 2014) with Lasagne's defaults and bias correction in a_t."""

    def __init__(self, lr, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, epsilon
        self.t, self.m, self.v = 0, {}, {}

    def steps(self, grads):
        self.t += 1
        a_t = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        out = []
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            self.m[i] = self.b1 * self.m.get(i, 0) + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v.get(i, 0) + (1 - self.b2) * g ** 2
            out.append(a_t * self.m[i] / (np.sqrt(self.v[i]) + self.eps))
        return out


@pytest.fixture(scope='module')
def adam_steps():
    net = build_network(3)
    lr = 0.01
    f, _ = compile_step(net, lasagne.updates.adam, lr)
    rng = np.random.RandomState(4)
    return net, lr, [run_step(f, net, rng) for _ in range(3)]


def test_adam_binary_and_full_precision_updates(adam_steps):
    net, lr, steps = adam_steps
    adam_binary, adam_others = NumpyAdam(lr), NumpyAdam(lr)
    for before, grads, after in steps:
        for scale, W0, step, W1 in zip(net['scales'], before['W'],
                                       adam_binary.steps(grads['binary']), after['W']):
            expected = np.clip(W0 - scale * step, -1, 1)
            np.testing.assert_allclose(W1, expected, rtol=0, atol=2e-5)
        for p, v0, step, v1 in zip(net['others'], before['others'],
                                   adam_others.steps(grads['others']), after['others']):
            np.testing.assert_allclose(v1, v0 - step, rtol=0, atol=2e-6, err_msg=p.name)
        for xalpha, W1 in zip(after['xalpha'], after['W']):
            expected = mean_abs_per_unit(W1)
            np.testing.assert_allclose(xalpha, expected, rtol=1e-5)


def test_adam_first_step_is_scaled_learning_rate(adam_steps):
    """Adam's first step is lr * g / (|g| + eps'), about lr: scaled by the Glorot factor."""
    net, lr, steps = adam_steps
    before, grads, after = steps[0]
    for scale, W0, g, W1 in zip(net['scales'], before['W'], grads['binary'], after['W']):
        inside = (np.abs(W0 - scale * lr * np.sign(g)) < 1) & (np.abs(g) > 1e-4)
        assert inside.any()
        np.testing.assert_allclose(np.abs(W1 - W0)[inside], scale * lr, rtol=1e-3)


def test_batch_norm_running_averages_move_during_training(adam_steps):
    net = adam_steps[0]
    assert not np.allclose(net['bn1'].mean.get_value(), 0)
    assert not np.allclose(net['bn1'].inv_std.get_value(), 1)


# ---------------------------------------------------------------------------
# Objectives
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def objectives():
    p, t, tm = T.matrix('p'), T.ivector('t'), T.matrix('tm')
    return theano.function([p, t, tm], [squared_hinge_loss(p, tm), categorical_accuracy(p, t),
                                        categorical_accuracy(p, tm)])


def test_squared_hinge_loss_against_numpy(objectives):
    rng = np.random.RandomState(5)
    P = rng.uniform(-2, 2, (7, 4)).astype(floatX)
    labels = rng.randint(0, 4, 7).astype('int32')
    Tpm = -np.ones((7, 4), floatX)
    Tpm[np.arange(7), labels] = 1
    loss, _, _ = objectives(P, labels, Tpm)
    expected = np.mean([max(0.0, 1.0 - float(t) * float(y)) ** 2
                        for t, y in zip(Tpm.ravel(), P.ravel())])
    assert loss == pytest.approx(expected, rel=1e-6)
    # margins beyond 1 cost nothing
    loss0, _, _ = objectives(2 * Tpm, labels, Tpm)
    assert loss0 == 0


def test_categorical_accuracy_against_numpy(objectives):
    rng = np.random.RandomState(6)
    P = rng.randn(10, 5).astype(floatX)
    labels = rng.randint(0, 5, 10).astype('int32')
    labels[:4] = P[:4].argmax(axis=1)       # at least some correct
    labels[4:6] = (P[4:6].argmax(axis=1) + 1) % 5   # and some wrong
    Tpm = -np.ones((10, 5), floatX)
    Tpm[np.arange(10), labels] = 1
    onehot = (Tpm > 0).astype(floatX)
    expected = np.mean([np.argmax(row) == lab for row, lab in zip(P, labels)])
    _, acc_labels, acc_pm = objectives(P, labels, Tpm)
    _, _, acc_onehot = objectives(P, labels, onehot)
    assert 0 < expected < 1
    assert acc_labels == pytest.approx(expected)
    assert acc_pm == pytest.approx(expected)
    assert acc_onehot == pytest.approx(expected)


def test_docstring_examples_hold():
    """The usage Examples in binary_net.updates's docstrings run as doctests and hold."""
    result = doctest.testmod(updates_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 10
