"""Make Theano 1.0.5 and Lasagne 0.1 run on Python 3.11 with numpy >= 1.24.

This is the only module that knows those two libraries needed repairs. It imports
nothing but the standard library at module level, so that the start-up hook
installed by ``binary_net_compat.pth`` costs nothing until Theano or Lasagne is
actually imported.

The repairs, each applied at most once and never overriding a user's choice:

* numpy >= 1.24 removed the aliases ``np.bool``, ``np.int``, ... that Theano's C
  code generator still uses; they are put back as the builtins they named.
* Theano probes a BLAS at import unless ``blas.ldflags`` is configured; with
  numpy's bundled OpenBLAS that probe fails. Unless the user configured
  ``blas.ldflags`` in ``THEANO_FLAGS`` or a ``.theanorc`` file, it is set to
  the OpenBLAS that scipy's wheel bundles (``scipy.libs/libscipy_openblas*``,
  whose symbols carry a ``scipy_`` prefix: ``-Dsgemm_=scipy_sgemm_`` ... map
  Theano's Fortran BLAS names onto them, an rpath finds the library at run
  time), so Theano's C GEMM and convolution ops call a real BLAS; where that
  library is missing or does not load, ``blas.ldflags=`` (numpy's ``dot``)
  as before. ``BINARY_NET_BLAS=numpy`` forces the fallback.
* Lasagne 0.1 imports ``theano.tensor.signal.downsample``, which Theano 1.0
  renamed ``pool``; a small module with the old ``max_pool_2d`` is provided.
* Lasagne 0.1 reads its version through ``pkg_resources``, which setuptools
  >= 81 no longer ships; a one-function stand-in is provided only if missing.
* pylearn2 (master), when installed and imported: ``theano.compat.six`` (gone from
  Theano 1.0) is the standalone ``six``; ``theano.sandbox.cuda`` (the removed old GPU
  back-end, imported by ``pylearn2.space``) is a stand-in saying CUDA is unavailable,
  whose types no value is an instance of; ``collections.Sized`` is
  ``collections.abc.Sized``; PyTables' removed camelCase names (``openFile``,
  ``getNode``, ``createCArray``, ...), used by pylearn2's SVHN, name the current ones.
"""
import configparser
import importlib.abc
import logging
import os
import sys
import types
import warnings

_ALIASES = {'bool': bool, 'int': int, 'float': float, 'complex': complex,
            'object': object, 'str': str}
_applied = set()


def patch_numpy():
    """Restore the builtin-type aliases removed from numpy 1.24."""
    if 'numpy' in _applied:
        return
    import numpy
    for name, builtin in _ALIASES.items():
        if name not in numpy.__dict__:
            setattr(numpy, name, builtin)
    _applied.add('numpy')


# Fortran BLAS routines Theano's C code may call (single and double precision),
# mapped onto the prefixed names of scipy's bundled OpenBLAS.
_BLAS_ROUTINES = ('gemm', 'gemv', 'ger', 'dot', 'scal', 'axpy', 'copy', 'swap', 'nrm2',
                  'asum', 'symm', 'symv', 'syrk', 'syr2k', 'trmm', 'trsm', 'trmv', 'trsv')
_OPENBLAS_EXTRAS = ('openblas_set_num_threads', 'openblas_get_num_threads')


def scipy_openblas():
    """Path of the OpenBLAS bundled with scipy's wheel, or None.

    Found without importing scipy (``scipy.libs`` beside the package); returned
    only if it loads and exports ``scipy_sgemm_``.
    """
    import ctypes
    import glob
    import importlib.util
    try:
        spec = importlib.util.find_spec('scipy')
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    package = list(spec.submodule_search_locations)[0]
    found = sorted(glob.glob(os.path.join(os.path.dirname(package), 'scipy.libs',
                                          'libscipy_openblas*.so')))
    for path in found:
        if ' ' in path or ',' in path:  # cannot be written into THEANO_FLAGS
            continue
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(library, 'scipy_' + name)
               for name in ('sgemm_', 'dgemm_', 'sgemv_', 'sdot_')):
            return path
    return None


def blas_ldflags(library=None):
    """The ``blas.ldflags`` value that links ``library`` (scipy's OpenBLAS).

    Empty (numpy's ``dot``) when there is no such library or
    ``BINARY_NET_BLAS=numpy`` is set.
    """
    if os.environ.get('BINARY_NET_BLAS', '').strip().lower() == 'numpy':
        return ''
    if library is None:
        library = scipy_openblas()
    if not library:
        return ''
    directory, name = os.path.split(library)
    defines = ['-D%s%s_=scipy_%s%s_' % (p, r, p, r) for r in _BLAS_ROUTINES for p in 'sd']
    defines += ['-D%s=scipy_%s' % (n, n) for n in _OPENBLAS_EXTRAS]
    return ' '.join(['-L' + directory, '-l:' + name] + defines)


# Defaults added to THEANO_FLAGS only where the user configured nothing
# (a callable is evaluated only then).
THEANO_DEFAULTS = (('blas', 'ldflags', blas_ldflags), ('floatX', None, 'float32'))


def _rc_files():
    spec = os.environ.get('THEANORC', '~/.theanorc' + os.pathsep + '~/.theanorc.txt')
    return [os.path.expanduser(p) for p in spec.split(os.pathsep) if p]


def user_configured(section, option):
    """True if the user set ``section.option`` in THEANO_FLAGS or a .theanorc."""
    name = section if option is None else section + '.' + option
    flags = os.environ.get('THEANO_FLAGS', '')
    if any(f.split('=')[0].strip() == name for f in flags.split(',')):
        return True
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(_rc_files())
    except configparser.Error:
        return False
    if option is None:
        return parser.has_option('global', section)
    return parser.has_option(section, option)


