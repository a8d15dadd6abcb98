"""``python -m binary_net export``: standalone C99 inference code for a trained model.

Opens the model (:func:`binary_net.cli.common.open_model`), calibrates its integer
formats on the first ``--calibration-size`` training images of its dataset
(:func:`binary_net.cli.common.calibrate`, as the evaluation does for fixed and int
modes), compiles it to an integer network (:mod:`binary_net.infer.integer`) and writes
the C files (:mod:`binary_net.deploy.export`) and, for a Cortex-M ``--target``, a
firmware it builds where the toolchain is installed
(:mod:`binary_net.deploy.firmware`). Prints the flash and RAM the model needs.
"""
import os
import re

from .. import data
from ..data import preprocessing
from ..deploy import export, firmware
from ..infer import integer
from .common import (CommandError, add_calibration_argument, add_data_path_argument,
                     add_model_argument, calibrate, open_model, report_errors)

#: Datasets whose training images can calibrate an export.
DATASETS = data.DATASET_NAMES


def add_arguments(parser):
    """Arguments of ``python -m binary_net export``."""
    parser.epilog = ('Writes PREFIX.h (the API), PREFIX_weights.h (packed binary weights and '
                     'int16 constants), PREFIX.c (the inference) and PREFIX_example.c (a '
                     'harness reading raw int8 images), computing exactly what '
                     '--mode int of the evaluation scripts computes, and prints the flash and '
                     'RAM the model needs. Activation ranges are calibrated on the first '
                     '--calibration-size training images of the dataset. With a Cortex-M '
                     '--target it also writes a firmware (startup code, semihosting '
                     'harness, linker script, Makefile), builds it with arm-none-eabi-gcc '
                     'when installed and prints arm-none-eabi-size\'s flash and RAM.')
    add_model_argument(parser, 'model file (.npz) written by training, or a packed model '
                               'file (python -m binary_net pack)')
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='directory to write the C files into (created if needed)')
    parser.add_argument('--name', metavar='PREFIX',
                        help='C prefix of the files and of PREFIX_predict() '
                             '(default: the network\'s name)')
    add_calibration_argument(parser)
    add_data_path_argument(parser)
    parser.add_argument('--target', choices=('host',) + tuple(firmware.TARGETS),
                        default='host',
                        help='host: portable C99 with a host harness (default); cortex-m3, '
                             'cortex-m4: also a firmware for QEMU\'s MPS2 board of that core '
                             '(mps2-an385, mps2-an386) with start-up code, linker script and '
                             'Makefile, built with arm-none-eabi-gcc -Os when installed')
    parser.add_argument('--popcount', choices=export.POPCOUNTS,
                        help='popcount of the C code: builtin (__builtin_popcountll; the '
                             'host default), swar or table (portable; swar is the Cortex-M '
                             'default, where the builtin is a library call)')
    parser.add_argument('--no-build', action='store_true',
                        help='with a Cortex-M --target: write the sources and Makefile only')
    parser.add_argument('--dataset', choices=DATASETS,
                        help='dataset to calibrate on (default: the network\'s name); needed '
                             'for position-only files of the original code')


def _load(args):
    """(model, dataset, images calibrated on): the model opened and calibrated."""
    model = open_model(args.model, args.dataset)
    preprocess = preprocessing.from_file(args.model)
    if not preprocess.is_identity:
        raise CommandError('%s was trained with %s preprocessing, which the C export does not '
                           'implement (it feeds int8 pixels scaled to [-1, 1]); export a model '
                           'trained without --gcn/--zca' % (args.model, preprocess.describe()))
    dataset = args.dataset
    if dataset is None:
        dataset = model.spec.get('name')
        if dataset not in DATASETS:
            raise CommandError('cannot tell which training images calibrate the %r network: '
                               'give --dataset' % (model.spec.get('name'),))
    X_train = data.load(dataset, args.data_path)['train'][0]
    network = model.network
    if X_train.shape[1:] != network.input_shape:
        raise CommandError('the %s network takes inputs shaped %s, but %s images are shaped %s'
                           % (model.spec.get('name', 'given'), network.input_shape, dataset,
                              X_train.shape[1:]))
    # The C code is fed int8 pixels scaled as data.to_unit_range does.
    n = calibrate(network, X_train, args.calibration_size, dataset, pixel_scaling='default')
    return model, dataset, n


