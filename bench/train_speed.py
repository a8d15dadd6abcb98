"""Benchmark: training images/s of the reference networks, on 1 and 2 threads.

    python bench/train_speed.py [--threads 1 2] [--nets xnor float cifar cifarfloat]
                                [--rounds 5] [--steps 3] [--baseline]
                                [--peer torch] [--json FILE]

Nets (one Theano training step = forward, backward, Adam and, for XNOR layers,
BinaryNet's binary update; the same compiled function ``Trainer._train`` that
``train/*.py`` run):

* ``xnor``:  the MNIST XNOR MLP, ``networks.mnist_spec(4096)`` (784-4096x3-10,
  batch norm, dropout, squared hinge), batch 100;
* ``float``: its float twin, the same network with plain dense layers in place
  of the XNOR ones (no binarization, no alpha, no K, no clipping), batch 100;
* ``cifar``: the CIFAR-10 XNOR network, ``networks.cifar10_spec()``, batch 50;
  its seconds per epoch are for the 45000 training images of the default split;
* ``cifarfloat``: its float twin, plain convolution and dense layers in place
  of the XNOR ones, batch 50.

``--baseline`` also times the straightforward graph (the fused C ops of
:mod:`binary_net.theano_ext` switched off, plain ``theano.function``), to show
what they gain. ``--peer torch`` times the same networks written in PyTorch
(same layers, alpha, K, straight-through sign, BinaryNet's scaled Adam step,
clipping and alpha refresh), eager and under ``torch.compile``, if torch is
installed (it is not a dependency of this project).

Each thread count runs in its own subprocesses (one for Theano, one for
PyTorch, so that each runs with its own default OpenMP settings) with
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS set (and
``torch.set_num_threads``). All candidates of a worker are compiled first; then
``--rounds`` rounds each time ``--steps`` consecutive steps of every candidate
in turn, so that a load change on the machine hits all of them alike; the
median round is reported. Inputs are fixed random batches (the speed does not
depend on the values). The machine should be otherwise idle: the load average
is printed before and after.
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
CIFAR_EPOCH_IMAGES = 45000
MNIST_EPOCH_IMAGES = 50000
NETS = {'xnor': ('MNIST XNOR MLP 784-4096x3-10', 100),
        'float': ('MNIST float twin (dense layers)', 100),
        'cifar': ('CIFAR-10 XNOR net', 50),
        'cifarfloat': ('CIFAR-10 float twin (conv layers)', 50)}


def float_twin(spec):
    """The same network with full-precision dense layers in place of XNOR ones."""
    twin = json.loads(json.dumps(spec))
    twin['name'] = spec['name'] + '_float'
    layers = []
    for entry in spec['layers']:
        if entry['type'] == 'xnor_dense':
            entry = dict(type='dense', num_units=entry['num_units'], nonlinearity='identity')
        elif entry['type'] == 'xnor_conv':
            entry = dict(type='conv', num_filters=entry['num_filters'],
                         filter_size=entry['filter_size'], stride=entry['stride'],
                         pad=entry['pad'], flip_filters=True, nonlinearity='identity')
        layers.append(entry)
    twin['layers'] = layers
    return twin


def specs(cifar_filters=None, cifar_dense=1024):
    from binary_net import networks
    xnor = networks.mnist_spec(num_units=4096)
    cifar = networks.cifar10_spec(**({} if cifar_filters is None else dict(
        filters=tuple(cifar_filters), dense_units=cifar_dense)))
    return {'xnor': xnor, 'float': float_twin(xnor), 'cifar': cifar,
            'cifarfloat': float_twin(cifar)}


# ---------------------------------------------------------------------------
# Theano candidates
# ---------------------------------------------------------------------------

def _batch(spec, batch_size, rng):
    import numpy as np
    shape = [batch_size] + list(spec['input_shape'][1:])
    X = rng.uniform(0, 1, size=shape).astype('float32')
    if spec['name'].startswith('cifar10'):
        X = (X * 2 - 1).astype('float32')
    labels = rng.randint(0, 10, size=batch_size)
    if spec['loss'] == 'squared_hinge':
        y = -np.ones((batch_size, 10), dtype='float32')
        y[np.arange(batch_size), labels] = 1
    else:
        y = labels.astype('int32')
    return X, y


def theano_candidate(spec, batch_size, fused):
    """A callable running one training step of ``spec`` with a compiled Trainer."""
    import numpy as np
    from binary_net import theano_ext, train as training
    with theano_ext.enabled(fused):
        started = time.time()
        trainer = training.Trainer(spec, seed=1)
        compile_s = time.time() - started
    trainer.learning_rate.set_value(np.float32(1e-3))
    X, y = _batch(spec, batch_size, np.random.RandomState(0))
    return (lambda: trainer._train(X, y)), compile_s


# ---------------------------------------------------------------------------
# PyTorch peers: the same networks, the same update rule
# ---------------------------------------------------------------------------

def torch_candidates(which, batch_sizes, filters=None, dense=1024):
    """{'name': step callable} for eager and torch.compile versions of the nets."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(1)

    def sign(v):
        return torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))

    def binary_input(x):
        # sign with the straight-through estimator: gradient 1 where |x| <= 1.
        clipped = F.hardtanh(x)
        return clipped + (sign(x) - clipped).detach()

    class XnorLinear(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-1, 1)
                                       * np.sqrt(6. / (n_in + n_out)))
            self.bias = nn.Parameter(torch.zeros(n_out))
            self.binary = True

        def forward(self, x):
            x = x.flatten(1)
            K = x.abs().mean(dim=1, keepdim=True)
            w = self.weight
            # gradient taken at the binary weights (BinaryNet): identity to W,
            # alpha held constant on that path
            w_binary = w + (sign(w) - w).detach()
            alpha = w.detach().abs().mean(dim=0)
            return (binary_input(x) @ w_binary) * K * alpha + self.bias

    class XnorConv(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            fan = c_in * 9 + c_out * 9
            self.weight = nn.Parameter(torch.empty(c_out, c_in, 3, 3).uniform_(-1, 1)
                                       * np.sqrt(6. / fan))
            self.bias = nn.Parameter(torch.zeros(c_out))
            self.register_buffer('box', torch.full((1, 1, 3, 3), 1. / 9))
            self.binary = True

        def forward(self, x):
            K = F.conv2d(x.abs().mean(dim=1, keepdim=True), self.box, padding=1)
            w = self.weight
            w_binary = w + (sign(w) - w).detach()
            alpha = w.detach().abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
            y = F.conv2d(binary_input(x), w_binary, padding=1)
            return y * K * alpha + self.bias.view(1, -1, 1, 1)

    def mlp(binary):
        layers, n_in = [], 784
        for i in range(3):
            if i:
                layers.append(nn.BatchNorm1d(4096, eps=1e-4, momentum=0.1))
            layers.append(XnorLinear(n_in, 4096) if binary else nn.Linear(n_in, 4096))
            if i:
                layers.append(nn.Dropout(0.5))
            n_in = 4096
        layers += [nn.Linear(4096, 10), nn.BatchNorm1d(10, eps=1e-4, momentum=0.1)]
        return nn.Sequential(nn.Flatten(), *layers)

    def cifar(binary=True):
        f = tuple(filters or (128, 128, 256, 256, 512, 512))
        bn2 = lambda c: nn.BatchNorm2d(c, eps=1e-4, momentum=0.1)  # noqa: E731
        conv = XnorConv if binary else (  # noqa: E731
            lambda c_in, c_out: nn.Conv2d(c_in, c_out, 3, padding=1))
        linear = XnorLinear if binary else nn.Linear
        layers = [nn.Conv2d(3, f[0], 3, padding=1), bn2(f[0]),
                  conv(f[0], f[1]), nn.MaxPool2d(2), bn2(f[1]),
                  conv(f[1], f[2]), bn2(f[2]),
                  conv(f[2], f[3]), nn.MaxPool2d(2), bn2(f[3]),
                  conv(f[3], f[4]), bn2(f[4]),
                  conv(f[4], f[5]), nn.MaxPool2d(2), bn2(f[5]), nn.Flatten(),
                  linear(f[5] * 16, dense), nn.BatchNorm1d(dense, eps=1e-4),
                  linear(dense, dense), nn.BatchNorm1d(dense, eps=1e-4),
                  nn.Linear(dense, 10)]
        return nn.Sequential(*layers)

    def make_step(model, loss_name, compiled):
        binary = [m for m in model.modules() if getattr(m, 'binary', False)]
        binary_ids = {id(m.weight) for m in binary}
        def lr_scale(weight):   # BinaryNet's 1 / sqrt(1.5 / (fan_in + fan_out))
            fans = weight.shape[0] + weight.shape[1]
            return 1. / np.sqrt(1.5 / (fans if weight.dim() == 2 else fans * 9))
        groups = [{'params': [m.weight], 'lr': 1e-3 * lr_scale(m.weight)} for m in binary]
        groups.append({'params': [p for p in model.parameters() if id(p) not in binary_ids]})
        optimizer = torch.optim.Adam(groups, lr=1e-3)
        forward = torch.compile(model) if compiled else model

        def loss_fn(out, target):
            if loss_name == 'squared_hinge':
                return torch.mean(torch.clamp(1. - target * out, min=0.) ** 2)
            return F.cross_entropy(out, target)

        def step(X, y):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(X), y)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for m in binary:
                    m.weight.clamp_(-1, 1)
                    m.xalpha = (m.weight.abs().mean(dim=0) if m.weight.dim() == 2
                                else m.weight.abs().mean(dim=(1, 2, 3)))
            return loss
        return step

    candidates = {}
    rng = np.random.RandomState(0)
    for net in which:
        batch_size = batch_sizes[net]
        if net.startswith('cifar'):
            X = torch.from_numpy(rng.uniform(-1, 1, (batch_size, 3, 32, 32)).astype('float32'))
            y = torch.from_numpy(rng.randint(0, 10, batch_size)).long()
            loss_name = 'cross_entropy'
        else:
            X = torch.from_numpy(rng.uniform(0, 1, (batch_size, 1, 28, 28)).astype('float32'))
            y = -torch.ones(batch_size, 10)
            y[torch.arange(batch_size), torch.from_numpy(rng.randint(0, 10, batch_size))] = 1
            loss_name = 'squared_hinge'
        for compiled in (False, True):
            model = (cifar(net == 'cifar') if net.startswith('cifar')
                     else mlp(net == 'xnor'))
            model.train()
            step = make_step(model, loss_name, compiled)
            started = time.time()
            step(X, y)  # compiles under torch.compile
            candidates['torch_%s_%s' % ('compile' if compiled else 'eager', net)] = (
                (lambda step=step, X=X, y=y: step(X, y)), time.time() - started)
    return candidates


