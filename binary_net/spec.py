"""Network descriptions (*specs*): the reference networks, their schema and shape arithmetic.

The ground floor of the package: it imports only numpy, the standard library and
:mod:`binary_net.errors`, never Theano, so that the summary, the packing, the
export and the evaluation can read a model's architecture anywhere.
:mod:`binary_net.networks` builds Lasagne graphs from these descriptions and
:mod:`binary_net.infer` folds them into numpy networks.

A network is described by a plain, JSON-serializable dict (a *spec*), saved in
every model file, so that any tool can rebuild a saved network without being
told its architecture::

    {"format": 1, "name": "mnist", "input_shape": [null, 1, 28, 28],
     "loss": "squared_hinge",
     "layers": [{"type": "xnor_dense", "num_units": 4096, ...},
                {"type": "batch_norm", "epsilon": 1e-4, "alpha": 0.1}, ...]}

Layer types and the parameter arrays each holds, in file order
(:data:`PARAMS_PER_TYPE`):

=============  ===============================  ==================================
type           keys                             arrays
=============  ===============================  ==================================
xnor_conv      num_filters, filter_size,        W, b, beta_filter, xalpha
               stride, pad (explicit pair),
               flip_filters, binary_input,
               scale_input, scale_weights
xnor_dense     num_units, binary_input,         W, b, xalpha
               scale_input, scale_weights,
               bias_before_scaling
conv           num_filters, filter_size,        W, b
               stride, pad, flip_filters,
               nonlinearity
dense          num_units, nonlinearity          W, b
batch_norm     epsilon, alpha                   beta, gamma, mean, inv_std
max_pool       pool_size                        (none)
dropout        p                                (none)
=============  ===============================  ==================================

Dense layers flatten their input. Nonlinearities are named: 'identity',
'softmax' or 'rectify'. Descriptions of the original theano-xnor-net's files
carry its inference conventions (:func:`original_conventions`).
"""
import json
import math

import numpy as np

from .errors import DescriptionError, ModelFileError

__all__ = ['FORMAT_VERSION', 'PARAMS_PER_TYPE', 'OP_PARAMS', 'xnor_dense', 'xnor_conv', 'conv',
           'dense', 'batch_norm', 'max_pool', 'dropout', 'make_spec', 'mnist_spec',
           'cifar10_spec', 'svhn_spec', 'REFERENCE_SPECS', 'count_arrays', 'ORIGINAL',
           'original_conventions', 'reference_spec', 'MAX_INPUT_VALUES', 'MAX_WIDTH',
           'MAX_WINDOW', 'WIDTH', 'is_int', 'int_in', 'pair_of', 'boolean',
           'validate_description', 'check_input_shape', 'pair', 'explicit_pad',
           'output_size', 'layer_plan', 'expected_param_shapes']

FORMAT_VERSION = 1

#: The parameter arrays of each layer type, in model-file order: the one table
#: (counts are their lengths, see :func:`count_arrays`).
PARAMS_PER_TYPE = {'xnor_conv': ('W', 'b', 'beta_filter', 'xalpha'),
                   'xnor_dense': ('W', 'b', 'xalpha'),
                   'conv': ('W', 'b'), 'dense': ('W', 'b'),
                   'batch_norm': ('beta', 'gamma', 'mean', 'inv_std'),
                   'max_pool': (), 'dropout': ()}

#: The real-valued parameters of each op of a folded network (``op.params``), by op
#: kind: XNOR layers keep alpha and b beside their weight signs, a batch norm
#: folds into scale and offset, dropout disappears.
OP_PARAMS = {'xnor_dense': ('alpha', 'b'), 'xnor_conv': ('alpha', 'b'),
             'conv': ('W', 'b'), 'dense': ('W', 'b'), 'affine': ('scale', 'offset'),
             'max_pool': (), 'rectify': (), 'softmax': ()}


# ---------------------------------------------------------------------------
# Layer entries and the reference networks
# ---------------------------------------------------------------------------

