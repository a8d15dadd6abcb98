"""Evaluate a trained model on a test set: the one implementation of test/*_test.py.

``test/mnist_test.py``, ``test/cifar10_test.py`` and ``test/svhn_test.py`` only call
:func:`main` with their dataset's name. The model is folded into a numpy
:class:`~binary_net.infer.FoldedNetwork` and run in float or simulated
fixed-point arithmetic or on the bit-packed XNOR kernels (``--mode``); see
:mod:`binary_net.infer` and :mod:`binary_net.infer.xnor`. Packed model files
(:func:`binary_net.modelfile.save_packed`) are recognized by their content and
evaluated in every mode.

Model files written by :func:`binary_net.modelfile.save_model` carry their network
description. Position-only ``.npz`` files of the original theano-xnor-net get the
script's reference architecture (:func:`binary_net.spec.reference_spec`), with the widths
(units of dense layers, filters of convolutions) read from the arrays' shapes.

Images are scaled to [-1, 1] as for training (:func:`datasets.to_unit_range`), then
go through the preprocessing stored in the model file (GCN, ZCA: see
:mod:`binary_net.preprocessing`), if any.
Fixed mode calibrates its static activation ranges on the first 1000 training
images (``--calibration-size``), in float arithmetic, before evaluating.

The last line printed is ``Test error: X.XX% (N images, mode M)``. Errors print one
line ``error: ...`` to stderr and exit with status 2.
"""
import argparse
import os
import sys
import time

import numpy as np

from . import argtypes, datasets, errors, kernels, modelfile, preprocessing
from . import infer as inference
from .infer import FIXED_DEFAULTS
from .spec import reference_spec

EXIT_ERROR = 2
CALIBRATION_SIZE = 1000
TITLES = {'mnist': 'MNIST', 'cifar10': 'CIFAR-10', 'svhn': 'SVHN'}
# Options each mode takes from the command line (attribute names of the parsed args);
# a mode added to inference.MODES lists its options here.
MODE_OPTIONS = {'float': (), 'xnor': (),
                'fixed': ('input_bits', 'input_frac', 'param_bits', 'act_bits', 'rounding')}
MODE_HELP = {'float': 'float32', 'fixed': 'simulated fixed point',
             'xnor': 'bit-packed XNOR-popcount kernels, scores identical to float',
             'int': 'true integer arithmetic, bit-exact with the C export'}


class EvaluationError(Exception):
    """A problem to report as one ``error:`` line (bad arguments for this data, say)."""


def load_network(path, dataset):
    """Load and fold a model file for ``dataset``'s test set.

    Returns
    -------
    network : FoldedNetwork
    description : str, one line saying what was loaded

    Raises
    ------
    modelfile.ModelFileError, EvaluationError
    """
    source = os.path.basename(path)
    if modelfile.is_packed(path):
        network, spec, _ = modelfile.load_packed(path)
        spec = spec or {'name': network.name}
        origin = 'packed file: binary weights at 1 bit'
        count = '%d ops' % len(network)
    else:
        values, spec, _ = modelfile.load_model(path)
        if spec is None:
            spec = reference_spec(dataset, values)
            origin = 'position-only file: reference %s architecture' % dataset
        else:
            origin = 'network description from the file'
        network = inference.fold(spec, values, source=source)
        count = '%d arrays' % len(values)
    image_shape = (1, 28, 28) if dataset == 'mnist' else (3, 32, 32)
    if network.input_shape != image_shape:
        raise EvaluationError('%s is a %s network for inputs shaped %s, but the %s test set '
                              'holds images shaped %s' % (source, spec.get('name', 'other'),
                                                          network.input_shape, dataset, image_shape))
    outputs = int(np.prod(network.output_shape()))
    if outputs != datasets.NUM_CLASSES:
        raise EvaluationError('%s has %d outputs, but %s has %d classes'
                              % (source, outputs, dataset, datasets.NUM_CLASSES))
    return network, '%s (%s network, %s, %s)' % (path, spec.get('name', '?'), count, origin)


#: argparse type: an integer of at least 1.
positive_int = argtypes.int_range(1)
#: argparse type of the fixed-mode widths (inference.FixedPointConfig's range).
fixed_bits = argtypes.int_range(2, 53)


def build_parser(dataset):
    """The argument parser of ``test/<dataset>_test.py``."""
    title = TITLES[dataset]
    parser = argparse.ArgumentParser(
        prog='%s_test.py' % dataset,
        description='Evaluate a trained XNOR-Net model on the %s test set with numpy '
                    '(no Theano needed for model files that carry their network '
                    'description). Images are scaled to [-1, 1]. The last line printed is '
                    '"Test error: X.XX%% (N images, mode M)".' % title,
        epilog='Fixed mode simulates signed fixed-point inference: inputs rounded to '
               '--input-bits with --input-frac fraction bits; parameters to --param-bits '
               'and every op output to --act-bits, with integer bits chosen per tensor '
               'from its range (activation ranges calibrated once on the first %d '
               'training images); round to nearest (--rounding), then saturate. Data is '
               'read from --data-path, else $PYLEARN2_DATA_PATH, else ~/pylearn2_data.'
               % CALIBRATION_SIZE)
    parser.add_argument('--model', required=True, metavar='PATH',
                        help='model file (.npz) written by training, a packed model file '
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
    parser.add_argument('--data-path', metavar='DIR',
                        help='data root (default: $PYLEARN2_DATA_PATH, else ~/pylearn2_data)')
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
    fixed.add_argument('--calibration-size', type=positive_int, default=CALIBRATION_SIZE,
                       metavar='N', help='calibrate activation ranges on the first N training '
                                         'images (default: %(default)s)')
    return parser


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
    :class:`binary_net.preprocessing.Preprocessing`, the model's) if given;
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


def run(dataset, args, parser):
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
        raise EvaluationError('--no %d is larger than the %s test set (%d images)'
                              % (n, dataset, len(X_test)))
    if n == 0:
        raise EvaluationError('the %s test set is empty' % dataset)
    X_test, y_test = X_test[:n], datasets.relabel(y_test[:n], network.labels)
    calibration_size = 0
    if args.mode in ('fixed', 'int') and options.get('preset') != 'original':
        X_train = data['train'][0]
        calibration_size = min(args.calibration_size, len(X_train))
        if calibration_size == 0:
            raise EvaluationError('%s mode calibrates on training images, but the %s '
                                  'training set is empty' % (args.mode, dataset))
        network.calibrate(preprocess.apply(datasets.scale_pixels(
            X_train[:calibration_size], network.pixel_scaling, dataset)))
    del data
    print('Mode: %s' % _describe_mode(args.mode, options, calibration_size))
    start = time.time()
    errors = evaluate(network, X_test, y_test, args.mode, args.batch_size, dataset=dataset,
                      preprocess=preprocess, **options)
    elapsed = time.time() - start
    print('Accuracy: %.2f%% (%d of %d correct)' % (100.0 * (n - errors) / n, n - errors, n))
    print('Time: %.2f s (%.3f ms per image)' % (elapsed, 1000.0 * elapsed / n))
    print('Test error: %.2f%% (%d images, mode %s)' % (100.0 * errors / n, n, args.mode))


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
    try:
        run(dataset, args, parser)
    except (modelfile.ModelFileError, datasets.DatasetError, EvaluationError,
            kernels.KernelBuildError) as error:
        print('error: %s' % error, file=sys.stderr)
        return EXIT_ERROR
    except (OSError, MemoryError) as error:
        print('error: %s' % errors.first_line(error), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    return 0
