"""Evaluate a trained model on the SVHN test set; see --help and binary_net.evaluation."""
from binary_net import evaluation

if __name__ == '__main__':
    raise SystemExit(evaluation.main('svhn'))
