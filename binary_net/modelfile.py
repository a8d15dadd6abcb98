"""The single reader and writer of model files.

A model file is a ``.npz`` holding the parameter values as ``arr_0 .. arr_N`` in
``lasagne.layers.get_all_param_values`` order, exactly as the original
theano-xnor-net wrote them, so old loaders that read arrays by position keep
working. The network description (see :mod:`binary_net.networks`) rides in the
zip archive's comment, where ``numpy.load`` never looks, so the arrays stay the
only entries of the archive.

Files are written atomically: to a temporary file in the same directory, then
renamed over the target, so an interrupted save never leaves a broken model.

Reading never runs code and never trusts sizes: arrays are read with
``allow_pickle=False``; only regular files are opened (a FIFO would block);
encrypted entries, unknown compression methods, non-numeric dtypes and array
headers that promise more data than their entry holds are refused before any
array is allocated; the network description is checked against a schema
(:func:`validate_description`); and parameters that are NaN or infinite are
refused, naming the array. Every refusal is a one-line :class:`ModelFileError`.
"""
import io
import json
import math
import os
import re
import tempfile
import zipfile

import numpy as np

from . import safeopen
from .errors import ModelFileError, first_line
from .spec import (MAX_WIDTH, MAX_WINDOW, OP_PARAMS, WIDTH, boolean, check_input_shape, int_in,
                   is_int, pair_of, reference_spec, validate_description)

COMMENT_PREFIX = b'binary_net-model:'


class _DetachableFile:
    """A file object whose writes can be sent to memory once a save has failed.

    ``numpy.savez`` leaves its ``ZipFile`` open when it is interrupted (Ctrl-C, a
    full disk). When that ``ZipFile`` is collected later it writes its central
    directory to the file, which by then is closed: Python prints "Exception
    ignored in ZipFile.__del__". After :meth:`detach` those late writes land in a
    throw-away buffer instead, silently.
    """

    def __init__(self, f):
        self._f = f

    def detach(self):
        self._f = io.BytesIO()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _temporary_prefix(path):
    return '.' + os.path.basename(path) + '.'


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``.

    On any failure (an exception in ``write``, a full disk, Ctrl-C) the temporary
    file is removed and ``path`` is left as it was. An ``OSError`` without a file
    name gets ``path`` as its ``filename``, so that its message names the target.

    Parameters
    ----------
    path : str
    write : callable taking a binary file object
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w+b') as f:  # readable: save_model appends the zip comment
            target = _DetachableFile(f)
            try:
                write(target)
            except BaseException:
                target.detach()
                raise
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = path
        raise


