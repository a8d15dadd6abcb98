"""The trainers' command line: ``python -m binary_net train mnist|cifar10|svhn [flags]``.

The front end of :mod:`binary_net.train`. :func:`main` takes the dataset first and
that trainer's flags after it (``['mnist', '--epochs', '1']``); ``train/*_train.py``
and ``train/train_*.sh`` call it. :data:`TRAINERS` holds each reference network's
``--help`` text and its defaults (those of the original's scripts). Every trainer
shares the flags of :func:`add_training_arguments`; :func:`run_cli` locks
``--model-out``, loads the data, fits and reports, each error as one line (exit
status 2 on bad input, 1 when training or saving fails, 130 on Ctrl-C).
"""
import argparse
import sys
import time

from .. import argtypes, data, modelfile, networks
from ..data import preprocessing
from .augmentation import Augmentation
from .errors import TrainingError
from .lock import ModelInUseError, claim_model_path
from .loop import fit
from .schedules import LR_SCHEDULES
from .trainer import Trainer

#: argparse type of learning rates: a finite number above 0.
POSITIVE_RATE = argtypes.float_range(0, low_open=True)


def add_training_arguments(parser, epochs, batch_size, lr_start, lr_end, model_out):
    """The flags every trainer shares, with that network's defaults."""
    parser.add_argument('--epochs', type=argtypes.int_range(1), default=epochs,
                        help='number of epochs (default: %(default)s)')
    parser.add_argument('--batch-size', type=argtypes.int_range(1), default=batch_size,
                        help='minibatch size (default: %(default)s)')
    parser.add_argument('--lr-start', type=POSITIVE_RATE, default=lr_start,
                        help='initial learning rate (default: %(default)s)')
    parser.add_argument('--lr-end', type=POSITIVE_RATE, default=lr_end,
                        help='learning rate reached at the end (default: %(default)s)')
    parser.add_argument('--lr-schedule', choices=LR_SCHEDULES, default='exp',
                        help='exp: BinaryNet\'s exponential decay per epoch (default); '
                             'cosine: cosine decay per step; onecycle: linear warm-up '
                             'from lr-start/25 over 30%% of the steps, then cosine decay')
    parser.add_argument('--train-size', type=argtypes.int_range(1), default=None, metavar='N',
                        help='train on the first N training images only, for quick runs')
    parser.add_argument('--valid-size', type=argtypes.int_range(0), default=None, metavar='N',
                        help='validation images, taken from the end of the training set '
                             '(default: the dataset\'s)')
    parser.add_argument('--data-path', default=None,
                        help='dataset root in pylearn2 layout (default: $PYLEARN2_DATA_PATH, '
                             'else ~/pylearn2_data)')
    parser.add_argument('--model-out', default=model_out,
                        help='where the best model is saved (default: %(default)s); the '
                             'checkpoint and training-curve PNG are written beside it')
    parser.add_argument('--seed', type=argtypes.int_range(0, 2 ** 32 - 1), default=1234,
                        help='seed of weights, shuffling and dropout (default: %(default)s)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the checkpoint beside --model-out')
    parser.add_argument('--no-progress', action='store_true', help='hide progress bars')
    parser.add_argument('--loader', choices=data.LOADERS, default='binary_net',
                        help="read the data with this package's readers (default) or "
                             "through pylearn2.datasets (pylearn2 installed; MNIST needs the "
                             "uncompressed IDX files, SVHN PyTables)")
    parser.add_argument('--split', choices=data.SPLITS, default='default',
                        help="'original': the original theano-xnor-net's data: MNIST and "
                             "CIFAR-10 train on [0:40000] and validate on [40000:50000], SVHN "
                             "trains on train+extra minus a class-balanced validation set of "
                             "6,000 (RandomState(322)) with classes = .mat label - 1; pixels "
                             "scaled as X * (2.0 / 255) - 1.0 (default: %(default)s: "
                             "validation from the end of the training file)")


def _what_is_kept(trainer, model_out, resumable=False):
    """The end of an error line: what a failed run leaves for the user."""
    if trainer is not None and trainer.checkpoint_path:
        return ('the best model so far and the last checkpoint are kept beside %s%s'
                % (model_out, '; continue with --resume' if resumable else ''))
    return 'no checkpoint was written, so there is nothing to resume'


def add_augmentation_arguments(parser):
    """--augment, --crop-pad and --flip (for the image trainers)."""
    parser.add_argument('--crop-pad', type=argtypes.int_range(0), default=0, metavar='P',
                        help='random crops of the images zero-padded by P pixels (default: 0, off)')
    parser.add_argument('--flip', action='store_true',
                        help='random horizontal flips')
    parser.add_argument('--augment', action='store_true',
                        help='shorthand for --flip and, unless given, --crop-pad 4')


