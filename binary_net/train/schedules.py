"""Learning-rate schedules: BinaryNet's exponential decay, cosine and one-cycle.

Used by :func:`binary_net.train.fit` (``--lr-schedule``); numpy only.
"""
import numpy as np

LR_SCHEDULES = ('exp', 'cosine', 'onecycle')
# one-cycle: the warm-up starts at lr_start / ONECYCLE_DIV and takes this fraction of the steps
ONECYCLE_DIV = 25.0
ONECYCLE_WARMUP = 0.3


def learning_rate_schedule(lr_start, lr_end, epochs, kind='exp', steps_per_epoch=None):
    """Learning rates of a run.

    Parameters
    ----------
    lr_start, lr_end : float
    epochs : int
    kind : {'exp', 'cosine', 'onecycle'}
        ``'exp'`` (BinaryNet's, the default): the rate is multiplied by
        ``(lr_end / lr_start) ** (1 / epochs)`` after each epoch and is constant
        within an epoch. ``'cosine'``: half a cosine from ``lr_start`` down to
        ``lr_end``, per step. ``'onecycle'``: a linear warm-up from
        ``lr_start / 25`` to ``lr_start`` over the first 30% of the steps, then
        half a cosine down to ``lr_end``.
    steps_per_epoch : int or None
        None: one rate per epoch (for ``cosine`` and ``onecycle``, the rate at
        the start of each epoch).

    Returns
    -------
    numpy float64 array of shape ``(epochs,)`` or ``(epochs, steps_per_epoch)``.
    """
    if kind not in LR_SCHEDULES:
        raise ValueError('unknown learning-rate schedule %r (choose from %s)'
                         % (kind, ', '.join(LR_SCHEDULES)))
    steps = 1 if steps_per_epoch is None else steps_per_epoch
    if kind == 'exp':
        decay = (lr_end / lr_start) ** (1.0 / epochs)
        rates = np.repeat((lr_start * decay ** np.arange(epochs))[:, None], steps, axis=1)
    else:
        t = np.arange(epochs * steps, dtype=np.float64) / (epochs * steps)
        if kind == 'cosine':
            rates = lr_end + (lr_start - lr_end) * 0.5 * (1 + np.cos(np.pi * t))
        else:
            warm = t < ONECYCLE_WARMUP
            low = lr_start / ONECYCLE_DIV
            rates = np.empty_like(t)
            rates[warm] = low + (lr_start - low) * t[warm] / ONECYCLE_WARMUP
            down = (t[~warm] - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
            rates[~warm] = lr_end + (lr_start - lr_end) * 0.5 * (1 + np.cos(np.pi * down))
        rates = rates.reshape(epochs, steps)
    return rates[:, 0] if steps_per_epoch is None else rates
