"""Bit-exactness of binary_net.kernels against independent numpy references."""
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from binary_net import kernels as K

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X86 = platform.machine().lower() in ('x86_64', 'amd64')
ISAS = ['native', 'avx2', 'portable'] if X86 else ['native']


# ---------------------------------------------------------------- references

def sgn(x):
    """Reference binarization: +1 where x >= 0 (zero included), else -1."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int64)


def ref_pack(x, axis=-1):
    """Reference packer: bit k%64 of word k//64 is 1 where x_k >= 0."""
    bits = np.moveaxis(np.asarray(x) >= 0, axis, -1).astype(np.uint64)
    n = bits.shape[-1]
    words = -(-n // 64)
    padded = np.zeros(bits.shape[:-1] + (words * 64,), dtype=np.uint64)
    padded[..., :n] = bits
    padded = padded.reshape(bits.shape[:-1] + (words, 64))
    return np.bitwise_or.reduce(padded << np.arange(64, dtype=np.uint64), axis=-1)


def ref_conv(x, W, stride, pad):
    """Cross-correlation of sign(x), zero-padded after binarizing, with sign(W)."""
    (sh, sw), (ph, pw) = stride, pad
    F, C, fh, fw = W.shape
    s = np.pad(sgn(x), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(s, (fh, fw), axis=(2, 3))
    win = win[:, :, ::sh, ::sw]                      # (N, C, OH, OW, fh, fw)
    return np.einsum('ncijuv,fcuv->nfij', win, sgn(W))


def signed_data(rng, shape, dtype=np.float32, zeros=0.15):
    """Random values with a good share of exact zeros (which must give +1)."""
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < zeros] = 0
    return x


@pytest.fixture(params=ISAS)
def isa(request):
    """Run a test once per compiled code path (AVX-512 / AVX2 / portable), selected
    with kernels.use_isa: an x86 CPU with AVX-512 runs all three."""
    previous = K.use_isa(request.param)
    yield K.library.get_library().isa
    K.use_isa(previous)


@pytest.fixture
def threads():
    yield
    K.set_num_threads(None)


# ------------------------------------------------------------------- packing

def test_pack_signs_bit_layout():
    x = np.full(70, -1.0, dtype=np.float32)
    x[[0, 5, 63, 64, 69]] = [2.0, 0.0, 1e-30, 3.0, -0.0]   # 0.0 and -0.0 are +1
    x[7] = np.nan                                         # NaN is -1
    p = K.pack_signs(x)
    assert p.dtype == np.uint64 and p.shape == (2,)
    assert int(p[0]) == (1 << 0) | (1 << 5) | (1 << 63)
    assert int(p[1]) == (1 << 0) | (1 << 5)               # trailing bits 6..63 are 0


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.float16, np.int32, np.int64, bool])
@pytest.mark.parametrize('axis', [0, 1, 2, -1])
def test_pack_signs_axes_and_dtypes(dtype, axis):
    rng = np.random.default_rng(1)
    x = signed_data(rng, (3, 130, 5), np.float64) * 10
    x = x.astype(dtype)
    p = K.pack_signs(x, axis=axis)
    expected_shape = tuple(np.delete(x.shape, axis)) + (-(-x.shape[axis] // 64),)
    assert p.shape == expected_shape and p.dtype == np.uint64
    np.testing.assert_array_equal(p, ref_pack(x, axis))


@pytest.mark.parametrize('n', [1, 15, 16, 63, 64, 65, 127, 128, 200, 1000])
def test_pack_signs_lengths(isa, n):
    rng = np.random.default_rng(n)
    for dtype in (np.float32, np.float64):
        x = signed_data(rng, (7, n), dtype)
        special = rng.random(x.shape)
        x[special < 0.05] = -0.0            # +1, like 0.0
        x[special > 0.97] = np.nan          # -1
        x[(special > 0.95) & (special <= 0.97)] = -np.inf
        np.testing.assert_array_equal(K.pack_signs(x), ref_pack(x))
        # middle-axis (strided) packing
        np.testing.assert_array_equal(K.pack_signs(x.T.copy(), axis=0), ref_pack(x))


def test_pack_signs_noncontiguous_and_empty():
    rng = np.random.default_rng(2)
    x = signed_data(rng, (40, 90))[::2, ::3]
    np.testing.assert_array_equal(K.pack_signs(x), ref_pack(x))
    np.testing.assert_array_equal(K.pack_signs(x, axis=0), ref_pack(x, 0))
    assert K.pack_signs(np.zeros((0, 5), np.float32)).shape == (0, 1)
    assert K.pack_signs(np.zeros((4, 0), np.float32)).shape == (4, 0)
    with pytest.raises(ValueError):
        K.pack_signs(np.float32(1.0))


@pytest.mark.parametrize('axis', [0, 1, 2, -1])
def test_numpy_pack_bits_is_the_c_packing_and_unpack_bits_inverts_it(axis):
    """The numpy reference packer gives pack_signs' words (float32/float64 by C),
    and unpack_bits puts the +-1 signs back at ``axis``."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = signed_data(rng, (3, 130, 5), dtype)
        x[0, 7, 1] = np.nan                     # -1
        x[1, 64, 2] = -0.0                      # +1
        words = K.pack_bits(x, axis=axis)
        np.testing.assert_array_equal(words, K.pack_signs(x, axis=axis))
        np.testing.assert_array_equal(words, ref_pack(x, axis))
        signs = K.unpack_bits(words, x.shape[axis], axis=axis)
        assert signs.dtype == np.int8 and signs.shape == x.shape
        np.testing.assert_array_equal(signs, np.where(x >= 0, 1, -1))
    assert K.pack_bits(np.zeros((2, 0))).shape == (2, 0)
    assert K.unpack_bits(np.zeros((2, 0), np.uint64), 0).shape == (2, 0)


def test_reference_examples_run_as_written():
    import doctest
    from binary_net.kernels import reference
    result = doctest.testmod(reference)
    assert result.attempted >= 2 and result.failed == 0


# ------------------------------------------------------------------- matmul

MATMUL_CASES = [  # (M, n, N)
    (1, 1, 1), (1, 63, 5), (3, 64, 1), (5, 65, 33), (7, 200, 40), (13, 1, 70),
    (37, 577, 31), (4, 1984, 9),        # 31 words: 248 bytes, 8 whole 31-byte blocks (AVX2)
    (6, 2049, 17),                      # 33 words: an odd count (the tables' 8-byte tail)
    (3, 64 * 46 + 5, 8),                # 47 words
    (5, 64 * 49 + 1, 19),               # 50 words
    (9, 64 * 130 + 3, 11),              # 131 words
    (64, 4096, 96), (130, 300, 65),
]


@pytest.mark.parametrize('M,n,N', MATMUL_CASES)
def test_xnor_matmul_exact(isa, M, n, N):
    rng = np.random.default_rng(M * 1000 + n + N)
    a = signed_data(rng, (M, n))
    b = signed_data(rng, (N, n))
    out = K.xnor_matmul(K.pack_signs(a), K.pack_signs(b), n)
    assert out.dtype == np.int32 and out.shape == (M, N)
    np.testing.assert_array_equal(out, np.dot(sgn(a), sgn(b).T))


@pytest.mark.parametrize('M,n,N', [(1, 4096, 130), (2, 70, 64), (9, 700, 65), (70, 3000, 200),
                                   (3, 64 * 49 + 1, 129)])
def test_fast_product_equals_reference_kernel(isa, threads, M, n, N):
    """Column blocks of 64 (several threads, a batch of one split by columns, the
    prefetching small-batch path) against the C reference kernel and numpy."""
    rng = np.random.default_rng(M + n + N)
    a, b = K.pack_signs(signed_data(rng, (M, n))), K.pack_signs(signed_data(rng, (N, n)))
    ref = K.xnor_matmul_reference(a, b, n)
    signs = lambda p: np.where(np.unpackbits(p.view(np.uint8), axis=1, bitorder='little')[:, :n],
                               1, -1)
    np.testing.assert_array_equal(ref, signs(a) @ signs(b).T)
    for nt in (1, 2):
        K.set_num_threads(nt)
        np.testing.assert_array_equal(K.xnor_matmul(a, b, n), ref)


@pytest.mark.parametrize('n', [8, 64 * 3, 31 * 8, 32 * 8, 62 * 8 + 64, 4096,
                               64 * 1023 + 1, 64 * 1100 + 7])
@pytest.mark.parametrize('M,N', [(1, 33), (7, 32), (13, 70)])
def test_xnor_matmul_extreme_counts(isa, threads, M, n, N):
    """Every bit pair different, every one equal, and one row of each against a
    mixture, so that every byte, 16-bit and int32 total of the kernels reaches its
    largest value: blocks of 31 bytes, 16-bit totals widened past 65,472 bits (the
    AVX2 lookup tables), odd word counts, partial panels and tiles."""
    rng = np.random.default_rng(n + M + N)
    a = np.where(rng.random((M, n)) < 0.5, 1.0, -1.0).astype(np.float32)
    a[0], a[-1] = 1.0, -1.0            # (M = 1: the single row is all -1)
    b = np.where(rng.random((N, n)) < 0.5, 1.0, -1.0).astype(np.float32)
    b[0], b[-1] = 1.0, -1.0
    b[N // 2] = a[0]
    expected = sgn(a) @ sgn(b).T
    assert expected[-1, 0] == -n and expected[-1, -1] == n and expected[0, N // 2] == n
    ap, bp = K.pack_signs(a), K.pack_signs(b)
    for nt in (1, 2):
        K.set_num_threads(nt)
        np.testing.assert_array_equal(K.xnor_matmul(ap, bp, n), expected)


def test_xnor_matmul_ignores_bits_past_n():
    rng = np.random.default_rng(3)
    a = signed_data(rng, (6, 70))
    b = signed_data(rng, (4, 70))
    ap, bp = K.pack_signs(a), K.pack_signs(b)
    ap_dirty, bp_dirty = ap.copy(), bp.copy()
    ap_dirty[:, 1] |= np.uint64(0xFFFF << 20)   # garbage in bits 84..99 (> n=70)
    bp_dirty[:, 1] |= np.uint64(1 << 63)
    before = ap_dirty.copy()
    ref = np.dot(sgn(a), sgn(b).T)
    np.testing.assert_array_equal(K.xnor_matmul(ap_dirty, bp_dirty, 70), ref)
    np.testing.assert_array_equal(ap_dirty, before)   # masking happens on a copy
    # fewer valid bits than packed: only the first n count
    np.testing.assert_array_equal(K.xnor_matmul(ap, bp, 10),
                                  np.dot(sgn(a[:, :10]), sgn(b[:, :10]).T))


def test_xnor_matmul_errors():
    p = np.zeros((2, 2), np.uint64)
    with pytest.raises(ValueError):
        K.xnor_matmul(p, np.zeros((2, 3), np.uint64), 100)
    with pytest.raises(ValueError):
        K.xnor_matmul(p, p, 129)          # needs 3 words
    with pytest.raises(TypeError):
        K.xnor_matmul(p.astype(np.int64), p, 100)
    np.testing.assert_array_equal(K.xnor_matmul(p, p, 0), np.zeros((2, 2), np.int32))


# -------------------------------------------------------------------- dense

@pytest.mark.parametrize('batch,n_in,n_out', [(1, 1, 1), (1, 784, 10), (3, 65, 130),
                                              (17, 200, 33), (64, 2049, 40),
                                              (301, 4100, 70)])   # over 1 MB: packed first
def test_packed_dense(isa, batch, n_in, n_out):
    rng = np.random.default_rng(batch + n_in + n_out)
    W = signed_data(rng, (n_in, n_out))
    x = signed_data(rng, (batch, n_in))
    layer = K.PackedDense(W)
    assert layer.packed.shape == (n_out, -(-n_in // 64)) and layer.n_in == n_in
    np.testing.assert_array_equal(layer.packed, ref_pack(W, axis=0))
    ref = np.dot(sgn(x), sgn(W))
    np.testing.assert_array_equal(layer.matmul_signs(x), ref)
    np.testing.assert_array_equal(layer.matmul_signs(x.astype(np.float64)), ref)
    np.testing.assert_array_equal(layer.matmul_packed(K.pack_signs(x)), ref)
    again = K.PackedDense.from_packed(layer.packed.copy(), n_in)
    assert again.n_out == n_out
    np.testing.assert_array_equal(again.matmul_signs(x), ref)


def test_packed_dense_errors():
    layer = K.PackedDense(np.ones((70, 3), np.float32))
    with pytest.raises(ValueError):
        layer.matmul_signs(np.ones((2, 69), np.float32))
    with pytest.raises(ValueError):
        K.PackedDense.from_packed(layer.packed, 200)
    # Lasagne-style flattening of trailing dimensions
    x = np.random.default_rng(0).standard_normal((2, 7, 10))
    np.testing.assert_array_equal(layer.matmul_signs(x),
                                  np.dot(sgn(x.reshape(2, 70)), np.ones((70, 3), np.int64)))


# --------------------------------------------------------------------- conv

CONV_CASES = [  # N, C, H, W, F, fh, fw, stride, pad
    (1, 1, 5, 5, 1, 3, 3, (1, 1), (0, 0)),
    (2, 3, 7, 6, 5, 3, 2, (1, 1), (1, 1)),
    (3, 8, 9, 9, 4, 3, 3, (2, 2), (1, 1)),
    (1, 16, 8, 11, 6, 1, 3, (1, 2), (0, 2)),
    (2, 64, 6, 6, 7, 3, 3, (1, 1), (2, 2)),
    (1, 65, 7, 5, 3, 5, 1, (2, 1), (2, 0)),
    (1, 130, 5, 5, 9, 3, 3, (1, 1), (1, 1)),
    (5, 3, 10, 10, 33, 2, 5, (2, 3), (1, 2)),
    (1, 2, 3, 3, 2, 3, 3, (1, 1), (2, 2)),          # some windows see only padding
    (2, 4, 6, 100, 5, 3, 3, (1, 1), (1, 1)),        # panels with and without border pixels
    (3, 64, 12, 12, 70, 3, 3, (1, 1), (1, 1)),      # several tasks of panels and filters
    (2, 128, 8, 8, 13, 3, 3, (1, 1), (1, 1)),       # CIFAR-10's last stage: 4 rows a panel
]


def _conv_id(c):
    return 'x'.join(map(str, c[:7])) + '-s%d%d-p%d%d' % (c[7] + c[8])


@pytest.mark.parametrize('case', CONV_CASES, ids=_conv_id)
def test_packed_conv2d(isa, case):
    N, C, H, Wd, F, fh, fw, stride, pad = case
    rng = np.random.default_rng(sum(case[:7]))
    x = signed_data(rng, (N, C, H, Wd), zeros=0.3)
    W = signed_data(rng, (F, C, fh, fw))
    conv = K.PackedConv2D(W, stride=stride, pad=pad)
    out = conv.conv_signs(x)
    ref = ref_conv(x, W, stride, pad)
    assert out.dtype == np.int32 and out.shape == ref.shape == conv.output_shape(x.shape)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(conv.conv_packed_reference(K.pack_signs(x, axis=1)), ref)
    np.testing.assert_array_equal(conv.conv_signs(x.astype(np.float64)), ref)
    np.testing.assert_array_equal(conv.conv_signs(x[:1]), ref[:1])        # batch 1
    again = K.PackedConv2D.from_packed(conv.packed.copy(), W.shape, stride, pad)
    np.testing.assert_array_equal(again.conv_signs(x), ref)


@pytest.mark.parametrize('case', CONV_CASES[1::3], ids=_conv_id)
def test_conv_tables_built_per_call_equal_the_cached_ones(isa, threads, case):
    """xk_conv2d (which builds the AVX2 path's filter tables on every call) against
    conv_packed (tables built once per PackedConv2D and kept), on 1 and 2 threads."""
    N, C, H, Wd, F, fh, fw, stride, pad = case
    rng = np.random.default_rng(sum(case[:7]) + 1)
    x = signed_data(rng, (N, C, H, Wd), zeros=0.3)
    conv = K.PackedConv2D(signed_data(rng, (F, C, fh, fw)), stride=stride, pad=pad)
    xp = K.pack_signs(x, axis=1)
    lib = K.library.get_library()
    pidx, pcorr = conv._border(H, Wd, lib.nr)
    for nt in (1, 2):
        K.set_num_threads(nt)
        cached = conv.conv_packed(xp)
        built = np.empty_like(cached)
        assert lib.lib.xk_conv2d(
            xp.ctypes.data, N, H, Wd, xp.shape[3], conv._wk.ctypes.data, F, fh, fw,
            stride[0], stride[1], pad[0], pad[1], C * fh * fw,
            pidx.ctypes.data if pcorr.size else None, pcorr.ctypes.data if pcorr.size else None,
            built.ctypes.data, nt) == 0
        np.testing.assert_array_equal(built, cached)
        np.testing.assert_array_equal(cached, ref_conv(x, conv_weights_signs(conv), stride, pad))


def conv_weights_signs(conv):
    """The +-1 filters of a PackedConv2D, unpacked from its words (F, C, fh, fw)."""
    F, C, fh, fw = conv.filter_shape
    bits = np.unpackbits(conv.packed.view(np.uint8), axis=-1, bitorder='little')[..., :C]
    return np.where(bits, 1.0, -1.0).transpose(0, 3, 1, 2)


def test_conv_padding_rule():
    """Padding contributes 0; a real 0 in x binarizes to +1."""
    C = 5
    conv = K.PackedConv2D(np.ones((1, C, 3, 3), np.float32), pad=(1, 1))
    out = conv.conv_signs(np.zeros((1, C, 4, 4), np.float32))[0, 0]
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) * C
    np.testing.assert_array_equal(out, expected)
    out = conv.conv_signs(-np.ones((1, C, 4, 4), np.float32))[0, 0]
    np.testing.assert_array_equal(out, -expected)


def test_conv_several_input_sizes_and_errors():
    rng = np.random.default_rng(5)
    W = signed_data(rng, (3, 4, 3, 3))
    conv = K.PackedConv2D(W, stride=2, pad=1)
    for H, Wd in [(5, 5), (8, 6), (5, 5)]:           # per-size correction cache
        x = signed_data(rng, (2, 4, H, Wd))
        np.testing.assert_array_equal(conv.conv_signs(x), ref_conv(x, W, (2, 2), (1, 1)))
    with pytest.raises(ValueError):
        conv.conv_signs(np.ones((1, 3, 5, 5), np.float32))      # wrong channel count
    with pytest.raises(ValueError):
        K.PackedConv2D(W).conv_signs(np.ones((1, 4, 2, 2), np.float32))   # smaller than filter
    with pytest.raises(ValueError):
        K.PackedConv2D.from_packed(conv.packed, (3, 4, 3, 2))


# ------------------------------------------------------------ fused layers

MEAN_ABS_LENGTHS = [1, 7, 8, 9, 15, 16, 127, 128, 129, 136, 257, 784, 1000, 4096, 8192, 8193,
                    20000]


def test_pack_signs_mean_abs_is_numpys_mean_bit_for_bit(isa):
    """K of a dense layer: numpy's pairwise summation order reproduced in C."""
    rng = np.random.default_rng(11)
    for n in MEAN_ABS_LENGTHS:
        x = signed_data(rng, (3, n)) * np.float32(rng.uniform(0.01, 100))
        packed, mean = K.pack_signs_mean_abs(x)
        np.testing.assert_array_equal(packed, ref_pack(x))
        expected = np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)
        assert mean.dtype == np.float32 and mean.shape == (3, 1)
        assert np.array_equal(mean.view(np.int32), expected.view(np.int32)), n
    assert K.pack_signs_mean_abs(x, mean_abs=False)[1] is None


@pytest.mark.parametrize('C', [1, 3, 64, 65, 130])
def test_pack_channels_mean_abs_is_numpys(isa, C):
    rng = np.random.default_rng(C)
    x = signed_data(rng, (3, C, 7, 40)) * np.float32(3.7)
    packed, mean = K.pack_channels_mean_abs(x)
    np.testing.assert_array_equal(packed, ref_pack(x, axis=1))
    np.testing.assert_array_equal(packed, K.pack_signs(x, axis=1))
    expected = np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)
    assert np.array_equal(mean.view(np.int32), expected.view(np.int32))
    scale, offset = rng.uniform(-2, 2, (2, C)).astype(np.float32)
    y, packed, mean = K.batch_norm_pack_channels(x, scale, offset)
    y_ref = x * scale.reshape(1, -1, 1, 1) + offset.reshape(1, -1, 1, 1)
    assert np.array_equal(y.view(np.int32), y_ref.view(np.int32))
    np.testing.assert_array_equal(packed, ref_pack(y_ref, axis=1))
    expected = np.mean(np.abs(y_ref), axis=1, keepdims=True, dtype=np.float32)
    assert np.array_equal(mean.view(np.int32), expected.view(np.int32))


def dense_reference(x, W, K_, alpha, b, bias_before, scale, offset):
    """Float mode's arithmetic in numpy, one operation after the other."""
    z = (sgn(x) @ sgn(W)).astype(np.float32)
    if bias_before:
        z += b
    if K_ is not None:
        z *= K_
    if alpha is not None:
        z *= alpha
    if not bias_before:
        z += b
    return z, z * scale + offset


@pytest.mark.parametrize('M,n,N', [(1, 784, 300), (5, 100, 64), (70, 4096, 129), (2, 64, 1)])
@pytest.mark.parametrize('variant', ['plain', 'bias_before', 'no_K', 'no_alpha'])
def test_dense_layer_is_float_modes_arithmetic(isa, threads, M, n, N, variant):
    rng = np.random.default_rng(M * N + n)
    x, W = signed_data(rng, (M, n)), signed_data(rng, (n, N))
    alpha = None if variant == 'no_alpha' else rng.uniform(0.1, 1, N).astype(np.float32)
    b, offset = (rng.standard_normal((2, N)).astype(np.float32))
    scale = rng.uniform(0.5, 2, N).astype(np.float32)
    layer = K.PackedDense(W)
    xp, Kx = K.pack_signs_mean_abs(x, variant != 'no_K')
    z_ref, y_ref = dense_reference(x, W, Kx, alpha, b, variant == 'bias_before', scale, offset)
    for nt in (1, 2):
        K.set_num_threads(nt)
        z, y, yp, yk = layer.dense_layer(xp, Kx, alpha, b, variant == 'bias_before', scale,
                                         offset, next_packed=True, next_mean_abs=True)
        for got, want in ((z, z_ref), (y, y_ref)):
            assert got.dtype == np.float32
            assert np.array_equal(got.view(np.int32), want.view(np.int32))
        np.testing.assert_array_equal(yp, ref_pack(y_ref))
        np.testing.assert_array_equal(yk, np.mean(np.abs(y_ref), axis=1, keepdims=True,
                                                  dtype=np.float32))
        z_only = layer.dense_layer(xp, Kx, alpha, b, variant == 'bias_before')
        np.testing.assert_array_equal(z_only[0], z_ref)
        assert z_only[1:] == (None, None, None)
    with pytest.raises(ValueError):
        layer.dense_layer(xp, next_packed=True)
    with pytest.raises(ValueError):
        layer.dense_layer(xp[:, :0])


CHAINS = {
    # (n_in, [(n_out, scale_input, alpha, bias_before, batch norm after)], ...)
    'mnist': (784, [(300, True, True, False, True), (300, True, True, False, True),
                    (300, True, True, False, False)]),
    'odd': (100, [(130, True, True, True, True), (64, True, False, False, True),
                  (9, False, True, False, True)]),
    'one': (65, [(1, True, True, False, False)]),
}


@pytest.mark.parametrize('M', [1, 3, 70])
@pytest.mark.parametrize('chain', sorted(CHAINS))
def test_dense_chain_is_the_layer_by_layer_path_and_numpy(isa, threads, chain, M):
    # One C call for the whole chain (xk_xnor_dense_chain) against the same layers
    # one call each (PackedDense.dense_layer) and against numpy: bit for bit.
    rng = np.random.default_rng(M + len(chain))
    n_in, spec = CHAINS[chain]
    x = signed_data(rng, (M, n_in))
    layers, n = [], n_in
    for n_out, scale_input, has_alpha, bias_before, bn in spec:
        scale, offset = rng.uniform(0.5, 2, n_out), rng.standard_normal(n_out)
        layers.append(dict(packed=K.PackedDense(signed_data(rng, (n, n_out))),
                           scale_input=scale_input, bias_before_scaling=bias_before,
                           alpha=rng.uniform(0.1, 1, n_out).astype(np.float32)
                           if has_alpha else None,
                           b=rng.standard_normal(n_out).astype(np.float32),
                           scale=scale.astype(np.float32) if bn else None,
                           offset=offset.astype(np.float32) if bn else None))
        n = n_out
    W = [K.unpack_bits(layer['packed'].packed, layer['packed'].n_in, axis=1).T
         for layer in layers]
    for nt in (1, 2):
        K.set_num_threads(nt)
        xp, Kx, outputs = K.DenseChain(layers).run(x)
        np.testing.assert_array_equal(xp, ref_pack(x))
        Kx_ref = np.mean(np.abs(x), axis=1, keepdims=True, dtype=np.float32)
        if layers[0]['scale_input']:
            assert np.array_equal(Kx.view(np.int32), Kx_ref.view(np.int32))
        else:
            assert Kx is None
        inp, inp_packed, inp_K = x, xp, Kx_ref
        for l, (layer, (z, y, yp, yk)) in enumerate(zip(layers, outputs)):
            last = l + 1 == len(layers)
            K_ = inp_K if layer['scale_input'] else None
            z_ref, y_ref = dense_reference(inp, W[l], K_, layer['alpha'], layer['b'],
                                           layer['bias_before_scaling'],
                                           layer['scale'] if layer['scale'] is not None else 1,
                                           layer['offset'] if layer['offset'] is not None else 0)
            assert np.array_equal(z.view(np.int32), z_ref.view(np.int32)), (l, nt)
            one = layer['packed'].dense_layer(
                inp_packed, K_, layer['alpha'], layer['b'], layer['bias_before_scaling'],
                layer['scale'], layer['offset'], next_packed=not last,
                next_mean_abs=not last and layers[l + 1]['scale_input'])
            assert np.array_equal(z.view(np.int32), one[0].view(np.int32))
            if layer['scale'] is None:
                assert y is None and one[1] is None
            else:
                assert np.array_equal(y.view(np.int32), y_ref.view(np.int32))
                assert np.array_equal(y.view(np.int32), one[1].view(np.int32))
            if last:
                assert yp is None and yk is None
                break
            np.testing.assert_array_equal(yp, ref_pack(y_ref))
            np.testing.assert_array_equal(yp, one[2])
            yk_ref = np.mean(np.abs(y_ref), axis=1, keepdims=True, dtype=np.float32)
            if layers[l + 1]['scale_input']:
                assert np.array_equal(yk.view(np.int32), yk_ref.view(np.int32))
                assert np.array_equal(yk, one[3])
            else:
                assert yk is None
            inp, inp_packed, inp_K = y_ref, yp, yk_ref
        # keep_z=False: z not stored where a batch norm follows, everything else the same.
        xp2, Kx2, unstored = K.DenseChain(layers).run(x, keep_z=False)
        np.testing.assert_array_equal(xp2, xp)
        for layer, kept, got in zip(layers, outputs, unstored):
            assert (got[0] is None) == (layer['scale'] is not None)
            for a, b in zip(kept, got):
                if a is not None and b is not None:
                    assert np.array_equal(a.view(np.int32), b.view(np.int32))
                else:
                    assert b is None


def test_dense_chain_reuses_its_outputs_only_when_nobody_holds_them():
    rng = np.random.default_rng(5)
    layers = [dict(packed=K.PackedDense(signed_data(rng, (n, m))), scale_input=True,
                   alpha=None, b=None, scale=np.ones(m, np.float32),
                   offset=np.zeros(m, np.float32)) for n, m in ((70, 40), (40, 20))]
    chain = K.DenseChain(layers)
    x1, x2 = signed_data(rng, (1, 70)), signed_data(rng, (1, 70))
    want1 = [o[0].copy() for o in chain.run(x1)[2]]
    want2 = [o[0].copy() for o in chain.run(x2)[2]]
    assert not np.array_equal(want1[1], want2[1])
    # Arrays held (directly, or through a view of their buffer) are never rewritten.
    held = chain.run(x1)[2]
    flat = held[1][0].reshape(-1)            # a view whose base is the buffer
    held_z = held[1][0]
    del held
    got2 = chain.run(x2)[2]
    np.testing.assert_array_equal(flat, want1[1].reshape(-1))
    np.testing.assert_array_equal(held_z, want1[1])
    np.testing.assert_array_equal(got2[1][0], want2[1])
    assert got2[1][0].base is not flat.base
    del flat, held_z
    # Once nothing is held, the next call writes into the same arrays again.
    last = got2[1][0]
    del got2
    again = chain.run(x1)[2]
    assert again[1][0] is not last or np.array_equal(last, want1[1])
    np.testing.assert_array_equal(again[1][0], want1[1])
    address = again[1][0].ctypes.data
    del again, last
    assert chain.run(x2)[2][1][0].ctypes.data == address


def test_dense_chain_errors():
    rng = np.random.default_rng(3)
    a = dict(packed=K.PackedDense(signed_data(rng, (70, 40))), scale_input=True,
             alpha=None, b=None, scale=np.ones(40, np.float32), offset=np.zeros(40, np.float32))
    b = dict(a, packed=K.PackedDense(signed_data(rng, (41, 5))))
    with pytest.raises(ValueError, match='40 outputs but layer 1 has n_in=41'):
        K.DenseChain([a, b])
    with pytest.raises(ValueError, match='needs its batch norm'):
        K.DenseChain([dict(a, scale=None, offset=None), dict(b, packed=K.PackedDense(
            signed_data(rng, (40, 5))))])
    with pytest.raises(ValueError, match='scale and offset go together'):
        K.DenseChain([dict(a, offset=None)])
    with pytest.raises(ValueError, match='at least one layer'):
        K.DenseChain([])
    with pytest.raises(ValueError, match=r'x must be \(rows, 70\)'):
        K.DenseChain([a]).run(np.zeros((2, 69), np.float32))
    xp, Kx, [(z, y, yp, yk)] = K.DenseChain([a]).run(np.zeros((0, 70), np.float32))
    assert z.shape == y.shape == (0, 40) and yp is None and yk is None


@pytest.mark.parametrize('pool', [None, (2, 2), (3, 2), (1, 3)])
def test_conv_epilogue_is_float_modes_arithmetic(isa, pool):
    rng = np.random.default_rng(7)
    N, F, OH, OW = 3, 5, 7, 9
    p = rng.integers(-300, 300, (N, F, OH, OW)).astype(np.int32)
    Kx = rng.uniform(0, 2, (N, 1, OH, OW)).astype(np.float32)
    alpha, b, scale, offset = rng.uniform(-1, 1, (4, F)).astype(np.float32)
    bias = lambda v: v.reshape(1, -1, 1, 1)
    z_ref = p.astype(np.float32) * Kx
    z_ref *= bias(alpha)
    z_ref += bias(b)
    v = z_ref
    if pool is not None:
        ph, pw = pool
        v = z_ref[:, :, :OH // ph * ph, :OW // pw * pw].reshape(
            N, F, OH // ph, ph, OW // pw, pw).max(axis=(3, 5))
    y_ref = v * bias(scale) + bias(offset)
    z, pooled, y = K.conv_epilogue(p, Kx, alpha, b, pool, scale, offset)
    assert np.array_equal(z.view(np.int32), z_ref.view(np.int32))
    assert np.array_equal(y.view(np.int32), y_ref.view(np.int32))
    if pool is None:
        assert pooled is None
    else:
        np.testing.assert_array_equal(pooled, v)
    z2, _, _ = K.conv_epilogue(p, None, None, b)
    np.testing.assert_array_equal(z2, p.astype(np.float32) + bias(b))


@pytest.mark.parametrize('shape, pool, norm', [
    ((3, 70, 9, 7), (2, 2), True),        # two words per pixel, odd border dropped
    ((2, 128, 16, 16), None, True),       # CIFAR-10's middle convolutions
    ((1, 64, 5, 6), (2, 3), False),       # one image: blocks of rows for two threads
    ((2, 130, 3, 300), None, False),      # rows of v longer than a block (XK_QBLOCK)
    ((2, 5, 7, 7), (3, 3), True),
])
def test_conv_epilogue_pack_is_the_epilogue_then_the_packing(isa, threads, shape, pool, norm):
    # The fused pass never stores z, but its packed signs and mean |v| are those of the
    # last result v of conv_epilogue, and the pooled z and y it stores are its own.
    rng = np.random.default_rng(shape[1])
    N, F, OH, OW = shape
    p = rng.integers(-300, 300, shape).astype(np.int32)
    Kx = rng.uniform(0, 2, (N, 1, OH, OW)).astype(np.float32)
    alpha, b, scale, offset = rng.uniform(-1, 1, (4, F)).astype(np.float32)
    scale, offset = (scale, offset) if norm else (None, None)
    for nt in (1, 2):
        K.set_num_threads(nt)
        for k, a in ((Kx, alpha), (None, None)):
            z, pooled, y = K.conv_epilogue(p, k, a, b, pool, scale, offset)
            v = y if norm else (z if pool is None else pooled)
            packed_ref, mean_ref = K.pack_channels_mean_abs(v)
            kept = tuple(None if r is None else np.full(r.shape, np.nan, np.float32)
                         for r in (pooled, y))
            packed, mean = K.conv_epilogue_pack(p, k, a, b, pool, scale, offset, out=kept)
            np.testing.assert_array_equal(packed, packed_ref)
            np.testing.assert_array_equal(packed, ref_pack(v, axis=1))
            assert np.array_equal(mean.view(np.int32), mean_ref.view(np.int32))
            for got, want in zip(kept, (pooled, y)):
                if want is not None:
                    assert np.array_equal(got.view(np.int32), want.view(np.int32))
            packed2, none = K.conv_epilogue_pack(p, k, a, b, pool, scale, offset, mean_abs=False)
            np.testing.assert_array_equal(packed2, packed_ref)
            assert none is None


def test_batch_norm_pack_channels_can_leave_y_unstored(isa):
    rng = np.random.default_rng(3)
    x = signed_data(rng, (2, 70, 5, 9))
    scale, offset = rng.uniform(-2, 2, (2, 70)).astype(np.float32)
    y, packed, mean = K.batch_norm_pack_channels(x, scale, offset)
    none, packed2, mean2 = K.batch_norm_pack_channels(x, scale, offset, keep_y=False)
    assert none is None
    np.testing.assert_array_equal(packed2, packed)
    assert np.array_equal(mean2.view(np.int32), mean.view(np.int32))


def test_panels_and_tables_start_on_a_cache_line(isa):
    # The products load panels in 32- and 64-byte vectors: none may straddle two lines.
    lib = K.library.get_library()
    rng = np.random.default_rng(2)
    for rows in (1, 40, 1000):
        words = K.pack_signs(signed_data(rng, (rows, 300)))
        panels = lib.panels(words, 1)
        assert panels.ctypes.data % 64 == 0 and panels.dtype == np.uint64
        np.testing.assert_array_equal(panels, lib.panels(words.copy(), 2))
        tables = lib.conv_tables(words, 1)
        assert tables.size == 0 or tables.ctypes.data % 64 == 0


# ------------------------------------------------------------------ threads

def test_thread_counts_give_identical_results(isa, threads):
    rng = np.random.default_rng(6)
    a = signed_data(rng, (203, 777))
    W = signed_data(rng, (777, 150))
    x = signed_data(rng, (4, 19, 13, 12))
    Wc = signed_data(rng, (21, 19, 3, 3))
    results = []
    for nt in (1, 2):
        K.set_num_threads(nt)
        assert K.get_num_threads() == (nt if K.kernel_info()['openmp'] else 1)
        dense = K.PackedDense(W)
        conv = K.PackedConv2D(Wc, stride=(1, 2), pad=(1, 1))
        p = conv.conv_signs(x)
        results.append((K.pack_signs(a), dense.matmul_signs(a), p, K.pack_signs(x, axis=1))
                       + K.pack_channels_mean_abs(x) + K.pack_signs_mean_abs(a)
                       + K.conv_epilogue(p, np.abs(x[:, :1, :, ::2]), np.arange(21.0),
                                         np.ones(21), (2, 2), np.ones(21), np.zeros(21)))
    for r1, r2 in zip(*results):
        np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(results[0][1], np.dot(sgn(a), sgn(W)))
    with pytest.raises(ValueError):
        K.set_num_threads(0)


# ------------------------------------------------------------------ building

def _fresh_build(monkeypatch, tmp_path, compiler):
    tmp_path.mkdir(exist_ok=True)
    monkeypatch.setenv('BINARY_NET_CACHE', str(tmp_path))
    monkeypatch.setenv('BINARY_NET_ISA', 'native')
    monkeypatch.setattr(K.build, 'COMPILER', compiler)
    monkeypatch.setattr(K.library, 'loaded', {})


def test_missing_compiler_raises_kernel_build_error(monkeypatch, tmp_path):
    _fresh_build(monkeypatch, tmp_path, [str(tmp_path / 'no-such-cc')])
    with pytest.raises(K.KernelBuildError) as info:
        K.pack_signs(np.ones((2, 3), np.float32))
    msg = str(info.value)
    assert 'no C compiler' in msg and '\n' not in msg
    assert os.listdir(tmp_path) == []


def test_failing_compiler_raises_kernel_build_error(monkeypatch, tmp_path):
    _fresh_build(monkeypatch, tmp_path, ['false'])      # runs, but never succeeds
    with pytest.raises(K.KernelBuildError) as info:
        K.xnor_matmul(np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64), 1)
    assert '\n' not in str(info.value)
    assert os.listdir(tmp_path) == []                   # no temp files left behind


@pytest.mark.skipif(shutil.which('gcc') is None, reason='needs gcc')
def test_build_falls_back_when_flags_are_refused(monkeypatch, tmp_path):
    """A compiler that refuses -march=native and -fopenmp still gets a working build."""
    cc = tmp_path / 'picky-cc'
    cc.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in -march=native|-fopenmp) '
                  'echo "unsupported option $a" >&2; exit 1;; esac; done\nexec gcc "$@"\n')
    cc.chmod(0o755)
    cache = tmp_path / 'cache'
    _fresh_build(monkeypatch, cache, [str(cc)])
    info = K.kernel_info()
    assert '-march=native' not in info['flags'] and '-fopenmp' not in info['flags']
    assert not info['openmp'] and K.get_num_threads() == 1
    rng = np.random.default_rng(7)
    a, b = signed_data(rng, (9, 130)), signed_data(rng, (70, 130))
    np.testing.assert_array_equal(K.PackedDense(b.T).matmul_signs(a), np.dot(sgn(a), sgn(b).T))


