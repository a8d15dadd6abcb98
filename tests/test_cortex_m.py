"""The C export on a microcontroller ISA: Cortex-M firmware under QEMU.

``export --target cortex-m4`` (``cortex-m3``) builds a firmware with
``arm-none-eabi-gcc -mcpu=... -mthumb -Os`` for QEMU's MPS2 boards (mps2-an386,
mps2-an385); ``qemu-system-arm`` runs it on raw int8 images passed through
semihosting and it prints each label and the integer scores, which must equal
``predict_scores(X, mode='int')`` image by image: on the first 1,000 real MNIST
test images for the shipped model, and on random images for a CIFAR-10-shaped
network and one with every layer option. The sizes the export prints are
checked against ``arm-none-eabi-size``.

Skipped, with the reason, where the Debian packages gcc-arm-none-eabi or
qemu-system-arm are not installed (``.ci/run`` installs them).
"""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from binary_net import data as datasets, modelfile
from binary_net.deploy import export, firmware
from binary_net.infer import fold, integer
from helpers import REPO, run_python
from test_integer import get_case

SHIPPED = os.path.join(REPO, 'models', 'mnist_xnor_1024.npz')
N_MNIST = 1000

needs_toolchain = pytest.mark.skipif(firmware.toolchain_missing() is not None,
                                     reason=str(firmware.toolchain_missing()))
needs_qemu = pytest.mark.skipif(firmware.qemu_missing() is not None,
                                reason=str(firmware.qemu_missing()))


def number(text):
    return int(text.replace(',', ''))


@pytest.fixture(scope='module')
def shipped_export(mnist_root, tmp_path_factory):
    """The shipped MNIST model exported for the Cortex-M4 by the command line."""
    if firmware.toolchain_missing():
        pytest.skip(firmware.toolchain_missing())
    out = str(tmp_path_factory.mktemp('shipped'))
    result = run_python(['-m', 'binary_net', 'export', '--model', SHIPPED, '--out', out,
                         '--data-path', mnist_root, '--target', 'cortex-m4'])
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@needs_toolchain
@needs_qemu
def test_shipped_mnist_firmware_equals_int_mode_on_1000_test_images(mnist_root, shipped_export):
    out, _ = shipped_export
    data = datasets.load('mnist', mnist_root)
    values, spec, _ = modelfile.load_model(SHIPPED)
    net = fold(spec, values).calibrate(datasets.to_unit_range(data['train'][0][:1000]))
    X, y = datasets.to_unit_range(data['test'][0][:N_MNIST]), data['test'][1][:N_MNIST]
    scores = net.predict_scores(X, mode='int')
    run = firmware.run_qemu(os.path.join(out, 'mnist.elf'), 'cortex-m4',
                            integer.input_codes(X))
    np.testing.assert_array_equal(run.labels, scores.argmax(axis=1))
    np.testing.assert_array_equal(run.scores, scores)
    assert (run.labels != y).mean() < 0.05          # a working classifier, too
    # SysTick ran, the loop of known length took time, and an inference takes a
    # few hundred thousand popcounts' worth of instructions.
    assert run.spin_ticks > 0 and run.predict_ticks > 0
    assert 2e5 < run.instructions_per_inference < 2e7


@needs_toolchain
def test_printed_sizes_agree_with_arm_none_eabi_size(shipped_export):
    out, stdout = shipped_export
    flash = number(re.search(r'^Flash: ([\d,]+) bytes', stdout, re.M).group(1))
    ram = number(re.search(r'^RAM: ([\d,]+) bytes', stdout, re.M).group(1))
    sizes = re.search(r'^arm-none-eabi-size: text ([\d,]+), data ([\d,]+), bss ([\d,]+) '
                      r'\(stack ([\d,]+) included\): flash ([\d,]+), RAM ([\d,]+)$', stdout, re.M)
    model = re.search(r'mnist\.o: constant data ([\d,]+) .*, code ([\d,]+), static RAM ([\d,]+)',
                      stdout)
    assert sizes and model, stdout
    text, data, bss, stack, total_flash, total_ram = map(number, sizes.groups())
    # The ELF as arm-none-eabi-size sees it, independently of firmware.py.
    berkeley = subprocess.run([firmware.SIZE, 'mnist.elf'], cwd=out, capture_output=True,
                              text=True, check=True).stdout.splitlines()[-1].split()
    assert [text, data, bss] == [int(v) for v in berkeley[:3]]
    assert total_flash == text + data and total_ram == data + bss
    # The model object: its constant data is exactly the export's Flash figure and
    # its static buffers exactly the RAM figure.
    sections = subprocess.run([firmware.SIZE, '-A', 'mnist.o'], cwd=out, capture_output=True,
                              text=True, check=True).stdout
    rodata = sum(int(n) for n in re.findall(r'^\.rodata\S*\s+(\d+)', sections, re.M))
    static = sum(int(n) for n in re.findall(r'^\.(?:bss|data)\S*\s+(\d+)', sections, re.M))
    assert rodata == flash == number(model.group(1)) == 409660
    assert static == ram == number(model.group(3))
    header = open(os.path.join(out, 'mnist.h')).read()
    assert '#define MNIST_FLASH_BYTES %d' % flash in header
    assert '#define MNIST_RAM_BYTES %d' % ram in header
    # Model, harness and stack: the firmware is the model plus a few KiB.
    assert flash < total_flash < flash + 8192 and ram + stack < total_ram < ram + stack + 4096


