"""Standalone C99 inference code for an integer network (``python -m binary_net export``).

Part of the deployment code (:mod:`binary_net.deploy`); the command itself is
:mod:`binary_net.cli.export`.

The code computes exactly what :mod:`binary_net.infer.integer` (``mode='int'``) computes:
the same integer codes, the same rounding and saturation, so the label and the
integer scores it gives for an input are those of ``FoldedNetwork.predict(X,
mode='int')``. Four files are written into ``--out`` (``PREFIX`` is ``--name``,
by default the network's name):

``PREFIX.h``
    The API, documented: ``int PREFIX_predict(const int8_t *input, int32_t
    *scores_out)``, the input and output formats and sizes.
``PREFIX_weights.h``
    The model as ``static const`` arrays, included by ``PREFIX.c`` only: the
    binary weights packed 64 to a ``uint64_t`` (element k of a row at bit
    ``k % 64`` of word ``k / 64``, least significant bit first; 1 for a weight
    >= 0, i.e. +1; unused high bits 0) and the int16 codes of every other
    parameter. Shifts, reciprocals and shapes are literals in ``PREFIX.c``.
``PREFIX.c``
    The inference, using nothing beyond ``<stdint.h>``/``<stddef.h>``: no
    allocation, one static arena of int16 activations (see :func:`arena_plan`:
    element-wise layers, max pooling and XNOR layers with binary input write
    their output over their input, the others at the arena's other end) and
    static scratch for packed signs and channel sums. Its
    bit count is ``--popcount``: ``__builtin_popcountll`` (GCC or Clang; the
    host default), SWAR or a byte table (portable).
``PREFIX_example.c``
    A test harness: reads raw int8 images (``PREFIX_INPUT_SIZE`` bytes each,
    Q0.7 codes) from a file or stdin and prints one line per image, the label
    then the integer scores.

With ``--target cortex-m3`` or ``cortex-m4`` a bare-metal firmware for QEMU's
MPS2 board of that core is written beside them and, where arm-none-eabi-gcc is
installed, built (:mod:`binary_net.deploy.firmware`). ``--popcount`` chooses the bit
count of ``PREFIX.c`` (``csrc/export/popcount.c``). The templates of every file
are in ``csrc/export/``.

The command calibrates activation ranges on the first ``--calibration-size``
training images of the network's dataset (as the evaluation does for fixed and int
modes), then prints the flash (constant data) and RAM the model needs.
"""
import os
import re

import numpy as np

from ..modelfile import atomic_write
from . import firmware

_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class ExportError(Exception):
    """A problem to report as one ``error:`` line."""


# ---------------------------------------------------------------------------
# C source templates: files in csrc/export/ (@P@ is the prefix, @U@ its upper case)
# ---------------------------------------------------------------------------

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'csrc', 'export')
#: Layer kinds in the order their C functions appear; each is csrc/export/layer_KIND.c.
#: --popcount choices; BN_POPCOUNT_<upper case> in csrc/export/popcount.c.
POPCOUNTS = ('builtin', 'swar', 'table')
LAYER_KINDS = ('xnor_dense', 'xnor_conv', 'conv', 'dense', 'affine', 'max_pool', 'rectify')


def template(relative):
    """The text of the template file ``csrc/export/RELATIVE`` (package data)."""
    with open(os.path.join(TEMPLATE_DIR, relative), encoding='ascii') as f:
        return f.read()


# ---------------------------------------------------------------------------
# Generating the C code
# ---------------------------------------------------------------------------

