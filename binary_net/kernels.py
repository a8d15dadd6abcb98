"""Bit-packed XNOR-popcount kernels: numpy arrays in, numpy arrays out.

This module knows nothing of Theano or Lasagne. It computes, exactly and fast,
products of sign matrices (entries +1/-1) by packing the signs 64 to a
``uint64`` word and replacing multiply-adds by XOR and population count::

    sum_k sign(a_k) * sign(b_k) = n - 2 * popcount(a XOR b)

Sign convention, everywhere: ``sign(v) = +1`` where ``v >= 0`` (zero included)
and ``-1`` where ``v < 0``; NaN counts as -1 (``NaN >= 0`` is false).

Bit layout, everywhere: a vector of ``n`` signs is stored in ``ceil(n / 64)``
words; element ``k`` lives in word ``k // 64`` at bit ``k % 64`` (least
significant bit first); the bit is 1 for +1 and 0 for -1; unused trailing bits
are 0.

The C code (``csrc/xnor_kernels.c``) is compiled at first use, never at import,
with ``gcc -O3 -march=native -fopenmp -shared -fPIC`` (falling back to flags
without ``-march=native`` and/or ``-fopenmp`` where the compiler refuses them)
into ``$BINARY_NET_CACHE`` or else ``~/.cache/binary_net`` (created with mode
0700; a directory owned by another user or writable by others is refused), under a
name hashed from the source, the flags, the compiler and the CPU, written
atomically, and loaded with :mod:`ctypes` only if it is a non-empty file of this
user that nobody else can write (otherwise, or if it does not load, it is built
again). It has an AVX-512 VPOPCNTDQ path, an AVX2 path (Mula's nibble
lookup for short rows, Harley-Seal carry-save adders for long ones) and a
portable path (``__builtin_popcountll``); all are bit-exact. Products are
register-blocked (a few rows of A against a panel of 8 or 32 columns of B) and
split over OpenMP threads. The compiler is ``$CC`` if set, else ``gcc``.
``$BINARY_NET_ISA`` may be set to ``avx2`` or ``portable`` to build a narrower
path than the CPU allows (for testing and benchmarking); the default is
``native``.

The products return exact int32 results. Beside them, whole-layer functions
apply XNOR-Net's scaling (K, alpha), the bias and a following batch norm or max
pooling in float32 exactly as numpy does (same operations, same order; compiled
with ``-ffp-contract=off``): :meth:`PackedDense.dense_layer`,
:func:`pack_signs_mean_abs`, :func:`pack_channels_mean_abs`, :func:`conv_epilogue`.
:func:`use_isa` selects a code path from Python (the tests run all of them on one
machine); :func:`xnor_matmul_reference` is the plain reference kernel the fast
ones are tested against.
"""
import ctypes
import hashlib
import os
import platform
import shlex
import stat
import subprocess
import tempfile
import threading

import numpy as np

__all__ = ['KernelBuildError', 'pack_signs', 'pack_signs_mean_abs', 'pack_channels_mean_abs',
           'batch_norm_pack_channels',
           'xnor_matmul', 'xnor_matmul_reference', 'conv_epilogue', 'PackedDense',
           'PackedConv2D', 'set_num_threads', 'get_num_threads', 'kernel_info', 'use_isa',
           'ISAS']


class KernelBuildError(RuntimeError):
    """The C kernels could not be compiled or loaded (e.g. no C compiler)."""


_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE = os.path.join(_HERE, 'csrc', 'xnor_kernels.c')

#: Compiler command as a list (e.g. ``['gcc']``); None means ``$CC`` or ``gcc``.
_COMPILER = None
# -ffp-contract=off: the fused layers (xk_xnor_dense) must round every float
# multiply and add separately, as numpy does, to stay bit-identical to float mode.
_BASE_FLAGS = ['-O3', '-ffp-contract=off', '-shared', '-fPIC']
_ISA_FLAGS = {
    'native': ['-march=native'],
    'avx2': ['-march=native', '-mno-avx512f'],
    'portable': ['-march=native', '-mno-avx2'],
}

_lock = threading.Lock()
_libs = {}              # isa name -> _Lib


def prefer_sleeping_openmp_threads():
    """Make OpenMP threads sleep, not spin, between parallel loops (unless the user chose).

    Spinning threads keep the cores that numpy's OpenBLAS threads need for the
    float layers between our loops; on 2 cores that made whole-network inference
    several times slower, and training up to 30% slower. libgomp reads the
    setting once, when it is loaded, so this must run before the first kernel
    (or Theano op) is loaded; it is called on import of this module and of
    :mod:`binary_net.theano_ops`.
    """
    if 'OMP_WAIT_POLICY' not in os.environ and 'GOMP_SPINCOUNT' not in os.environ:
        os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'


prefer_sleeping_openmp_threads()

_num_threads = None     # None: OpenMP's default


# --------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------

def _compiler_command():
    if _COMPILER is not None:
        return list(_COMPILER)
    return shlex.split(os.environ.get('CC') or 'gcc')


def _uid():
    return os.getuid() if hasattr(os, 'getuid') else None


def _private_dir(path):
    """``path`` as a cache directory only this user can write; None if it cannot be made.

    A new directory is created with mode 0700. An existing one must be a
    directory owned by this user and not writable by group or others, since
    whoever can write it can plant a library that we would load.

    Raises
    ------
    KernelBuildError
        For an existing directory that fails those checks (one line).
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return None
    uid = _uid()
    if not stat.S_ISDIR(st.st_mode):
        problem = 'it is not a directory'
    elif uid is not None and st.st_uid != uid:
        problem = 'it belongs to uid %d, not to you (uid %d)' % (st.st_uid, uid)
    elif st.st_mode & 0o022:
        problem = 'it is writable by others (mode %03o)' % stat.S_IMODE(st.st_mode)
    else:
        return path if os.access(path, os.W_OK | os.X_OK) else None
    raise KernelBuildError('refusing the kernel cache directory %s: %s; remove it or set '
                           'BINARY_NET_CACHE to a directory of your own' % (path, problem))


def _cache_dir():
    """The kernel cache: ``$BINARY_NET_CACHE``, else ``~/.cache/binary_net``, else a
    private ``$TMPDIR/binary_net-<uid>``; each created 0700 and checked by
    :func:`_private_dir`."""
    explicit = os.environ.get('BINARY_NET_CACHE')
    uid = _uid()
    candidates = [explicit] if explicit else [
        os.path.join(os.path.expanduser('~'), '.cache', 'binary_net'),
        os.path.join(tempfile.gettempdir(), 'binary_net-%s' % ('user' if uid is None else uid))]
    for path in candidates:
        usable = _private_dir(path)
        if usable:
            return usable
    raise KernelBuildError('cannot create a writable kernel cache directory (tried %s); '
                           'set BINARY_NET_CACHE' % ', '.join(candidates))


def _trusted_library(path):
    """Whether a cached library may be loaded: a non-empty regular file (not a link)
    owned by this user and writable by nobody else. Anything else is removed, to be
    built again."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    uid = _uid()
    if stat.S_ISREG(st.st_mode) and st.st_size > 0 and not st.st_mode & 0o022 \
            and (uid is None or st.st_uid == uid):
        return True
    _discard(path)
    return False


