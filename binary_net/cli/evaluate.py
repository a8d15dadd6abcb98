"""``python -m binary_net evaluate DATASET``: a trained model's error on a test set.

The one implementation of ``test/*_test.py`` too: ``test/mnist_test.py``,
``test/cifar10_test.py`` and ``test/svhn_test.py`` only call :func:`main` with their
dataset's name. The model is opened by :func:`binary_net.cli.common.open_model`,
folded into a numpy :class:`~binary_net.infer.FoldedNetwork` and run in float or
simulated fixed-point arithmetic or on the bit-packed XNOR kernels (``--mode``); see
:mod:`binary_net.infer` and :mod:`binary_net.infer.xnor`. Packed model files
(:func:`binary_net.deploy.packed.save_packed`) are recognized by their content and
evaluated in every mode.

Model files written by :func:`binary_net.modelfile.save_model` carry their network
description. Position-only ``.npz`` files of the original theano-xnor-net get the
script's reference architecture (:func:`binary_net.spec.reference_spec`), with the widths
(units of dense layers, filters of convolutions) read from the arrays' shapes.

Images are scaled to [-1, 1] as for training (:func:`binary_net.data.to_unit_range`), then
go through the preprocessing stored in the model file (GCN, ZCA: see
:mod:`binary_net.data.preprocessing`), if any.
Fixed and int modes calibrate their static activation ranges on the first 1000
training images (``--calibration-size``), in float arithmetic, before evaluating
(:func:`binary_net.cli.common.calibrate`).

The last line printed is ``Test error: X.XX% (N images, mode M)``. Errors print one
line ``error: ...`` to stderr and exit with status 2
(:func:`binary_net.cli.common.report_errors`).
"""
import argparse
import os
import sys
import time

import numpy as np

from .. import argtypes
from .. import data as datasets
from .. import infer as inference
from ..data import preprocessing
from ..infer import FIXED_DEFAULTS
from .common import (CALIBRATION_SIZE, REFERENCE_DATASETS, CommandError,
                     add_calibration_argument, add_data_path_argument, add_model_argument,
                     calibrate, open_model, positive_int, report_errors)

#: The test sets, by name: those with a reference architecture.
TITLES = {name: datasets.DATASETS[name].title for name in REFERENCE_DATASETS}
# Options each mode takes from the command line (attribute names of the parsed args);
# a mode added to inference.MODES lists its options here.
MODE_OPTIONS = {'float': (), 'xnor': (),
                'fixed': ('input_bits', 'input_frac', 'param_bits', 'act_bits', 'rounding')}
MODE_HELP = {'float': 'float32', 'fixed': 'simulated fixed point',
             'xnor': 'bit-packed XNOR-popcount kernels, scores identical to float',
             'int': 'true integer arithmetic, bit-exact with the C export'}




def load_network(path, dataset):
    """Open a model file (:func:`~binary_net.cli.common.open_model`) for ``dataset``'s test set.

    Returns
    -------
    network : FoldedNetwork
    description : str, one line saying what was loaded

    Raises
    ------
    binary_net.errors.ModelFileError, CommandError
        The latter for a network whose input or output does not fit the test set.
    """
    model = open_model(path, dataset)
    network, spec = model.network, model.spec
    image_shape = (1, 28, 28) if dataset == 'mnist' else (3, 32, 32)
    source = os.path.basename(model.path)
    if network.input_shape != image_shape:
        raise CommandError('%s is a %s network for inputs shaped %s, but the %s test set '
                           'holds images shaped %s' % (source, spec.get('name', 'other'),
                                                       network.input_shape, dataset, image_shape))
    outputs = int(np.prod(network.output_shape()))
    if outputs != datasets.NUM_CLASSES:
        raise CommandError('%s has %d outputs, but %s has %d classes'
                           % (source, outputs, dataset, datasets.NUM_CLASSES))
    return network, '%s (%s network, %s, %s)' % (path, spec.get('name', '?'), model.contents,
                                                 model.origin)


#: argparse type of the fixed-mode widths (inference.FixedPointConfig's range).
fixed_bits = argtypes.int_range(2, 53)


def build_parser(dataset):
    """The argument parser of ``test/<dataset>_test.py``."""
    parser = argparse.ArgumentParser(prog='%s_test.py' % dataset,
                                     description=description(TITLES[dataset]))
    add_arguments(parser, dataset)
    return parser


def description(title):
    """The command's description, for the test set named ``title``."""
    return ('Evaluate a trained XNOR-Net model on the %s test set with numpy (no Theano '
            'needed for model files that carry their network description). Images are '
            'scaled to [-1, 1]. The last line printed is "Test error: X.XX%% (N images, '
            'mode M)".' % title)


