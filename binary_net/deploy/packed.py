"""Packed model files: a folded network with its binary weights at 1 bit each.

Part of the deployment code (:mod:`binary_net.deploy`), beside the C export: a
packed file holds a network already folded for inference
(:func:`binary_net.infer.fold`), which every evaluation mode and the C export
read. :func:`save_packed` writes one atomically, :func:`load_packed` reads it back
ready to run, :func:`is_packed` recognizes one by its content, and
:func:`pack_verified` (``python -m binary_net pack``) writes one only after its
round trip reproduces the network's scores. The archive itself is read through
:func:`binary_net.modelfile.read_archive`, with every check model files get.
"""
import json
import os
import zipfile

import numpy as np

from .. import infer as inference, safeopen
from ..errors import ModelFileError, first_line
from ..infer import xnor
from ..kernels import pack_bits, unpack_bits
from ..kernels.reference import words_for
from ..modelfile import PREPROCESSING_PREFIX, atomic_write, check_finite, read_archive
from ..spec import (MAX_WIDTH, MAX_WINDOW, OP_PARAMS, WIDTH, boolean, check_input_shape, int_in,
                    is_int, pair_of, validate_description)

__all__ = ['save_packed', 'load_packed', 'is_packed', 'pack_verified', 'PACKED_MARKER',
           'PACKED_FORMAT', 'PACKED_VERSION', 'BIT_ORDER']

#
# A packed model file holds a *folded* network (binary_net.infer.fold) for
# inference only. It is an uncompressed .npz archive (read it with numpy.load)
# with these entries:
#
# ``binary_net_packed.npy``
#     The header (the marker by which packed files are recognized): UTF-8 JSON as
#     a uint8 array, ``{"format": "binary_net-packed", "version": 1, "bit_order":
#     ..., "name", "input_shape", "spec", "extra", "calibration", "ops": [...]}``.
#     ``ops`` has one record per op of the folded network, in order: ``op`` (its
#     kind), ``layer`` (1-based spec layer), its geometry and flags, and ``arrays``,
#     the names of its arrays.
# ``op<i>_<name>.npy``
#     The arrays of op i:
#
#     * xnor_dense: ``bits`` uint64 ``(units, ceil(n_in / 64))``: row j holds
#       column j of the weight signs; ``alpha`` and ``b`` ``(units,)``.
#     * xnor_conv: ``bits`` uint64 ``(F, fh, fw, ceil(C / 64))``: the C channel
#       signs of each filter tap, of filters ready for cross-correlation (already
#       flipped where the layer computes a true convolution); ``alpha``, ``b`` (F,).
#     * conv: ``W`` ``(F, C, fh, fw)`` (ready for cross-correlation), ``b``;
#       dense: ``W`` ``(n_in, units)``, ``b``.
#     * affine (a folded batch norm): ``scale``, ``offset`` per channel.
#     * max_pool, rectify, softmax: no arrays.
#
# Bit order of the ``bits`` arrays (the layout of binary_net.kernels.pack_signs and pack_bits):
# a vector of n signs takes ceil(n / 64) little-endian uint64 words; element k is
# bit k % 64 (least significant bit first) of word k // 64; a 1 bit is +1, a 0 bit
# is -1; unused trailing bits are 0. Equivalently, the bytes of a row are
# ``numpy.packbits(signs >= 0, bitorder='little')`` zero-padded to a multiple of 8.
#
# Real-valued arrays are the folded float64 values, stored as float32 where that is
# exact (biases and full-precision weights of a float32 model) and as float64 where
# it is not (alpha, the folded batch norm), so that a packed file gives the same
# scores as its .npz in every mode.

PACKED_MARKER = 'binary_net_packed'
PACKED_FORMAT = 'binary_net-packed'
PACKED_VERSION = 1
BIT_ORDER = ('little-endian uint64 words; element k of a packed vector is bit k % 64 '
             '(least significant bit first) of word k // 64; bit 1 = +1, bit 0 = -1; '
             'unused trailing bits are 0')
# The entries of each op: the packed weight signs of the XNOR ops, then op.params.
_OP_ARRAYS = {kind: (('bits',) if kind.startswith('xnor') else ()) + names
              for kind, names in OP_PARAMS.items()}


def _compact(value):
    """float32 where that holds the float64 values exactly, else float64."""
    value = np.asarray(value, dtype=np.float64)
    small = value.astype(np.float32)
    exact = np.array_equal(small.astype(np.float64), value, equal_nan=True)
    return small if exact else value