def _discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _cpu_fingerprint():
    """Identify the CPU, since -march=native code must not be reused on another."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith(('model name', 'flags', 'Features', 'CPU part')):
                    parts.append(line.strip())
                if len(parts) > 5:
                    break
    except OSError:
        pass
    return '\n'.join(parts)


def _compiler_identity(cc):
    try:
        proc = subprocess.run(cc + ['--version'], capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        raise KernelBuildError(
            'no C compiler: %r was not found; install gcc (e.g. apt-get install gcc) '
            'or set CC to a C compiler' % cc[0]) from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelBuildError('C compiler %r could not be run: %s' % (cc[0], exc)) from None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else cc[0]


def _build(isa):
    """Return the path of a compiled library for ``isa``, compiling if needed."""
    cc = _compiler_command()
    if not cc:
        raise KernelBuildError('no C compiler: the compiler command is empty')
    ident = _compiler_identity(cc)
    with open(_SOURCE, 'rb') as f:
        source = f.read()
    cache = _cache_dir()
    isa_flags = _ISA_FLAGS[isa]
    candidates = [isa_flags + ['-fopenmp'], ['-fopenmp'], isa_flags, []]
    errors = []
    for extra in candidates:
        flags = _BASE_FLAGS + extra
        h = hashlib.sha256()
        for part in (source, ' '.join(cc + flags).encode(), ident.encode(),
                     _cpu_fingerprint().encode()):
            h.update(part)
            h.update(b'\0')
        path = os.path.join(cache, 'xnor_kernels-%s.so' % h.hexdigest()[:20])
        if _trusted_library(path):
            return path, flags
        fd, tmp = tempfile.mkstemp(prefix='.xnor_kernels-', suffix='.so', dir=cache)
        os.close(fd)
        try:
            proc = subprocess.run(cc + flags + ['-o', tmp, _SOURCE],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode == 0:
                os.chmod(tmp, 0o755)    # whatever the umask: never writable by others
                os.replace(tmp, path)   # atomic: concurrent builders agree
                return path, flags
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            errors.append(msg[0] if msg else 'exit status %d' % proc.returncode)
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise KernelBuildError('could not compile %s with %r: %s'
                           % (os.path.basename(_SOURCE), cc[0], errors[-1] if errors else '?'))


_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int


class _Lib:
    def __init__(self, path, flags):
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise KernelBuildError('could not load %s: %s' % (path, exc)) from None
        lib.xk_isa.restype = ctypes.c_char_p
        for name in ('xk_panel_width', 'xk_tile_rows', 'xk_openmp', 'xk_max_threads'):
            getattr(lib, name).restype = _INT
            getattr(lib, name).argtypes = []
        for name in ('xk_pack_f32', 'xk_pack_f64'):
            getattr(lib, name).argtypes = [_P, _I64, _I64, _I64, _P, _INT]
            getattr(lib, name).restype = None
        lib.xk_pack_panels.argtypes = [_P, _I64, _I64, _I64, _P, _INT]
        lib.xk_pack_panels.restype = None
        lib.xk_gemm.argtypes = [_P, _I64, _I64, _I64, _P, _I64, _I64, _P, _I64, _INT]
        lib.xk_gemm.restype = None
        for name in ('xk_dense_f32', 'xk_dense_f64'):
            getattr(lib, name).argtypes = [_P, _I64, _I64, _P, _I64, _P, _I64, _INT]
            getattr(lib, name).restype = _INT
        lib.xk_conv2d.argtypes = ([_P] + [_I64] * 4 + [_P] + [_I64] * 8
                                  + [_P, _P, _P, _INT])
        lib.xk_conv2d.restype = _INT
        self.lib = lib
        self.path = path
        self.flags = flags
        self.isa = lib.xk_isa().decode()
        self.nr = lib.xk_panel_width()
        self.mr = lib.xk_tile_rows()
        self.openmp = bool(lib.xk_openmp())

    def panels(self, b, nthreads):
        """(N, W) uint64 rows -> panel layout used by xk_gemm."""
        n_rows, words = b.shape
        npan = -(-n_rows // self.nr)
        out = np.empty(npan * words * self.nr, dtype=np.uint64)
        if out.size:
            self.lib.xk_pack_panels(b.ctypes.data, n_rows, words, b.strides[0] // 8,
                                    out.ctypes.data, nthreads)
        return out

    def function(self, name):
        """The C function ``name``, its ctypes signature (from _SIGNATURES) set once."""
        bound = self.__dict__.setdefault('_bound', {})
        fn = bound.get(name)
        if fn is None:
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = _SIGNATURES[name]
            bound[name] = fn
        return fn

    def gemm(self, a, panels, n_cols, n, nthreads):
        m, words = a.shape
        out = np.empty((m, n_cols), dtype=np.int32)
        if m and n_cols:
            if words == 0:
                out.fill(n)
            else:
                self.lib.xk_gemm(a.ctypes.data, m, words, a.strides[0] // 8, panels.ctypes.data,
                                 n_cols, n, out.ctypes.data, n_cols, nthreads)
        return out


#: ctypes signatures of the functions bound lazily by :meth:`_Lib.function`.
_SIGNATURES = {
    'xk_gemm_ref': ([_P, _I64, _I64, _P, _I64, _I64, _P], None),
    'xk_pack_mean_abs_f32': ([_P, _I64, _I64, _P, _P, _INT], None),
    'xk_xnor_dense': ([_P, _I64, _I64, _P, _I64, _I64, _INT] + [_P] * 9 + [_INT], _INT),
    'xk_conv2d_ref': ([_P] + [_I64] * 4 + [_P] + [_I64] * 8 + [_P], None),
    'xk_pack_channels_mean_abs_f32': ([_P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _INT], None),
    'xk_conv_epilogue': ([_P, _I64, _I64, _I64, _I64, _INT, _P, _P, _P, _P, _I64, _I64,
                          _P, _P, _P, _P, _INT], None),
}

#: The code paths BINARY_NET_ISA (or :func:`use_isa`) may select.
ISAS = tuple(_ISA_FLAGS)


_isa_override = None    # set by use_isa(); None: $BINARY_NET_ISA


def use_isa(isa):
    """Select the code path of later kernel calls, overriding ``$BINARY_NET_ISA``.

    Parameters
    ----------
    isa : str or None
        One of :data:`ISAS` ('native': the widest the CPU has, 'avx2', 'portable');
        None goes back to ``$BINARY_NET_ISA`` (default 'native'). Each path is
        compiled at its first use; on x86 every path runs on a CPU with AVX-512,
        which is how the tests cover all three on one machine.

    Returns
    -------
    str or None
        The previous setting, for restoring it.
    """
    global _isa_override
    if isa is not None and isa not in _ISA_FLAGS:
        raise ValueError('isa must be one of %s, not %r' % (', '.join(ISAS), isa))
    previous, _isa_override = _isa_override, isa
    return previous


def _selected_isa():
    isa = _isa_override or os.environ.get('BINARY_NET_ISA', 'native') or 'native'
    if isa not in _ISA_FLAGS:
        raise ValueError('BINARY_NET_ISA must be one of %s, not %r'
                         % (', '.join(sorted(_ISA_FLAGS)), isa))
    return isa


def _get_lib(isa=None):
    """The loaded kernel library (compiled on first call)."""
    isa = isa or _selected_isa()
    lib = _libs.get(isa)
    if lib is None:
        with _lock:
            lib = _libs.get(isa)
            if lib is None:
                path, flags = _build(isa)
                try:
                    lib = _Lib(path, flags)
                except (KernelBuildError, AttributeError):
                    # A damaged cached library (truncated, foreign): build it again, once.
                    _discard(path)
                    lib = _Lib(*_build(isa))
                _libs[isa] = lib
    return lib


def kernel_info():
    """Describe the compiled kernels (compiling them if needed).

    Returns
    -------
    dict
        ``isa`` (code path: 'avx512-vpopcntdq', 'avx2' or 'portable'), ``path``
        of the shared library, ``flags`` used, ``openmp`` (bool),
        ``panel_width`` and ``tile_rows`` of the micro-kernel, and
        ``num_threads`` (what the kernels currently use).
    """
    lib = _get_lib()
    return {'isa': lib.isa, 'path': lib.path, 'flags': ' '.join(lib.flags),
            'compiler': ' '.join(_compiler_command()), 'openmp': lib.openmp,
            'panel_width': lib.nr, 'tile_rows': lib.mr, 'num_threads': get_num_threads()}


def set_num_threads(n):
    """Set the number of OpenMP threads the kernels use.

    Parameters
    ----------
    n : int or None
        Threads per kernel call, >= 1; None restores OpenMP's default
        (``OMP_NUM_THREADS`` or the number of cores). Without OpenMP (the
        compiler refused ``-fopenmp``) the kernels always run on one thread.
    """
    global _num_threads
    if n is not None:
        n = int(n)
        if n < 1:
            raise ValueError('number of threads must be >= 1, got %d' % n)
    _num_threads = n


def get_num_threads():
    """Return the number of threads the kernels use per call.

    Returns
    -------
    int
        The value given to :func:`set_num_threads`, else OpenMP's default
        (this may compile the kernels); 1 if they were built without OpenMP.
    """
    lib = _get_lib()
    if not lib.openmp:
        return 1
    return _num_threads if _num_threads is not None else lib.lib.xk_max_threads()


def _nthreads():
    return _num_threads or 0


# --------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------

def _words(n):
    return (n + 63) // 64


def _pack_numpy(x, axis):
    """Vectorized numpy packing, for dtypes the C code does not read."""
    bits = np.moveaxis(np.asarray(x) >= 0, axis, -1)
    n = bits.shape[-1]
    words = _words(n)
    padded = np.zeros(bits.shape[:-1] + (words * 64,), dtype=bool)
    padded[..., :n] = bits
    packed = np.packbits(padded, axis=-1, bitorder='little')
    return np.ascontiguousarray(packed).view('<u8').astype(np.uint64, copy=False)


def pack_signs(x, axis=-1):
    """Pack the signs of ``x`` along ``axis`` into 64-bit words.

    Parameters
    ----------
    x : array_like
        Real values (float32/float64 are packed by the C kernel; other real or
        integer dtypes by numpy). A bit is 1 where ``x >= 0`` (so zeros give +1)
        and 0 where ``x < 0`` or NaN.
    axis : int, optional
        The axis to pack; it is moved to the end and replaced by the words.

    Returns
    -------
    numpy.ndarray of uint64
        Shape ``x.shape`` without ``axis``, plus ``(ceil(n / 64),)`` where
        ``n = x.shape[axis]``; C-contiguous. Element ``k`` of the packed axis
        is bit ``k % 64`` of word ``k // 64``; unused trailing bits are 0.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError('pack_signs needs an array with at least one dimension')
    if np.iscomplexobj(x):
        raise TypeError('pack_signs needs real values, got %s' % x.dtype)
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        raise getattr(np, 'exceptions', np).AxisError(axis, x.ndim)
    n = x.shape[axis]
    words = _words(n)
    out_shape = x.shape[:axis] + x.shape[axis + 1:] + (words,)
    if x.dtype == np.float16:
        x = x.astype(np.float32)   # exact, so signs are unchanged
    if x.dtype not in (np.float32, np.float64):
        return _pack_numpy(x, axis).reshape(out_shape)
    out = np.empty(out_shape, dtype=np.uint64)
    if out.size == 0:
        return out
    x = np.ascontiguousarray(x)
    pre = int(np.prod(x.shape[:axis], dtype=np.int64))
    post = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    lib = _get_lib()
    fn = lib.lib.xk_pack_f32 if x.dtype == np.float32 else lib.lib.xk_pack_f64
    fn(x.ctypes.data, pre, n, post, out.ctypes.data, _nthreads())
    return out


