"""Compiling with the fused ops: :func:`fused_mode` and :func:`function`.

Part of :mod:`binary_net.theano_ext`, its entry point for the rest of the package
(:mod:`binary_net.train` compiles its training step with :func:`function`).
Importing it registers the rewrites (:mod:`~binary_net.theano_ext.rewrites`).
"""
import theano

from .. import compat
from .rewrites import FUSED_TAG
from .switch import is_enabled

__all__ = ['fused_mode', 'function']


def fused_mode(mode=None):
    """A Theano mode (default: the default mode) with this package's rewrites included.

    Functions compiled with it get the fused ops; ``theano.function`` without it
    (any other program in the same process) is never rewritten.
    """
    return theano.compile.get_mode(mode).including(FUSED_TAG)


def function(inputs, outputs=None, mode=None, **kwargs):
    """``theano.function`` compiled for speed, for a training step called many times.

    With the rewrites enabled (:func:`is_enabled`) the function keeps its
    intermediate arrays between calls (``allow_gc=False``: more memory, no
    re-allocation and page faults for weight-sized buffers each step), unless
    the user configured ``allow_gc`` in ``THEANO_FLAGS`` or ``.theanorc``.
    Otherwise it is plain ``theano.function``. Either way the results are the
    same.

    Theano's global ``openmp=True`` is deliberately not used: the fused ops
    already run their loops with OpenMP, and with no BLAS library configured
    (``blas.ldflags=``, see :mod:`binary_net.compat`) Theano's OpenMP
    convolution calls numpy from its worker threads and crashes; the
    convolutions get OpenMP from the rewrite only when a BLAS is linked.
    """
    if not is_enabled():
        return theano.function(inputs, outputs, mode=mode, **kwargs)
    mode = fused_mode(mode)
    if not compat.user_configured('allow_gc', None):
        try:
            mode = mode.clone(link_kwargs={'allow_gc': False})
        except TypeError:  # a linker without that option
            pass
    return theano.function(inputs, outputs, mode=mode, **kwargs)
