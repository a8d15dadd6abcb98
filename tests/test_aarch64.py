"""The XNOR kernels (binary_net/csrc/xnor_kernels.c) on aarch64, under qemu-aarch64.

tests/csrc/kernels_check.c is a Python-free harness: it includes the kernels and
checks xk_gemm, xk_dense_f32 and xk_conv2d against products of signs computed
from the floats. Here it is cross-compiled with aarch64-linux-gnu-gcc (static,
-O3, the default -march=armv8-a, which has NEON) and run by qemu-aarch64 (user
mode): once on the NEON path (vcntq_u8 and pairwise adds), once with
-DXK_NO_NEON on the portable one, and with OpenMP on three threads; and
natively on the host's own path, and on its AVX2 path with the convolution in
passes of one panel. Emulated timings say nothing about real Arm cores, so no
speed is measured.

Skipped, with the reason, where the Debian packages gcc-aarch64-linux-gnu (with
libc6-dev-arm64-cross, which it only recommends) or qemu-user are not installed
(``.ci/run`` installs them).
"""
import os
import re
import shutil
import subprocess

import pytest

from helpers import REPO

SOURCE = os.path.join(REPO, 'tests', 'csrc', 'kernels_check.c')
INCLUDE = os.path.join(REPO, 'binary_net', 'csrc')
CROSS = 'aarch64-linux-gnu-gcc'
QEMU = 'qemu-aarch64'
PRODUCTS = 24772           # what kernels_check.c checks: every shape, every element


def missing():
    absent = [tool for tool in (CROSS, QEMU) if shutil.which(tool) is None]
    if absent:
        return '%s not found (Debian: apt-get install gcc-aarch64-linux-gnu qemu-user)' \
               % ' and '.join(absent)
    probe = subprocess.run([CROSS, '-fsyntax-only', '-x', 'c', '-'], input='#include <stdint.h>\n',
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return '%s has no C library headers (Debian: apt-get install libc6-dev-arm64-cross)' \
               % CROSS
    return None


needs_cross = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def compile_and_run(compiler, flags, runner, threads, tmp_path):
    exe = str(tmp_path / 'kernels_check')
    built = subprocess.run([compiler, '-O3', '-Wall', '-Wextra', '-Wno-unknown-pragmas']
                           + flags + ['-I', INCLUDE, '-o', exe, SOURCE],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    result = subprocess.run(runner + [exe, str(threads)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.match(r'^isa (\S+): (\d+) products checked \((\d+) threads, OpenMP (\d)\)$',
                     result.stdout.strip())
    assert match, result.stdout
    assert int(match.group(2)) == PRODUCTS
    return match.group(1), int(match.group(4))


@needs_cross
@pytest.mark.parametrize('flags, isa', [([], 'neon'), (['-DXK_NO_NEON'], 'portable')])
def test_kernels_bit_exact_on_aarch64(flags, isa, tmp_path):
    assert compile_and_run(CROSS, ['-static'] + flags, [QEMU], 1, tmp_path) == (isa, 0)


@needs_cross
def test_neon_kernels_with_openmp_threads(tmp_path):
    probe = subprocess.run([CROSS, '-fopenmp', '-static', '-x', 'c', '-', '-o',
                            str(tmp_path / 'probe')], input='int main(void){return 0;}',
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip('no static libgomp for aarch64')
    assert compile_and_run(CROSS, ['-static', '-fopenmp'], [QEMU], 3, tmp_path) == ('neon', 1)


def test_kernels_bit_exact_on_the_host(tmp_path):
    """The same harness on this machine's own path (-march=native)."""
    cc = shutil.which(os.environ.get('CC') or 'gcc')
    if cc is None:
        pytest.skip('no C compiler (gcc)')
    isa, _ = compile_and_run(cc, ['-march=native'], [], 1, tmp_path)
    assert isa in ('avx512-vpopcntdq', 'avx2', 'neon', 'portable')


def test_avx2_convolution_in_passes_of_one_panel(tmp_path):
    """The AVX2 path with XK_CONV_BUFFER = 1 byte: the convolution gathers and
    multiplies one panel of 32 output pixels per pass, on two OpenMP threads."""
    cc = shutil.which(os.environ.get('CC') or 'gcc')
    if cc is None:
        pytest.skip('no C compiler (gcc)')
    flags = ['-march=native', '-mno-avx512f', '-fopenmp', '-DXK_CONV_BUFFER=1']
    probe = subprocess.run([cc] + flags + ['-dM', '-E', '-x', 'c', '/dev/null'],
                           capture_output=True, text=True, timeout=60)
    if '__AVX2__' not in probe.stdout:
        pytest.skip('the host CPU has no AVX2')
    assert compile_and_run(cc, flags, [], 2, tmp_path) == ('avx2', 1)