def _op_record(op, index):
    """(header record, {entry name: array}) of one folded op."""
    kind = op.kind
    if kind not in _OP_ARRAYS:
        raise ValueError('cannot pack an op of kind %r (op %d)' % (kind, index))
    record = {'op': kind, 'layer': op.layer, 'arrays': list(_OP_ARRAYS[kind])}
    arrays = {}
    if kind == 'xnor_dense':
        n_in, units = op.W_sign.shape
        record.update(n_in=int(n_in), units=int(units), binary_input=op.binary_input,
                      scale_input=op.scale_input, scale_weights=op.scale_weights,
                      bias_before_scaling=op.bias_before_scaling)
        arrays['bits'] = pack_bits(op.W_sign, axis=0)
    elif kind == 'xnor_conv':
        record.update(filter_shape=[int(s) for s in op.W_sign.shape],
                      stride=list(op.stride), pad=list(op.pad), binary_input=op.binary_input,
                      scale_input=op.scale_input, scale_weights=op.scale_weights)
        arrays['bits'] = pack_bits(op.W_sign, axis=1)
    elif kind == 'conv':
        record.update(stride=list(op.stride), pad=list(op.pad))
    elif kind == 'max_pool':
        record.update(pool_size=list(op.pool_size))
    for name in _OP_ARRAYS[kind]:
        if name != 'bits':
            arrays[name] = _compact(op.params[name])
    return record, arrays


def save_packed(path, folded_or_values, spec, extra=None, named=None, verify=None):
    """Write a packed model file (binary weights at 1 bit each) atomically.

    Parameters
    ----------
    path : str
    folded_or_values : FoldedNetwork or list of ndarray
        A folded network (:func:`binary_net.infer.fold`), or the parameter
        arrays of ``spec`` in model-file order, which are folded here.
    spec : dict or None
        The network description, stored in the file (None: unknown, allowed only
        with a folded network).
    extra : dict or None
        JSON-serializable metadata stored beside it.
    named : dict or None
        Named arrays stored beside the ops' (as ``arrays`` of
        :func:`binary_net.modelfile.save_model`).
    verify : callable or None
        Called with the written temporary file before it is moved to ``path``
        (see :func:`binary_net.modelfile.atomic_write`).

    Returns
    -------
    dict: ``binary_weights`` (count of 1-bit weights), ``real_values`` (count of
    real-valued parameters), ``bytes`` (the file's size).

    The layout is described in the comment above this function in the source and
    in the header's ``bit_order``; see also :func:`load_packed`.
    """
    if isinstance(folded_or_values, inference.FoldedNetwork):
        network = folded_or_values
    else:
        if spec is None:
            raise ValueError('save_packed needs the network description to fold '
                             'parameter arrays')
        network = inference.fold(spec, folded_or_values,
                                 source=os.path.basename(path) or 'model')
    records, arrays = [], {}
    binary, real = 0, 0
    for index, op in enumerate(network.ops):
        record, op_arrays = _op_record(op, index)
        records.append(record)
        for name, value in op_arrays.items():
            arrays['op%d_%s' % (index, name)] = value
        if op.kind in ('xnor_dense', 'xnor_conv'):
            binary += int(op.W_sign.size)
        real += sum(int(np.size(v)) for name, v in op_arrays.items() if name != 'bits')
    header = {'format': PACKED_FORMAT, 'version': PACKED_VERSION, 'bit_order': BIT_ORDER,
              'name': network.name, 'input_shape': list(network.input_shape),
              'spec': spec, 'extra': extra or {}, 'calibration': network.calibration,
              'ops': records}
    encoded = json.dumps(header, separators=(',', ':')).encode()
    arrays[PACKED_MARKER] = np.frombuffer(encoded, dtype=np.uint8)
    for name, value in (named or {}).items():
        if not name.startswith(PREPROCESSING_PREFIX):
            raise ValueError('named arrays must start with %r' % PREPROCESSING_PREFIX)
        arrays[name] = value
    atomic_write(path, lambda f: np.savez(f, **arrays), verify)
    return {'binary_weights': binary, 'real_values': real, 'bytes': os.path.getsize(path)}


def is_packed(path):
    """Whether ``path`` is a zip archive holding the packed-model header (never raises).

    Only regular files are opened, so a FIFO or a device gives False at once.
    """
    try:
        with safeopen.open_regular(path) as stream, zipfile.ZipFile(stream) as archive:
            return PACKED_MARKER + '.npy' in archive.namelist()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError,
            NotImplementedError):
        return False


