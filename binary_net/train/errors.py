"""The error a training stops with (a NaN loss, a checkpoint that does not fit).

The one exception shared by :mod:`binary_net.train`'s epoch loop, trainer and
checkpoints; the command line reports it as one ``error:`` line, exit status 1.
"""


class TrainingError(Exception):
    """Training cannot go on (a NaN loss, a checkpoint that does not fit)."""
