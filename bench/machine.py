"""What the benchmarks print about the machine, and how they set its thread counts.

The benchmark scripts run as ``python bench/NAME.py``, so their directory is on
``sys.path`` and they import this module as ``import machine``.
"""
import json
import os
import platform
import subprocess
import time

from binary_net.threads import SLEEPING_DEFAULTS, prefer_sleeping_threads

# The environment variables that set the BLAS / OpenMP thread counts.
THREAD_VARIABLES = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')
# The CPU flags that matter to the XNOR kernels.
KERNEL_FLAGS = ('avx2', 'avx512f', 'avx512_vpopcntdq')


def _cpuinfo_field(prefix):
    """The value of the first /proc/cpuinfo line starting with ``prefix``; None if
    there is no such line, OSError if the file cannot be read."""
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith(prefix):
                return line.split(':', 1)[1]
    return None


def cpu_model():
    """The CPU's model name ('Intel(R) Xeon(R) ...'), or what platform knows."""
    try:
        value = _cpuinfo_field('model name')
    except OSError:
        value = None
    if value is not None:
        return value.strip()
    return platform.processor() or platform.machine()


def cpu_flags(wanted=KERNEL_FLAGS, none='none of avx2/avx512', unknown='?'):
    """Which of the ``wanted`` CPU flags the CPU has, space-separated, in that order;
    ``none`` if it has none of them, ``unknown`` if /proc/cpuinfo cannot tell."""
    try:
        value = _cpuinfo_field('flags')
    except OSError:
        return unknown
    if value is None:
        return unknown
    flags = set(value.split())
    return ' '.join(f for f in wanted if f in flags) or none


def usable_cores():
    """The CPUs this process may run on (its affinity), else the logical CPUs."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe_machine(flags=False, cores=False):
    """The first line of a benchmark's output: 'machine: MODEL, N logical CPUs, ARCH,
    Python X.Y.Z'; ``flags`` adds the kernel-relevant CPU flags after the CPU count,
    ``cores`` the usable cores before it; a second line says how the children's idle
    threads wait (:func:`idle_threads_line`)."""
    if cores:
        count = '%d usable cores (%d logical CPUs)' % (usable_cores(), os.cpu_count() or 0)
    else:
        count = '%d logical CPUs' % (os.cpu_count() or 0)
    if flags:
        count += ' (%s)' % cpu_flags()
    return 'machine: %s, %s, %s, Python %s\n%s' % (
        cpu_model(), count, platform.machine(), platform.python_version(),
        idle_threads_line(thread_env(1)))


def blas_description(np=None, kernels_word=False):
    """The BLAS libraries loaded, from threadpoolctl: 'openblas 0.3.x (Haswell, 2
    threads), ...' ('Haswell kernels' with ``kernels_word``). Without threadpoolctl,
    the BLAS numpy was built with if the module ``np`` is given."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        if np is not None:
            try:
                blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
                return '%s %s (threadpoolctl not installed)' % (blas.get('name'),
                                                               blas.get('version'))
            except Exception:
                pass
        return 'unknown (threadpoolctl not installed)'
    form = '%s %s (%s kernels, %d threads)' if kernels_word else '%s %s (%s, %d threads)'
    return ', '.join(form % (d.get('internal_api'), d.get('version'), d.get('architecture'),
                             d.get('num_threads'))
                     for d in threadpool_info() if d.get('user_api') == 'blas') or 'unknown'


def thread_env(threads, base=None, sleeping=True):
    """A copy of the environment (``base``, os.environ by default) with every
    variable of THREAD_VARIABLES set to ``threads`` and, with ``sleeping``, idle
    OpenMP and OpenBLAS threads soon sleeping unless the environment says otherwise
    (binary_net.threads): the children import numpy before binary_net, and both
    sides of a comparison then wait for work the same way. A peer library (PyTorch)
    runs with ``sleeping=False``: its own defaults."""
    env = dict(os.environ if base is None else base)
    if sleeping:
        prefer_sleeping_threads(env)
    env.update((name, str(threads)) for name in THREAD_VARIABLES)
    return env


def idle_threads_line(env):
    """'idle threads: GOMP_SPINCOUNT=..., OPENBLAS_THREAD_TIMEOUT=...' for ``env``."""
    return 'idle threads: ' + ', '.join('%s=%s' % (name, env.get(name, '(not set)'))
                                        for name in SLEEPING_DEFAULTS)


def timing_clock(kind, threads):
    """time.thread_time for ``kind`` 'cpu' on one thread, else time.perf_counter (with
    a note when 'cpu' was asked for on several threads)."""
    if kind == 'cpu':
        if threads == 1:
            return time.thread_time
        print('  (--clock cpu needs one thread: wall-clock time is used)')
    return time.perf_counter


def run_child(cmd, env, show_json=False):
    """Run a benchmark child, echoing its output; return (exit status, the dict of its
    last 'JSON ...' line or None). JSON lines are echoed only with ``show_json``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    result = None
    for line in proc.stdout:
        if line.startswith('JSON '):
            result = json.loads(line[5:])
            if not show_json:
                continue
        print(line, end='', flush=True)
    return proc.wait(), result
