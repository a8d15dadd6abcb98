"""Train the reference MNIST XNOR MLP (see binary_net.networks.mnist_spec)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from binary_net import argtypes, networks, training  # noqa: E402


def main(argv=None):
    parser = training.make_parser(
        'Train the XNOR-Net MNIST MLP: XNOR dense layers with batch norm, squared '
        'hinge loss, Adam with an exponentially decaying learning rate.',
        epochs=1000, batch_size=100, lr_start=3e-3, lr_end=3e-7, model_out='mnist.npz')
    parser.add_argument('--num-units', type=argtypes.int_range(1), default=4096,
                        help='units per hidden XNOR layer (default: %(default)s)')
    parser.add_argument('--dropout', type=argtypes.float_range(0, 1, high_open=True), default=0.5,
                        help='dropout after the 2nd and 3rd XNOR layers; 0 for none '
                             '(default: %(default)s)')
    args = parser.parse_args(argv)
    spec = networks.mnist_spec(num_units=args.num_units, dropout_p=args.dropout)
    return training.run_cli('MNIST XNOR MLP %dx%d' % (3, args.num_units), spec, args, 'mnist')


if __name__ == '__main__':
    sys.exit(main())