def xnor_dense(num_units, binary_input=True, scale_input=True, scale_weights=True,
               bias_before_scaling=False):
    """Spec entry of an :class:`~binary_net.layers.XnorDenseLayer`."""
    return dict(type='xnor_dense', num_units=num_units, binary_input=binary_input,
                scale_input=scale_input, scale_weights=scale_weights,
                bias_before_scaling=bias_before_scaling)


def xnor_conv(num_filters, filter_size=3, stride=1, pad=1, binary_input=True,
              scale_input=True, scale_weights=True):
    """Spec entry of an :class:`~binary_net.layers.XnorConvLayer` (square sizes)."""
    return dict(type='xnor_conv', num_filters=num_filters,
                filter_size=[filter_size] * 2, stride=[stride] * 2, pad=[pad] * 2,
                flip_filters=True, binary_input=binary_input,
                scale_input=scale_input, scale_weights=scale_weights)


def conv(num_filters, filter_size=3, stride=1, pad=1, nonlinearity='identity'):
    """Spec entry of a full-precision Lasagne convolution (a true convolution)."""
    return dict(type='conv', num_filters=num_filters, filter_size=[filter_size] * 2,
                stride=[stride] * 2, pad=[pad] * 2, flip_filters=True,
                nonlinearity=nonlinearity)


def dense(num_units, nonlinearity='identity'):
    """Spec entry of a full-precision Lasagne dense layer."""
    return dict(type='dense', num_units=num_units, nonlinearity=nonlinearity)


def batch_norm(epsilon=1e-4, alpha=0.1):
    """Spec entry of a :class:`~binary_net.layers.BatchNormLayer`."""
    return dict(type='batch_norm', epsilon=epsilon, alpha=alpha)


def max_pool(pool_size=2):
    """Spec entry of a max-pooling layer (stride = pool size, border ignored)."""
    return dict(type='max_pool', pool_size=[pool_size] * 2)


def dropout(p=0.5):
    """Spec entry of a dropout layer (identity at inference)."""
    return dict(type='dropout', p=p)


def make_spec(name, input_shape, layers, loss):
    """Assemble a spec dict; see the module docstring."""
    return {'format': FORMAT_VERSION, 'name': name, 'input_shape': list(input_shape),
            'loss': loss, 'layers': layers}


def mnist_spec(num_units=4096, dropout_p=0.5, num_classes=10):
    """The reference MNIST XNOR MLP (23 arrays, as the original's files).

    XNOR dense ``num_units`` binarizing the pixels, then twice (batch norm,
    XNOR dense ``num_units``, dropout), then a full-precision dense layer and
    batch norm, trained with the squared hinge loss.
    """
    hidden = []
    for _ in range(2):
        hidden += [batch_norm(), xnor_dense(num_units)]
        if dropout_p:
            hidden.append(dropout(dropout_p))
    return make_spec('mnist', (None, 1, 28, 28),
                     [xnor_dense(num_units)] + hidden
                     + [dense(num_classes), batch_norm()], 'squared_hinge')


def _conv_net_layers(filters, dense_units):
    """The convolutional part shared by the CIFAR-10 and SVHN reference networks."""
    f1, f2, f3, f4, f5, f6 = filters
    layers = [conv(f1), batch_norm(),
              xnor_conv(f2), max_pool(), batch_norm(),
              xnor_conv(f3), batch_norm(),
              xnor_conv(f4), max_pool(), batch_norm(),
              xnor_conv(f5), batch_norm(),
              xnor_conv(f6), max_pool(), batch_norm()]
    for _ in range(2):
        layers += [xnor_dense(dense_units), batch_norm()]
    return layers


def cifar10_spec(filters=(128, 128, 256, 256, 512, 512), dense_units=1024,
                 num_classes=10):
    """The reference CIFAR-10 XNOR network (62 arrays, as the original's files).

    A full-precision 3x3 convolution, five XNOR convolutions with three 2x2
    max-poolings, two XNOR dense layers, batch norm throughout, and a
    full-precision dense softmax output trained with cross-entropy.
    """
    return make_spec('cifar10', (None, 3, 32, 32),
                     _conv_net_layers(filters, dense_units)
                     + [dense(num_classes, 'softmax')], 'cross_entropy')


