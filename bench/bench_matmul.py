"""Benchmark: XNOR-popcount product vs numpy float32 matmul, side by side.

    python bench/bench_matmul.py [--threads 1 2] [--repeat N] [--isa native|avx2|portable]
                                 [--shapes 256x4096x4096 ...] [--clock wall|cpu]

For each shape M x K x N (A: M x K activations, B: K x N weights), it times

* numpy:  ``A @ B`` in float32;
* xnor:   ``PackedDense(B).matmul_signs(A)``, the weights packed once beforehand,
          the activations packed inside the timed call (a real layer packs its
          input every batch);
* kernel: ``PackedDense(B).matmul_packed(pack_signs(A))`` without the packing.

Repeats are interleaved (numpy, xnor, kernel, pack, numpy, ...); the median is
reported, with the ratio of the fastest runs beside it. Times are wall-clock by
default; ``--clock cpu`` times one-thread runs with the calling thread's CPU
time instead, which leaves out the time it spent descheduled on a busy machine.
Each thread count runs in its own subprocess with OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS set, so numpy's BLAS and the XNOR kernels
use the same number of threads. The XNOR result is checked against
``sign(A) @ sign(B)`` once per shape; the exit status is 1 if it differs.
"""
import argparse
import json
import os
import subprocess
import sys

import machine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_SHAPES = ['256x4096x4096', '16384x576x128', '4096x2304x256']


def child(args):
    """Run the measurements for one thread count (BLAS threads set by the parent)."""
    sys.path.insert(0, ROOT)
    import numpy as np
    from binary_net import kernels as K

    nt = args.child
    K.set_num_threads(nt)
    clock = machine.timing_clock(args.clock, nt)
    info = K.kernel_info()
    print('  numpy %s, BLAS: %s' % (np.__version__,
                                    machine.blas_description(np, kernels_word=True)))
    print('  xnor kernels: %s path, %s, OpenMP %s, %d thread(s)'
          % (info['isa'], info['flags'], 'on' if info['openmp'] else 'off', info['num_threads']))
    rng = np.random.default_rng(0)
    rows = []
    for spec in args.shapes:
        M, Kd, N = (int(v) for v in spec.lower().split('x'))
        A = rng.standard_normal((M, Kd), dtype=np.float32)
        B = rng.standard_normal((Kd, N), dtype=np.float32)
        layer = K.PackedDense(B)                 # weights packed once, outside timing
        Ap = K.pack_signs(A)
        got = layer.matmul_signs(A)
        sa = np.where(A >= 0, 1, -1).astype(np.float32)
        sb = np.where(B >= 0, 1, -1).astype(np.float32)
        exact = bool(np.array_equal(got, (sa @ sb).astype(np.int32)))   # exact below 2**24
        del sa, sb
        fns = {'numpy': lambda: A @ B,
               'xnor': lambda: layer.matmul_signs(A),
               'kernel': lambda: layer.matmul_packed(Ap),
               'pack': lambda: K.pack_signs(A)}
        times = {k: [] for k in fns}
        for f in fns.values():                   # warm-up
            f()
        for _ in range(args.repeat):
            for name, f in fns.items():
                t0 = clock()
                f()
                times[name].append(clock() - t0)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        best = {k: 1e3 * float(np.min(v)) for k, v in times.items()}
        rows.append(dict(shape=spec, exact=exact, median_ms=med, min_ms=best))
        print('  %-15s numpy %8.2f ms | xnor %7.2f ms (pack alone %5.2f) -> %5.1fx (best-of %5.1fx)'
              ' | kernel only %7.2f ms -> %5.1fx (best-of %5.1fx) | exact: %s'
              % (spec, med['numpy'], med['xnor'], med['pack'], med['numpy'] / med['xnor'],
                 best['numpy'] / best['xnor'], med['kernel'], med['numpy'] / med['kernel'],
                 best['numpy'] / best['kernel'], 'yes' if exact else 'NO'),
              flush=True)
    if args.json:
        print('JSON ' + json.dumps({'threads': nt, 'isa': info['isa'], 'rows': rows}))
    return 0 if all(r['exact'] for r in rows) else 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                   help='thread counts to compare (default: 1 2)')
    p.add_argument('--repeat', type=int, default=9, help='timed repeats per shape (default 9)')
    p.add_argument('--shapes', nargs='+', default=DEFAULT_SHAPES, help='MxKxN shapes')
    p.add_argument('--isa', choices=['native', 'avx2', 'portable'], default=None,
                   help='build a narrower code path than the CPU allows (BINARY_NET_ISA)')
    p.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                   help="'cpu': time one-thread runs with the thread's CPU time")
    p.add_argument('--json', action='store_true', help='also print a JSON line per thread count')
    p.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(args)

    print(machine.describe_machine(flags=True))
    for var in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'):
        print('%s: %s' % (var, os.environ.get(var, '(not set)')))
    status = 0
    for nt in args.threads:
        env = machine.thread_env(nt)
        if args.isa:
            env['BINARY_NET_ISA'] = args.isa
        print('\n%d thread(s): median of %d interleaved repeats, %s time'
              % (nt, args.repeat, 'CPU' if args.clock == 'cpu' and nt == 1 else 'wall-clock'),
              flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), '--child', str(nt), '--clock',
               args.clock, '--repeat', str(args.repeat), '--shapes'] + args.shapes
        if args.json:
            cmd.append('--json')
        status |= subprocess.run(cmd, env=env).returncode
    return status


if __name__ == '__main__':
    sys.exit(main())
