"""The single reader and writer of model files.

A model file is a ``.npz`` holding the parameter values as ``arr_0 .. arr_N`` in
``lasagne.layers.get_all_param_values`` order, exactly as the original
theano-xnor-net wrote them, so old loaders that read arrays by position keep
working. The network description (see :mod:`binary_net.networks`) rides in the
zip archive's comment, where ``numpy.load`` never looks, so the arrays stay the
only entries of the archive.

Files are written atomically: to a temporary file in the same directory, then
renamed over the target, so an interrupted save never leaves a broken model.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

COMMENT_PREFIX = b'binary_net-model:'


class ModelFileError(Exception):
    """A model file is missing, truncated, foreign or does not fit the network."""


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``.

    Parameters
    ----------
    path : str
    write : callable taking a binary file object
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.',
                               suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w+b') as f:  # readable: save_model appends the zip comment
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(path, param_values, spec=None, extra=None):
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
    """
    meta = {'spec': spec, 'extra': extra or {}}
    comment = COMMENT_PREFIX + json.dumps(meta, separators=(',', ':')).encode()
    if len(comment) > 65535:
        raise ValueError('network description too long for a zip comment')

    def write(f):
        np.savez(f, *[np.asarray(v) for v in param_values])
        f.seek(0)
        with zipfile.ZipFile(f, 'a') as archive:
            archive.comment = comment

    atomic_write(path, write)


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
    if not os.path.isfile(path):
        raise ModelFileError('model file not found: %s' % path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            comment = archive.comment
            bad = archive.testzip()
        if bad is not None:
            raise ModelFileError('%s is corrupt: %s fails its checksum' % (path, bad))
        expected = ['arr_%d.npy' % i for i in range(len(names))]
        if sorted(names) != sorted(expected):
            raise ModelFileError(
                '%s is not a binary_net model: expected arrays arr_0..arr_%d, found %s'
                % (path, len(names) - 1, ', '.join(sorted(names)[:5])))
        with np.load(path, allow_pickle=False) as data:
            values = [data['arr_%d' % i] for i in range(len(names))]
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise ModelFileError('%s is not a readable .npz model (truncated or corrupt?): %s'
                             % (path, str(error).splitlines()[0] if str(error) else
                                type(error).__name__))
    spec, extra = None, {}
    if comment.startswith(COMMENT_PREFIX):
        try:
            meta = json.loads(comment[len(COMMENT_PREFIX):].decode())
            spec, extra = meta.get('spec'), meta.get('extra', {})
        except ValueError:
            raise ModelFileError('%s has a corrupt network description' % path)
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
