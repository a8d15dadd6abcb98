"""Convolutions of training: :class:`ParallelCorrMM` (and its gradients) and :class:`XnorCorr`.

Part of :mod:`binary_net.theano_ext`. With a BLAS library linked,
:class:`~binary_net.theano_ext.rewrites.FuseBinarization` runs Theano's ``CorrMM``
ops with OpenMP over the images of the batch and a single-threaded GEMM per image
(:class:`ParallelCorrMM` and its gradient twins: Theano's own C, an op unequal to
the serial one), and a binary convolution's forward product
``CorrMM(sign(x), flip(sign(W)))`` as :class:`XnorCorr`, the popcount convolution
of :mod:`binary_net.kernels` (exact integers). Where Intel AMX runs
(:func:`binary_net.kernels.amx_available`), the two gradients of that product, each
with a +-1 operand, are :class:`SignCorrGradWeights` and :class:`SignCorrGradInputs`:
exact products summed in float32 in another order than the GEMM's.
"""
import theano.tensor as T
from theano import gof
from theano.tensor.nnet import corr

from .. import kernels
from .cop import FLOAT_DTYPES

__all__ = ['ParallelCorrMM', 'ParallelCorrMMGradWeights', 'ParallelCorrMMGradInputs',
           'CORR_OPS', 'XnorCorr', 'SignCorrGradWeights', 'SignCorrGradInputs',
           'xnor_corr_geometry']


class ParallelCorrMM(corr.CorrMM):
    """Theano's CorrMM with OpenMP over the batch (an op unequal to the serial one,
    so that Theano's merge pass does not swap the serial one back in)."""
    __props__ = corr.CorrMM.__props__ + ('openmp',)


class ParallelCorrMMGradWeights(corr.CorrMM_gradWeights):
    """CorrMM_gradWeights with OpenMP over the batch (see :class:`ParallelCorrMM`)."""
    __props__ = corr.CorrMM_gradWeights.__props__ + ('openmp',)


class ParallelCorrMMGradInputs(corr.CorrMM_gradInputs):
    """CorrMM_gradInputs with OpenMP over the batch (see :class:`ParallelCorrMM`)."""
    __props__ = corr.CorrMM_gradInputs.__props__ + ('openmp',)


#: The serial CorrMM ops and their OpenMP twins.
CORR_OPS = {corr.CorrMM: ParallelCorrMM, corr.CorrMM_gradWeights: ParallelCorrMMGradWeights,
            corr.CorrMM_gradInputs: ParallelCorrMMGradInputs}


class XnorCorr(gof.Op):
    """Cross-correlation of two +-1 tensors by XNOR-popcount (the forward product
    of a binary convolution in training), computed by :class:`binary_net.kernels.PackedConv2D`.

    ``XnorCorr(pad, stride)(x, w)`` equals Theano's ``CorrMM`` with border
    ``pad`` and subsample ``stride`` for ``x`` (N, C, H, W) and ``w`` (F, C, fh,
    fw) whose entries are all +1 or -1, zero padding contributing 0: every
    output is an exact integer, returned as int32; cast to the float dtype it
    is bit-identical to the float convolution's. The rewrite uses it only where
    both operands come from a sign, and puts the cast in the next elementwise
    loop (Theano's fusion), which saves a pass over the output.
    """

    __props__ = ('pad', 'stride')

    def __init__(self, pad=(0, 0), stride=(1, 1)):
        self.pad = tuple(int(v) for v in pad)
        self.stride = tuple(int(v) for v in stride)

    def make_node(self, x, w):
        x, w = T.as_tensor_variable(x), T.as_tensor_variable(w)
        if x.ndim != 4 or w.ndim != 4 or x.dtype != w.dtype or x.dtype not in FLOAT_DTYPES:
            raise TypeError('XnorCorr needs two 4-D float tensors of one dtype')
        out = T.TensorType('int32', (x.broadcastable[0], w.broadcastable[0], False, False))()
        return gof.Apply(self, [x, w], [out])

    def perform(self, node, inputs, outputs):
        x, w = inputs
        conv = kernels.PackedConv2D(w, stride=self.stride, pad=self.pad)
        outputs[0][0] = conv.conv_signs(x)


