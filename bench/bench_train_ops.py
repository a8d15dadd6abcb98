"""Benchmark: the training ops this package replaces, against Theano's own, side by side.

    python bench/bench_train_ops.py [--threads 2] [--repeat 20] [--batch 50]

On the CIFAR-10 reference network's layer shapes, batch 50, with OpenMP on for
both sides (Theano's ``openmp=True`` ops):

* ``MaxPoolGrad`` of 2x2 pooling against
  :class:`~binary_net.theano_ext.pool.TiledMaxPoolGrad`.

(Theano's convolution gradients are not here: this package runs them as they
are, with OpenMP on. A vectorized im2col/col2im spliced into Theano's
``corr_gemm.c`` measured 0.97-1.02x of Theano's on the Intel Xeon with AMX of the
README, 2026-12-02, as an earlier session had found on Ice Lake, and was left out.)

Every pair is checked bit for bit before it is timed; the times are the median
of ``--repeat`` calls, the two sides alternating, and the ratio is Theano's time
over ours.
"""
import argparse
import os
import sys
import time

import machine
from binary_net.argtypes import int_range

POOLS = [('pool 128 @32', 128, 32), ('pool 256 @16', 256, 16), ('pool 512 @8', 512, 8)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int_range(1), default=2, help='OpenMP threads (default 2)')
    p.add_argument('--repeat', type=int_range(1), default=20, help='timed calls per op (median)')
    p.add_argument('--batch', type=int_range(1), default=50, help='images per batch (default 50)')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def pairs(batch, rng):
    """[(name, theirs, ours, inputs)] of compiled functions on random inputs."""
    import numpy as np
    import theano
    import theano.tensor as T
    from theano.tensor.signal import pool
    from binary_net.theano_ext import TiledMaxPoolGrad
    out = []
    X, Z, G = T.tensor4(), T.tensor4(), T.tensor4()
    for name, c, side in POOLS:
        x = rng.randint(-8, 9, size=(batch, c, side, side)).astype('float32')
        z = x.reshape(batch, c, side // 2, 2, side // 2, 2).max(axis=(3, 5))
        g = rng.randn(*z.shape).astype('float32')
        theirs = theano.function([X, Z, G], pool.MaxPoolGrad(ignore_border=True, openmp=True)(
            X, Z, G, (2, 2), (2, 2), (0, 0)))
        ours = theano.function([X, Z, G], TiledMaxPoolGrad((2, 2))(X, Z, G))
        out.append((name + ' grad', theirs, ours, (x, z, g)))
    return out


def worker(args):
    import numpy as np
    rows = []
    for name, theirs, ours, inputs in pairs(args.batch, np.random.RandomState(0)):
        a, b = theirs(*inputs), ours(*inputs)
        if not np.array_equal(a, b):
            raise SystemExit('%s: the two ops disagree' % name)
        times = ([], [])
        for _ in range(args.repeat):
            for fn, bucket in ((theirs, times[0]), (ours, times[1])):
                started = time.perf_counter()
                fn(*inputs)
                bucket.append(time.perf_counter() - started)
        t0, t1 = (sorted(t)[len(t) // 2] for t in times)
        rows.append((name, t0, t1))
    print('%-28s %12s %12s %8s' % ('op (batch %d)' % args.batch, 'Theano ms', 'ours ms', 'ratio'))
    for name, t0, t1 in rows:
        print('%-28s %12.2f %12.2f %7.2fx' % (name, t0 * 1e3, t1 * 1e3, t0 / t1))
    total0, total1 = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print('%-28s %12.2f %12.2f %7.2fx   (bit-identical outputs)'
          % ('all', total0 * 1e3, total1 * 1e3, total0 / total1))


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    print(machine.describe_machine(flags=True, cores=True))
    print('load average before: %.2f' % os.getloadavg()[0])
    env = machine.thread_env(args.threads)
    print('threads: %d' % args.threads)
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', '--repeat', str(args.repeat),
           '--batch', str(args.batch)]
    code, _ = machine.run_child(cmd, env)
    print('load average after:  %.2f' % os.getloadavg()[0])
    return code


if __name__ == '__main__':
    sys.exit(main())