class CExport:
    """The generated code and the memory it needs.

    Attributes
    ----------
    name : str
        The C prefix.
    files : dict of file name -> text
    flash_bytes : int
        Constant data (packed binary weights, int16 parameters, geometry).
    flash_detail : dict of str -> int
        Bytes by kind: 'binary weights', 'int16 parameters', 'geometry',
        'popcount table'.
    arena_elements : int
        int16 activations in the arena (see :func:`arena_plan`).
    scratch_bytes : int
        Packed signs and channel sums of the XNOR layers.
    ram_bytes : int
        ``2 * arena_elements + scratch_bytes``.
    paths : list of str
        Set by :func:`write_c`.
    """

    def __init__(self, name):
        self.name = name
        self.files = {}
        self.flash_detail = {'binary weights': 0, 'int16 parameters': 0, 'geometry': 0,
                             'popcount table': 0}
        self.arena_elements = 0
        self.scratch_bytes = 0
        self.paths = []

    @property
    def flash_bytes(self):
        return sum(self.flash_detail.values())

    @property
    def ram_bytes(self):
        return 2 * self.arena_elements + self.scratch_bytes


class _Arrays:
    """Collects the ``static const`` arrays of ``PREFIX_weights.h``."""

    def __init__(self, export):
        self.export = export
        self.chunks = []

    def _array(self, ctype, name, values, literal, per_line, comment, kind, itemsize):
        lines = ['    ' + ', '.join(literal % int(v) for v in values[i:i + per_line])
                 for i in range(0, len(values), per_line)]
        self.chunks.append('/* %s */\nstatic const %s %s[%d] = {\n%s\n};\n'
                           % (comment, ctype, name, len(values), ',\n'.join(lines)))
        self.export.flash_detail[kind] += itemsize * len(values)
        return name

    def uint64(self, name, words, comment):
        words = np.asarray(words, dtype=np.uint64).ravel()
        return self._array('uint64_t', name, words, 'UINT64_C(0x%016x)', 4, comment,
                           'binary weights', 8)

    def int16(self, name, codes, comment):
        codes = np.asarray(codes, dtype=np.int64).ravel()
        if codes.size and (codes.min() < -32768 or codes.max() > 32767):
            raise ValueError('%s does not fit int16' % name)
        return self._array('int16_t', name, codes, '%d', 16, comment, 'int16 parameters', 2)

    def geometry(self, name, values):
        self.chunks.append('static const bn_geometry %s = {%s};\n'
                           % (name, ', '.join('%d' % v for v in values)))
        self.export.flash_detail['geometry'] += 4 * len(values)
        return '&' + name


def _frac_comment(layer, what, frac):
    return '%s of layer %d (%s), %d fraction bits' % (what, layer.position, layer.kind, frac)


def _geometry(layer):
    C, H, W = layer.in_shape
    F, _, fh, fw = layer.filter_shape
    _, OH, OW = layer.out_shape
    return (C, H, W, F, fh, fw) + tuple(layer.stride) + tuple(layer.pad) + (OH, OW)