def _kib(n):
    return '%s bytes (%.1f KiB)' % (format(n, ','), n / 1024.0)


def _export(args):
    model, dataset, n_calib = _load(args)
    spec = model.spec
    program = integer.compile_network(model.network)
    name = args.name or re.sub(r'\W', '_', spec.get('name') or 'model')
    if name[:1].isdigit():
        name = 'model_' + name
    popcount = args.popcount or ('builtin' if args.target == 'host' else 'swar')
    written = export.write_c(program, args.out, name, os.path.basename(args.model), popcount,
                             args.target)
    built = None
    if args.target != 'host' and not args.no_build and not firmware.toolchain_missing():
        built = firmware.build(args.out, name, args.target, popcount)
    contents = model.contents + (', packed' if model.kind == 'packed' else '')
    print('Model: %s (%s network, %s)' % (args.model, spec.get('name', '?'), contents))
    print('Calibration: first %d %s training images' % (n_calib, dataset))
    print('Integer network (int8 Q0.7 input, int16 codes, int64 accumulators):')
    print(program.describe())
    print('Wrote: %s' % ', '.join(written.paths))
    detail = ', '.join('%s %s' % (k, format(v, ',')) for k, v in written.flash_detail.items()
                       if v)
    print('Flash: %s of constant data (%s)' % (_kib(written.flash_bytes), detail))
    print('RAM: %s (activation arena %s int16, scratch %s)'
          % (_kib(written.ram_bytes), format(written.arena_elements, ','),
             format(written.scratch_bytes, ',')))
    print('Popcount: %s' % popcount)
    if args.target == 'host':
        print('Build: cc -std=c99 -O2 -o %s_example %s.c %s_example.c' % (name, name, name))
    else:
        _report_firmware(args, name, written, built)


def run(args, parser=None):
    """Export ``args.model`` as C into ``args.out``; returns the exit status."""
    return report_errors(lambda: _export(args), also=(ValueError, RuntimeError))


def _report_firmware(args, name, written, built):
    cpu, board, core = firmware.TARGETS[args.target]
    if built is None:
        why = 'as asked (--no-build)' if args.no_build else firmware.toolchain_missing()
        print('Firmware: not built, %s; build it with: make -C %s' % (why, args.out))
        return
    print('Firmware: %s for %s (%s): %s -mcpu=%s -mthumb -Os'
          % (built.elf, board, core, firmware.CC, cpu))
    print('arm-none-eabi-size: text %s, data %s, bss %s (stack %s included): '
          'flash %s, RAM %s'
          % tuple(format(v, ',') for v in (built.text, built.data, built.bss,
                                          firmware.STACK_BYTES, built.flash_bytes,
                                          built.ram_bytes)))
    model = built.model
    folded = written.flash_bytes - model['rodata']
    print('  of which %s.o: constant data %s (the Flash above%s), code %s, static RAM %s '
          '(the RAM above)'
          % (name, format(model['rodata'], ','),
             ' less %d bytes of geometry the compiler folded into code' % folded if folded else '',
             format(model['text'], ','), format(model['bss'] + model['data'], ',')))
    parts = firmware.fitting_parts(args.target, built.flash_bytes, built.ram_bytes)
    if parts:
        print('Fits: %s (%s KiB flash, %s KiB RAM) and larger parts'
              % (parts[0][0], parts[0][2] >> 10, parts[0][3] >> 10))
    print('Run: cd %s && %s' % (args.out, ' '.join(
        firmware.qemu_command(os.path.basename(built.elf), args.target, 'images.bin'))))
