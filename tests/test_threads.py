"""binary_net.threads: idle OpenMP and OpenBLAS threads spin briefly, unless the user chose."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from binary_net.threads import SLEEPING_DEFAULTS, prefer_sleeping_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_set_in_the_given_environment_only():
    env = {'PATH': '/bin'}
    before = dict(os.environ)
    assert prefer_sleeping_threads(env) is env
    assert env == {'PATH': '/bin', 'GOMP_SPINCOUNT': '10000', 'OPENBLAS_THREAD_TIMEOUT': '18'}
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
