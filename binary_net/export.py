"""``python -m binary_net export``: standalone C99 inference code for a trained model.

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
    allocation, one static activation arena (each layer reads one end and
    writes the other, so it holds the largest input+output pair of int16
    activations) and static scratch for packed signs and channel sums. Its
    bit count is ``--popcount``: ``__builtin_popcountll`` (GCC or Clang; the
    host default), SWAR or a byte table (portable).
``PREFIX_example.c``
    A test harness: reads raw int8 images (``PREFIX_INPUT_SIZE`` bytes each,
    Q0.7 codes) from a file or stdin and prints one line per image, the label
    then the integer scores.

With ``--target cortex-m3`` or ``cortex-m4`` a bare-metal firmware for QEMU's
MPS2 board of that core is written beside them and, where arm-none-eabi-gcc is
installed, built (:mod:`binary_net.firmware`). ``--popcount`` chooses the bit
count of ``PREFIX.c`` (``csrc/export/popcount.c``). The templates of every file
are in ``csrc/export/``.

The export calibrates activation ranges on the first ``--calibration-size``
training images of the network's dataset (as the evaluation scripts do for fixed
and int modes), then prints the flash (constant data) and RAM the model needs.
"""
import os
import re
import sys

import numpy as np

from . import errors, firmware
from .spec import reference_spec

EXIT_ERROR = 2
CALIBRATION_SIZE = 1000
DATASETS = ('mnist', 'fashion-mnist', 'cifar10', 'svhn')
_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class ExportError(Exception):
    """A problem to report as one ``error:`` line."""