def remove_stale_temporaries(path):
    """Delete the temporary files :func:`atomic_write` left for ``path`` when killed.

    Only names of the exact form :func:`atomic_write` creates for this target
    (``.NAME.XXXXXXXX.tmp`` beside it) are removed. Call it only while no other
    process can be writing ``path`` (the trainer holds its lock on the path).

    Parameters
    ----------
    path : str

    Returns
    -------
    list of str: the paths removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(_temporary_prefix(path)) + r'[a-z0-9_]{8}\.tmp\Z')
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        candidate = os.path.join(directory, name)
        if pattern.match(name) and os.path.isfile(candidate) and not os.path.islink(candidate):
            try:
                os.unlink(candidate)
                removed.append(candidate)
            except OSError:
                pass
    return removed


# Named arrays a model or packed file may hold beside its own (the input
# preprocessing, see binary_net.preprocessing).
PREPROCESSING_PREFIX = 'preprocessing_'


def load_named_arrays(path, prefix=PREPROCESSING_PREFIX):
    """{name: array} of the arrays of an .npz whose names start with ``prefix``.

    The file goes through the same checks as every model file (regular file,
    zip entries, array headers, finite values).
    """
    arrays = _read_archive(path, 'model file', '.npz model', lambda names: None)[2]
    named = {name: value for name, value in arrays.items() if name.startswith(prefix)}
    check_finite(sorted(named.items()), path)
    return named


def save_model(path, param_values, spec=None, extra=None, arrays=None):
    """Write parameter values (and the network description) to ``path`` atomically.

    Parameters
    ----------
    path : str
    param_values : list of numpy arrays
        In ``get_all_param_values`` order.
    spec : dict or None
        The network description from :mod:`binary_net.networks`.
    extra : dict or None
        More JSON-serializable metadata (training figures, say), stored beside
        the description.
    arrays : dict or None
        Named arrays stored beside the parameters (names starting with
        ``PREPROCESSING_PREFIX``); :func:`load_named_arrays` reads them.
    """
    meta = {'spec': spec, 'extra': extra or {}}
    arrays = arrays or {}
    if any(not name.startswith(PREPROCESSING_PREFIX) for name in arrays):
        raise ValueError('named arrays must start with %r' % PREPROCESSING_PREFIX)
    comment = COMMENT_PREFIX + json.dumps(meta, separators=(',', ':')).encode()
    if len(comment) > 65535:
        raise ValueError('network description too long for a zip comment')

    def write(f):
        np.savez(f, *[np.asarray(v) for v in param_values], **arrays)
        f.seek(0)
        with zipfile.ZipFile(f, 'a') as archive:
            archive.comment = comment

    atomic_write(path, write)


# ---------------------------------------------------------------------------
# Reading: file type, zip entries, array headers, values
# ---------------------------------------------------------------------------

def _open_model_file(path, what):
    """Open ``path`` for reading: regular files only (a FIFO would block)."""
    try:
        return safeopen.open_regular(path)
    except FileNotFoundError:
        raise ModelFileError('%s not found: %s' % (what, path)) from None
    except safeopen.NotRegularFileError as error:
        raise ModelFileError(str(error)) from None
    except OSError as error:
        raise ModelFileError('cannot read %s: %s' % (path, error.strerror or first_line(error))) from None


def _check_entries(archive, path):
    """Refuse encrypted entries and compression methods model files never use."""
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            raise ModelFileError('%s: zip entry %s is encrypted; model files never are'
                                 % (path, info.filename))
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError('%s: zip entry %s uses compression method %d; model files '
                                 'are stored or deflated' % (path, info.filename, info.compress_type))


def _read_npy_header(entry):
    version = np.lib.format.read_magic(entry)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(entry)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(entry)
    raise ValueError('unsupported .npy format version %d.%d' % version)


def _check_array_headers(archive, path):
    """Check every ``.npy`` header against its entry before any array is allocated.

    A header may claim any shape (10^11 values, say); it must be a number dtype
    and promise exactly the bytes its entry holds.
    """
    for info in archive.infolist():
        if not info.filename.endswith('.npy'):
            continue
        name = info.filename[:-4]
        with archive.open(info) as entry:
            try:
                shape, _, dtype = _read_npy_header(entry)
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
                raise ModelFileError('%s: array %s has a corrupt header (%s)'
                                     % (path, name, first_line(error))) from None
            offset = entry.tell()
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in 'fiu':
            raise ModelFileError('%s: array %s has dtype %s; model arrays hold numbers '
                                 '(float or integer)' % (path, name, dtype.str))
        promised = math.prod(shape) * dtype.itemsize
        held = info.file_size - offset
        if promised != held:
            raise ModelFileError('%s: array %s is corrupt: its header promises shape %s '
                                 '(%d bytes) but its entry holds %d bytes'
                                 % (path, name, tuple(shape), promised, held))


def _read_archive(path, what, kind, names_ok):
    """(names, comment, {name: array}) of an ``.npz`` after every check.

    ``names_ok(names)`` raises ModelFileError for entry names that are not this
    kind of model; it runs before any array is read. ``what`` and ``kind`` name
    the file in the messages ('model file', '.npz model').
    """
    with _open_model_file(path, what) as stream:
        try:
            return _read_checked(stream, path, names_ok)
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError,
                NotImplementedError, MemoryError) as error:
            raise ModelFileError('%s is not a readable %s (truncated or corrupt?): %s'
                                 % (path, kind, first_line(error))) from None


def _read_checked(stream, path, names_ok):
    with zipfile.ZipFile(stream) as archive:
        names = archive.namelist()
        comment = archive.comment
        names_ok(names)
        _check_entries(archive, path)
        bad = archive.testzip()
        if bad is not None:
            raise ModelFileError('%s is corrupt: %s fails its checksum' % (path, bad))
        _check_array_headers(archive, path)
    stream.seek(0)
    with np.load(stream, allow_pickle=False) as data:
        arrays = {name[:-4]: data[name[:-4]] for name in names if name.endswith('.npy')}
    return names, comment, arrays


def _describe_non_finite(value):
    nan = int(np.count_nonzero(np.isnan(value)))
    inf = int(value.size - nan - np.count_nonzero(np.isfinite(value)))
    parts = (['%d NaN' % nan] if nan else []) + (['%d infinite' % inf] if inf else [])
    return ' and '.join(parts) + (' value' if nan + inf == 1 else ' values')


def check_finite(named_arrays, path):
    """Raise ModelFileError naming the first array that holds NaN or infinity.

    Parameters
    ----------
    named_arrays : iterable of (name, ndarray)
    path : str, used in the message
    """
    for name, value in named_arrays:
        value = np.asarray(value)
        if value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
            raise ModelFileError('%s: array %s holds %s; a model with non-finite '
                                 'parameters is refused' % (path, name, _describe_non_finite(value)))


def load_model(path):
    """Read a model file written by :func:`save_model` or by the original code.

    Parameters
    ----------
    path : str

    Returns
    -------
    param_values : list of numpy arrays, in file order
    spec : dict or None
        The network description, or None for a position-only file.
    extra : dict
        Metadata stored with the model (empty for position-only files).

    Raises
    ------
    ModelFileError
        One line saying what is wrong: missing, not an ``.npz``, truncated or
        corrupt, or an ``.npz`` that does not hold ``arr_0 .. arr_N``.
    """
    def names_ok(names):
        names = [n for n in names if not n.startswith(PREPROCESSING_PREFIX)]
        expected = ['arr_%d.npy' % i for i in range(len(names))]
        if sorted(names) != sorted(expected):
            raise ModelFileError(
                '%s is not a binary_net model: expected arrays arr_0..arr_%d, found %s'
                % (path, len(names) - 1, ', '.join(sorted(names)[:5])))

    names, comment, arrays = _read_archive(path, 'model file', '.npz model', names_ok)
    count = sum(1 for n in names if not n.startswith(PREPROCESSING_PREFIX))
    values = [arrays['arr_%d' % i] for i in range(count)]
    check_finite((('arr_%d' % i, v) for i, v in enumerate(values)), path)
    spec, extra = None, {}
    if comment.startswith(COMMENT_PREFIX):
        try:
            meta = json.loads(comment[len(COMMENT_PREFIX):].decode())
        except ValueError:
            raise ModelFileError('%s has a corrupt network description' % path) from None
        if not isinstance(meta, dict) or not isinstance(meta.get('extra', {}), dict):
            raise ModelFileError('%s has a corrupt network description' % path)
        spec, extra = meta.get('spec'), meta.get('extra', {})
        if spec is not None:
            try:
                validate_description(spec)
            except ModelFileError as error:
                raise ModelFileError('%s: %s' % (path, error)) from None
    return values, spec, extra


def check_shapes(param_values, params, path='model'):
    """Raise ModelFileError naming every array whose shape does not fit the network.

    Parameters
    ----------
    param_values : list of numpy arrays, from the file
    params : list of Theano shared variables, from ``get_all_params``
    path : str, used in the message
    """
    if len(param_values) != len(params):
        raise ModelFileError('%s holds %d arrays but the network has %d parameters'
                             % (path, len(param_values), len(params)))
    mismatched = ['arr_%d %s (%s needs %s)' % (i, v.shape, p.name, p.get_value(borrow=True).shape)
                  for i, (v, p) in enumerate(zip(param_values, params))
                  if v.shape != p.get_value(borrow=True).shape]
    if mismatched:
        raise ModelFileError('%s does not fit this network: %s'
                             % (path, '; '.join(mismatched)))


# ---------------------------------------------------------------------------
# Packed model files: binary weights at 1 bit each
# ---------------------------------------------------------------------------
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
# Bit order of the ``bits`` arrays (the layout of binary_net.kernels.pack_signs):
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


def _words(n):
    return (int(n) + 63) // 64


def pack_bits(signs, axis=-1):
    """Pack the signs of ``signs`` along ``axis`` into uint64 words (see :data:`BIT_ORDER`).

    Pure numpy (no compiler needed), the layout of :func:`binary_net.kernels.pack_signs`.

    Parameters
    ----------
    signs : array_like
        A value is +1 where it is ``>= 0`` and -1 elsewhere.
    axis : int

    Returns
    -------
    uint64 ndarray: ``signs.shape`` without ``axis``, plus ``(ceil(n / 64),)``.
    """
    bits = np.moveaxis(np.asarray(signs) >= 0, axis, -1)
    n = bits.shape[-1]
    padded = np.zeros(bits.shape[:-1] + (_words(n) * 64,), dtype=bool)
    padded[..., :n] = bits
    packed = np.packbits(padded, axis=-1, bitorder='little')
    return np.ascontiguousarray(packed).view('<u8').astype(np.uint64, copy=False)


def unpack_bits(words, n, axis=-1):
    """Inverse of :func:`pack_bits`: int8 signs (+1/-1), the ``n`` elements placed at ``axis``.

    Parameters
    ----------
    words : uint64 ndarray ``(..., ceil(n / 64))``
    n : int
    axis : int
        Where the unpacked axis goes in the result.
    """
    words = np.ascontiguousarray(np.asarray(words).astype('<u8', copy=False))
    raw = words.view(np.uint8).reshape(words.shape[:-1] + (words.shape[-1] * 8,))
    bits = np.unpackbits(raw, axis=-1, count=int(n), bitorder='little')
    signs = bits.astype(np.int8)
    signs *= 2
    signs -= 1
    return np.ascontiguousarray(np.moveaxis(signs, -1, axis))


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


def save_packed(path, folded_or_values, spec, extra=None, named=None):
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
        Named arrays stored beside the ops' (as ``arrays`` of :func:`save_model`).

    Returns
    -------
    dict: ``binary_weights`` (count of 1-bit weights), ``real_values`` (count of
    real-valued parameters), ``bytes`` (the file's size).

    The layout is described in the comment above this function in the source and
    in the header's ``bit_order``; see also :func:`load_packed`.
    """
    from . import infer as inference

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
    atomic_write(path, lambda f: np.savez(f, **arrays))
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

    arrays = _read_archive(path, 'packed model file', 'packed model', names_ok)[2]
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
    from . import infer as inference
    from .infer import xnor

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
            bits = get('bits', (units, _words(n_in)), integer=True)
            op = inference.XnorDense(unpack_bits(bits, n_in, axis=0), get('alpha', (units,)),
                                     get('b', (units,)), record['binary_input'],
                                     record['scale_input'], record['scale_weights'],
                                     record['bias_before_scaling'], layer=layer)
            xnor.attach_packed(op, bits)
        elif kind == 'xnor_conv':
            F, C, fh, fw = (int(s) for s in record['filter_shape'])
            bits = get('bits', (F, fh, fw, _words(C)), integer=True)
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


