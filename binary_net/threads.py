"""Idle worker threads spin only briefly, then sleep: the process-wide default here.

Two thread pools share the cores here: the OpenMP threads of the XNOR kernels and of
the fused Theano ops, and the threads of the OpenBLAS that numpy (and Theano) call.
Left to their defaults, both keep idle threads spinning after each parallel region
(libgomp 300,000 spins, OpenBLAS 2**28 clock ticks: about 0.1 s), so that one pool's
next region finds a core taken by the other's spinning thread. On two cores that made
two-thread XNOR inference, whose networks call numpy between the kernels, about half as
fast (``bench/bench_networks.py``, MNIST 3 x 4096: see the README's benchmarks).

Sleeping at once is no better on a virtual machine: waking a thread on an idle
virtual CPU takes tens of microseconds, which a small GEMM or a batch of a small
network pays at every parallel region. So each pool spins for about 0.1 ms (libgomp
10,000 spins, OpenBLAS 2**18 ticks), long enough for back-to-back regions, then
sleeps. Measured on the 2-core AMD EPYC (Zen 4) of the README, two threads, batch
100, median of three alternated runs, xnor images/s: MNIST 3 x 4096 12,541 against
10,791 sleeping at once and 5,400-6,800 with OpenBLAS's default; the shipped
MNIST model 72,914 against 61,599 (numpy's float pass 13,313 against 11,181).

Each library reads its setting once, when it is loaded: libgomp with the first kernel
or compiled op, OpenBLAS with ``import numpy``. :func:`prefer_sleeping_threads` runs
when :mod:`binary_net.cli` (every command-line script), :mod:`binary_net.train`,
:mod:`binary_net.kernels` or :mod:`binary_net.theano_ext` is imported; the first two
come before numpy in the scripts. A program that imports numpy first keeps OpenBLAS's
default unless it sets the variable itself, and a plain ``import binary_net`` (which
``binary_net_compat.pth`` does in every interpreter of the environment) changes
nothing. A variable you set, or its alias, is never overwritten.
"""
import os

__all__ = ['SLEEPING_DEFAULTS', 'prefer_sleeping_threads']

#: variable -> (value, the variables any of which means the user has chosen).
SLEEPING_DEFAULTS = {
    # libgomp: idle threads spin 10,000 times (its default: 300,000), then wait on a futex.
    'GOMP_SPINCOUNT': ('10000', ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')),
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
