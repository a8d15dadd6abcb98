"""The two thread pools: idle threads spin briefly, then sleep; OpenBLAS's count per call.

Two thread pools share the cores here: the OpenMP threads of the XNOR kernels and of
the fused Theano ops, and the threads of the OpenBLAS that numpy (and Theano) call.
Left to their defaults, both keep idle threads spinning after each parallel region
(libgomp 300,000 spins, OpenBLAS 2**28 clock ticks: about 0.1 s), so that one pool's
next region finds a core taken by the other's spinning thread. On two cores that made
two-thread XNOR inference, whose networks call numpy between the kernels, about half as
fast (``bench/bench_networks.py``, MNIST 3 x 4096: see the README's benchmarks).

Sleeping at once is no better on a virtual machine: waking a thread on an idle
virtual CPU takes tens of microseconds, which a small GEMM or a batch of a small
network pays at every parallel region. So each pool spins briefly, long enough for
back-to-back regions, then sleeps: libgomp 30,000 spins (each as long as the CPU's
PAUSE), OpenBLAS 2**18 ticks (about 0.1 ms). Measured on the 2-core AMD EPYC
(Zen 4) of the README, two threads, batch 100, median of three alternated runs, xnor
images/s, with 10,000 spins: MNIST 3 x 4096 12,541 against 10,791 sleeping at once
and 5,400-6,800 with OpenBLAS's default; the shipped MNIST model 72,914 against
61,599 (numpy's float pass 13,313 against 11,181). On the 2-core Xeon of the README
(2026-12-03), 30,000 spins against 10,000, two rounds each: the shipped model's calls
(0.5 ms) no longer find the worker asleep, 171,000 against 153,000 images/s on the
AVX2 path and 224,000 against 195,000 on the AVX-512 path; MNIST 3 x 4096, CIFAR-10
and training (``bench/train_speed.py``) within noise.

Each library reads its setting once, when it is loaded: libgomp with the first kernel
or compiled op, OpenBLAS with ``import numpy``. :func:`prefer_sleeping_threads` runs
when :mod:`binary_net.cli` (every command-line script), :mod:`binary_net.train`,
:mod:`binary_net.kernels` or :mod:`binary_net.theano_ext` is imported; the first two
come before numpy in the scripts. A program that imports numpy first keeps OpenBLAS's
default unless it sets the variable itself, and a plain ``import binary_net`` (which
``binary_net_compat.pth`` does in every interpreter of the environment) changes
nothing. A variable you set, or its alias, is never overwritten.

:func:`blas_threads` sets OpenBLAS's thread count for the length of a call (its
``openblas_set_num_threads``, found in the library numpy has loaded, as threadpoolctl
does, without the dependency); where numpy uses another BLAS, or the library cannot
be found, it changes nothing and says so. :func:`binary_net.infer.numerics.
matmul_rows` runs matrix-vector products too small to share out on one thread.
"""
import ctypes
import glob
import os
import threading

__all__ = ['SLEEPING_DEFAULTS', 'prefer_sleeping_threads', 'blas_threads', 'blas_num_threads']

#: variable -> (value, the variables any of which means the user has chosen).
SLEEPING_DEFAULTS = {
    # libgomp: idle threads spin 30,000 times (its default: 300,000), then wait on a futex.
    'GOMP_SPINCOUNT': ('30000', ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')),
    # OpenBLAS: idle threads spin for 2**18 clock ticks (its default: 2**28), then sleep.
    'OPENBLAS_THREAD_TIMEOUT': ('18', ('OPENBLAS_THREAD_TIMEOUT', 'GOTO_THREAD_TIMEOUT')),
}


def prefer_sleeping_threads(environ=None):
    """Set the variables of :data:`SLEEPING_DEFAULTS` the user has not set.

    Parameters
    ----------
    environ : dict, optional
        The environment to change (a child process's, for example); default
        ``os.environ``, which affects the libraries this process loads afterwards.

    Returns
    -------
    dict
        ``environ``.
    """
    env = os.environ if environ is None else environ
    for name, (value, chosen) in SLEEPING_DEFAULTS.items():
        if not any(var in env for var in chosen):
            env[name] = value
    return env


# The setter's and getter's names in the OpenBLAS builds numpy ships: numpy 1.x
# wheels (64-bit integers, suffix 64_), numpy 2.x (scipy-openblas, prefix scipy_),
# distributions' builds (no suffix).
_NAMES = [('openblas_set_num_threads' + s, 'openblas_get_num_threads' + s)
          for s in ('64_', '_64', '')]
_NAMES += [('scipy_' + set_, 'scipy_' + get) for set_, get in _NAMES]

_lock = threading.RLock()
_api = []           # [] until looked up, then [(set, get)] or [None]


def _numpy_openblas_paths():
    """Where numpy's OpenBLAS may be: the library its wheel bundles (numpy.libs), else
    the OpenBLAS libraries mapped into this process (Linux) but scipy's, which
    Theano links (binary_net.compat) and which keeps a thread count of its own."""
    import numpy
    wheel = glob.glob(os.path.join(os.path.dirname(numpy.__file__), os.pardir, 'numpy.libs',
                                   '*openblas*.so*'))
    if wheel:
        return sorted(wheel)
    try:
        with open('/proc/self/maps') as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps
                     if line.count(' ') >= 5 and 'openblas' in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith('/') and '.so' in p and 'scipy' not in p)


def _lookup():
    for path in _numpy_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _NAMES:
            set_, get = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if set_ is not None and get is not None:
                set_.argtypes, set_.restype = [ctypes.c_int], None
                get.argtypes, get.restype = [], ctypes.c_int
                return set_, get
    return None


def _control():
    if not _api:
        with _lock:
            if not _api:
                _api.append(_lookup())
    return _api[0]


def blas_num_threads():
    """OpenBLAS's current thread count, or None where :func:`blas_threads` cannot set it."""
    api = _control()
    return None if api is None else api[1]()


class blas_threads:
    """``with blas_threads(n):`` runs the body with numpy's OpenBLAS on ``n`` threads,
    then restores its count.

    Calls from several Python threads take turns (a lock), so that none of them
    restores a count another has set. ``as`` gives True if the count could be set,
    False if not (another BLAS, or OpenBLAS not found): the body then runs unchanged.
    A class, not a generator: entering and leaving cost about 1 us, which a
    matrix-vector product of a small layer at batch 1 takes itself.
    """

    __slots__ = ('n', 'old')

    def __init__(self, n):
        self.n, self.old = int(n), None

    def __enter__(self):
        api = _control()
        if api is None:
            return False
        _lock.acquire()
        self.old = api[1]()
        if self.old != self.n:
            api[0](self.n)
        return True

    def __exit__(self, *exc):
        if self.old is not None:
            if self.old != self.n:
                _api[0][0](self.old)
            self.old = None
            _lock.release()
        return False
