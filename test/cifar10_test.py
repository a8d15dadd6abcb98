"""Evaluate a trained model on the CIFAR-10 test set; see --help and binary_net.cli.evaluate."""
from binary_net.cli import evaluate

if __name__ == '__main__':
    raise SystemExit(evaluate.main('cifar10'))
