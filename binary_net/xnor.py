"""``mode='xnor'``: folded inference with the binary products on bit-packed kernels.

Importing this module (which :mod:`binary_net.inference` does) registers the mode,
so ``FoldedNetwork.predict(X, mode='xnor')`` and ``--mode xnor`` of the evaluation
scripts work. It takes no options.

The XNOR ops (:class:`~binary_net.inference.XnorDense`,
:class:`~binary_net.inference.XnorConv`) with a binary input compute their product
``sign(x) (*) W_sign`` with :mod:`binary_net.kernels` (XOR and population count on
signs packed 64 to a word) as an exact int32 result; that is converted to float32
and then scaled exactly as in float mode: the same K (computed by the same numpy
expressions), then ``alpha``, then ``b``, in float32 and in the same order. Float
mode computes the same product in float32, which is exact for sums of +-1 terms up
to 2**24, so the scores of the two modes are bit-identical, not just the
predictions. Every other op (full-precision convolution and dense layers, batch
norm, pooling, softmax) and XNOR ops with a real-valued input run the float-mode
code.

The weights are packed once per op, at first use (or when a packed model file is
loaded, see :func:`binary_net.modelfile.load_packed`), and cached on the op; each
batch packs only its activations. The kernels use :func:`binary_net.kernels.
set_num_threads` threads.
"""
import numpy as np

from . import kernels
from .inference import FloatContext, XnorConv, XnorDense, conv2d, register_mode

__all__ = ['XnorContext', 'packed_weights', 'attach_packed', 'PACKED_KEY']

#: Key of the packed kernel object in an op's cache (see :meth:`Op.cached`).
PACKED_KEY = ('xnor', 'packed')


class XnorContext(FloatContext):
    """``mode='xnor'``: float32 like float mode, binary products on packed kernels."""

    mode = 'xnor'
    dtype = np.float32


def packed_weights(op):
    """The op's :class:`~binary_net.kernels.PackedDense` or :class:`~binary_net.kernels.
    PackedConv2D`, built from ``op.W_sign`` at the first call and cached on the op."""
    if isinstance(op, XnorDense):
        return op.cached(PACKED_KEY, lambda: kernels.PackedDense(op.W_sign))
    if isinstance(op, XnorConv):
        return op.cached(PACKED_KEY,
                         lambda: kernels.PackedConv2D(op.W_sign, op.stride, op.pad))
    raise TypeError('only XNOR ops have packed weights, not %s' % op.kind)


def attach_packed(op, words):
    """Give an XNOR op its packed weights from stored words (a packed model file), so
    that xnor mode never packs them; ``words`` are laid out as the ``packed``
    attribute of :class:`~binary_net.kernels.PackedDense` (``(units, ceil(n_in / 64))``)
    or :class:`~binary_net.kernels.PackedConv2D` (``(F, fh, fw, ceil(C / 64))``)."""
    words = np.asarray(words).astype(np.uint64, copy=False)
    if isinstance(op, XnorDense):
        packed = kernels.PackedDense.from_packed(words, op.W_sign.shape[0])
    elif isinstance(op, XnorConv):
        packed = kernels.PackedConv2D.from_packed(words, op.W_sign.shape, op.stride, op.pad)
    else:
        raise TypeError('only XNOR ops have packed weights, not %s' % op.kind)
    op._cache[PACKED_KEY] = packed
    return packed


def _dense_forward_xnor(self, x, ctx):
    if not self.binary_input:
        return self.forward(x, ctx)
    x = x.reshape(len(x), -1)
    product = packed_weights(self).matmul_signs(x)   # int32, exact
    # From here on the float-mode arithmetic of XnorDense.forward, in the same
    # order and dtype; only the int32 -> float32 conversion (exact) is fused into
    # the first operation.
    b = ctx.param(self, 'b')
    K = None
    if self.scale_input:
        K = ctx.intermediate(self, 'K', np.mean(np.abs(x), axis=1, keepdims=True,
                                                dtype=ctx.dtype))
    out = np.empty(product.shape, ctx.dtype)
    if self.bias_before_scaling:
        np.add(product, b, out=out, dtype=ctx.dtype)
        if K is not None:
            out *= K
    elif K is not None:
        np.multiply(product, K, out=out, dtype=ctx.dtype)
    else:
        out[...] = product
    if self.scale_weights:
        out *= ctx.param(self, 'alpha')
    if not self.bias_before_scaling:
        out += b
    return out


def _bias_shape(vector):
    return vector.reshape(1, -1, 1, 1)


#: Output elements per chunk of samples in XNOR convolutions: the int32 product
#: and its scaling stay in cache between the passes over it.
CONV_CHUNK_ELEMENTS = 1 << 18


def _mean_abs(x, dtype):
    """``np.mean(np.abs(x), axis=1, keepdims=True, dtype=dtype)``, bit for bit, computed
    a few samples at a time so that ``abs(x)`` stays in cache (numpy sums the channel
    axis of each sample in the same order either way)."""
    if len(x) == 0:
        return np.mean(np.abs(x), axis=1, keepdims=True, dtype=dtype)
    step = max(1, CONV_CHUNK_ELEMENTS // max(1, x[:1].size))
    out = np.empty((len(x), 1) + x.shape[2:], dtype)
    buffer = np.empty((min(step, len(x)),) + x.shape[1:], x.dtype)
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        np.mean(np.abs(chunk, out=buffer[:len(chunk)]), axis=1, keepdims=True, dtype=dtype,
                out=out[start:start + step])
    return out


def _conv_forward_xnor(self, x, ctx):
    if not self.binary_input:
        return self.forward(x, ctx)
    packed = packed_weights(self)
    K = None
    if self.scale_input:
        # The float-mode K of XnorConv.forward, computed the same way on the same batch.
        fh, fw = self.W_sign.shape[2:]
        box = np.full((1, 1, fh, fw), 1.0 / (fh * fw), dtype=ctx.dtype)
        K = ctx.intermediate(self, 'K', conv2d(_mean_abs(x, ctx.dtype), box, self.stride,
                                               self.pad))
    alpha = _bias_shape(ctx.param(self, 'alpha')) if self.scale_weights else None
    b = _bias_shape(ctx.param(self, 'b'))
    out = np.empty(packed.output_shape(x.shape), ctx.dtype)
    step = max(1, CONV_CHUNK_ELEMENTS // max(1, out[:1].size))
    for start in range(0, len(x), step):
        stop = start + step
        product = packed.conv_signs(x[start:stop])   # int32, exact
        chunk = out[start:stop]
        # The float-mode arithmetic: (float32(product) * K) * alpha + b.
        if K is not None:
            np.multiply(product, K[start:stop], out=chunk, dtype=ctx.dtype)
        else:
            chunk[...] = product
        if alpha is not None:
            chunk *= alpha
        chunk += b
    return out


XnorDense.forward_xnor = _dense_forward_xnor
XnorConv.forward_xnor = _conv_forward_xnor
register_mode('xnor', XnorContext)