def run_cli(description, spec, args, dataset, prepare_kwargs=None):
    """Shared body of every trainer: lock ``--model-out``, load data, fit, report.

    Returns the process exit status: 0, 1 on a training error or a failed
    save, 2 on bad input (another training holding ``--model-out`` included),
    130 when interrupted. Every error is one line on stderr.
    """
    log = lambda line: print(line, flush=True)  # noqa: E731
    lock = trainer = None
    try:
        for flag in ('epochs', 'batch_size'):
            if getattr(args, flag) < 1:
                raise ValueError('--%s must be at least 1' % flag.replace('_', '-'))
        lock = claim_model_path(args.model_out, log)
        augment = getattr(args, 'augment', False)
        augmentation = Augmentation(getattr(args, 'crop_pad', 0) or (4 if augment else 0),
                                    getattr(args, 'flip', False) or augment)
        if getattr(args, 'split', 'default') == 'original':
            spec, splits = original_data(spec, dataset, args, prepare_kwargs)
            preprocess = preprocessing.Preprocessing()
        else:
            loader = getattr(args, 'loader', 'binary_net')
            splits, preprocess = preprocessing.prepare(
                dataset, data_path=args.data_path, train_size=args.train_size,
                valid_size=args.valid_size,
                **dict(prepare_kwargs or {}, **({'loader': loader} if loader != 'binary_net'
                                                else {})))
        log('%s: %d training, %d validation, %d test images; %d epochs, batch %d, seed %d'
            % (description, len(splits.X_train), len(splits.X_valid), len(splits.X_test),
               args.epochs, args.batch_size, args.seed))
        started = time.time()
        trainer = Trainer(spec, seed=args.seed)
        log('Compiled in %.1fs' % (time.time() - started))
        history = fit(trainer, splits, args.model_out, args.epochs, args.batch_size,
                      args.lr_start, args.lr_end, train_size=args.train_size,
                      resume=args.resume, dataset=dataset,
                      progress=False if args.no_progress else None, log=log,
                      lr_schedule=args.lr_schedule, augmentation=augmentation,
                      preprocess=preprocess)
    except (data.DatasetError, modelfile.ModelFileError, ModelInUseError, ValueError) as error:
        print('error: %s' % error, file=sys.stderr)
        return 2
    except TrainingError as error:
        print('error: %s; %s' % (error, _what_is_kept(trainer, args.model_out)), file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, say, while saving
        print('error: cannot write %s: %s; %s'
              % (error.filename or args.model_out, error.strerror or modelfile.first_line(error),
                 _what_is_kept(trainer, args.model_out, resumable=True)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if trainer is not None and trainer.checkpoint_path:
            print('\ninterrupted: the best model and the checkpoint of the last finished '
                  'epoch are saved beside %s; continue with --resume' % args.model_out,
                  file=sys.stderr)
        else:
            print('\ninterrupted before the first checkpoint was written: there is nothing '
                  'to resume', file=sys.stderr)
        return 130
    finally:
        if lock is not None:
            lock.release()
    if history:
        best = min(history, key=lambda h: h['valid_error'])
        log('Best validation error %.2f%% at epoch %d; its test error %.2f%%; model saved to %s'
            % (100 * best['valid_error'], best['epoch'],
               100 * (best['test_error'] or 0), args.model_out))
    log('Total time %.1fs' % (time.time() - started))
    return 0


def original_data(spec, dataset, args, prepare_kwargs=None):
    """``--split original``: the original's splits, and the spec marked with its
    pixel scaling and class numbering so that evaluation reads the model the same way."""
    if args.valid_size is not None:
        raise ValueError('--valid-size does not apply to --split original (its validation '
                         'set is fixed)')
    if any((prepare_kwargs or {}).values()):
        raise ValueError('--gcn and --zca are not part of the original\'s data; drop them '
                         'or --split original')
    splits = data.prepare_original(dataset, data_path=args.data_path,
                                   train_size=args.train_size,
                                   loader=getattr(args, 'loader', 'binary_net'))
    spec = dict(spec, pixel_scaling='original')
    if dataset == 'svhn':
        spec['labels'] = 'svhn_mat_minus_one'
    return spec, splits


def make_parser(description, prog=None, **defaults):
    """An argparse parser with the shared training flags.

    Parameters
    ----------
    description : str, the ``--help`` text
    prog : str or None, the program name in usage lines (None: argparse's)
    **defaults : epochs, batch_size, lr_start, lr_end, model_out
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_training_arguments(parser, **defaults)
    return parser


#: Each reference trainer: its ``--help`` text and defaults (the original's), and,
#: for the convolutional ones, the filters of its six convolutions.
TRAINERS = {
    'mnist': dict(
        description='Train the XNOR-Net MNIST MLP: XNOR dense layers with batch norm, squared '
                    'hinge loss, Adam with an exponentially decaying learning rate.',
        defaults=dict(epochs=1000, batch_size=100, lr_start=3e-3, lr_end=3e-7,
                      model_out='mnist.npz')),
    'cifar10': dict(
        description='Train the XNOR-Net CIFAR-10 network: a full-precision first convolution, '
                    'five XNOR convolutions, two XNOR dense layers, batch norm, softmax and '
                    'cross-entropy.',
        filters=(128, 128, 256, 256, 512, 512),
        defaults=dict(epochs=200, batch_size=50, lr_start=1e-3, lr_end=3e-7,
                      model_out='cifar10.npz')),
    'svhn': dict(
        description='Train the XNOR-Net SVHN network: the CIFAR-10 shape with fewer filters, a '
                    'full-precision dense output with batch norm, and the squared hinge loss.',
        filters=(64, 64, 128, 128, 256, 256),
        defaults=dict(epochs=200, batch_size=100, lr_start=1e-3, lr_end=1e-6,
                      model_out='svhn.npz')),
}


def mnist_main(argv=None, prog=None):
    """The MNIST trainer: the shared flags plus ``--num-units`` and ``--dropout``.

    Returns
    -------
    int, the exit status (see :func:`run_cli`)
    """
    trainer = TRAINERS['mnist']
    parser = make_parser(trainer['description'], prog=prog, **trainer['defaults'])
    parser.add_argument('--num-units', type=argtypes.int_range(1), default=4096,
                        help='units per hidden XNOR layer (default: %(default)s)')
    parser.add_argument('--dropout', type=argtypes.float_range(0, 1, high_open=True), default=0.5,
                        help='dropout after the 2nd and 3rd XNOR layers; 0 for none '
                             '(default: %(default)s)')
    args = parser.parse_args(argv)
    spec = networks.mnist_spec(num_units=args.num_units, dropout_p=args.dropout)
    return run_cli('MNIST XNOR MLP %dx%d' % (3, args.num_units), spec, args, 'mnist')


def conv_net_main(dataset, argv=None, prog=None):
    """The CIFAR-10 and SVHN trainers (their flags are alike): the shared flags plus
    ``--filters``, ``--dense-units``, ``--gcn``, ``--zca`` and augmentation.

    Parameters
    ----------
    dataset : {'cifar10', 'svhn'}
    argv : list of str or None
    prog : str or None, the program name in usage lines

    Returns
    -------
    int, the exit status (see :func:`run_cli`)
    """
    trainer = TRAINERS[dataset]
    parser = make_parser(trainer['description'], prog=prog, **trainer['defaults'])
    parser.add_argument('--filters', type=argtypes.int_range(1), nargs=6,
                        default=list(trainer['filters']), metavar='F',
                        help='filters of the six convolutions (default: %(default)s)')
    parser.add_argument('--dense-units', type=argtypes.int_range(1), default=1024,
                        help='units of the two XNOR dense layers (default: %(default)s)')
    parser.add_argument('--gcn', action='store_true',
                        help='global contrast normalization, as pylearn2 did')
    parser.add_argument('--zca', action='store_true',
                        help='ZCA whitening fitted on the training split')
    add_augmentation_arguments(parser)
    args = parser.parse_args(argv)
    spec_builder = {'cifar10': networks.cifar10_spec, 'svhn': networks.svhn_spec}[dataset]
    spec = spec_builder(filters=tuple(args.filters), dense_units=args.dense_units)
    return run_cli('%s XNOR network' % dataset, spec, args, dataset,
                   dict(gcn=args.gcn, zca=args.zca))


def main(argv=None, prog=None):
    """``train DATASET [flags]``: run the reference trainer of a dataset.

    Parameters
    ----------
    argv : list of str or None
        The dataset first ('mnist', 'cifar10' or 'svhn'), then that trainer's
        flags (``--help`` lists them); default ``sys.argv[1:]``.
    prog : str or None
        The program name in usage lines, e.g. ``'python -m binary_net train'``
        (the dataset is appended for the trainer's own); None: argparse's.

    Returns
    -------
    int
        The exit status: 0, 1 when training or saving fails, 2 on bad input,
        130 when interrupted. Bad flags exit through argparse (status 2).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    chooser = argparse.ArgumentParser(
        prog=prog, usage='%(prog)s [-h] DATASET [FLAGS ...]',
        description='Train a reference XNOR network; DATASET --help lists its flags.')
    chooser.add_argument('dataset', choices=tuple(TRAINERS), metavar='DATASET',
                         help='one of %s' % ', '.join(TRAINERS))
    dataset = chooser.parse_args(argv[:1]).dataset
    sub_prog = None if prog is None else '%s %s' % (prog, dataset)
    if dataset == 'mnist':
        return mnist_main(argv[1:], prog=sub_prog)
    return conv_net_main(dataset, argv[1:], prog=sub_prog)
