"""``python -m binary_net summary``: the model summary of a model file.

Opens the model with :func:`binary_net.cli.common.open_model` (its arrays checked
against its description) and prints :func:`binary_net.summary.format_table`. Needs
numpy only, also for position-only files of the original code, whose
architecture ``--dataset`` names.
"""
import os

from .. import modelfile, summary
from .common import REFERENCE_DATASETS, add_model_argument, open_model, report_errors


def add_arguments(parser):
    """Arguments of ``python -m binary_net summary``."""
    add_model_argument(parser, 'model file: .npz written by training, or a packed file')
    parser.add_argument('--dataset', choices=REFERENCE_DATASETS,
                        help='reference architecture of a position-only .npz of the '
                             'original theano-xnor-net')


def _summarize(args):
    model = open_model(args.model, args.dataset)
    if model.kind == 'packed' and not model.described:
        raise modelfile.ModelFileError('%s carries no network description' % args.model)
    rows = summary.summary(model.spec)
    title = 'Model: %s (%s network, %s file, %s bytes)' % (
        args.model, model.spec.get('name') or '?', model.kind,
        '{:,}'.format(os.path.getsize(args.model)))
    print(summary.format_table(rows, title))


def run(args, parser=None):
    """``python -m binary_net summary``: prints the table; returns the exit status."""
    return report_errors(lambda: _summarize(args))