@needs_toolchain
def test_shipped_model_fits_a_512_kib_part_not_a_256_kib_one(shipped_export):
    out, stdout = shipped_export
    assert re.search(r'^Fits: STM32F401RE \(512 KiB flash, 96 KiB RAM\)', stdout, re.M), stdout
    built = firmware.build(out, 'mnist', 'cortex-m4', 'swar', flash_limit=512 << 10,
                           ram_limit=96 << 10, variant='f401')
    assert built.flash_bytes <= 512 << 10 and built.ram_bytes <= 96 << 10
    with pytest.raises(firmware.FirmwareError, match='does not fit: flash'):
        firmware.build(out, 'mnist', 'cortex-m4', 'swar', flash_limit=256 << 10,
                       variant='f401rc')
    with pytest.raises(firmware.FirmwareError, match='does not fit: RAM'):
        firmware.build(out, 'mnist', 'cortex-m4', 'swar', ram_limit=4 << 10, variant='tiny')


@needs_toolchain
@needs_qemu
@pytest.mark.parametrize('target', sorted(firmware.TARGETS))
def test_cifar10_shaped_network_bit_exact_with_every_popcount(target, tmp_path):
    """A narrow CIFAR-10 network on random images (some beyond the calibrated
    ranges: saturation), on both boards, with each of the three popcounts."""
    case = get_case('cifar10')
    X = np.concatenate([case.X, case.X_calib[:8]])
    scores = case.net.predict_scores(X, mode='int')
    export.write_c(integer.integer_network(case.net), str(tmp_path), 'cifar', target=target)
    counts = {}
    for popcount in export.POPCOUNTS:
        built = firmware.build(str(tmp_path), 'cifar', target, popcount, variant=popcount)
        run = firmware.run_qemu(built.elf, target, integer.input_codes(X))
        np.testing.assert_array_equal(run.scores, scores, err_msg=popcount)
        np.testing.assert_array_equal(run.labels, scores.argmax(axis=1))
        counts[popcount] = run.instructions_per_inference
    # The popcount is what differs: the counts differ, but not by an order.
    assert len(set(counts.values())) == 3 and max(counts.values()) < 3 * min(counts.values())


@needs_toolchain
@needs_qemu
def test_every_layer_option_bit_exact_on_the_cortex_m3(tmp_path):
    case = get_case('variants')
    X = np.concatenate([case.X, case.X_calib[:8]])
    export.write_c(integer.integer_network(case.net), str(tmp_path), 'variants',
                   popcount='table', target='cortex-m3')
    built = firmware.build(str(tmp_path), 'variants', 'cortex-m3', 'table')
    # Every array of the weights header is in the object at the size the export
    # counted; the compiler may fold a 48-byte geometry table into the code.
    sections = dict((name, int(n)) for name, n in re.findall(
        r'^\.rodata\.(\w+)\s+(\d+)', subprocess.run(
            [firmware.SIZE, '-A', 'variants.o'], cwd=str(tmp_path), capture_output=True,
            text=True, check=True).stdout, re.M))
    weights = open(str(tmp_path / 'variants_weights.h')).read()
    arrays = {name: int(n) * {'uint64_t': 8, 'int16_t': 2}[kind] for kind, name, n in
              re.findall(r'static const (uint64_t|int16_t) (\w+)\[(\d+)\]', weights)}
    arrays['bn_popcount_table'] = 256
    geometry = re.findall(r'static const bn_geometry (\w+)', weights)
    assert len(arrays) > 10 and len(geometry) == 3
    assert {k: v for k, v in sections.items() if k not in geometry} == arrays
    assert all(sections.get(name, 48) == 48 for name in geometry)
    assert sum(sections.values()) + 48 * (3 - len(set(geometry) & set(sections))) == \
        export.generate_c(integer.integer_network(case.net), 'variants',
                          popcount='table').flash_bytes
    run = firmware.run_qemu(built.elf, 'cortex-m3', integer.input_codes(X))
    np.testing.assert_array_equal(run.scores, case.net.predict_scores(X, mode='int'))


