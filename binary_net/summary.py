"""Model summary: per-layer shapes, parameters by bit width, memory and MACs.

``python -m binary_net summary --model M`` prints, for a model file (``.npz`` written
by training, or a packed file from ``python -m binary_net pack``), a table in the
manner of Larq's ``summary``: per layer of the network description its type,
input and output shapes (per sample), parameters by bit width, memory as float32
and as packed, and multiply-accumulates; then the totals and the compression ratio.
From Python, :func:`summary` returns the rows for a network description (*spec*).

Counting rules
--------------
* Parameters are the arrays of the model file (:mod:`binary_net.spec`). The
  weights ``W`` of the XNOR layers are 1-bit (only their signs are used); every
  other array is 32-bit: biases, ``xalpha``, ``beta_filter``, the four batch-norm
  arrays, and the weights of the full-precision layers.
* Memory as float32 is 32 bits per parameter (what the training ``.npz`` stores);
  packed is 1 bit per binary weight plus 32 bits per other parameter, in bytes
  (fractional where a layer's binary weights are not a multiple of 8). A packed
  model file differs slightly: it pads each packed row to whole 64-bit words,
  stores batch norms folded (2 arrays, not 4) and some folded values in float64.
* MACs are the multiply-accumulates of the layers' products, per sample: ``n_in *
  units`` for dense layers, ``F * C * fh * fw * Ho * Wo`` for convolutions
  (padded positions included). They are binary (XNOR-popcount) for XNOR layers
  with a binary input, float otherwise (full-precision layers, and XNOR layers
  with a real-valued input). Batch norm, scaling by K and alpha, pooling and
  activations are not counted.

Needs numpy only, never Theano: the reference architecture of a position-only
file of the original code, which ``--dataset`` names, is :mod:`binary_net.spec`'s.
"""
import os
import sys

import numpy as np

from . import infer as inference, modelfile
from .spec import layer_plan, output_size, reference_spec

__all__ = ['summary', 'totals', 'format_table', 'add_arguments', 'run']

FIELDS = ('layer', 'type', 'input_shape', 'output_shape', 'binary_params', 'float_params',
          'float32_bytes', 'packed_bytes', 'binary_macs', 'float_macs')


