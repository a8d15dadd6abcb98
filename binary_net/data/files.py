"""Where datasets live, how their files are opened, and the error every reader raises.

The lowest layer of :mod:`binary_net.data`: every reader (:mod:`.idx`,
:mod:`.cifar10`, :mod:`.svhn`) finds the data root here, opens its files through
:mod:`binary_net.safeopen` (regular files only, never blocking on a FIFO) and
reports missing or corrupt data as one :class:`DatasetError` line, naming the
command that fetches it.
"""
import os
import shlex

import numpy as np

from .. import safeopen

#: The command that fetches a dataset, as error messages name it.
DOWNLOAD_COMMAND = 'python -m binary_net download'
DEFAULT_DATA_ROOT = os.path.join('~', 'pylearn2_data')


class DatasetError(Exception):
    """Data that is missing, corrupt, or asked for in a way that cannot be served."""


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a download; the message names the ``.part`` file kept for resuming."""


def data_root(data_path=None):
    """Return the directory that holds the datasets.

    Parameters
    ----------
    data_path : str or None
        Explicit root; wins over everything else.

    Returns
    -------
    str
        ``data_path`` if given, else ``$PYLEARN2_DATA_PATH``, else ``~/pylearn2_data``,
        with ``~`` expanded.
    """
    if data_path is None:
        data_path = os.environ.get('PYLEARN2_DATA_PATH') or DEFAULT_DATA_ROOT
    return os.path.expanduser(str(data_path))


def download_command(name, root, extra=False):
    """The exact shell command that fetches dataset ``name`` into ``root``."""
    command = '%s %s --data-path %s' % (DOWNLOAD_COMMAND, name, shlex.quote(os.path.abspath(root)))
    return command + (' --extra' if extra else '')


def describe(err):
    """``Type: message`` of an exception, squeezed onto one line."""
    return '%s: %s' % (type(err).__name__, ' '.join(str(err).split()))


def present(path):
    """Whether a data file exists; a directory, FIFO or device there is an error."""
    try:
        return safeopen.check_regular(path)
    except safeopen.NotRegularFileError as err:
        raise DatasetError(str(err)) from None


def open_data_file(path):
    """Open a data file for reading: regular files only, never blocking on a FIFO."""
    try:
        return safeopen.open_regular(path)
    except OSError as err:
        raise DatasetError('cannot read %s: %s' % (path, err.strerror or err)) from None


def missing_error(title, name, root, missing_path, extra=False):
    """The error for absent data: names the path and the command that fetches it."""
    return DatasetError('%s not found: %s is missing; run: %s'
                        % (title, missing_path, download_command(name, root, extra)))


def check_label_values(labels, path, first, last):
    """Refuse labels that are not integers (strings, fractions, NaN) with one line."""
    if labels.size == 0:
        return
    if labels.dtype.kind == 'f':
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DatasetError('%s: labels must be integers %d..%d, found non-integer values'
                               % (path, first, last))
    elif labels.dtype.kind not in 'iu':
        raise DatasetError('%s: labels must be integers %d..%d, found %s values'
                           % (path, first, last, labels.dtype))
