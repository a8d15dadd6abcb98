"""Cortex-M cost of the C export: flash, RAM and instructions per inference.

For each core (Cortex-M3 on QEMU's mps2-an385, Cortex-M4 on mps2-an386) and
each popcount of the export (builtin = libgcc's __popcountdi2, swar, table),
the shipped MNIST model is exported, built with ``arm-none-eabi-gcc -Os``, run
under ``qemu-system-arm -icount shift=0`` on the first N MNIST test images and
checked bit for bit against ``--mode int``; then (``--cifar-images N``) the
shipped CIFAR-10 model on the Cortex-M4, on the first N CIFAR-10 test images, and
(``--cifar N``) the full-width CIFAR-10 network with random weights, on N random
images.

Instructions are counted, not timed: with -icount shift=0 each instruction
advances QEMU's virtual clock by 1 ns, the firmware reads SysTick around every
``PREFIX_predict()`` call and converts ticks to instructions with a loop of
known length (see binary_net/deploy/firmware.py). They are deterministic, unlike the
host's timings, but they are not cycles of a real core: wait states, the
multiplier and the pipeline are not modelled.

    PYLEARN2_DATA_PATH=../shared/data python bench/bench_cortex_m.py [--images 1000] [--cifar 2]
        [--cifar-images 10 --cifar-data-path DIR]
"""
import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHIPPED = os.path.join(ROOT, 'models', 'mnist_xnor_1024.npz')
SHIPPED_CIFAR = os.path.join(ROOT, 'models', 'cifar10_xnor_64.npz')
sys.path.insert(0, HERE)


def measure(program, name, target, popcounts, codes, expected, directory):
    """Rows (target, popcount, flash, RAM, instructions/inference, exact, seconds)."""
    from binary_net.deploy import export, firmware

    rows = []
    export.write_c(program, directory, name, target=target)
    for popcount in popcounts:
        built = firmware.build(directory, name, target, popcount, variant=popcount)
        run = firmware.run_qemu(built.elf, target, codes, timeout=3600)
        exact = (np.array_equal(run.scores, expected)
                 and np.array_equal(run.labels, expected.argmax(axis=1)))
        rows.append((target, popcount, built.flash_bytes, built.ram_bytes,
                     run.instructions_per_inference, exact, run.seconds))
    return rows


def show(title, rows):
    print(title)
    print('| core | popcount | flash (bytes) | RAM (bytes) | instructions / inference '
          '| bit-exact | emulation (s) |')
    print('|---|---|---|---|---|---|---|')
    for target, popcount, flash, ram, instructions, exact, seconds in rows:
        print('| %s | %s | %s | %s | %s | %s | %.1f |'
              % (target, popcount, format(flash, ','), format(ram, ','),
                 format(int(round(instructions)), ','), 'yes' if exact else 'NO', seconds))
    by = {(r[0], r[1]): r[4] for r in rows}
    for target in sorted({r[0] for r in rows}):
        if (target, 'builtin') in by and (target, 'swar') in by:
            print('%s: builtin / swar instructions = %.2f' % (target, by[target, 'builtin']
                                                               / by[target, 'swar']))
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=1000, help='MNIST test images')
    parser.add_argument('--cifar', type=int, default=2, metavar='N',
                        help='random images for the full CIFAR-10 network (0: skip)')
    parser.add_argument('--data-path', help='data root (default: $PYLEARN2_DATA_PATH)')
    parser.add_argument('--cifar-images', type=int, default=0, metavar='N',
                        help='CIFAR-10 test images for the shipped CIFAR-10 model (default 0: '
                             'skip)')
    parser.add_argument('--cifar-data-path', metavar='DIR',
                        help='data root holding cifar10/ (default: --data-path)')
    args = parser.parse_args(argv)

    from binary_net import data as datasets, modelfile, networks
    from binary_net.deploy import export, firmware
    from binary_net.infer import fold, integer

    missing = firmware.toolchain_missing() or firmware.qemu_missing()
    if missing:
        print('skipped: %s' % missing)
        return 0
    def shipped(path, dataset, data_path, count, targets, popcounts):
        data = datasets.load(dataset, data_path)
        values, spec, _ = modelfile.load_model(path)
        net = fold(spec, values).calibrate(datasets.to_unit_range(data['train'][0][:1000]))
        X = datasets.to_unit_range(data['test'][0][:count])
        program = integer.compile_network(net)
        expected = net.predict_scores(X, mode='int')
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for target in targets:
                rows += measure(program, dataset, target, popcounts,
                                integer.input_codes(X), expected, os.path.join(tmp, target))
        show('Shipped %s model (%s), first %d test images:'
             % ({'mnist': 'MNIST', 'cifar10': 'CIFAR-10'}[dataset], os.path.basename(path),
                count), rows)

    shipped(SHIPPED, 'mnist', args.data_path, args.images, sorted(firmware.TARGETS),
            export.POPCOUNTS)
    if args.cifar_images > 0:
        shipped(SHIPPED_CIFAR, 'cifar10', args.cifar_data_path or args.data_path,
                args.cifar_images, ['cortex-m4'], ['swar'])

    if args.cifar > 0:
        from bench_networks import random_network

        cifar = random_network(networks.cifar10_spec())
        rng = np.random.RandomState(0)
        images = datasets.to_unit_range(rng.randint(0, 256, (16 + args.cifar, 3, 32, 32)))
        cifar.calibrate(images[:16])
        X = images[16:]
        expected = cifar.predict_scores(X, mode='int')
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure(integer.compile_network(cifar), 'cifar10', 'cortex-m4', ['swar'],
                           integer.input_codes(X), expected, tmp)
        show('Full CIFAR-10 network (128-128-256-256-512-512 filters, 1024 units), random '
             'weights, %d random images:' % args.cifar, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
