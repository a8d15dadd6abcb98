"""Train the reference CIFAR-10 XNOR network (see binary_net.networks.cifar10_spec)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from binary_net import networks, training  # noqa: E402


def main(argv=None):
    return training.conv_net_main(
        'cifar10', networks.cifar10_spec,
        'Train the XNOR-Net CIFAR-10 network: a full-precision first convolution, five '
        'XNOR convolutions, two XNOR dense layers, batch norm, softmax and cross-entropy.',
        filters=(128, 128, 256, 256, 512, 512), argv=argv,
        epochs=200, batch_size=50, lr_start=1e-3, lr_end=3e-7, model_out='cifar10.npz')


if __name__ == '__main__':
    sys.exit(main())
