"""The folded network: a list of ops run in a mode, calibrated once for fixed point.

:class:`FoldedNetwork` runs its ops in order, each through the context of the
mode asked for (:func:`binary_net.infer.modes.make_context`), and holds the
calibrated activation ranges that fixed mode and the integer path need.
:func:`binary_net.infer.fold.fold` builds one from a network description.

Batches
-------
A sample's scores never depend on the batch it comes in (its size, the sample's
position, the other samples), bit for bit, in every mode. A BLAS float product
``X @ W`` would not give that: OpenBLAS's float32 kernels for Haswell and Zen
(AVX2) round a row's sums differently with the matrix's row count and the row's
position in it. So every product that rounds is computed one sample at a time,
as a product of the same shape whatever the batch: full-precision convolutions
and the XNOR ops' K (a box filter) one GEMM per sample (:func:`conv2d`), dense
layers with a real-valued input one matrix-vector product per sample
(:func:`matmul_rows`), both in one numpy call. Binary products (sums of +-1 and
0 terms) are exact in any order and stay batched; everything else is
elementwise or a per-sample reduction. Calibration ranges, the maximum over
samples, therefore do not depend on the calibration batch size or the images'
order either. The scores do depend, within float32 rounding, on the BLAS build,
its kernel family (``OPENBLAS_CORETYPE``) and its thread count, which choose
the summation order: another machine may give scores a few ulps apart, and so
a calibrated range at most an ulp apart (a format changes only if that crosses
a power of two).
"""
import numpy as np

from .context import CalibrationContext, FloatContext
from .fixed import FixedContext
from .modes import make_context
from .numerics import fixed_format

__all__ = ['FoldedNetwork']


