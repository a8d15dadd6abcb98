"""One training per model path: the ``PATH.lock`` of ``--model-out``.

Part of :mod:`binary_net.train`'s command line: :func:`claim_model_path` takes the
:class:`ModelLock` of a model path (a second training given the same path stops
with one line naming the first; the lock of a run that died is taken over) and
removes the temporaries an interrupted save of the same files left.
"""
import json
import os
import sys
import time

from .. import modelfile
from .checkpoints import companion_paths


class ModelInUseError(Exception):
    """Another training holds the lock on the same ``--model-out``."""


class ModelLock:
    """An exclusive lock on a model path, held while one training writes there.

    The lock file ``PATH.lock`` records the holder's pid, host, start time and
    command, so that a second training given the same path can say which run
    has it. The lock itself is an ``flock`` on that file: the system drops it
    when the holder exits, however it exits (``kill -9`` included), so a lock
    file left by a run that died is simply taken over.

    Parameters
    ----------
    model_out : str

    Attributes
    ----------
    path : str, the lock file
    previous : dict or None
        The record of a dead run whose lock file was taken over.

    Raises
    ------
    ModelInUseError
        One line naming the running holder (pid, host, start, command).
    """

    def __init__(self, model_out):
        import fcntl
        import socket

        self.path = model_out + '.lock'
        self.previous = None
        self._fd = None
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._describe(self._read(fd))
                os.close(fd)
                raise ModelInUseError(
                    '%s is in use by another training (%s); wait for it to finish or '
                    'choose another --model-out' % (model_out, holder)) from None
            if self._same_file(fd):
                break
            os.close(fd)    # its holder removed it as we opened it: open the new one
        else:
            raise ModelInUseError('could not lock %s' % self.path)
        self.previous = self._read(fd) or None
        record = {'pid': os.getpid(), 'host': socket.gethostname(),
                  'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                  'command': ' '.join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        self._fd = fd

    def _same_file(self, fd):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    @staticmethod
    def _read(fd):
        try:
            raw = os.pread(fd, 4096, 0)
            record = json.loads(raw.decode()) if raw else {}
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    @staticmethod
    def _describe(record):
        if not record:
            return 'its lock file holds no details yet'
        return 'pid %s on host %s, started %s: %s' % (
            record.get('pid', '?'), record.get('host', '?'), record.get('started', '?'),
            record.get('command', '?'))

    def release(self):
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        if self._same_file(self._fd):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claim_model_path(model_out, log):
    """Lock ``model_out`` for this run, then remove temporaries a killed save left.

    Returns the :class:`ModelLock`; raises :class:`ModelInUseError` if another
    training holds it.
    """
    lock = ModelLock(model_out)
    if lock.previous:
        log('Taking over the lock of a training that is no longer running (pid %s on %s)'
            % (lock.previous.get('pid', '?'), lock.previous.get('host', '?')))
    for target in (model_out,) + companion_paths(model_out):
        for path in modelfile.remove_stale_temporaries(target):
            log('Removed %s, left by an interrupted save' % path)
    return lock
