"""What the fused C ops share: their C in ``csrc/theano_ext/``, loaded through Theano's COp.

Part of :mod:`binary_net.theano_ext`, below the ops
(:mod:`~binary_net.theano_ext.reductions`, :mod:`~binary_net.theano_ext.products`,
:mod:`~binary_net.theano_ext.elemwise`). Each op's C lives in a ``.c`` file with
Theano's ``#section`` markers, after the shared ``support.c``; the files and the
headers of ``csrc/`` they include (``xnor_kernels.h``: the packing and popcount product of
:mod:`binary_net.kernels`) are package data. The C is compiled and cached by
Theano's ``cmodule`` machinery, with OpenMP where the compiler has it; the cache
version hashes every file, so a change to the C never reuses a module compiled
from the old one.
"""
import glob
import hashlib
import os

import theano
from theano import gof

from ..kernels.build import CSRC

__all__ = ['FusedCOp', 'FLOAT_DTYPES', 'C_DIR', 'C_VERSION', 'c_file', 'openmp_supported']

#: The dtypes the fused ops compute in.
FLOAT_DTYPES = ('float32', 'float64')

#: The C files of the fused ops.
C_DIR = os.path.join(CSRC, 'theano_ext')


def c_file(name):
    """The path of the C file ``name`` of the fused ops."""
    return os.path.join(C_DIR, name)


def _version():
    h = hashlib.sha1()
    paths = (sorted(glob.glob(os.path.join(C_DIR, '*.c')))
             + sorted(glob.glob(os.path.join(CSRC, '*.h'))))
    for path in paths:
        with open(path, 'rb') as f:
            h.update(os.path.basename(path).encode() + b'\0' + f.read() + b'\0')
    return h.hexdigest()[:12]


#: Part of every op's cache version: a hash of all their C.
C_VERSION = _version()

_openmp = []


def openmp_supported():
    """Whether the C++ compiler builds OpenMP code (Theano's own probe, run once)."""
    if not _openmp:
        try:
            _openmp.append(bool(theano.config.cxx) and gof.op.OpenMPOp.test_gxx_support())
        except Exception:  # a probe that fails means no OpenMP, not a failed import
            _openmp.append(False)
    return _openmp[0]


_loaded = {}    # tuple of files -> (func_codes, code_sections), read once per process


class FusedCOp(gof.COp):
    """A COp whose C is ``support.c`` followed by its own file of ``csrc/theano_ext``.

    Parameters
    ----------
    name : str or None
        The op's C file (None: the shared support code only).
    func_name : str or None
        The C function the op calls (see :class:`theano.gof.COp`), usually
        ``'APPLY_SPECIFIC(...)'``.
    """

    def __init__(self, name=None, func_name=None):
        files = [c_file('support.c')] + ([c_file(name)] if name else [])
        gof.COp.__init__(self, files, func_name)

    def load_c_code(self, func_files):
        key = tuple(func_files)
        if key not in _loaded:
            gof.COp.load_c_code(self, func_files)
            _loaded[key] = (self.func_codes, self.code_sections)
        self.func_codes, self.code_sections = _loaded[key]

    def c_headers(self):
        return ['<math.h>']

    def c_header_dirs(self):
        return [CSRC]

    def c_compile_args(self):
        return ['-O3'] + (['-fopenmp'] if openmp_supported() else [])

    def c_libraries(self):
        return ['gomp'] if openmp_supported() else []

    def c_code_cache_version(self):
        return (5, C_VERSION)
