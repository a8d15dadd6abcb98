"""Training on real MNIST: learning, exact resume, reproducibility, NaN and Ctrl-C."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from binary_net import data as datasets, modelfile, networks, train
from helpers import interruptible

SPEC = networks.mnist_spec(num_units=128, dropout_p=0.2)
# train.fit settings of the checkpoint tests: no progress bar, no log.
QUIET_FIT = dict(batch_size=100, lr_start=3e-3, lr_end=3e-5, progress=False,
                 log=lambda line: None)


@pytest.fixture(scope='module')
def splits(mnist_root):
    return datasets.prepare('mnist', data_path=mnist_root, train_size=10000, valid_size=2000)


@pytest.fixture(scope='module')
def trainer():
    return train.Trainer(SPEC, seed=7)


def _fresh_state(trainer, params, optimizer_state):
    trainer.set_param_values(params)
    for variable, value in zip(trainer.optimizer_state, optimizer_state):
        variable.set_value(value)


@pytest.fixture(scope='module')
def initial_state(trainer):
    return trainer.param_values(), [v.get_value() for v in trainer.optimizer_state]


def test_one_epoch_on_real_mnist_learns(trainer, initial_state, splits, tmp_path):
    _fresh_state(trainer, *initial_state)
    history = train.fit(trainer, splits, str(tmp_path / 'm.npz'), epochs=1,
                           batch_size=100, lr_start=3e-3, lr_end=3e-3, progress=False,
                           log=lambda line: None)
    # 10000 images, one epoch, 128 binary units: chance is 90% error.
    assert history[0]['valid_error'] < 0.25
    values, spec, extra = modelfile.load_model(str(tmp_path / 'm.npz'))
    assert spec == SPEC and len(values) == 23
    assert extra['valid_error'] == history[0]['valid_error']
    assert os.path.getsize(str(tmp_path / 'm.png')) > 1000


def test_resume_continues_exactly(trainer, initial_state, splits, tmp_path):
    kwargs = dict(QUIET_FIT, epochs=3)
    _fresh_state(trainer, *initial_state)
    straight = train.fit(trainer, splits, str(tmp_path / 'a.npz'), **kwargs)
    straight_params = trainer.param_values()

    _fresh_state(trainer, *initial_state)
    path_b = str(tmp_path / 'b.npz')
    # Run only the first epoch of the same 3-epoch schedule, as a run interrupted
    # during its second epoch would have.
    checkpoint = train.companion_paths(path_b)[0]
    original_train_epoch = trainer.train_epoch
    calls = []

    def interrupt_after_first(*args, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return original_train_epoch(*args, **kw)

    trainer.train_epoch = interrupt_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            train.fit(trainer, splits, path_b, **kwargs)
    finally:
        del trainer.train_epoch
    assert os.path.exists(checkpoint)
    # Scramble everything the checkpoint must restore.
    rng = np.random.RandomState(0)
    _fresh_state(trainer, [rng.uniform(-1, 1, v.shape).astype(v.dtype)
                           for v in initial_state[0]],
                 [v + 1 for v in initial_state[1]])
    resumed = train.fit(trainer, splits, path_b, resume=True, **kwargs)
    assert [h['train_loss'] for h in resumed] == [h['train_loss'] for h in straight]
    for a, b in zip(straight_params, trainer.param_values()):
        np.testing.assert_array_equal(a, b)


def _fit_one_epoch(trainer, initial_state, splits, path):
    """From the initial state, train one epoch with QUIET_FIT, saving to path."""
    _fresh_state(trainer, *initial_state)
    train.fit(trainer, splits, path, epochs=1, **QUIET_FIT)


def test_resume_refuses_other_settings(trainer, initial_state, splits, tmp_path):
    path = str(tmp_path / 'c.npz')
    _fit_one_epoch(trainer, initial_state, splits, path)
    with pytest.raises(train.TrainingError, match='epochs'):
        train.fit(trainer, splits, path, epochs=5, resume=True, **QUIET_FIT)
    with pytest.raises(train.TrainingError, match='no checkpoint'):
        train.fit(trainer, splits, str(tmp_path / 'none.npz'), epochs=1, resume=True,
                     **QUIET_FIT)


def test_same_seed_gives_same_model(trainer, initial_state, splits):
    twin = train.Trainer(SPEC, seed=7)
    for a, b in zip(initial_state[0], twin.param_values()):
        np.testing.assert_array_equal(a, b)
    other = train.Trainer(SPEC, seed=8)
    assert not np.array_equal(initial_state[0][0], other.param_values()[0])
    _fresh_state(trainer, *initial_state)
    loss_a = trainer.train_epoch(splits.X_train, splits.y_train, 0, 100, 1e-3)
    loss_b = twin.train_epoch(splits.X_train, splits.y_train, 0, 100, 1e-3)
    assert loss_a == loss_b
    for a, b in zip(trainer.param_values(), twin.param_values()):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_and_keeps_last_good_model(trainer, initial_state, splits, tmp_path):
    path = str(tmp_path / 'n.npz')
    _fit_one_epoch(trainer, initial_state, splits, path)
    saved = open(path, 'rb').read()
    poisoned = splits._replace(X_train=splits.X_train.copy())
    poisoned.X_train[:] = np.nan
    with pytest.raises(train.TrainingError, match='NaN at epoch 1, batch 1'):
        train.fit(trainer, poisoned, path, epochs=1, **QUIET_FIT)
    assert open(path, 'rb').read() == saved


def _run_trainer(repo_root, mnist_root, model, *flags):
    return interruptible(
        [sys.executable, os.path.join(repo_root, 'train', 'mnist_train.py'),
         '--data-path', mnist_root, '--model-out', model, '--num-units', '64',
         '--train-size', '1000', '--valid-size', '500', '--no-progress'] + list(flags),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_saves_and_resume_continues(repo_root, mnist_root, tmp_path):
    model = str(tmp_path / 'ctrlc.npz')
    process = _run_trainer(repo_root, mnist_root, model, '--epochs', '400')
    for line in process.stdout:
        if line.startswith('Epoch 2/400'):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert 'interrupted' in err and '--resume' in err and 'Traceback' not in err
    assert os.path.exists(model) and os.path.exists(train.companion_paths(model)[0])

    done = _run_trainer(repo_root, mnist_root, model, '--epochs', '400', '--resume')
    for line in done.stdout:
        if line.startswith('Resumed from'):
            assert 'after epoch' in line
        if line.startswith('Epoch '):
            resumed_epoch = int(line.split()[1].split('/')[0])
            break
    done.send_signal(signal.SIGINT)
    done.communicate(timeout=120)
    assert resumed_epoch >= 3


def test_missing_data_is_a_one_line_error(repo_root, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(repo_root, 'train', 'mnist_train.py'),
         '--data-path', str(tmp_path), '--epochs', '1'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'download' in lines[0]


def test_train_script_end_to_end(repo_root, mnist_root, tmp_path):
    """The shell wrapper runs a real (small) training job and keeps a log."""
    env = dict(os.environ, PYLEARN2_DATA_PATH=mnist_root, PYTHON=sys.executable)
    model = str(tmp_path / 'sh.npz')
    result = subprocess.run(
        ['bash', os.path.join(repo_root, 'train', 'train_mnist.sh'), '--epochs', '1',
         '--train-size', '10000', '--num-units', '128', '--dropout', '0.2',
         '--model-out', model],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'Epoch 1/1' in result.stdout and 'Best validation error' in result.stdout
    valid_error = float(result.stdout.split('valid error ')[1].split('%')[0])
    assert valid_error < 30
    assert os.path.exists(model)
    log = os.path.join(repo_root, 'logs', 'mnist_train.log')
    assert 'Epoch 1/1' in open(log).read()


@pytest.mark.parametrize('dataset, arrays', [('cifar10', 62), ('svhn', 66)])
def test_conv_trainers_run_on_official_format_files(dataset, arrays, repo_root, tmp_path):
    """CIFAR-10 and SVHN trainers: one epoch on tiny files in the official formats."""
    import test_evaluation_scripts as official
    rng = np.random.RandomState(0)
    root = str(tmp_path / 'data')
    if dataset == 'cifar10':
        official.write_cifar10(root, rng)
    else:
        official.write_svhn(root, rng)
    model = str(tmp_path / (dataset + '.npz'))
    result = subprocess.run(
        [sys.executable, os.path.join(repo_root, 'train', dataset + '_train.py'),
         '--data-path', root, '--epochs', '1', '--batch-size', '10', '--valid-size', '20',
         '--filters', '4', '4', '8', '8', '8', '8', '--dense-units', '16',
         '--model-out', model, '--no-progress'],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'Epoch 1/1' in result.stdout
    values, spec, extra = modelfile.load_model(model)
    assert len(values) == arrays and spec['name'] == dataset
    assert values[0].shape == (4, 3, 3, 3)
