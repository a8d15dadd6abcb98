"""Bit-packed XNOR-popcount kernels: numpy arrays in, numpy arrays out.

This package knows nothing of Theano or Lasagne. It computes, exactly and fast,
products of sign matrices (entries +1/-1) by packing the signs 64 to a
``uint64`` word and replacing multiply-adds by XOR and population count::

    sum_k sign(a_k) * sign(b_k) = n - 2 * popcount(a XOR b)

Sign convention, everywhere: ``sign(v) = +1`` where ``v >= 0`` (zero included)
and ``-1`` where ``v < 0``; NaN counts as -1 (``NaN >= 0`` is false).

Bit layout, everywhere: a vector of ``n`` signs is stored in ``ceil(n / 64)``
words; element ``k`` lives in word ``k // 64`` at bit ``k % 64`` (least
significant bit first); the bit is 1 for +1 and 0 for -1; unused trailing bits
are 0.

The C code (``csrc/xnor_kernels.c`` and its header ``csrc/xnor_kernels.h``, the
packing and popcount product, which the fused Theano ops of
:mod:`binary_net.theano_ext` share) is compiled at first use, never at import, into
a private cache (:mod:`~binary_net.kernels.build`), and loaded with :mod:`ctypes`
(:mod:`~binary_net.kernels.library`). It has an AVX-512 VPOPCNTDQ path, an AVX2
path (lookup tables of A's nibbles, shuffled by the nibbles of 32 columns of B side
by side), a NEON path and a portable path (``__builtin_popcountll``); all are
bit-exact. Products are register-blocked (a few rows of A against a panel of 8 or 32
columns of B) and split over OpenMP threads. ``$BINARY_NET_ISA``
(:mod:`~binary_net.kernels.isa`) may be set to ``avx2`` or ``portable`` to build a
narrower path than the CPU allows (for testing and benchmarking); the default is
``native``.

For training, :func:`sign_conv_grad_weights` and :func:`sign_conv_grad_inputs`
(``csrc/amx_conv_grad.c``, :mod:`~binary_net.kernels.conv_grad`) compute the two
gradients of a convolution with a +-1 operand on Intel AMX, exact products summed in
float32 (:func:`amx_available` says where they run).

The products return exact int32 results. Beside them, whole-layer functions
apply XNOR-Net's scaling (K, alpha), the bias and a following batch norm or max
pooling in float32 exactly as numpy does (same operations, same order; compiled
with ``-ffp-contract=off``): :meth:`PackedDense.dense_layer`, :class:`DenseChain`
(several dense layers in one call), :func:`pack_signs_mean_abs`,
:func:`pack_channels_mean_abs`, :func:`conv_epilogue` and :func:`conv_epilogue_pack` (the
epilogue and the next convolution's packed input, in one pass).
:func:`use_isa` selects a code path from Python (the tests run all of them on one
machine); :func:`xnor_matmul_reference` is the plain reference kernel the fast
ones are tested against, and :func:`pack_bits` / :func:`unpack_bits` the numpy
reference of the bit layout (:mod:`~binary_net.kernels.reference`).

Modules: :mod:`~binary_net.kernels.build` (compiling, cache hardening),
:mod:`~binary_net.kernels.isa` (code path selection),
:mod:`~binary_net.kernels.library` (ctypes bindings, threads),
:mod:`~binary_net.kernels.reference` (numpy reference kernels),
:mod:`~binary_net.kernels.operands` (argument checks),
:mod:`~binary_net.kernels.ops` (packing, products, epilogues),
:mod:`~binary_net.kernels.dense` and :mod:`~binary_net.kernels.conv` (layers with
weights packed once), :mod:`~binary_net.kernels.conv_grad` (the AMX gradients).
This package imports only numpy and the standard library.
"""

from .build import KernelBuildError
from .conv import PackedConv2D
from .conv_grad import amx_available, sign_conv_grad_inputs, sign_conv_grad_weights
from .dense import DenseChain, PackedDense
from .isa import ISAS, use_isa
from .library import get_num_threads, kernel_info, set_num_threads
from .ops import (batch_norm_pack_channels, conv_epilogue, conv_epilogue_pack,
                  pack_channels_mean_abs, pack_signs, pack_signs_mean_abs, xnor_matmul,
                  xnor_matmul_reference)
from .reference import (conv_grad_inputs_reference, conv_grad_weights_reference, pack_bits,
                        unpack_bits)

__all__ = ['KernelBuildError', 'pack_signs', 'pack_signs_mean_abs', 'pack_channels_mean_abs',
           'batch_norm_pack_channels', 'pack_bits', 'unpack_bits',
           'xnor_matmul', 'xnor_matmul_reference', 'conv_epilogue', 'conv_epilogue_pack',
           'PackedDense', 'DenseChain',
           'PackedConv2D', 'set_num_threads', 'get_num_threads', 'kernel_info', 'use_isa',
           'ISAS', 'amx_available', 'sign_conv_grad_weights', 'sign_conv_grad_inputs',
           'conv_grad_weights_reference', 'conv_grad_inputs_reference']
