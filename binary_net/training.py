"""Training loop for XNOR networks: schedule, checkpoints, resume, curves.

One :class:`Trainer` compiles the Theano functions of a network once and runs
epochs. Everything random is derived from the seed and the epoch number (the
shuffling order, the dropout masks), so a run resumed from the checkpoint of
epoch ``k`` continues exactly as the uninterrupted run would have.

Files written next to ``model_out`` (``mnist.npz`` say), all atomically:

* ``mnist.npz``: the model with the best validation error so far;
* ``mnist.ckpt.npz``: the state after the last finished epoch (parameters,
  optimizer state, history), for ``--resume``;
* ``mnist.png``: the training curves.

The command line (:func:`run_cli`) also holds ``mnist.npz.lock`` while it runs
(:class:`ModelLock`), so that two trainings never write the same files, and
removes the temporaries that a killed save of those files left behind.
"""
import argparse
import json
import os
import sys
import time
import zipfile

import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import DropoutLayer

from . import (argtypes, datasets, modelfile, networks, objectives, preprocessing, safeopen,
               theano_ext, updates)

CHECKPOINT_VERSION = 1


class TrainingError(Exception):
    """Training cannot go on (a NaN loss, a checkpoint that does not fit)."""


class ModelInUseError(Exception):
    """Another training holds the lock on the same ``--model-out``."""


