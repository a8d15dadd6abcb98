"""``mode='xnor'``: folded inference with the binary products on bit-packed kernels.

:class:`XnorContext` is the mode's context (named in :mod:`binary_net.infer.modes`),
for ``FoldedNetwork.predict(X, mode='xnor')`` and ``--mode xnor`` of the evaluation
scripts. It takes no options.

The XNOR ops (:class:`~binary_net.infer.ops.XnorDense`,
:class:`~binary_net.infer.ops.XnorConv`) with a binary input compute their product
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

Fusion: an XNOR dense op runs as one C call (:class:`binary_net.kernels.DenseChain`)
that packs its input and computes its K, the batch norm right after it and, when the
op after that is a binary-input XNOR dense op, that op and its batch norm, and so on
along the chain (a batch of one image then pays one call from Python for all of
them; a batch whose outputs would pass :data:`CHAIN_MAX_BYTES` runs one call per
layer, :meth:`binary_net.kernels.PackedDense.dense_layer`); an XNOR
convolution packs its input's channels with their mean |x| in one C pass (with the
batch norm before it, when there is one) and runs
the scaling, the max pooling and batch norm that follow it in one C pass per chunk
(:func:`binary_net.kernels.conv_epilogue`). When only the scores are wanted
(``keep_outputs`` False, as in ``FoldedNetwork.predict_scores``), that pass also packs
the input of a following XNOR convolution and its mean |x|
(:func:`binary_net.kernels.conv_epilogue_pack`), and the outputs that only the next op
reads are not stored (a chain's z before a batch norm, a convolution's z, pooling and
batch norm before another XNOR convolution): those ops get a :func:`not_computed`
stand-in. The ops computed ahead find their output
in :attr:`XnorContext.prepared` and use it only if they are given the very array it
was computed from, so every op's output (``FoldedNetwork.trace``) is still its own.
The C code performs float mode's float32 operations in numpy's order, so nothing
changes bit for bit.
"""
import numpy as np

from .. import kernels
from .context import FloatContext
from .numerics import conv2d
from .ops import Affine, MaxPool, XnorConv, XnorDense

__all__ = ['XnorContext', 'packed_weights', 'attach_packed', 'dense_chain', 'not_computed',
           'PACKED_KEY']

#: Key of the packed kernel object in an op's cache (see :meth:`Op.cached`).
PACKED_KEY = ('xnor', 'packed')


