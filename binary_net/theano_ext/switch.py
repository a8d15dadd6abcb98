"""The switch of the fused ops: on by default, off with ``BINARY_NET_FUSED=0``.

Part of :mod:`binary_net.theano_ext`. The graph rewrites
(:mod:`~binary_net.theano_ext.rewrites`) and :func:`binary_net.theano_ext.function`
read :func:`is_enabled` when a function is compiled, so switching it changes the
functions compiled afterwards, for comparisons and debugging.
"""
import contextlib
import os

__all__ = ['is_enabled', 'set_enabled', 'enabled']

_enabled = (os.environ.get('BINARY_NET_FUSED', '1').strip().lower()
            not in ('0', 'false', 'no', 'off'))


def is_enabled():
    """Whether functions compiled now use the fused ops."""
    return _enabled


def set_enabled(value):
    """Turn the graph rewrite on or off for functions compiled from now on."""
    global _enabled
    _enabled = bool(value)


@contextlib.contextmanager
def enabled(value):
    """Context manager: compile with the rewrite on (True) or off (False)."""
    previous = _enabled
    set_enabled(value)
    try:
        yield
    finally:
        set_enabled(previous)