def _call(export, arrays, layer, src, dst, scratch):
    """The C statement computing ``layer`` from arena offset src into dst."""
    p = export.name
    i = layer.position
    x, y = 'bn_arena + %d' % src, 'bn_arena + %d' % dst
    kind = layer.kind
    if kind in ('xnor_dense', 'xnor_conv'):
        if kind == 'xnor_dense':
            w = arrays.uint64('%s_l%d_w' % (p, i), layer.packed,
                              'layer %d (xnor_dense %d->%d): sign(W) column j packed over '
                              'its %d inputs, %d words per unit'
                              % (i, layer.n, layer.units, layer.n, layer.packed.shape[1]))
        else:
            F, C, fh, fw = layer.filter_shape
            w = arrays.uint64('%s_l%d_w' % (p, i), layer.packed,
                              'layer %d (xnor_conv %d->%d %dx%d): sign(W) [F][fh][fw] taps, '
                              '%d channels packed in %d words'
                              % (i, C, F, fh, fw, C, layer.packed.shape[-1]))
        alpha = 'NULL'
        if layer.alpha is not None:
            alpha = arrays.int16('%s_l%d_alpha' % (p, i), layer.alpha,
                                 _frac_comment(layer, 'alpha', layer.alpha_frac))
        bias = arrays.int16('%s_l%d_bias' % (p, i), layer.bias,
                            'bias of layer %d (%s), entering the accumulator shifted left '
                            'by %d' % (i, kind, layer.bias_shift))
        xp = 'bn_xpack' if layer.binary_input else 'NULL'
        common = ('%d, %d, INT64_C(%d), %d, %s, %s, %d'
                  % (int(layer.binary_input), int(layer.scale_input), layer.recip,
                     layer.k_shift, alpha, bias, layer.bias_shift))
        if kind == 'xnor_dense':
            scratch['xpack'] = max(scratch['xpack'], layer.packed.shape[1]
                                   if layer.binary_input else 0)
            return ('bn_xnor_dense(%s, %s, %d, %d, %s, %s, %d, %d, %d, %s);'
                    % (x, y, layer.n, layer.units, w, common, int(layer.bias_before),
                       layer.pre_shift, layer.out_shift, xp))
        _, H, W = layer.in_shape
        if layer.binary_input:
            scratch['xpack'] = max(scratch['xpack'], H * W * layer.packed.shape[-1])
        if layer.scale_input:
            scratch['absmap'] = max(scratch['absmap'], H * W)
        g = arrays.geometry('%s_l%d_geometry' % (p, i), _geometry(layer))
        return ('bn_xnor_conv(%s, %s, %s, %s, %s, %d, %s, %s);'
                % (x, y, g, w, common, layer.out_shift, xp,
                   'bn_absmap' if layer.scale_input else 'NULL'))
    if kind == 'conv':
        w = arrays.int16('%s_l%d_w' % (p, i), layer.W,
                         _frac_comment(layer, 'W [F][C][fh][fw] (cross-correlation)',
                                       layer.W_frac))
        bias = arrays.int16('%s_l%d_bias' % (p, i), layer.bias,
                            'bias of layer %d (conv), shifted left by %d' % (i, layer.bias_shift))
        g = arrays.geometry('%s_l%d_geometry' % (p, i), _geometry(layer))
        return ('bn_conv(%s, %s, %s, %s, %s, %d, %d);'
                % (x, y, g, w, bias, layer.bias_shift, layer.out_shift))
    if kind == 'dense':
        w = arrays.int16('%s_l%d_w' % (p, i), layer.W.T,
                         _frac_comment(layer, 'W [units][inputs] (transposed)', layer.W_frac))
        bias = arrays.int16('%s_l%d_bias' % (p, i), layer.bias,
                            'bias of layer %d (dense), shifted left by %d' % (i, layer.bias_shift))
        return ('bn_dense(%s, %s, %d, %d, %s, %s, %d, %d);'
                % (x, y, layer.in_size, layer.units, w, bias, layer.bias_shift,
                   layer.out_shift))
    if kind == 'affine':
        scale = arrays.int16('%s_l%d_scale' % (p, i), layer.scale,
                             _frac_comment(layer, 'batch-norm scale', layer.scale_frac))
        offset = arrays.int16('%s_l%d_offset' % (p, i), layer.offset,
                              'batch-norm offset of layer %d, shifted left by %d'
                              % (i, layer.offset_shift))
        return ('bn_affine(%s, %s, %d, %d, %s, %s, %d, %d);'
                % (x, y, layer.channels, layer.plane, scale, offset, layer.offset_shift,
                   layer.out_shift))
    if kind == 'max_pool':
        C, H, W = layer.in_shape
        return ('bn_max_pool(%s, %s, %d, %d, %d, %d, %d);'
                % ((x, y, C, H, W) + tuple(layer.pool_size)))
    if kind == 'rectify':
        return 'bn_rectify(%s, %s, %d);' % (x, y, layer.in_size)
    raise ValueError('layer %d: no C code for %s' % (i, kind))


