"""The epoch loop: train, validate, test at each new best, save, checkpoint, plot.

:func:`fit` is the body of every training in :mod:`binary_net.train`. Files written
next to ``model_out`` (``mnist.npz`` say), all atomically:

* ``mnist.npz``: the model with the best validation error so far (with its
  preprocessing, if any);
* ``mnist.ckpt.npz``: the state after the last finished epoch (parameters,
  optimizer state, history), for ``--resume``;
* ``mnist.png``: the training curves.
"""
import os
import time

import numpy as np

from .. import modelfile
from ..data import preprocessing
from . import checkpoints
from .augmentation import Augmentation
from .curves import plot_curves
from .schedules import learning_rate_schedule


def fit(trainer, splits, model_out, epochs, batch_size, lr_start, lr_end,
        train_size=None, resume=False, dataset='', progress=None, log=print,
        lr_schedule='exp', augmentation=None, preprocess=None):
    """Train for ``epochs``, saving the best model, a checkpoint and curves each epoch.

    Parameters
    ----------
    trainer : Trainer
    splits : binary_net.data.Splits
    model_out : str
        Path of the best model; the checkpoint and curve PNG go beside it.
    epochs, batch_size, lr_start, lr_end : training hyperparameters
    train_size : int or None, recorded to refuse resuming a different run
    resume : bool
        Continue from the checkpoint next to ``model_out``.
    dataset : str, recorded in the model's metadata
    progress : bool or None, show progress bars (None: only on a terminal)
    log : callable printing one line
    lr_schedule : {'exp', 'cosine', 'onecycle'}, see :func:`learning_rate_schedule`
    augmentation : Augmentation or None
    preprocess : binary_net.data.preprocessing.Preprocessing or None
        The transform ``splits`` went through; stored in the model file so that
        evaluation applies it too.

    Returns
    -------
    list of dict, one per epoch: epoch, lr, train_loss, valid_loss, valid_error,
    test_error (only where validation improved), seconds.
    """
    checkpoint_path, curve_path = checkpoints.companion_paths(model_out)
    augmentation = augmentation or Augmentation()
    settings = dict(epochs=epochs, batch_size=batch_size, lr_start=lr_start,
                    lr_end=lr_end, seed=trainer.seed, train_size=train_size,
                    lr_schedule=lr_schedule, crop_pad=augmentation.crop_pad,
                    flip=augmentation.flip)
    history, start_epoch = [], 0
    best = {'valid_error': np.inf}
    if resume:
        meta = checkpoints.resume(trainer, checkpoint_path, settings)
        history, best, start_epoch = meta['history'], meta['best'], meta['epoch']
        log('Resumed from %s after epoch %d (best validation error %.2f%%)'
            % (checkpoint_path, start_epoch, 100 * best['valid_error']))
    rates = learning_rate_schedule(lr_start, lr_end, epochs, lr_schedule,
                                   max(1, len(splits.X_train) // batch_size))
    for epoch in range(start_epoch, epochs):
        started = time.time()
        train_loss = trainer.train_epoch(splits.X_train, splits.y_train, epoch,
                                         batch_size, rates[epoch], progress, augmentation)
        valid_loss, valid_error = trainer.evaluate(splits.X_valid, splits.y_valid)
        record = dict(epoch=epoch + 1, lr=float(rates[epoch][0]), train_loss=train_loss,
                      valid_loss=valid_loss, valid_error=valid_error, test_error=None)
        if valid_error < best['valid_error']:
            record['test_error'] = trainer.evaluate(splits.X_test, splits.y_test)[1]
            best = dict(epoch=epoch + 1, valid_error=valid_error,
                        test_error=record['test_error'])
            extra = dict(best, dataset=dataset, settings=settings)
            if preprocess is not None and not preprocess.is_identity:
                extra[preprocessing.META_KEY] = preprocess.to_meta()
            modelfile.save_model(model_out, trainer.param_values(), trainer.spec, extra=extra,
                                 arrays=None if preprocess is None else preprocess.arrays())
        record['seconds'] = time.time() - started
        history.append(record)
        checkpoints.save_checkpoint(trainer, checkpoint_path,
                                    dict(epoch=epoch + 1, history=history, best=best,
                                         settings=settings))
        plot_curves(history, curve_path, '%s: %s' % (dataset or trainer.spec['name'],
                                                    os.path.basename(model_out)))
        log('Epoch %d/%d  lr %.2e  train loss %.4f  valid error %.2f%%%s  %.1fs'
            % (epoch + 1, epochs, rates[epoch][0], train_loss, 100 * valid_error,
               '' if record['test_error'] is None else
               '  test error %.2f%% (best)' % (100 * record['test_error']),
               record['seconds']))
    return history