def add_arguments(parser, dataset=None):
    """Arguments of ``python -m binary_net evaluate DATASET`` (``test/<dataset>_test.py``:
    the same without the dataset)."""
    if dataset is None:
        parser.add_argument('dataset', choices=sorted(TITLES), metavar='DATASET',
                            help='test set: %s' % ', '.join(sorted(TITLES)))
        parser.description = description('DATASET')
    parser.epilog = ('Fixed mode simulates signed fixed-point inference: inputs rounded to '
                     '--input-bits with --input-frac fraction bits; parameters to '
                     '--param-bits and every op output to --act-bits, with integer bits '
                     'chosen per tensor from its range (activation ranges calibrated once on '
                     'the first %d training images); round to nearest (--rounding), then '
                     'saturate. Data is read from --data-path, else $PYLEARN2_DATA_PATH, else '
                     '~/pylearn2_data.' % CALIBRATION_SIZE)
    add_model_argument(parser, 'model file (.npz) written by training, a packed model file '
                               '(python -m binary_net pack), or a position-only .npz of the '
                               'original theano-xnor-net')
    parser.add_argument('--no', type=positive_int, metavar='N',
                        help='evaluate the first N test images (default: all)')
    parser.add_argument('--mode', default='float', choices=sorted(inference.MODES),
                        help='arithmetic: %s (default: %%(default)s)'
                             % ', '.join('%s (%s)' % (mode, MODE_HELP.get(mode, 'see '
                                                                          'binary_net.infer'))
                                         for mode in sorted(inference.MODES)))
    parser.add_argument('--batch-size', type=positive_int, default=100, metavar='B',
                        help='images per step (default: %(default)s)')
    add_data_path_argument(parser)
    fixed = parser.add_argument_group('fixed mode')
    fixed.add_argument('--input-bits', type=fixed_bits, metavar='BITS',
                       help='bits of the network input, sign included (default: %d)'
                            % FIXED_DEFAULTS['input_bits'])
    fixed.add_argument('--input-frac', type=int, metavar='BITS',
                       help='fraction bits of the network input (default: %d)'
                            % FIXED_DEFAULTS['input_frac'])
    fixed.add_argument('--param-bits', type=fixed_bits, metavar='BITS',
                       help='bits of each real-valued parameter (default: %d)'
                            % FIXED_DEFAULTS['param_bits'])
    fixed.add_argument('--act-bits', type=fixed_bits, metavar='BITS',
                       help='bits of each activation (default: %d)' % FIXED_DEFAULTS['act_bits'])
    fixed.add_argument('--rounding', choices=inference.ROUNDINGS,
                       help='round to nearest, ties to even or away from zero (default: %s)'
                            % FIXED_DEFAULTS['rounding'])
    fixed.add_argument('--fixed-preset', choices=('calibrated', 'original'), default=None,
                       help="'calibrated' (default): the scheme above; 'original': the "
                            "original theano-xnor-net's fixed point (its per-layer data and "
                            "integer bits, 15-bit parameters, symmetric saturation; see "
                            "binary_net.infer.fixed_original); only --rounding applies to it "
                            "(activations; default half_even as Theano >= 0.9)")
    add_calibration_argument(parser, fixed)


def _mode_options(parser, args):
    """The options of args.mode; an error for options of other modes."""
    preset = getattr(args, 'fixed_preset', None)
    if preset is not None and args.mode != 'fixed':
        parser.error('--fixed-preset applies to --mode fixed only, not to --mode %s' % args.mode)
    if preset == 'original':
        fixed_width = [name for name in MODE_OPTIONS['fixed']
                       if name != 'rounding' and getattr(args, name, None) is not None]
        if fixed_width:
            parser.error('--%s does not apply to --fixed-preset original (its formats are '
                         'the original\'s)' % fixed_width[0].replace('_', '-'))
        return {'preset': 'original', 'rounding': args.rounding or 'half_even'}
    wanted = MODE_OPTIONS.get(args.mode, ())
    for name in sorted({n for names in MODE_OPTIONS.values() for n in names} - set(wanted)):
        if getattr(args, name, None) is not None:
            modes = sorted(mode for mode, names in MODE_OPTIONS.items() if name in names)
            parser.error('--%s applies to --mode %s only, not to --mode %s'
                         % (name.replace('_', '-'), '/'.join(modes), args.mode))
    options = {}
    for name in wanted:
        value = getattr(args, name)
        options[name] = FIXED_DEFAULTS[name] if value is None else value
    return options


