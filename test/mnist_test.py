"""Evaluate a trained model on the MNIST test set; see --help and binary_net.cli.evaluate."""
from binary_net.cli import evaluate

if __name__ == '__main__':
    raise SystemExit(evaluate.main('mnist'))