def svhn_spec(filters=(64, 64, 128, 128, 256, 256), dense_units=1024, num_classes=10):
    """The reference SVHN XNOR network: CIFAR-10's shape, narrower, with a
    full-precision dense output followed by batch norm (squared hinge loss)."""
    return make_spec('svhn', (None, 3, 32, 32),
                     _conv_net_layers(filters, dense_units)
                     + [dense(num_classes), batch_norm()], 'squared_hinge')


REFERENCE_SPECS = {'mnist': mnist_spec, 'cifar10': cifar10_spec, 'svhn': svhn_spec}


def count_arrays(spec):
    """Number of parameter arrays a model file of this network holds."""
    return sum(len(PARAMS_PER_TYPE[entry['type']]) for entry in spec['layers'])


# ---------------------------------------------------------------------------
# Position-only files of the original theano-xnor-net
# ---------------------------------------------------------------------------

ORIGINAL = 'theano-xnor-net'
# Layer types whose first array (W) gives the layer's width, and which axis holds it.
_WIDTH_FROM_W = {'xnor_dense': ('num_units', 2, 1), 'dense': ('num_units', 2, 1),
                 'xnor_conv': ('num_filters', 4, 0), 'conv': ('num_filters', 4, 0)}


def original_conventions(spec):
    """A copy of a reference network description marked with the original's inference.

    A position-only file (no description in it) was written by the original
    theano-xnor-net (Python 2, Lasagne master), whose test scripts differ from this
    package's inference in four ways, all recorded in the description so that
    :func:`binary_net.infer.fold` and the evaluation reproduce its predictions:

    * XNOR layers use the stored ``xalpha`` (one training step behind ``W``), not
      mean |W| (``alpha: 'stored'``);
    * XNOR dense layers add the bias before the K * alpha scaling
      (``bias_before_scaling: True``);
    * ``beta_filter`` is stored as (F, C, fh, fw) filled with 1 / (C * fh * fw)
      (``beta_filter: 'full'``); batch norms fold in float32 with the original's
      formula (``fold: 'float32'``);
    * pixels were scaled as pylearn2 data ``X * (2.0 / 255) - 1.0`` (MNIST: ``X /
      255 * 2 - 1``; ``pixel_scaling: 'original'``), and SVHN classes are the .mat
      labels minus 1, so digit 0 is class 9 (``labels: 'svhn_mat_minus_one'``).

    Parameters
    ----------
    spec : dict
        A reference description (:data:`REFERENCE_SPECS`).

    Returns
    -------
    dict, marked with ``origin: 'theano-xnor-net'``.
    """
    marked = json.loads(json.dumps(spec))
    marked['origin'] = ORIGINAL
    marked['pixel_scaling'] = 'original'
    if marked.get('name') == 'svhn':
        marked['labels'] = 'svhn_mat_minus_one'
    for entry in marked['layers']:
        if entry['type'] == 'xnor_dense':
            entry.update(alpha='stored', bias_before_scaling=True)
        elif entry['type'] == 'xnor_conv':
            entry.update(alpha='stored', beta_filter='full')
        elif entry['type'] == 'batch_norm':
            entry['fold'] = 'float32'
    return marked


def reference_spec(dataset, values):
    """The reference network of ``dataset`` with its widths read from position-only arrays.

    A position-only file is the original theano-xnor-net's: the description is
    marked with its inference conventions (:func:`original_conventions`).
    Walks :data:`REFERENCE_SPECS` ``[dataset]()`` over the arrays in file order;
    each dense layer takes its ``num_units`` from ``W.shape[1]`` and each
    convolution its ``num_filters`` from ``W.shape[0]`` where that array has the
    right number of dimensions. Anything else that does not fit is left for
    :func:`binary_net.infer.fold` to report.

    Parameters
    ----------
    dataset : {'mnist', 'cifar10', 'svhn'}
    values : list of ndarray, in file order

    Returns
    -------
    dict, a network description.
    """
    spec = original_conventions(REFERENCE_SPECS[dataset]())
    position = 0
    for entry in spec['layers']:
        rule = _WIDTH_FROM_W.get(entry['type'])
        if rule and position < len(values):
            key, ndim, axis = rule
            shape = np.shape(values[position])
            if len(shape) == ndim:
                entry[key] = int(shape[axis])
        position += len(PARAMS_PER_TYPE[entry['type']])
    return spec


