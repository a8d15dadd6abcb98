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
(:func:`binary_net.spec.validate_description`); and parameters that are NaN or
infinite are refused, naming the array. Every refusal is a one-line
:class:`~binary_net.errors.ModelFileError`. Packed model files
(:mod:`binary_net.deploy.packed`) are read through :func:`read_archive`, with the
same checks; this module imports neither the inference nor the commands.
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
from .spec import validate_description

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


def atomic_write(path, write, verify=None):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``.

    On any failure (an exception in ``write`` or ``verify``, a full disk, Ctrl-C)
    the temporary file is removed and ``path`` is left as it was. An ``OSError``
    without a file name gets ``path`` as its ``filename``, so that its message
    names the target.

    Parameters
    ----------
    path : str
    write : callable taking a binary file object
    verify : callable taking the temporary file's path, or None
        Called once the temporary file is complete and closed, before the rename;
        it raises to keep ``path`` as it was (a round-trip check, say).
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
        if verify is not None:
            verify(tmp)
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
# preprocessing, see binary_net.data.preprocessing).
PREPROCESSING_PREFIX = 'preprocessing_'


def load_named_arrays(path, prefix=PREPROCESSING_PREFIX):
    """{name: array} of the arrays of an .npz whose names start with ``prefix``.

    The file goes through the same checks as every model file (regular file,
    zip entries, array headers, finite values).
    """
    arrays = read_archive(path, 'model file', '.npz model', lambda names: None)[2]
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


def read_archive(path, what, kind, names_ok):
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

    names, comment, arrays = read_archive(path, 'model file', '.npz model', names_ok)
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
