"""Train the reference SVHN XNOR network (see binary_net.networks.svhn_spec)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from binary_net import networks, training  # noqa: E402


def main(argv=None):
    return training.conv_net_main(
        'svhn', networks.svhn_spec,
        'Train the XNOR-Net SVHN network: the CIFAR-10 shape with fewer filters, a '
        'full-precision dense output with batch norm, and the squared hinge loss.',
        filters=(64, 64, 128, 128, 256, 256), argv=argv,
        epochs=200, batch_size=100, lr_start=1e-3, lr_end=1e-6, model_out='svhn.npz')


if __name__ == '__main__':
    sys.exit(main())
