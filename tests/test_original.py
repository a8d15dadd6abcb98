"""The original theano-xnor-net's model files load by position and predict as it did.

The files here are built in the original's exact array layout, derived in this test
from the original's layer definitions (its ``train/*_train.py``: the parameter order
of its Lasagne layers ``W, b, beta_filter, xalpha`` / ``W, b, xalpha`` / ``beta,
gamma, mean, inv_std``, with ``beta_filter`` of shape (F, C, fh, fw) filled with
1 / (C * fh * fw)), not from this package's networks. Their labels are checked
against a numpy re-implementation of the original's test scripts' forward pass
(``test/xnornet_layers.py``, ``test/inf_layers.py``, ``test/inf_utils.py``) written
here: stored ``xalpha``, the dense bias added before K * alpha, the batch norm
folded as ``-mean * inv_std * gamma + beta``, pixels ``X * (2.0 / 255) - 1.0``.
"""
import os

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from binary_net import data as datasets, infer, modelfile, networks
from binary_net.cli import evaluate as evaluation
from binary_net.deploy.packed import save_packed
from binary_net.spec import expected_param_shapes, reference_spec

# ---------------------------------------------------------------------------
# The original's layer definitions, as lists of (kind, settings)
# ---------------------------------------------------------------------------


def original_layers(dataset, units=4096, filters=None, dense_units=1024):
    """The layer sequence of the original's construct_* functions (test scripts)."""
    if dataset == 'mnist':
        layers = [('xdense', units)]
        for _ in range(2):
            layers += [('bn',), ('xdense', units), ('dropout',)]
        return layers + [('dense', 10), ('bn',)]
    f = filters or ((128, 128, 256, 256, 512, 512) if dataset == 'cifar10'
                    else (64, 64, 128, 128, 256, 256))
    layers = [('conv', f[0]), ('bn',), ('xconv', f[1]), ('pool',), ('bn',),
              ('xconv', f[2]), ('bn',), ('xconv', f[3]), ('pool',), ('bn',),
              ('xconv', f[4]), ('bn',), ('xconv', f[5]), ('pool',), ('bn',),
              ('xdense', dense_units), ('bn',), ('xdense', dense_units), ('bn',)]
    if dataset == 'cifar10':
        return layers + [('dense_softmax', 10)]
    return layers + [('dense', 10), ('bn',)]


def original_shapes(dataset, **widths):
    """(name, shape) of every array of an original model file, in file order.

    The order is lasagne.layers.get_all_params: layer by layer, each layer's params in
    add_param order (Conv2DLayer/DenseLayer: W, b; the XNOR layers then add
    beta_filter (F, C, fh, fw) and xalpha; BatchNormLayer: beta, gamma, mean, inv_std).
    """
    shape = (1, 28, 28) if dataset == 'mnist' else (3, 32, 32)
    out = []
    for layer in original_layers(dataset, **widths):
        kind = layer[0]
        if kind in ('conv', 'xconv'):
            F, C = layer[1], shape[0]
            out += [('W', (F, C, 3, 3)), ('b', (F,))]
            if kind == 'xconv':
                out += [('beta_filter', (F, C, 3, 3)), ('xalpha', (F,))]
            shape = (F,) + shape[1:]
        elif kind in ('xdense', 'dense', 'dense_softmax'):
            n_in = int(np.prod(shape))
            out += [('W', (n_in, layer[1])), ('b', (layer[1],))]
            if kind == 'xdense':
                out.append(('xalpha', (layer[1],)))
            shape = (layer[1],)
        elif kind == 'bn':
            out += [(name, (shape[0],)) for name in ('beta', 'gamma', 'mean', 'inv_std')]
        elif kind == 'pool':
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
    return out


def original_file_values(dataset, rng, **widths):
    """Arrays of a trained-looking original file: xalpha one step behind W, real biases."""
    values = []
    for name, shape in original_shapes(dataset, **widths):
        if name == 'W':
            value = W = rng.uniform(-1, 1, shape)
        elif name == 'beta_filter':
            value = np.ones(shape, dtype=np.float32) / (shape[1] * shape[2] * shape[3])
        elif name == 'xalpha':
            previous = np.clip(W + rng.normal(0, 0.15, W.shape), -1, 1)  # one step behind
            axes = (1, 2, 3) if W.ndim == 4 else 0
            value = np.abs(previous).mean(axis=axes)
        elif name == 'b':
            value = rng.normal(0, 0.5, shape)
        elif name in ('beta', 'mean'):
            value = rng.normal(0, 0.3, shape)
        else:  # gamma, inv_std
            value = rng.uniform(0.5, 1.5, shape)
        values.append(np.asarray(value, dtype=np.float32))
    return values


