"""The speed work must not change the numbers (issue 7).

The same seeded MNIST XNOR MLP is trained for 2 epochs on a real-MNIST subset
twice: once compiled straightforwardly (the fused ops of binary_net.theano_ops
switched off, plain theano.function) and once as Trainer compiles it now (fused
C ops, kept buffers, OpenMP). The losses must agree to float32 rounding and the
error counts exactly; the fused ops do not reorder any float32 arithmetic, so in
practice the runs agree bit for bit.
"""
import numpy as np
import pytest

from binary_net import datasets, networks, theano_ops, training

SPEC = networks.mnist_spec(num_units=256)
EPOCHS = 2


@pytest.fixture(scope='module')
def splits(mnist_root):
    return datasets.prepare('mnist', data_path=mnist_root, train_size=6000, valid_size=1000)


def train(splits, fused):
    with theano_ops.enabled(fused):
        trainer = training.Trainer(SPEC, seed=42)
    ops = {type(node.op).__name__ for node in trainer._train.maker.fgraph.toposort()}
    rates = training.learning_rate_schedule(3e-3, 3e-4, EPOCHS)
    record = dict(ops=ops, train_loss=[], valid_loss=[], valid_errors=[], test_errors=[])
    for epoch in range(EPOCHS):
        record['train_loss'].append(trainer.train_epoch(splits.X_train, splits.y_train,
                                                        epoch, 100, rates[epoch]))
        valid_loss, valid_error = trainer.evaluate(splits.X_valid, splits.y_valid)
        record['valid_loss'].append(valid_loss)
        record['valid_errors'].append(int(round(valid_error * len(splits.X_valid))))
        record['test_errors'].append(
            int(round(trainer.evaluate(splits.X_test, splits.y_test)[1] * len(splits.X_test))))
    record['params'] = trainer.param_values()
    record['state'] = [v.get_value() for v in trainer.optimizer_state]
    return record


@pytest.fixture(scope='module')
def runs(splits):
    return {'plain': train(splits, False), 'fused': train(splits, True)}


def test_the_two_runs_compile_different_graphs(runs):
    fused, plain = runs['fused']['ops'], runs['plain']['ops']
    for name in ('AbsSum', 'XnorDot', 'FastElemwise', 'Scale', 'Dot22Into'):
        assert name in fused and name not in plain
    assert 'Dot22Scalar' in plain and 'Dot22Scalar' not in fused


def test_same_losses_and_error_counts(runs):
    plain, fused = runs['plain'], runs['fused']
    np.testing.assert_allclose(fused['train_loss'], plain['train_loss'], rtol=1e-5)
    np.testing.assert_allclose(fused['valid_loss'], plain['valid_loss'], rtol=1e-5)
    assert fused['valid_errors'] == plain['valid_errors']
    assert fused['test_errors'] == plain['test_errors']
    # and it did learn something in 2 epochs of 6000 images (chance: 90% error)
    assert plain['valid_errors'][-1] < 0.25 * 1000


def test_same_parameters_and_optimizer_state(runs):
    plain, fused = runs['plain'], runs['fused']
    for a, b in zip(plain['params'] + plain['state'], fused['params'] + fused['state']):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
