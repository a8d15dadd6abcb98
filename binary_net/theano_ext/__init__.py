"""Fused C ops that make XNOR training fast, and the graph rewrites that use them.

The layers build XNOR-Net's arithmetic out of plain Theano expressions
(``W_binary = sign(W)``, ``alpha = mean(|W|, axis=0)``, ...; see
:mod:`binary_net.binarize`), and :func:`theano.grad` differentiates those. This
package only changes how a *compiled* function computes them: two global
optimizers (:mod:`~binary_net.theano_ext.rewrites`), registered in Theano's
``optdb`` under the tag ``binary_net_fused`` when the package is imported (it is
by :mod:`binary_net.train`), rewrite the optimized graph of the functions this
package compiles (:func:`fused_mode`, :func:`function`); other Theano programs in
the same process are never rewritten.

Modules, one concept each:

* :mod:`~binary_net.theano_ext.switch`: on/off (``BINARY_NET_FUSED``);
* :mod:`~binary_net.theano_ext.cop`: the ops' common base, a Theano ``COp`` whose
  C lives in ``binary_net/csrc/theano_ext/*.c``;
* :mod:`~binary_net.theano_ext.reductions`: ``AbsSum`` (sums of ``|X|``, with
  ``sign(X)``), ``FastSum`` (threaded float64-accumulated sums) and ``Scale``;
* :mod:`~binary_net.theano_ext.products`: ``Dot22Into`` and the popcount product
  ``XnorDot``, which shares the packing and product of :mod:`binary_net.kernels`
  (``csrc/xnor_kernels.h``);
* :mod:`~binary_net.theano_ext.conv`: ``ParallelCorrMM`` (and its gradients) and
  the popcount convolution ``XnorCorr``;
* :mod:`~binary_net.theano_ext.pool`: ``ParallelPool`` and ``ParallelMaxPoolGrad``
  (Theano's max-pooling with its OpenMP loop on) and ``TiledMaxPoolGrad`` (the
  gradient of pooling windows that tile the image, in one pass);
* :mod:`~binary_net.theano_ext.elemwise`: the elementwise C code generator
  ``FastElemwise``;
* :mod:`~binary_net.theano_ext.rewrites`: the graph rewrites;
* :mod:`~binary_net.theano_ext.mode`: :func:`fused_mode` and :func:`function`.

Every replacement but the convolutions computes exactly what it replaces: sums
accumulate in float64 in the same order, ``s * D`` is the same single rounding
as ``Dot22Scalar``, a sum of +-1 products is an exact integer, elementwise code
is the same scalar code. The parallel weight gradient adds per-thread partial
sums (another summation order, fixed for a thread count), and the straightforward
graph's GEMMs run in the linked BLAS while ``Dot22Into`` uses numpy's, so a
seeded run is reproducible with itself and agrees with the straightforward graph
within 1e-4 relative after 20 steps (tests/test_train_speed_numbers.py).

The C code runs its loops with OpenMP (``OMP_NUM_THREADS`` threads; one thread
for small arrays) and is compiled and cached by Theano's own ``cmodule``
machinery, with the ``-march`` flags Theano detects for the machine.
:func:`function` compiles a function that is called many times (the training
step) to keep its buffers between calls.

Switches, for comparisons and debugging:

* ``BINARY_NET_FUSED=0`` in the environment, :func:`set_enabled` or the context
  manager :func:`enabled` turn the rewrites off for functions compiled meanwhile
  (and make :func:`function` plain ``theano.function``);
* ``mode.excluding('binary_net_fused')`` does the same for one function.
"""
from ..threads import prefer_sleeping_threads

# libgomp reads its spin count when first loaded, i.e. with the first compiled op.
prefer_sleeping_threads()

from .conv import (ParallelCorrMM, ParallelCorrMMGradInputs,  # noqa: E402
                   ParallelCorrMMGradWeights, SignCorrGradInputs, SignCorrGradWeights,
                   XnorCorr)
from .elemwise import FastElemwise  # noqa: E402
from .mode import function, fused_mode  # noqa: E402
from .pool import ParallelMaxPoolGrad, ParallelPool, TiledMaxPoolGrad  # noqa: E402
from .products import Dot22Into, XnorDot  # noqa: E402
from .reductions import AbsSum, FastSum, Scale  # noqa: E402
from .rewrites import FUSED_TAG, FastElemwiseRewrite, FuseBinarization  # noqa: E402
from .switch import enabled, is_enabled, set_enabled  # noqa: E402

__all__ = ['function', 'fused_mode', 'FUSED_TAG', 'enabled', 'is_enabled', 'set_enabled',
           'AbsSum', 'FastSum', 'Scale', 'Dot22Into', 'XnorDot', 'ParallelCorrMM',
           'ParallelCorrMMGradWeights', 'ParallelCorrMMGradInputs', 'XnorCorr',
           'SignCorrGradWeights', 'SignCorrGradInputs', 'FastElemwise',
           'ParallelPool', 'ParallelMaxPoolGrad', 'TiledMaxPoolGrad',
           'FuseBinarization', 'FastElemwiseRewrite']