class XnorContext(FloatContext):
    """``mode='xnor'``: float32 like float mode, binary products on packed kernels."""

    mode = 'xnor'
    dtype = np.float32

    def __init__(self, network):
        super().__init__(network)
        #: op index -> what an earlier op computed for it in the same C call: (its
        #: input, its output) for a batch norm, a pooling or an XNOR dense op of a
        #: chain; (its input, the packed signs, K or mean |x|) for an XNOR op. Used
        #: only if the op is then given that very input.
        self.prepared = {}

    def xnor_dense(self, op, x):
        """``(sign(x) @ W_sign) * K * alpha + b``, with the batch norm after it and the
        XNOR dense layers and batch norms after that (a :class:`binary_net.kernels.
        DenseChain`, see :func:`dense_chain`), in one C call; float mode's arithmetic,
        bit for bit. A small batch pays one call for the whole chain."""
        if not op.binary_input:
            return op.forward(x, self)
        prepared = self.prepared.pop(op.index, None)
        if prepared is not None and prepared[0] is x:
            if len(prepared) == 2:           # computed by the chain of an earlier op
                return prepared[1]
            return self._dense_layer(op, x, prepared[1], prepared[2])
        flat = x.reshape(len(x), -1)
        ops, chain = dense_chain(op, self)
        if len(ops) > 1 and len(x) * chain.bytes_per_row > CHAIN_MAX_BYTES:
            return self._dense_layer(op, x, *kernels.pack_signs_mean_abs(flat, op.scale_input))
        keep_z = self.keep_outputs or len(x) < CHAIN_KEEP_Z_ROWS
        _, K, outputs = chain.run(flat, keep_z=keep_z)
        # ops: [dense, affine, dense, affine, ..., dense(, affine)]; outputs: per dense
        # (z, y, y_packed, y_K), z None where only its batch norm's y was stored (not
        # keep_outputs). Each later op finds its output, for the very input it gets
        # (its own output stays its own: FoldedNetwork.trace).
        if op.scale_input:
            self.intermediate(op, 'K', K)
        if not keep_z:
            stand_ins = op.cached(('xnor', 'chain stand-ins', len(x)), lambda: [
                not_computed((len(x), dense.W_sign.shape[1])) for dense in ops[::2]])
            outputs = [(stand_ins[i] if z is None else z, y, yp, yk)
                       for i, (z, y, yp, yk) in enumerate(outputs)]
        inp = x
        for i, (z, y, _, _) in enumerate(outputs):
            dense, affine = ops[2 * i], ops[2 * i + 1] if 2 * i + 1 < len(ops) else None
            if i:
                if dense.scale_input:
                    self.intermediate(dense, 'K', outputs[i - 1][3])
                self.prepared[dense.index] = (inp, z)
            if affine is not None:
                self.prepared[affine.index] = (z, y)
            inp = y
        return outputs[0][0]

    def _dense_layer(self, op, x, x_packed, K):
        """One XNOR dense op from its packed input (PackedDense.dense_layer), with the
        batch norm after it and the next XNOR dense op's packed input and K."""
        if op.scale_input:
            K = self.intermediate(op, 'K', K)
        affine, nxt = _fusion(op, self)
        scale = offset = None
        if affine is not None:
            scale, offset = self.param(affine, 'scale'), self.param(affine, 'offset')
        z, y, y_packed, y_K = packed_weights(op).dense_layer(
            x_packed, K if op.scale_input else None,
            self.param(op, 'alpha') if op.scale_weights else None, self.param(op, 'b'),
            op.bias_before_scaling, scale, offset, next_packed=nxt is not None,
            next_mean_abs=nxt is not None and nxt.scale_input)
        if affine is not None:
            self.prepared[affine.index] = (z, y)
            if nxt is not None:
                self.prepared[nxt.index] = (y, y_packed, y_K)
        return z

    def xnor_conv(self, op, x):
        """Pack the channels and their mean |x| (one C pass), K by float mode's box filter,
        the product, and (float32(product) * K) * alpha + b, with the max pooling and batch
        norm that follow when the network has them (one C pass per chunk of images)."""
        if not op.binary_input:
            return op.forward(x, self)
        packed = packed_weights(op)
        prepared = self.prepared.pop(op.index, None)
        if prepared is not None and prepared[0] is x:
            x_packed, mean_abs = prepared[1], prepared[2]
        else:
            x_packed, mean_abs = kernels.pack_channels_mean_abs(x, op.scale_input)
        K = None
        if op.scale_input:
            # The float-mode K of XnorConv.forward: the same box filter on the same mean |x|.
            fh, fw = op.W_sign.shape[2:]
            box = np.full((1, 1, fh, fw), 1.0 / (fh * fw), dtype=self.dtype)
            K = self.intermediate(op, 'K', conv2d(mean_abs, box, op.stride, op.pad))
        alpha = self.param(op, 'alpha') if op.scale_weights else None
        b = self.param(op, 'b')
        pool, affine = _conv_fusion(op, self)
        nxt = None if self.keep_outputs else _conv_after(op, pool, affine, self)
        if nxt is not None:
            return self._conv_packing_next(op, x_packed, K, alpha, b, pool, affine, nxt,
                                           packed.output_shape(x.shape))
        scale = offset = None
        if affine is not None:
            scale, offset = self.param(affine, 'scale'), self.param(affine, 'offset')
        shape = packed.output_shape(x.shape)
        z = np.empty(shape, self.dtype)
        pooled = y = None
        if pool is not None:
            ph, pw = pool.pool_size
            pooled = np.empty(shape[:2] + (shape[2] // ph, shape[3] // pw), self.dtype)
        if affine is not None:
            y = np.empty(z.shape if pooled is None else pooled.shape, self.dtype)
        step = max(1, CONV_CHUNK_ELEMENTS // max(1, z[:1].size))
        buffer = np.empty(min(step, len(x)) * z[:1].size, np.int32)   # reused by every chunk
        for start in range(0, len(x), step):
            s = slice(start, start + step)
            product = packed.conv_packed(x_packed[s], out=buffer)   # int32, exact
            kernels.conv_epilogue(product, None if K is None else K[s], alpha, b,
                                  None if pool is None else pool.pool_size, scale, offset,
                                  out=(z[s], None if pooled is None else pooled[s],
                                       None if y is None else y[s]))
        if pool is not None:
            self.prepared[pool.index] = (z, pooled)
        if affine is not None:
            self.prepared[affine.index] = (z if pooled is None else pooled, y)
        return z

    def _conv_packing_next(self, op, x_packed, K, alpha, b, pool, affine, nxt, shape):
        """xnor_conv when only the next XNOR convolution ``nxt`` reads what follows (not
        ``keep_outputs``): the epilogue packs nxt's input and its mean |x| in the same C
        pass (:func:`binary_net.kernels.conv_epilogue_pack`), and the outputs of the
        convolution, its pooling and batch norm are not computed (:func:`not_computed`
        arrays)."""
        conv = packed_weights(op)
        scale = offset = None
        if affine is not None:
            scale, offset = self.param(affine, 'scale'), self.param(affine, 'offset')
        pool_size = None if pool is None else pool.pool_size
        z = _stand_in(op, shape)
        pooled = None if pool is None else _stand_in(
            pool, shape[:2] + (shape[2] // pool_size[0], shape[3] // pool_size[1]))
        y = None if affine is None else _stand_in(affine, z.shape if pooled is None
                                                  else pooled.shape)
        step = max(1, CONV_CHUNK_ELEMENTS // max(1, z[:1].size))
        buffer = np.empty(min(step, len(z)) * z[:1].size, np.int32)   # reused by every chunk
        parts = []
        for start in range(0, len(z), step):
            s = slice(start, start + step)
            product = conv.conv_packed(x_packed[s], out=buffer)   # int32, exact
            parts.append(kernels.conv_epilogue_pack(
                product, None if K is None else K[s], alpha, b, pool_size, scale, offset,
                nxt.scale_input))
        next_packed = np.concatenate([p for p, _ in parts]) if len(parts) > 1 else parts[0][0]
        mean = None
        if nxt.scale_input:
            mean = np.concatenate([m for _, m in parts]) if len(parts) > 1 else parts[0][1]
        last = z
        if pool is not None:
            self.prepared[pool.index] = (z, pooled)
            last = pooled
        if affine is not None:
            self.prepared[affine.index] = (last, y)
            last = y
        self.prepared[nxt.index] = (last, next_packed, mean)
        return z

    def affine(self, op, x):
        """A batch norm: computed already by the XNOR op before it, or, before a binary-input
        XNOR convolution, computed with that convolution's packed input and mean |x| in one
        C pass."""
        ready = self.prepared.pop(op.index, None)
        if ready is not None and ready[0] is x:
            return ready[1]
        nxt = _next_conv(op, self)
        if nxt is None or x.ndim != 4 or x.dtype != np.float32 or x.shape[1] != nxt.W_sign.shape[1]:
            return op.forward(x, self)
        y, packed, mean_abs = kernels.batch_norm_pack_channels(
            x, self.param(op, 'scale'), self.param(op, 'offset'), nxt.scale_input,
            keep_y=self.keep_outputs)
        if y is None:
            y = _stand_in(op, x.shape)
        self.prepared[nxt.index] = (y, packed, mean_abs)
        return y

    def max_pool(self, op, x):
        """The op's output if the XNOR op before it computed it already (batch norm, pooling)."""
        ready = self.prepared.pop(op.index, None)
        if ready is not None and ready[0] is x:
            return ready[1]
        return op.forward(x, self)


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


def _fusion(op, ctx):
    """What a binary-input XNOR dense op computes with it in one C call: ``(affine,
    next_dense)``, the batch norm right after it (or None) and, after that, the next
    XNOR dense op with a binary input (or None), whose packed input and K it then
    prepares. Found once per op."""
    def find():
        ops = ctx.network.ops
        i = op.index
        after = ops[i + 1] if i is not None and i + 1 < len(ops) else None
        if not (isinstance(after, Affine) and after.params['scale'].size == op.W_sign.shape[1]):
            return None, None
        nxt = ops[i + 2] if i + 2 < len(ops) else None
        if isinstance(nxt, XnorDense) and nxt.binary_input:
            return after, nxt
        return after, None
    if not _in_network(op, ctx):
        return None, None
    return op.cached(('xnor', 'fusion'), find)


#: Largest output buffer of a chain of XNOR dense layers run in one call (bytes): a
#: larger batch runs layer by layer, so that each layer's outputs can be freed early.
CHAIN_MAX_BYTES = 64 << 20

#: Batches of fewer rows keep the z of a chain's layers even when only the scores are
#: wanted: storing them costs less than their stand-ins (shipped MNIST model, batch 1,
#: 2-core Xeon, 2026-12-03: 1.1 us of 40 per image more without z; batch 100: 3% less).
CHAIN_KEEP_Z_ROWS = 16


def dense_chain(op, ctx):
    """``(ops, chain)``: the ops a binary-input XNOR dense op computes in one C call
    (``[op, batch norm, XNOR dense, batch norm, ..., XNOR dense(, batch norm)]``, every
    XNOR dense op with a binary input, every batch norm of its size) and their
    :class:`binary_net.kernels.DenseChain`. Found once per op; an op outside
    ``ctx``'s network gets a chain of itself alone."""
    def find():
        ops, run = ctx.network.ops, [op]
        while True:
            last = run[-1]
            after = ops[last.index + 1] if last.index + 1 < len(ops) else None
            if not (isinstance(after, Affine)
                    and after.params['scale'].size == last.W_sign.shape[1]):
                break
            run.append(after)
            nxt = ops[after.index + 1] if after.index + 1 < len(ops) else None
            if not (isinstance(nxt, XnorDense) and nxt.binary_input):
                break
            run.append(nxt)
        return run, make_chain(run)

    def make_chain(run):
        layers = []
        for i in range(0, len(run), 2):
            dense, affine = run[i], run[i + 1] if i + 1 < len(run) else None
            layers.append(dict(
                packed=packed_weights(dense), scale_input=dense.scale_input,
                alpha=ctx.param(dense, 'alpha') if dense.scale_weights else None,
                b=ctx.param(dense, 'b'), bias_before_scaling=dense.bias_before_scaling,
                scale=None if affine is None else ctx.param(affine, 'scale'),
                offset=None if affine is None else ctx.param(affine, 'offset')))
        return kernels.DenseChain(layers)

    if not _in_network(op, ctx):
        return [op], make_chain([op])
    return op.cached(('xnor', 'dense chain'), find)


def _in_network(op, ctx):
    """Whether ``op`` is the op at its index in the network ``ctx`` runs."""
    ops = getattr(getattr(ctx, 'network', None), 'ops', None)
    return (isinstance(ops, list) and op.index is not None
            and op.index < len(ops) and ops[op.index] is op)


def not_computed(shape):
    """The stand-in for an output that xnor mode did not compute (the next op gets what
    it needs from :attr:`XnorContext.prepared`): a read-only float32 array of NaN of
    ``shape`` that takes no memory."""
    return np.broadcast_to(np.float32(np.nan), shape)


def _stand_in(op, shape):
    """:func:`not_computed` for the output of ``op``, one per op and shape (made once:
    a new one costs about 3 us, as much as a layer of a small network at batch 1)."""
    return op.cached(('xnor', 'not computed', shape), lambda: not_computed(shape))


def _conv_after(op, pool, affine, ctx):
    """The binary-input XNOR convolution that reads the last of ``op``, its pooling
    ``pool`` and batch norm ``affine`` (None where absent), or None."""
    def find():
        ops = ctx.network.ops
        i = op.index + 1 + (pool is not None) + (affine is not None)
        nxt = ops[i] if i < len(ops) else None
        if (isinstance(nxt, XnorConv) and nxt.binary_input
                and nxt.W_sign.shape[1] == op.W_sign.shape[0]):
            return nxt
        return None
    if not _in_network(op, ctx):
        return None
    return op.cached(('xnor', 'conv after'), find)


def _next_conv(op, ctx):
    """The binary-input XNOR convolution right after ``op`` in the network, or None."""
    def find():
        ops, i = ctx.network.ops, op.index
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        return nxt if isinstance(nxt, XnorConv) and nxt.binary_input else None
    if not _in_network(op, ctx):
        return None
    return op.cached(('xnor', 'next conv'), find)


#: Output elements per chunk of samples in XNOR convolutions: the int32 product
#: and its scaling stay in cache (L2, L3) between the passes over it, and each
#: product call has work enough to share out. CIFAR-10 net, batch 16, 2-core Xeon,
#: 2026-12-03, images/s at 1 << 18 / 20 / 22: AVX2 path 446 / 485 / 474 on one
#: thread, 712 / 790 / 777 on two; AVX-512 807 / 858 / 828 and 1118 / 1214 / 1124.
CONV_CHUNK_ELEMENTS = 1 << 20


def _conv_fusion(op, ctx):
    """``(pool, affine)``: the max pooling and/or batch norm right after a binary-input
    XNOR convolution that it computes in the same C pass (None where absent)."""
    def find():
        ops, i = ctx.network.ops, op.index
        F = op.W_sign.shape[0]
        nxt = ops[i + 1:i + 3]
        pool = nxt[0] if nxt and isinstance(nxt[0], MaxPool) else None
        rest = nxt[1:] if pool is not None else nxt[:1]
        affine = rest[0] if rest and isinstance(rest[0], Affine) else None
        if affine is not None and affine.params['scale'].size != F:
            affine = None
        return pool, affine
    if not _in_network(op, ctx):
        return None, None
    return op.cached(('xnor', 'conv fusion'), find)
