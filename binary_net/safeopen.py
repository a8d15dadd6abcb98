"""Opening input files that may not be what they claim: regular files only.

A FIFO given where a model or data file is expected makes ``open`` wait forever
for a writer; a character device such as ``/dev/zero`` reads forever; a directory
fails with a confusing message. :func:`open_regular` opens without blocking,
checks on the open descriptor (so the check and the read concern the same file)
that it is a regular file, and only then hands back an ordinary buffered file.
Standard library only, so every module can use it.
"""
import errno
import os
import stat

__all__ = ['NotRegularFileError', 'file_kind', 'check_regular', 'open_regular']

_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
          (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
          (stat.S_ISSOCK, 'a socket'))


class NotRegularFileError(OSError):
    """A path names a directory, FIFO, device or socket instead of a regular file."""


def file_kind(mode):
    """What ``st_mode`` describes, in words: 'a regular file', 'a FIFO (named pipe)', ..."""
    if stat.S_ISREG(mode):
        return 'a regular file'
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return 'not a regular file'


def _refuse(path, mode):
    return NotRegularFileError(errno.EINVAL, '%s is %s, not a regular file'
                               % (path, file_kind(mode)), path)


def check_regular(path):
    """Whether ``path`` exists; raise if it exists but is not a regular file.

    Parameters
    ----------
    path : str

    Returns
    -------
    bool
        True for a regular file (or a link to one), False if nothing is there.

    Raises
    ------
    NotRegularFileError
        For a directory, FIFO, device or socket. ``str(error)`` is one line
        naming the path and its kind.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    if not stat.S_ISREG(mode):
        raise _refuse(path, mode)
    return True


def open_regular(path):
    """Open a regular file for binary reading, never blocking on a FIFO.

    Parameters
    ----------
    path : str

    Returns
    -------
    io.BufferedReader

    Raises
    ------
    NotRegularFileError
        If ``path`` is not a regular file (checked on the opened descriptor).
    OSError
        As ``open`` raises it (FileNotFoundError, PermissionError, ...).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_CLOEXEC', 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, mode)
        if hasattr(os, 'set_blocking'):
            os.set_blocking(fd, True)
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise
