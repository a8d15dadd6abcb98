"""Idle worker threads sleep rather than spin: the process-wide default of this package.

Two thread pools share the cores here: the OpenMP threads of the XNOR kernels and of
the fused Theano ops, and the threads of the OpenBLAS that numpy (and Theano) call.
Left to their defaults, both keep idle threads spinning after each parallel region
(libgomp for a while, OpenBLAS for 2**28 clock ticks, about 0.1 s), so that one pool's
next region finds a core taken by the other's spinning thread. On two cores that made
two-thread XNOR inference, whose networks call numpy between the kernels, about half as
fast (``bench/bench_networks.py``, MNIST 3 x 4096: see the README's benchmarks), and
whole-network runs several times slower before libgomp was told to sleep.

Each library reads its setting once, when it is loaded: libgomp with the first kernel or
compiled op, OpenBLAS with ``import numpy``. :func:`prefer_sleeping_threads` runs on
``import binary_net``, which the command-line scripts do before numpy; a program that
imports numpy first keeps OpenBLAS's spinning unless it sets the variable itself. A
variable you set (or its alias) is never overwritten.
"""
import os

__all__ = ['SLEEPING_DEFAULTS', 'prefer_sleeping_threads']

#: variable -> (value, the variables any of which means the user has chosen).
SLEEPING_DEFAULTS = {
    # libgomp: idle threads wait on a futex instead of spinning.
    'OMP_WAIT_POLICY': ('PASSIVE', ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')),
    # OpenBLAS: idle threads spin for 2**4 clock ticks (the least it allows), then sleep.
    'OPENBLAS_THREAD_TIMEOUT': ('4', ('OPENBLAS_THREAD_TIMEOUT', 'GOTO_THREAD_TIMEOUT')),
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
