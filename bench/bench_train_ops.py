"""Benchmark: the training ops this package replaces, against Theano's own, side by side.

    python bench/bench_train_ops.py [--threads 2] [--repeat 20] [--batch 50]

On the CIFAR-10 reference network's layer shapes, batch 50, with OpenMP on for
both sides (Theano's ``openmp=True`` ops):

* ``MaxPoolGrad`` of 2x2 pooling against
  :class:`~binary_net.theano_ext.pool.TiledMaxPoolGrad` (checked bit for bit);
* where Intel AMX runs, the two gradients of the binary convolutions (layers 2-6,
  +-1 inputs or weights): Theano's ``CorrMM_gradWeights`` / ``gradInputs`` with
  OpenMP over the images (:class:`~binary_net.theano_ext.conv.ParallelCorrMMGradWeights`,
  what the package runs without AMX) against
  :class:`~binary_net.theano_ext.conv.SignCorrGradWeights` /
  :class:`~binary_net.theano_ext.conv.SignCorrGradInputs` (checked against
  each other within 1e-5 relative, normwise: the same exact products summed in
  another order).

(A vectorized im2col/col2im spliced into Theano's ``corr_gemm.c`` measured
0.97-1.02x of Theano's on the Intel Xeon with AMX of the README, 2026-12-02, as an
earlier session had found on Ice Lake, and was left out.)

Every pair is checked before it is timed; the times are the median of
``--repeat`` calls, the two sides alternating, and the ratio is Theano's time
over ours.
"""
import argparse
import os
import sys
import time

import machine
from binary_net.argtypes import int_range

POOLS = [('pool 128 @32', 128, 32), ('pool 256 @16', 256, 16), ('pool 512 @8', 512, 8)]
# the binary convolutions of the reference network: (input channels, filters, side)
CONVS = [(128, 128, 32), (128, 256, 16), (256, 256, 16), (256, 512, 8), (512, 512, 8)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int_range(1), default=2, help='OpenMP threads (default 2)')
    p.add_argument('--repeat', type=int_range(1), default=20, help='timed calls per op (median)')
    p.add_argument('--batch', type=int_range(1), default=50, help='images per batch (default 50)')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def conv_pairs(batch, rng):
    """The pairs of the binary convolutions' gradients (none without AMX)."""
    import numpy as np
    import theano
    import theano.tensor as T
    from binary_net import kernels, theano_ext
    if not kernels.amx_available():
        print('no AMX here: the convolution gradients are Theano\'s, not compared')
        return []
    out = []
    A, Gz = T.ftensor4(), T.ftensor4()
    for c, f, side in CONVS:
        x = np.sign(rng.randn(batch, c, side, side)).astype('float32')
        w = np.sign(rng.randn(f, c, 3, 3)).astype('float32')
        gz = (rng.randn(batch, f, side, side) * 1e-3).astype('float32')
        gw_theirs = theano_ext.ParallelCorrMMGradWeights(border_mode=(1, 1))(A, Gz, shape=(3, 3))
        gx_theirs = theano_ext.ParallelCorrMMGradInputs(border_mode=(1, 1))(
            A, Gz, shape=(side, side))
        for name, theirs, ours, a in [
                ('gradW %d->%d @%d' % (c, f, side), gw_theirs,
                 theano_ext.SignCorrGradWeights((1, 1))(A, Gz), x),
                ('gradX %d->%d @%d' % (c, f, side), gx_theirs,
                 theano_ext.SignCorrGradInputs((1, 1))(A, Gz), w)]:
            out.append((name, theano.function([A, Gz], theirs),
                        theano.function([A, Gz], ours), (a, gz), 1e-5))
    return out


def pairs(batch, rng):
    """[(name, theirs, ours, inputs, tolerance)] of compiled functions on random
    inputs; tolerance 0 is bit for bit."""
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
        out.append((name + ' grad', theirs, ours, (x, z, g), 0))
    return out + conv_pairs(batch, rng)


def worker(args):
    import numpy as np
    rows = []
    for name, theirs, ours, inputs, tolerance in pairs(args.batch, np.random.RandomState(0)):
        a, b = theirs(*inputs), ours(*inputs)
        if not (np.array_equal(a, b) if tolerance == 0 else
                a.shape == b.shape and np.linalg.norm(a - b) <= tolerance * np.linalg.norm(a)):
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
    print('%-28s %12.2f %12.2f %7.2fx'
          % ('all', total0 * 1e3, total1 * 1e3, total0 / total1))
    print('(pooling bit-identical; convolution gradients within 1e-5 relative)')


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
