"""Folding: a network description and its arrays become a :class:`FoldedNetwork`.

:func:`fold` checks the arrays against the description (:mod:`binary_net.spec`:
count and shapes, naming every misfit) and turns each layer into ops
(:mod:`binary_net.infer.ops`).

Folding
-------
A batch norm ``(x - mean) * inv_std * gamma + beta`` becomes ``scale = gamma *
inv_std`` and ``offset = beta - mean * scale``, kept as its own :class:`Affine` op:
it is *not* merged into the preceding layer's weights, which would destroy the
binary weights of an XNOR layer. XNOR weights are kept as their signs only (int8
+-1, sign(0) = +1) with ``alpha`` apart. Like the Theano layers, ``alpha`` is
recomputed from the real-valued weights as ``mean |W|`` per unit or filter; it
equals the ``xalpha`` array stored in trained model files (``xalpha`` is checked
for shape but not used), except in layers with ``alpha: 'stored'`` (the original's
position-only files: its inference used the stored ``xalpha``, one step behind W).
Convolution weights are stored ready for
cross-correlation: a layer with ``flip_filters`` (a true convolution, the default of
Lasagne and of the XNOR layers) has its filters flipped once at fold time. Dropout
is the identity at inference and disappears.
"""
import numpy as np

from ..errors import ModelFileError
from ..spec import layer_plan
from .network import FoldedNetwork
from .ops import Affine, Conv, Dense, MaxPool, Rectify, Softmax, XnorConv, XnorDense

__all__ = ['fold']


def _shape_str(shape):
    return '(%s)' % ', '.join(str(s) for s in shape) if len(shape) != 1 else '(%d,)' % shape[0]


def _misfits(values, expected):
    return ['arr_%d has shape %s but %s layer %d needs %s for %s'
            % (i, _shape_str(np.shape(v)), kind, number, _shape_str(shape), name)
            for i, (v, (number, kind, name, shape)) in enumerate(zip(values, expected))
            if tuple(np.shape(v)) != tuple(shape)]


def _summarize(misfits, limit=4):
    shown = '; '.join(misfits[:limit])
    if len(misfits) > limit:
        shown += '; and %d more' % (len(misfits) - limit)
    return shown


def fold(spec, param_values, source='model'):
    """Fold a network description and its parameter arrays into a :class:`FoldedNetwork`.

    Parameters
    ----------
    spec : dict
        A network description (see :mod:`binary_net.spec`).
    param_values : list of ndarray
        The arrays in model-file order (``modelfile.load_model(path)[0]``).
    source : str
        Names the arrays' origin (a file name) in error messages.

    Returns
    -------
    FoldedNetwork

    Raises
    ------
    binary_net.errors.ModelFileError
        One line: a malformed description, or arrays whose count or shapes do
        not fit it, naming them, e.g. ``arr_0 has shape (784, 1024) but
        xnor_dense layer 1 needs (784, 4096) for W``.
    """
    input_shape, plan = layer_plan(spec)
    name = spec.get('name') or 'given'
    expected = [(number, entry['type'], array, shape)
                for number, entry, _, arrays in plan for array, shape in arrays]
    values = list(param_values)
    if len(values) != len(expected):
        misfits = _misfits(values, expected)
        detail = ('; first misfits: ' + _summarize(misfits, 3)) if misfits else ''
        raise ModelFileError('%s holds %d arrays but the %s network needs %d%s'
                             % (source, len(values), name, len(expected), detail))
    misfits = _misfits(values, expected)
    if misfits:
        raise ModelFileError('%s does not fit the %s network: %s'
                             % (source, name, _summarize(misfits)))

    ops, position = [], 0
    for number, entry, geometry, arrays in plan:
        kind = entry['type']
        arr = [np.asarray(values[position + i]) for i in range(len(arrays))]
        position += len(arrays)
        if kind == 'xnor_dense':
            W, b = arr[0], arr[1]
            alpha = _alpha(entry, W, arr[2], axis=0)
            ops.append(XnorDense(np.where(W >= 0, 1, -1), alpha, b,
                                 binary_input=entry.get('binary_input', True),
                                 scale_input=entry.get('scale_input', True),
                                 scale_weights=entry.get('scale_weights', True),
                                 bias_before_scaling=entry.get('bias_before_scaling', False),
                                 layer=number))
        elif kind == 'xnor_conv':
            W, b = arr[0], arr[1]
            alpha = _alpha(entry, W.reshape(len(W), -1), arr[3], axis=1)
            if entry.get('beta_filter', 'box') == 'full':
                _check_averaging_filter(arr[2], '%s: xnor_conv layer %d' % (source, number))
            if geometry['flip']:
                W = W[:, :, ::-1, ::-1]
            ops.append(XnorConv(np.where(W >= 0, 1, -1), alpha, b, geometry['stride'],
                                geometry['pad'],
                                binary_input=entry.get('binary_input', True),
                                scale_input=entry.get('scale_input', True),
                                scale_weights=entry.get('scale_weights', True),
                                layer=number))
        elif kind == 'conv':
            W, b = arr
            if geometry['flip']:
                W = W[:, :, ::-1, ::-1]
            ops.append(Conv(np.ascontiguousarray(W), b, geometry['stride'], geometry['pad'],
                            layer=number))
        elif kind == 'dense':
            ops.append(Dense(arr[0], arr[1], layer=number))
        elif kind == 'batch_norm':
            fold_bn = (Affine.from_batch_norm_float32 if entry.get('fold') == 'float32'
                       else Affine.from_batch_norm)
            ops.append(fold_bn(*arr, layer=number))
        elif kind == 'max_pool':
            ops.append(MaxPool(geometry['pool'], layer=number))
        if kind in ('conv', 'dense'):
            nonlinearity = entry.get('nonlinearity', 'identity')
            if nonlinearity == 'rectify':
                ops.append(Rectify(layer=number))
            elif nonlinearity == 'softmax':
                ops.append(Softmax(layer=number))
            elif nonlinearity not in ('identity', None, 'linear'):
                raise ModelFileError('bad network description: %s layer %d has unknown '
                                     'nonlinearity %r' % (kind, number, nonlinearity))
    network = FoldedNetwork(ops, input_shape, name=spec.get('name'))
    network.pixel_scaling = spec.get('pixel_scaling', 'default')
    network.labels = spec.get('labels', 'default')
    return network


def _alpha(entry, W, xalpha, axis):
    """alpha of an XNOR layer: mean |W| (``alpha: 'weights'``, the default) or the
    stored ``xalpha`` (``alpha: 'stored'``, as the original's inference used it: the
    value of the last training step, one update behind W)."""
    source = entry.get('alpha', 'weights')
    if source == 'stored':
        return np.asarray(xalpha, dtype=np.float64)
    if source != 'weights':
        raise ModelFileError("bad network description: alpha must be 'weights' or 'stored', "
                             "got %r" % (source,))
    return np.mean(np.abs(W), axis=axis, dtype=np.float64)


def _check_averaging_filter(beta_filter, what):
    """The original's K filter must be its constant 1 / (C * fh * fw) (never trained).

    K computed from it then equals this package's box average of ``mean_c |X|``.
    """
    value = np.float32(1) / np.float32(np.prod(beta_filter.shape[1:]))
    if not np.all(beta_filter == value):
        raise ModelFileError('%s beta_filter is not the constant averaging filter '
                             '1/(C*fh*fw) = %r the original writes' % (what, float(value)))
