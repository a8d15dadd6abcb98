"""The ctypes bindings of the C kernels: loading the library, signatures, threads.

Part of :mod:`binary_net.kernels`, between the build (:mod:`~binary_net.kernels.build`,
which compiles ``csrc/xnor_kernels.c`` for the code path of
:mod:`~binary_net.kernels.isa`) and the numpy-facing functions and classes
(:mod:`~binary_net.kernels.ops`, :mod:`~binary_net.kernels.dense`,
:mod:`~binary_net.kernels.conv`), which call :func:`get_library` and pass
:func:`nthreads`.
"""
import ctypes
import threading
import time

import numpy as np

from ..threads import prefer_sleeping_threads
from .build import KernelBuildError, build, compiler_command, discard
from .isa import selected_isa

__all__ = ['Library', 'SIGNATURES', 'get_library', 'kernel_info', 'set_num_threads',
           'get_num_threads', 'nthreads',
           'SCALE_INPUT', 'SCALE_WEIGHTS', 'BIAS_BEFORE', 'ChainLayer']

#: Flags of ``xk_xnor_dense`` and ``xk_conv_epilogue`` (as in ``csrc/xnor_kernels.c``).
SCALE_INPUT, SCALE_WEIGHTS, BIAS_BEFORE = 1, 2, 4

_lock = threading.Lock()
#: The loaded libraries, by code path (a test empties it to load them again).
loaded = {}


# libgomp reads its spin count when it is loaded, with the first kernel library
# (binary_net.threads explains why idle threads should soon sleep).
prefer_sleeping_threads()

_num_threads = None     # None: OpenMP's default

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int


class Library:
    """A compiled kernel library, loaded with ctypes, its core functions' signatures set.

    Parameters
    ----------
    path : str
        The shared library (from :func:`binary_net.kernels.build.build`).
    flags : list of str
        Its compiler flags, for :func:`kernel_info`.

    Attributes
    ----------
    lib : ctypes.CDLL
    isa : str
        The code path compiled in ('avx512-vpopcntdq', 'avx2', 'neon' or 'portable').
    nr, mr : int
        Panel width and tile rows of the micro-kernel.
    openmp : bool
    """

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
        lib.xk_gemm.restype = _INT
        for name in ('xk_dense_f32', 'xk_dense_f64'):
            getattr(lib, name).argtypes = [_P, _I64, _I64, _P, _I64, _P, _I64, _INT]
            getattr(lib, name).restype = _INT
        lib.xk_conv2d.argtypes = ([_P] + [_I64] * 4 + [_P] + [_I64] * 8
                                  + [_P, _P, _P, _INT])
        lib.xk_conv2d.restype = _INT
        lib.xk_conv2d_tables.argtypes = ([_P] + [_I64] * 4 + [_P] + [_I64] * 8
                                         + [_P, _P, _P, _P, _INT])
        lib.xk_conv2d_tables.restype = _INT
        lib.xk_conv_table_bytes.argtypes = [_I64, _I64]
        lib.xk_conv_table_bytes.restype = _I64
        lib.xk_conv_tables.argtypes = [_P, _I64, _I64, _P, _INT]
        lib.xk_conv_tables.restype = None
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
        out = _aligned_empty(npan * words * self.nr, np.uint64)
        if out.size:
            self.lib.xk_pack_panels(b.ctypes.data, n_rows, words, b.strides[0] // 8,
                                    out.ctypes.data, nthreads)
        return out

    def conv_tables(self, wk, nthreads):
        """The lookup tables of filters ``wk`` ((F, K) uint64 words) that this code
        path's convolution reads (uint8; empty on the paths that need none)."""
        F, K = wk.shape
        out = _aligned_empty(self.lib.xk_conv_table_bytes(F, K), np.uint8)
        if out.size:
            self.lib.xk_conv_tables(wk.ctypes.data, F, K, out.ctypes.data, nthreads)
        return out

    def function(self, name):
        """The C function ``name``, its ctypes signature (from SIGNATURES) set once."""
        bound = self.__dict__.setdefault('_bound', {})
        fn = bound.get(name)
        if fn is None:
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = SIGNATURES[name]
            bound[name] = fn
        return fn

    def gemm(self, a, panels, n_cols, n, nthreads):
        m, words = a.shape
        out = np.empty((m, n_cols), dtype=np.int32)
        if m and n_cols:
            if words == 0:
                out.fill(n)
            else:
                if self.lib.xk_gemm(a.ctypes.data, m, words, a.strides[0] // 8,
                                    panels.ctypes.data, n_cols, n, out.ctypes.data, n_cols,
                                    nthreads) != 0:
                    raise MemoryError('xnor kernels: out of memory')
        return out


