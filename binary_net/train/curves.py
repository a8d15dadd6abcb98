"""Training curves: loss, validation and test error per epoch, as a PNG.

Part of :mod:`binary_net.train`: :func:`binary_net.train.fit` redraws
``mnist.png`` beside ``mnist.npz`` after every epoch (matplotlib, Agg backend,
written atomically).
"""
from .. import modelfile


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
