"""Tests for mode='xnor' (binary_net.infer.xnor), packed model files (deploy.packed.save_packed /
load_packed, ``python -m binary_net pack``) and the model summary (binary_net.summary).

No Theano: networks are folded from random arrays with numpy only. The xnor mode must
give the float mode's scores bit for bit, hence the same predictions, whatever the
batching (the float products are computed one sample at a time).
"""
import functools
import json
import os

import numpy as np
import pytest

from binary_net import infer, kernels, modelfile, networks, summary
from binary_net.deploy.packed import is_packed, load_packed, save_packed
from binary_net.kernels import pack_bits, unpack_bits
from binary_net.infer import xnor
from binary_net.modelfile import ModelFileError
from binary_net.spec import expected_param_shapes
from helpers import (REPO, RandomCase, assert_one_line_error, random_model, run_python,
                     second_openblas_core, unit_images, write_mnist)


# ---------------------------------------------------------------------------
# Networks with random weights
# ---------------------------------------------------------------------------

def odd_spec():
    """Odd sizes: 65 channels (two words), non-square filters, stride 2, padding,
    unflipped filters, a real-valued input, bias before scaling, no K, no alpha."""
    strided = networks.xnor_conv(65, filter_size=3, stride=2, pad=1)
    unflipped = networks.xnor_conv(7, filter_size=3, stride=1, pad=0)
    unflipped.update(flip_filters=False, filter_size=[3, 2], pad=[2, 0], scale_input=False)
    real_input = networks.xnor_conv(6, filter_size=2, stride=2, pad=0, binary_input=False)
    layers = [networks.conv(5, filter_size=3, stride=1, pad=1, nonlinearity='rectify'),
              networks.batch_norm(),
              strided, networks.batch_norm(),
              unflipped, networks.batch_norm(),
              real_input, networks.batch_norm(),
              networks.max_pool(), networks.batch_norm(),
              networks.xnor_dense(67, bias_before_scaling=True), networks.batch_norm(),
              networks.xnor_dense(13, scale_weights=False), networks.batch_norm(),
              networks.xnor_dense(9, scale_input=False), networks.dropout(),
              networks.dense(4, 'softmax')]
    return networks.make_spec('odd', (None, 3, 13, 11), layers, 'cross_entropy')


SPECS = {
    'mnist': lambda: networks.mnist_spec(num_units=72),
    'cifar10': lambda: networks.cifar10_spec(filters=(8, 9, 16, 17, 16, 70), dense_units=40),
    'svhn': lambda: networks.svhn_spec(filters=(6, 8, 12, 16, 20, 24), dense_units=33),
    'odd': odd_spec,
}


class Case(RandomCase):
    """Random weights, batch-norm statistics fitted to X_calib; 40 test images."""

    def __init__(self, key):
        super().__init__(key, SPECS[key](), 40)
        self.float_scores = self.net.predict_scores(self.X)


@functools.lru_cache(maxsize=None)
def get_case(key):
    return Case(key)


@pytest.fixture(params=sorted(SPECS))
def case(request):
    return get_case(request.param)


# ---------------------------------------------------------------------------
# xnor mode == float mode
# ---------------------------------------------------------------------------

def test_xnor_scores_are_bit_identical_to_float(case):
    scores = case.net.predict_scores(case.X, mode='xnor')
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, case.float_scores)
    np.testing.assert_array_equal(case.net.predict(case.X, mode='xnor'),
                                  case.net.predict(case.X))
    # Not a degenerate network: predictions vary.
    assert len(np.unique(case.net.predict(case.X))) > 1
    # Batches do not change anything, in either mode: the float products are
    # computed one sample at a time, the binary ones are exact.
    for batch_size in (1, 7):
        np.testing.assert_array_equal(
            case.net.predict_scores(case.X, mode='xnor', batch_size=batch_size),
            case.float_scores)


def test_batching_changes_nothing_under_a_second_blas_kernel_family():
    # The float products round differently with OpenBLAS's kernel family (and its
    # choice depends on the CPU); in each family a sample's scores must still not
    # depend on its batch, and xnor must still equal float. This process runs the
    # default family; a subprocess runs another one.
    default, other = second_openblas_core()
    if other is None:
        pytest.skip('no second OpenBLAS kernel family here (default %s)' % default)
    code = ('import json, sys; sys.path.insert(0, %r); import helpers; '
            'print(json.dumps(helpers.batching_report()))' % os.path.dirname(__file__))
    result = run_python(['-c', code], env=dict(os.environ, OPENBLAS_CORETYPE=other,
                                                OPENBLAS_VERBOSE='2'))
    assert result.returncode == 0, result.stderr
    assert 'Core: %s' % other in result.stderr.splitlines()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report) == 26
    assert {what: n for what, n in report.items() if n} == {}


