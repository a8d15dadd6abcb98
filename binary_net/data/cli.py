"""The datasets' command line: ``download NAME`` and ``check NAME``.

The user's way into :mod:`binary_net.data`: ``python -m binary_net download|check``
calls :func:`main` (so does ``python -m binary_net.data``). Bad data is one
``error:`` line and exit status 2, as for every command; Ctrl-C is 130, keeping a
partial download for resuming.
"""
import argparse
import sys

from .download import download
from .files import DatasetError
from .loading import load
from .registry import DATASET_NAMES


def _build_parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Download and check the datasets of the BinaryNet / XNOR-Net experiments, '
                    'kept in pylearn2\'s layout under --data-path (default $PYLEARN2_DATA_PATH, '
                    'else ~/pylearn2_data).')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)

    fetch = commands.add_parser(
        'download', help='fetch a dataset\'s official files (resumable, checksum-verified)',
        description='Fetch the official files of a dataset into pylearn2\'s layout. An interrupted '
                    'download resumes when the command is run again.')
    fetch.add_argument('name', choices=DATASET_NAMES, help='dataset to fetch')
    fetch.add_argument('--data-path', metavar='DIR', help='data root (default $PYLEARN2_DATA_PATH, '
                       'else ~/pylearn2_data)')
    fetch.add_argument('--base-url', metavar='URL',
                       help='download from this directory URL instead of the official site, e.g. the '
                            'MNIST mirror https://ossci-datasets.s3.amazonaws.com/mnist/')
    fetch.add_argument('--extra', action='store_true', help='svhn: also fetch extra_32x32.mat (1.3 GB)')
    fetch.add_argument('--quiet', action='store_true', help='no progress bars')

    check = commands.add_parser('check', help='load a dataset and print its shapes',
                                description='Load a dataset from disk and print its array shapes.')
    check.add_argument('name', choices=DATASET_NAMES, help='dataset to load')
    check.add_argument('--data-path', metavar='DIR', help='data root (default $PYLEARN2_DATA_PATH, '
                       'else ~/pylearn2_data)')
    check.add_argument('--extra', action='store_true', help='svhn: include extra_32x32.mat')
    return parser


def main(argv=None, prog='python -m binary_net'):
    """``download`` and ``check``: the entry point of ``python -m binary_net download|check``.

    Parameters
    ----------
    argv : list of str or None
        Arguments without the program name, the command first (``['download', 'mnist',
        '--data-path', DIR]``, ``['check', 'mnist']``); default ``sys.argv[1:]``.
    prog : str
        The program name that usage and help messages show.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a :class:`DatasetError` (as every other
        command), 130 after Ctrl-C (an interrupted download keeps its ``.part``
        file for resuming).
    """
    args = _build_parser(prog).parse_args(argv)
    kwargs = {'extra': True} if args.extra else {}
    try:
        if args.command == 'download':
            paths = download(args.name, args.data_path, base_url=args.base_url,
                             progress=not args.quiet, **kwargs)
            print('%s ready: %s' % (args.name, ', '.join(paths)))
        else:
            data = load(args.name, args.data_path, **kwargs)
            for split, (X, y) in data.items():
                print('%s %s: X %s %s, y %s %s' % (args.name, split, X.dtype, X.shape, y.dtype, y.shape))
    except DatasetError as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print('interrupted%s' % (': %s' % err if str(err) else ''), file=sys.stderr)
        return 130
    return 0

