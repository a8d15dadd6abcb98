"""Loader, trainer and evaluation end to end on real CIFAR-10 images (a subset).

The images are a seeded, class-balanced subset of the JPEG-q75 copy of CIFAR-10
in ../shared/data/cifar10-jpeg, decoded into official-format batches in a tmp
folder (tests/real_cifar.py); skipped where that copy is absent. One small
network (the same for every run here, so Theano compiles it once) is trained
for one epoch with and without --gcn --zca.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import real_cifar
from binary_net import data as datasets, modelfile
from binary_net.data import preprocessing

TRAIN_PER_BATCH, TEST_COUNT = 500, 1000
SMALL = ['--filters', '16', '16', '32', '32', '64', '64', '--dense-units', '128',
         '--batch-size', '50', '--epochs', '1', '--no-progress', '--seed', '3']


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    if real_cifar.source_path() is None:
        pytest.skip('the real CIFAR-10 copy (../shared/data/cifar10-jpeg) is not here')
    pytest.importorskip('PIL')
    root = str(tmp_path_factory.mktemp('cifar_real'))
    decoded = real_cifar.write_subset(root, TRAIN_PER_BATCH, TEST_COUNT)
    return root, decoded


def _script(repo_root, name, *args):
    return subprocess.run([sys.executable, os.path.join(repo_root, *name.split('/'))]
                          + [str(a) for a in args],
                          capture_output=True, text=True, timeout=900)


def test_loader_reads_the_real_images(cifar):
    root, decoded = cifar
    data = datasets.load('cifar10', root)
    X, y = data['train']
    assert X.shape == (5 * TRAIN_PER_BATCH, 3, 32, 32) and X.dtype == np.uint8
    np.testing.assert_array_equal(X.reshape(len(X), -1), decoded['train'][0])
    np.testing.assert_array_equal(y, decoded['train'][1])
    assert data['test'][0].shape == (TEST_COUNT, 3, 32, 32)
    assert set(np.unique(y)) == set(range(10))
    # natural images: neighbouring pixels are far more alike than random ones
    images = X.astype(np.float64)
    neighbours = np.abs(images[..., 1:] - images[..., :-1]).mean()
    shuffled = np.abs(images - images[np.random.RandomState(0).permutation(len(X))]).mean()
    assert neighbours < 0.4 * shuffled


def _errors(stdout):
    correct, total = re.search(r'Accuracy: [\d.]+% \((\d+) of (\d+) correct\)', stdout).groups()
    return int(total) - int(correct)


def test_one_epoch_learns_and_evaluates_as_trained(cifar, repo_root, tmp_path):
    root, _ = cifar
    model = str(tmp_path / 'c.npz')
    result = _script(repo_root, 'train/cifar10_train.py', '--data-path', root,
                     '--valid-size', 500, '--model-out', model, '--flip', *SMALL)
    assert result.returncode == 0, result.stderr
    valid_error = float(result.stdout.split('valid error ')[1].split('%')[0])
    # 2000 images, one epoch. Chance is 90%, within 1.3 points (one standard
    # deviation on 500 images); one epoch of this small net gave 76-83% over six
    # seeds and both convolution-gradient paths (BINARY_NET_AMX=0/1), so the bound
    # is "clearly above chance", not a figure that one seed happened to reach.
    assert valid_error < 86
    extra = modelfile.load_model(model)[2]
    for mode in ('float', 'xnor'):
        evaluated = _script(repo_root, 'test/cifar10_test.py', '--model', model,
                            '--data-path', root, '--mode', mode)
        assert evaluated.returncode == 0, evaluated.stderr
        assert _errors(evaluated.stdout) == round(extra['test_error'] * TEST_COUNT)


def test_gcn_zca_model_carries_its_preprocessing(cifar, repo_root, tmp_path):
    root, _ = cifar
    model = str(tmp_path / 'z.npz')
    result = _script(repo_root, 'train/cifar10_train.py', '--data-path', root,
                     '--train-size', 400, '--valid-size', 200, '--gcn', '--zca',
                     '--model-out', model, *SMALL)
    assert result.returncode == 0, result.stderr
    values, spec, extra = modelfile.load_model(model)
    assert len(values) == 62
    pre = preprocessing.from_file(model)
    assert pre.gcn == {'scale': 55.0, 'eps': 1e-8}
    assert pre.zca_whitening.shape == (3072, 3072)
    trained_errors = round(extra['test_error'] * TEST_COUNT)

    evaluated = _script(repo_root, 'test/cifar10_test.py', '--model', model,
                        '--data-path', root, '--mode', 'float')
    assert evaluated.returncode == 0, evaluated.stderr
    assert 'Preprocessing (from the model file): GCN (scale 55) + ZCA' in evaluated.stdout
    assert _errors(evaluated.stdout) == trained_errors

    packed = str(tmp_path / 'z.packed.npz')
    result = subprocess.run([sys.executable, '-m', 'binary_net', 'pack', '--model', model,
                             '--out', packed], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    evaluated = _script(repo_root, 'test/cifar10_test.py', '--model', packed,
                        '--data-path', root, '--mode', 'xnor')
    assert evaluated.returncode == 0, evaluated.stderr
    assert _errors(evaluated.stdout) == trained_errors

    exported = subprocess.run([sys.executable, '-m', 'binary_net', 'export', '--model', model,
                               '--out', str(tmp_path / 'c'), '--data-path', root],
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 2
    lines = exported.stderr.strip().splitlines()
    assert len(lines) == 1 and 'preprocessing' in lines[0] and '--gcn/--zca' in lines[0]
