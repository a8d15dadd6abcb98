"""Helpers shared by the unit tests: random networks, tiny datasets, subprocesses.

A plain module: the tests import it as ``from helpers import ...`` (pytest puts
tests/, which has no ``__init__.py``, on ``sys.path``).
"""
import gzip
import os
import signal
import struct
import subprocess
import sys

import numpy as np

from binary_net import data as datasets, networks
from binary_net import infer as inference
from binary_net.spec import expected_param_shapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# Networks with random weights
# ---------------------------------------------------------------------------

def unit_images(rng, n, shape):
    """Random 8-bit images scaled to [-1, 1], as the evaluation scripts feed them."""
    return datasets.to_unit_range(rng.randint(0, 256, size=(n,) + tuple(shape)))


def variants_spec():
    """Options the reference networks leave out: a real-valued XNOR input, bias
    before scaling, no alpha, stride 2 without padding, unflipped filters,
    rectify and a final softmax."""
    unflipped = networks.xnor_conv(6, filter_size=3, stride=2, pad=0)
    unflipped['flip_filters'] = False
    real_input = networks.xnor_conv(5, filter_size=3, binary_input=False)
    real_input.update(filter_size=[3, 2], pad=[1, 0])
    layers = [networks.conv(4, nonlinearity='rectify'),
              unflipped, networks.batch_norm(),
              real_input, networks.max_pool(),
              networks.xnor_dense(12, bias_before_scaling=True), networks.batch_norm(),
              networks.xnor_dense(8, binary_input=False, scale_weights=False),
              networks.dropout(),
              networks.dense(5, 'softmax')]
    return networks.make_spec('variants', (None, 2, 11, 11), layers, 'cross_entropy')


def prefix_output(spec, values, number, X):
    """What reaches spec layer ``number`` (1-based) for images X, in float mode."""
    prefix = dict(spec, layers=spec['layers'][:number - 1])
    return inference.fold(prefix, values).predict_scores(X).astype(np.float64)


def random_model(spec, X, rng, spread=0.3, gamma=(0.5, 1.5), jitter_inv_std=True,
                 float32=False):
    """Random weights in [-1, 1], with each batch norm's statistics fitted to what
    reaches it on X, then perturbed, so that the signs downstream are mixed.

    Biases and batch-norm betas are uniform in [-spread, spread], the means are
    moved by ``spread`` standard deviations times a normal draw, gammas are
    uniform in ``gamma``; inv_std is 1 / std, times a uniform factor in
    [0.7, 1.3] if ``jitter_inv_std``. Alpha is the mean |W|. With ``float32``
    every non-batch-norm array is made float32 as soon as it is drawn (alpha is
    then taken from the float32 W); the result is float32 in any case.
    """
    values = []
    by_layer = {}
    for number, kind, name, shape in expected_param_shapes(spec):
        by_layer.setdefault(number, []).append((kind, name, shape))
    for number, arrays in sorted(by_layer.items()):
        if arrays[0][0] == 'batch_norm':
            h = prefix_output(spec, values, number, X)
            axes = (0, 2, 3) if h.ndim == 4 else (0,)
            mean, std = h.mean(axis=axes), h.std(axis=axes) + 1e-3
            size = mean.shape
            values += [rng.uniform(-spread, spread, size),                 # beta
                       rng.uniform(gamma[0], gamma[1], size),              # gamma
                       mean + spread * std * rng.standard_normal(size),    # mean
                       (rng.uniform(0.7, 1.3, size) if jitter_inv_std else 1.0) / std]
            continue
        W = None
        for _, name, shape in arrays:
            if name == 'W':
                W = value = rng.uniform(-1, 1, shape)
                if float32:
                    W = value = W.astype(np.float32)
            elif name == 'b':
                value = rng.uniform(-spread, spread, shape)
            elif name == 'beta_filter':
                value = np.full(shape, 1.0 / np.prod(shape))
            else:  # xalpha
                value = np.abs(W).reshape(len(W), -1).mean(axis=1) if W.ndim == 4 \
                    else np.abs(W).mean(axis=0)
            values.append(np.asarray(value, dtype=np.float32) if float32 else value)
    return [np.asarray(v, dtype=np.float32) for v in values]


class RandomCase:
    """A network with random weights (``random_model``) folded for inference, 64
    calibration images ``X_calib`` and ``n_images`` test images ``X``; the random
    numbers are seeded by ``key``."""

    def __init__(self, key, spec, n_images, **model_options):
        rng = np.random.RandomState(sum(map(ord, key)))
        self.key = key
        self.spec = spec
        shape = spec['input_shape'][1:]
        self.X_calib = unit_images(rng, 64, shape)
        self.X = unit_images(rng, n_images, shape)
        self.values = random_model(spec, self.X_calib, rng, **model_options)
        self.net = inference.fold(spec, self.values)


