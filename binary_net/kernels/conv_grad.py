"""The two gradients of a convolution with a +-1 operand, on Intel AMX.

Part of :mod:`binary_net.kernels`. In training, a binary convolution's forward product
is ``corr(sign(x), sign(W))``; its weight gradient is a correlation of the +-1 input
with the float output gradient, its input gradient one of the +-1 weights with it.
``csrc/amx_conv_grad.c`` computes both on AMX's BF16 tiles: a +-1 is exact in BF16,
and the float gradient is split into three BF16 parts whose sum is exactly the float
(every finite value of magnitude above about 2**-110), so every product is exact and
the result is a float32 sum of the exact terms, only in another order than a float32
GEMM's (AMX accumulates in float32, rounding to nearest). Each output is summed by one
thread in a fixed order: the same inputs give the same bits on any thread count.

:func:`amx_available` says whether the CPU, the compiled code path
(``BINARY_NET_ISA=avx2`` and ``portable`` have no AMX) and the operating system allow
it, and ``BINARY_NET_AMX=0`` turns it off. Without AMX both functions compute with
the numpy references (:func:`~binary_net.kernels.reference.conv_grad_weights_reference`,
:func:`~binary_net.kernels.reference.conv_grad_inputs_reference`), in float64 rounded
to float32: slow, never wrong.
"""
import os
import threading

import numpy as np

from .build import KernelBuildError
from .library import get_library, nthreads
from .operands import pair
from .reference import conv_grad_inputs_reference, conv_grad_weights_reference

__all__ = ['amx_available', 'sign_conv_grad_weights', 'sign_conv_grad_inputs']

_GRAD_WEIGHTS, _GRAD_INPUTS = 0, 1
_scratch = threading.local()    # each thread's workspace, grown as needed


def amx_available():
    """Whether the AMX kernels run here.

    Returns
    -------
    bool
        False where ``$BINARY_NET_AMX`` is ``0``, where the selected code path was
        compiled without AMX (a CPU without it, ``BINARY_NET_ISA=avx2`` or
        ``portable``), where the kernel refuses the tile state, or where the kernels
        cannot be compiled.
    """
    if os.environ.get('BINARY_NET_AMX', '1').strip() == '0':
        return False
    try:
        lib = get_library()
    except KernelBuildError:
        return False
    return bool(lib.function('xk_amx_available')())


def _workspace(nbytes):
    """This thread's scratch buffer of at least ``nbytes`` (kept between calls, so
    that the pages are not faulted in again every training step)."""
    buf = getattr(_scratch, 'buf', None)
    if buf is None or buf.size < nbytes:
        buf = _scratch.buf = np.empty(int(nbytes), np.uint8)
    return buf


def _float4(v, name):
    v = np.asarray(v)
    if v.ndim != 4:
        raise ValueError('%s must be 4-D, got shape %s' % (name, v.shape))
    return np.ascontiguousarray(v, dtype=np.float32)


def _output(out, shape):
    if out is None or out.shape != shape or out.dtype != np.float32 \
            or not out.flags.c_contiguous or not out.flags.writeable:
        return np.empty(shape, np.float32)
    return out


def _run(which, a, gz, out, dims):
    """Run one AMX kernel; False where AMX is not available."""
    if not amx_available():
        return False
    lib = get_library()
    d = np.array(dims, np.int64)
    threads = nthreads()
    ws = _workspace(lib.function('xk_amx_workspace')(which, d.ctypes.data, threads))
    fn = lib.function('xk_amx_grad_weights' if which == _GRAD_WEIGHTS else 'xk_amx_grad_inputs')
    status = fn(a.ctypes.data, gz.ctypes.data, out.ctypes.data, d.ctypes.data,
                ws.ctypes.data, threads)
    if status == -2:
        return False
    if status == -3:
        raise MemoryError('the AMX convolution gradient could not allocate its buffers')
    if status != 0:     # -1: dimensions the checks above should have refused
        raise ValueError('the AMX convolution gradient refused dimensions %s' % (dims,))
    return True


def sign_conv_grad_weights(x, gz, kernel_size, pad=0, out=None):
    """The weight gradient of a stride-1 correlation whose input is +-1 (Theano's
    ``CorrMM_gradWeights``).

    Parameters
    ----------
    x : array_like (N, C, H, W)
        The input of the correlation; every entry must be exact in BF16 (+1, -1 or
        0; a sign is), or the result is that of ``x`` truncated to BF16.
    gz : array_like (N, F, OH, OW)
        The gradient of its output, ``OH = H + 2 ph - kh + 1`` (likewise ``OW``).
    kernel_size : pair of int
        (kh, kw).
    pad : int or pair of int
        Zero padding on each side (AMX computes a padding below the kernel size,
        the numpy reference a larger one).
    out : ndarray, optional
        A float32 array of the result's shape to write into (else a new one).

    Returns
    -------
    ndarray (F, C, kh, kw) of float32
    """
    x, gz = _float4(x, 'x'), _float4(gz, 'gz')
    (kh, kw), (ph, pw) = pair(kernel_size, 'kernel_size'), pair(pad, 'pad')
    n, c, h, w = x.shape
    expected = (n, gz.shape[1], h + 2 * ph - kh + 1, w + 2 * pw - kw + 1)
    if min(ph, pw, kh, kw) < 0 or gz.shape != expected:
        raise ValueError('gz of shape %s does not fit x %s, kernel %dx%d, pad %s'
                         % (gz.shape, x.shape, kh, kw, (ph, pw)))
    out = _output(out, (gz.shape[1], c, kh, kw))
    dims = (n, c, h, w, gz.shape[1], kh, kw, ph, pw)
    if ph >= kh or pw >= kw or not _run(_GRAD_WEIGHTS, x, gz, out, dims):
        out[...] = conv_grad_weights_reference(x, gz, (kh, kw), (ph, pw))
    return out


def sign_conv_grad_inputs(w, gz, pad=0, out=None):
    """The input gradient of a stride-1 correlation whose weights are +-1 (Theano's
    ``CorrMM_gradInputs``).

    Parameters
    ----------
    w : array_like (F, C, kh, kw)
        The weights of the correlation (as it applies them: a convolution's flipped
        kernel); every entry must be exact in BF16 (+1, -1 or 0).
    gz : array_like (N, F, OH, OW)
        The gradient of its output.
    pad : int or pair of int
        Zero padding on each side (AMX computes a padding below the kernel size,
        the numpy reference a larger one); the input is
        ``H = OH + kh - 1 - 2 ph`` by ``W = OW + kw - 1 - 2 pw``.
    out : ndarray, optional
        A float32 array of the result's shape to write into (else a new one).

    Returns
    -------
    ndarray (N, C, H, W) of float32
    """
    w, gz = _float4(w, 'w'), _float4(gz, 'gz')
    ph, pw = pair(pad, 'pad')
    f, c, kh, kw = w.shape
    n, _, oh, ow = gz.shape
    h, wd = oh + kh - 1 - 2 * ph, ow + kw - 1 - 2 * pw
    if min(ph, pw) < 0 or gz.shape[1] != f or h < 1 or wd < 1:
        raise ValueError('gz of shape %s does not fit weights %s with pad %s'
                         % (gz.shape, w.shape, (ph, pw)))
    out = _output(out, (n, c, h, wd))
    if ph >= kh or pw >= kw or not _run(_GRAD_INPUTS, w, gz, out, (n, c, h, wd, f, kh, kw, ph, pw)):
        out[...] = conv_grad_inputs_reference(w, gz, (ph, pw))
    return out