def _as_packed(p, name):
    p = np.asarray(p)
    if p.dtype != np.uint64:
        raise TypeError('%s must be a uint64 array of packed signs, got %s' % (name, p.dtype))
    if p.ndim != 2:
        raise ValueError('%s must be 2-D (rows, words), got shape %s' % (name, p.shape))
    return np.ascontiguousarray(p)


def _clear_unused_bits(p, n):
    """Return ``p`` with every bit at position >= n zeroed (copying only if needed)."""
    full, rem = divmod(n, 64)
    words = p.shape[-1]
    dirty = False
    if rem and full < words:
        mask = np.uint64((1 << rem) - 1)
        dirty = bool(np.any(p[..., full] & ~mask))
    start = full + (1 if rem else 0)
    if not dirty and start < words:
        dirty = bool(np.any(p[..., start:]))
    if not dirty:
        return p
    p = p.copy()
    if rem and full < words:
        p[..., full] &= np.uint64((1 << rem) - 1)
    p[..., start:] = 0
    return p


def _check_n(n, words):
    n = int(n)
    if n < 0 or n > 2 ** 31 - 1:
        raise ValueError('n must be in [0, 2**31), got %d' % n)
    if _words(n) > words:
        raise ValueError('n=%d needs %d words but the packed arrays have %d'
                         % (n, _words(n), words))
    return n


