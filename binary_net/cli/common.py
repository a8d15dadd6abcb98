"""What every command shares: opening a model, calibrating it, exit codes and errors.

The commands of ``python -m binary_net`` (and ``test/*_test.py``) open models
through :func:`open_model` alone, calibrate fixed-point ranges through
:func:`calibrate` alone, and report problems through :func:`report_errors`: one
line ``error: ...`` on stderr and exit status :data:`EXIT_ERROR` (2), or
:data:`EXIT_INTERRUPTED` (130) after Ctrl-C. Nothing here imports Theano.
"""
import os
import sys

from .. import argtypes, data, infer, kernels, modelfile
from ..deploy import export, firmware, packed
from ..errors import ModelFileError, first_line
from ..spec import REFERENCE_SPECS, reference_spec

EXIT_OK = 0
#: Exit status after a one-line ``error:`` (bad input, missing data, ...).
EXIT_ERROR = 2
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130
#: Training images the fixed-point and integer formats are calibrated on by default.
CALIBRATION_SIZE = 1000
#: Datasets that have a reference architecture for position-only files.
REFERENCE_DATASETS = tuple(REFERENCE_SPECS)

#: argparse type: an integer of at least 1.
positive_int = argtypes.int_range(1)


class CommandError(Exception):
    """A problem to report as one ``error:`` line (bad arguments for this data, say)."""


#: Errors whose message is the one line printed.
REPORTED = (ModelFileError, data.DatasetError, CommandError,
            kernels.KernelBuildError, export.ExportError, firmware.FirmwareError)


def report_errors(call, also=()):
    """Run ``call()`` and turn the errors a command reports into its exit status.

    Parameters
    ----------
    call : callable returning None or an exit status
    also : tuple of exception types
        More errors whose message is printed as they are (the export adds
        ``ValueError`` and ``RuntimeError``).

    Returns
    -------
    int: the status ``call`` returned (0 for None); :data:`EXIT_ERROR` after
    printing ``error: MESSAGE`` to stderr (the first line only, for ``OSError``
    and ``MemoryError``); :data:`EXIT_INTERRUPTED` after Ctrl-C.
    """
    try:
        status = call()
    except REPORTED + tuple(also) as error:
        print('error: %s' % error, file=sys.stderr)
        return EXIT_ERROR
    except (OSError, MemoryError) as error:
        print('error: %s' % first_line(error), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if status is None else status


class OpenedModel:
    """A model file opened by :func:`open_model`.

    Attributes
    ----------
    path : str
    network : binary_net.infer.FoldedNetwork
    spec : dict
        The network description (``{'name': ...}`` for a packed file without one).
    kind : {'packed', 'float'}
    values : list of ndarray or None
        The parameter arrays of a float file.
    extra : dict
        The metadata stored with the model.
    described : bool
        Whether the file carries its network description.
    origin : str
        Where the description came from, in words.
    contents : str
        ``'N arrays'`` or ``'N ops'``.
    """

    def __init__(self, path, network, spec, kind, values, extra, described, origin, contents):
        self.path, self.network, self.spec, self.kind = path, network, spec, kind
        self.values, self.extra, self.described = values, extra, described
        self.origin, self.contents = origin, contents


def open_model(path, dataset=None, allow_packed=True):
    """Open a model file: ``.npz`` written by training, packed, or the original's.

    Parameters
    ----------
    path : str
    dataset : str or None
        The reference architecture (one of :data:`REFERENCE_DATASETS`) of a
        position-only file of the original theano-xnor-net, whose widths are read
        from its arrays (:func:`binary_net.spec.reference_spec`).
    allow_packed : bool
        False: a packed file is refused as a float model file is expected (``pack``).

    Returns
    -------
    OpenedModel, with the network folded (its arrays checked against the description).

    Raises
    ------
    binary_net.errors.ModelFileError
        One line: a missing, corrupt or foreign file, arrays that do not fit, or a
        position-only file without ``dataset``.
    """
    source = os.path.basename(path)
    if allow_packed and packed.is_packed(path):
        network, spec, extra = packed.load_packed(path)
        return OpenedModel(path, network, spec or {'name': network.name}, 'packed', None,
                           extra, spec is not None, 'packed file: binary weights at 1 bit',
                           '%d ops' % len(network))
    values, spec, extra = modelfile.load_model(path)
    described = spec is not None
    if described:
        origin = 'network description from the file'
    else:
        if dataset not in REFERENCE_DATASETS:
            raise ModelFileError(
                '%s is a position-only file without a network description (the original '
                "code's): give --dataset %s" % (path, ', '.join(REFERENCE_DATASETS[:-1])
                                                  + ' or ' + REFERENCE_DATASETS[-1]))
        spec = reference_spec(dataset, values)
        origin = 'position-only file: reference %s architecture' % dataset
    network = infer.fold(spec, values, source=source)
    return OpenedModel(path, network, spec, 'float', values, extra, described, origin,
                       '%d arrays' % len(values))


def calibrate(network, X_train, size, dataset, preprocess=None, pixel_scaling=None):
    """Calibrate ``network``'s activation ranges on the first ``size`` training images.

    The images are scaled to [-1, 1] as the network was trained
    (:func:`binary_net.data.scale_pixels`; ``pixel_scaling`` overrides the
    network's), then go through ``preprocess`` (the model's preprocessing), if given.

    Parameters
    ----------
    network : FoldedNetwork
    X_train : uint8 ndarray, the training images
    size : int
    dataset : str, the dataset's name
    preprocess : binary_net.data.preprocessing.Preprocessing or None
    pixel_scaling : str or None
        Default: ``network.pixel_scaling``.

    Returns
    -------
    int, the number of images calibrated on.

    Raises
    ------
    CommandError
        For an empty training set.
    """
    n = min(size, len(X_train))
    if n == 0:
        raise CommandError('the %s training set is empty: nothing to calibrate on' % dataset)
    X = data.scale_pixels(X_train[:n], pixel_scaling or network.pixel_scaling, dataset)
    if preprocess is not None:
        X = preprocess.apply(X)
    network.calibrate(X)
    return n


def add_model_argument(parser, help_text):
    """``--model PATH`` (required)."""
    parser.add_argument('--model', required=True, metavar='PATH', help=help_text)


def add_data_path_argument(parser):
    """``--data-path DIR``."""
    parser.add_argument('--data-path', metavar='DIR',
                        help='data root (default: $PYLEARN2_DATA_PATH, else ~/pylearn2_data)')


def add_calibration_argument(parser, group=None):
    """``--calibration-size N``."""
    (group or parser).add_argument(
        '--calibration-size', type=positive_int, default=CALIBRATION_SIZE, metavar='N',
        help='calibrate activation ranges on the first N training images '
             '(default: %(default)s)')