def _describe_mode(mode, options, calibration_size):
    if mode == 'int':
        return ('int (int8 Q0.7 input, int16 parameters and activations, int64 '
                'accumulators, round half up and saturate; activation ranges from the '
                'first %d training images)' % calibration_size)
    if mode != 'fixed':
        return mode
    if options.get('preset') == 'original':
        return ("fixed, the original theano-xnor-net's preset (input Q0.7, 15-bit parameters, "
                "per-layer activation formats of its test scripts, symmetric saturation, "
                "activations rounded %s)" % options['rounding'].replace('_', ' '))
    return ('fixed (input %d bits with %d fraction bits, parameters %d bits, activations '
            '%d bits, round %s; activation ranges from the first %d training images)'
            % (options['input_bits'], options['input_frac'], options['param_bits'],
               options['act_bits'], options['rounding'].replace('_', ' '), calibration_size))


def evaluate(network, X, y, mode='float', batch_size=100, progress=True, dataset=None,
             preprocess=None, **options):
    """Count the errors of ``network`` on uint8 images ``X`` with labels ``y``.

    Pixels are scaled as the network was trained (``network.pixel_scaling``, see
    :func:`datasets.scale_pixels`), then go through ``preprocess`` (a
    :class:`binary_net.data.preprocessing.Preprocessing`, the model's) if given;
    ``y`` must already follow ``network.labels``.

    Returns
    -------
    int, the number of misclassified images.
    """
    from tqdm import tqdm

    if dataset is None:  # only the original's scaling needs it: MNIST or a colour set
        dataset = 'mnist' if network.input_shape[0] == 1 else 'cifar10'
    errors = 0
    with tqdm(total=len(X), unit='img', file=sys.stderr, disable=not progress,
              desc='%s test' % mode) as bar:
        for start in range(0, len(X), batch_size):
            batch = datasets.scale_pixels(X[start:start + batch_size], network.pixel_scaling,
                                          dataset)
            if preprocess is not None:
                batch = preprocess.apply(batch)
            predicted = network.predict(batch, mode, **options)
            errors += int(np.sum(predicted != y[start:start + batch_size]))
            bar.update(len(batch))
    return errors


def run_evaluation(dataset, args, parser):
    """Everything after argument parsing; raises the errors :func:`main` reports."""
    options = _mode_options(parser, args)
    network, description = load_network(args.model, dataset)
    preprocess = preprocessing.from_file(args.model)
    print('Model: %s' % description)
    if not preprocess.is_identity:
        print('Preprocessing (from the model file): %s' % preprocess.describe())
    data = datasets.load(dataset, args.data_path)
    X_test, y_test = data['test']
    n = len(X_test) if args.no is None else args.no
    if n > len(X_test):
        raise CommandError('--no %d is larger than the %s test set (%d images)'
                           % (n, dataset, len(X_test)))
    if n == 0:
        raise CommandError('the %s test set is empty' % dataset)
    X_test, y_test = X_test[:n], datasets.relabel(y_test[:n], network.labels)
    calibration_size = 0
    if args.mode in ('fixed', 'int') and options.get('preset') != 'original':
        calibration_size = calibrate(network, data['train'][0], args.calibration_size, dataset,
                                     preprocess)
    del data
    print('Mode: %s' % _describe_mode(args.mode, options, calibration_size))
    start = time.time()
    errors = evaluate(network, X_test, y_test, args.mode, args.batch_size, dataset=dataset,
                      preprocess=preprocess, **options)
    elapsed = time.time() - start
    print('Accuracy: %.2f%% (%d of %d correct)' % (100.0 * (n - errors) / n, n - errors, n))
    print('Time: %.2f s (%.3f ms per image)' % (elapsed, 1000.0 * elapsed / n))
    print('Test error: %.2f%% (%d images, mode %s)' % (100.0 * errors / n, n, args.mode))


def run(args, parser):
    """``python -m binary_net evaluate DATASET``: returns the exit status."""
    return report_errors(lambda: run_evaluation(args.dataset, args, parser))


def main(dataset, argv=None):
    """Command-line entry point of ``test/<dataset>_test.py``.

    Parameters
    ----------
    dataset : {'mnist', 'cifar10', 'svhn'}
    argv : list of str or None
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int, the exit status: 0, or 2 after printing ``error: ...`` to stderr.
    """
    if dataset not in TITLES:
        raise ValueError('no evaluation script for dataset %r' % dataset)
    parser = build_parser(dataset)
    args = parser.parse_args(argv)
    return report_errors(lambda: run_evaluation(dataset, args, parser))
