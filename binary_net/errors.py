"""The exceptions shared across the package, and how an error becomes one line.

Standard library only, and imported by the modules that raise or report them
(:mod:`binary_net.spec`, :mod:`binary_net.modelfile`, the inference and the
commands), so that no module imports another only for its exception type.
"""

__all__ = ['ModelFileError', 'DescriptionError', 'first_line']


class ModelFileError(Exception):
    """A model file is missing, truncated, foreign or does not fit the network."""


class DescriptionError(ValueError):
    """A malformed value of a network description (a pad, a pair of sizes).

    The message names the value, not the layer it belongs to; the code that
    knows the layer reports it as a :class:`ModelFileError` with that context
    (see :func:`binary_net.spec.layer_plan`).
    """


def first_line(error):
    """The first line of an exception's message, or its type's name if it has none."""
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__
