"""Compiling the C kernels and keeping the compiled library safe in a private cache.

Part of :mod:`binary_net.kernels`, below the ctypes bindings
(:mod:`binary_net.kernels.library`), which call :func:`build` the first time a code
path is used. ``csrc/xnor_kernels.c`` (and the headers it includes) and
``csrc/amx_conv_grad.c`` (the AMX convolution gradients of training) are compiled with
``gcc -O3 -march=native -fopenmp -shared -fPIC`` (falling back to flags without
``-march=native`` and/or ``-fopenmp`` where the compiler refuses them) into
``$BINARY_NET_CACHE`` or else ``~/.cache/binary_net`` (created with mode 0700; a
directory owned by another user or writable by others is refused), under a name
hashed from the sources, the flags, the compiler and the CPU, written atomically. A
cached library is used only if it is a non-empty file of this user that nobody else
can write. The compiler is ``$CC`` if set, else ``gcc`` (or :data:`COMPILER`).
"""
import glob
import hashlib
import os
import platform
import shlex
import stat
import subprocess
import tempfile

from .isa import ISA_FLAGS

__all__ = ['KernelBuildError', 'COMPILER', 'CSRC', 'SOURCE', 'SOURCES', 'build',
           'compiler_command', 'discard']


class KernelBuildError(RuntimeError):
    """The C kernels could not be compiled or loaded (e.g. no C compiler)."""


#: The C sources: ``binary_net/csrc``, the main file (it includes the headers), and
#: every file compiled into the one library.
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'csrc')
SOURCE = os.path.join(CSRC, 'xnor_kernels.c')
SOURCES = (SOURCE, os.path.join(CSRC, 'amx_conv_grad.c'))

#: Compiler command as a list (e.g. ``['gcc']``); None means ``$CC`` or ``gcc``.
COMPILER = None
# -ffp-contract=off: the fused layers (xk_xnor_dense) must round every float
# multiply and add separately, as numpy does, to stay bit-identical to float mode.
_BASE_FLAGS = ['-O3', '-ffp-contract=off', '-shared', '-fPIC']
def compiler_command():
    if COMPILER is not None:
        return list(COMPILER)
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
    discard(path)
    return False


def discard(path):
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


def build(isa):
    """Compile the library for a code path, or find it compiled in the cache.

    Parameters
    ----------
    isa : str
        One of :data:`binary_net.kernels.isa.ISAS`.

    Returns
    -------
    path : str
        The shared library.
    flags : list of str
        The compiler flags it was built with.

    Raises
    ------
    KernelBuildError
        No compiler, an unsafe cache directory, or every set of flags failed (one line).
    """
    cc = compiler_command()
    if not cc:
        raise KernelBuildError('no C compiler: the compiler command is empty')
    ident = _compiler_identity(cc)
    source = source_bytes()
    cache = _cache_dir()
    isa_flags = ISA_FLAGS[isa]
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
            proc = subprocess.run(cc + flags + ['-o', tmp] + list(SOURCES),
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
                           % (os.path.basename(SOURCE), cc[0], errors[-1] if errors else '?'))


def source_bytes():
    """The bytes the library is built from: the sources, then each header of
    ``csrc`` (so that a change to a header builds a new library)."""
    parts = []
    for path in list(SOURCES) + sorted(glob.glob(os.path.join(CSRC, '*.h'))):
        with open(path, 'rb') as f:
            parts.append(f.read())
    return b'\0'.join(parts)