def test_build_cache_and_no_compile_at_import(tmp_path):
    """Import compiles nothing; two processes compiling at once both succeed."""
    env = dict(os.environ, BINARY_NET_CACHE=str(tmp_path), PYTHONPATH=ROOT)
    env.pop('BINARY_NET_ISA', None)
    code = ('import os, sys, numpy as np; from binary_net import kernels as K; '
            'assert not os.listdir(os.environ["BINARY_NET_CACHE"]); '
            'print(K.pack_signs(np.array([1., -1.], np.float32))[0])')
    proc = subprocess.run([sys.executable, '-c', 'import binary_net.kernels'], env=env)
    assert proc.returncode == 0
    assert os.listdir(tmp_path) == []
    # both start with an empty cache, so both may compile; the rename is atomic
    procs = [subprocess.Popen([sys.executable, '-c', code.replace(
        'assert not os.listdir(os.environ["BINARY_NET_CACHE"]); ', '')],
        env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate()[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ['1', '1']
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith('xnor_kernels-') and files[0].endswith('.so')


def test_kernel_info():
    info = K.kernel_info()
    assert info['isa'] in ('avx512-vpopcntdq', 'avx2', 'portable')
    assert os.path.exists(info['path']) and info['panel_width'] >= 1


def test_inner_loop_ceiling(isa):
    """The ceiling loop of bench_matmul counts whole steps of the micro-kernel's tile
    (6 rows of 124 bytes on AVX2, 4 rows of 64 words, 8 256-bit words each, on AVX-512),
    gives the same checksum for the same work, and exists only on those two paths."""
    import ctypes
    from binary_net.kernels.library import ceiling_ns_per_word
    fn = K.library.get_library().function('xk_ceiling')
    sinks = [ctypes.c_uint64(), ctypes.c_uint64()]
    words = [fn(1000, ctypes.byref(s)) for s in sinks]
    expected = {'avx2': 6 * 124 * -(-1000 // 124), 'avx512-vpopcntdq': 4 * 8 * 64 * -(-1000 // 64),
                'portable': 0}[isa]
    assert words == [expected, expected] and sinks[0].value == sinks[1].value
    ceiling = ceiling_ns_per_word(repeat=1, steps=256)
    assert (ceiling is None) == (isa == 'portable')
    assert ceiling is None or ceiling > 0