# ---------------------------------------------------------------------------
# Worker: one thread count
# ---------------------------------------------------------------------------

def worker(args):
    """Time the candidates of one part ('theano' or 'torch') on args.worker threads."""
    batch_sizes = {net: NETS[net][1] for net in NETS}
    candidates, result = {}, {}
    if args.part == 'theano':
        all_specs = specs(args.cifar_filters, args.cifar_dense)
        for net in args.nets:
            candidates['theano_' + net] = theano_candidate(all_specs[net], batch_sizes[net],
                                                           True)
            if args.baseline:
                candidates['plain_' + net] = theano_candidate(all_specs[net],
                                                              batch_sizes[net], False)
    else:
        try:
            import torch
        except ImportError as error:
            result['_peer_error'] = 'torch not installed (%s)' % error
        else:
            torch.set_num_threads(args.worker)
            result['_torch_version'] = torch.__version__
            candidates.update(torch_candidates(args.nets, batch_sizes, args.cifar_filters,
                                               args.cifar_dense))
    for run, _ in candidates.values():   # warm up: first calls allocate
        run()
        run()
    times = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, (run, _) in candidates.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                run()
            times[name].append((time.perf_counter() - started) / args.steps)
    for name, (_, compile_s) in candidates.items():
        net = name.rsplit('_', 1)[1]   # net names have no underscore
        step = sorted(times[name])[len(times[name]) // 2]
        result[name] = dict(step_s=step, images_per_s=batch_sizes[net] / step,
                            compile_s=compile_s, rounds=times[name])
    print('RESULT ' + json.dumps(result))


def run_worker(threads, part, args):
    env = machine.thread_env(threads, sleeping=part != 'torch')
    command = [sys.executable, os.path.abspath(__file__), '--worker', str(threads),
               '--part', part, '--nets'] + args.nets + [
               '--rounds', str(args.rounds), '--steps', str(args.steps),
               '--cifar-dense', str(args.cifar_dense)]
    if args.cifar_filters:
        command += ['--cifar-filters'] + [str(f) for f in args.cifar_filters]
    if args.baseline:
        command.append('--baseline')
    proc = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    sys.stderr.write(proc.stderr[-4000:])
    raise SystemExit('%s worker for %d thread(s) failed (exit %d)'
                     % (part, threads, proc.returncode))


def report(results, args):
    import numpy
    import theano
    print(machine.describe_machine(flags=True))
    ldflags = theano.config.blas.ldflags
    print('theano %s (blas.ldflags: %s), numpy %s, BLAS: %s%s' % (
        theano.__version__, ' '.join(f for f in ldflags.split() if not f.startswith('-D'))
        or 'empty, its GEMMs are numpy\'s', numpy.__version__,
        machine.blas_description(numpy),
        ''.join(', torch %s' % results[t]['_torch_version'] for t in args.threads[:1]
                if '_torch_version' in results[t])))
    from binary_net import kernels
    print('gradients of the binary convolutions: %s' % (
        'Intel AMX (binary_net.kernels.conv_grad; BINARY_NET_AMX=0 turns it off)'
        if kernels.amx_available()
        else 'Theano\'s CorrMM gradients (no AMX here, or BINARY_NET_AMX=0)'))
    try:
        load = os.getloadavg()[0]
        print('load average before: %.2f' % results['_load_before'])
        print('load average after:  %.2f' % load)
    except (OSError, KeyError):
        pass
    if args.cifar_filters:
        print('CIFAR-10 nets with filters %s and %d dense units'
              % (' '.join(map(str, args.cifar_filters)), args.cifar_dense))
    names = [('theano_' + n, 'Theano, fused ops', n) for n in args.nets]
    if args.baseline:
        names += [('plain_' + n, 'Theano, straightforward', n) for n in args.nets]
    if args.peer == 'torch':
        names += [('torch_eager_' + n, 'PyTorch eager', n) for n in args.nets]
        names += [('torch_compile_' + n, 'PyTorch torch.compile', n) for n in args.nets]
    threads = args.threads
    print()
    header = '%-34s %-26s %6s' % ('network', 'implementation', 'batch')
    header += ''.join('  %13s' % ('%d thr img/s' % t) for t in threads)
    print(header)
    for key, impl, net in names:
        if not all(key in results[t] for t in threads):
            continue
        row = '%-34s %-26s %6d' % (NETS[net][0], impl, NETS[net][1])
        row += ''.join('  %13.1f' % results[t][key]['images_per_s'] for t in threads)
        print(row)
    print()
    for t in threads:
        r = results[t]
        lines = []
        if 'theano_xnor' in r and 'theano_float' in r:
            xnor_epoch = MNIST_EPOCH_IMAGES / r['theano_xnor']['images_per_s']
            float_epoch = MNIST_EPOCH_IMAGES / r['theano_float']['images_per_s']
            lines.append('XNOR/float images/s ratio %.3f' % (float_epoch / xnor_epoch))
            lines.append('MNIST epoch (%d images) XNOR %.0f s, float %.0f s, ratio %.2f'
                         % (MNIST_EPOCH_IMAGES, xnor_epoch, float_epoch,
                            xnor_epoch / float_epoch))
        for net in args.nets:
            if 'plain_' + net in r:
                lines.append('%s fused/straightforward %.2fx' % (
                    net, r['theano_' + net]['images_per_s'] / r['plain_' + net]['images_per_s']))
            for peer in ('torch_eager_', 'torch_compile_'):
                if peer + net in r:
                    lines.append('%s Theano/%s %.2f' % (
                        net, peer.strip('_'), r['theano_' + net]['images_per_s']
                        / r[peer + net]['images_per_s']))
        if 'theano_cifar' in r and 'theano_cifarfloat' in r:
            lines.append('CIFAR-10 XNOR/float images/s ratio %.3f' % (
                r['theano_cifar']['images_per_s'] / r['theano_cifarfloat']['images_per_s']))
        if 'theano_cifar' in r:
            lines.append('CIFAR-10 epoch (%d images) %.0f s' % (
                CIFAR_EPOCH_IMAGES, CIFAR_EPOCH_IMAGES / r['theano_cifar']['images_per_s']))
        print('%d thread(s): %s' % (t, '; '.join(lines)))
        if r.get('_peer_error'):
            print('  peer: %s' % r['_peer_error'])
    if len(threads) > 1:
        t0, t1 = threads[0], threads[-1]
        for key, impl, net in names:
            if key in results[t0] and key in results[t1]:
                print('scaling %d->%d threads, %s %s: %.2fx' % (
                    t0, t1, impl, net, results[t1][key]['images_per_s']
                    / results[t0][key]['images_per_s']))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--nets', nargs='+', choices=sorted(NETS),
                        default=['xnor', 'float', 'cifar', 'cifarfloat'])
    parser.add_argument('--rounds', type=int, default=5,
                        help='timed rounds per candidate; the median is reported')
    parser.add_argument('--steps', type=int, default=3, help='training steps per round')
    parser.add_argument('--baseline', action='store_true',
                        help='also time the straightforward graph (fused ops off)')
    parser.add_argument('--peer', choices=['torch'], default=None,
                        help='also time PyTorch eager and torch.compile, if installed')
    parser.add_argument('--json', default=None, help='write all timings to this file')
    parser.add_argument('--cifar-filters', type=int, nargs=6, default=None, metavar='F',
                        help='time a narrower CIFAR-10 net (for Theano and the PyTorch peer)')
    parser.add_argument('--cifar-dense', type=int, default=1024,
                        help='units of its two dense layers (with --cifar-filters)')
    parser.add_argument('--worker', type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument('--part', default='theano', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        sys.path.insert(0, ROOT)
        return worker(args)
    results = {}
    load_before = os.getloadavg()[0]
    for threads in args.threads:
        results[threads] = run_worker(threads, 'theano', args)
        if args.peer == 'torch':
            results[threads].update(run_worker(threads, 'torch', args))
    results['_load_before'] = load_before
    sys.path.insert(0, ROOT)
    report(results, args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
