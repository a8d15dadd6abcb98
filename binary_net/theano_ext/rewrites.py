"""The graph rewrites of training, registered in Theano's ``optdb`` as ``binary_net_fused``.

Part of :mod:`binary_net.theano_ext`; they apply only to the functions this package
compiles (:func:`binary_net.theano_ext.fused_mode`, :func:`binary_net.theano_ext.function`),
never to other Theano programs in the same process, and only while
:func:`~binary_net.theano_ext.switch.is_enabled`. Registered when this module is
imported.

:class:`FuseBinarization` (before elementwise fusion):

* ``Sum{axis, acc_dtype=float64}(abs(X))`` (the sum inside ``alpha``, ``K`` and
  the ``xalpha`` refresh of :func:`binary_net.updates.binary_updates`) becomes
  one pass of :class:`~binary_net.theano_ext.reductions.AbsSum` over ``X``,
  instead of an ``abs`` array followed by Theano's slow strided column reduction;
* when the same ``X`` is also binarized (``sign(W)`` and ``alpha`` of one
  layer), both come out of that single pass (``AbsSum(with_sign=True)``);
* ``Dot22Scalar(a, b, s)`` whose twin ``Dot22(a, b)`` is computed anyway (Theano
  folds the 0.1 of Adam's first moment, or the 2 of a variance gradient, into a
  *second* copy of a gradient GEMM) becomes
  :class:`~binary_net.theano_ext.reductions.Scale` of that twin: one
  elementwise pass instead of a duplicated 4096 x 100 x 4096 GEMM;
* a binary layer's forward product ``dot(sign(x), sign(W))`` becomes
  :class:`~binary_net.theano_ext.products.XnorDot` (64-bit sign words and
  popcount: exact integers);
* every other ``Dot22`` (numpy's GEMM) becomes
  :class:`~binary_net.theano_ext.products.Dot22Into`, which writes into the
  previous call's output instead of allocating 64 MiB each step;
* with a BLAS library linked (:mod:`binary_net.compat` links scipy's OpenBLAS),
  Theano's ``CorrMM`` convolution ops (forward and both gradients) become
  :class:`~binary_net.theano_ext.conv.ParallelCorrMM` and its two gradient
  twins, and a binary convolution's forward product
  ``CorrMM(sign(x), flip(sign(W)))`` becomes
  :class:`~binary_net.theano_ext.conv.XnorCorr` (exact integers), and where Intel
  AMX runs (:func:`binary_net.kernels.amx_available`; ``BINARY_NET_AMX=0`` turns it
  off) its two gradients, each with a +-1 operand, become
  :class:`~binary_net.theano_ext.conv.SignCorrGradWeights` and
  :class:`~binary_net.theano_ext.conv.SignCorrGradInputs` (exact products, another
  summation order);
* every other float64-accumulated ``Sum`` of a float tensor (batch norm's
  statistics and their gradients) becomes
  :class:`~binary_net.theano_ext.reductions.FastSum`, threaded, in a fixed order
  (another summation order: float64 rounding before the cast);
* Theano's max-pooling and its gradient become
  :class:`~binary_net.theano_ext.pool.ParallelPool` and
  :class:`~binary_net.theano_ext.pool.ParallelMaxPoolGrad`, Theano's own OpenMP
  loop over images and channels, or, where the windows tile the image (2x2
  pooling), :class:`~binary_net.theano_ext.pool.TiledMaxPoolGrad` (bit for bit
  the same).

:class:`FastElemwiseRewrite` (after fusion and the in-place rewrites): fused
elementwise loops over same-shape arrays, broadcast scalars and arrays that
broadcast along some axes (Adam's moments, the clipped weight update, batch
norm's scale and shift, the straight-through masks, ...) become
:class:`~binary_net.theano_ext.elemwise.FastElemwise`.
"""
import theano
import theano.scalar as ts
import theano.tensor as T
from theano import gof
from theano.tensor import blas
from theano.tensor.elemwise import Elemwise, Sum
from theano.tensor.nnet import corr