# ---------------------------------------------------------------------------
# The original's forward pass (float mode of its test scripts), in numpy
# ---------------------------------------------------------------------------

def sign(x):
    return np.where(x >= 0, 1, -1).astype(np.float32)


def true_conv(x, w, pad):
    """Theano's conv2d (filters flipped), zero padding ``pad``, stride 1, float32."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))   # N, C, H, W, fh, fw
    return np.einsum('nchwrs,fcrs->nfhw', windows, w[:, :, ::-1, ::-1],
                     optimize=True).astype(np.float32)


def original_forward(dataset, values, pixels, **widths):
    """Scores of the original's test script (float mode) for uint8 images."""
    if dataset == 'mnist':
        x = (pixels.astype(np.float32) / np.float32(255.)) * 2.0 - 1.0
    else:
        x = pixels.astype(np.float32) * (2.0 / 255) - 1.0
    x = x.astype(np.float32)
    arrays = iter(values)
    for layer in original_layers(dataset, **widths):
        kind = layer[0]
        if kind == 'conv':
            W, b = next(arrays), next(arrays)
            x = true_conv(x, W, 1) + b[None, :, None, None]
        elif kind == 'xconv':
            W, b, beta_filter, xalpha = (next(arrays) for _ in range(4))
            K = true_conv(np.abs(x), beta_filter, beta_filter.shape[-1] // 2)
            x = true_conv(sign(x), sign(W), 1) * K * xalpha[None, :, None, None] \
                + b[None, :, None, None]
        elif kind == 'xdense':
            W, b, xalpha = next(arrays), next(arrays), next(arrays)
            x = x.reshape(len(x), -1)
            beta = np.mean(np.abs(x), axis=1)
            x = (sign(x) @ sign(W) + b) * beta[:, None] * xalpha
        elif kind in ('dense', 'dense_softmax'):
            W, b = next(arrays), next(arrays)
            x = x.reshape(len(x), -1) @ W + b
            if kind == 'dense_softmax':
                e = np.exp(x - x.max(axis=1, keepdims=True))
                x = e / e.sum(axis=1, keepdims=True)
        elif kind == 'bn':
            beta, gamma, mean, inv_std = (next(arrays) for _ in range(4))
            scale, sub = gamma * inv_std, -mean * inv_std * gamma + beta
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = x * scale.reshape(shape) + sub.reshape(shape)
        elif kind == 'pool':
            n, c, h, w = x.shape
            x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        x = x.astype(np.float32)
    return x


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

SMALL = {'mnist': dict(units=256),
         'cifar10': dict(filters=(16, 16, 32, 32, 64, 64), dense_units=128),
         'svhn': dict(filters=(8, 8, 16, 16, 32, 32), dense_units=64)}
N_IMAGES = {'mnist': 300, 'cifar10': 100, 'svhn': 100}


@pytest.mark.parametrize('dataset', ['mnist', 'cifar10', 'svhn'])
def test_full_size_original_layout_is_what_the_loader_expects(dataset):
    """The original's exact array shapes at its full widths, e.g. CIFAR-10's
    beta_filter (128, 128, 3, 3), are the shapes the reference description needs."""
    want = original_shapes(dataset)
    values = [np.zeros(shape, np.float32) for _, shape in want]
    spec = reference_spec(dataset, values)
    got = [(name, shape) for _, _, name, shape in expected_param_shapes(spec)]
    assert got == want
    assert len(want) == {'mnist': 23, 'cifar10': 62, 'svhn': 66}[dataset]
    if dataset == 'cifar10':
        assert want[8] == ('beta_filter', (128, 128, 3, 3))


@pytest.fixture(scope='module', params=['mnist', 'cifar10', 'svhn'])
def original_file(request, tmp_path_factory):
    dataset = request.param
    rng = np.random.RandomState({'mnist': 1, 'cifar10': 2, 'svhn': 3}[dataset])
    values = original_file_values(dataset, rng, **SMALL[dataset])
    path = str(tmp_path_factory.mktemp('orig') / ('%s_original.npz' % dataset))
    np.savez(path, *values)   # exactly how the original's bnn_utils.train saved
    shape = (1, 28, 28) if dataset == 'mnist' else (3, 32, 32)
    pixels = rng.randint(0, 256, (N_IMAGES[dataset],) + shape).astype(np.uint8)
    return dataset, path, values, pixels


def predict_as_evaluation(dataset, path, pixels):
    network, description = evaluation.load_network(path, dataset)
    assert 'position-only file' in description
    X = datasets.scale_pixels(pixels, network.pixel_scaling, dataset)
    return network, network.predict(X), network.predict_scores(X)


def test_original_file_predicts_what_the_original_predicts(original_file):
    dataset, path, values, pixels = original_file
    network, labels, scores = predict_as_evaluation(dataset, path, pixels)
    want_scores = original_forward(dataset, values, pixels, **SMALL[dataset])
    want = np.argmax(want_scores, axis=1)
    np.testing.assert_array_equal(labels, want)
    np.testing.assert_allclose(scores, want_scores, rtol=2e-4,
                               atol=2e-4 * np.abs(want_scores).max())
    # the other inference paths agree with float mode on these files
    X = datasets.scale_pixels(pixels, network.pixel_scaling, dataset)
    np.testing.assert_array_equal(network.predict(X, 'xnor'), labels)


def test_this_packages_semantics_would_mispredict_them(original_file):
    """The test can fail: recomputing alpha and adding the dense bias after the
    scaling (this package's layers) changes labels on these files."""
    dataset, path, values, pixels = original_file
    _, labels, _ = predict_as_evaluation(dataset, path, pixels)
    spec = networks.REFERENCE_SPECS[dataset](**({'num_units': SMALL[dataset]['units']}
                                                if dataset == 'mnist' else SMALL[dataset]))
    own = [v if v.ndim != 4 or name != 'beta_filter' else v[:1, :1] * v.shape[1]
           for (name, _), v in zip(original_shapes(dataset, **SMALL[dataset]), values)]
    theirs = infer.fold(spec, own).predict(datasets.to_unit_range(pixels))
    assert np.sum(theirs != labels) > 0


def test_packed_original_file_keeps_the_original_semantics(original_file, tmp_path):
    dataset, path, values, pixels = original_file
    network, labels, scores = predict_as_evaluation(dataset, path, pixels)
    spec = reference_spec(dataset, values)
    packed = str(tmp_path / 'packed.npz')
    save_packed(packed, network, spec)
    loaded, description = evaluation.load_network(packed, dataset)
    assert loaded.pixel_scaling == 'original'
    X = datasets.scale_pixels(pixels, loaded.pixel_scaling, dataset)
    np.testing.assert_array_equal(loaded.predict_scores(X), scores)


def test_original_beta_filter_must_be_its_averaging_filter(tmp_path):
    rng = np.random.RandomState(5)
    values = original_file_values('cifar10', rng, **SMALL['cifar10'])
    values[8] = values[8] * np.float32(2)
    path = str(tmp_path / 'odd.npz')
    np.savez(path, *values)
    with pytest.raises(modelfile.ModelFileError,
                       match=r'xnor_conv layer 3 beta_filter is not the constant averaging '
                             r'filter 1/\(C\*fh\*fw\)'):
        evaluation.load_network(path, 'cifar10')


def test_project_shaped_beta_filter_in_a_position_only_file_is_named():
    values = original_file_values('cifar10', np.random.RandomState(6), **SMALL['cifar10'])
    values[8] = np.full((1, 1, 3, 3), 1 / 9., np.float32)
    spec = reference_spec('cifar10', values)
    with pytest.raises(modelfile.ModelFileError,
                       match=r'arr_8 has shape \(1, 1, 3, 3\) but xnor_conv layer 3 needs '
                             r'\(16, 16, 3, 3\) for beta_filter'):
        infer.fold(spec, values)


def test_original_pixel_scaling_and_svhn_labels():
    pixels = np.arange(256, dtype=np.uint8)
    got = datasets.scale_pixels(pixels, 'original', 'cifar10')
    np.testing.assert_array_equal(got, pixels.astype(np.float32) * (2.0 / 255) - 1.0)
    assert got.dtype == np.float32
    assert np.mean(got != datasets.to_unit_range(pixels)) > 0.3  # 1 ulp apart, often
    np.testing.assert_array_equal(datasets.scale_pixels(pixels, 'original', 'mnist'),
                                  (pixels.astype(np.float32) / 255) * 2.0 - 1.0)
    # SVHN .mat labels 1..10 (10 is the digit 0); this package loads the digit,
    # the original used .mat label - 1
    mat = np.arange(1, 11)
    digits = mat % 10
    np.testing.assert_array_equal(datasets.relabel(digits, 'svhn_mat_minus_one'), mat - 1)
    np.testing.assert_array_equal(datasets.relabel(digits), digits)


# ---------------------------------------------------------------------------
# --split original
# ---------------------------------------------------------------------------

def test_mnist_original_split(mnist_root):
    splits = datasets.prepare_original('mnist', mnist_root)
    X, y = datasets.load('mnist', mnist_root)['train']
    assert (len(splits.X_train), len(splits.X_valid), len(splits.X_test)) == (40000, 10000, 10000)
    np.testing.assert_array_equal(splits.X_train, (X[:40000] / np.float32(255)) * 2.0 - 1.0)
    np.testing.assert_array_equal(splits.y_valid, y[40000:50000])
    np.testing.assert_array_equal(splits.X_valid[-1], (X[49999] / np.float32(255)) * 2.0 - 1.0)
    assert len(datasets.prepare_original('mnist', mnist_root, train_size=123).X_train) == 123


def pylearn2_svhn_rows(mat_train, mat_extra, n_valid_train, n_valid_extra, which):
    """pylearn2.datasets.svhn.SVHN.make_data's split, transcribed with Python sets.

    Returns the row numbers (into train followed by extra) of ``which`` in its final
    order; the pre-shuffle order of a set difference of ints is ascending, as in
    Python 2 for these sizes.
    """
    rng = np.random.RandomState(322)
    rows = []
    for offset, mat, count in ((0, mat_train, n_valid_train),
                               (len(mat_train), mat_extra, n_valid_extra)):
        valid_index = []
        for i in range(1, 11):
            index = np.nonzero(mat.reshape(-1, 1) == i)[0]
            rng.shuffle(index)
            valid_index.append(index[:count])
        valid_index = set(np.concatenate(valid_index).tolist())
        train_index = sorted(set(range(len(mat))) - valid_index)
        chosen = train_index if which == 'train' else sorted(valid_index)
        rows += [offset + i for i in chosen]
    index = list(range(len(rows)))
    rng.shuffle(index)
    return [rows[i] for i in index]


def test_svhn_original_split_follows_pylearn2():
    rng = np.random.RandomState(7)
    mat_train = np.concatenate([np.arange(1, 11).repeat(6), rng.randint(1, 11, 40)])
    mat_extra = np.concatenate([np.arange(1, 11).repeat(3), rng.randint(1, 11, 55)])
    rng.shuffle(mat_train)
    rng.shuffle(mat_extra)
    digits = lambda mat: mat % 10  # noqa: E731  (what load_svhn gives)
    train, valid = datasets.svhn_original_split(digits(mat_train), digits(mat_extra), (4, 2))
    assert train.tolist() == pylearn2_svhn_rows(mat_train, mat_extra, 4, 2, 'train')
    assert sorted(valid.tolist()) == sorted(pylearn2_svhn_rows(mat_train, mat_extra, 4, 2, 'valid'))
    labels = np.concatenate([mat_train, mat_extra])
    assert np.bincount(labels[valid[valid < len(mat_train)]])[1:].tolist() == [4] * 10
    assert np.bincount(labels[valid[valid >= len(mat_train)]])[1:].tolist() == [2] * 10
    assert len(train) + len(valid) == len(labels) and not set(train) & set(valid)
    # the real files: 73,257 + 531,131 images, 6,000 for validation
    assert 73257 + 531131 - 10 * sum(datasets.SVHN_VALID_PER_CLASS) == 598388
    with pytest.raises(datasets.DatasetError, match='fewer than the 400'):
        datasets.svhn_original_split(digits(mat_train), digits(mat_extra))


def test_svhn_prepare_original_reads_train_and_extra(tmp_path, monkeypatch):
    import scipy.io
    rng = np.random.RandomState(8)
    directory = tmp_path / 'SVHN' / 'format2'
    directory.mkdir(parents=True)
    mats = {}
    for name, count in (('train', 50), ('extra', 40), ('test', 32)):
        mat = np.concatenate([np.arange(1, 11).repeat(3), rng.randint(1, 11, count - 30)])
        mats[name] = (rng.randint(0, 256, (32, 32, 3, count)).astype(np.uint8), mat)
        scipy.io.savemat(str(directory / ('%s_32x32.mat' % name)),
                         {'X': mats[name][0], 'y': mat.reshape(-1, 1).astype(np.uint8)})
    monkeypatch.setattr(datasets.original, 'SVHN_VALID_PER_CLASS', (2, 1))
    splits = datasets.prepare_original('svhn', str(tmp_path))
    assert (len(splits.X_train), len(splits.X_valid), len(splits.X_test)) == (60, 30, 32)
    X_all = np.concatenate([mats['train'][0], mats['extra'][0]], axis=3).transpose(3, 2, 0, 1)
    y_all = np.concatenate([mats['train'][1], mats['extra'][1]])
    rows = pylearn2_svhn_rows(mats['train'][1], mats['extra'][1], 2, 1, 'train')
    np.testing.assert_array_equal(splits.y_train, y_all[rows] - 1)   # .mat label - 1
    np.testing.assert_array_equal(splits.X_train,
                                  X_all[rows].astype(np.float32) * (2.0 / 255) - 1.0)
    np.testing.assert_array_equal(splits.y_test, mats['test'][1] - 1)
    assert set(splits.y_test[mats['test'][1] == 10]) == {9}   # the digit 0 is class 9


def test_trainer_split_original(repo_root, mnist_root, tmp_path):
    import subprocess
    import sys
    model = str(tmp_path / 'orig_split.npz')
    base = [sys.executable, os.path.join(repo_root, 'train', 'mnist_train.py'),
            '--data-path', mnist_root, '--model-out', model, '--num-units', '32',
            '--epochs', '1', '--train-size', '300', '--no-progress', '--split', 'original']
    result = subprocess.run(base, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert '300 training, 10000 validation, 10000 test images' in result.stdout
    spec = modelfile.load_model(model)[1]
    assert spec['pixel_scaling'] == 'original'
    result = subprocess.run(base + ['--valid-size', '100'], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines() == [
        'error: --valid-size does not apply to --split original (its validation set is fixed)']


# ---------------------------------------------------------------------------
# The original's fixed-point preset (--mode fixed --fixed-preset original)
# ---------------------------------------------------------------------------

def fixed_point(x, mag_bits, int_bits, rounding='half_even'):
    """fxp_helper.fixed_point / to_fixed_point_theano, float32."""
    factor = np.float32(2.0 ** (mag_bits - int_bits))
    y = np.asarray(x, np.float32) * factor
    y = np.around(y) if rounding == 'half_even' else np.sign(y) * np.floor(np.abs(y) + 0.5)
    limit = 2.0 ** mag_bits - 1
    return (np.clip(y, -limit, limit) / factor).astype(np.float32)


def convert_fxp_format(value):
    """fxp_helper.convert_fxp_format for one parameter (not W, not the raw batch norm)."""
    import math
    no_int_bits = max(0, int(math.ceil(math.log(np.amax(np.absolute(value)), 2))))
    return fixed_point(value, 15, no_int_bits)


def original_fixed_forward(dataset, values, pixels, rounding='half_even', **widths):
    """The fixed mode of the original's mnist_test.py / cifar10_test.py."""
    data_bits = 15
    if dataset == 'mnist':
        fmt = dict(xdense=10, bn=3, dense=(20, 17))
        x = (pixels.astype(np.float32) / np.float32(255.)) * 2.0 - 1.0
    else:
        fmt = dict(conv=8, xconv=8, bn=3, xdense=10, dense=(15, 10))
        x = pixels.astype(np.float32) * (2.0 / 255) - 1.0
    q = lambda v, int_bits: fixed_point(v, data_bits, int_bits, rounding)  # noqa: E731
    x = fixed_point(x, 7, 0)
    arrays = iter(values)
    for layer in original_layers(dataset, **widths):
        kind = layer[0]
        if kind == 'conv':
            W, b = next(arrays), convert_fxp_format(next(arrays))
            x = q(true_conv(x, W, 1), fmt['conv']) + b[None, :, None, None]
        elif kind == 'xconv':
            W, b, beta_filter, xalpha = (next(arrays) for _ in range(4))
            b, beta_filter, xalpha = (convert_fxp_format(v) for v in (b, beta_filter, xalpha))
            x = q(x, fmt['xconv'])
            K = true_conv(np.abs(x), beta_filter, 1)
            x = q(true_conv(sign(x), sign(W), 1) * K * xalpha[None, :, None, None],
                  fmt['xconv']) + b[None, :, None, None]
        elif kind == 'xdense':
            W, b, xalpha = next(arrays), convert_fxp_format(next(arrays)), \
                convert_fxp_format(next(arrays))
            x = q(x.reshape(len(x), -1), fmt['xdense'])
            beta = np.mean(np.abs(x), axis=1)
            x = q((sign(x) @ sign(W) + b) * beta[:, None] * xalpha, fmt['xdense'])
        elif kind in ('dense', 'dense_softmax'):
            W, b = next(arrays), convert_fxp_format(next(arrays))
            x = x.reshape(len(x), -1) @ W + b
            if kind == 'dense_softmax':
                e = np.exp(x - x.max(axis=1, keepdims=True))
                x = e / e.sum(axis=1, keepdims=True)
            x = fixed_point(x, fmt['dense'][0], fmt['dense'][1], rounding)
        elif kind == 'bn':
            beta, gamma, mean, inv_std = (next(arrays) for _ in range(4))
            scale = convert_fxp_format(gamma * inv_std)
            sub = convert_fxp_format(-mean * inv_std * gamma + beta)
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = q(x * scale.reshape(shape) + sub.reshape(shape), fmt['bn'])
        elif kind == 'pool':
            n, c, h, w = x.shape
            x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        x = x.astype(np.float32)
    return x


@pytest.mark.parametrize('rounding', ['half_even', 'half_away'])
def test_original_fixed_preset_predicts_what_the_original_fixed_mode_predicts(original_file,
                                                                              rounding):
    dataset, path, values, pixels = original_file
    network, _ = evaluation.load_network(path, dataset)
    X = datasets.scale_pixels(pixels, network.pixel_scaling, dataset)
    got = network.predict_scores(X, 'fixed', preset='original', rounding=rounding)
    want = original_fixed_forward(dataset, values, pixels, rounding, **SMALL[dataset])
    np.testing.assert_array_equal(np.argmax(got, axis=1), np.argmax(want, axis=1))
    # scores on the original's grid: equal but for rare 1-step rounding differences
    step = 2.0 ** -(5 if dataset == 'cifar10' else 12)   # the last layer's format
    assert np.mean(np.abs(got - want) > step / 2) < 0.02
    # and it is not the calibrated scheme
    network.calibrate(X)
    calibrated = network.predict_scores(X, 'fixed')
    assert not np.array_equal(calibrated, got)


def test_original_fixed_preset_quantizes_as_fxp_helper():
    from binary_net.infer import fixed_original
    rng = np.random.RandomState(9)
    x = np.concatenate([rng.normal(0, 3, 1000), [0.5 / 128, -0.5 / 128, 1.5 / 128, 1.0, -1.0,
                                                  300.0, -300.0]]).astype(np.float32)
    np.testing.assert_array_equal(fixed_original.quantize_original(x, 7, 0), fixed_point(x, 7, 0))
    np.testing.assert_array_equal(fixed_original.quantize_original(x, 15, 3, 'half_away'),
                                  fixed_point(x, 15, 3, 'half_away'))
    # symmetric saturation: 1.0 in (7, 0) is 127/128, -1.0 is -127/128
    assert fixed_original.quantize_original(np.float32(-1), 7, 0) == np.float32(-127 / 128.)
    assert fixed_original.param_int_bits(np.array([0.3, -2.5])) == 2
    assert fixed_original.param_int_bits(np.array([1e-4])) == 0
    assert fixed_original.param_int_bits(np.array([4.0])) == 2   # ceil(log2 4); 4 saturates


def test_evaluation_script_fixed_preset_original(tmp_path):
    import subprocess
    import sys
    from helpers import REPO, write_mnist
    rng = np.random.RandomState(11)
    root = str(tmp_path / 'data')
    write_mnist(root, rng, 20, 25)
    values = original_file_values('mnist', rng, units=32)
    model = str(tmp_path / 'orig.npz')
    np.savez(model, *values)
    script = os.path.join(REPO, 'test', 'mnist_test.py')
    env = dict(os.environ, PYLEARN2_DATA_PATH=root)
    result = subprocess.run([sys.executable, script, '--model', model, '--mode', 'fixed',
                             '--fixed-preset', 'original'], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    X, y = datasets.load('mnist', root)['test']
    want = np.argmax(original_fixed_forward('mnist', values, X, units=32), axis=1)
    last = result.stdout.strip().splitlines()[-1]
    assert last == 'Test error: %.2f%% (25 images, mode fixed)' % (100.0 * np.mean(want != y))
    assert "the original theano-xnor-net's preset" in result.stdout
    bad = subprocess.run([sys.executable, script, '--model', model, '--mode', 'fixed',
                          '--fixed-preset', 'original', '--param-bits', '8'],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and 'does not apply to --fixed-preset original' in bad.stderr
