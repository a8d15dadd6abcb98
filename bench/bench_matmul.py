"""Benchmark: XNOR-popcount product vs numpy float32 matmul, side by side.

    python bench/bench_matmul.py [--threads 1 2] [--repeat N] [--isa native avx2 portable]
                                 [--shapes 256x4096x4096 ...] [--clock wall|cpu] [--ghz F]

For each shape M x K x N (A: M x K activations, B: K x N weights), it times

* numpy:  ``A @ B`` in float32;
* xnor:   ``PackedDense(B).matmul_signs(A)``, the weights packed once beforehand,
          the activations packed inside the timed call (a real layer packs its
          input every batch);
* kernel: ``PackedDense(B).matmul_packed(pack_signs(A))`` without the packing.

Repeats are interleaved (numpy, xnor, kernel, pack, numpy, ...), and each timed call
comes right after an untimed call of the same function: each is timed with its own
operands in cache, as in a loop of its own, rather than after the other side has
flushed the caches (numpy's weights are 64 MB at 4096 x 4096, the packed ones 2 MB;
right after numpy's product, the 256x4096x4096 kernel measured 8-24% slower). The median is reported, with the
ratio of the fastest runs beside it. Times are wall-clock by
default; ``--clock cpu`` times one-thread runs with the calling thread's CPU
time instead, which leaves out the time it spent descheduled on a busy machine.
Each (code path, thread count) runs in its own subprocess with OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS set, so numpy's BLAS and the XNOR kernels
use the same number of threads; ``--isa native avx2`` compares the code paths
(BINARY_NET_ISA) side by side, and a summary table of the ratios ends the run.
The kernel's time per 256-bit word of XOR-popcount work (M * N * ceil(K / 64) / 4
words) is printed in ns, and in cycles with ``--ghz`` (the core clock: ``perf
stat`` cannot count cycles in many virtual machines), and as a share of the
ceiling of its inner loop: the same loop run on data that stays in L1
(``binary_net.kernels.library.ceiling_ns_per_word``), measured in the same run, so
the share needs no clock rate (AVX2 and AVX-512 paths). The XNOR result is checked
against ``sign(A) @ sign(B)`` once per shape; the exit status is 1 if it differs.
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
    from binary_net.kernels.library import ceiling_ns_per_word
    ceiling = ceiling_ns_per_word()
    if ceiling:
        print('  inner loop alone, data in L1 (csrc/xk_ceiling.h): %.3f ns per 256-bit word%s'
              % (ceiling, ', %.2f cycles at %.2f GHz' % (ceiling * args.ghz, args.ghz)
                 if args.ghz else ''))
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
                f()                              # untimed: see the module's docstring
                t0 = clock()
                f()
                times[name].append(clock() - t0)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        best = {k: 1e3 * float(np.min(v)) for k, v in times.items()}
        words = M * N * (-(-Kd // 64)) / 4.0
        ns_word = 1e6 * med['kernel'] / words * nt        # per thread
        rows.append(dict(shape=spec, exact=exact, median_ms=med, min_ms=best,
                         ns_per_word=ns_word, ceiling_ns_per_word=ceiling))
        print('  %-15s numpy %8.2f ms | xnor %7.2f ms (pack alone %5.2f) -> %5.1fx (best-of %5.1fx)'
              ' | kernel only %7.2f ms -> %5.1fx (best-of %5.1fx) | exact: %s'
              % (spec, med['numpy'], med['xnor'], med['pack'], med['numpy'] / med['xnor'],
                 best['numpy'] / best['xnor'], med['kernel'], med['numpy'] / med['kernel'],
                 best['numpy'] / best['kernel'], 'yes' if exact else 'NO'),
              flush=True)
        print('  %-15s kernel: %.3f ns per 256-bit word per thread%s%s'
              % ('', ns_word, ', %.2f cycles at %.2f GHz' % (ns_word * args.ghz, args.ghz)
                 if args.ghz else '',
                 ', %.0f%% of the inner loop\'s ceiling' % (100 * ceiling / ns_word)
                 if ceiling else ''), flush=True)
    print('JSON ' + json.dumps({'threads': nt, 'isa': info['isa'], 'rows': rows}), flush=True)
    return 0 if all(r['exact'] for r in rows) else 1


def summary(results, shapes):
    """The ratios of every (code path, threads) run, one line per shape."""
    cols = [r for r in results if r]
    head = ''.join('  %-26s' % ('%s, %d thr' % (r['isa'], r['threads'])) for r in cols)
    print('\nSummary: numpy float32 time / xnor time (with packing | kernel only)')
    print('%-15s%s' % ('shape', head))
    for spec in shapes:
        line = '%-15s' % spec
        for r in cols:
            row = next((x for x in r['rows'] if x['shape'] == spec), None)
            if row:
                m = row['median_ms']
                line += '  %8.1fx | %6.1fx       ' % (m['numpy'] / m['xnor'],
                                                   m['numpy'] / m['kernel'])
        print(line)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                   help='thread counts to compare (default: 1 2)')
    p.add_argument('--repeat', type=int, default=9, help='timed repeats per shape (default 9)')
    p.add_argument('--shapes', nargs='+', default=DEFAULT_SHAPES, help='MxKxN shapes')
    p.add_argument('--isa', choices=['native', 'avx2', 'portable'], nargs='+', default=None,
                   help='code paths to compare side by side (BINARY_NET_ISA; default: '
                        '$BINARY_NET_ISA or native)')
    p.add_argument('--ghz', type=float, default=None,
                   help='core clock in GHz, to print cycles per 256-bit word')
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
    results = []
    for isa in args.isa or [None]:
        for nt in args.threads:
            env = machine.thread_env(nt)
            if isa:
                env['BINARY_NET_ISA'] = isa
            print('\n%s%d thread(s): median of %d interleaved repeats, %s time'
                  % ('%s path, ' % isa if isa else '', nt, args.repeat,
                     'CPU' if args.clock == 'cpu' and nt == 1 else 'wall-clock'), flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), '--child', str(nt), '--clock',
                   args.clock, '--repeat', str(args.repeat), '--shapes'] + args.shapes
            if args.ghz:
                cmd += ['--ghz', str(args.ghz)]
            code, result = machine.run_child(cmd, env, args.json)
            status |= code
            results.append(result)
    summary(results, args.shapes)
    return status

if __name__ == '__main__':
    sys.exit(main())