from ..binarize import ScalarSign
from .. import kernels
from .conv import (CORR_OPS, SignCorrGradInputs, SignCorrGradWeights, XnorCorr,
                   xnor_corr_geometry)
from .cop import FLOAT_DTYPES, openmp_supported
from .elemwise import FastElemwise, broadcast_groups, fast_elemwise_eligible
from .pool import parallel_pool_op, tiled_max_pool_grad
from .products import Dot22Into, XnorDot
from .reductions import AbsSum, FastSum, Scale, fast_sum_eligible
from .switch import is_enabled

__all__ = ['FUSED_TAG', 'FuseBinarization', 'FastElemwiseRewrite']

# The rewrites are registered under their own tag only (not 'fast_run'), so they
# apply to the functions this package compiles (fused_mode(), function()) and
# never to other Theano programs in the same process.
FUSED_TAG = 'binary_net_fused'


def _is_sign(node):
    return (isinstance(node.op, Elemwise)
            and isinstance(node.op.scalar_op, ScalarSign))


def _is_binary(var):
    """True if every entry of ``var`` is +1 or -1: the output of a sign."""
    owner = var.owner
    if owner is None:
        return False
    if isinstance(owner.op, (T.Subtensor, T.DimShuffle)):   # flips, transposes
        return _is_binary(owner.inputs[0])
    if isinstance(owner.op, AbsSum):
        return owner.op.with_sign and var.index == 0
    return _is_sign(owner)


def _sign_corr_grad(node, geometry):
    """The AMX op for a stride-1 float32 ``CorrMM`` gradient whose +-1 operand comes
    from a sign (the input of a weight gradient, the weights of an input
    gradient), else None."""
    grads = {corr.CorrMM_gradWeights: SignCorrGradWeights,
             corr.CorrMM_gradInputs: SignCorrGradInputs}
    if type(node.op) not in grads or geometry is None or geometry[1] != (1, 1):
        return None
    signs, gz = node.inputs[:2]
    if signs.dtype != 'float32' or gz.dtype != 'float32' or not _is_binary(signs):
        return None
    return grads[type(node.op)](geometry[0])


def _abs_sum_pattern(node):
    """(X, axis) if ``node`` is ``Sum{axis, acc_dtype=float64}(abs(X))`` on a
    float matrix with the output in X's dtype, else None."""
    if type(node.op) is not Sum or node.op.acc_dtype != 'float64':
        return None
    if node.op.axis is None or len(node.op.axis) != 1 or node.op.axis[0] not in (0, 1):
        return None
    (inner,) = node.inputs
    if inner.owner is None or not isinstance(inner.owner.op, Elemwise):
        return None
    if not isinstance(inner.owner.op.scalar_op, ts.Abs):
        return None
    (x,) = inner.owner.inputs
    if x.ndim != 2 or x.dtype not in FLOAT_DTYPES or node.outputs[0].dtype != x.dtype:
        return None
    return x, node.op.axis[0]


def _same_variable(a, b, depth=3):
    """True if a and b are the same variable or the same computation of it."""
    if a is b:
        return True
    if depth == 0 or a.owner is None or b.owner is None:
        return False
    if a.owner.op != b.owner.op or a.index != b.index:
        return False
    if len(a.owner.inputs) != len(b.owner.inputs):
        return False
    return all(_same_variable(x, y, depth - 1)
               for x, y in zip(a.owner.inputs, b.owner.inputs))


def _replace(fgraph, pairs, reason='binary_net_fused'):
    """Replace each (old, new) variable pair if every type matches and the graph
    stays consistent; return whether it was done."""
    if any(old.type != new.type for old, new in pairs):
        return False
    try:
        fgraph.replace_all_validate(pairs, reason=reason)
    except gof.InconsistencyError:
        return False
    return True