# ---------------------------------------------------------------------------
# The schema (checks carry a ``text`` saying what they accept)
# ---------------------------------------------------------------------------

#: Most values per sample a description may declare for its input (64 Mi).
MAX_INPUT_VALUES = 1 << 26
#: Most units or filters a description may give one layer.
MAX_WIDTH = 1 << 24
#: Largest filter, stride, pad or pooling size.
MAX_WINDOW = 1 << 16


def is_int(value):
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_in(low, high):
    """A check: an integer in ``low..high``."""
    def check(value):
        return is_int(value) and low <= value <= high
    check.text = 'an integer %d..%d' % (low, high)
    return check


def pair_of(check_one):
    """A check: a value ``check_one`` accepts, or a pair of them."""
    def check(value):
        if check_one(value):
            return True
        return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(check_one, value))
    check.text = '%s or a pair of them' % check_one.text
    return check


def _one_of(*choices):
    def check(value):
        return any(value == c and type(value) is type(c) for c in choices)
    check.text = 'one of %s' % ', '.join(repr(c) for c in choices)
    return check


def boolean(value):
    """A check: true or false."""
    return isinstance(value, bool)


boolean.text = 'true or false'


def _finite(value):
    return _is_number(value)


_finite.text = 'a finite number'


def _probability(value):
    return _is_number(value) and 0 <= value < 1


_probability.text = 'a number in [0, 1)'


def _padding(value):
    return _one_of('valid', 'full', 'same')(value) or pair_of(int_in(0, MAX_WINDOW))(value)


_padding.text = "'valid', 'full', 'same', or an integer 0..%d or a pair of them" % MAX_WINDOW

#: A check: a layer width (units or filters).
WIDTH = int_in(1, MAX_WIDTH)
_WINDOW = pair_of(int_in(1, MAX_WINDOW))
_NONLINEARITY = _one_of('identity', 'linear', 'softmax', 'rectify', None)
_CONV_KEYS = {'num_filters': WIDTH, 'filter_size': _WINDOW, 'stride': _WINDOW, 'pad': _padding,
              'flip_filters': boolean}
_FLAGS = {'binary_input': boolean, 'scale_input': boolean, 'scale_weights': boolean}
#: type -> ({key: check}, required keys). Types not listed are left to the folding.
_LAYER_SCHEMA = {
    'xnor_dense': (dict(_FLAGS, num_units=WIDTH, bias_before_scaling=boolean), ('num_units',)),
    'dense': ({'num_units': WIDTH, 'nonlinearity': _NONLINEARITY}, ('num_units',)),
    'xnor_conv': (dict(_CONV_KEYS, **_FLAGS), ('num_filters', 'filter_size')),
    'conv': (dict(_CONV_KEYS, nonlinearity=_NONLINEARITY), ('num_filters', 'filter_size')),
    'batch_norm': ({'epsilon': _finite, 'alpha': _finite}, ()),
    'max_pool': ({'pool_size': _WINDOW}, ()),
    'dropout': ({'p': _probability}, ()),
}


def check_input_shape(shape, what, batch_axis):
    """Sizes of an input shape: positive integers, MAX_INPUT_VALUES per sample at most.

    Raises
    ------
    ModelFileError
        ``bad WHAT: input shape ...``.
    """
    sizes = list(shape)[1:] if batch_axis else list(shape)
    if not isinstance(shape, (list, tuple)) or not sizes \
            or (batch_axis and shape[0] is not None and not WIDTH(shape[0])) \
            or not all(is_int(s) and s >= 1 for s in sizes):
        raise ModelFileError('bad %s: input shape %r needs positive integer sizes'
                             % (what, shape))
    if math.prod(sizes) > MAX_INPUT_VALUES:
        raise ModelFileError('bad %s: input shape %r has %d values per sample; at most %d '
                             'are read' % (what, shape, math.prod(sizes), MAX_INPUT_VALUES))


