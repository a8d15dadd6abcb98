"""Theano's C GEMM and convolution ops linked against scipy's bundled OpenBLAS.

binary_net.compat sets ``blas.ldflags`` to the OpenBLAS in scipy's wheel (a
requirement), with ``-D`` defines mapping Theano's Fortran names onto its
``scipy_``-prefixed symbols, unless the user configured a BLAS; without that
library (or with BINARY_NET_BLAS=numpy) it falls back to numpy's ``dot``.
"""
import json
import subprocess
import sys

import numpy as np

from binary_net import compat

CHECK = '''
import json
import numpy as np
import theano, theano.tensor as T
from theano.tensor import blas
a, b = T.matrix(), T.matrix()
x, w = T.tensor4(), T.tensor4()
f = theano.function([a, b], T.dot(a, b))
y = T.nnet.conv2d(x, w, border_mode='half')
g = theano.function([x, w], [y] + theano.grad((y ** 2).sum() / 2, [x, w]))
r = np.random.RandomState(0)
A, B = r.randn(70, 50).astype('float32'), r.randn(50, 30).astype('float32')
X, W = r.randn(4, 5, 6, 6).astype('float32'), r.randn(7, 5, 3, 3).astype('float32')
print(json.dumps({'ldflags': theano.config.blas.ldflags,
                  'ops': sorted(type(n.op).__name__ for n in f.maker.fgraph.toposort()
                                + g.maker.fgraph.toposort()),
                  'dot': f(A, B).tolist(), 'A': A.tolist(), 'B': B.tolist(),
                  'conv': [v.tolist() for v in g(X, W)], 'X': X.tolist(), 'W': W.tolist()}))
'''


def run(env_extra, tmp_path):
    import os
    env = dict(os.environ)
    env.pop('THEANO_FLAGS', None)
    env['THEANORC'] = str(tmp_path / 'none')
    env.update(env_extra)
    proc = subprocess.run([sys.executable, '-c', CHECK], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference_conv(X, W):
    """'half'-padded true convolution (flipped filters), its input and weight gradients
    for the loss sum(y^2)/2, in float64 loops."""
    X, W = np.asarray(X, np.float64), np.asarray(W, np.float64)
    n, c, h, w = X.shape
    f = W.shape[0]
    Wf = W[:, :, ::-1, ::-1]
    P = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([P[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=2)
    Y = np.einsum('ncthw,fct->nfhw', cols, Wf.reshape(f, c, 9))
    gWf = np.einsum('nfhw,ncthw->fct', Y, cols).reshape(f, c, 3, 3)
    gP = np.zeros_like(P)
    contrib = np.einsum('nfhw,fct->ncthw', Y, Wf.reshape(f, c, 9))
    for t, (i, j) in enumerate((i, j) for i in range(3) for j in range(3)):
        gP[:, :, i:i + h, j:j + w] += contrib[:, :, t]
    return Y, gP[:, :, 1:-1, 1:-1], gWf[:, :, ::-1, ::-1]


def test_scipy_openblas_is_found_and_mapped():
    path = compat.scipy_openblas()
    assert path is not None and 'libscipy_openblas' in path
    flags = compat.blas_ldflags().split()
    assert '-l:' + path.rsplit('/', 1)[1] in flags
    assert '-Dsgemm_=scipy_sgemm_' in flags and '-Ddgemv_=scipy_dgemv_' in flags


def test_theano_links_it_and_computes_right(tmp_path):
    result = run({}, tmp_path)
    assert 'scipy_openblas' in result['ldflags']
    # Theano's CorrMM ops (binary_net.theano_ext may run them as its Parallel* subclasses)
    assert sum('CorrMM' in op for op in result['ops']) == 3
    np.testing.assert_allclose(result['dot'], np.dot(np.float64(result['A']), result['B']),
                               rtol=1e-4, atol=1e-4)
    for got, want in zip(result['conv'], reference_conv(result['X'], result['W'])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_fallback_to_numpy_dot(tmp_path, monkeypatch):
    result = run({'BINARY_NET_BLAS': 'numpy'}, tmp_path)
    assert result['ldflags'] == ''
    np.testing.assert_allclose(result['dot'], np.dot(np.float64(result['A']), result['B']),
                               rtol=1e-4, atol=1e-4)
    # no scipy wheel with its OpenBLAS: the numpy fallback
    import importlib.util
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    assert compat.scipy_openblas() is None and compat.blas_ldflags() == ''
