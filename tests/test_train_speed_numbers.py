"""The speed work keeps the numbers (issues 7 and 10).

The same seeded network is trained for 20 steps twice: once compiled
straightforwardly (the rewrites of binary_net.theano_ext switched off, plain
theano.function) and once as Trainer compiles it now (fused C ops, popcount
forward products and convolutions, kept buffers, OpenMP convolutions). Since Theano's GEMM and
convolution ops call a real BLAS (scipy's OpenBLAS, see binary_net.compat) while
the fused graph's dense products go through numpy's, and the OpenMP convolution
sums its weight gradient per thread, the summation order differs: the loss
after 20 steps must agree within 1e-4 relative (every step's within 2e-3 for
the conv net, where a value within rounding of 0 may binarize differently). A seeded run of the fused graph is
reproducible with itself bit for bit, and its integer parts (the popcount
products) are exact (tests/test_theano_ops.py, binary_net.theano_ext).
"""
import numpy as np
import pytest

from binary_net import data as datasets, networks, theano_ext, train as training

MLP = networks.mnist_spec(num_units=256)
CONV = networks.cifar10_spec(filters=(16, 16, 32, 32, 64, 64), dense_units=64)
STEPS = 20


@pytest.fixture(scope='module')
def mnist(mnist_root):
    return datasets.prepare('mnist', data_path=mnist_root, train_size=STEPS * 100,
                            valid_size=1000)


@pytest.fixture(scope='module')
def cifar_like():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (STEPS * 50, 3, 32, 32)).astype(np.float32)
    # a learnable signal: the label shifts the mean of one channel
    y = rng.randint(0, 10, len(X))
    X[:, 0] += (y[:, None, None] - 4.5) / 10.
    return X, y


def steps(spec, X, y, batch, fused):
    """Losses of STEPS training steps, the ops compiled, and the final parameters."""
    with theano_ext.enabled(fused):
        trainer = training.Trainer(spec, seed=42)
    ops = {type(node.op).__name__ for node in trainer._train.maker.fgraph.toposort()}
    trainer.learning_rate.set_value(np.float32(3e-3))
    targets = (datasets.hinge_targets(y, 10) if trainer.loss_name == 'squared_hinge'
               else y.astype(np.int32))
    losses = [float(trainer._train(X[i * batch:(i + 1) * batch],
                                   targets[i * batch:(i + 1) * batch]))
              for i in range(STEPS)]
    return dict(ops=ops, losses=np.array(losses), params=trainer.param_values())


@pytest.fixture(scope='module')
def mlp_runs(mnist):
    return {fused: steps(MLP, mnist.X_train, mnist.y_train, 100, fused)
            for fused in (False, True)}


@pytest.fixture(scope='module')
def conv_runs(cifar_like):
    X, y = cifar_like
    runs = {fused: steps(CONV, X, y, 50, fused) for fused in (False, True)}
    runs['again'] = steps(CONV, X, y, 50, True)
    return runs


def test_the_two_mlp_runs_compile_different_graphs(mlp_runs):
    fused, plain = mlp_runs[True]['ops'], mlp_runs[False]['ops']
    for name in ('AbsSum', 'XnorDot', 'FastElemwise', 'Scale', 'Dot22Into'):
        assert name in fused and name not in plain
    assert 'Dot22Scalar' in plain and 'Dot22Scalar' not in fused


def test_mlp_losses_agree_after_20_steps(mlp_runs):
    plain, fused = mlp_runs[False]['losses'], mlp_runs[True]['losses']
    np.testing.assert_allclose(fused, plain, rtol=1e-4)
    assert plain[-1] < 0.7 * plain[0]        # and it learned


def test_conv_graphs_differ_and_losses_agree_after_20_steps(conv_runs):
    fused, plain = conv_runs[True], conv_runs[False]
    for name in ('ParallelCorrMM', 'ParallelCorrMMGradWeights', 'ParallelCorrMMGradInputs',
                 'XnorCorr', 'XnorDot', 'FastElemwise', 'TiledMaxPoolGrad'):
        assert name in fused['ops'] and name not in plain['ops']
    for name in ('CorrMM_gradWeights', 'MaxPoolGrad'):
        assert name in plain['ops'] and name not in fused['ops']
    # The loss after 20 steps within 1e-4. On the way, a weight or activation within
    # rounding of 0 can take the other sign in one graph (a discrete change of a
    # binary net), which moved one step's loss by 7e-4 relative here.
    np.testing.assert_allclose(fused['losses'][-1], plain['losses'][-1], rtol=1e-4)
    np.testing.assert_allclose(fused['losses'], plain['losses'], rtol=2e-3)
    assert plain['losses'][-5:].mean() < plain['losses'][:5].mean()


def test_seeded_fused_run_reproduces_itself(conv_runs):
    first, again = conv_runs[True], conv_runs['again']
    np.testing.assert_array_equal(first['losses'], again['losses'])
    for a, b in zip(first['params'], again['params']):
        np.testing.assert_array_equal(a, b)