class FuseBinarization(gof.Optimizer):
    """Rewrites abs-sums, sign + alpha pairs, GEMMs and convolutions (see the module doc)."""

    def add_requirements(self, fgraph):
        fgraph.attach_feature(gof.toolbox.ReplaceValidate())

    def apply(self, fgraph):
        if not is_enabled():
            return
        self._fuse_abs_sums(fgraph)
        self._share_duplicated_dots(fgraph)
        self._reuse_dot_outputs(fgraph)
        self._parallel_convolutions(fgraph)
        self._fast_sums(fgraph)
        self._parallel_pools(fgraph)

    @staticmethod
    def _parallel_pools(fgraph):
        """Max-pooling and its gradient with Theano's own OpenMP loop over images
        and channels, the gradient of pooling windows that tile the image as
        :class:`~binary_net.theano_ext.pool.TiledMaxPoolGrad` (the same results,
        bit for bit)."""
        if theano.config.cxx == '' or not openmp_supported():
            return
        for node in list(fgraph.apply_nodes):
            if node not in fgraph.apply_nodes:
                continue
            tiled = tiled_max_pool_grad(node)
            if tiled is not None:
                _replace(fgraph, [(node.outputs[0], tiled)])
                continue
            new_op = parallel_pool_op(node.op)
            if new_op is None:
                continue
            new = gof.Apply(new_op, list(node.inputs), [out.type() for out in node.outputs])
            _replace(fgraph, [(node.outputs[0], new.outputs[0])])

    @staticmethod
    def _fast_sums(fgraph):
        """Float64-accumulated sums (batch norm's statistics and their gradients) on
        all threads, in a fixed order that does not depend on the thread count."""
        for node in list(fgraph.apply_nodes):
            if node not in fgraph.apply_nodes or not fast_sum_eligible(node):
                continue
            x = node.inputs[0]
            axis = range(x.ndim) if node.op.axis is None else node.op.axis
            _replace(fgraph, [(node.outputs[0], FastSum(axis)(x))])

    @staticmethod
    def _parallel_convolutions(fgraph):
        """CorrMM ops (forward, weight and input gradients) with OpenMP over the
        batch, one single-threaded BLAS GEMM per image, when a BLAS library is
        linked: a multithreaded GEMM per small image product scales badly. The
        weight gradient then sums per-thread partial sums (another summation
        order, fixed for a given thread count)."""
        if not theano.config.blas.ldflags or theano.config.cxx == '':
            return
        amx = None      # whether the AMX gradients run here, asked at the first one
        for node in list(fgraph.apply_nodes):
            if type(node.op) not in CORR_OPS or node not in fgraph.apply_nodes:
                continue
            op = node.op
            geometry = xnor_corr_geometry(op)
            if (type(op) is corr.CorrMM and geometry is not None
                    and all(_is_binary(v) for v in node.inputs)):
                exact = T.cast(XnorCorr(*geometry)(*node.inputs), node.outputs[0].dtype)
                if _replace(fgraph, [(node.outputs[0], exact)]):
                    continue
            sign_op = _sign_corr_grad(node, geometry)
            if sign_op is not None:
                amx = kernels.amx_available() if amx is None else amx
                if amx and _replace(fgraph, [(node.outputs[0], sign_op(*node.inputs[:2]))]):
                    continue
            new_op = CORR_OPS[type(op)](border_mode=op.border_mode, subsample=op.subsample,
                                        filter_dilation=op.filter_dilation,
                                        num_groups=op.num_groups, unshared=op.unshared,
                                        openmp=True)
            # the same inputs (the gradients' shape inputs included), the same types
            new = gof.Apply(new_op, list(node.inputs),
                            [out.type() for out in node.outputs]).outputs[0]
            _replace(fgraph, [(node.outputs[0], new)])

    @staticmethod
    def _fuse_abs_sums(fgraph):
        signed = set()
        for node in fgraph.toposort():
            if node not in fgraph.apply_nodes:
                continue
            found = _abs_sum_pattern(node)
            if found is None:
                continue
            x, axis = found
            old_sum = node.outputs[0]
            sign_nodes = [] if x in signed else [
                client for client, _ in getattr(x, 'clients', [])
                if client != 'output' and _is_sign(client)
                and client.outputs[0].type == x.type]
            if sign_nodes:
                op = AbsSum(axis, with_sign=True,
                            straight_through=sign_nodes[0].op.scalar_op.straight_through)
                new_sign, new_sum = op(x)
                pairs = [(s.outputs[0], new_sign) for s in sign_nodes]
                pairs.append((old_sum, new_sum))
            else:
                pairs = [(old_sum, AbsSum(axis)(x))]
            if not _replace(fgraph, pairs):
                continue
            if sign_nodes:
                signed.add(x)

    @staticmethod
    def _share_duplicated_dots(fgraph):
        plain = [n for n in fgraph.apply_nodes if type(n.op) is blas.Dot22]
        for node in list(fgraph.apply_nodes):
            if type(node.op) is not blas.Dot22Scalar or node not in fgraph.apply_nodes:
                continue
            a, b, s = node.inputs
            twins = [d for d in plain if d in fgraph.apply_nodes
                     and _same_variable(d.inputs[0], a) and _same_variable(d.inputs[1], b)]
            if not twins or s.dtype != node.outputs[0].dtype:
                continue
            _replace(fgraph, [(node.outputs[0], Scale()(twins[0].outputs[0], s))])

    @staticmethod
    def _reuse_dot_outputs(fgraph):
        for node in list(fgraph.apply_nodes):
            if type(node.op) is not blas.Dot22 or node not in fgraph.apply_nodes:
                continue
            if all(_is_binary(v) for v in node.inputs):
                new = XnorDot()(*node.inputs)
            else:
                new = Dot22Into()(*node.inputs)
            _replace(fgraph, [(node.outputs[0], new)])