def _product_operands(a_packed, b_packed, n):
    """Checked operands of a product, unused bits cleared: (a, b, n)."""
    a = _as_packed(a_packed, 'a_packed')
    b = _as_packed(b_packed, 'b_packed')
    if a.shape[1] != b.shape[1]:
        raise ValueError('a_packed and b_packed have %d and %d words per row'
                         % (a.shape[1], b.shape[1]))
    n = _check_n(n, a.shape[1])
    return _clear_unused_bits(a, n), _clear_unused_bits(b, n), n


def xnor_matmul(a_packed, b_packed, n):
    """Exact sign-matrix product from packed signs.

    Parameters
    ----------
    a_packed : numpy.ndarray of uint64, shape (M, words)
        Rows packed with :func:`pack_signs` from vectors of length ``n``.
    b_packed : numpy.ndarray of uint64, shape (N, words)
        Rows packed likewise (e.g. the columns of a weight matrix).
    n : int
        Number of valid bits per row; ``ceil(n / 64) <= words``. Bits at
        positions ``>= n`` are ignored.

    Returns
    -------
    numpy.ndarray of int32, shape (M, N)
        ``out[i, j] = sum_k sign(a_ik) * sign(b_jk)
        = n - 2 * popcount(a_i XOR b_j)`` over the ``n`` valid bits.
    """
    a, b, n = _product_operands(a_packed, b_packed, n)
    lib = _get_lib()
    nt = _nthreads()
    return lib.gemm(a, lib.panels(b, nt), b.shape[0], n, nt)


def xnor_matmul_reference(a_packed, b_packed, n):
    """:func:`xnor_matmul` by the C reference kernel: one popcount per pair of words,
    no blocking, no vectors (kept beside the fast kernels to test them against)."""
    a, b, n = _product_operands(a_packed, b_packed, n)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    if out.size:
        _get_lib().function('xk_gemm_ref')(a.ctypes.data, a.shape[0], a.shape[1], b.ctypes.data,
                                           b.shape[0], n, out.ctypes.data)
    return out