def writes_over_input(layer):
    """Whether the C code of ``layer`` may write its output over its input.

    Element-wise layers (affine, rectify) read element k before they write
    element k, and max pooling writes output element o after reading its window,
    whose elements and those of every later window lie at o or beyond (o = (c *
    OH + i) * OW + j <= (c * H + i * ph) * W + j * pw). An XNOR layer with binary
    input packs the signs of its whole input, and sums its |x|, into scratch
    before it writes any output.
    """
    if layer.kind in ('affine', 'rectify', 'max_pool'):
        return True
    return layer.kind in ('xnor_dense', 'xnor_conv') and bool(layer.binary_input)


def arena_plan(layers, in_size):
    """The activation arena's size (int16 elements) and each layer's offsets.

    The input is at offset 0. A layer that :func:`writes_over_input` writes its
    output where its input starts (or, an XNOR layer whose larger output would
    run past the arena's end, so that it ends there); any other layer writes at
    offset 0 if its output fits before its input, else at the arena's end. The
    arena starts at the least size this can work with (the largest input + output
    pair of the other layers, the largest input or output of these) and grows
    until every output fits.

    Returns
    -------
    (arena, [(src, dst), ...]) : int, one (input offset, output offset) per layer.
    """
    arena = max([in_size] + [max(layer.in_size, layer.out_size) if writes_over_input(layer)
                             else layer.in_size + layer.out_size for layer in layers])
    while True:
        plan, start, size = [], 0, in_size
        for layer in layers:
            out = layer.out_size
            if writes_over_input(layer):
                dst = start if start + out <= arena else arena - out
            elif out <= start:
                dst = 0
            elif start + size + out <= arena:
                dst = arena - out
            else:
                arena = start + size + out
                break
            plan.append((start, dst))
            start, size = dst, out
        else:
            return arena, plan


def _fill(template, values):
    for key, value in values.items():
        template = template.replace('@%s@' % key, str(value))
    return template


