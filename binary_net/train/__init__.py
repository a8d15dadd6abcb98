"""Training XNOR networks: the epoch loop, schedules, checkpoints, curves, the trainers.

Modules, from the bottom up: ``errors`` (:class:`TrainingError`), ``schedules``
(:func:`learning_rate_schedule`), ``augmentation`` (:class:`Augmentation`),
``trainer`` (:class:`Trainer`: a network's Theano functions, compiled once, one
epoch at a time), ``checkpoints`` (the state after each epoch and ``--resume``),
``curves`` (:func:`plot_curves`), ``loop`` (:func:`fit`: the epoch loop that saves
the best model, the checkpoint and the curves), ``lock`` (:class:`ModelLock` on
``--model-out``) and ``cli`` (the trainers' flags and
``python -m binary_net train DATASET``; ``train/*_train.py`` call it). The data
comes from :mod:`binary_net.data`, the networks from :mod:`binary_net.networks`.

Examples
--------
>>> from binary_net.train import learning_rate_schedule
>>> learning_rate_schedule(1e-3, 1e-5, epochs=3).round(8).tolist()
[0.001, 0.00021544, 4.642e-05]
"""
from ..threads import prefer_sleeping_threads

# Before numpy is loaded, whose OpenBLAS reads its idle-thread timeout once.
prefer_sleeping_threads()

from .augmentation import Augmentation  # noqa: E402
from .checkpoints import companion_paths, load_checkpoint, resume, save_checkpoint  # noqa: E402
from .cli import (TRAINERS, add_augmentation_arguments, add_training_arguments,  # noqa: E402
                  conv_net_main, make_parser, mnist_main, run_cli)
from .curves import plot_curves  # noqa: E402
from .errors import TrainingError  # noqa: E402
from .lock import ModelInUseError, ModelLock  # noqa: E402
from .loop import fit  # noqa: E402
from .schedules import LR_SCHEDULES, learning_rate_schedule  # noqa: E402
from .trainer import Trainer  # noqa: E402

__all__ = [
    'Augmentation', 'companion_paths', 'load_checkpoint', 'resume', 'save_checkpoint',
    'TRAINERS', 'add_augmentation_arguments', 'add_training_arguments', 'conv_net_main',
    'make_parser', 'mnist_main', 'run_cli', 'plot_curves', 'TrainingError',
    'ModelInUseError', 'ModelLock', 'fit', 'LR_SCHEDULES', 'learning_rate_schedule',
    'Trainer',
]
