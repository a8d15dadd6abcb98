"""The inference modes: the one place where a mode's name meets its context class.

``FoldedNetwork.predict_scores(X, mode=NAME, **options)`` makes the context
``MODES[NAME](network, **options)`` (:func:`make_context`) and runs every op
through it. The modes:

==========  =================================================================
mode        context
==========  =================================================================
float       :class:`~binary_net.infer.context.FloatContext`: float32
fixed       :func:`fixed_context`: :class:`~binary_net.infer.fixed.FixedContext`
            (simulated fixed point, ``preset='calibrated'``, the default) or
            :class:`~binary_net.infer.fixed_original.OriginalFixedContext`
            (``preset='original'``, the original theano-xnor-net's)
xnor        :class:`~binary_net.infer.xnor.XnorContext`: bit-packed kernels,
            float's scores bit for bit
int         :class:`~binary_net.infer.integer.IntegerContext`: integers,
            bit-exact with the C export
==========  =================================================================

A new mode is a context class (a subclass of
:class:`~binary_net.infer.context.FloatContext` overriding the op methods it
computes differently) added here, or at run time with :func:`register_mode`.
"""
from .context import FloatContext
from .fixed import FixedContext
from .fixed_original import OriginalFixedContext
from .integer import IntegerContext
from .xnor import XnorContext

__all__ = ['MODES', 'PRESETS', 'fixed_context', 'register_mode', 'make_context']

#: Presets of ``mode='fixed'``: this package's calibrated scheme, the original's.
PRESETS = ('calibrated', 'original')


def fixed_context(network, preset='calibrated', **options):
    """The context of ``mode='fixed'``: this package's calibrated scheme or a preset.

    Parameters
    ----------
    preset : {'calibrated', 'original'}
        'calibrated': :class:`~binary_net.infer.fixed.FixedContext` with ``options``;
        'original': :class:`~binary_net.infer.fixed_original.OriginalFixedContext`
        (only ``rounding`` applies).
    """
    if preset == 'calibrated':
        return FixedContext(network, **options)
    if preset == 'original':
        return OriginalFixedContext(network, **options)
    raise ValueError('unknown fixed-point preset %r; choose one of %s'
                     % (preset, ', '.join(PRESETS)))


#: Mode name -> context factory ``(network, **options) -> context``.
MODES = {'float': FloatContext, 'fixed': fixed_context, 'xnor': XnorContext,
         'int': IntegerContext}


def register_mode(name, context_class):
    """Make ``mode=name`` available to :meth:`FoldedNetwork.predict_scores`.

    Parameters
    ----------
    name : str
    context_class : callable ``(network, **options) -> context``
        Usually a subclass of :class:`~binary_net.infer.context.FloatContext`
        with ``mode = name``.
    """
    MODES[name] = context_class


def make_context(network, mode, options):
    """The context of ``mode`` for ``network`` with the mode's ``options`` (a dict).

    Raises
    ------
    ValueError
        An unknown mode, or options the mode does not take.
    """
    try:
        factory = MODES[mode]
    except (KeyError, TypeError):
        raise ValueError('unknown inference mode %r; choose one of %s'
                         % (mode, ', '.join(sorted(MODES)))) from None
    try:
        return factory(network, **options)
    except TypeError as error:
        if options:
            raise ValueError('mode %r does not take the options %s (%s)'
                             % (mode, ', '.join(sorted(options)), error)) from None
        raise