@needs_toolchain
@needs_qemu
def test_partial_image_and_missing_file_exit_with_status(tmp_path):
    case = get_case('mnist')
    export.write_c(integer.integer_network(case.net), str(tmp_path), 'm', target='cortex-m4')
    built = firmware.build(str(tmp_path), 'm', 'cortex-m4', 'swar')
    codes = integer.input_codes(case.X[:2]).astype(np.int8).tobytes()
    with open(str(tmp_path / 'partial.bin'), 'wb') as f:
        f.write(codes + codes[:100])
    results = {}
    for images, status, message in (('partial.bin', 1, 'trailing bytes'),
                                    ('absent.bin', 2, 'cannot open the images file')):
        result = subprocess.run(firmware.qemu_command('m.elf', 'cortex-m4', images),
                                cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
        assert result.returncode == status, result
        assert message in result.stdout + result.stderr
        results[images] = [line for line in result.stdout.splitlines()
                           if line[:1].isdigit() or line[:1] == '-']
    # The two whole images before the partial one were classified, and right.
    scores = case.net.predict_scores(case.X[:2], mode='int')
    assert results['partial.bin'] == [' '.join(map(str, [row.argmax()] + list(row)))
                                      for row in scores]
    assert results['absent.bin'] == []


@needs_toolchain
def test_without_the_toolchain_the_makefile_builds_the_same_firmware(mnist_root, tmp_path):
    """With no arm-none-eabi-gcc on the PATH the export writes the sources and the
    Makefile and says it did not build; make then builds what firmware.build builds."""
    case = get_case('mnist')
    model = str(tmp_path / 'small.npz')
    modelfile.save_model(model, case.values, case.spec)
    out = str(tmp_path / 'fw')
    env = dict(os.environ, PATH='/nonexistent')
    result = run_python(['-m', 'binary_net', 'export', '--model', model, '--out', out,
                         '--data-path', mnist_root, '--calibration-size', '100',
                         '--target', 'cortex-m3', '--popcount', 'table'], env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r'^Firmware: not built, arm-none-eabi-gcc and arm-none-eabi-size not '
                     r'found', result.stdout, re.M), result.stdout
    for name in ('Makefile', 'mps2.ld', 'startup.c', 'semihosting.c', 'mnist_firmware.c'):
        assert os.path.exists(os.path.join(out, name)), name
    if shutil.which('make') is None:
        pytest.skip('make not installed')
    made = subprocess.run(['make', '-C', out], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    sizes = firmware.berkeley_sizes('mnist.elf', out)
    built = firmware.build(out, 'mnist', 'cortex-m3', 'table', variant='python')
    assert sizes == (built.text, built.data, built.bss)


def test_a_failing_build_is_one_line_and_keeps_the_sources(mnist_root, tmp_path):
    """A cross compiler that fails (here a stand-in script) gives one error line
    and exit status 2; the sources and the Makefile are written all the same."""
    case = get_case('mnist')
    model = str(tmp_path / 'small.npz')
    modelfile.save_model(model, case.values, case.spec)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in (firmware.CC, firmware.SIZE):
        script = bin_dir / tool
        script.write_text('#!/bin/sh\necho "%s: error: no space left on device" >&2\nexit 1\n'
                          % tool)
        script.chmod(0o755)
    out = str(tmp_path / 'fw')
    result = run_python(['-m', 'binary_net', 'export', '--model', model, '--out', out,
                         '--data-path', mnist_root, '--calibration-size', '50',
                         '--target', 'cortex-m4'],
                        env=dict(os.environ, PATH=str(bin_dir) + os.pathsep + '/usr/bin:/bin'))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r'^error: building .*mnist\.o failed: '
                                        r'arm-none-eabi-gcc: error: no space left', lines[0]), \
        result.stderr
    assert os.path.exists(os.path.join(out, 'Makefile'))
    assert os.path.exists(os.path.join(out, 'mnist.c'))