def configure_theano_flags():
    """Add ``blas.ldflags`` (see :func:`blas_ldflags`) and ``floatX=float32``
    unless the user set them.

    Must run before Theano is first imported; it never overwrites a flag or a
    compile directory that the user chose.
    """
    if 'flags' in _applied:
        return
    # Theano warns at import that it uses numpy's BLAS; that is the
    # configuration chosen here, not a problem the user has to act on.
    logging.getLogger('theano.tensor.blas').setLevel(logging.ERROR)
    if 'theano' not in sys.modules:
        added = ['%s=%s' % (s if o is None else s + '.' + o, v() if callable(v) else v)
                 for s, o, v in THEANO_DEFAULTS if not user_configured(s, o)]
        flags = [f for f in [os.environ.get('THEANO_FLAGS', '')] + added if f]
        os.environ['THEANO_FLAGS'] = ','.join(flags)
    _applied.add('flags')


def _max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0), mode='max'):
    from theano.tensor.signal.pool import pool_2d
    return pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st,
                   pad=padding, mode=mode)


def patch_theano():
    """Import Theano with working flags and provide its old ``downsample`` module."""
    if 'theano' in _applied:
        return
    patch_numpy()
    configure_theano_flags()
    import theano.tensor.signal
    # Lasagne 0.1's Conv2DLayer passes conv2d the keyword Theano 1.0 renamed;
    # Theano accepts it and warns on every layer, which tells users nothing.
    warnings.filterwarnings('ignore', message='The `image_shape` keyword argument',
                            category=UserWarning)
    if 'theano.tensor.signal.downsample' not in sys.modules:
        downsample = types.ModuleType('theano.tensor.signal.downsample')
        downsample.__doc__ = 'Theano 0.7 name of pool_2d, for Lasagne 0.1.'
        downsample.max_pool_2d = _max_pool_2d
        sys.modules[downsample.__name__] = downsample
        theano.tensor.signal.downsample = downsample
    _applied.add('theano')


def patch_pkg_resources():
    """Provide ``pkg_resources.get_distribution`` if setuptools no longer does."""
    if 'pkg_resources' in _applied:
        return
    try:
        with warnings.catch_warnings():  # setuptools 67-80 warn it is deprecated
            warnings.simplefilter('ignore')
            import pkg_resources  # noqa: F401
    except ImportError:
        from importlib import metadata
        stand_in = types.ModuleType('pkg_resources')
        stand_in.__doc__ = 'Stand-in for the part of pkg_resources Lasagne 0.1 uses.'
        stand_in.get_distribution = lambda name: types.SimpleNamespace(
            project_name=name, version=metadata.version(name))
        sys.modules['pkg_resources'] = stand_in
    _applied.add('pkg_resources')


_PYTABLES_NAMES = {'createGroup': 'create_group', 'createCArray': 'create_carray',
                   'getNode': 'get_node', 'removeNode': 'remove_node',
                   'renameNode': 'rename_node', 'createArray': 'create_array'}


def patch_pylearn2():
    """Let pylearn2 master import on Python 3.11 with Theano 1.0 (see the module docstring)."""
    if 'pylearn2' in _applied:
        return
    patch_theano()
    import collections
    import collections.abc
    import importlib.util

    import theano.compat
    for name in ('Sized', 'Iterable', 'Mapping', 'Sequence', 'Callable', 'Hashable'):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    if 'theano.compat.six' not in sys.modules and importlib.util.find_spec('six'):
        import six
        sys.modules['theano.compat.six'] = six
        sys.modules['theano.compat.six.moves'] = six.moves
        theano.compat.six = six
    if 'theano.sandbox.cuda' not in sys.modules:
        import theano.sandbox
        cuda = types.ModuleType('theano.sandbox.cuda')
        cuda.__doc__ = 'Stand-in for the removed old GPU back-end: CUDA is unavailable.'
        cuda.cuda_available = False
        cuda.cuda_enabled = False
        for sub, cls in (('type', 'CudaNdarrayType'), ('var', 'CudaNdarrayVariable')):
            module = types.ModuleType('theano.sandbox.cuda.' + sub)
            setattr(module, cls, type(cls, (object,), {}))
            setattr(cuda, sub, module)
            sys.modules[module.__name__] = module
        sys.modules[cuda.__name__] = cuda
        theano.sandbox.cuda = cuda
    if importlib.util.find_spec('tables'):
        import tables
        if not hasattr(tables, 'openFile'):
            tables.openFile = tables.open_file
        for old, new in _PYTABLES_NAMES.items():
            if not hasattr(tables.File, old) and hasattr(tables.File, new):
                setattr(tables.File, old, getattr(tables.File, new))
    _applied.add('pylearn2')


def apply():
    """Apply every repair; safe to call any number of times."""
    patch_theano()
    patch_pkg_resources()


class _PatchBeforeImport(importlib.abc.MetaPathFinder):
    """Runs :func:`apply` the first time ``theano`` or ``lasagne`` is imported (and
    :func:`patch_pylearn2` the first time ``pylearn2`` is)."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname in ('theano', 'lasagne', 'pylearn2') and not _PatchBeforeImport._busy:
            _PatchBeforeImport._busy = True
            try:
                if fullname == 'pylearn2':
                    apply()
                    patch_pylearn2()
                elif fullname == 'theano':
                    patch_numpy()
                    configure_theano_flags()
                else:
                    apply()
            finally:
                _PatchBeforeImport._busy = False
        return None


def install_import_hook():
    """Register the hook (called from ``binary_net_compat.pth`` at start-up)."""
    if not any(isinstance(f, _PatchBeforeImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchBeforeImport())
