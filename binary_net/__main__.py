"""``python -m binary_net COMMAND``: the one way in; see :mod:`binary_net.cli`."""
import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main())
