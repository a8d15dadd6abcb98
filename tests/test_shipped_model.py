"""The models that ship in models/, on the real test sets, in every mode.

MNIST is the bit-exact original; CIFAR-10 is the JPEG-q75 copy in
../shared/data/cifar10-jpeg, decoded into the official batches in a tmp folder by
its own ``build_batches.py`` (skipped where that copy is absent).
"""
import collections
import os
import subprocess
import sys

import numpy as np
import pytest

import real_cifar
from binary_net import data as datasets, modelfile
from binary_net import infer as inference
from binary_net.deploy import export, firmware
from binary_net.deploy.packed import load_packed
from binary_net.infer import integer
from test_cortex_m import needs_qemu, needs_toolchain
from test_export import check_bit_exact, needs_cc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 500     # images per step: all 10,000 CIFAR-10 images at once would take 20+ GB

# max_error: the original's 3.2% on MNIST; issue 10's 20% on CIFAR-10.
# tolerance: how far fixed and int may move the error from float, in points.
# fixed_images: test images for that check (CIFAR-10's fixed mode takes about 15 ms an
# image here; the README gives all 10,000). c_images: images run through the C program.
# part: the smallest Cortex-M4 part of firmware.PARTS that its firmware fits.
Shipped = collections.namedtuple(
    'Shipped', 'stem dataset arrays max_error tolerance fixed_images c_images part')
SHIPPED = [Shipped('mnist_xnor_1024', 'mnist', 23, 3.2, 0.3, 10000, 10000, 'STM32F401RE'),
           Shipped('cifar10_xnor_64', 'cifar10', 62, 20.0, 0.5, 3000, 200, 'STM32F407VG')]


def _path(shipped, suffix='.npz'):
    return os.path.join(REPO, 'models', shipped.stem + suffix)


@pytest.fixture(scope='module')
def cifar10_root(tmp_path_factory):
    source = real_cifar.source_path()
    if source is None:
        pytest.skip('the real CIFAR-10 copy (../shared/data/cifar10-jpeg) is not here')
    pytest.importorskip('PIL')
    root = str(tmp_path_factory.mktemp('cifar10_full'))
    build = os.path.join(os.path.dirname(source), 'build_batches.py')
    subprocess.run([sys.executable, build, root], check=True, capture_output=True, timeout=600)
    return root


@pytest.fixture(scope='module', params=SHIPPED, ids=[s.dataset for s in SHIPPED])
def shipped(request):
    """(Shipped, data root, unit-range test images, labels, folded network, float labels)."""
    spec = request.param
    root = request.getfixturevalue('mnist_root' if spec.dataset == 'mnist' else 'cifar10_root')
    data = datasets.load(spec.dataset, data_path=root)
    X_test, y_test = data['test']
    X_test = datasets.to_unit_range(X_test)
    values, net_spec, extra = modelfile.load_model(_path(spec))
    net = inference.fold(net_spec, values)
    net.calibrate(datasets.to_unit_range(data['train'][0][:1000]))   # as the scripts do
    return spec, root, X_test, y_test, net, net.predict(X_test, mode='float', batch_size=BATCH)


def _error(predictions, labels):
    return 100.0 * np.mean(predictions != labels)


def test_file_is_small_and_describes_itself(shipped):
    spec = shipped[0]
    assert os.path.getsize(_path(spec)) < 20 * 2 ** 20
    values, net_spec, extra = modelfile.load_model(_path(spec))
    assert len(values) == spec.arrays and net_spec['name'] == spec.dataset
    assert extra['settings']['seed'] == 1234


def test_float_error_is_at_most_the_target(shipped):
    spec, _, _, y_test, _, float_predictions = shipped
    assert _error(float_predictions, y_test) <= spec.max_error


def test_fixed_and_int_stay_close_to_float(shipped):
    spec, _, X_test, y_test, net, float_predictions = shipped
    n = spec.fixed_images
    float_error = _error(float_predictions[:n], y_test[:n])
    for mode in ('fixed', 'int'):
        error = _error(net.predict(X_test[:n], mode=mode, batch_size=BATCH), y_test[:n])
        assert abs(error - float_error) <= spec.tolerance, (mode, error, float_error)


def test_xnor_predicts_exactly_like_float(shipped):
    _, _, X_test, _, net, float_predictions = shipped
    xnor = net.predict(X_test, mode='xnor', batch_size=BATCH)
    assert np.array_equal(xnor, float_predictions)  # all 10,000


def test_packed_file_is_20x_smaller_and_predicts_the_same(shipped):
    spec, _, X_test, _, _, float_predictions = shipped
    assert os.path.getsize(_path(spec)) / os.path.getsize(_path(spec, '.packed.npz')) >= 20
    packed, _, _ = load_packed(_path(spec, '.packed.npz'))
    xnor = packed.predict(X_test, mode='xnor', batch_size=BATCH)
    assert np.array_equal(xnor, float_predictions)


@needs_cc
def test_c_export_predicts_like_the_integer_path(shipped, tmp_path):
    spec, _, X_test, _, net, _ = shipped
    check_bit_exact(net, X_test[:spec.c_images], str(tmp_path), spec.dataset)


@needs_toolchain
@needs_qemu
def test_cortex_m4_firmware_predicts_like_the_integer_path(shipped, tmp_path):
    """The first 20 test images under QEMU's mps2-an386 (tests/test_cortex_m.py runs
    the MNIST firmware on 1,000 and checks the sizes), and the smallest part it fits."""
    spec, _, X_test, _, net, _ = shipped
    X = X_test[:20]
    export.write_c(integer.compile_network(net), str(tmp_path), spec.dataset, target='cortex-m4')
    built = firmware.build(str(tmp_path), spec.dataset, 'cortex-m4', 'swar')
    parts = firmware.fitting_parts('cortex-m4', built.flash_bytes, built.ram_bytes)
    assert parts and parts[0][0] == spec.part, parts
    run = firmware.run_qemu(built.elf, 'cortex-m4', integer.input_codes(X))
    scores = net.predict_scores(X, mode='int')
    np.testing.assert_array_equal(run.scores, scores)
    np.testing.assert_array_equal(run.labels, scores.argmax(axis=1))


def test_evaluation_script_end_to_end(shipped):
    spec, root, _, y_test, _, float_predictions = shipped
    script = os.path.join(REPO, 'test', '%s_test.py' % spec.dataset)
    result = subprocess.run(
        [sys.executable, script, '--model', _path(spec), '--no', '2000', '--mode', 'xnor',
         '--data-path', root], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    expected = _error(float_predictions[:2000], y_test[:2000])
    assert result.stdout.strip().splitlines()[-1] == \
        'Test error: %.2f%% (2000 images, mode xnor)' % expected
