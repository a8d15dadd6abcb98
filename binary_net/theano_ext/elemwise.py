"""The elementwise C code generator: :class:`FastElemwise`, a vectorized OpenMP loop.

Part of :mod:`binary_net.theano_ext`. Theano's own elementwise loop reads broadcast
scalars through pointers that may alias the output, so gcc does not vectorize it.
:class:`FastElemwise` generates, for one fused ``Elemwise`` node, a flat
``omp parallel for simd`` loop around the scalar op's own C code (so every element
is computed by the same operations in the same order); the shared support code
(output reuse, thread counts) comes from ``csrc/theano_ext/support.c``. The rewrite
:class:`~binary_net.theano_ext.rewrites.FastElemwiseRewrite` applies it where
:func:`fast_elemwise_eligible` says it can.
"""
import numpy as np
import theano.scalar as ts
import theano.tensor as T
from theano import gof
from theano.tensor.elemwise import Elemwise

from .cop import C_VERSION, FLOAT_DTYPES, FusedCOp
from .scalar import vectorizable

__all__ = ['FastElemwise', 'fast_elemwise_eligible', 'broadcast_groups']


class FastElemwise(FusedCOp):
    """A Theano ``Elemwise`` run as one flat, vectorized OpenMP loop.

    For elementwise nodes whose operands are arrays of the output's shape or
    broadcast scalars. Theano's own loop reads broadcast scalars through
    pointers that may alias the output, so gcc does not vectorize it (the
    fused Adam + clip update of a binary layer runs 3x slower than the float
    layer's, for that reason alone); here the scalars are loaded once, the
    arrays are flattened (C-contiguous), and the loop is ``omp parallel for
    simd``. The per-element code is the scalar op's own C code, so every
    element is computed by the same operations in the same order. In-place
    patterns are kept.

    With ``abs_sum_of=q`` (a matrix output ``q``) it also returns the column
    sums of ``|output q|``, accumulated in float64 row after row, as
    :class:`AbsSum` (axis 0) would compute them in a second pass: the binary
    layers' clipped weight update and its ``xalpha`` refresh in one pass.

    Parameters
    ----------
    elemwise : theano.tensor.Elemwise
        The op it replaces.
    abs_sum_of : int or None
    """

    __props__ = ('elemwise', 'abs_sum_of')

    def __init__(self, elemwise, abs_sum_of=None):
        FusedCOp.__init__(self)     # the shared support code; the C is generated below
        self.elemwise = vectorizable(elemwise)     # the same numbers, C that vectorizes
        self.abs_sum_of = abs_sum_of
        self.destroy_map = {out: [inp] for out, inp in elemwise.inplace_pattern.items()}

    def __str__(self):
        if self.abs_sum_of is None:
            return 'FastElemwise{%s}' % self.elemwise
        return 'FastElemwise{%s, abs_sum_of=%d}' % (self.elemwise, self.abs_sum_of)

    def make_node(self, *inputs):
        node = self.elemwise.make_node(*inputs)
        outputs = [o.type() for o in node.outputs]
        if self.abs_sum_of is not None:
            summed = node.outputs[self.abs_sum_of]
            if summed.ndim != 2 or summed.dtype not in FLOAT_DTYPES:
                raise TypeError('abs_sum_of needs a float matrix output, got %s' % summed.type)
            outputs.append(T.TensorType(summed.dtype, (summed.broadcastable[1],))())
        return gof.Apply(self, node.inputs, outputs)

    def _elemwise_node(self, node):
        if not hasattr(node.tag, 'elemwise_node'):
            node.tag.elemwise_node = self.elemwise.make_node(*node.inputs)
        return node.tag.elemwise_node

    def _elemwise_outputs(self, node):
        return node.outputs if self.abs_sum_of is None else node.outputs[:-1]

    def perform(self, node, inputs, outputs):
        enode = self._elemwise_node(node)
        self.elemwise.prepare_node(enode, None, None, 'py')
        self.elemwise.perform(enode, inputs, outputs[:len(enode.outputs)])
        if self.abs_sum_of is not None:
            value = outputs[self.abs_sum_of][0]
            outputs[-1][0] = np.abs(value).sum(axis=0, dtype=np.float64).astype(value.dtype)

    def infer_shape(self, node, shapes):
        out_shapes = self.elemwise.infer_shape(self._elemwise_node(node), shapes)
        if self.abs_sum_of is not None:
            out_shapes = list(out_shapes) + [(out_shapes[self.abs_sum_of][1],)]
        return out_shapes

    def _scalar_node(self, node):
        fake = gof.Apply(self.elemwise.scalar_op,
                         [ts.get_scalar_type(dtype=i.type.dtype).make_variable()
                          for i in node.inputs],
                         [ts.get_scalar_type(dtype=o.type.dtype).make_variable()
                          for o in self._elemwise_outputs(node)])
        self.elemwise.scalar_op.prepare_node(fake, None, None, 'c')
        return fake

    def task_code(self, node, name, inames, onames, fail):
        return self.elemwise.scalar_op.c_code(
            self._scalar_node(node), name + '_scalar_', ['%s_i' % n for n in inames],
            ['%s_i' % n for n in onames], {'fail': fail})

    def _scalar_part(self, method, *args):
        """What the scalar op's ``c_*`` method returns, or '' / [] if it has none."""
        try:
            return getattr(self.elemwise.scalar_op, method)(*args)
        except gof.utils.MethodNotDefined:
            return '' if method.startswith('c_support') else []

    def c_support_code(self):
        return FusedCOp.c_support_code(self) + '\n' + self._scalar_part('c_support_code')

    def c_support_code_apply(self, node, name):
        return self._scalar_part('c_support_code_apply', self._scalar_node(node),
                                 name + '_scalar_')

    def c_headers(self):
        return FusedCOp.c_headers(self) + list(self._scalar_part('c_headers'))

    def c_compile_args(self):
        return (FusedCOp.c_compile_args(self) + ['-fno-math-errno']
                + list(self._scalar_part('c_compile_args')))

    def c_libraries(self):
        return FusedCOp.c_libraries(self) + list(self._scalar_part('c_libraries'))

    def c_code_cache_version_apply(self, node):
        version = self.elemwise.scalar_op.c_code_cache_version_apply(self._scalar_node(node))
        if not version:
            return ()
        return (4, C_VERSION, version, tuple(i.type.dtype for i in node.inputs),
                tuple(o.type.dtype for o in node.outputs))

    def c_code(self, node, name, inames, onames, sub):
        fail = sub['fail']
        sum_name = None
        if self.abs_sum_of is not None:
            onames, sum_name = list(onames[:-1]), onames[-1]
        scalar = [all(i.broadcastable) for i in node.inputs]
        ctype = lambda v: 'npy_' + v.type.dtype  # noqa: E731
        num = len(node.inputs)
        nd = node.outputs[0].ndim
        arrays = [k for k in range(num) if not scalar[k]]
        groups = broadcast_groups(node)
        lines = ['{', 'PyArrayObject* bn_c[%d] = {0};' % num]
        cleanup = 'for (int k = 0; k < %d; ++k) Py_XDECREF(bn_c[k]);' % num
        on_fail = '{ %s %s }' % (cleanup, fail)
        for k in arrays:
            lines.append('bn_c[%d] = PyArray_GETCONTIGUOUS(%s); if (!bn_c[%d]) %s'
                         % (k, inames[k], k, on_fail))
        # The output's shape: each dimension from an input that does not broadcast
        # there; every other such input must agree (Theano's own check).
        lines.append('npy_intp bn_dims[%d];' % max(nd, 1))
        for d in range(nd):
            owners = [k for k in arrays if not node.inputs[k].broadcastable[d]]
            lines.append('bn_dims[%d] = %s;' % (d, 'PyArray_DIMS(bn_c[%d])[%d]' % (owners[0], d)
                                                if owners else '1'))
            for k in owners[1:]:
                lines.append(
                    'if (PyArray_DIMS(bn_c[{k}])[{d}] != bn_dims[{d}]) {{ PyErr_SetString('
                    'PyExc_ValueError, "FastElemwise: input shapes differ"); {f} }}'
                    .format(k=k, d=d, f=on_fail))
        lines.append('int bn_nd = %d;' % nd)
        for k, iname in enumerate(inames):
            if scalar[k]:
                lines.append('if (PyArray_SIZE(%s) != 1) { PyErr_SetString(PyExc_ValueError, '
                             '"FastElemwise: broadcast input of size != 1"); %s }'
                             % (iname, on_fail))
        for o, oname in enumerate(onames):
            if o in self.destroy_map:
                k = self.destroy_map[o][0]
                lines.append('Py_XDECREF(%s); %s = bn_c[%d]; Py_INCREF(%s);'
                             % (oname, oname, k, oname))
            else:
                typenum = 'NPY_' + node.outputs[o].dtype.upper()
                lines.append('if (%s) { for (int k = 0; k < %d; ++k) if (bn_c[k] == %s) '
                             '{ Py_DECREF(%s); %s = NULL; break; } }'
                             % (oname, num, oname, oname, oname))
                lines.append('if (bn_prepare_output(&%s, bn_nd, bn_dims, %s)) %s'
                             % (oname, typenum, on_fail))
        lines.append('npy_intp bn_n = PyArray_SIZE(%s);' % onames[0])
        # each input variable once (a node may read one variable twice)
        unique = [(k, iname) for k, iname in enumerate(inames) if iname not in inames[:k]]
        for k, iname in unique:
            t = ctype(node.inputs[k])
            if scalar[k]:
                lines.append('const %s %s_s = ((%s*)PyArray_DATA(%s))[0];' % (t, iname, t, iname))
            else:
                lines.append('const %s* %s_p = (const %s*)PyArray_DATA(bn_c[%d]);'
                             % (t, iname, t, k))
        for o, oname in enumerate(onames):
            t = ctype(node.outputs[o])
            lines.append('%s* %s_p = (%s*)PyArray_DATA(%s);' % (t, oname, t, oname))
        lines.append('int bn_threads = bn_threads_for(bn_n);')
        if len(groups) > 1:
            lines.extend(self._broadcast_loop(node, name, inames, onames, fail, unique, groups))
            lines.append(cleanup)
            lines.append('}')
            return '\n'.join(lines)
        body = []
        for k, iname in unique:
            t = ctype(node.inputs[k])
            body.append('    %s %s_i = %s;' % (t, iname, ('%s_s' % iname) if scalar[k]
                                               else '%s_p[bn_i]' % iname))
        body.extend(self._body_end(node, name, inames, onames, fail, '%s_p[bn_i]'))
        if sum_name is None:
            lines.append('#pragma omp parallel for simd schedule(dynamic, 16384) '
                         'num_threads(bn_threads)')
            lines.append('for (npy_intp bn_i = 0; bn_i < bn_n; ++bn_i) {')
            lines.extend(body)
            lines.append('}')
        else:
            # Column blocks (as bn_colsum_*), rows in order, |output| summed in double.
            t = ctype(node.outputs[-1])
            summed = onames[self.abs_sum_of]
            lines.append("""
npy_intp bn_rows = bn_dims[0], bn_cols = bn_dims[1];
npy_intp bn_sum_dims[1] = {bn_cols};
if (bn_prepare_output(&%(s)s, 1, bn_sum_dims, %(typenum)s)) %(on_fail)s
%(t)s* bn_sum_p = (%(t)s*)PyArray_DATA(%(s)s);
npy_intp bn_width = ((bn_cols + bn_threads - 1) / bn_threads + 15) & ~((npy_intp)15);
if (bn_width > BN_COL_BLOCK) bn_width = BN_COL_BLOCK;
if (bn_width < 64) bn_width = 64;
npy_intp bn_blocks = (bn_cols + bn_width - 1) / bn_width, bn_b;
#pragma omp parallel for schedule(dynamic, 1) num_threads(bn_threads)
for (bn_b = 0; bn_b < bn_blocks; ++bn_b) {
  npy_intp bn_cb = bn_b * bn_width;
  npy_intp bn_w = bn_cols - bn_cb < bn_width ? bn_cols - bn_cb : bn_width;
  double bn_acc[BN_COL_BLOCK];
  for (npy_intp j = 0; j < bn_w; ++j) bn_acc[j] = 0.0;
  for (npy_intp bn_r = 0; bn_r < bn_rows; ++bn_r) {
    npy_intp bn_base = bn_r * bn_cols + bn_cb;
    #pragma omp simd
    for (npy_intp bn_j = 0; bn_j < bn_w; ++bn_j) {
      npy_intp bn_i = bn_base + bn_j;
""" % dict(s=sum_name, typenum='NPY_' + node.outputs[-1].dtype.upper(), on_fail=on_fail,
           t=t))
            lines.extend(body)
            lines.append('      bn_acc[bn_j] += fabs((double)%s_i);' % summed)
            lines.append("""    }
  }
  for (npy_intp j = 0; j < bn_w; ++j) bn_sum_p[bn_cb + j] = (%s)bn_acc[j];
}""" % t)
        lines.append(cleanup)
        lines.append('}')
        return '\n'.join(lines)

    def _body_end(self, node, name, inames, onames, fail, store):
        """The scalar op's code for one element and the stores of its outputs
        (``store % output name``: where an output element goes)."""
        body = ['    %s %s_i;' % ('npy_' + node.outputs[o].type.dtype, oname)
                for o, oname in enumerate(onames)]
        body.append('    {')
        body.append(self.task_code(node, name, inames, onames, fail))
        body.append('    }')
        body.extend('    %s = %s_i;' % (store % oname, oname) for oname in onames)
        return body

    def _broadcast_loop(self, node, name, inames, onames, fail, unique, groups):
        """The loop over an output some of whose inputs broadcast along some axes.

        The output's axes form ``groups`` of consecutive axes along which the same
        inputs broadcast; the last group is the inner, vectorized loop, the others
        one flat OpenMP loop. An input's offset steps by its stride in each group,
        0 where it broadcasts (an input that broadcasts along the inner group is
        loaded once per inner loop).
        """
        ng = len(groups)
        lines = ['npy_intp bn_gs[%d];' % ng]
        for g, (axes, _) in enumerate(groups):
            lines.append('bn_gs[%d] = %s;' % (g, ' * '.join('bn_dims[%d]' % d for d in axes)))
        lines.append('npy_intp bn_outer = %s, bn_inner = bn_gs[%d];'
                     % (' * '.join('bn_gs[%d]' % g for g in range(ng - 1)), ng - 1))
        arrays = [(k, iname) for k, iname in unique if not all(node.inputs[k].broadcastable)]
        for k, iname in arrays:
            # stride of input k along group g: the sizes of the later groups it spans
            for g in range(ng - 1):
                if groups[g][1][k]:
                    lines.append('const npy_intp %s_st%d = 0;' % (iname, g))
                else:
                    later = [str(1)] + ['bn_gs[%d]' % h for h in range(g + 1, ng)
                                        if not groups[h][1][k]]
                    lines.append('const npy_intp %s_st%d = %s;' % (iname, g, ' * '.join(later)))
        lines.append('#pragma omp parallel for schedule(static) num_threads(bn_threads)')
        lines.append('for (npy_intp bn_o = 0; bn_o < bn_outer; ++bn_o) {')
        lines.append('  npy_intp bn_rest = bn_o, bn_x;')
        for k, iname in arrays:
            lines.append('  npy_intp %s_off = 0;' % iname)
        for g in reversed(range(ng - 1)):
            lines.append('  bn_x = bn_rest %% bn_gs[%d]; bn_rest /= bn_gs[%d];' % (g, g))
            for k, iname in arrays:
                if not groups[g][1][k]:
                    lines.append('  %s_off += bn_x * %s_st%d;' % (iname, iname, g))
        inner_broadcast = groups[-1][1]
        for k, iname in arrays:
            t = 'npy_' + node.inputs[k].type.dtype
            if inner_broadcast[k]:
                lines.append('  const %s %s_b = %s_p[%s_off];' % (t, iname, iname, iname))
            else:
                lines.append('  const %s* %s_q = %s_p + %s_off;' % (t, iname, iname, iname))
        for o, oname in enumerate(onames):
            lines.append('  npy_%s* %s_p_o = %s_p + bn_o * bn_inner;'
                         % (node.outputs[o].type.dtype, oname, oname))
        lines.append('  #pragma omp simd')
        lines.append('  for (npy_intp bn_j = 0; bn_j < bn_inner; ++bn_j) {')
        for k, iname in unique:
            t = 'npy_' + node.inputs[k].type.dtype
            if all(node.inputs[k].broadcastable):
                value = '%s_s' % iname
            elif inner_broadcast[k]:
                value = '%s_b' % iname
            else:
                value = '%s_q[bn_j]' % iname
            lines.append('    %s %s_i = %s;' % (t, iname, value))
        lines.extend(self._body_end(node, name, inames, onames, fail, '%s_p_o[bn_j]'))
        lines.append('  }')
        lines.append('}')
        return lines


