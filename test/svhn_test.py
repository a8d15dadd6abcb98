"""Evaluate a trained model on the SVHN test set; see --help and binary_net.cli.evaluate."""
from binary_net.cli import evaluate

if __name__ == '__main__':
    raise SystemExit(evaluate.main('svhn'))
