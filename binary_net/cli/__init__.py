"""The commands of ``python -m binary_net``: one way in.

``python -m binary_net COMMAND ...`` dispatches here (:func:`main`). Each command
is a module: those of this package (``evaluate``, ``summary``, ``pack``,
``export``) provide ``add_arguments(parser)`` and ``run(args, parser)``; training
and the datasets' download and check provide ``main(argv)`` in their own packages.
Only the chosen command's module is imported, so ``summary``, ``pack`` and
``export`` never load Theano. What the commands share (opening a model,
calibration, exit codes and error lines) is :mod:`binary_net.cli.common`.
Importing it makes idle OpenMP and OpenBLAS threads soon sleep (:mod:`binary_net.threads`)
before any command loads numpy.
"""
import argparse
import importlib
import sys

from ..threads import prefer_sleeping_threads

prefer_sleeping_threads()

#: name -> (module, how it is called, one line of help). 'run': the module has
#: add_arguments(parser) and run(args, parser); 'main': main(argv, prog) gets the
#: arguments after the command; 'main+name': main(argv, prog) gets the command too.
COMMANDS = {
    'train': ('binary_net.train.cli', 'main', 'train a reference network: train DATASET ...'),
    'evaluate': ('binary_net.cli.evaluate', 'run', 'test error of a model: evaluate DATASET ...'),
    'summary': ('binary_net.cli.summary', 'run', 'per-layer shapes, bits, memory, MACs'),
    'pack': ('binary_net.cli.pack', 'run', 'write a packed model: binary weights at 1 bit'),
    'export': ('binary_net.cli.export', 'run', 'write C99 inference code (and firmware)'),
    'download': ('binary_net.data.cli', 'main+name', 'download a dataset, verify checksums'),
    'check': ('binary_net.data.cli', 'main+name', 'check that a dataset is present, readable'),
}


def build_parser():
    """The top-level parser: ``python -m binary_net --help`` lists every command."""
    parser = argparse.ArgumentParser(
        prog='python -m binary_net',
        description='XNOR-Net for Theano and Lasagne: train, evaluate and deploy binary '
                    'networks. Run a command with --help for its flags.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, _, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv=None):
    """Run ``python -m binary_net COMMAND ...``; returns the exit status.

    Parameters
    ----------
    argv : list of str or None
        The arguments, command first; default ``sys.argv[1:]``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the argparse error
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module_name, style, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    if style == 'main':
        return module.main(rest, prog='python -m binary_net ' + name)
    if style == 'main+name':
        return module.main([name] + rest, prog='python -m binary_net')
    sub = argparse.ArgumentParser(prog='python -m binary_net ' + name, description=help_text)
    module.add_arguments(sub)
    return module.run(sub.parse_args(rest), sub)