def generate_c(program, name, source='a trained model', popcount='builtin'):
    """Generate the C99 files of an integer network.

    Parameters
    ----------
    program : binary_net.infer.integer.IntegerNetwork
    name : str
        The C prefix (an identifier): files ``name.h``, ``name_weights.h``,
        ``name.c``, ``name_example.c`` and the function ``name_predict``.
    source : str
        Named in the files' comments (the model file).
    popcount : str
        The popcount ``PREFIX.c`` uses unless compiled with ``-DBN_POPCOUNT``:
        one of :data:`POPCOUNTS` (see ``csrc/export/popcount.c``). 'table'
        adds its 256-byte table to the flash.

    Returns
    -------
    CExport
    """
    if popcount not in POPCOUNTS:
        raise ExportError('popcount must be one of %s, not %r' % (', '.join(POPCOUNTS), popcount))
    if not _IDENTIFIER.match(name or ''):
        raise ExportError('--name %r is not a C identifier (letters, digits, _)' % (name,))
    if len(program.input_shape) not in (1, 3):
        raise ExportError('inputs shaped %s are not supported' % (program.input_shape,))
    export = CExport(name)
    arrays = _Arrays(export)
    input_shape = tuple(program.input_shape)
    in_c, in_h, in_w = input_shape if len(input_shape) == 3 else (input_shape[0], 1, 1)
    in_size = int(np.prod(input_shape))
    layers = program.layers
    arena, offsets = arena_plan(layers, in_size)
    export.arena_elements = arena
    scratch = {'xpack': 0, 'absmap': 0}
    calls, offset = [], 0
    for position, (layer, (src, dst)) in enumerate(zip(layers, offsets), 1):
        layer.position = position
        calls.append('    /* %d: %s */\n    %s'
                     % (position, layer.describe(), _call(export, arrays, layer, src, dst,
                                                          scratch)))
        offset = dst
    export.scratch_bytes = 8 * scratch['xpack'] + 4 * scratch['absmap']
    classes = program.num_classes

    values = {'P': name, 'U': name.upper(), 'SOURCE': source,
              'LAYERS': len(layers), 'INPUT_SHAPE': 'x'.join(map(str, input_shape)),
              'CLASSES': classes, 'IN_C': in_c, 'IN_H': in_h, 'IN_W': in_w,
              'IN_SIZE': in_size, 'SCORE_FRAC': program.output_frac,
              'FLASH': export.flash_bytes, 'RAM': export.ram_bytes,
              'DESCRIPTION': '\n'.join(' *   %2d  %s' % (layer.position, layer.describe())
                                       for layer in layers) or ' *   (no layers)'}
    export.files[name + '.h'] = _fill(template('model.h'), values)

    weights = ['/*\n * %s_weights.h -- the constants of %s.c, generated by `python -m '
               'binary_net export` from %s.\n * Include from %s.c only. Binary weights: '
               'uint64_t words, element k of a packed\n * vector at bit k %% 64 of word '
               'k / 64 (least significant bit first), 1 for +1\n * (weight >= 0), 0 for '
               '-1; unused high bits are 0. Other parameters: int16 codes\n * (value = code '
               '/ 2^fraction bits, given with each array).\n */\n' % (name, name, source, name)]
    weights += arrays.chunks
    export.files[name + '_weights.h'] = '\n'.join(weights)

    kinds = {layer.kind for layer in layers}
    values.update(POPCOUNT='BN_POPCOUNT_' + popcount.upper(), POPCOUNT_NAME=popcount)
    if popcount == 'table' and kinds & {'xnor_dense', 'xnor_conv'}:
        export.flash_detail['popcount table'] = 256
    body = [_fill(template('model_common.c'), values)]
    if kinds & {'xnor_dense', 'xnor_conv'}:
        body.append(_fill(template('popcount.c'), values))
    for kind in LAYER_KINDS:
        if kind in kinds:
            body.append(template('layer_%s.c' % kind))
    body.append('\n/* The activation arena: element-wise layers, max pooling and XNOR layers'
                '\n * with binary input write their output over their input, the other layers'
                '\n * at the arena\'s other end. */'
                '\nstatic int16_t bn_arena[%d];\n' % arena)
    if scratch['xpack']:
        body.append('/* Packed signs of an XNOR layer\'s input. */\n'
                    'static uint64_t bn_xpack[%d];\n' % scratch['xpack'])
    if scratch['absmap']:
        body.append('/* Channel sums of |x| of an XNOR convolution\'s input. */\n'
                    'static int32_t bn_absmap[%d];\n' % scratch['absmap'])
    body.append('\nint %s_predict(const int8_t *input, int32_t *scores_out)\n{\n'
                '    long k;\n    int best = 0;\n'
                '    for (k = 0; k < %d; k++)\n        bn_arena[k] = input[k];\n'
                % (name, in_size))
    body.append('\n'.join(calls) + '\n')
    body.append('    for (k = 0; k < %d; k++) {\n'
                '        if (bn_arena[%d + k] > bn_arena[%d + best])\n'
                '            best = (int)k;\n'
                '        if (scores_out != NULL)\n'
                '            scores_out[k] = bn_arena[%d + k];\n'
                '    }\n    return best;\n}\n' % (classes, offset, offset, offset))
    export.files[name + '.c'] = ''.join(body)
    export.files[name + '_example.c'] = _fill(template('example.c'), values)
    return export


def write_c(program, out_dir, name, source='a trained model', popcount='builtin',
            target='host'):
    """:func:`generate_c`, then write the files into ``out_dir`` (created if needed).

    With a Cortex-M ``target`` (a key of :data:`binary_net.deploy.firmware.TARGETS`),
    the firmware's sources, linker script and Makefile are written beside them
    (:func:`binary_net.deploy.firmware.generate_sources`); nothing is built.

    Returns
    -------
    CExport, with :attr:`CExport.paths` set.
    """
    export = generate_c(program, name, source, popcount)
    if target != 'host':
        export.files.update(firmware.generate_sources(name, target, popcount))
    os.makedirs(out_dir, exist_ok=True)
    for filename, text in export.files.items():
        path = os.path.join(out_dir, filename)
        atomic_write(path, lambda f, text=text: f.write(text.encode('ascii')))
        export.paths.append(path)
    return export
