"""Train the reference CIFAR-10 XNOR network (see binary_net.networks.cifar10_spec).

The same as ``python -m binary_net train cifar10 [flags]``: the flags and their defaults
live in :mod:`binary_net.train.cli` (``--help`` lists them).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from binary_net.train import cli  # noqa: E402


def main(argv=None):
    return cli.main(['cifar10'] + list(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    sys.exit(main())