class ModelLock:
    """An exclusive lock on a model path, held while one training writes there.

    The lock file ``PATH.lock`` records the holder's pid, host, start time and
    command, so that a second training given the same path can say which run
    has it. The lock itself is an ``flock`` on that file: the system drops it
    when the holder exits, however it exits (``kill -9`` included), so a lock
    file left by a run that died is simply taken over.

    Parameters
    ----------
    model_out : str

    Attributes
    ----------
    path : str, the lock file
    previous : dict or None
        The record of a dead run whose lock file was taken over.

    Raises
    ------
    ModelInUseError
        One line naming the running holder (pid, host, start, command).
    """

    def __init__(self, model_out):
        import fcntl
        import socket

        self.path = model_out + '.lock'
        self.previous = None
        self._fd = None
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._describe(self._read(fd))
                os.close(fd)
                raise ModelInUseError(
                    '%s is in use by another training (%s); wait for it to finish or '
                    'choose another --model-out' % (model_out, holder)) from None
            if self._same_file(fd):
                break
            os.close(fd)    # its holder removed it as we opened it: open the new one
        else:
            raise ModelInUseError('could not lock %s' % self.path)
        self.previous = self._read(fd) or None
        record = {'pid': os.getpid(), 'host': socket.gethostname(),
                  'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                  'command': ' '.join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        self._fd = fd

    def _same_file(self, fd):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    @staticmethod
    def _read(fd):
        try:
            raw = os.pread(fd, 4096, 0)
            record = json.loads(raw.decode()) if raw else {}
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    @staticmethod
    def _describe(record):
        if not record:
            return 'its lock file holds no details yet'
        return 'pid %s on host %s, started %s: %s' % (
            record.get('pid', '?'), record.get('host', '?'), record.get('started', '?'),
            record.get('command', '?'))

    def release(self):
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        if self._same_file(self._fd):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


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


def companion_paths(model_out):
    """(checkpoint, curve PNG) paths that belong to a model path."""
    stem = model_out[:-4] if model_out.endswith('.npz') else model_out
    return stem + '.ckpt.npz', stem + '.png'


def _targets_for(loss, labels, num_classes):
    if loss == 'squared_hinge':
        return datasets.hinge_targets(labels, num_classes)
    return labels.astype(np.int32)


class Trainer:
    """Compiles a network's training and evaluation functions once.

    Parameters
    ----------
    spec : dict
        Network description (:mod:`binary_net.networks`).
    seed : int
        Seeds the initial weights, the shuffling and the dropout masks.
    """

    def __init__(self, spec, seed=0):
        self.spec = spec
        self.seed = seed
        self.loss_name = spec['loss']
        lasagne.random.set_rng(np.random.RandomState(seed))
        inputs = T.tensor4('inputs')
        targets = T.matrix('targets') if self.loss_name == 'squared_hinge' else T.ivector('targets')
        self.network = networks.build(spec, inputs)
        self.num_classes = lasagne.layers.get_output_shape(self.network)[1]
        self.learning_rate = theano.shared(np.float32(0), name='learning_rate')

        train_out = lasagne.layers.get_output(self.network, deterministic=False)
        train_loss = self._loss(train_out, targets)
        self.updates = updates.binary_updates(train_loss, self.network,
                                              learning_rate=self.learning_rate)
        self.params = lasagne.layers.get_all_params(self.network)
        # Optimizer state (Adam's moments and step counters): everything updated
        # that is not a network parameter. Saved in checkpoints for exact resume.
        self.optimizer_state = [v for v in self.updates if v not in set(self.params)]
        # Called thousands of times: compiled to keep its buffers between calls.
        self._train = theano_ext.function([inputs, targets], train_loss,
                                          updates=self.updates)

        test_out = lasagne.layers.get_output(self.network, deterministic=True)
        errors = T.sum(T.neq(T.argmax(test_out, axis=1),
                             T.argmax(targets, axis=1) if targets.ndim == 2 else targets))
        self._evaluate = theano.function([inputs, targets],
                                         [self._loss(test_out, targets), errors],
                                         mode=theano_ext.fused_mode())

    def _loss(self, predictions, targets):
        if self.loss_name == 'squared_hinge':
            return objectives.squared_hinge_loss(predictions, targets)
        if self.loss_name == 'cross_entropy':
            return T.mean(T.nnet.categorical_crossentropy(predictions, targets))
        raise ValueError('unknown loss %r' % self.loss_name)

    # -- state ---------------------------------------------------------------
    def param_values(self):
        return [p.get_value() for p in self.params]

    def set_param_values(self, values, path='model'):
        modelfile.check_shapes(values, self.params, path)
        for p, v in zip(self.params, values):
            p.set_value(np.asarray(v, dtype=p.dtype))

    def _reseed_for_epoch(self, epoch):
        """Derive shuffling and dropout randomness from (seed, epoch) alone."""
        for layer in lasagne.layers.get_all_layers(self.network):
            if isinstance(layer, DropoutLayer):
                layer._srng.seed(int(np.random.RandomState([self.seed, epoch, 1])
                                     .randint(1, 2 ** 30)))
        return np.random.RandomState([self.seed, epoch, 0])

    # -- one epoch -------------------------------------------------------------
    def train_epoch(self, X, y, epoch, batch_size, learning_rate, progress=None,
                    augmentation=None):
        """Run one shuffled epoch; returns the mean training loss.

        ``learning_rate`` is one rate or one per batch; ``augmentation`` an
        :class:`Augmentation` applied to each batch (its randomness derived from
        the seed and the epoch).

        Raises
        ------
        TrainingError
            If the loss becomes NaN or infinite; the parameters are then those
            of the failing step, so the caller must not save them.
        """
        order = self._reseed_for_epoch(epoch).permutation(len(X))
        augment_rng = np.random.RandomState([self.seed, epoch, 2])
        targets = _targets_for(self.loss_name, y, self.num_classes)
        num_batches = len(X) // batch_size
        if num_batches == 0:
            raise TrainingError('batch size %d is larger than the %d training images'
                                % (batch_size, len(X)))
        rates = np.broadcast_to(np.asarray(learning_rate, dtype=np.float64), (num_batches,))
        total = 0.0
        bar = _progress(num_batches, 'epoch %d' % (epoch + 1), progress)
        for b in range(num_batches):
            index = order[b * batch_size:(b + 1) * batch_size]
            if b == 0 or rates[b] != rates[b - 1]:
                self.learning_rate.set_value(np.float32(rates[b]))
            inputs = X[index]
            if augmentation:
                inputs = augmentation(inputs, augment_rng)
            loss = float(self._train(inputs, targets[index]))
            if not np.isfinite(loss):
                bar.close()
                raise TrainingError('training loss became %s at epoch %d, batch %d'
                                    % ('NaN' if np.isnan(loss) else 'infinite',
                                       epoch + 1, b + 1))
            total += loss
            bar.update(1)
            bar.set_postfix(loss='%.4f' % (total / (b + 1)), refresh=False)
        bar.close()
        return total / num_batches

    def evaluate(self, X, y, batch_size=500):
        """Mean loss and error rate (in [0, 1]) of the deterministic network."""
        targets = _targets_for(self.loss_name, y, self.num_classes)
        loss, errors = 0.0, 0
        for start in range(0, len(X), batch_size):
            batch_loss, batch_errors = self._evaluate(X[start:start + batch_size],
                                                      targets[start:start + batch_size])
            loss += float(batch_loss) * len(X[start:start + batch_size])
            errors += int(batch_errors)
        return loss / len(X), errors / len(X)

    # -- checkpoints -------------------------------------------------------------
    #: The checkpoint this trainer saved or resumed from (None: none yet), i.e.
    #: whether an interrupted run can be continued with --resume.
    checkpoint_path = None

    def save_checkpoint(self, path, meta):
        arrays = {'param_%d' % i: v for i, v in enumerate(self.param_values())}
        arrays.update({'opt_%d' % i: v.get_value() for i, v in enumerate(self.optimizer_state)})
        meta = dict(meta, version=CHECKPOINT_VERSION, spec=self.spec)
        arrays['meta'] = np.array(json.dumps(meta))
        modelfile.atomic_write(path, lambda f: np.savez(f, **arrays))
        self.checkpoint_path = path

    def load_checkpoint(self, path):
        """Restore parameters and optimizer state; returns the checkpoint's metadata."""
        try:
            with safeopen.open_regular(path) as stream, \
                    np.load(stream, allow_pickle=False) as data:
                meta = json.loads(str(data['meta']))
                params = [data['param_%d' % i] for i in range(len(self.params))]
                state = [data['opt_%d' % i] for i in range(len(self.optimizer_state))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError,
                NotImplementedError) as error:
            raise TrainingError('cannot resume from %s: it is truncated or corrupt (%s)'
                                % (path, modelfile.first_line(error))) from None
        if not isinstance(meta, dict) or not all(key in meta for key in
                                                 ('settings', 'history', 'best', 'epoch')):
            raise TrainingError('cannot resume from %s: its metadata is incomplete' % path)
        if meta.get('spec') != self.spec:
            raise TrainingError('cannot resume from %s: it was trained with another network' % path)
        self.set_param_values(params, path)
        for variable, value in zip(self.optimizer_state, state):
            variable.set_value(value)
        self.checkpoint_path = path
        return meta


def _progress(total, description, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit='batch', leave=False,
                disable=not enabled if enabled is not None else None,
                file=sys.stderr, dynamic_ncols=True)


def plot_curves(history, path, title):
    """Write the training curves (loss, validation and test error) as a PNG, atomically.

    Every point is marked, so that one epoch shows. Returns the (closed) figure.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    epochs = [h['epoch'] for h in history]
    # Markers, so that a run of one epoch (one point per line) shows its values.
    line = dict(marker='.', markersize=6)
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h['train_loss'] for h in history], label='train loss', **line)
    ax_loss.plot(epochs, [h['valid_loss'] for h in history], label='validation loss', **line)
    ax_loss.set_xlabel('epoch')
    ax_loss.set_yscale('log')
    ax_loss.legend()
    ax_err.plot(epochs, [100 * h['valid_error'] for h in history], label='validation error',
                **line)
    tested = [h for h in history if h.get('test_error') is not None]
    ax_err.plot([h['epoch'] for h in tested], [100 * h['test_error'] for h in tested],
                'o', label='test error (at new best validation)')
    ax_err.set_xlabel('epoch')
    ax_err.set_ylabel('error (%)')
    ax_err.legend()
    fig.suptitle(title)
    fig.tight_layout()
    modelfile.atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=80))
    plt.close(fig)
    return fig


HYPERPARAMETERS = ('epochs', 'batch_size', 'lr_start', 'lr_end', 'seed', 'train_size',
                   'lr_schedule', 'crop_pad', 'flip')
# Settings added after the first checkpoints were written: what those runs used.
SETTING_DEFAULTS = dict(lr_schedule='exp', crop_pad=0, flip=False)


def fit(trainer, splits, model_out, epochs, batch_size, lr_start, lr_end,
        train_size=None, resume=False, dataset='', progress=None, log=print,
        lr_schedule='exp', augmentation=None, preprocess=None):
    """Train for ``epochs``, saving the best model, a checkpoint and curves each epoch.

    Parameters
    ----------
    trainer : Trainer
    splits : datasets.Splits
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
    preprocess : preprocessing.Preprocessing or None
        The transform ``splits`` went through; stored in the model file so that
        evaluation applies it too.

    Returns
    -------
    list of dict, one per epoch: epoch, lr, train_loss, valid_loss, valid_error,
    test_error (only where validation improved), seconds.
    """
    checkpoint_path, curve_path = companion_paths(model_out)
    augmentation = augmentation or Augmentation()
    settings = dict(epochs=epochs, batch_size=batch_size, lr_start=lr_start,
                    lr_end=lr_end, seed=trainer.seed, train_size=train_size,
                    lr_schedule=lr_schedule, crop_pad=augmentation.crop_pad,
                    flip=augmentation.flip)
    history, start_epoch = [], 0
    best = {'valid_error': np.inf}
    if resume:
        if not os.path.exists(checkpoint_path):
            raise TrainingError('cannot resume: no checkpoint at %s' % checkpoint_path)
        meta = trainer.load_checkpoint(checkpoint_path)
        previous = dict(SETTING_DEFAULTS, **meta['settings'])
        changed = [k for k in HYPERPARAMETERS if previous.get(k) != settings[k]]
        if changed:
            raise TrainingError('cannot resume from %s: it was started with other %s (%s)'
                                % (checkpoint_path, ', '.join(changed),
                                   ', '.join('%s=%s' % (k, previous.get(k)) for k in changed)))
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
        trainer.save_checkpoint(checkpoint_path, dict(epoch=epoch + 1, history=history,
                                                      best=best, settings=settings))
        plot_curves(history, curve_path, '%s: %s' % (dataset or trainer.spec['name'],
                                                    os.path.basename(model_out)))
        log('Epoch %d/%d  lr %.2e  train loss %.4f  valid error %.2f%%%s  %.1fs'
            % (epoch + 1, epochs, rates[epoch][0], train_loss, 100 * valid_error,
               '' if record['test_error'] is None else
               '  test error %.2f%% (best)' % (100 * record['test_error']),
               record['seconds']))
    return history


#: argparse type of learning rates: a finite number above 0.
POSITIVE_RATE = argtypes.float_range(0, low_open=True)


def add_training_arguments(parser, epochs, batch_size, lr_start, lr_end, model_out):
    """The flags every trainer shares, with that network's defaults."""
    parser.add_argument('--epochs', type=argtypes.int_range(1), default=epochs,
                        help='number of epochs (default: %(default)s)')
    parser.add_argument('--batch-size', type=argtypes.int_range(1), default=batch_size,
                        help='minibatch size (default: %(default)s)')
    parser.add_argument('--lr-start', type=POSITIVE_RATE, default=lr_start,
                        help='initial learning rate (default: %(default)s)')
    parser.add_argument('--lr-end', type=POSITIVE_RATE, default=lr_end,
                        help='learning rate reached at the end (default: %(default)s)')
    parser.add_argument('--lr-schedule', choices=LR_SCHEDULES, default='exp',
                        help='exp: BinaryNet\'s exponential decay per epoch (default); '
                             'cosine: cosine decay per step; onecycle: linear warm-up '
                             'from lr-start/25 over 30%% of the steps, then cosine decay')
    parser.add_argument('--train-size', type=argtypes.int_range(1), default=None, metavar='N',
                        help='train on the first N training images only, for quick runs')
    parser.add_argument('--valid-size', type=argtypes.int_range(0), default=None, metavar='N',
                        help='validation images, taken from the end of the training set '
                             '(default: the dataset\'s)')
    parser.add_argument('--data-path', default=None,
                        help='dataset root in pylearn2 layout (default: $PYLEARN2_DATA_PATH, '
                             'else ~/pylearn2_data)')
    parser.add_argument('--model-out', default=model_out,
                        help='where the best model is saved (default: %(default)s); the '
                             'checkpoint and training-curve PNG are written beside it')
    parser.add_argument('--seed', type=argtypes.int_range(0, 2 ** 32 - 1), default=1234,
                        help='seed of weights, shuffling and dropout (default: %(default)s)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the checkpoint beside --model-out')
    parser.add_argument('--no-progress', action='store_true', help='hide progress bars')
    parser.add_argument('--loader', choices=datasets.LOADERS, default='binary_net',
                        help="read the data with this package's readers (default) or "
                             "through pylearn2.datasets (pylearn2 installed; MNIST needs the "
                             "uncompressed IDX files, SVHN PyTables)")
    parser.add_argument('--split', choices=datasets.SPLITS, default='default',
                        help="'original': the original theano-xnor-net's data: MNIST and "
                             "CIFAR-10 train on [0:40000] and validate on [40000:50000], SVHN "
                             "trains on train+extra minus a class-balanced validation set of "
                             "6,000 (RandomState(322)) with classes = .mat label - 1; pixels "
                             "scaled as X * (2.0 / 255) - 1.0 (default: %(default)s: "
                             "validation from the end of the training file)")


def _claim_model_path(model_out, log):
    """Lock ``model_out`` for this run, then remove temporaries a killed save left.

    Returns the :class:`ModelLock`; raises :class:`ModelInUseError` if another
    training holds it.
    """
    lock = ModelLock(model_out)
    if lock.previous:
        log('Taking over the lock of a training that is no longer running (pid %s on %s)'
            % (lock.previous.get('pid', '?'), lock.previous.get('host', '?')))
    for target in (model_out,) + companion_paths(model_out):
        for path in modelfile.remove_stale_temporaries(target):
            log('Removed %s, left by an interrupted save' % path)
    return lock


def _what_is_kept(trainer, model_out, resumable=False):
    """The end of an error line: what a failed run leaves for the user."""
    if trainer is not None and trainer.checkpoint_path:
        return ('the best model so far and the last checkpoint are kept beside %s%s'
                % (model_out, '; continue with --resume' if resumable else ''))
    return 'no checkpoint was written, so there is nothing to resume'


def add_augmentation_arguments(parser):
    """--augment, --crop-pad and --flip (for the image trainers)."""
    parser.add_argument('--crop-pad', type=argtypes.int_range(0), default=0, metavar='P',
                        help='random crops of the images zero-padded by P pixels (default: 0, off)')
    parser.add_argument('--flip', action='store_true',
                        help='random horizontal flips')
    parser.add_argument('--augment', action='store_true',
                        help='shorthand for --flip and, unless given, --crop-pad 4')


def run_cli(description, spec, args, dataset, prepare_kwargs=None):
    """Shared body of the train/*_train.py scripts: load data, fit, report.

    Returns the process exit status: 0, 1 on a training error or a failed
    save, 2 on bad input (another training holding ``--model-out`` included),
    130 when interrupted. Every error is one line on stderr.
    """
    log = lambda line: print(line, flush=True)  # noqa: E731
    lock = trainer = None
    try:
        for flag in ('epochs', 'batch_size'):
            if getattr(args, flag) < 1:
                raise ValueError('--%s must be at least 1' % flag.replace('_', '-'))
        lock = _claim_model_path(args.model_out, log)
        augment = getattr(args, 'augment', False)
        augmentation = Augmentation(getattr(args, 'crop_pad', 0) or (4 if augment else 0),
                                    getattr(args, 'flip', False) or augment)
        if getattr(args, 'split', 'default') == 'original':
            spec, splits = original_data(spec, dataset, args, prepare_kwargs)
            preprocess = preprocessing.Preprocessing()
        else:
            loader = getattr(args, 'loader', 'binary_net')
            splits, preprocess = preprocessing.prepare(
                dataset, data_path=args.data_path, train_size=args.train_size,
                valid_size=args.valid_size,
                **dict(prepare_kwargs or {}, **({'loader': loader} if loader != 'binary_net'
                                                else {})))
        log('%s: %d training, %d validation, %d test images; %d epochs, batch %d, seed %d'
            % (description, len(splits.X_train), len(splits.X_valid), len(splits.X_test),
               args.epochs, args.batch_size, args.seed))
        started = time.time()
        trainer = Trainer(spec, seed=args.seed)
        log('Compiled in %.1fs' % (time.time() - started))
        history = fit(trainer, splits, args.model_out, args.epochs, args.batch_size,
                      args.lr_start, args.lr_end, train_size=args.train_size,
                      resume=args.resume, dataset=dataset,
                      progress=False if args.no_progress else None, log=log,
                      lr_schedule=args.lr_schedule, augmentation=augmentation,
                      preprocess=preprocess)
    except (datasets.DatasetError, modelfile.ModelFileError, ModelInUseError, ValueError) as error:
        print('error: %s' % error, file=sys.stderr)
        return 2
    except TrainingError as error:
        print('error: %s; %s' % (error, _what_is_kept(trainer, args.model_out)), file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, say, while saving
        print('error: cannot write %s: %s; %s'
              % (error.filename or args.model_out, error.strerror or modelfile.first_line(error),
                 _what_is_kept(trainer, args.model_out, resumable=True)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if trainer is not None and trainer.checkpoint_path:
            print('\ninterrupted: the best model and the checkpoint of the last finished '
                  'epoch are saved beside %s; continue with --resume' % args.model_out,
                  file=sys.stderr)
        else:
            print('\ninterrupted before the first checkpoint was written: there is nothing '
                  'to resume', file=sys.stderr)
        return 130
    finally:
        if lock is not None:
            lock.release()
    if history:
        best = min(history, key=lambda h: h['valid_error'])
        log('Best validation error %.2f%% at epoch %d; its test error %.2f%%; model saved to %s'
            % (100 * best['valid_error'], best['epoch'],
               100 * (best['test_error'] or 0), args.model_out))
    log('Total time %.1fs' % (time.time() - started))
    return 0


def original_data(spec, dataset, args, prepare_kwargs=None):
    """``--split original``: the original's splits, and the spec marked with its
    pixel scaling and class numbering so that evaluation reads the model the same way."""
    if args.valid_size is not None:
        raise ValueError('--valid-size does not apply to --split original (its validation '
                         'set is fixed)')
    if any((prepare_kwargs or {}).values()):
        raise ValueError('--gcn and --zca are not part of the original\'s data; drop them '
                         'or --split original')
    splits = datasets.prepare_original(dataset, data_path=args.data_path,
                                       train_size=args.train_size,
                                       loader=getattr(args, 'loader', 'binary_net'))
    spec = dict(spec, pixel_scaling='original')
    if dataset == 'svhn':
        spec['labels'] = 'svhn_mat_minus_one'
    return spec, splits


def make_parser(description, **defaults):
    """An argparse parser with the shared training flags."""
    parser = argparse.ArgumentParser(description=description)
    add_training_arguments(parser, **defaults)
    return parser


def conv_net_main(dataset, spec_builder, description, filters, argv=None, **defaults):
    """Entry point shared by the CIFAR-10 and SVHN trainers (their flags are alike).

    Parameters
    ----------
    dataset : str, 'cifar10' or 'svhn'
    spec_builder : callable(filters=..., dense_units=...) -> spec
    description : str, the --help text
    filters : default filter counts of the six convolutions
    argv : list of str or None
    **defaults : epochs, batch_size, lr_start, lr_end, model_out
    """
    parser = make_parser(description, **defaults)
    parser.add_argument('--filters', type=argtypes.int_range(1), nargs=6, default=list(filters), metavar='F',
                        help='filters of the six convolutions (default: %(default)s)')
    parser.add_argument('--dense-units', type=argtypes.int_range(1), default=1024,
                        help='units of the two XNOR dense layers (default: %(default)s)')
    parser.add_argument('--gcn', action='store_true',
                        help='global contrast normalization, as pylearn2 did')
    parser.add_argument('--zca', action='store_true',
                        help='ZCA whitening fitted on the training split')
    add_augmentation_arguments(parser)
    args = parser.parse_args(argv)
    spec = spec_builder(filters=tuple(args.filters), dense_units=args.dense_units)
    return run_cli('%s XNOR network' % dataset, spec, args, dataset,
                   dict(gcn=args.gcn, zca=args.zca))
