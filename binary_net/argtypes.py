"""argparse types for numbers with a valid range, shared by every command line.

``parser.add_argument('--act-bits', type=int_range(2, 53))`` makes argparse
refuse ``--act-bits 1000`` with ``argument --act-bits: must be an integer in
2..53, got 1000`` (exit status 2) instead of failing later with a traceback.
"""
import argparse
import math

__all__ = ['int_range', 'float_range']


def _bounds_text(low, high, low_open=False, high_open=False):
    if low is not None and high is not None:
        if not low_open and not high_open:
            return 'in %s..%s' % (low, high)
        return 'in %s%s, %s%s' % ('(' if low_open else '[', low, high, ')' if high_open else ']')
    if low is not None:
        return ('greater than %s' if low_open else 'at least %s') % low
    if high is not None:
        return ('less than %s' if high_open else 'at most %s') % high
    return ''


def int_range(low=None, high=None):
    """An argparse type accepting integers in ``[low, high]`` (None: unbounded).

    Parameters
    ----------
    low, high : int or None

    Returns
    -------
    callable str -> int, raising ``argparse.ArgumentTypeError`` with the range.
    """
    wanted = ('an integer ' + _bounds_text(low, high)).strip()

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError('must be %s, got %r' % (wanted, text)) from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError('must be %s, got %d' % (wanted, value))
        return value

    parse.__name__ = 'integer'
    return parse


def float_range(low=None, high=None, low_open=False, high_open=False):
    """An argparse type accepting finite numbers between ``low`` and ``high``.

    Parameters
    ----------
    low, high : float or None
        Bounds (None: unbounded).
    low_open, high_open : bool
        Exclude the bound itself (``float_range(0, low_open=True)``: positive).

    Returns
    -------
    callable str -> float, raising ``argparse.ArgumentTypeError`` with the range.
    """
    wanted = ('a number ' + _bounds_text(low, high, low_open, high_open)).strip()

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError('must be %s, got %r' % (wanted, text)) from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError('must be %s, got %s' % (wanted, text))
        return value

    parse.__name__ = 'number'
    return parse