def validate_description(spec):
    """Check a network description against its schema.

    The keys of the known layer types must have the right types and ranges
    (``num_units`` a positive integer, ``pool_size`` a positive pair, flags
    booleans, ...), and the input at most :data:`MAX_INPUT_VALUES` values per
    sample. Unknown keys are ignored; unknown layer types are left to the code
    that uses them.

    Raises
    ------
    ModelFileError
        One line: ``bad network description: ...`` naming the layer and key.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get('layers'), list) \
            or 'input_shape' not in spec:
        raise ModelFileError("bad network description: expected a dict with 'input_shape' "
                             "and a list of 'layers'")
    for key in ('name', 'loss'):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ModelFileError('bad network description: %s must be a string, got %r'
                                 % (key, spec[key]))
    check_input_shape(spec['input_shape'], 'network description', batch_axis=True)
    for number, entry in enumerate(spec['layers'], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get('type'), str):
            raise ModelFileError('bad network description: layer %d is not a dict with a '
                                 'type' % number)
        checks, required = _LAYER_SCHEMA.get(entry['type'], ({}, ()))
        for key in required:
            if key not in entry:
                raise ModelFileError('bad network description: %s layer %d lacks %s'
                                     % (entry['type'], number, key))
        for key, check in checks.items():
            if key in entry and not check(entry[key]):
                raise ModelFileError('bad network description: %s layer %d: %s must be %s, '
                                     'got %r' % (entry['type'], number, key, check.text,
                                                 entry[key]))


# ---------------------------------------------------------------------------
# Shape arithmetic
# ---------------------------------------------------------------------------

def pair(value, name):
    """``(a, b)`` of an int or a pair of ints.

    Raises
    ------
    DescriptionError
        ``NAME must be an int or a pair, got ...``.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    try:
        first, second = value
        return (int(first), int(second))
    except (TypeError, ValueError):
        raise DescriptionError('%s must be an int or a pair, got %r' % (name, value)) from None