class ChainLayer(ctypes.Structure):
    """One layer of ``xk_xnor_dense_chain`` (``xk_chain_layer`` in ``csrc/xnor_kernels.c``):
    the panels' address, units, input bits, flags, the addresses of alpha, b, scale and
    offset (0: none), and the byte offsets of z, y, y's packed signs and K in the
    output buffer (-1: not computed)."""

    _fields_ = ([('P', _P), ('N', _I64), ('n', _I64), ('flags', _I64)]
                + [(name, _P) for name in ('alpha', 'b', 'scale', 'offset')]
                + [(name, _I64) for name in ('z', 'y', 'yp', 'Ky')])


#: ctypes signatures of the functions bound lazily by :meth:`Library.function`.
SIGNATURES = {
    'xk_gemm_ref': ([_P, _I64, _I64, _P, _I64, _I64, _P], None),
    'xk_pack_mean_abs_f32': ([_P, _I64, _I64, _P, _P, _INT], None),
    'xk_xnor_dense': ([_P, _I64, _I64, _P, _I64, _I64, _INT] + [_P] * 9 + [_INT], _INT),
    'xk_xnor_dense_chain': ([_P, _I64, _I64, _I64, _I64, _I64, ctypes.POINTER(ChainLayer), _P,
                             _INT], _INT),
    'xk_conv2d_ref': ([_P] + [_I64] * 4 + [_P] + [_I64] * 8 + [_P], None),
    'xk_pack_channels_mean_abs_f32': ([_P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _INT], None),
    'xk_conv_epilogue': ([_P, _I64, _I64, _I64, _I64, _INT, _P, _P, _P, _P, _I64, _I64,
                          _P, _P, _P, _P, _INT], None),
    'xk_conv_epilogue_pack': ([_P, _I64, _I64, _I64, _I64, _INT, _P, _P, _P, _I64, _I64,
                               _P, _P, _P, _P, _P, _P, _INT], _INT),
    'xk_ceiling': ([_I64, _P], _I64),
    # csrc/amx_conv_grad.c
    'xk_amx_available': ([], _INT),
    'xk_amx_workspace': ([_INT, _P, _INT], _I64),
    'xk_amx_grad_weights': ([_P] * 5 + [_INT], _INT),
    'xk_amx_grad_inputs': ([_P] * 5 + [_INT], _INT),
}

def _aligned_empty(n, dtype):
    """An empty 1-D array of ``n`` items starting on a 64-byte line: the products'
    vector loads of panels then never straddle two lines (numpy's own arrays may start
    16 bytes into one; 64-byte panels measured about 3% faster on the AVX2 path)."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + n * dtype.itemsize].view(dtype)


def get_library(isa=None):
    """The :class:`Library` of a code path (default :func:`~binary_net.kernels.isa.selected_isa`),
    compiled and loaded on first call."""
    isa = isa or selected_isa()
    lib = loaded.get(isa)
    if lib is None:
        with _lock:
            lib = loaded.get(isa)
            if lib is None:
                path, flags = build(isa)
                try:
                    lib = Library(path, flags)
                except (KernelBuildError, AttributeError):
                    # A damaged cached library (truncated, foreign): build it again, once.
                    discard(path)
                    lib = Library(*build(isa))
                loaded[isa] = lib
    return lib


def kernel_info():
    """Describe the compiled kernels (compiling them if needed).

    Returns
    -------
    dict
        ``isa`` (code path: 'avx512-vpopcntdq', 'avx2' or 'portable'), ``path``
        of the shared library, ``flags`` used, ``openmp`` (bool),
        ``panel_width`` (columns, or output pixels, per panel) and ``tile_rows``
        (rows per tile of the products), and
        ``num_threads`` (what the kernels currently use).
    """
    lib = get_library()
    return {'isa': lib.isa, 'path': lib.path, 'flags': ' '.join(lib.flags),
            'compiler': ' '.join(compiler_command()), 'openmp': lib.openmp,
            'panel_width': lib.nr, 'tile_rows': lib.mr,
            'num_threads': get_num_threads()}


def ceiling_ns_per_word(repeat=5, steps=1 << 16):
    """The product's inner loop on data in L1 (csrc/xk_ceiling.h), in ns per 256-bit
    word on one thread: what the core's vector units allow for the loop, beside which
    a benchmark can put the kernel's own time. The fastest of ``repeat`` runs; None on
    the paths without a ceiling loop (NEON, portable)."""
    fn = get_library().function('xk_ceiling')
    sink = ctypes.c_uint64()
    if fn(steps, ctypes.byref(sink)) <= 0:     # (also the warm-up run)
        return None
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        words = fn(steps, ctypes.byref(sink))
        per_word = (time.perf_counter() - t0) / words
        best = per_word if best is None else min(best, per_word)
    return 1e9 * best


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
    lib = get_library()
    if not lib.openmp:
        return 1
    return _num_threads if _num_threads is not None else lib.lib.xk_max_threads()


def nthreads():
    """The thread count to pass to a kernel: :func:`set_num_threads`'s, 0 for OpenMP's default."""
    return _num_threads or 0


# --------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------
