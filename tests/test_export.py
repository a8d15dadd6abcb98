"""Tests for binary_net.deploy.export (and python -m binary_net export): the C99 code is bit-exact with mode='int'.

Every export is compiled with ``gcc -std=c99 -pedantic -Wall -Wextra -Werror`` and
run on images written as raw int8 codes; the harness prints the label and the
integer scores of each image, which must equal Python's, image by image.
"""
import collections
import contextlib
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from binary_net import data as datasets, modelfile, networks
from binary_net.deploy import export
from binary_net.deploy.packed import save_packed
from binary_net.__main__ import main
from binary_net.infer import fold, integer
from helpers import REPO, RandomCase, run_python
from test_integer import fitted_mnist, get_case

CC = shutil.which(os.environ.get('CC') or 'gcc')
CFLAGS = ['-std=c99', '-pedantic', '-Wall', '-Wextra', '-Werror', '-O2']

needs_cc = pytest.mark.skipif(CC is None, reason='no C compiler (gcc)')


def build(directory, name, *flags):
    """Compile PREFIX.c with its harness; returns the executable's path."""
    exe = os.path.join(directory, name + '_example' + ''.join(f.strip('-=') for f in flags))
    result = subprocess.run([CC] + CFLAGS + list(flags) + ['-o', exe, name + '.c',
                                                           name + '_example.c'],
                            cwd=directory, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[:4000]
    return exe


def run_c(exe, codes):
    """Labels and scores the compiled harness prints for int8 input codes."""
    images = os.path.join(os.path.dirname(exe), 'images.bin')
    with open(images, 'wb') as f:
        f.write(np.ascontiguousarray(codes, dtype=np.int8).tobytes())
    result = subprocess.run([exe, images], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = np.array([[int(v) for v in line.split()] for line in result.stdout.splitlines()],
                    dtype=np.int64)
    assert rows.shape[0] == len(codes)
    return rows[:, 0], rows[:, 1:]


def check_bit_exact(net, X, directory, name, *flags):
    program = integer.integer_network(net)
    exported = export.write_c(program, directory, name)
    scores = net.predict_scores(X, mode='int')
    labels, c_scores = run_c(build(directory, name, *flags), integer.input_codes(X))
    np.testing.assert_array_equal(labels, scores.argmax(axis=1))
    np.testing.assert_array_equal(c_scores, scores)
    return exported


@needs_cc
def test_mnist_c_equals_python_on_all_real_test_images(mnist_root, tmp_path):
    _, _, net, X, y = fitted_mnist(mnist_root)
    exported = check_bit_exact(net, X, str(tmp_path), 'mnist')
    # 784x256 + 2 x 256x256 binary weights, 13 + 4 + 4 words per unit.
    assert exported.flash_detail['binary weights'] == 8 * 256 * (13 + 4 + 4)
    # The XNOR layers and batch norms write over their input; only the float dense
    # layer at the end (256 -> 10) needs its input and output apart, and they fit in
    # the 784 of the image.
    assert exported.arena_elements == 784
    assert exported.ram_bytes == 2 * 784 + 8 * 13


Layer = collections.namedtuple('Layer', 'kind in_size out_size binary_input')


def check_plan(layers, in_size):
    """arena_plan's offsets: inside the arena, each input where the last output
    was, and apart from the output unless the layer writes over its input."""
    arena, plan = export.arena_plan(layers, in_size)
    previous = (0, in_size)
    for layer, (src, dst) in zip(layers, plan):
        assert (src, layer.in_size) == previous
        assert 0 <= dst and dst + layer.out_size <= arena
        if not export.writes_over_input(layer):
            assert dst + layer.out_size <= src or src + layer.in_size <= dst
        previous = (dst, layer.out_size)
    return arena, plan


def test_arena_plan_writes_over_inputs_where_the_c_code_allows_it():
    conv = lambda c_in, c_out, hw, binary=True: Layer('xnor_conv', c_in * hw, c_out * hw, binary)
    # The shipped CIFAR-10 model's layers: only the float first convolution needs
    # its input (3 x 32 x 32) and output (64 x 32 x 32) apart.
    cifar = [Layer('conv', 3 * 1024, 64 * 1024, False), Layer('affine', 65536, 65536, False),
             conv(64, 64, 1024), Layer('max_pool', 65536, 16384, False),
             Layer('affine', 16384, 16384, False), conv(64, 128, 256),
             Layer('rectify', 32768, 32768, False),
             Layer('xnor_dense', 32768, 512, True), Layer('dense', 512, 10, False)]
    arena, plan = check_plan(cifar, 3 * 1024)
    assert arena == 3 * 1024 + 64 * 1024
    assert plan[2][0] == plan[2][1] and plan[3][0] == plan[3][1]
    # An XNOR layer with real-valued input reads it while writing: never in place.
    assert not export.writes_over_input(conv(64, 64, 1024, binary=False))
    arena, plan = check_plan([Layer('conv', 10, 10, False), conv(10, 40, 1, binary=False),
                              conv(40, 60, 1), Layer('dense', 60, 5, False)], 10)
    assert arena == 60 + 5 and [dst for _, dst in plan] == [55, 0, 0, 60]
    # A growing output that would run past the arena's end ends there instead.
    arena, plan = check_plan([Layer('dense', 4, 6, False), conv(6, 8, 1)], 4)
    assert arena == 10 and plan[1] == (4, 2)


def test_arena_plan_on_random_networks():
    """The invariants of check_plan on random layer sequences, among them ones
    where the least size does not work and the arena grows."""
    rng = np.random.default_rng(0)
    kinds = ['conv', 'dense', 'affine', 'max_pool', 'xnor_conv', 'xnor_dense']
    grown = 0
    for _ in range(500):
        size = in_size = int(rng.integers(1, 50))
        layers = []
        for _ in range(int(rng.integers(1, 8))):
            kind = kinds[rng.integers(len(kinds))]
            out = {'affine': size, 'max_pool': max(1, size // 4)}.get(
                kind, int(rng.integers(1, 50)))
            layers.append(Layer(kind, size, out, bool(rng.integers(2))))
            size = out
        arena, _ = check_plan(layers, in_size)
        least = max([in_size] + [layer.in_size + layer.out_size for layer in layers
                                 if not export.writes_over_input(layer)]
                    + [max(layer.in_size, layer.out_size) for layer in layers])
        grown += arena > least
    assert grown > 0


@needs_cc
@pytest.mark.parametrize('key', ['cifar10', 'variants'])
def test_convolutional_networks_c_equals_python(key, tmp_path):
    """A narrow CIFAR-10 network and one exercising every layer option, on random
    images (the test images also go beyond the calibrated ranges: saturation),
    with the compiler's popcount and the portable ones (SWAR, also by its older
    name, and the byte table)."""
    case = get_case(key)
    X = np.concatenate([case.X, case.X_calib[:8]])
    check_bit_exact(case.net, X, str(tmp_path), key)
    for flag in ('-DBINARY_NET_PORTABLE_POPCOUNT', '-DBN_POPCOUNT=BN_POPCOUNT_SWAR',
                 '-DBN_POPCOUNT=BN_POPCOUNT_TABLE'):
        labels, scores = run_c(build(str(tmp_path), key, flag), integer.input_codes(X))
        np.testing.assert_array_equal(scores, case.net.predict_scores(X, mode='int'))


@needs_cc
def test_generated_code_is_plain_c(tmp_path):
    case = get_case('cifar10')
    exported = export.write_c(integer.integer_network(case.net), str(tmp_path), 'tiny_net')
    assert sorted(exported.files) == ['tiny_net.c', 'tiny_net.h', 'tiny_net_example.c',
                                      'tiny_net_weights.h']
    source = exported.files['tiny_net.c']
    assert set(re.findall(r'#include\s+(\S+)', source)) == {
        '<stddef.h>', '<stdint.h>', '"tiny_net.h"', '"tiny_net_weights.h"'}
    for word in ('malloc', 'float', 'double', 'printf'):
        assert not re.search(r'\b%s\b' % word, source + exported.files['tiny_net_weights.h'])
    assert '__builtin_popcountll' in source
    header = exported.files['tiny_net.h']
    assert 'int tiny_net_predict(const int8_t *input, int32_t *scores_out);' in header
    assert '#define TINY_NET_FLASH_BYTES %d' % exported.flash_bytes in header
    assert '#define TINY_NET_RAM_BYTES %d' % exported.ram_bytes in header
    # The weights header holds exactly the counted constant data.
    weights = exported.files['tiny_net_weights.h']
    counted = sum(int(n) * {'uint64_t': 8, 'int16_t': 2}[t] for t, n in
                  re.findall(r'static const (uint64_t|int16_t) \w+\[(\d+)\]', weights))
    counted += 4 * 12 * len(re.findall(r'static const bn_geometry', weights))
    assert counted == exported.flash_bytes
    # Two exported models link into one program (only PREFIX_predict is external).
    other = export.write_c(integer.integer_network(get_case('mnist').net), str(tmp_path), 'm2')
    assert other.name == 'm2'
    result = subprocess.run([CC] + CFLAGS + ['-c', 'tiny_net.c', 'm2.c'], cwd=str(tmp_path),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[:2000]


def test_bad_names_are_refused():
    program = integer.integer_network(get_case('mnist').net)
    for name in ('9lives', 'a-b', '', 'x y'):
        with pytest.raises(export.ExportError, match='not a C identifier'):
            export.generate_c(program, name)


def export_command(*args, env=None):
    return run_python(['-m', 'binary_net', 'export'] + list(args), env=env)


@needs_cc
def test_export_command_writes_c_and_prints_flash_and_ram(mnist_root, tmp_path):
    spec, values, _, X, _ = fitted_mnist(mnist_root)
    model = str(tmp_path / 'fitted.npz')
    modelfile.save_model(model, values, spec)
    out = str(tmp_path / 'c')
    result = export_command('--model', model, '--out', out, '--data-path', mnist_root,
                            '--calibration-size', '300', '--name', 'digits')
    assert result.returncode == 0, result.stderr
    flash = re.search(r'^Flash: ([\d,]+) bytes', result.stdout, re.M)
    ram = re.search(r'^RAM: ([\d,]+) bytes', result.stdout, re.M)
    assert flash and ram, result.stdout
    header = open(os.path.join(out, 'digits.h')).read()
    assert '#define DIGITS_FLASH_BYTES %s' % flash.group(1).replace(',', '') in header
    assert '#define DIGITS_RAM_BYTES %s' % ram.group(1).replace(',', '') in header
    # The files compute what int mode computes with the same calibration.
    train = datasets.load('mnist', mnist_root)['train'][0][:300]
    net = fold(spec, values).calibrate(datasets.to_unit_range(train))
    labels, scores = run_c(build(out, 'digits'), integer.input_codes(X[:300]))
    np.testing.assert_array_equal(scores, net.predict_scores(X[:300], mode='int'))


def test_export_command_errors_are_one_line(tmp_path, mnist_root):
    def assert_error(result, pattern):
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and re.match('^error: ' + pattern, lines[0]), result.stderr

    missing = str(tmp_path / 'missing.npz')
    assert_error(export_command('--model', missing, '--out', str(tmp_path / 'c')),
                 'model file not found: .*missing.npz')
    case = get_case('mnist')
    positional = str(tmp_path / 'positional.npz')
    np.savez(positional, *case.values)
    bad = str(tmp_path / 'bad.npz')
    with open(bad, 'wb') as f:
        f.write(b'not a zip file')
    named = str(tmp_path / 'named.npz')
    modelfile.save_model(named, case.values, case.spec)
    cases = [(['--model', positional],
              '.*positional.npz is a position-only file .* give --dataset'),
             (['--model', bad], '.*not a readable .npz'),
             (['--model', named, '--name', 'a-b', '--data-path', mnist_root],
              ".*'a-b' is not a C identifier"),
             (['--model', named, '--data-path', str(tmp_path)], '.*mnist')]
    for args, pattern in cases:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(['export', '--out', str(tmp_path / 'c')] + args)
        assert status == 2, args
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and re.match('^error: ' + pattern, lines[0]), (args, lines)


def test_packed_model_files_export_the_same_code(mnist_root, tmp_path):
    case = get_case('mnist')
    plain, packed = str(tmp_path / 'plain.npz'), str(tmp_path / 'packed.npz')
    modelfile.save_model(plain, case.values, case.spec)
    save_packed(packed, case.values, case.spec)
    outputs = {}
    for path in (plain, packed):
        out = str(tmp_path / os.path.basename(path)[:-4])
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(['export', '--model', path, '--out', out, '--data-path', mnist_root,
                         '--calibration-size', '50']) == 0
        outputs[path] = [open(os.path.join(out, name)).read().replace(os.path.basename(path), '')
                         for name in ('mnist.h', 'mnist_weights.h', 'mnist.c')]
    assert outputs[plain] == outputs[packed]


@needs_cc
def test_every_popcount_on_rows_of_more_than_15_words(tmp_path):
    """Rows of 16 words (1000 inputs) take the SWAR count through two blocks of
    byte accumulators; builtin, SWAR and table agree with int mode (the worst
    case for the accumulators is checked in the next test)."""
    case = RandomCase('wide', networks.mnist_spec(num_units=1000), 16, spread=0.2,
                      gamma=(0.7, 1.3), jitter_inv_std=False)
    case.net.calibrate(case.X_calib)
    program = integer.integer_network(case.net)
    scores = case.net.predict_scores(case.X, mode='int')
    for popcount in export.POPCOUNTS:
        out = str(tmp_path / popcount)
        exported = export.write_c(program, out, 'wide', popcount=popcount)
        assert exported.flash_detail['popcount table'] == (256 if popcount == 'table' else 0)
        labels, c_scores = run_c(build(out, 'wide'), integer.input_codes(case.X))
        np.testing.assert_array_equal(c_scores, scores, err_msg=popcount)
    with pytest.raises(export.ExportError, match='popcount must be one of'):
        export.generate_c(program, 'wide', popcount='fast')


@needs_cc
@pytest.mark.parametrize('popcount', export.POPCOUNTS)
def test_popcount_primitive_equals_a_bit_by_bit_count(popcount, tmp_path):
    """bn_xor_popcount() of csrc/export/popcount.c on rows of 0..100 words of
    random, all-ones, all-zero and sparse XORs (tests/csrc/popcount_check.c)."""
    exe = str(tmp_path / 'check')
    result = subprocess.run([CC] + CFLAGS + ['-DBN_POPCOUNT=BN_POPCOUNT_' + popcount.upper(),
                                             '-I', export.TEMPLATE_DIR, '-o', exe,
                                             os.path.join(REPO, 'tests', 'csrc',
                                                          'popcount_check.c')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[:2000]
    result = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == '404 rows\n', result.stdout


@needs_cc
@pytest.mark.parametrize('popcount', export.POPCOUNTS)
def test_the_templates_compile_on_their_own(popcount, tmp_path):
    """The C templates are package data (csrc/export/, listed in setup.py's
    package_data) and compile as they are, without a model: model_common.c,
    popcount.c and every layer_KIND.c in one translation unit, against an empty
    API header and an empty weights header, with -Werror."""
    setup = open(os.path.join(REPO, 'setup.py')).read()
    assert "'csrc/export/*'" in setup and "'csrc/export/*/*'" in setup
    names = ['model_common.c', 'popcount.c'] + ['layer_%s.c' % kind for kind in export.LAYER_KINDS]
    assert sorted(names + ['model.h', 'example.c', 'cortex_m']) == sorted(
        os.listdir(export.TEMPLATE_DIR))
    values = {'P': 'tmpl', 'SOURCE': 'no model', 'POPCOUNT': 'BN_POPCOUNT_' + popcount.upper(),
              'POPCOUNT_NAME': popcount}
    text = ''
    for name in names:
        body = export.template(name)
        for key, value in values.items():
            body = body.replace('@%s@' % key, value)
        assert not re.search('@[A-Z_]+@', body), name   # every placeholder is known
        text += body
    (tmp_path / 'tmpl.h').write_text('#include <stdint.h>\n')
    (tmp_path / 'tmpl_weights.h').write_text('/* no model */\n')
    (tmp_path / 'tmpl.c').write_text(text)
    result = subprocess.run([CC] + CFLAGS + ['-Wno-unused-function', '-c', '-o', 'tmpl.o',
                                             'tmpl.c'],
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[:4000]