def explicit_pad(pad, filter_size):
    """Lasagne's pad argument ('valid', 'full', 'same', int or pair) as explicit zero padding.

    Parameters
    ----------
    pad : str, int or pair of int
    filter_size : pair of int

    Returns
    -------
    ``(rows, cols)`` of zeros added on both sides.

    Raises
    ------
    DescriptionError
        'same' with an even filter size, an unknown name, or not a pair.
    """
    if isinstance(pad, str):
        if pad == 'valid':
            return (0, 0)
        if pad == 'full':
            return tuple(s - 1 for s in filter_size)
        if pad == 'same':
            if any(s % 2 == 0 for s in filter_size):
                raise DescriptionError("pad='same' needs odd filter sizes, got %r"
                                       % (filter_size,))
            return tuple(s // 2 for s in filter_size)
        raise DescriptionError('has unknown pad %r' % (pad,))
    return pair(pad, 'pad')


def output_size(size, filter_size, stride, pad):
    """Output rows (or columns) of a window sliding over ``size`` padded by ``pad`` each side."""
    return (size + 2 * pad - filter_size) // stride + 1


def layer_plan(spec):
    """Walk a description through its shapes.

    Parameters
    ----------
    spec : dict

    Returns
    -------
    input_shape : tuple, one sample's
    plan : list of ``(number, entry, geometry, [(array name, expected shape)])``
        Per layer: its 1-based number, its entry, its geometry (convolutions:
        ``stride``, ``pad`` (explicit), ``flip``; pooling: ``pool``) and the
        arrays a model file holds for it.

    Raises
    ------
    ModelFileError
        One line: a malformed description, or a layer that does not fit its input.
    """
    if not isinstance(spec, dict) or 'layers' not in spec or 'input_shape' not in spec:
        raise ModelFileError('bad network description: expected a dict with '
                             "'input_shape' and 'layers'")
    if spec.get('format', 1) != 1:
        raise ModelFileError('unsupported network description format %r' % spec.get('format'))
    shape = tuple(spec['input_shape'])[1:]
    if any(not isinstance(s, (int, np.integer)) or s <= 0 for s in shape) or not shape:
        raise ModelFileError('bad network description: input shape %r needs fixed sizes '
                             'after the batch axis' % (spec['input_shape'],))
    input_shape = tuple(int(s) for s in shape)
    plan = []
    for number, entry in enumerate(spec['layers'], 1):
        kind = entry.get('type') if isinstance(entry, dict) else None
        if kind not in PARAMS_PER_TYPE:
            raise ModelFileError('bad network description: layer %d has unknown type %r'
                                 % (number, kind))
        what = '%s layer %d' % (kind, number)
        try:
            geometry, expected, shape = _layer_shapes(kind, entry, shape, what)
        except KeyError as missing:
            raise ModelFileError('bad network description: %s lacks %s' % (what, missing)) from None
        except DescriptionError as error:
            raise ModelFileError('bad network description: %s %s' % (what, error)) from None
        plan.append((number, entry, geometry, expected))
    return input_shape, plan


def _layer_shapes(kind, entry, shape, what):
    """(geometry, [(array, shape)], output shape) of one layer given its input shape."""
    geometry, expected = {}, []
    if kind in ('xnor_dense', 'dense'):
        n_in, units = int(np.prod(shape)), int(entry['num_units'])
        expected = [('W', (n_in, units)), ('b', (units,))]
        if kind == 'xnor_dense':
            expected.append(('xalpha', (units,)))
        shape = (units,)
    elif kind in ('xnor_conv', 'conv'):
        if len(shape) != 3:
            raise ModelFileError('bad network description: %s needs images '
                                 '(channels, rows, cols) but gets shape %s' % (what, shape))
        fsize = pair(entry['filter_size'], 'filter_size')
        stride = pair(entry.get('stride', 1), 'stride')
        pad = explicit_pad(entry.get('pad', 0), fsize)
        filters = int(entry['num_filters'])
        expected = [('W', (filters, shape[0]) + fsize), ('b', (filters,))]
        if kind == 'xnor_conv':
            # 'box': this package's (1, 1, fh, fw); 'full': the original's
            # (F, C, fh, fw) filled with 1 / (C * fh * fw).
            box = (1, 1) if entry.get('beta_filter', 'box') != 'full' else (filters, shape[0])
            expected += [('beta_filter', box + fsize), ('xalpha', (filters,))]
        rows = output_size(shape[1], fsize[0], stride[0], pad[0])
        cols = output_size(shape[2], fsize[1], stride[1], pad[1])
        if rows <= 0 or cols <= 0:
            raise ModelFileError('bad network description: %s filter %s does not fit '
                                 'its input %s' % (what, fsize, shape))
        geometry = dict(stride=stride, pad=pad, flip=bool(entry.get('flip_filters', True)))
        shape = (filters, rows, cols)
    elif kind == 'batch_norm':
        expected = [(name, (shape[0],)) for name in PARAMS_PER_TYPE[kind]]
    elif kind == 'max_pool':
        if len(shape) != 3:
            raise ModelFileError('bad network description: %s needs images but gets '
                                 'shape %s' % (what, shape))
        pool = pair(entry.get('pool_size', 2), 'pool_size')
        if shape[1] < pool[0] or shape[2] < pool[1]:
            raise ModelFileError('bad network description: %s window %s exceeds its '
                                 'input %s' % (what, pool, shape))
        geometry = dict(pool=pool)
        shape = (shape[0], shape[1] // pool[0], shape[2] // pool[1])
    return geometry, expected, shape


def expected_param_shapes(spec):
    """The arrays a model file of ``spec`` holds, in file order.

    Returns
    -------
    list of ``(layer number, layer type, array name, shape)``.
    """
    _, plan = layer_plan(spec)
    return [(number, entry['type'], name, shape)
            for number, entry, _, expected in plan for name, shape in expected]
