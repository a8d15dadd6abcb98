"""The trainer: a network's Theano training and evaluation functions, compiled once.

The core of :mod:`binary_net.train`. A :class:`Trainer` builds a network from its
spec (:mod:`binary_net.networks`), compiles one training step (Lasagne's Adam
through :func:`binary_net.updates.binary_updates`, in the fused mode of
:mod:`binary_net.theano_ext`) and a deterministic evaluation, and runs one
shuffled epoch at a time. Everything random is derived from the seed and the epoch
number (the shuffling order, the dropout masks), so a run resumed from the
checkpoint of epoch ``k`` continues exactly as the uninterrupted run would have.
"""
import sys

import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import DropoutLayer

from .. import modelfile, networks, objectives, theano_ext, updates
from ..data.scaling import hinge_targets
from .errors import TrainingError


def _targets_for(loss, labels, num_classes):
    """Targets of ``labels`` for a loss: +-1 one-hot (squared hinge) or int32 classes."""
    if loss == 'squared_hinge':
        return hinge_targets(labels, num_classes)
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

    #: The checkpoint this trainer saved or resumed from (None: none yet), i.e.
    #: whether an interrupted run can be continued with --resume; set by
    #: :mod:`binary_net.train.checkpoints`.
    checkpoint_path = None


def _progress(total, description, enabled):
    """A tqdm bar over batches on stderr (``enabled`` None: only on a terminal)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit='batch', leave=False,
                disable=not enabled if enabled is not None else None,
                file=sys.stderr, dynamic_ncols=True)