def _size(shape):
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def summary(spec):
    """The rows of the summary of a network description.

    Parameters
    ----------
    spec : dict
        A network description (:mod:`binary_net.spec`).

    Returns
    -------
    list of dict, one per spec layer, with the keys of :data:`FIELDS`:
    ``layer`` (1-based number), ``type``, ``input_shape`` and ``output_shape``
    (tuples, per sample), ``binary_params`` and ``float_params`` (counts of 1-bit
    and 32-bit parameters), ``float32_bytes`` (int) and ``packed_bytes`` (float),
    ``binary_macs`` and ``float_macs`` (per sample).

    Raises
    ------
    binary_net.modelfile.ModelFileError
        For a malformed description.
    """
    shape, plan = layer_plan(spec)
    rows = []
    for number, entry, geometry, expected in plan:
        kind = entry['type']
        in_shape = shape
        binary = sum(_size(s) for name, s in expected if name == 'W' and kind.startswith('xnor'))
        real = sum(_size(s) for name, s in expected) - binary
        macs = 0
        if kind in ('xnor_dense', 'dense'):
            n_in, units = dict(expected)['W']
            macs = n_in * units
            shape = (units,)
        elif kind in ('xnor_conv', 'conv'):
            filters, channels, fh, fw = dict(expected)['W']
            (sh, sw), (ph, pw) = geometry['stride'], geometry['pad']
            rows_out = output_size(shape[1], fh, sh, ph)
            cols_out = output_size(shape[2], fw, sw, pw)
            shape = (filters, rows_out, cols_out)
            macs = filters * channels * fh * fw * rows_out * cols_out
        elif kind == 'max_pool':
            ph, pw = geometry['pool']
            shape = (shape[0], shape[1] // ph, shape[2] // pw)
        binary_product = kind.startswith('xnor') and entry.get('binary_input', True)
        rows.append({'layer': number, 'type': kind, 'input_shape': tuple(in_shape),
                     'output_shape': tuple(shape), 'binary_params': binary,
                     'float_params': real, 'float32_bytes': 4 * (binary + real),
                     'packed_bytes': binary / 8.0 + 4 * real,
                     'binary_macs': macs if binary_product else 0,
                     'float_macs': 0 if binary_product else macs})
    return rows


def totals(rows):
    """Sums over the rows of :func:`summary`, plus ``params`` (all parameters) and
    ``compression`` (float32 memory / packed memory; 1.0 for a network without
    parameters)."""
    result = {key: sum(row[key] for row in rows)
              for key in ('binary_params', 'float_params', 'float32_bytes', 'packed_bytes',
                          'binary_macs', 'float_macs')}
    result['params'] = result['binary_params'] + result['float_params']
    result['compression'] = (result['float32_bytes'] / result['packed_bytes']
                             if result['packed_bytes'] else 1.0)
    return result


def _count(n):
    return '{:,}'.format(int(n)) if n else '0'


def _kib(nbytes):
    return '%.2f' % (nbytes / 1024.0)


def _human(n):
    for factor, prefix in ((1e9, ' G'), (1e6, ' M'), (1e3, ' k')):
        if n >= factor:
            return '%.2f%s' % (n / factor, prefix)
    return '%d' % n


def _bytes(n):
    if n >= 1 << 20:
        return '%.2f MiB' % (n / float(1 << 20))
    return '%.2f KiB' % (n / 1024.0)


def format_table(rows, title=None):
    """The summary as text: the table, its totals row, and three lines of totals."""
    header = ('Layer', 'Type', 'Input', 'Output', '1-bit params', '32-bit params',
              'float32 KiB', 'packed KiB', 'binary MACs', 'float MACs')
    body = [(str(r['layer']), r['type'], 'x'.join(map(str, r['input_shape'])),
             'x'.join(map(str, r['output_shape'])), _count(r['binary_params']),
             _count(r['float_params']), _kib(r['float32_bytes']), _kib(r['packed_bytes']),
             _count(r['binary_macs']), _count(r['float_macs'])) for r in rows]
    t = totals(rows)
    total = ('Total', '', '', '', _count(t['binary_params']), _count(t['float_params']),
             _kib(t['float32_bytes']), _kib(t['packed_bytes']), _count(t['binary_macs']),
             _count(t['float_macs']))
    widths = [max(len(line[i]) for line in [header, total] + body) for i in range(len(header))]
    left = {1}  # the type column is left-aligned, the others right-aligned

    def fmt(line):
        return '  '.join(cell.ljust(w) if i in left else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(line, widths))).rstrip()

    rule = '-' * len(fmt(header))
    lines = ([title] if title else []) + [rule, fmt(header), rule] + [fmt(b) for b in body] \
        + [rule, fmt(total), rule]
    lines.append('Parameters: %s (%s 1-bit, %s 32-bit)'
                 % (_count(t['params']), _count(t['binary_params']), _count(t['float_params'])))
    lines.append('Memory: %s as float32, %s packed: compression ratio %.1fx'
                 % (_bytes(t['float32_bytes']), _bytes(t['packed_bytes']),
                    t['compression']))
    lines.append('MACs per sample: %s binary (XNOR-popcount), %s float'
                 % (_human(t['binary_macs']), _human(t['float_macs'])))
    return '\n'.join(lines)


def load_spec(path, dataset=None):
    """The network description of a model file (``.npz`` or packed), checked against
    its arrays. Returns ``(spec, kind)`` with kind 'packed' or 'float'."""
    if modelfile.is_packed(path):
        spec = modelfile.load_packed(path)[1]
        kind = 'packed'
        if spec is None:
            raise modelfile.ModelFileError('%s carries no network description' % path)
        return spec, kind
    values, spec, _ = modelfile.load_model(path)
    if spec is None:
        if not dataset:
            raise modelfile.ModelFileError(
                '%s has no network description (a position-only file of the original '
                'code): name its architecture with --dataset' % path)
        spec = reference_spec(dataset, values)
    inference.fold(spec, values, source=os.path.basename(path))  # arrays must fit
    return spec, 'float'


def add_arguments(parser):
    """Arguments of ``python -m binary_net summary``."""
    parser.add_argument('--model', required=True, metavar='PATH',
                        help='model file: .npz written by training, or a packed file')
    parser.add_argument('--dataset', choices=('mnist', 'cifar10', 'svhn'),
                        help='reference architecture of a position-only .npz of the '
                             'original theano-xnor-net')


def run(args):
    """``python -m binary_net summary``: prints the table; returns the exit status."""
    try:
        spec, kind = load_spec(args.model, args.dataset)
        rows = summary(spec)
    except modelfile.ModelFileError as error:
        print('error: %s' % error, file=sys.stderr)
        return 2
    title = 'Model: %s (%s network, %s file, %s bytes)' % (
        args.model, spec.get('name') or '?', kind, '{:,}'.format(os.path.getsize(args.model)))
    print(format_table(rows, title))
    return 0