def test_xnor_intermediate_outputs_equal_float_layer_by_layer():
    case = get_case('odd')
    for i, (a, b) in enumerate(zip(case.net.trace(case.X[:5]),
                                   case.net.trace(case.X[:5], mode='xnor'))):
        np.testing.assert_array_equal(a, b, err_msg='op %d (%s)' % (i, case.net[i].kind))


@pytest.mark.parametrize('isa', kernels.ISAS)
def test_xnor_one_image_per_call_equals_float_on_every_code_path(isa):
    # Batch 1 runs the XNOR dense layers and batch norms of a network as one chain
    # (kernels.DenseChain, one C call); every op's output is still float mode's.
    previous = kernels.use_isa(isa)
    try:
        for key in ('mnist', 'odd'):
            case = get_case(key)
            for i in range(3):
                x = case.X[i:i + 1]
                for a, b in zip(case.net.trace(x), case.net.trace(x, mode='xnor')):
                    assert np.array_equal(a.view(np.int32), b.view(np.int32)), (key, isa, i)
            np.testing.assert_array_equal(
                case.net.predict_scores(case.X[:9], mode='xnor', batch_size=1),
                case.float_scores[:9])
    finally:
        kernels.use_isa(previous)


def test_large_batches_run_dense_layers_one_call_each(monkeypatch):
    # Past CHAIN_MAX_BYTES the chain runs layer by layer (its outputs freed early):
    # the same scores, bit for bit.
    case = get_case('mnist')
    chained = case.net.predict_scores(case.X, mode='xnor')
    calls = []
    monkeypatch.setattr(xnor, 'CHAIN_MAX_BYTES', 0)
    monkeypatch.setattr(kernels.PackedDense, 'dense_layer',
                        lambda self, *a, _f=kernels.PackedDense.dense_layer, **k:
                        calls.append(1) or _f(self, *a, **k))
    np.testing.assert_array_equal(case.net.predict_scores(case.X, mode='xnor'), chained)
    np.testing.assert_array_equal(chained, case.float_scores)
    assert len(calls) == 3


def test_scores_alone_let_each_convolution_pack_the_next_ones_input(monkeypatch):
    # predict_scores wants only the scores: an XNOR convolution followed (after its
    # pooling and batch norm) by another one packs that one's input in its epilogue
    # (conv_epilogue_pack), chunk by chunk, and its own output, the pooling's and the
    # batch norm's are not stored. Bit for bit float mode's scores; trace keeps all.
    case = get_case('cifar10')
    calls = []
    fused = kernels.conv_epilogue_pack
    monkeypatch.setattr(kernels, 'conv_epilogue_pack',
                        lambda *a, **k: calls.append(1) or fused(*a, **k))
    np.testing.assert_array_equal(case.net.predict_scores(case.X, mode='xnor'),
                                  case.float_scores)
    assert len(calls) == 4          # convolutions 2-3, 3-4, 4-5, 5-6
    monkeypatch.setattr(xnor, 'CONV_CHUNK_ELEMENTS', 1000)    # one image per chunk
    np.testing.assert_array_equal(case.net.predict_scores(case.X, mode='xnor'),
                                  case.float_scores)
    assert len(calls) == 4 + 4 * len(case.X)
    traced = case.net.trace(case.X[:3], mode='xnor')
    assert len(calls) == 4 + 4 * len(case.X)
    for i, (a, b) in enumerate(zip(case.net.trace(case.X[:3]), traced)):
        assert np.array_equal(a.view(np.int32), b.view(np.int32)), (i, case.net[i].kind)


def test_outputs_not_computed_cannot_be_mistaken_for_values():
    stand_in = xnor.not_computed((2, 3, 4, 5))
    assert stand_in.shape == (2, 3, 4, 5) and stand_in.dtype == np.float32
    assert np.isnan(stand_in).all() and stand_in.strides == (0,) * 4    # no memory
    with pytest.raises(ValueError):
        stand_in[0, 0, 0, 0] = 1.0


