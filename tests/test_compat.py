"""Tests for binary_net.compat and the binary_net_compat.pth start-up hook.

Every check runs in a fresh interpreter (sys.executable), because the repairs
happen at first import and depend on the environment Theano starts in. The
environment is cleaned of THEANO_FLAGS and points THEANORC at a file that does
not exist, so a developer's own configuration cannot leak into the results.
"""
import json
import os
import site
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

MAXPOOL = '''
import json
import numpy as np
import theano
import theano.tensor as T
from lasagne.layers import InputLayer, MaxPool2DLayer, get_output
x = T.tensor4('x')
layer = MaxPool2DLayer(InputLayer((None, 1, 4, 4), input_var=x), 2)
f = theano.function([x], get_output(layer))
X = np.random.RandomState(0).randn(2, 1, 4, 4).astype(theano.config.floatX)
print(json.dumps({'X': X.tolist(), 'out': f(X).tolist(),
                  'shape': list(layer.output_shape[1:])}))
'''

REPORT = '''
import json, os
import numpy as np
import theano
print(json.dumps({'floatX': theano.config.floatX,
                  'compiledir': theano.config.compiledir,
                  'ldflags': theano.config.blas.ldflags,
                  'THEANO_FLAGS': os.environ.get('THEANO_FLAGS'),
                  'aliases': {n: getattr(np, n, None) is getattr(__builtins__, n)
                              for n in ('bool', 'int', 'float', 'complex', 'object', 'str')}}))
'''


def compat_blas_ldflags():
    from binary_net import compat
    return compat.blas_ldflags()


def clean_env(tmp_path, **extra):
    env = dict(os.environ)
    env.pop('THEANO_FLAGS', None)
    env['THEANORC'] = str(tmp_path / 'no-such-theanorc')
    env.update(extra)
    return env


def run_python(code, tmp_path, env=None, check=True):
    """Run ``code`` in a fresh interpreter in tmp_path; return (json of last line, proc)."""
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path),
                          env=env if env is not None else clean_env(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    if not check:
        return None, proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def check_max_pool(result):
    X = np.array(result['X'])
    expected = X.reshape(2, 1, 2, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(np.array(result['out']), expected)
    assert result['shape'] == [1, 2, 2]


@pytest.mark.parametrize('first, second', [('lasagne', 'binary_net'),
                                           ('binary_net', 'lasagne'),
                                           ('theano', 'lasagne')])
def test_import_orders_build_and_run_max_pool(tmp_path, first, second):
    code = 'import %s\nimport %s\nimport binary_net.layers\n' % (first, second) + MAXPOOL
    result, _ = run_python(code, tmp_path)
    check_max_pool(result)


def test_plain_lasagne_import_works_through_pth(tmp_path):
    code = ('import sys\n'
            'assert "lasagne" not in sys.modules and "theano" not in sys.modules\n'
            'import lasagne\n' + MAXPOOL)
    result, _ = run_python(code, tmp_path)
    check_max_pool(result)


def test_pth_file_is_installed_and_only_installs_the_hook():
    dirs = set(site.getsitepackages()) | {sysconfig.get_paths()['purelib']}
    found = [os.path.join(d, 'binary_net_compat.pth') for d in dirs
             if os.path.isfile(os.path.join(d, 'binary_net_compat.pth'))]
    assert found, dirs
    with open(found[0]) as f:
        text = f.read()
    assert text.startswith('import binary_net.compat')
    assert 'install_import_hook' in text


def test_without_the_hook_lasagne_does_not_import(tmp_path):
    """Control: the hook is what makes ``import lasagne`` work."""
    code = ('import sys\n'
            'sys.meta_path[:] = [f for f in sys.meta_path\n'
            '                    if type(f).__name__ != "_PatchBeforeImport"]\n'
            'import lasagne\n')
    _, proc = run_python(code, tmp_path, check=False)
    assert proc.returncode != 0


def test_defaults_when_user_configured_nothing(tmp_path):
    result, _ = run_python('import lasagne\n' + REPORT, tmp_path)
    assert result['floatX'] == 'float32'
    assert result['ldflags'] == compat_blas_ldflags()   # scipy's OpenBLAS (tests/test_blas.py)
    assert all(result['aliases'].values()), result['aliases']


def test_numpy_aliases_after_importing_theano_directly(tmp_path):
    result, _ = run_python('import binary_net\nimport theano\n' + REPORT, tmp_path)
    assert all(result['aliases'].values()), result['aliases']
    assert result['floatX'] == 'float32' and result['ldflags'] == compat_blas_ldflags()


def test_user_theano_flags_are_respected(tmp_path):
    compiledir = str(tmp_path / 'my compiledir')
    env = clean_env(tmp_path, THEANO_FLAGS='floatX=float64,compiledir=%s' % compiledir)
    # a trivial graph, so that the cold compile in the new directory stays short
    code = ('import lasagne\nimport binary_net\n'
            'import theano, theano.tensor as T, numpy as np\n'
            'x = T.vector()\n'
            'assert theano.function([x], x * 2 + 1)(np.arange(3.0)).tolist() == [1, 3, 5]\n'
            + REPORT)
    result, _ = run_python(code, tmp_path, env=env)
    assert result['floatX'] == 'float64'
    assert result['compiledir'] == compiledir
    assert any(name.startswith('tmp') for name in os.listdir(compiledir))  # compiled there
    assert result['ldflags'] == compat_blas_ldflags()  # not configured by the user: default added
    flags = result['THEANO_FLAGS'].split(',')
    assert 'floatX=float64' in flags and 'compiledir=%s' % compiledir in flags
    assert 'floatX=float32' not in flags


def test_user_blas_flags_and_theanorc_are_respected(tmp_path):
    rc = tmp_path / 'theanorc'
    rc.write_text('[global]\nfloatX = float64\n')
    env = clean_env(tmp_path, THEANORC=str(rc), THEANO_FLAGS='blas.ldflags=-lnot_a_real_blas')
    result, _ = run_python('import binary_net\nimport lasagne\n' + REPORT, tmp_path, env=env)
    assert result['floatX'] == 'float64'
    assert result['ldflags'] == '-lnot_a_real_blas'
    assert result['THEANO_FLAGS'] == 'blas.ldflags=-lnot_a_real_blas'


def test_compat_functions_are_idempotent_in_process():
    from binary_net import compat
    import lasagne  # noqa: F401  (applied by the hook already)
    before = os.environ.get('THEANO_FLAGS')
    compat.apply()
    compat.apply()
    compat.install_import_hook()
    assert sum(type(f).__name__ == '_PatchBeforeImport' for f in sys.meta_path) == 1
    assert os.environ.get('THEANO_FLAGS') == before
    import theano.tensor.signal.downsample as downsample
    assert callable(downsample.max_pool_2d)
    assert np.bool is bool and np.int is int and np.float is float
