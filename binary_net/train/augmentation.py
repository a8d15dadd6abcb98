"""Augmentation of training batches: random crops of zero-padded images, flips.

Used by :func:`binary_net.train.fit` (``--crop-pad``, ``--flip``, ``--augment``);
its randomness comes from a generator seeded by the run's seed and the epoch.
"""
import numpy as np


class Augmentation:
    """Random crops of zero-padded images and horizontal flips, for training batches.

    Parameters
    ----------
    crop_pad : int
        Pad each image with this many zeros on every side and crop a random
        window of the original size (0: no cropping).
    flip : bool
        Mirror each image left-right with probability 1/2.
    """

    def __init__(self, crop_pad=0, flip=False):
        if crop_pad < 0:
            raise ValueError('--crop-pad must be at least 0')
        self.crop_pad = int(crop_pad)
        self.flip = bool(flip)

    def __bool__(self):
        return self.crop_pad > 0 or self.flip

    def __call__(self, X, rng):
        """Augmented copy of an NCHW batch ``X``, drawn from ``rng``."""
        n, _, height, width = X.shape
        p = self.crop_pad
        # Draw both always, so each image's randomness does not depend on the other flag.
        dy, dx = rng.randint(0, 2 * p + 1, size=(2, n))
        mirror = rng.rand(n) < 0.5
        if p:
            padded = np.zeros(X.shape[:2] + (height + 2 * p, width + 2 * p), dtype=X.dtype)
            padded[:, :, p:p + height, p:p + width] = X
            out = np.empty_like(X)
            for i in range(n):
                out[i] = padded[i, :, dy[i]:dy[i] + height, dx[i]:dx[i] + width]
        else:
            out = X.copy()
        if self.flip:
            out[mirror] = out[mirror, :, :, ::-1]
        return out