# ---------------------------------------------------------------------------
# python -m binary_net pack
# ---------------------------------------------------------------------------

def add_arguments(parser):
    """Arguments of ``python -m binary_net pack``."""
    parser.add_argument('--model', required=True, metavar='PATH',
                        help='model file (.npz) written by training')
    parser.add_argument('--out', required=True, metavar='PATH',
                        help='packed model file to write (binary weights at 1 bit each)')
    parser.add_argument('--dataset', choices=('mnist', 'cifar10', 'svhn'),
                        help="reference architecture for a position-only .npz of the "
                             "original theano-xnor-net; files written by "
                             "this package carry their network description")


def _pack_verified(out, source, network, spec, extra, named=None):
    """Write the packed file beside ``out``, check its round trip, then move it to ``out``.

    On any failure nothing is left at ``out`` that was not there before.
    """
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=_temporary_prefix(out), suffix='.tmp', dir=directory)
    os.close(fd)
    try:
        written = save_packed(staged, network, spec, extra, named)
        # Check the round trip: same float scores on a few random images (NaN-aware).
        check = np.random.RandomState(0).uniform(-1, 1, (8,) + network.input_shape)
        loaded = load_packed(staged)[0]
        if not np.array_equal(network.predict_scores(check), loaded.predict_scores(check),
                              equal_nan=True):
            raise ModelFileError('%s does not reproduce %s (please report this)' % (out, source))
        os.replace(staged, out)
    except BaseException:
        if os.path.exists(staged):
            os.unlink(staged)
        raise
    return written


def run(args):
    """``python -m binary_net pack``: returns the exit status (0, or 2 after ``error:``)."""
    import sys

    from . import infer as inference

    try:
        if os.path.abspath(args.out) == os.path.abspath(args.model):
            raise ModelFileError('--out must differ from --model')
        values, spec, extra = load_model(args.model)
        if spec is None:
            if not args.dataset:
                raise ModelFileError('%s has no network description (a position-only file '
                                     'of the original code): name its architecture with '
                                     '--dataset' % args.model)
            spec = reference_spec(args.dataset, values)
        network = inference.fold(spec, values, source=os.path.basename(args.model))
        written = _pack_verified(args.out, args.model, network, spec, extra,
                                 load_named_arrays(args.model))
    except (ModelFileError, OSError) as error:
        print('error: %s' % first_line(error), file=sys.stderr)
        return 2
    original = os.path.getsize(args.model)
    print('Packed %s (%s network) into %s' % (args.model, spec.get('name', '?'), args.out))
    print('Binary weights: %d at 1 bit; real-valued parameters: %d'
          % (written['binary_weights'], written['real_values']))
    print('Size: %d bytes packed, %d bytes float: %.1fx smaller'
          % (written['bytes'], original, original / float(written['bytes'])))
    return 0
