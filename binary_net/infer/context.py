"""Mode contexts: what an op computes in a mode, and the float context every mode builds on.

An op never decides how it is computed: :meth:`binary_net.infer.ops.Op.__call__`
hands itself to the context of the mode it runs in, ``ctx.<op kind>(op, x)``
(``ctx.dense(op, x)``, ``ctx.xnor_conv(op, x)``, ...). :class:`FloatContext`
answers each with the op's own arithmetic (:meth:`~binary_net.infer.ops.Op.forward`),
written once for every mode through the context's hooks (dtype, parameter and
activation quantization), so float, calibration and fixed mode differ only in
the hooks. The other modes override the op methods they compute differently:
:mod:`~binary_net.infer.xnor` (packed kernels), :mod:`~binary_net.infer.integer`
(integers), :mod:`~binary_net.infer.fixed_original` (the original's fixed point).
The modes are named in one place, :mod:`binary_net.infer.modes`.
"""
import numpy as np

__all__ = ['FloatContext', 'CalibrationContext']


class FloatContext:
    """``mode='float'``: float32, no quantization. The base of every context.

    The hooks a generic :meth:`Op.forward` calls:

    * ``dtype``: the arithmetic's dtype;
    * ``network_input(X)``: the first op's input;
    * ``param(op, name)``: a real-valued parameter of ``op`` as used in the arithmetic;
    * ``binary(op, name)``: a +-1 array (exact in every mode) in ``dtype``;
    * ``intermediate(op, key, x)``: a named value inside an op (the XNOR ops' K);
    * ``output(op, x)``: what the next op receives.

    The op methods, one per op kind (``xnor_dense``, ``xnor_conv``, ``conv``,
    ``dense``, ``affine``, ``max_pool``, ``rectify``, ``softmax``), each
    ``(op, x) -> output``, run the op's generic arithmetic (:meth:`forward`). A
    context with ``generic = False`` must override every one of them: the generic
    arithmetic then raises a ValueError naming the op and the mode.

    ``keep_outputs`` is True where every op's output is used (``FoldedNetwork.trace``);
    :meth:`FoldedNetwork.predict_scores` sets it to False, and a mode may then leave
    unstored an output that only the next op reads, if that op can do without it
    (xnor mode: a batch norm or pooling before an XNOR convolution, which gets its
    packed input instead). The scores are the same.
    """

    mode = 'float'
    dtype = np.float32
    generic = True  # op methods not overridden may run the op's generic forward()
    keep_outputs = True

    def __init__(self, network):
        self.network = network

    def network_input(self, X):
        return np.asarray(X, dtype=self.dtype)

    def param(self, op, name):
        return op.cached(('float', name), lambda: op.params[name].astype(self.dtype))

    def binary(self, op, name):
        return op.cached((np.dtype(self.dtype).name, name),
                         lambda: getattr(op, name).astype(self.dtype))

    def intermediate(self, op, key, x):
        return x

    def output(self, op, x):
        return x

    def forward(self, op, x):
        """The op's generic arithmetic (:meth:`Op.forward`) through this context's hooks."""
        if not self.generic:
            raise ValueError('%s op does not support mode %r' % (op.kind, self.mode))
        return op.forward(x, self)

    # Every op kind (the op methods) runs the op's generic arithmetic; modes override
    # the kinds they compute otherwise.
    xnor_dense = xnor_conv = conv = dense = affine = max_pool = rectify = softmax = forward


class CalibrationContext(FloatContext):
    """Float arithmetic that records the largest magnitude of every op's output and intermediates."""

    def __init__(self, network):
        super().__init__(network)
        self.ranges = [dict() for _ in network.ops]

    def _record(self, op, key, x):
        if x.size:
            peak = float(np.max(np.abs(x)))
            self.ranges[op.index][key] = max(self.ranges[op.index].get(key, 0.0), peak)

    def intermediate(self, op, key, x):
        self._record(op, key, x)
        return x

    def output(self, op, x):
        self._record(op, 'out', x)
        return x