def test_xnor_mode_is_registered_and_takes_no_options():
    case = get_case('mnist')
    assert infer.MODES['xnor'] is xnor.XnorContext
    with pytest.raises(ValueError, match="mode 'xnor' does not take the options act_bits"):
        case.net.predict(case.X, mode='xnor', act_bits=8)


def test_true_convolutions_are_flipped_once_at_fold_time():
    spec = networks.make_spec('flip', (None, 2, 5, 5),
                              [networks.xnor_conv(3, filter_size=3, pad=1)], 'squared_hinge')
    unflipped = json.loads(json.dumps(spec))
    unflipped['layers'][0]['flip_filters'] = False
    rng = np.random.RandomState(3)
    values = random_model(spec, unit_images(rng, 4, (2, 5, 5)), rng)
    W = values[0]
    flipped_op, plain_op = infer.fold(spec, values)[0], infer.fold(unflipped, values)[0]
    np.testing.assert_array_equal(flipped_op.W_sign, np.where(W[:, :, ::-1, ::-1] >= 0, 1, -1))
    np.testing.assert_array_equal(plain_op.W_sign, np.where(W >= 0, 1, -1))
    # The packed kernel gets the folded (flipped) signs, unflipped again by no one.
    packed = xnor.packed_weights(flipped_op)
    np.testing.assert_array_equal(packed.packed, kernels.pack_signs(flipped_op.W_sign, axis=1))


def test_weights_are_packed_once(monkeypatch, tmp_path):
    built = {'dense': 0, 'conv': 0}

    class CountingDense(kernels.PackedDense):
        def __init__(self, *args, **kwargs):
            built['dense'] += 1
            super().__init__(*args, **kwargs)

    class CountingConv(kernels.PackedConv2D):
        def __init__(self, *args, **kwargs):
            built['conv'] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(kernels, 'PackedDense', CountingDense)
    monkeypatch.setattr(kernels, 'PackedConv2D', CountingConv)
    case = get_case('cifar10')
    net = infer.fold(case.spec, case.values)   # a fresh network: nothing cached yet
    first = net.predict_scores(case.X, mode='xnor', batch_size=16)
    second = net.predict_scores(case.X[:8], mode='xnor')
    assert built == {'dense': 2, 'conv': 5}        # one per XNOR layer, not per batch
    np.testing.assert_array_equal(first, case.float_scores)
    np.testing.assert_array_equal(second, case.float_scores[:8])
    assert all(isinstance(xnor.packed_weights(op), (CountingDense, CountingConv))
               for op in net if op.kind.startswith('xnor'))
    # A packed file gives its ops the stored words: nothing is packed again.
    path = str(tmp_path / 'c.packed.npz')
    save_packed(path, net, case.spec)
    loaded = load_packed(path)[0]
    np.testing.assert_array_equal(loaded.predict_scores(case.X, mode='xnor'), case.float_scores)
    assert built == {'dense': 2, 'conv': 5}


# ---------------------------------------------------------------------------
# Packed model files
# ---------------------------------------------------------------------------

