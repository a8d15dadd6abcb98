"""The speed work keeps the numbers (issues 7 and 10).

The same seeded network is trained for 20 steps twice: once compiled
straightforwardly (the rewrites of binary_net.theano_ext switched off, plain
theano.function) and once as Trainer compiles it now (fused C ops, popcount
forward products and convolutions, kept buffers, OpenMP convolutions). Since Theano's GEMM and
convolution ops call a real BLAS (scipy's OpenBLAS, see binary_net.compat) while
the fused graph's dense products go through numpy's and the OpenMP convolution
sums its weight gradient per thread, the summation order differs: the loss
after 20 steps must agree within 1e-4 relative (every step's within 2e-3 for
the conv net, where a value within rounding of 0 may binarize differently).

On a CPU with Intel AMX the binary convolutions' gradients are summed in AMX's
order (binary_net.kernels.conv_grad): every gradient differs from the BLAS's in its
last bits. Twenty free-running steps of a binary conv net do not survive that:
a weight or activation within rounding of 0 takes the other sign, Adam turns a
gradient that is mathematically 0 (the bias of a convolution that a batch norm
follows) into a step of the learning rate's size either way, and the runs separate.
Measured here (2-core Xeon, six seeds of this net): the loss after 20 steps of the
fused graph without AMX differed from the plain graph's by more than 1e-4 for
three of the six seeds (up to 5.6e-2), with AMX for four. So the 20-step
comparison runs the fused graph with ``BINARY_NET_AMX=0`` (where it differs from
the plain graph by its OpenMP summation only), and the graph with AMX is compared
where the comparison is well posed: its gradients from the same parameters agree
with the plain graph's within float32 summation error. A seeded run of the fused
graph is reproducible with itself bit for bit, and its integer parts (the popcount
products) are exact (tests/test_theano_ops.py, binary_net.theano_ext).
"""
import lasagne
import numpy as np
import pytest
import theano
import theano.tensor as T

from binary_net import data as datasets, kernels, networks, theano_ext, train as training

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
    runs['blas'] = runs[True]
    if kernels.amx_available():
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv('BINARY_NET_AMX', '0')
            runs['blas'] = steps(CONV, X, y, 50, True)
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
    # where AMX runs, the gradients of the binary convolutions take it
    amx = kernels.amx_available()
    for name in ('SignCorrGradWeights', 'SignCorrGradInputs'):
        assert (name in fused['ops']) == amx and name not in plain['ops']
        assert name not in conv_runs['blas']['ops']
    # The loss after 20 steps within 1e-4 (without AMX, see the module's docstring).
    # On the way, a weight or activation within rounding of 0 can take the other
    # sign in one graph, which moved one step's loss by 7e-4 relative here.
    blas = conv_runs['blas']
    np.testing.assert_allclose(blas['losses'][-1], plain['losses'][-1], rtol=1e-4)
    np.testing.assert_allclose(blas['losses'], plain['losses'], rtol=2e-3)
    assert plain['losses'][-5:].mean() < plain['losses'][:5].mean()


def gradients(trainer, fused):
    """A function of (X, targets) giving the training loss's gradients with respect to
    ``trainer``'s trainable parameters, compiled plainly or fused."""
    assert trainer.loss_name == 'cross_entropy'
    X, targets = T.tensor4(), T.ivector()
    out = lasagne.layers.get_output(trainer.network, X, deterministic=False)
    params = lasagne.layers.get_all_params(trainer.network, trainable=True)
    grads = T.grad(T.mean(T.nnet.categorical_crossentropy(out, targets)), params)
    with theano_ext.enabled(fused):
        return (theano_ext.function([X, targets], grads) if fused
                else theano.function([X, targets], grads))


def test_conv_gradients_agree_from_the_same_parameters(cifar_like, conv_runs):
    """Fused (with AMX where it runs) against plain, at the initial parameters and at
    the plain run's after 20 steps: every parameter's gradient within 1e-4 of its
    norm, plus 1e-6 of the largest gradient's norm (the biases that a batch norm
    follows have gradient 0 and get rounding noise of 1e-7 to 5e-7 in norm from either
    graph here, against a largest gradient norm of about 1.8)."""
    X, y = cifar_like
    targets = y[:50].astype(np.int32)
    trainer = training.Trainer(CONV, seed=42)
    plain, fused = gradients(trainer, False), gradients(trainer, True)
    names = {type(node.op).__name__ for node in fused.maker.fgraph.toposort()}
    assert ('SignCorrGradInputs' in names) == kernels.amx_available()
    for values in (None, conv_runs[False]['params']):
        if values is not None:
            trainer.set_param_values(values)
        want, got = plain(X[:50], targets), fused(X[:50], targets)
        largest = max(np.linalg.norm(g) for g in want)
        assert largest > 0
        for g, w in zip(got, want):
            assert np.linalg.norm(g - w) <= 1e-4 * np.linalg.norm(w) + 1e-6 * largest


def test_seeded_fused_run_reproduces_itself(conv_runs):
    first, again = conv_runs[True], conv_runs['again']
    np.testing.assert_array_equal(first['losses'], again['losses'])
    for a, b in zip(first['params'], again['params']):
        np.testing.assert_array_equal(a, b)