def broadcast_groups(node):
    """The output axes of ``node`` in groups of consecutive axes along which the same
    array inputs broadcast: a list of (axes, broadcasts) with ``broadcasts[k]`` True
    where input ``k`` (an array, not a broadcast scalar) broadcasts along the group.
    Axes along which the output itself broadcasts (length 1) are left out."""
    out = node.outputs[0]
    groups = []
    for d, out_broadcast in enumerate(out.broadcastable):
        if out_broadcast:
            continue
        sig = tuple(i.broadcastable[d] and not all(i.broadcastable) for i in node.inputs)
        if groups and groups[-1][1] == sig:
            groups[-1][0].append(d)
        else:
            groups.append(([d], sig))
    return groups


def fast_elemwise_eligible(node):
    """Whether ``node`` is an Elemwise that :class:`FastElemwise` can run."""
    if type(node.op) is not Elemwise:
        return False
    out = node.outputs[0]
    if out.ndim == 0 or all(out.broadcastable):
        return False
    pattern = out.broadcastable
    if any(o.broadcastable != pattern for o in node.outputs):
        return False
    for v in node.inputs + node.outputs:
        if v.type.dtype not in ('float32', 'float64', 'int8', 'int16', 'int32', 'int64',
                                'uint8', 'uint16', 'uint32', 'uint64', 'bool'):
            return False
    scalar = [all(i.broadcastable) for i in node.inputs]
    if all(scalar) or any(i.ndim != out.ndim for i in node.inputs):
        return False
    # an output computed in place overwrites an input of its own shape
    if any(node.inputs[i].broadcastable != pattern for i in node.op.inplace_pattern.values()):
        return False
    op = FastElemwise(node.op)
    try:
        apply = gof.Apply(op, node.inputs, [o.type() for o in node.outputs])
        if not op.c_code_cache_version_apply(apply):
            return False
        names = ['V%d' % k for k in range(len(node.inputs))]
        code = op.task_code(apply, 'probe', names, ['O%d' % k for k in range(len(node.outputs))],
                            'BN_FAIL_MARKER')
    except (gof.utils.MethodNotDefined, NotImplementedError, TypeError):
        return False
    return 'BN_FAIL_MARKER' not in code