class FoldedNetwork:
    """A folded network: a sequence of :class:`Op` applied in order.

    Behaves as a read-only list of ops (``len``, indexing, iteration).

    Parameters
    ----------
    ops : list of :class:`Op`
    input_shape : tuple
        Shape of one input sample, e.g. ``(1, 28, 28)``.
    name : str or None
        The spec's name ('mnist', ...).

    Attributes
    ----------
    calibration : dict or None
        Set by :meth:`calibrate`: ``{'size': number of calibration images,
        'ranges': [{'out': max |output|, 'K': max |K|}, ...] one dict per op}``.
        Plain floats, so it can be stored as JSON and assigned back.
    """

    def __init__(self, ops, input_shape, name=None):
        self.ops = list(ops)
        for i, op in enumerate(self.ops):
            op.index = i
        self.input_shape = tuple(input_shape)
        self.name = name
        self.calibration = None
        # How the images were scaled to [-1, 1] in training: 'default' (this
        # package) or 'original' (the original's; see datasets.scale_pixels).
        self.pixel_scaling = 'default'
        # The class numbering of the labels it was trained on: 'default', or
        # 'svhn_mat_minus_one' (the original's SVHN: .mat label - 1, digit 0 -> 9).
        self.labels = 'default'

    def __len__(self):
        return len(self.ops)

    def __getitem__(self, i):
        return self.ops[i]

    def __iter__(self):
        return iter(self.ops)

    def __repr__(self):
        return 'FoldedNetwork(%s: %s)' % (self.name, ', '.join(op.describe() for op in self.ops))

    def describe(self):
        """One line per op."""
        return '\n'.join('%2d  %s%s' % (op.index, op.describe(),
                                        '' if op.layer is None else '  (layer %d)' % op.layer)
                         for op in self.ops)

    def _check_input(self, X):
        X = np.asarray(X)
        if not np.issubdtype(X.dtype, np.floating):
            raise ValueError('expected float images in [-1, 1] (datasets.to_unit_range), '
                             'got %s' % X.dtype)
        if X.ndim != len(self.input_shape) + 1 or X.shape[1:] != self.input_shape:
            raise ValueError('expected inputs shaped (N,) + %s, got %s'
                             % (self.input_shape, X.shape))
        return X

    def _run(self, X, ctx, batch_size):
        X = self._check_input(X)
        batch_size = len(X) if not batch_size else int(batch_size)
        outputs = []
        for start in range(0, len(X), max(1, batch_size)):
            x = ctx.network_input(X[start:start + batch_size])
            for op in self.ops:
                x = ctx.output(op, op(x, ctx))
            outputs.append(x)
        if not outputs:
            return np.empty((0,) + self.output_shape(), dtype=ctx.dtype)
        return np.concatenate(outputs)

    def output_shape(self):
        """Shape of one sample's scores, found by running a zero sample in float mode."""
        if not hasattr(self, '_output_shape'):
            x = np.zeros((1,) + self.input_shape, np.float32)
            ctx = FloatContext(self)
            for op in self.ops:
                x = op(x, ctx)
            self._output_shape = x.shape[1:]
        return self._output_shape

    def calibrate(self, X_calib, batch_size=500):
        """Record static activation ranges for fixed mode from a float run.

        Parameters
        ----------
        X_calib : float ndarray ``(N,) + input_shape`` in [-1, 1]
            A fixed calibration set, e.g. the first 1000 training images.
        batch_size : int
            Only bounds memory; the ranges do not depend on it, nor on the
            images' order, bit for bit (every sample is computed on its own).

        Returns
        -------
        self, with :attr:`calibration` set (it replaces any earlier calibration).
        """
        X_calib = self._check_input(X_calib)
        if len(X_calib) == 0:
            raise ValueError('the calibration set is empty')
        ctx = CalibrationContext(self)
        self._run(X_calib, ctx, batch_size)
        self.calibration = {'size': int(len(X_calib)), 'ranges': ctx.ranges}
        return self

    def predict_scores(self, X, mode='float', batch_size=None, **options):
        """The network's output (class scores) for a batch of images.

        Parameters
        ----------
        X : float ndarray ``(N,) + input_shape``, values in [-1, 1]
        mode : str
            'float', 'fixed', 'xnor' or 'int' (see :mod:`binary_net.infer`), or a mode
            added with :func:`~binary_net.infer.modes.register_mode`; anything else
            raises ValueError.
        batch_size : int or None
            Images per step (None: all at once). Results do not depend on it,
            bit for bit (see "Batches" in the module docstring).
        **options
            The mode's options; for 'fixed': ``preset`` and the widths and rounding
            of :class:`~binary_net.infer.fixed.FixedPointConfig` (defaults
            :data:`~binary_net.infer.fixed.FIXED_DEFAULTS`).

        Returns
        -------
        ndarray ``(N, classes)``: float32 in float mode, float64 in fixed mode.
        """
        ctx = make_context(self, mode, options)
        ctx.keep_outputs = False        # only the scores are returned
        return self._run(X, ctx, batch_size)

    def predict(self, X, mode='float', batch_size=None, **options):
        """Predicted labels: the argmax of :meth:`predict_scores` (int64, shape (N,))."""
        scores = self.predict_scores(X, mode, batch_size, **options)
        return np.argmax(scores.reshape(len(scores), -1), axis=1).astype(np.int64)

    def trace(self, X, mode='float', **options):
        """Every op's output for one batch, for comparing modes layer by layer.

        Parameters are as for :meth:`predict_scores` (one batch, no batch_size).

        Returns
        -------
        list of ndarray, one per op (``trace(X)[-1]`` is ``predict_scores(X)``).
        """
        X = self._check_input(X)
        ctx = make_context(self, mode, options)
        x, outputs = ctx.network_input(X), []
        for op in self.ops:
            x = ctx.output(op, op(x, ctx))
            outputs.append(x)
        return outputs

    def fixed_point_formats(self, **options):
        """The fixed-point format of every quantized tensor, for export to integer code.

        Parameters
        ----------
        **options : the fixed-mode options (see :meth:`predict_scores`).

        Returns
        -------
        list of dict, one per op: ``{'op': kind, 'out': (bits, frac) or None,
        'K': (bits, frac) (XNOR ops with K), 'params': {name: (bits, frac)}}``.
        """
        ctx = FixedContext(self, **options)
        c = ctx.config
        formats = []
        for op, ranges in zip(self.ops, ctx.ranges):
            entry = {'op': op.kind, 'params': {}}
            entry['out'] = ((c.act_bits, fixed_format(ranges.get('out', 0.0), c.act_bits)[1])
                            if op.quantize_output else None)
            if 'K' in ranges:
                entry['K'] = (c.act_bits, fixed_format(ranges['K'], c.act_bits)[1])
            for name, value in op.params.items():
                peak = np.max(np.abs(value)) if value.size else 0.0
                entry['params'][name] = (c.param_bits, fixed_format(peak, c.param_bits)[1])
            formats.append(entry)
        return formats