# ---------------------------------------------------------------------------
# C source templates: files in csrc/export/ (@P@ is the prefix, @U@ its upper case)
# ---------------------------------------------------------------------------

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'export')
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
        int16 activations in the arena (the largest input+output pair).
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

    def uint64(self, name, words, comment):
        words = np.asarray(words, dtype=np.uint64).ravel()
        lines = ['    ' + ', '.join('UINT64_C(0x%016x)' % int(v) for v in words[i:i + 4])
                 for i in range(0, len(words), 4)]
        self.chunks.append('/* %s */\nstatic const uint64_t %s[%d] = {\n%s\n};\n'
                           % (comment, name, len(words), ',\n'.join(lines)))
        self.export.flash_detail['binary weights'] += 8 * len(words)
        return name

    def int16(self, name, codes, comment):
        codes = np.asarray(codes, dtype=np.int64).ravel()
        if codes.size and (codes.min() < -32768 or codes.max() > 32767):
            raise ValueError('%s does not fit int16' % name)
        lines = ['    ' + ', '.join('%d' % int(v) for v in codes[i:i + 16])
                 for i in range(0, len(codes), 16)]
        self.chunks.append('/* %s */\nstatic const int16_t %s[%d] = {\n%s\n};\n'
                           % (comment, name, len(codes), ',\n'.join(lines)))
        self.export.flash_detail['int16 parameters'] += 2 * len(codes)
        return name

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
    arena = max([in_size] + [layer.in_size + layer.out_size for layer in layers])
    export.arena_elements = arena
    scratch = {'xpack': 0, 'absmap': 0}
    calls, offset = [], 0
    for position, layer in enumerate(layers, 1):
        layer.position = position
        dst = arena - layer.out_size if offset == 0 else 0
        calls.append('    /* %d: %s */\n    %s'
                     % (position, layer.describe(), _call(export, arrays, layer, offset, dst,
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
    body.append('\n/* The activation arena: each layer reads its input at one end and writes'
                '\n * its output at the other (the largest input + output pair fits). */'
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

    With a Cortex-M ``target`` (a key of :data:`binary_net.firmware.TARGETS`),
    the firmware's sources, linker script and Makefile are written beside them
    (:func:`binary_net.firmware.generate_sources`); nothing is built.

    Returns
    -------
    CExport, with :attr:`CExport.paths` set.
    """
    from .modelfile import atomic_write

    export = generate_c(program, name, source, popcount)
    if target != 'host':
        from . import firmware
        export.files.update(firmware.generate_sources(name, target, popcount))
    os.makedirs(out_dir, exist_ok=True)
    for filename, text in export.files.items():
        path = os.path.join(out_dir, filename)
        atomic_write(path, lambda f, text=text: f.write(text.encode('ascii')))
        export.paths.append(path)
    return export


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------

def add_arguments(parser):
    from .evaluation import positive_int
    parser.epilog = ('Writes PREFIX.h (the API), PREFIX_weights.h (packed binary weights and '
                     'int16 constants), PREFIX.c (the inference) and PREFIX_example.c (a '
                     'harness reading raw int8 images), computing exactly what '
                     '--mode int of the evaluation scripts computes, and prints the flash and '
                     'RAM the model needs. Activation ranges are calibrated on the first '
                     '--calibration-size training images of the dataset. With a Cortex-M '
                     '--target it also writes a firmware (startup code, semihosting '
                     'harness, linker script, Makefile), builds it with arm-none-eabi-gcc '
                     'when installed and prints arm-none-eabi-size\'s flash and RAM.')
    parser.add_argument('--model', required=True, metavar='PATH',
                        help='model file (.npz) written by training, or a packed model '
                             'file (python -m binary_net pack)')
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='directory to write the C files into (created if needed)')
    parser.add_argument('--name', metavar='PREFIX',
                        help='C prefix of the files and of PREFIX_predict() '
                             '(default: the network\'s name)')
    parser.add_argument('--calibration-size', type=positive_int, default=CALIBRATION_SIZE,
                        metavar='N', help='calibrate activation ranges on the first N '
                                          'training images (default: %(default)s)')
    parser.add_argument('--data-path', metavar='DIR',
                        help='data root (default: $PYLEARN2_DATA_PATH, else ~/pylearn2_data)')
    parser.add_argument('--target', choices=('host',) + tuple(firmware.TARGETS),
                        default='host',
                        help='host: portable C99 with a host harness (default); cortex-m3, '
                             'cortex-m4: also a firmware for QEMU\'s MPS2 board of that core '
                             '(mps2-an385, mps2-an386) with start-up code, linker script and '
                             'Makefile, built with arm-none-eabi-gcc -Os when installed')
    parser.add_argument('--popcount', choices=POPCOUNTS,
                        help='popcount of the C code: builtin (__builtin_popcountll; the '
                             'host default), swar or table (portable; swar is the Cortex-M '
                             'default, where the builtin is a library call)')
    parser.add_argument('--no-build', action='store_true',
                        help='with a Cortex-M --target: write the sources and Makefile only')
    parser.add_argument('--dataset', choices=DATASETS,
                        help='dataset to calibrate on (default: the network\'s name); needed '
                             'for position-only files of the original code')


def _load(args):
    from . import infer as inference, modelfile

    dataset = args.dataset
    if getattr(modelfile, 'is_packed', None) and modelfile.is_packed(args.model):
        network, spec, _ = modelfile.load_packed(args.model)
        spec = spec or {'name': network.name}
        return _calibrate(args, network, spec, dataset, '%d ops, packed' % len(network))
    values, spec, _ = modelfile.load_model(args.model)
    if spec is None:
        if dataset is None or dataset == 'fashion-mnist':
            raise ExportError('%s is a position-only file without a network description: '
                              'give --dataset mnist, cifar10 or svhn' % args.model)
        spec = reference_spec(dataset, values)
    network = inference.fold(spec, values, source=os.path.basename(args.model))
    return _calibrate(args, network, spec, dataset, '%d arrays' % len(values))


def _calibrate(args, network, spec, dataset, contents):
    from . import datasets, preprocessing

    preprocess = preprocessing.from_file(args.model)
    if not preprocess.is_identity:
        raise ExportError('%s was trained with %s preprocessing, which the C export does not '
                          'implement (it feeds int8 pixels scaled to [-1, 1]); export a model '
                          'trained without --gcn/--zca' % (args.model, preprocess.describe()))

    if dataset is None:
        dataset = spec.get('name')
        if dataset not in DATASETS:
            raise ExportError('cannot tell which training images calibrate the %r network: '
                              'give --dataset' % (spec.get('name'),))
    data = datasets.load(dataset, args.data_path)
    X_train = data['train'][0]
    if X_train.shape[1:] != network.input_shape:
        raise ExportError('the %s network takes inputs shaped %s, but %s images are shaped %s'
                          % (spec.get('name', 'given'), network.input_shape, dataset,
                             X_train.shape[1:]))
    n = min(args.calibration_size, len(X_train))
    if n == 0:
        raise ExportError('the %s training set is empty: nothing to calibrate on' % dataset)
    network.calibrate(datasets.to_unit_range(X_train[:n]))
    return network, spec, dataset, n, contents


def _kib(n):
    return '%s bytes (%.1f KiB)' % (format(n, ','), n / 1024.0)


def run(args):
    """Export ``args.model`` as C into ``args.out``; returns the exit status."""
    from . import datasets, modelfile
    from .infer import integer

    try:
        network, spec, dataset, n_calib, contents = _load(args)
        program = integer.compile_network(network)
        name = args.name or re.sub(r'\W', '_', spec.get('name') or 'model')
        if name[:1].isdigit():
            name = 'model_' + name
        popcount = args.popcount or ('builtin' if args.target == 'host' else 'swar')
        export = write_c(program, args.out, name, os.path.basename(args.model), popcount,
                         args.target)
        built = None
        if args.target != 'host' and not args.no_build and not firmware.toolchain_missing():
            built = firmware.build(args.out, name, args.target, popcount)
    except (modelfile.ModelFileError, datasets.DatasetError, ExportError, ValueError,
            RuntimeError, firmware.FirmwareError) as error:
        print('error: %s' % error, file=sys.stderr)
        return EXIT_ERROR
    except (OSError, MemoryError) as error:
        print('error: %s' % errors.first_line(error), file=sys.stderr)
        return EXIT_ERROR
    print('Model: %s (%s network, %s)' % (args.model, spec.get('name', '?'), contents))
    print('Calibration: first %d %s training images' % (n_calib, dataset))
    print('Integer network (int8 Q0.7 input, int16 codes, int64 accumulators):')
    print(program.describe())
    print('Wrote: %s' % ', '.join(export.paths))
    detail = ', '.join('%s %s' % (k, format(v, ',')) for k, v in export.flash_detail.items() if v)
    print('Flash: %s of constant data (%s)' % (_kib(export.flash_bytes), detail))
    print('RAM: %s (activation arena %s int16 = the largest input+output pair, scratch %s)'
          % (_kib(export.ram_bytes), format(export.arena_elements, ','),
             format(export.scratch_bytes, ',')))
    print('Popcount: %s' % popcount)
    if args.target == 'host':
        print('Build: cc -std=c99 -O2 -o %s_example %s.c %s_example.c' % (name, name, name))
    else:
        _report_firmware(args, name, export, built)
    return 0


def _report_firmware(args, name, export, built):
    cpu, board, core = firmware.TARGETS[args.target]
    if built is None:
        why = 'as asked (--no-build)' if args.no_build else firmware.toolchain_missing()
        print('Firmware: not built, %s; build it with: make -C %s' % (why, args.out))
        return
    print('Firmware: %s for %s (%s): %s -mcpu=%s -mthumb -Os'
          % (built.elf, board, core, firmware.CC, cpu))
    print('arm-none-eabi-size: text %s, data %s, bss %s (stack %s included): '
          'flash %s, RAM %s'
          % tuple(format(v, ',') for v in (built.text, built.data, built.bss,
                                          firmware.STACK_BYTES, built.flash_bytes,
                                          built.ram_bytes)))
    model = built.model
    folded = export.flash_bytes - model['rodata']
    print('  of which %s.o: constant data %s (the Flash above%s), code %s, static RAM %s '
          '(the RAM above)'
          % (name, format(model['rodata'], ','),
             ' less %d bytes of geometry the compiler folded into code' % folded if folded else '',
             format(model['text'], ','), format(model['bss'] + model['data'], ',')))
    parts = firmware.fitting_parts(args.target, built.flash_bytes, built.ram_bytes)
    if parts:
        print('Fits: %s (%s KiB flash, %s KiB RAM) and larger parts'
              % (parts[0][0], parts[0][2] >> 10, parts[0][3] >> 10))
    print('Run: cd %s && %s' % (args.out, ' '.join(
        firmware.qemu_command(os.path.basename(built.elf), args.target, 'images.bin'))))
