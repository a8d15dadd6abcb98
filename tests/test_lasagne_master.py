"""BatchNormLayer behaves as Lasagne master's (0.2.dev1), on Lasagne 0.1 and on master.

Lasagne master's ``get_output`` passes ``batch_norm_use_averages`` and
``batch_norm_update_averages`` to every layer, tags the running statistics
``batch_norm_stat`` and accepts an integer ``axes``. The expected values are
computed here in numpy.
"""
import itertools

import lasagne
import numpy as np
import pytest
import theano
import theano.tensor as T

from binary_net.layers import BatchNormLayer, batch_norm

FLOAT = theano.config.floatX


def make_layer(axes='auto'):
    rng = np.random.RandomState(0)
    layer = BatchNormLayer(lasagne.layers.InputLayer((None, 3, 4, 5)), axes=axes, epsilon=1e-4, alpha=0.1,
                           beta=rng.normal(0, 1, 3).astype(FLOAT) if axes == 'auto' else
                           lasagne.init.Constant(0.5),
                           gamma=rng.uniform(0.5, 2, 3).astype(FLOAT) if axes == 'auto' else
                           lasagne.init.Constant(2.0))
    layer.mean.set_value(rng.normal(0, 1, layer.mean.get_value().shape).astype(FLOAT))
    layer.inv_std.set_value(rng.uniform(0.5, 2, layer.inv_std.get_value().shape).astype(FLOAT))
    return layer


def numpy_batch_norm(x, mean, inv_std, gamma, beta, axes):
    keep = [a for a in range(x.ndim) if a not in axes]
    shape = [x.shape[a] if a in keep else 1 for a in range(x.ndim)]
    return ((x - mean.reshape(shape)) * inv_std.reshape(shape) * gamma.reshape(shape)
            + beta.reshape(shape))


@pytest.mark.parametrize('deterministic, use, update',
                         list(itertools.product([False, True], [None, False, True],
                                                [None, False, True])))
def test_use_and_update_averages_flags(deterministic, use, update):
    layer = make_layer()
    x = T.tensor4()
    kwargs = {}
    if use is not None:
        kwargs['batch_norm_use_averages'] = use
    if update is not None:
        kwargs['batch_norm_update_averages'] = update
    out = lasagne.layers.get_output(layer, x, deterministic=deterministic, **kwargs)
    f = theano.function([x], out)
    X = np.random.RandomState(1).normal(2, 3, (6, 3, 4, 5)).astype(FLOAT)
    axes = (0, 2, 3)
    stats = [layer.mean.get_value(), layer.inv_std.get_value()]
    batch = [X.mean(axis=axes), 1 / np.sqrt(X.var(axis=axes) + 1e-4)]
    use_averages = deterministic if use is None else use
    update_averages = (not deterministic) if update is None else update
    mean, inv_std = stats if use_averages else batch
    want = numpy_batch_norm(X, mean, inv_std, layer.gamma.get_value(), layer.beta.get_value(),
                            axes)
    np.testing.assert_allclose(f(X), want, rtol=1e-4, atol=1e-4)
    got_stats = [layer.mean.get_value(), layer.inv_std.get_value()]
    for before, after, towards in zip(stats, got_stats, batch):
        if update_averages:
            np.testing.assert_allclose(after, 0.9 * before + 0.1 * towards, rtol=1e-5)
        else:
            np.testing.assert_array_equal(after, before)


def test_statistics_are_tagged_batch_norm_stat():
    layer = batch_norm(lasagne.layers.DenseLayer((None, 7), 4))
    stats = lasagne.layers.get_all_params(layer, batch_norm_stat=True)
    bn = [l for l in lasagne.layers.get_all_layers(layer) if isinstance(l, BatchNormLayer)][0]
    assert stats == [bn.mean, bn.inv_std]
    trainable = lasagne.layers.get_all_params(layer, trainable=True)
    assert bn.mean not in trainable and bn.gamma in trainable
    assert bn.gamma not in lasagne.layers.get_all_params(layer, batch_norm_stat=True)


def test_integer_axes():
    layer = make_layer(axes=0)
    assert layer.axes == (0,)
    assert layer.mean.get_value().shape == (3, 4, 5)
    x = T.tensor4()
    f = theano.function([x], lasagne.layers.get_output(layer, x, deterministic=True))
    X = np.random.RandomState(2).normal(0, 1, (2, 3, 4, 5)).astype(FLOAT)
    want = (X - layer.mean.get_value()) * layer.inv_std.get_value() * 2.0 + 0.5
    np.testing.assert_allclose(f(X), want, rtol=1e-5, atol=1e-5)
    assert make_layer(axes=np.int64(0)).axes == (0,)