def load_packed(path):
    """Read a packed model file written by :func:`save_packed`.

    Parameters
    ----------
    path : str

    Returns
    -------
    network : binary_net.infer.FoldedNetwork
        Ready for every mode. Its XNOR ops hold the weight signs (unpacked to int8
        for float and fixed mode) and alpha, but no real-valued weights; in xnor
        mode they use the stored words directly, without packing again.
    spec : dict or None
        The network description stored in the file.
    extra : dict

    Raises
    ------
    ModelFileError
        One line: missing, truncated or corrupt, not a packed model (an unpacked
        ``.npz`` or a foreign file), an unsupported version, or arrays that do not
        fit the header.
    """
    def names_ok(names):
        if PACKED_MARKER + '.npy' not in names:
            hint = ('; it is an unpacked model file: pack it with python -m binary_net pack'
                    if names and all(n.startswith('arr_') for n in names) else '')
            raise ModelFileError('%s is not a packed binary_net model (no %s header)%s'
                                 % (path, PACKED_MARKER, hint))

    arrays = read_archive(path, 'packed model file', 'packed model', names_ok)[2]
    arrays = {name: value for name, value in arrays.items()
              if not name.startswith(PREPROCESSING_PREFIX)}
    try:
        header = json.loads(arrays.pop(PACKED_MARKER).tobytes().decode())
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise ModelFileError('%s has a corrupt packed-model header' % path) from None
    if not isinstance(header, dict) or header.get('format') != PACKED_FORMAT:
        raise ModelFileError('%s has a %s entry that is not a packed-model header'
                             % (path, PACKED_MARKER))
    if header.get('version') != PACKED_VERSION:
        raise ModelFileError('%s is a packed model of version %r; this code reads version %d'
                             % (path, header.get('version'), PACKED_VERSION))
    check_finite(sorted(arrays.items()), path)
    try:
        _validate_packed_header(header)
        network = _unpack_network(header, arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError('%s has a malformed packed network: %s'
                             % (path, first_line(error))) from None
    except ModelFileError as error:
        raise ModelFileError('%s: %s' % (path, error)) from None
    except MemoryError:
        raise ModelFileError('%s: its network is too large to run' % path) from None
    return network, header.get('spec'), header.get('extra') or {}


_PACKED_FLAGS = ('binary_input', 'scale_input', 'scale_weights')
_PACKED_SCHEMA = {
    'xnor_dense': dict({name: boolean for name in _PACKED_FLAGS + ('bias_before_scaling',)},
                       n_in=int_in(1, 1 << 40), units=WIDTH),
    'xnor_conv': dict({name: boolean for name in _PACKED_FLAGS},
                      stride=pair_of(int_in(1, MAX_WINDOW)), pad=pair_of(int_in(0, MAX_WINDOW))),
    'conv': dict(stride=pair_of(int_in(1, MAX_WINDOW)), pad=pair_of(int_in(0, MAX_WINDOW))),
    'max_pool': dict(pool_size=pair_of(int_in(1, MAX_WINDOW))),
}


def _validate_packed_header(header):
    """The header's fields have the types and ranges :func:`_unpack_network` relies on."""
    for key in ('spec', 'extra', 'calibration'):
        if header.get(key) is not None and not isinstance(header[key], dict):
            raise ModelFileError('bad packed-model header: %s must be a dict, got %r'
                                 % (key, header[key]))
    if header.get('name') is not None and not isinstance(header['name'], str):
        raise ModelFileError('bad packed-model header: name must be a string')
    if header.get('spec') is not None:
        validate_description(header['spec'])
    check_input_shape(header.get('input_shape'), 'packed-model header', batch_axis=False)
    if not isinstance(header.get('ops'), list):
        raise ModelFileError('bad packed-model header: ops must be a list')
    for index, record in enumerate(header['ops']):
        if not isinstance(record, dict) or not isinstance(record.get('op'), str):
            raise ModelFileError('bad packed-model header: op %d is not a dict with an op kind'
                                 % index)
        if record.get('layer') is not None and not is_int(record['layer']):
            raise ModelFileError('bad packed-model header: op %d layer must be an integer' % index)
        checks = dict(_PACKED_SCHEMA.get(record['op'], {}))
        if record['op'] == 'xnor_conv':
            shape = record.get('filter_shape')
            if not isinstance(shape, list) or len(shape) != 4 \
                    or not all(is_int(v) and 1 <= v <= MAX_WIDTH for v in shape):
                raise ModelFileError('bad packed-model header: op %d (xnor_conv) filter_shape '
                                     'must be 4 positive integers, got %r' % (index, shape))
        for key, check in checks.items():
            if key not in record:
                raise ModelFileError('bad packed-model header: op %d (%s) lacks %s'
                                     % (index, record['op'], key))
            if not check(record[key]):
                raise ModelFileError('bad packed-model header: op %d (%s): %s must be %s, got %r'
                                     % (index, record['op'], key, check.text, record[key]))


def _unpack_network(header, arrays):
    ops = []
    for index, record in enumerate(header['ops']):
        kind = record['op']
        if kind not in _OP_ARRAYS:
            raise ModelFileError('op %d has unknown kind %r' % (index, kind))
        what = 'op %d (%s)' % (index, kind)

        def get(name, shape, integer=False):
            key = 'op%d_%s' % (index, name)
            if key not in arrays:
                raise ModelFileError('%s lacks its array %s' % (what, name))
            value = arrays[key]
            wanted = np.uint64 if integer else np.floating
            if not np.issubdtype(value.dtype, wanted) or value.shape != tuple(shape):
                raise ModelFileError('%s array %s is %s %s, expected %s %s'
                                     % (what, name, value.dtype, value.shape,
                                        'uint64' if integer else 'float', tuple(shape)))
            return value

        layer = record.get('layer')
        if kind == 'xnor_dense':
            n_in, units = int(record['n_in']), int(record['units'])
            bits = get('bits', (units, words_for(n_in)), integer=True)
            op = inference.XnorDense(unpack_bits(bits, n_in, axis=0), get('alpha', (units,)),
                                     get('b', (units,)), record['binary_input'],
                                     record['scale_input'], record['scale_weights'],
                                     record['bias_before_scaling'], layer=layer)
            xnor.attach_packed(op, bits)
        elif kind == 'xnor_conv':
            F, C, fh, fw = (int(s) for s in record['filter_shape'])
            bits = get('bits', (F, fh, fw, words_for(C)), integer=True)
            op = inference.XnorConv(unpack_bits(bits, C, axis=1), get('alpha', (F,)),
                                    get('b', (F,)), record['stride'], record['pad'],
                                    record['binary_input'], record['scale_input'],
                                    record['scale_weights'], layer=layer)
            xnor.attach_packed(op, bits)
        elif kind in ('conv', 'dense'):
            key = 'op%d_W' % index
            shape = arrays[key].shape if key in arrays else ()
            if len(shape) != (4 if kind == 'conv' else 2):
                raise ModelFileError('%s lacks a %dD array W' % (what, 4 if kind == 'conv' else 2))
            W = get('W', shape)
            b = get('b', (shape[0] if kind == 'conv' else shape[1],))
            op = (inference.Conv(W, b, record['stride'], record['pad'], layer=layer)
                  if kind == 'conv' else inference.Dense(W, b, layer=layer))
        elif kind == 'affine':
            key = 'op%d_scale' % index
            size = arrays[key].shape if key in arrays else (0,)
            op = inference.Affine(get('scale', size), get('offset', size), layer=layer)
        elif kind == 'max_pool':
            op = inference.MaxPool(record['pool_size'], layer=layer)
        elif kind == 'rectify':
            op = inference.Rectify(layer=layer)
        else:
            op = inference.Softmax(layer=layer)
        ops.append(op)
    network = inference.FoldedNetwork(ops, header['input_shape'], name=header.get('name'))
    network.calibration = header.get('calibration')
    network.pixel_scaling = (header.get('spec') or {}).get('pixel_scaling', 'default')
    network.labels = (header.get('spec') or {}).get('labels', 'default')
    try:
        network.output_shape()   # runs a zero sample: shapes must chain
    except ValueError as error:
        raise ModelFileError('its ops do not fit together: %s' % first_line(error)) from None
    return network


def pack_verified(out, source, network, spec, extra, named=None):
    """:func:`save_packed`, moving the file to ``out`` only once its round trip matches.

    The written file is loaded back and must give ``network``'s float scores, bit
    for bit (NaN-aware), on a few random inputs; on any failure nothing is left at
    ``out`` that was not there before.

    Parameters
    ----------
    out : str
    source : str
        The model file packed, named in the message of a failed round trip.
    network : FoldedNetwork
    spec, extra, named
        As for :func:`save_packed`.

    Returns
    -------
    dict, as :func:`save_packed`.

    Raises
    ------
    ModelFileError
        If the written file does not reproduce the network.
    """
    check = np.random.RandomState(0).uniform(-1, 1, (8,) + network.input_shape)

    def verify(staged):
        loaded = load_packed(staged)[0]
        if not np.array_equal(network.predict_scores(check), loaded.predict_scores(check),
                              equal_nan=True):
            raise ModelFileError('%s does not reproduce %s (please report this)' % (out, source))

    return save_packed(out, network, spec, extra, named, verify)
