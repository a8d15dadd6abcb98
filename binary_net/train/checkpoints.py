"""Checkpoints: the state after each finished epoch, for an exact ``--resume``.

Part of :mod:`binary_net.train`. Beside a model path ``mnist.npz`` live the
checkpoint ``mnist.ckpt.npz`` and the curves ``mnist.png``
(:func:`companion_paths`). A checkpoint holds the parameters, the optimizer state
(Adam's moments and step counters) and the run's history and settings; it is
written atomically and read as data only (``allow_pickle=False``, regular files).
:func:`resume` refuses a checkpoint of another network or other settings.
"""
import json
import os
import zipfile

import numpy as np

from .. import modelfile, safeopen
from .errors import TrainingError

CHECKPOINT_VERSION = 1
#: The settings a resumed run must share with the checkpoint's.
HYPERPARAMETERS = ('epochs', 'batch_size', 'lr_start', 'lr_end', 'seed', 'train_size',
                   'lr_schedule', 'crop_pad', 'flip')
# Settings added after the first checkpoints were written: what those runs used.
SETTING_DEFAULTS = dict(lr_schedule='exp', crop_pad=0, flip=False)


def companion_paths(model_out):
    """(checkpoint, curve PNG) paths that belong to a model path."""
    stem = model_out[:-4] if model_out.endswith('.npz') else model_out
    return stem + '.ckpt.npz', stem + '.png'


def save_checkpoint(trainer, path, meta):
    """Write ``trainer``'s parameters and optimizer state with ``meta``, atomically.

    Parameters
    ----------
    trainer : binary_net.train.Trainer
    path : str
    meta : dict
        JSON-serializable: epoch, history, best, settings.
    """
    arrays = {'param_%d' % i: v for i, v in enumerate(trainer.param_values())}
    arrays.update({'opt_%d' % i: v.get_value() for i, v in enumerate(trainer.optimizer_state)})
    meta = dict(meta, version=CHECKPOINT_VERSION, spec=trainer.spec)
    arrays['meta'] = np.array(json.dumps(meta))
    modelfile.atomic_write(path, lambda f: np.savez(f, **arrays))
    trainer.checkpoint_path = path


def load_checkpoint(trainer, path):
    """Restore parameters and optimizer state into ``trainer``; returns the checkpoint's metadata."""
    try:
        with safeopen.open_regular(path) as stream, \
                np.load(stream, allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            params = [data['param_%d' % i] for i in range(len(trainer.params))]
            state = [data['opt_%d' % i] for i in range(len(trainer.optimizer_state))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError) as error:
        raise TrainingError('cannot resume from %s: it is truncated or corrupt (%s)'
                            % (path, modelfile.first_line(error))) from None
    if not isinstance(meta, dict) or not all(key in meta for key in
                                             ('settings', 'history', 'best', 'epoch')):
        raise TrainingError('cannot resume from %s: its metadata is incomplete' % path)
    if meta.get('spec') != trainer.spec:
        raise TrainingError('cannot resume from %s: it was trained with another network' % path)
    trainer.set_param_values(params, path)
    for variable, value in zip(trainer.optimizer_state, state):
        variable.set_value(value)
    trainer.checkpoint_path = path
    return meta


def resume(trainer, checkpoint_path, settings):
    """Restore the checkpoint of an interrupted run with the same ``settings``.

    Returns
    -------
    dict
        The checkpoint's metadata: ``epoch`` (finished epochs), ``history``,
        ``best``, ``settings``.

    Raises
    ------
    TrainingError
        No checkpoint, a corrupt one, or one started with other settings.
    """
    if not os.path.exists(checkpoint_path):
        raise TrainingError('cannot resume: no checkpoint at %s' % checkpoint_path)
    meta = load_checkpoint(trainer, checkpoint_path)
    previous = dict(SETTING_DEFAULTS, **meta['settings'])
    changed = [k for k in HYPERPARAMETERS if previous.get(k) != settings[k]]
    if changed:
        raise TrainingError('cannot resume from %s: it was started with other %s (%s)'
                            % (checkpoint_path, ', '.join(changed),
                               ', '.join('%s=%s' % (k, previous.get(k)) for k in changed)))
    return meta
