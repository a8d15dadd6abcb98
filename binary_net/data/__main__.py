"""``python -m binary_net.data download|check ...``: :func:`binary_net.data.cli.main`."""
import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main(prog='python -m binary_net.data'))