def batching_report(n_images=24, seed=0):
    """How many scores batching changes, for three small random networks.

    A 72-unit MNIST MLP, a small CIFAR-10 network and :func:`variants_spec` (a
    real-valued XNOR input, dense layers), each with ``n_images`` test images:
    float scores in batches of 1 and 7 and in reversed order against the whole
    batch; xnor scores against float, whole and in batches of 7; calibration
    ranges with batches of 1 and 9 against one batch; the original's fixed
    preset (MNIST and CIFAR-10) in batches of 1 and int scores in batches of 7
    against the whole batch.

    Returns
    -------
    dict ``'network: what' -> number of values that differ`` (0: bit-identical).
    """
    specs = {'mnist': networks.mnist_spec(num_units=72),
             'cifar10': networks.cifar10_spec(filters=(8, 9, 16, 17, 16, 70), dense_units=40),
             'variants': variants_spec()}
    report = {}
    for key, spec in specs.items():
        rng = np.random.RandomState(seed)
        shape = spec['input_shape'][1:]
        X_calib, X = unit_images(rng, 32, shape), unit_images(rng, n_images, shape)
        net = inference.fold(spec, random_model(spec, X_calib, rng))
        whole = net.predict_scores(X)

        def count(a, b):
            return int(np.sum(a != b))

        report[key + ': float, batches of 1'] = count(net.predict_scores(X, batch_size=1), whole)
        report[key + ': float, batches of 7'] = count(net.predict_scores(X, batch_size=7), whole)
        report[key + ': float, reversed'] = count(net.predict_scores(X[::-1]), whole[::-1])
        report[key + ': xnor against float'] = count(net.predict_scores(X, mode='xnor'), whole)
        report[key + ': xnor, batches of 7, against float'] = count(
            net.predict_scores(X, mode='xnor', batch_size=7), whole)
        ranges = net.calibrate(X_calib).calibration['ranges']
        for batch_size in (1, 9):
            report[key + ': calibration, batches of %d' % batch_size] = sum(
                a != b for a, b in zip(net.calibrate(X_calib, batch_size).calibration['ranges'],
                                       ranges))
        if key != 'variants':   # the original's preset knows its own networks only
            preset = net.predict_scores(X, mode='fixed', preset='original')
            report[key + ': fixed original preset, batches of 1'] = count(
                net.predict_scores(X, mode='fixed', preset='original', batch_size=1), preset)
        ints = net.predict_scores(X, mode='int')
        report[key + ': int, batches of 7'] = count(
            net.predict_scores(X, mode='int', batch_size=7), ints)
    return report


def second_openblas_core():
    """An OpenBLAS kernel family this CPU runs besides the one numpy's OpenBLAS picks.

    Returns
    -------
    ``(default, other)``, names for ``OPENBLAS_CORETYPE``: 'Haswell' (AVX2
    kernels) where the default is neither it nor 'Zen' (which uses them too),
    else 'Sandybridge' (AVX kernels); or ``(default, None)`` where the CPU has no
    such family, or ``(None, None)`` where numpy's BLAS does not say (not a
    DYNAMIC_ARCH OpenBLAS, or no /proc/cpuinfo).
    """
    result = subprocess.run([sys.executable, '-c', 'import numpy'], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, OPENBLAS_VERBOSE='2'))
    cores = [line.split(':', 1)[1].strip() for line in result.stderr.splitlines()
             if line.startswith('Core:')]
    try:
        with open('/proc/cpuinfo') as f:
            flags = set(next(line for line in f if line.startswith('flags')).split())
    except (OSError, StopIteration):
        return None, None
    if not cores:
        return None, None
    default = cores[0]
    if default not in ('Haswell', 'Zen') and {'avx2', 'fma'} <= flags:
        return default, 'Haswell'
    if default != 'Sandybridge' and 'avx' in flags:
        return default, 'Sandybridge'
    return default, None


# ---------------------------------------------------------------------------
# Errors, files and subprocesses
# ---------------------------------------------------------------------------

def assert_one_line_error(excinfo, *fragments):
    """The exception's message is one non-empty line holding every fragment."""
    message = str(excinfo.value)
    assert message and '\n' not in message, repr(message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def write_idx(path, array):
    """Write ``path``.gz in MNIST's IDX format (unsigned bytes)."""
    array = np.asarray(array, dtype=np.uint8)
    header = b'\x00\x00\x08' + bytes([array.ndim]) + struct.pack('>%dI' % array.ndim, *array.shape)
    with gzip.open(path + '.gz', 'wb') as stream:
        stream.write(header + array.tobytes())


def write_mnist(root, rng, n_train, n_test):
    """A tiny random MNIST in pylearn2's layout under ``root`` (root/mnist is created)."""
    directory = os.path.join(root, 'mnist')
    os.makedirs(directory)
    for prefix, count in (('train', n_train), ('t10k', n_test)):
        write_idx(os.path.join(directory, prefix + '-images-idx3-ubyte'),
                  rng.randint(0, 256, size=(count, 28, 28)))
        write_idx(os.path.join(directory, prefix + '-labels-idx1-ubyte'),
                  rng.randint(0, 10, size=count))


def run_python(args, env=None, **kwargs):
    """``python ARGS`` in the repository, output captured as text, 300 s at most."""
    return subprocess.run([sys.executable] + list(args), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, **kwargs)


def interruptible(*args, **kwargs):
    """``subprocess.Popen`` of a child that Ctrl-C (SIGINT) interrupts, even where this
    process ignores SIGINT (a suite started in the background): Python installs its
    KeyboardInterrupt handler only if SIGINT is not ignored when it starts."""
    return subprocess.Popen(*args, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                    signal.SIG_DFL), **kwargs)
