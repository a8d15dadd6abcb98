"""Which code path of the C kernels runs: native, AVX2 or portable.

Part of :mod:`binary_net.kernels`. Each path is the same C source built with other
``-march`` flags (:data:`ISA_FLAGS`, used by :mod:`binary_net.kernels.build`);
``$BINARY_NET_ISA`` or :func:`use_isa` selects one, and the ctypes bindings
(:mod:`binary_net.kernels.library`) load the library of :func:`selected_isa`.
"""
import os

__all__ = ['ISA_FLAGS', 'ISAS', 'use_isa', 'selected_isa']

#: Compiler flags of each code path (the AVX2 and portable paths run on any CPU
#: that runs the native one, which is how the tests cover all three on one machine).
ISA_FLAGS = {
    'native': ['-march=native'],
    'avx2': ['-march=native', '-mno-avx512f'],
    'portable': ['-march=native', '-mno-avx2'],
}

#: The code paths BINARY_NET_ISA (or :func:`use_isa`) may select.
ISAS = tuple(ISA_FLAGS)


_isa_override = None    # set by use_isa(); None: $BINARY_NET_ISA


def use_isa(isa):
    """Select the code path of later kernel calls, overriding ``$BINARY_NET_ISA``.

    Parameters
    ----------
    isa : str or None
        One of :data:`ISAS` ('native': the widest the CPU has, 'avx2', 'portable');
        None goes back to ``$BINARY_NET_ISA`` (default 'native'). Each path is
        compiled at its first use; on x86 every path runs on a CPU with AVX-512,
        which is how the tests cover all three on one machine.

    Returns
    -------
    str or None
        The previous setting, for restoring it.
    """
    global _isa_override
    if isa is not None and isa not in ISA_FLAGS:
        raise ValueError('isa must be one of %s, not %r' % (', '.join(ISAS), isa))
    previous, _isa_override = _isa_override, isa
    return previous


def selected_isa():
    """The code path in force: :func:`use_isa`'s, else ``$BINARY_NET_ISA``, else 'native'."""
    isa = _isa_override or os.environ.get('BINARY_NET_ISA', 'native') or 'native'
    if isa not in ISA_FLAGS:
        raise ValueError('BINARY_NET_ISA must be one of %s, not %r'
                         % (', '.join(sorted(ISA_FLAGS)), isa))
    return isa