class FastElemwiseRewrite(gof.Optimizer):
    """Runs eligible elementwise nodes as :class:`FastElemwise` (after fusion and
    in-place rewrites, so the fused, in-place loops are the ones replaced); a
    column ``AbsSum`` of one of their matrix outputs joins the same pass."""

    def add_requirements(self, fgraph):
        fgraph.attach_feature(gof.toolbox.ReplaceValidate())

    @staticmethod
    def _abs_sum_client(node):
        """(output index, AbsSum node) for an AbsSum(axis=0) reading an output
        (of a node with no broadcasting inputs but scalars)."""
        if len(broadcast_groups(node)) > 1:
            return None
        for index, out in enumerate(node.outputs):
            if out.ndim != 2 or out.dtype not in FLOAT_DTYPES:
                continue
            for client, _ in getattr(out, 'clients', []):
                if (client != 'output' and isinstance(client.op, AbsSum)
                        and client.op.axis == 0 and not client.op.with_sign):
                    return index, client
        return None

    def apply(self, fgraph):
        if not is_enabled():
            return
        for node in list(fgraph.toposort()):
            if node not in fgraph.apply_nodes or not fast_elemwise_eligible(node):
                continue
            summed = self._abs_sum_client(node)
            if summed is None:
                new = FastElemwise(node.op)(*node.inputs, return_list=True)
                pairs = list(zip(node.outputs, new))
            else:
                index, sum_node = summed
                new = FastElemwise(node.op, abs_sum_of=index)(*node.inputs, return_list=True)
                pairs = list(zip(node.outputs, new[:-1])) + [(sum_node.outputs[0], new[-1])]
            _replace(fgraph, pairs, reason='binary_net_fast_elemwise')


# After the BLAS rewrites (Dot22 and Dot22Scalar exist), after specialization
# (the sums are in their final form) and before elementwise fusion (49).
if 'binary_net_fuse_binarization' not in theano.compile.optdb._names:
    theano.compile.optdb.register('binary_net_fuse_binarization', FuseBinarization(),
                                  48.7, FUSED_TAG)
# After elementwise fusion (49) and the in-place rewrites (75).
if 'binary_net_fast_elemwise' not in theano.compile.optdb._names:
    theano.compile.optdb.register('binary_net_fast_elemwise', FastElemwiseRewrite(),
                                  75.5, FUSED_TAG)
