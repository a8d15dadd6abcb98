"""``python -m binary_net pack``: write a packed model file (binary weights at 1 bit).

Opens a float model file with :func:`binary_net.cli.common.open_model` and writes
it with :func:`binary_net.deploy.packed.pack_verified`, which moves the file into
place only once its round trip reproduces the model's scores.
"""
import os

from .. import modelfile
from ..deploy import packed
from .common import REFERENCE_DATASETS, add_model_argument, open_model, report_errors


def add_arguments(parser):
    """Arguments of ``python -m binary_net pack``."""
    add_model_argument(parser, 'model file (.npz) written by training')
    parser.add_argument('--out', required=True, metavar='PATH',
                        help='packed model file to write (binary weights at 1 bit each)')
    parser.add_argument('--dataset', choices=REFERENCE_DATASETS,
                        help="reference architecture for a position-only .npz of the "
                             "original theano-xnor-net; files written by "
                             "this package carry their network description")


def _pack(args):
    if os.path.abspath(args.out) == os.path.abspath(args.model):
        raise modelfile.ModelFileError('--out must differ from --model')
    model = open_model(args.model, args.dataset, allow_packed=False)
    written = packed.pack_verified(args.out, args.model, model.network, model.spec,
                                   model.extra, modelfile.load_named_arrays(args.model))
    original = os.path.getsize(args.model)
    print('Packed %s (%s network) into %s' % (args.model, model.spec.get('name', '?'), args.out))
    print('Binary weights: %d at 1 bit; real-valued parameters: %d'
          % (written['binary_weights'], written['real_values']))
    print('Size: %d bytes packed, %d bytes float: %.1fx smaller'
          % (written['bytes'], original, original / float(written['bytes'])))


def run(args, parser=None):
    """``python -m binary_net pack``: returns the exit status (0, or 2 after ``error:``)."""
    return report_errors(lambda: _pack(args))
