"""Loss and accuracy expressions that Lasagne 0.1 does not provide."""
import theano.tensor as T


def squared_hinge_loss(predictions, targets):
    """Mean squared hinge loss ``mean(max(0, 1 - t * y) ** 2)`` (BinaryNet's loss).

    Parameters
    ----------
    predictions : Theano matrix ``(batch, classes)``
    targets : Theano matrix ``(batch, classes)`` of +-1 (one-hot with -1 elsewhere)

    Returns
    -------
    Theano scalar.
    """
    return T.mean(T.sqr(T.maximum(0., 1. - targets * predictions)))


def categorical_accuracy(predictions, targets):
    """Fraction of samples whose highest-scoring class is the target class.

    Parameters
    ----------
    predictions : Theano matrix ``(batch, classes)``
    targets : Theano integer vector of labels, or a matrix of one-hot or +-1
        targets (the class is the argmax of each row)

    Returns
    -------
    Theano scalar in [0, 1].
    """
    if targets.ndim == predictions.ndim:
        targets = T.argmax(targets, axis=-1)
    return T.mean(T.eq(T.argmax(predictions, axis=-1), targets))
