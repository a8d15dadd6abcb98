"""A small subset of the real CIFAR-10 (JPEG-q75 copy) in the official batch format.

CI has ``../shared/data/cifar10-jpeg/cifar10_jpeg_q75.npz`` (all 60,000 images as
JPEG files, sorted by class). :func:`write_subset` decodes a class-balanced,
seeded subset of it with Pillow and writes ``data_batch_1..5`` and
``test_batch`` (Python pickles of ``{b'data': uint8 (n, 3072), b'labels': [...]}``,
as the official files) under ``root/cifar10/cifar-10-batches-py``.
"""
import io
import os
import pickle

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_path():
    """The JPEG archive, or None where this checkout has no ../shared/data."""
    candidates = [os.path.join(REPO, '..', 'shared', 'data', 'cifar10-jpeg'),
                  '/work/shared/data/cifar10-jpeg']
    for directory in candidates:
        path = os.path.join(directory, 'cifar10_jpeg_q75.npz')
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def decode(archive, split, indices):
    """uint8 (len(indices), 3072) channel-major rows and int labels of ``split``."""
    from PIL import Image
    blob, offsets = archive[split + '_jpeg'], archive[split + '_offsets']
    rows = np.empty((len(indices), 3072), np.uint8)
    for k, i in enumerate(indices):
        image = Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert('RGB')
        rows[k] = np.asarray(image, np.uint8).transpose(2, 0, 1).reshape(-1)
    return rows, archive[split + '_labels'][indices].astype(np.int64)


def write_subset(root, train_per_batch, test_count, seed=0):
    """Write ``5 * train_per_batch`` training and ``test_count`` test images.

    Returns
    -------
    dict with the decoded ``train`` and ``test`` (rows, labels), in file order.
    """
    rng = np.random.RandomState(seed)
    with np.load(source_path()) as archive:
        archive = dict(archive)
    train_index = rng.permutation(len(archive['train_labels']))[:5 * train_per_batch]
    test_index = rng.permutation(len(archive['test_labels']))[:test_count]
    train = decode(archive, 'train', train_index)
    test = decode(archive, 'test', test_index)
    directory = os.path.join(root, 'cifar10', 'cifar-10-batches-py')
    os.makedirs(directory)
    for b in range(5):
        part = slice(b * train_per_batch, (b + 1) * train_per_batch)
        _dump(os.path.join(directory, 'data_batch_%d' % (b + 1)), train[0][part], train[1][part])
    _dump(os.path.join(directory, 'test_batch'), *test)
    return {'train': train, 'test': test}


def _dump(path, rows, labels):
    with open(path, 'wb') as stream:
        pickle.dump({b'data': rows, b'labels': [int(v) for v in labels]}, stream, protocol=2)
