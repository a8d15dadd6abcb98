"""A file object whose writes fail after a number of bytes: a full disk or a Ctrl-C in
the middle of a save. Standard library only, so that test subprocesses can import it
(``sys.path.insert(0, TESTS)``) without loading Theano."""


class FailingFile:
    """Wraps a binary file; the write that passes ``limit`` bytes raises ``error()``.

    Parameters
    ----------
    f : file object
    limit : int
    error : callable returning the exception to raise
    """

    def __init__(self, f, limit, error):
        self._f, self._left, self._error = f, limit, error

    def write(self, data):
        self._left -= len(data)
        if self._left < 0:
            raise self._error()
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)
