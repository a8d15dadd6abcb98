"""``python -m binary_net COMMAND``: tools that work on saved models.

Each command lives in its own module, which provides ``add_arguments(parser)``
and ``run(args) -> exit status``; this file only dispatches, importing the
module of the chosen command alone (so ``summary`` never loads Theano).
"""
import argparse
import importlib
import sys

COMMANDS = {
    'summary': ('binary_net.summary', 'per-layer shapes, parameters by bit width, '
                'memory and multiply-accumulates of a model'),
    'pack': ('binary_net.modelfile', 'write a packed model file: binary weights at 1 bit each'),
    'export': ('binary_net.export', 'write standalone C99 inference code for a model'),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m binary_net',
                                     description='Tools that work on saved models.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (module, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, description=help_text)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the argparse error
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    sub = argparse.ArgumentParser(prog='python -m binary_net ' + argv[0],
                                  description=COMMANDS[argv[0]][1])
    module.add_arguments(sub)
    return module.run(sub.parse_args(argv[1:]))


if __name__ == '__main__':
    sys.exit(main())