def test_pack_bits_layout_matches_the_kernels_and_round_trips():
    rng = np.random.RandomState(5)
    signs = np.where(rng.standard_normal((3, 130, 2)) >= 0, 1, -1).astype(np.int8)
    words = pack_bits(signs, axis=1)
    assert words.dtype == np.uint64 and words.shape == (3, 2, 3)
    np.testing.assert_array_equal(words, kernels.pack_signs(signs.astype(np.float32), axis=1))
    np.testing.assert_array_equal(unpack_bits(words, 130, axis=1), signs)
    # Element k is bit k % 64 of word k // 64, 1 for +1.
    for k in (0, 1, 63, 64, 129):
        bit = (int(words[1, 0, k // 64]) >> (k % 64)) & 1
        assert bit == (signs[1, k, 0] > 0)
    assert int(words[0, 0, 2]) >> 2 == 0           # unused trailing bits are 0


def test_packed_round_trip_gives_identical_scores_in_every_mode(case, tmp_path):
    path = str(tmp_path / 'model.packed.npz')
    written = save_packed(path, case.values, case.spec, extra={'note': 'x'})
    assert written['bytes'] == os.path.getsize(path)
    assert written['binary_weights'] == sum(
        int(np.prod(s)) for _, kind, name, s in expected_param_shapes(case.spec)
        if name == 'W' and kind.startswith('xnor'))
    assert is_packed(path)
    net, spec, extra = load_packed(path)
    assert spec == case.spec and extra == {'note': 'x'}
    assert [op.kind for op in net] == [op.kind for op in case.net]
    for op in net:
        if op.kind.startswith('xnor'):
            assert sorted(op.params) == ['alpha', 'b']  # signs and alpha, no real W
    for mode in ('float', 'xnor'):
        np.testing.assert_array_equal(net.predict_scores(case.X, mode=mode), case.float_scores)
    case.net.calibrate(case.X_calib)
    net.calibrate(case.X_calib)
    np.testing.assert_array_equal(net.predict_scores(case.X, mode='fixed'),
                                  case.net.predict_scores(case.X, mode='fixed'))
    # Saving the folded network (with its calibration) gives the same file contents.
    again = str(tmp_path / 'again.packed.npz')
    save_packed(again, case.net, case.spec)
    loaded = load_packed(again)[0]
    assert loaded.calibration == case.net.calibration
    np.testing.assert_array_equal(loaded.predict_scores(case.X, mode='xnor'), case.float_scores)


def test_packed_file_layout_is_documented(tmp_path):
    case = get_case('mnist')
    path = str(tmp_path / 'm.packed.npz')
    save_packed(path, case.values, case.spec)
    with np.load(path) as data:
        header = json.loads(data['binary_net_packed'].tobytes().decode())
        bits = data['op0_bits']
    assert header['format'] == 'binary_net-packed' and header['version'] == 1
    assert 'bit 1 = +1' in header['bit_order']
    assert header['ops'][0]['op'] == 'xnor_dense' and header['ops'][0]['n_in'] == 784
    W = case.values[0]                              # (784, 72)
    assert bits.dtype == np.dtype('<u8') and bits.shape == (72, 13)
    for j, k in ((0, 0), (5, 100), (71, 783)):
        assert ((int(bits[j, k // 64]) >> (k % 64)) & 1) == (W[k, j] >= 0)


def test_packed_mnist_file_is_over_20_times_smaller(tmp_path):
    spec = networks.mnist_spec(num_units=1024)
    rng = np.random.RandomState(0)
    values = [rng.uniform(0.5, 1.5, shape).astype(np.float32)
              for *_, shape in expected_param_shapes(spec)]
    float_path, packed_path = str(tmp_path / 'm.npz'), str(tmp_path / 'm.packed.npz')
    modelfile.save_model(float_path, values, spec)
    save_packed(packed_path, values, spec)
    ratio = os.path.getsize(float_path) / os.path.getsize(packed_path)
    assert ratio >= 20, ratio


@pytest.fixture(scope='module')
def packed_file(tmp_path_factory):
    case = get_case('mnist')
    path = str(tmp_path_factory.mktemp('packed') / 'mnist.packed.npz')
    save_packed(path, case.values, case.spec)
    return path


def test_truncated_and_foreign_packed_files_give_one_line_errors(packed_file, tmp_path):
    raw = open(packed_file, 'rb').read()
    for cut in (len(raw) // 2, len(raw) - 10, 100):
        truncated = str(tmp_path / ('cut%d.npz' % cut))
        with open(truncated, 'wb') as f:
            f.write(raw[:cut])
        assert not is_packed(truncated)
        with pytest.raises(ModelFileError) as error:
            load_packed(truncated)
        assert_one_line_error(error, truncated, 'truncated or corrupt')
    text = str(tmp_path / 'notes.txt')
    with open(text, 'w') as f:
        f.write('hello\n' * 100)
    with pytest.raises(ModelFileError) as error:
        load_packed(text)
    assert_one_line_error(error, 'not a readable packed model')
    unpacked = str(tmp_path / 'plain.npz')
    case = get_case('mnist')
    modelfile.save_model(unpacked, case.values, case.spec)
    with pytest.raises(ModelFileError) as error:
        load_packed(unpacked)
    assert_one_line_error(error, 'not a packed binary_net model', 'python -m binary_net pack')
    with pytest.raises(ModelFileError) as error:
        load_packed(str(tmp_path / 'missing.npz'))
    assert_one_line_error(error, 'not found')


def test_tampered_packed_files_give_one_line_errors(packed_file, tmp_path):
    with np.load(packed_file) as data:
        arrays = {name: data[name] for name in data.files}
    header = json.loads(arrays['binary_net_packed'].tobytes().decode())

    def write(name, changes=None, header_changes=None):
        new = dict(arrays, **(changes or {}))
        h = dict(header, **(header_changes or {}))
        new['binary_net_packed'] = np.frombuffer(json.dumps(h).encode(), np.uint8)
        path = str(tmp_path / name)
        np.savez(path, **new)
        return path

    with pytest.raises(ModelFileError) as error:
        load_packed(write('shape.npz', {'op0_bits': arrays['op0_bits'][:, :5]}))
    assert_one_line_error(error, 'op 0 (xnor_dense) array bits', 'expected uint64 (72, 13)')
    with pytest.raises(ModelFileError) as error:
        load_packed(write('version.npz', header_changes={'version': 99}))
    assert_one_line_error(error, 'version 99')
    with pytest.raises(ModelFileError) as error:
        load_packed(write('foreign.npz', header_changes={'format': 'other'}))
    assert_one_line_error(error, 'not a packed-model header')
    lacking = str(tmp_path / 'lacking.npz')
    np.savez(lacking, **{name: a for name, a in arrays.items() if name != 'op2_alpha'})
    with pytest.raises(ModelFileError) as error:
        load_packed(lacking)
    assert_one_line_error(error, lacking, 'op 2 (xnor_dense) lacks its array alpha')


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------

def small_spec():
    return networks.make_spec('small', (None, 2, 7, 7), [
        networks.conv(3, filter_size=3, stride=2, pad=0),      # 2x7x7 -> 3x3x3
        networks.batch_norm(),
        networks.xnor_conv(4, filter_size=3, stride=1, pad=1),  # -> 4x3x3
        networks.max_pool(),                                     # -> 4x1x1
        networks.xnor_dense(5),
        networks.xnor_dense(6, binary_input=False),
        networks.dropout(),
        networks.dense(3)], 'squared_hinge')


def test_summary_counts_match_hand_counts():
    rows = summary.summary(small_spec())
    by_type = [(r['type'], r['input_shape'], r['output_shape'], r['binary_params'],
                r['float_params'], r['binary_macs'], r['float_macs']) for r in rows]
    assert by_type == [
        ('conv', (2, 7, 7), (3, 3, 3), 0, 3 * 2 * 9 + 3, 0, 3 * 2 * 9 * 9),
        ('batch_norm', (3, 3, 3), (3, 3, 3), 0, 4 * 3, 0, 0),
        # W binary; b, beta_filter (3x3) and xalpha real
        ('xnor_conv', (3, 3, 3), (4, 3, 3), 4 * 3 * 9, 4 + 9 + 4, 4 * 3 * 9 * 9, 0),
        ('max_pool', (4, 3, 3), (4, 1, 1), 0, 0, 0, 0),
        ('xnor_dense', (4, 1, 1), (5,), 4 * 5, 5 + 5, 20, 0),
        ('xnor_dense', (5,), (6,), 5 * 6, 6 + 6, 0, 30),   # real-valued input: float MACs
        ('dropout', (6,), (6,), 0, 0, 0, 0),
        ('dense', (6,), (3,), 0, 6 * 3 + 3, 0, 18)]
    assert [r['layer'] for r in rows] == list(range(1, 9))
    conv_row = rows[2]
    assert conv_row['float32_bytes'] == 4 * (108 + 17)
    assert conv_row['packed_bytes'] == 108 / 8 + 4 * 17
    t = summary.totals(rows)
    assert t['binary_params'] == 108 + 20 + 30
    assert t['float_params'] == 57 + 12 + 17 + 10 + 12 + 21
    assert t['params'] == t['binary_params'] + t['float_params'] == 287
    assert t['binary_macs'] == 972 + 20 and t['float_macs'] == 486 + 30 + 18
    assert t['float32_bytes'] == 4 * 287
    assert t['packed_bytes'] == 158 / 8 + 4 * 129
    assert t['compression'] == pytest.approx(1148 / (158 / 8 + 516))
    # The counts agree with the model file's arrays.
    assert t['params'] == sum(int(np.prod(s)) for *_, s in
                              expected_param_shapes(small_spec()))
    text = summary.format_table(rows, 'small')
    assert 'compression ratio %.1fx' % t['compression'] in text
    assert '2x7x7' in text and 'Total' in text


def test_summary_of_the_reference_mnist_network():
    t = summary.totals(summary.summary(networks.mnist_spec()))
    assert t['binary_params'] == 784 * 4096 + 2 * 4096 * 4096
    assert t['binary_macs'] == t['binary_params'] and t['float_macs'] == 4096 * 10
    assert 29 < t['compression'] < 32


# ---------------------------------------------------------------------------
# Commands and the evaluation script, in subprocesses
# ---------------------------------------------------------------------------

def test_pack_and_summary_commands(tmp_path):
    case = get_case('mnist')
    model, packed = str(tmp_path / 'm.npz'), str(tmp_path / 'm.packed.npz')
    modelfile.save_model(model, case.values, case.spec)
    result = run_python(['-m', 'binary_net', 'pack', '--model', model, '--out', packed])
    assert result.returncode == 0, result.stderr
    ratio = os.path.getsize(model) / os.path.getsize(packed)
    assert 'smaller' in result.stdout and '%.1fx' % ratio in result.stdout
    np.testing.assert_array_equal(load_packed(packed)[0].predict_scores(case.X, mode='xnor'),
                                  case.float_scores)
    code = ('import sys; from binary_net.__main__ import main; status = main(sys.argv[1:]); '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("theano", "lasagne")]; '
            'print("IMPORTED", bad); sys.exit(status)')
    for path, kind in ((model, 'float file'), (packed, 'packed file')):
        result = run_python(['-c', code, 'summary', '--model', path])
        assert result.returncode == 0, result.stderr
        assert 'IMPORTED []' in result.stdout
        assert kind in result.stdout and 'compression ratio' in result.stdout
        assert 'xnor_dense' in result.stdout
    result = run_python(['-m', 'binary_net', 'pack', '--model', str(tmp_path / 'no.npz'),
                         '--out', packed])
    assert result.returncode == 2
    assert [l for l in result.stderr.splitlines() if l.startswith('error: ')] \
        == [result.stderr.strip()]
    result = run_python(['-m', 'binary_net', 'summary', '--model', str(tmp_path / 'no.npz')])
    assert result.returncode == 2 and result.stderr.startswith('error: ')


def test_mnist_script_in_xnor_mode_on_plain_and_packed_files(tmp_path):
    rng = np.random.RandomState(7)
    write_mnist(str(tmp_path / 'data'), rng, n_train=20, n_test=45)
    case = get_case('mnist')
    model, packed = str(tmp_path / 'm.npz'), str(tmp_path / 'm.packed.npz')
    modelfile.save_model(model, case.values, case.spec)
    save_packed(packed, case.values, case.spec)
    env = dict(os.environ, PYLEARN2_DATA_PATH=str(tmp_path / 'data'))
    script = os.path.join(REPO, 'test', 'mnist_test.py')
    lines = {}
    for path in (model, packed):
        for mode in ('float', 'xnor', 'fixed'):
            result = run_python([script, '--model', path, '--mode', mode, '--batch-size', '16'],
                                env=env)
            assert result.returncode == 0, result.stderr
            lines[path, mode] = result.stdout.strip().splitlines()[-1]
        assert 'packed file' in run_python([script, '--model', packed, '--no', '2'],
                                           env=env).stdout
    expected = lines[model, 'float']
    assert expected.startswith('Test error: ') and expected.endswith('(45 images, mode float)')
    for key, line in lines.items():
        assert line == expected.replace('mode float', 'mode %s' % key[1]) or key[1] == 'fixed'
    assert lines[model, 'fixed'] == lines[packed, 'fixed']
    help_text = run_python([script, '--help'], env=env).stdout
    assert 'xnor' in help_text


# ---------------------------------------------------------------------------
# The real MNIST test set
# ---------------------------------------------------------------------------

def test_xnor_equals_float_on_the_whole_real_mnist_test_set(mnist_root):
    from binary_net import data as datasets

    data = datasets.load('mnist', mnist_root)
    X_train, X_test = data['train'][0], data['test'][0]
    assert len(X_test) == 10000
    rng = np.random.RandomState(11)
    spec = networks.mnist_spec(num_units=256)
    values = random_model(spec, datasets.to_unit_range(X_train[:500]), rng)
    net = infer.fold(spec, values)
    X = datasets.to_unit_range(X_test)
    float_scores = net.predict_scores(X, batch_size=500)
    xnor_scores = net.predict_scores(X, mode='xnor', batch_size=500)
    assert np.array_equal(xnor_scores, float_scores)
    same = np.sum(net.predict(X, mode='xnor', batch_size=1000) == float_scores.argmax(axis=1))
    assert same == 10000
    assert len(np.unique(float_scores.argmax(axis=1))) > 2