def pack_signs_mean_abs(x, mean_abs=True):
    """Packed signs of the rows of ``x`` and their mean absolute values, in one pass.

    Parameters
    ----------
    x : array_like, shape (rows, n)
        float32 (other dtypes are converted).
    mean_abs : bool
        Also compute ``np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)``,
        bit for bit (numpy's summation order is reproduced), the K of an XNOR
        dense layer.

    Returns
    -------
    packed : numpy.ndarray of uint64, shape (rows, ceil(n / 64))
        As ``pack_signs(x)``.
    K : numpy.ndarray of float32, shape (rows, 1), or None
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError('x must be 2-D (rows, n), got shape %s' % (x.shape,))
    rows, n = x.shape
    packed = np.empty((rows, _words(n)), dtype=np.uint64)
    K = np.empty((rows, 1), dtype=np.float32) if mean_abs else None
    if rows and n:
        _get_lib().function('xk_pack_mean_abs_f32')(
            x.ctypes.data, rows, n, packed.ctypes.data, None if K is None else K.ctypes.data,
            _nthreads())
    elif K is not None:
        K[...] = np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)
    return packed, K


def pack_channels_mean_abs(x, mean_abs=True):
    """Packed channel signs of images and their channel mean of ``|x|``, in one pass.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        float32 (other dtypes are converted).
    mean_abs : bool
        Also compute ``np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)``,
        bit for bit (the first step of an XNOR convolution's K).

    Returns
    -------
    packed : numpy.ndarray of uint64, shape (N, H, W, ceil(C / 64))
        As ``pack_signs(x, axis=1)``.
    mean : numpy.ndarray of float32, shape (N, 1, H, W), or None
    """
    return _pack_channels(x, None, None, mean_abs)[1:]


def batch_norm_pack_channels(x, scale, offset, mean_abs=True):
    """A batch norm ``y = x * scale[c] + offset[c]`` (float32, numpy's two roundings)
    and :func:`pack_channels_mean_abs` of ``y``, in one pass.

    Returns
    -------
    y : float32 (N, C, H, W)
    packed : uint64 (N, H, W, ceil(C / 64))
    mean : float32 (N, 1, H, W), or None
    """
    return _pack_channels(x, scale, offset, mean_abs)


def _pack_channels(x, scale, offset, mean_abs):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError('x must be 4-D (N, C, H, W), got shape %s' % (x.shape,))
    N, C, H, Wd = x.shape
    packed = np.empty((N, H, Wd, _words(C)), dtype=np.uint64)
    mean = np.empty((N, 1, H, Wd), dtype=np.float32) if mean_abs else None
    y = None
    if scale is not None:
        scale, offset = _f32_vector(scale, C, 'scale'), _f32_vector(offset, C, 'offset')
        y = np.empty(x.shape, np.float32)
    if x.size:
        addr = lambda a: None if a is None else a.ctypes.data
        _get_lib().function('xk_pack_channels_mean_abs_f32')(
            x.ctypes.data, N, C, H * Wd, addr(scale), addr(offset), addr(y), packed.ctypes.data,
            addr(mean), _nthreads())
    else:
        if y is not None:
            y[...] = x * scale.reshape(1, -1, 1, 1) + offset.reshape(1, -1, 1, 1)
        if mean is not None:
            mean[...] = np.mean(np.abs(x if y is None else y), axis=1, keepdims=True,
                                dtype=np.float32)
    return y, packed, mean


def conv_epilogue(product, K=None, alpha=None, b=None, pool=None, scale=None, offset=None,
                  out=None):
    """The float arithmetic after an XNOR convolution's product, in one C pass.

    Computes, in float32 and in numpy's order (bit-identical to the float mode of
    :class:`binary_net.inference.XnorConv`, ``MaxPool`` and ``Affine``)::

        z = (float32(product) * K) * alpha[f] + b[f]
        pooled = max over pool windows of z          (if pool is given)
        y = (pooled or z) * scale[f] + offset[f]     (if scale is given)

    Parameters
    ----------
    product : int32 array (N, F, OH, OW)
    K : float32 array (N, 1, OH, OW), or None (not applied)
    alpha, b : float32 arrays (F,), or None (not applied)
    pool : pair (ph, pw) or None
        Non-overlapping max pooling; a partial border is dropped.
    scale, offset : float32 arrays (F,), or None
    out : tuple (z, pooled, y) of C-contiguous float32 arrays, or None
        Where to write the results (None entries, or None: new arrays).

    Returns
    -------
    z, pooled, y : float32 arrays, or None where not asked for
    """
    p = np.ascontiguousarray(product, dtype=np.int32)
    if p.ndim != 4:
        raise ValueError('product must be 4-D (N, F, OH, OW), got shape %s' % (p.shape,))
    N, F, OH, OW = p.shape
    flags = 0
    if K is not None:
        K = np.ascontiguousarray(K, dtype=np.float32)
        if K.shape != (N, 1, OH, OW):
            raise ValueError('K has shape %s, expected %s' % (K.shape, (N, 1, OH, OW)))
        flags |= _SCALE_INPUT
    if alpha is not None:
        alpha = _f32_vector(alpha, F, 'alpha')
        flags |= _SCALE_WEIGHTS
    b = np.zeros(F, np.float32) if b is None else _f32_vector(b, F, 'b')
    ph, pw = (0, 0) if pool is None else _pair(pool, 'pool')
    if pool is not None and min(ph, pw) < 1:
        raise ValueError('pool must be >= 1, got %r' % ((ph, pw),))
    out = out or (None, None, None)

    def target(given, shape, name):
        if given is None:
            return np.empty(shape, np.float32)
        if (given.shape != shape or given.dtype != np.float32
                or not given.flags.c_contiguous):
            raise ValueError('out %s must be C-contiguous float32 %s' % (name, shape))
        return given

    z = target(out[0], p.shape, 'z')
    pooled = None if pool is None else target(out[1], (N, F, OH // ph, OW // pw), 'pooled')
    y = None
    if scale is not None:
        scale, offset = _f32_vector(scale, F, 'scale'), _f32_vector(offset, F, 'offset')
        y = target(out[2], z.shape if pooled is None else pooled.shape, 'y')
    addr = lambda a: None if a is None else a.ctypes.data
    if z.size:
        _get_lib().function('xk_conv_epilogue')(
            p.ctypes.data, N, F, OH, OW, flags, addr(K), addr(alpha), b.ctypes.data,
            z.ctypes.data, ph, pw, addr(pooled), addr(scale), addr(offset), addr(y),
            _nthreads())
    return z, pooled, y


def _f32_vector(v, size, name):
    if type(v) is not np.ndarray or v.dtype != np.float32 or not v.flags.c_contiguous:
        v = np.ascontiguousarray(v, dtype=np.float32)
    if v.ndim != 1:
        v = v.reshape(-1)
    if v.size != size:
        raise ValueError('%s has %d values, expected %d' % (name, v.size, size))
    return v


# C flags of xk_xnor_dense
_SCALE_INPUT, _SCALE_WEIGHTS, _BIAS_BEFORE = 1, 2, 4


# --------------------------------------------------------------------------
# Layers with weights packed once
# --------------------------------------------------------------------------

def _popcount_words(p):
    """Number of set bits in each uint64 of ``p`` (numpy, any shape)."""
    p = np.ascontiguousarray(p, dtype=np.uint64)
    bits = np.unpackbits(p.view(np.uint8).reshape(p.shape + (8,)), axis=-1)
    return bits.sum(axis=-1, dtype=np.int64)


class PackedDense:
    """Binary dense layer ``sign(x) @ sign(W)`` with ``sign(W)`` packed once.

    Parameters
    ----------
    W : array_like, shape (n_in, n_out)
        Real weights, laid out as in Lasagne's ``DenseLayer``. Only their signs
        are kept (``W >= 0`` is +1).

    Attributes
    ----------
    packed : numpy.ndarray of uint64, shape (n_out, ceil(n_in / 64))
        Column ``j`` of ``sign(W)`` packed along ``n_in``; with ``n_in`` this is
        all that :meth:`from_packed` needs.
    n_in, n_out : int
    """

    def __init__(self, W):
        W = np.asarray(W)
        if W.ndim != 2:
            raise ValueError('W must be 2-D (n_in, n_out), got shape %s' % (W.shape,))
        self._set(pack_signs(W, axis=0), W.shape[0])

    def _set(self, packed, n_in):
        self.packed = packed
        self.n_in = int(n_in)
        self._panels = None    # (isa, panel array), built at first product

    @classmethod
    def from_packed(cls, packed, n_in):
        """Rebuild from :attr:`packed` and :attr:`n_in` without the float weights.

        Parameters
        ----------
        packed : numpy.ndarray of uint64, shape (n_out, ceil(n_in / 64))
        n_in : int

        Returns
        -------
        PackedDense
        """
        packed = _as_packed(packed, 'packed')
        n_in = int(n_in)
        if n_in < 0 or packed.shape[1] != _words(n_in):
            raise ValueError('packed has %d words per row but n_in=%d needs %d'
                             % (packed.shape[1], n_in, _words(max(n_in, 0))))
        obj = cls.__new__(cls)
        obj._set(_clear_unused_bits(packed, n_in), n_in)
        return obj

    @property
    def n_out(self):
        return self.packed.shape[0]

    def __repr__(self):
        return 'PackedDense(n_in=%d, n_out=%d)' % (self.n_in, self.n_out)

    def _get_panels(self, lib):
        if self._panels is None or self._panels[0] != lib.isa:
            self._panels = (lib.isa, lib.panels(self.packed, _nthreads()))
        return self._panels[1]

    def matmul_packed(self, x_packed):
        """Product with activations that are already packed.

        Parameters
        ----------
        x_packed : numpy.ndarray of uint64, shape (batch, ceil(n_in / 64))
            ``pack_signs(x)`` for ``x`` of shape (batch, n_in).

        Returns
        -------
        numpy.ndarray of int32, shape (batch, n_out)
        """
        xp = _as_packed(x_packed, 'x_packed')
        if xp.shape[1] != self.packed.shape[1]:
            raise ValueError('x_packed has %d words per row, expected %d'
                             % (xp.shape[1], self.packed.shape[1]))
        xp = _clear_unused_bits(xp, self.n_in)
        lib = _get_lib()
        return lib.gemm(xp, self._get_panels(lib), self.n_out, self.n_in, _nthreads())

    def matmul_signs(self, x):
        """Exact ``sign(x) @ sign(W)``.

        For float32/float64 input the signs of ``x`` are packed inside the C
        kernel a block of rows at a time, and the next block's floats are
        prefetched into cache while the current block is multiplied (packing
        is bound by memory bandwidth, the product by the vector units).

        Parameters
        ----------
        x : array_like, shape (batch, n_in)
            Real activations (more dimensions are flattened to (batch, -1),
            as Lasagne's DenseLayer does).

        Returns
        -------
        numpy.ndarray of int32, shape (batch, n_out)
        """
        x = np.asarray(x)
        if x.ndim != 2:
            if x.ndim < 2:
                raise ValueError('x must be (batch, n_in), got shape %s' % (x.shape,))
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_in:
            raise ValueError('x has %d features, expected n_in=%d' % (x.shape[1], self.n_in))
        if x.dtype == np.float16:
            x = x.astype(np.float32)
        lib = _get_lib()
        if (x.dtype not in (np.float32, np.float64) or self.n_in == 0
                or x.shape[0] < 4 * lib.mr * max(1, _nthreads() or lib.lib.xk_max_threads())):
            # (too few rows to share out by rows: the packed product splits columns too)
            return self.matmul_packed(pack_signs(x, axis=1))
        # Packing and product in one pass, the packing overlapped with the product.
        x = np.ascontiguousarray(x)
        panels = self._get_panels(lib)
        out = np.empty((x.shape[0], self.n_out), dtype=np.int32)
        fn = lib.lib.xk_dense_f32 if x.dtype == np.float32 else lib.lib.xk_dense_f64
        if fn(x.ctypes.data, x.shape[0], self.n_in, panels.ctypes.data, self.n_out,
              out.ctypes.data, self.n_out, _nthreads()) != 0:
            raise MemoryError('xnor kernels: out of memory')
        return out


    def dense_layer(self, x_packed, K=None, alpha=None, b=None, bias_before_scaling=False,
                    scale=None, offset=None, next_packed=False, next_mean_abs=False):
        """A whole XNOR dense layer, and the batch norm after it, in one C pass.

        Computes, in float32 and operation by operation as numpy does (so the
        results are bit-identical to the float-mode arithmetic of
        :class:`binary_net.inference.XnorDense` and ``Affine``)::

            p = sign(x) @ sign(W)                       (int32, exact)
            z = (float32(p) * K) * alpha + b            (or ((p + b) * K) * alpha)
            y = z * scale + offset                      (if scale is given)

        and, for a following XNOR layer, the packed signs of ``y`` and its K.
        Rows and blocks of 64 output units are split over the threads (a batch
        of one image too).

        Parameters
        ----------
        x_packed : numpy.ndarray of uint64, shape (batch, ceil(n_in / 64))
            Unused bits must be 0 (as :func:`pack_signs` leaves them).
        K : float32 array (batch,) or (batch, 1), or None
            Per-row input scale; None: not applied.
        alpha, b : float32 arrays (n_out,), or None (not applied)
        bias_before_scaling : bool
        scale, offset : float32 arrays (n_out,), or None
            The folded batch norm applied to ``z``.
        next_packed, next_mean_abs : bool
            Also return ``pack_signs(y)`` and ``np.mean(np.abs(y), axis=1,
            keepdims=True)`` (need ``scale``).

        Returns
        -------
        z, y, y_packed, y_K : arrays, or None where not asked for
        """
        xp = x_packed
        if (type(xp) is not np.ndarray or xp.dtype != np.uint64 or xp.ndim != 2
                or not xp.flags.c_contiguous):
            xp = _as_packed(xp, 'x_packed')
        words = self.packed.shape[1]
        if xp.shape[1] != words:
            raise ValueError('x_packed has %d words per row, expected %d' % (xp.shape[1], words))
        rows, n_out = xp.shape[0], self.n_out
        flags = _BIAS_BEFORE if bias_before_scaling else 0
        k_addr = None
        if K is not None:
            K = _f32_vector(K, rows, 'K')
            k_addr = K.ctypes.data
            flags |= _SCALE_INPUT
        if alpha is not None:
            flags |= _SCALE_WEIGHTS
        if scale is None and (next_packed or next_mean_abs):
            raise ValueError('next_packed / next_mean_abs need scale and offset')
        lib = _get_lib()
        # Addresses of the per-layer constants, found once (a ctypes address costs
        # about as much as the whole product of a small layer).
        key = (lib.isa, id(alpha), id(b), id(scale), id(offset))
        const = self._const.get(key) if hasattr(self, '_const') else None
        if const is None:
            vectors = [None if v is None else _f32_vector(v, n_out, name) for v, name in
                       ((alpha, 'alpha'), (np.zeros(n_out) if b is None else b, 'b'),
                        (scale, 'scale'), (offset, 'offset'))]
            if (scale is None) != (offset is None):
                raise ValueError('scale and offset go together')
            panels = self._get_panels(lib)
            const = ((alpha, b, scale, offset), vectors, panels.ctypes.data,
                     [None if v is None else v.ctypes.data for v in vectors])
            self.__dict__.setdefault('_const', {})
            if len(self._const) > 16:
                self._const.clear()
            self._const[key] = const
        p_addr, (a_addr, b_addr, s_addr, o_addr) = const[2], const[3]
        # One allocation for all outputs: z, y (float32), then y's packed words and K.
        nw = _words(n_out)
        n_y = rows * n_out if scale is not None else 0
        n_p = rows * nw if next_packed else 0
        n_k = rows if next_mean_abs else 0
        buf = np.empty(8 * (n_p + (rows * n_out + n_y + n_k + 1) // 2), dtype=np.uint8)
        base = buf.ctypes.data
        yp = buf[:8 * n_p].view(np.uint64).reshape(rows, nw) if next_packed else None
        off = 8 * n_p
        z = buf[off:off + 4 * rows * n_out].view(np.float32).reshape(rows, n_out)
        z_addr = base + off
        off += 4 * rows * n_out
        y = buf[off:off + 4 * n_y].view(np.float32).reshape(rows, n_out) if n_y else None
        y_addr = base + off if n_y else None
        off += 4 * n_y
        yk = buf[off:off + 4 * n_k].view(np.float32).reshape(rows, 1) if n_k else None
        status = lib.function('xk_xnor_dense')(
            xp.ctypes.data, rows, words, p_addr, n_out, self.n_in, flags, k_addr, a_addr,
            b_addr, z_addr, s_addr, o_addr, y_addr, base if n_p else None,
            base + off if n_k else None, _nthreads())
        if status != 0:
            raise MemoryError('xnor kernels: out of memory')
        return z, y, yp, yk


def _pair(v, name):
    if np.ndim(v) == 0:
        v = (v, v)
    v = tuple(int(t) for t in v)
    if len(v) != 2:
        raise ValueError('%s must be an int or a pair, got %r' % (name, v))
    return v


class PackedConv2D:
    """Binary 2-D cross-correlation of ``sign(x)`` with ``sign(W)``, W packed once.

    Padding rule: the input is binarized first and zero-padded afterwards, so a
    padded position contributes 0 to every sum, while a real 0 in ``x`` is
    binarized to +1. That is, with ``s = sign(x)`` (+1/-1) embedded in a zero
    array of shape (N, C, H + 2*ph, W + 2*pw)::

        out[n, f, i, j] = sum_{c, u, v} s_pad[n, c, i*sh + u, j*sw + v] * sign(W[f, c, u, v])

    This is a cross-correlation: the filter is not flipped (callers that want a
    true convolution flip ``W`` first).

    Parameters
    ----------
    W : array_like, shape (F, C, fh, fw)
        Real filters; only their signs are kept.
    stride : int or (sh, sw), optional
    pad : int or (ph, pw), optional
        Zeros added on each side of the height and width.

    Attributes
    ----------
    packed : numpy.ndarray of uint64, shape (F, fh, fw, ceil(C / 64))
        The channels of each filter tap, packed. With :attr:`filter_shape`,
        :attr:`stride` and :attr:`pad` this is all :meth:`from_packed` needs.
    filter_shape : tuple (F, C, fh, fw)
    stride, pad : tuple of two ints
    """

    def __init__(self, W, stride=(1, 1), pad=(0, 0)):
        W = np.asarray(W)
        if W.ndim != 4:
            raise ValueError('W must be 4-D (F, C, fh, fw), got shape %s' % (W.shape,))
        self._set(pack_signs(W, axis=1), W.shape, stride, pad)

    def _set(self, packed, filter_shape, stride, pad):
        self.filter_shape = tuple(int(v) for v in filter_shape)
        self.stride = _pair(stride, 'stride')
        self.pad = _pair(pad, 'pad')
        if min(self.stride) < 1:
            raise ValueError('stride must be >= 1, got %r' % (self.stride,))
        if min(self.pad) < 0:
            raise ValueError('pad must be >= 0, got %r' % (self.pad,))
        F, C, fh, fw = self.filter_shape
        self.packed = packed
        self._wk = np.ascontiguousarray(packed.reshape(F, fh * fw * packed.shape[-1]))
        # Sum over channels of sign(W) for each tap: 2 * (#ones) - C.
        self._tap_sums = 2 * _popcount_words(packed).sum(axis=-1) - C    # (F, fh, fw)
        self._borders = {}

    @classmethod
    def from_packed(cls, packed, filter_shape, stride=(1, 1), pad=(0, 0)):
        """Rebuild from :attr:`packed` and the geometry, without the float weights.

        Parameters
        ----------
        packed : numpy.ndarray of uint64, shape (F, fh, fw, ceil(C / 64))
        filter_shape : tuple (F, C, fh, fw)
        stride, pad : int or pair of ints

        Returns
        -------
        PackedConv2D
        """
        packed = np.asarray(packed)
        if packed.dtype != np.uint64:
            raise TypeError('packed must be uint64, got %s' % packed.dtype)
        F, C, fh, fw = (int(v) for v in filter_shape)
        if packed.shape != (F, fh, fw, _words(C)):
            raise ValueError('packed has shape %s, expected %s for filter_shape %s'
                             % (packed.shape, (F, fh, fw, _words(C)), tuple(filter_shape)))
        obj = cls.__new__(cls)
        obj._set(_clear_unused_bits(np.ascontiguousarray(packed), C),
                 (F, C, fh, fw), stride, pad)
        return obj

    def __repr__(self):
        return 'PackedConv2D(filter_shape=%s, stride=%s, pad=%s)' % (
            self.filter_shape, self.stride, self.pad)

    def output_shape(self, input_shape):
        """(N, F, OH, OW) for an input of shape (N, C, H, W)."""
        N, C, H, Wd = input_shape
        F, _, fh, fw = self.filter_shape
        (sh, sw), (ph, pw) = self.stride, self.pad
        return (N, F, (H + 2 * ph - fh) // sh + 1, (Wd + 2 * pw - fw) // sw + 1)

    def _border(self, H, Wd, nr):
        """Per-panel corrections for output pixels whose window overlaps the padding.

        The kernel gathers padded taps as -1; the correction is the sum of
        sign(W) over those taps, which turns their contribution back into 0. It
        depends only on geometry and sign(W), so it is computed once per input
        size (and panel width ``nr`` of the compiled kernels) and cached.

        Returns
        -------
        pidx : int64 (n_panels,)
            For each panel of ``nr`` output pixels, -1 if none of its pixels
            touches the padding, else its index into ``pcorr``.
        pcorr : int32 (n_border_panels, F, nr)
        """
        key = (H, Wd, nr)
        hit = self._borders.get(key)
        if hit is not None:
            return hit
        F, C, fh, fw = self.filter_shape
        (sh, sw), (ph, pw) = self.stride, self.pad
        _, _, OH, OW = self.output_shape((1, C, H, Wd))
        rows = np.arange(OH)[:, None] * sh - ph + np.arange(fh)[None, :]
        cols = np.arange(OW)[:, None] * sw - pw + np.arange(fw)[None, :]
        vh = (rows >= 0) & (rows < H)           # (OH, fh) tap inside the image
        vw = (cols >= 0) & (cols < Wd)          # (OW, fw)
        # padded[u, v, oh, ow]: tap (u, v) of output pixel (oh, ow) is padding
        padded = ~(vh.T[:, None, :, None] & vw.T[None, :, None, :])
        corr = np.einsum('fuv,uvij->fij', self._tap_sums, padded.astype(np.int64))
        n_panels = -(-OH * OW // nr)
        flat = np.zeros((F, n_panels * nr), dtype=np.int32)
        flat[:, :OH * OW] = corr.reshape(F, OH * OW)
        per_panel = flat.reshape(F, n_panels, nr).transpose(1, 0, 2)   # (panels, F, nr)
        has = np.flatnonzero(per_panel.any(axis=(1, 2)))
        pidx = np.full(n_panels, -1, dtype=np.int64)
        pidx[has] = np.arange(has.size)
        hit = (pidx, np.ascontiguousarray(per_panel[has]))
        self._borders[key] = hit
        return hit

    def conv_packed(self, x_packed, out=None):
        """Cross-correlation of input channels that are already packed.

        Parameters
        ----------
        x_packed : numpy.ndarray of uint64, shape (N, H, W, ceil(C / 64))
            ``pack_signs(x, axis=1)`` for ``x`` of shape (N, C, H, W).
        out : numpy.ndarray of int32 or None
            A C-contiguous buffer of at least N * F * OH * OW elements to write the
            result into (reusing one saves the page faults of a new large array);
            the result is then a view of its beginning.

        Returns
        -------
        numpy.ndarray of int32, shape (N, F, OH, OW)
        """
        xp = np.asarray(x_packed)
        F, C, fh, fw = self.filter_shape
        if xp.dtype != np.uint64 or xp.ndim != 4 or xp.shape[3] != _words(C):
            raise ValueError('x_packed must be uint64 (N, H, W, %d), got %s %s'
                             % (_words(C), xp.dtype, xp.shape))
        xp = _clear_unused_bits(np.ascontiguousarray(xp), C)
        N, H, Wd, wc = xp.shape
        out_shape = self.output_shape((N, C, H, Wd))
        if out_shape[2] < 1 or out_shape[3] < 1:
            raise ValueError('input %dx%d is smaller than the %dx%d filter with pad %s'
                             % (H, Wd, fh, fw, self.pad))
        size = int(np.prod(out_shape))
        if out is None:
            out = np.empty(out_shape, dtype=np.int32)
        elif (out.dtype != np.int32 or not out.flags.c_contiguous or out.size < size
              or not out.flags.writeable):
            raise ValueError('out must be a writeable C-contiguous int32 array of at least '
                             '%d elements' % size)
        else:
            out = out.reshape(-1)[:size].reshape(out_shape)
        if out.size == 0:
            return out
        lib = _get_lib()
        pidx, pcorr = self._border(H, Wd, lib.nr)
        (sh, sw), (ph, pw) = self.stride, self.pad
        status = lib.lib.xk_conv2d(
            xp.ctypes.data, N, H, Wd, wc, self._wk.ctypes.data, F, fh, fw,
            sh, sw, ph, pw, C * fh * fw, pidx.ctypes.data if pcorr.size else None,
            pcorr.ctypes.data if pcorr.size else None, out.ctypes.data, _nthreads())
        if status != 0:
            raise MemoryError('xnor kernels: out of memory')
        return out

    def conv_packed_reference(self, x_packed):
        """:meth:`conv_packed` by the C reference kernel (tap by tap, no panels, no
        border tables), kept beside the fast one to test it against."""
        xp = _clear_unused_bits(np.ascontiguousarray(x_packed, dtype=np.uint64),
                                self.filter_shape[1])
        N, H, Wd, wc = xp.shape
        F, C, fh, fw = self.filter_shape
        out = np.empty(self.output_shape((N, C, H, Wd)), dtype=np.int32)
        if out.size:
            (sh, sw), (ph, pw) = self.stride, self.pad
            _get_lib().function('xk_conv2d_ref')(
                xp.ctypes.data, N, H, Wd, wc, self._wk.ctypes.data, F, fh, fw, sh, sw, ph, pw,
                C * fh * fw, out.ctypes.data)
        return out

    def conv_signs(self, x):
        """Exact cross-correlation of ``sign(x)`` (zero-padded after binarizing) with ``sign(W)``.

        Parameters
        ----------
        x : array_like, shape (N, C, H, W)
            Real input; zeros binarize to +1, padding contributes 0.

        Returns
        -------
        numpy.ndarray of int32, shape (N, F, OH, OW)
            ``OH = (H + 2*ph - fh) // sh + 1``, ``OW = (W + 2*pw - fw) // sw + 1``.
        """
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.filter_shape[1]:
            raise ValueError('x must be (N, %d, H, W), got shape %s'
                             % (self.filter_shape[1], x.shape))
        return self.conv_packed(pack_signs(x, axis=1))
