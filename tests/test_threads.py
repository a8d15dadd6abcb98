"""binary_net.threads: idle OpenMP and OpenBLAS threads spin briefly, unless the user chose;
OpenBLAS's thread count set for the length of a call."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from binary_net.infer.numerics import ONE_THREAD_PRODUCT
from binary_net.threads import (SLEEPING_DEFAULTS, blas_num_threads, blas_threads,
                                prefer_sleeping_threads)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_set_in_the_given_environment_only():
    env = {'PATH': '/bin'}
    before = dict(os.environ)
    assert prefer_sleeping_threads(env) is env
    assert env == {'PATH': '/bin', 'GOMP_SPINCOUNT': '30000', 'OPENBLAS_THREAD_TIMEOUT': '18'}
    assert dict(os.environ) == before


@pytest.mark.parametrize('chosen', ['OMP_WAIT_POLICY', 'GOMP_SPINCOUNT',
                                    'OPENBLAS_THREAD_TIMEOUT', 'GOTO_THREAD_TIMEOUT'])
def test_a_choice_of_the_user_or_its_alias_is_kept(chosen):
    env = prefer_sleeping_threads({chosen: '17'})
    assert env[chosen] == '17'
    for name, (value, aliases) in SLEEPING_DEFAULTS.items():
        if chosen in aliases:
            assert name == chosen or name not in env
        else:
            assert env[name] == value


def _numpy_openblas():
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, 'numpy.libs',
                                  'libopenblas*.so*'))
    return libs[0] if libs else None


def _clean_env(**extra):
    aliases = {var for _, chosen in SLEEPING_DEFAULTS.values() for var in chosen}
    env = {k: v for k, v in os.environ.items() if k not in aliases}
    env.update(extra)
    return env


def test_plain_import_changes_nothing():
    # binary_net_compat.pth imports the package in every interpreter of the
    # environment: that must not change other programs' threads (PyTorch's, say).
    code = ('import os, binary_net, binary_net.compat; '
            'print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OPENBLAS_THREAD_TIMEOUT"))')
    out = subprocess.run([sys.executable, '-c', code], env=_clean_env(), cwd=ROOT,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    assert out.split() == ['None', 'None']


@pytest.mark.skipif(_numpy_openblas() is None, reason="numpy's wheel OpenBLAS not found")
@pytest.mark.parametrize('entry', ['binary_net.cli', 'binary_net.train'])
@pytest.mark.parametrize('user, expected', [(None, 18), ('12', 12)])
def test_numpy_openblas_reads_the_timeout_set_by_the_entry_points(entry, user, expected):
    # OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when numpy loads it, and reports
    # the value in force through openblas_thread_timeout() (0: not set).
    code = ('import %s, ctypes, numpy; '
            'print(ctypes.CDLL(%r).openblas_thread_timeout())' % (entry, _numpy_openblas()))
    env = _clean_env(**({'OPENBLAS_THREAD_TIMEOUT': user} if user else {}))
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    assert int(out.split()[-1]) == expected


needs_blas_control = pytest.mark.skipif(blas_num_threads() is None,
                                        reason="numpy's OpenBLAS thread count not found")


@needs_blas_control
def test_blas_threads_sets_the_count_for_the_body_and_restores_it():
    before = blas_num_threads()
    with blas_threads(1) as done:
        assert done and blas_num_threads() == 1
        with blas_threads(2):
            assert blas_num_threads() == 2
        assert blas_num_threads() == 1
    assert blas_num_threads() == before
    with pytest.raises(KeyError):
        with blas_threads(1):
            raise KeyError('the body fails')
    assert blas_num_threads() == before


SMALL_PRODUCTS = """
import hashlib, numpy as np
from binary_net.infer.numerics import matmul_rows
rng = np.random.RandomState(0)
for f, k in ((10, 1024), (10, 4096), (50, 1024)):
    x, w = rng.randn(40, k).astype(np.float32), rng.randn(f, k).astype(np.float32)
    print(f * k, hashlib.sha256(matmul_rows(x, w).tobytes()).hexdigest())
"""


@needs_blas_control
def test_small_products_have_the_same_bits_on_any_blas_thread_count():
    # OpenBLAS on two threads splits the dot products of a few outputs, which gave
    # 10 x 1024 other last bits than on one thread here; matmul_rows runs products
    # below ONE_THREAD_PRODUCT on one thread.
    runs = []
    for threads in ('1', '2'):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads)
        runs.append(subprocess.run([sys.executable, '-c', SMALL_PRODUCTS], env=env, cwd=ROOT,
                                   check=True, stdout=subprocess.PIPE, text=True).stdout)
    sizes = [int(line.split()[0]) for line in runs[0].splitlines()]
    assert len(sizes) == 3 and max(sizes) < ONE_THREAD_PRODUCT
    assert runs[0] == runs[1]