class _SignCorrGrad(gof.Op):
    """A gradient of a stride-1 correlation with a +-1 operand, on AMX (the base of the
    two ops below: ``pad`` and the float32 check)."""

    __props__ = ('pad',)

    def __init__(self, pad=(0, 0)):
        self.pad = tuple(int(v) for v in pad)

    def _node(self, signs, gz, broadcastable):
        if signs.ndim != 4 or gz.ndim != 4 or signs.dtype != 'float32' \
                or gz.dtype != 'float32':
            raise TypeError('%s needs two 4-D float32 tensors' % type(self).__name__)
        return gof.Apply(self, [signs, gz], [T.TensorType('float32', broadcastable)()])


class SignCorrGradWeights(_SignCorrGrad):
    """Theano's ``CorrMM_gradWeights`` (stride 1, padding ``pad``) for an input whose
    entries are +1, -1 or 0, by :func:`binary_net.kernels.sign_conv_grad_weights`.

    ``SignCorrGradWeights(pad)(x, gz)`` is the gradient of ``CorrMM(x, w)`` with
    respect to ``w`` (F, C, kh, kw), the kernel size following from the shapes. The
    products are exact (a +-1 times the three BF16 parts of a float); their float32
    sum runs in another order than Theano's GEMM, the same on any thread count.
    """

    def make_node(self, x, gz):
        x, gz = T.as_tensor_variable(x), T.as_tensor_variable(gz)
        return self._node(x, gz, (gz.broadcastable[1], x.broadcastable[1], False, False))

    def infer_shape(self, node, shapes):
        (_, c, h, w), (_, f, oh, ow) = shapes
        return [(f, c, h + 2 * self.pad[0] - oh + 1, w + 2 * self.pad[1] - ow + 1)]

    def perform(self, node, inputs, outputs):
        x, gz = inputs
        kernel_size = tuple(x.shape[2 + k] + 2 * self.pad[k] - gz.shape[2 + k] + 1
                            for k in range(2))
        outputs[0][0] = kernels.sign_conv_grad_weights(x, gz, kernel_size, self.pad,
                                                       out=outputs[0][0])


class SignCorrGradInputs(_SignCorrGrad):
    """Theano's ``CorrMM_gradInputs`` (stride 1, padding ``pad``) for weights whose
    entries are +1, -1 or 0, by :func:`binary_net.kernels.sign_conv_grad_inputs`.

    ``SignCorrGradInputs(pad)(w, gz)`` is the gradient of ``CorrMM(x, w)`` with
    respect to ``x``; exact products, summed in float32 as for
    :class:`SignCorrGradWeights`.
    """

    def make_node(self, w, gz):
        w, gz = T.as_tensor_variable(w), T.as_tensor_variable(gz)
        return self._node(w, gz, (gz.broadcastable[0], w.broadcastable[1], False, False))

    def infer_shape(self, node, shapes):
        (_, c, kh, kw), (n, _, oh, ow) = shapes
        return [(n, c, oh + kh - 1 - 2 * self.pad[0], ow + kw - 1 - 2 * self.pad[1])]

    def perform(self, node, inputs, outputs):
        w, gz = inputs
        outputs[0][0] = kernels.sign_conv_grad_inputs(w, gz, self.pad, out=outputs[0][0])


def xnor_corr_geometry(op):
    """(pad, stride) if a CorrMM op is a plain symmetric-padded correlation, else None."""
    if op.filter_dilation != (1, 1) or op.num_groups != 1 or op.unshared:
        return None
    border = op.border_mode
    if isinstance(border, tuple) and all(isinstance(b, tuple) for b in border):
        if any(lo != hi for lo, hi in border):
            return None
        pad = tuple(lo for lo, _ in border)
    elif isinstance(border, tuple):
        pad = tuple(border)
    elif border == 'valid':
        pad = (0, 0)
    else:
        return None
    return pad, tuple(op.subsample)
