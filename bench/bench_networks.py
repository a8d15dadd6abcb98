"""Benchmark: whole networks in xnor mode against float mode, side by side.

    python bench/bench_networks.py [--threads 1 16] [--repeat N] [--clock wall|cpu]
                                   [--isa native avx2 portable] [--batch B]
                                   [--mnist-batch B] [--cifar-batch B]
                                   [--mnist-model PATH] [--networks mnist4096 ...]

Networks (folded with binary_net.infer.fold, run with FoldedNetwork.predict_scores):

* ``mnist4096``: the reference MNIST MLP (3 XNOR dense layers of 4096 units), random weights;
* ``mnist-model``: a trained MNIST model file (``--mnist-model``; the shipped 1024-unit
  model by default, skipped when absent);
* ``cifar10``: the reference CIFAR-10 network (5 XNOR convolutions, 2 XNOR dense
  layers), random weights, a small batch.

For each network the same batch of random images in [-1, 1] is run in float mode
and in xnor mode, alternately (float, xnor, float, ...) after one warm-up of each
(the xnor warm-up packs the weights, once; that time is reported apart), and the
medians are compared, in images/s and as a ratio. Each timed sample comes right after
an untimed one of the same mode, so that each mode is timed with its own weights in
cache, not the other mode's. The xnor scores are checked to be
bit-identical to the float scores.

Then a breakdown, from separately instrumented runs: the median time of every op
kind in both modes and, inside the XNOR ops of xnor mode, the time of packing the
activations (none where the convolution before packed them in its epilogue), of the
XNOR-popcount kernel, and of the rest (K, the scaling by K and alpha, the bias, the
fused pooling, batch norm and packing of the next convolution's input, conversions).

``--batch B`` sets both batch sizes; with small batches (``--batch 1``: one image
per call, as a server or an embedded user runs it) each timed sample is a run of
consecutive calls over at least 64 images, each call a fresh batch of B.

Each (code path, thread count) runs in its own subprocess with OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS / MKL_NUM_THREADS set (numpy's BLAS), BINARY_NET_ISA (``--isa``
compares code paths side by side) and ``binary_net.kernels.set_num_threads`` (the
XNOR kernels), so both modes get the same number of threads; a summary table of
the ratios ends the run. ``--clock cpu`` times one-thread runs by the thread's CPU
time, which a busy machine disturbs less than wall-clock time.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import machine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHIPPED_CANDIDATES = [os.path.join(ROOT, 'models', 'mnist_xnor_1024.npz'),
                      '/tmp/ship/mnist_xnor_1024.npz']
NETWORKS = ('mnist4096', 'mnist-model', 'cifar10')


# ---------------------------------------------------------------------------
# The child: one thread count
# ---------------------------------------------------------------------------

def random_network(spec, seed=0):
    import numpy as np
    from binary_net import infer as inference
    from binary_net.spec import expected_param_shapes

    rng = np.random.RandomState(seed)
    values = []
    for _, _, name, shape in expected_param_shapes(spec):
        if name == 'inv_std':
            value = rng.uniform(0.5, 1.5, shape)
        elif name == 'beta_filter':
            value = np.full(shape, 1.0 / np.prod(shape))
        else:
            value = rng.uniform(-1, 1, shape)
        values.append(value.astype(np.float32))
    return inference.fold(spec, values)


def build(name, args):
    """(description, FoldedNetwork, batch) of a benchmark network, or None to skip."""
    import numpy as np
    from binary_net import modelfile
    from binary_net.cli.common import open_model
    from binary_net.spec import cifar10_spec, mnist_spec

    if name == 'mnist4096':
        net, batch = random_network(mnist_spec(num_units=4096)), args.mnist_batch
        what = 'MNIST MLP 784-4096-4096-4096-10, random weights'
    elif name == 'cifar10':
        net, batch = random_network(cifar10_spec()), args.cifar_batch
        what = 'CIFAR-10 network (128-128-256-256-512-512 filters, 1024 units), random weights'
    else:
        path = args.mnist_model or next((p for p in SHIPPED_CANDIDATES if os.path.exists(p)),
                                        None)
        if not path or not os.path.exists(path):
            return None
        try:
            model = open_model(path)
            net, spec = model.network, model.spec
        except modelfile.ModelFileError as error:
            print('  (skipping %s: %s)' % (path, error))
            return None
        units = [e['num_units'] for e in spec['layers'] if e['type'] == 'xnor_dense']
        what = 'trained MNIST model %s (%s units)' % (path, '-'.join(map(str, units)))
        batch = args.mnist_batch
    rng = np.random.RandomState(1)
    calls = max(1, -(-64 // batch))       # images per timed sample: at least 64
    X = rng.uniform(-1, 1, (calls * batch,) + net.input_shape).astype(np.float32)
    return what, net, X, batch


def instrumented_run(net, X, mode, clock):
    """Per-op times of one run, plus the pack / kernel split inside the XNOR ops."""
    from binary_net import infer as inference, kernels
    from binary_net.infer import xnor

    ctx = inference.make_context(net, mode, {})
    ctx.keep_outputs = False            # as predict_scores
    x = ctx.network_input(X)
    per_op, inside = [], {'pack': 0.0, 'kernel': 0.0}
    for op in net.ops:
        if mode == 'xnor' and op.kind in ('xnor_dense', 'xnor_conv') and op.binary_input:
            packed = xnor.packed_weights(op)
            ready = ctx.prepared.get(op.index)
            t0 = clock()
            if ready is not None and ready[0] is x and len(ready) == 3:
                xp = ready[1]           # packed by the op before, in its own C pass
            else:
                xp = kernels.pack_signs(x.reshape(len(x), -1) if op.kind == 'xnor_dense' else x,
                                        axis=1)
            t1 = clock()
            if op.kind == 'xnor_dense':
                packed.matmul_packed(xp)
            else:
                packed.conv_packed(xp)
            t2 = clock()
            inside['pack'] += t1 - t0
            inside['kernel'] += t2 - t1
        t0 = clock()
        y = ctx.output(op, op(x, ctx))
        per_op.append(clock() - t0)
        x = y
    return per_op, inside


def child(args):
    sys.path.insert(0, ROOT)
    import numpy as np
    from binary_net import kernels

    nt = args.child
    kernels.set_num_threads(nt)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(nt)
    except ImportError:
        pass
    clock = machine.timing_clock(args.clock, nt)
    info = kernels.kernel_info()
    print('  numpy %s, BLAS: %s' % (np.__version__, machine.blas_description()))
    print('  xnor kernels: %s path, OpenMP %s, %d thread(s)'
          % (info['isa'], 'on' if info['openmp'] else 'off', info['num_threads']), flush=True)
    results = []
    status = 0
    for name in args.networks:
        built = build(name, args)
        if built is None:
            print('\n  %s: no model file, skipped' % name)
            continue
        what, net, X_all, batch = built
        batches = [X_all[i:i + batch] for i in range(0, len(X_all), batch)]
        X = batches[0]

        def run(mode):
            for xb in batches:
                net.predict_scores(xb, mode)

        t0 = time.perf_counter()
        ref = net.predict_scores(X, 'float')
        t1 = time.perf_counter()
        got = net.predict_scores(X, 'xnor')   # packs the weights, once
        t2 = time.perf_counter()
        identical = bool(np.array_equal(ref, got)) and all(
            np.array_equal(net.predict_scores(xb, 'float'), net.predict_scores(xb, 'xnor'))
            for xb in batches[1:4])
        status |= 0 if identical else 1
        times = {'float': [], 'xnor': []}
        for _ in range(args.repeat):
            for mode in ('float', 'xnor'):
                run(mode)                        # untimed: see the module's docstring
                start = clock()
                run(mode)
                times[mode].append((clock() - start) / len(batches))
        med = {m: float(np.median(v)) for m, v in times.items()}
        ips = {m: len(X) / med[m] for m in med}
        ratio = med['float'] / med['xnor']
        print('\n  %s: %s, batch %d%s' % (name, what, len(X), ' (%d calls per sample)'
                                         % len(batches) if len(batches) > 1 else ''))
        print('    float %9.1f images/s (%8.3f ms per batch) | xnor %9.1f images/s '
              '(%7.3f ms) | xnor/float speed %.1fx | scores bit-identical: %s'
              % (ips['float'], 1e3 * med['float'], ips['xnor'], 1e3 * med['xnor'], ratio,
                 'yes' if identical else 'NO'))
        print('    first xnor call (packs the weights once): %.1f ms; first float call %.1f ms'
              % (1e3 * (t2 - t1), 1e3 * (t1 - t0)))
        # Breakdown from instrumented runs (medians over repeats).
        kinds = [op.kind for op in net.ops]
        breakdown = {}
        for mode in ('float', 'xnor'):
            runs = [instrumented_run(net, X, mode, clock) for _ in range(max(3, args.repeat // 2))]
            per_op = np.median(np.array([r[0] for r in runs]), axis=0)
            by_kind = {}
            for kind, t in zip(kinds, per_op):
                by_kind[kind] = by_kind.get(kind, 0.0) + float(t)
            inside = {k: float(np.median([r[1][k] for r in runs])) for k in ('pack', 'kernel')}
            breakdown[mode] = {'by_kind': by_kind, 'inside': inside, 'total': float(per_op.sum())}
        for mode in ('float', 'xnor'):
            b = breakdown[mode]
            parts = ', '.join('%s %.2f' % (k, 1e3 * t)
                              for k, t in sorted(b['by_kind'].items(), key=lambda kv: -kv[1]))
            print('    %-5s ms by op: %s (sum %.2f)' % (mode, parts, 1e3 * b['total']))
        b = breakdown['xnor']
        binary = sum(t for k, t in b['by_kind'].items() if k in ('xnor_dense', 'xnor_conv'))
        # Separate measurements: on a busy machine the difference can come out negative.
        rest = max(0.0, binary - b['inside']['pack'] - b['inside']['kernel'])
        print('    xnor ops in xnor mode: %.2f ms = pack activations %.2f + XNOR-popcount '
              'kernel %.2f + K, scaling, bias, the fused batch norm / pooling / next '
              'packing %.2f; '
              'other ops %.2f ms'
              % (1e3 * binary, 1e3 * b['inside']['pack'], 1e3 * b['inside']['kernel'],
                 1e3 * rest, 1e3 * (b['total'] - binary)), flush=True)
        results.append(dict(network=name, batch=len(X), float_images_per_s=ips['float'],
                            xnor_images_per_s=ips['xnor'], ratio=ratio, identical=identical,
                            breakdown_ms={m: {k: 1e3 * t for k, t in b['by_kind'].items()}
                                          for m, b in breakdown.items()}))
    print('JSON ' + json.dumps({'threads': nt, 'isa': info['isa'], 'results': results}),
          flush=True)
    return status


def summary(runs):
    """One line per network: xnor images/s and the xnor/float ratio of every run."""
    runs = [r for r in runs if r]
    if not runs:
        return
    print('\nSummary: xnor images/s (xnor/float speed), scores bit-identical in every run')
    print('%-13s%s' % ('network', ''.join('  %-24s' % ('%s, %d thr' % (r['isa'], r['threads']))
                                          for r in runs)))
    for name in dict.fromkeys(x['network'] for r in runs for x in r['results']):
        line = '%-13s' % name
        for r in runs:
            x = next((x for x in r['results'] if x['network'] == name), None)
            line += '  %-24s' % ('%.0f (%.1fx), batch %d' % (x['xnor_images_per_s'], x['ratio'],
                                                            x['batch']) if x else '-')
        print(line)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, nargs='+', default=None,
                   help='thread counts to compare (default: 1 and the usable cores)')
    p.add_argument('--repeat', type=int, default=7, help='timed repeats per mode (default 7)')
    p.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                   help="'cpu': time one-thread runs with the thread's CPU time")
    p.add_argument('--isa', choices=['native', 'avx2', 'portable'], nargs='+', default=None,
                   help='XNOR code paths to compare side by side (BINARY_NET_ISA; default: '
                        '$BINARY_NET_ISA or native)')
    p.add_argument('--batch', type=int, default=None,
                   help='images per call for every network (e.g. 1); overrides the two below')
    p.add_argument('--mnist-batch', type=int, default=100,
                   help='MNIST images per batch (default 100, as the evaluation script)')
    p.add_argument('--cifar-batch', type=int, default=16,
                   help='CIFAR-10 images per batch (default 16)')
    p.add_argument('--mnist-model', metavar='PATH',
                   help='trained MNIST model (.npz or packed); default: the shipped '
                        'mnist_xnor_1024.npz if present')
    p.add_argument('--networks', nargs='+', choices=NETWORKS, default=list(NETWORKS))
    p.add_argument('--json', action='store_true', help='also print a JSON line per thread count')
    p.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(args)

    threads = args.threads or sorted({1, machine.usable_cores()})
    if args.batch is not None:
        args.mnist_batch = args.cifar_batch = args.batch
    if min(args.mnist_batch, args.cifar_batch) < 1:
        p.error('batch sizes must be >= 1')
    print(machine.describe_machine(cores=True))
    status = 0
    runs = []
    for isa in args.isa or [None]:
        for nt in threads:
            env = machine.thread_env(nt)
            if isa:
                env['BINARY_NET_ISA'] = isa
            print('\n%s%d thread(s) for numpy and the XNOR kernels: median of %d interleaved '
                  'repeats, %s time' % ('%s path, ' % isa if isa else '', nt, args.repeat,
                                        'CPU' if args.clock == 'cpu' and nt == 1
                                        else 'wall-clock'), flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), '--child', str(nt),
                   '--repeat', str(args.repeat), '--clock', args.clock,
                   '--mnist-batch', str(args.mnist_batch), '--cifar-batch', str(args.cifar_batch),
                   '--networks'] + args.networks
            if args.mnist_model:
                cmd += ['--mnist-model', args.mnist_model]
            code, result = machine.run_child(cmd, env, args.json)
            status |= code
            runs.append(result)
    summary(runs)
    return status

if __name__ == '__main__':
    sys.exit(main())
