"""Fixtures shared by the unit tests."""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mnist_root():
    candidates = [os.environ.get('PYLEARN2_DATA_PATH'),
                  os.path.join(REPO, '..', 'shared', 'data')]
    for root in candidates:
        if root and os.path.isdir(os.path.join(root, 'mnist')):
            return os.path.abspath(root)
    return None


@pytest.fixture(scope='session')
def mnist_root():
    """Root (pylearn2 layout) holding the real MNIST; the test is skipped without it."""
    root = _mnist_root()
    if root is None:
        pytest.skip('real MNIST not found: set PYLEARN2_DATA_PATH')
    return root


@pytest.fixture(scope='session')
def repo_root():
    return REPO
