"""The gradients of a convolution with a +-1 operand (binary_net.kernels.conv_grad, on
Intel AMX where it runs) against Theano's CorrMM gradients and the float64 numpy
references; the Theano ops SignCorrGradWeights / SignCorrGradInputs and the rewrite
that picks them."""
import numpy as np
import pytest
import theano
import theano.tensor as T
from theano.tensor.nnet import corr

from binary_net import binarize, kernels, theano_ext
from binary_net.kernels import reference

AMX = kernels.amx_available()
needs_amx = pytest.mark.skipif(not AMX, reason='Intel AMX does not run here')

# (N, C, H, W, F, kh, kw, ph, pw): padding to 32 channels and filters, odd sizes,
# a row length that is no multiple of 16, 1x1 and non-square kernels
GEOMETRIES = [(2, 3, 5, 7, 5, 3, 3, 1, 1), (3, 16, 8, 8, 16, 3, 3, 1, 1),
              (2, 33, 6, 9, 40, 3, 3, 0, 0), (1, 5, 4, 4, 3, 1, 1, 0, 0),
              (2, 8, 7, 6, 9, 2, 3, 1, 2), (2, 64, 16, 16, 64, 3, 3, 1, 1),
              (4, 6, 11, 5, 7, 5, 5, 2, 2)]


def signs(rng, shape, zeros=False):
    s = np.sign(rng.randn(*shape)).astype(np.float32)
    if zeros:
        s[rng.rand(*shape) < 0.1] = 0
    return s


def case(geometry, seed=0):
    n, c, h, w, f, kh, kw, ph, pw = geometry
    rng = np.random.RandomState(seed)
    x = signs(rng, (n, c, h, w), zeros=True)
    wt = signs(rng, (f, c, kh, kw))
    gz = (rng.randn(n, f, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1)
          * np.exp(rng.randn(1, f, 1, 1) * 3)).astype(np.float32)     # scales 1e-4..1e4
    return x, wt, gz, (kh, kw), (ph, pw)


def theano_grads(x, w, gz, pad):
    """Theano's CorrMM_gradWeights / gradInputs in float64 (an independent implementation)."""
    xv, wv, gv = T.dtensor4(), T.dtensor4(), T.dtensor4()
    gw = corr.CorrMM_gradWeights(border_mode=pad)(xv, gv, shape=w.shape[2:])
    gx = corr.CorrMM_gradInputs(border_mode=pad)(wv, gv, shape=x.shape[2:])
    fn = theano.function([xv, wv, gv], [gw, gx], mode=theano.Mode(optimizer=None))
    return fn(*(a.astype(np.float64) for a in (x, w, gz)))


@pytest.mark.parametrize('geometry', GEOMETRIES[:5])
def test_numpy_references_are_theanos_gradients(geometry):
    x, w, gz, size, pad = case(geometry)
    gw, gx = theano_grads(x, w, gz, pad)
    np.testing.assert_allclose(reference.conv_grad_weights_reference(x, gz, size, pad), gw,
                               rtol=1e-6, atol=1e-6 * np.abs(gw).max())
    np.testing.assert_allclose(reference.conv_grad_inputs_reference(w, gz, pad), gx,
                               rtol=1e-6, atol=1e-6 * np.abs(gx).max())


def assert_float32_sum(got, exact, terms):
    """Each entry within the error bound of a float32 sum of ``terms`` exact products
    of this size (a float32 GEMM's): ``terms * 2**-24 * max|term|`` per entry, and
    normwise within 1e-6."""
    assert got.dtype == np.float32 and got.shape == exact.shape
    scale = np.abs(exact).max()
    assert np.abs(got - exact).max() <= terms * 2. ** -24 * scale
    assert np.linalg.norm(got - exact) <= 1e-6 * np.linalg.norm(exact)


@needs_amx
@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_amx_gradients_match_the_float64_references(geometry):
    x, w, gz, size, pad = case(geometry)
    n, c, _, _, f, kh, kw = geometry[:7]
    assert_float32_sum(kernels.sign_conv_grad_weights(x, gz, size, pad),
                       reference.conv_grad_weights_reference(x, gz, size, pad),
                       3 * n * gz.shape[2] * gz.shape[3])
    assert_float32_sum(kernels.sign_conv_grad_inputs(w, gz, pad),
                       reference.conv_grad_inputs_reference(w, gz, pad), 3 * f * kh * kw)


@needs_amx
@pytest.mark.parametrize('value', [1 + 2. ** -23, -3.3e38, 1e-30, -7.006e-33, 0.1])
def test_a_single_term_is_exact(value):
    """One nonzero gradient entry: every output is exactly +-value or 0 (the three
    BF16 parts of a float sum back to it exactly)."""
    x, w, _, size, pad = case((2, 5, 6, 6, 4, 3, 3, 1, 1))
    gz = np.zeros((2, 4, 6, 6), np.float32)
    gz[1, 2, 3, 4] = value
    np.testing.assert_array_equal(kernels.sign_conv_grad_weights(x, gz, size, pad),
                                  reference.conv_grad_weights_reference(x, gz, size, pad))
    np.testing.assert_array_equal(kernels.sign_conv_grad_inputs(w, gz, pad),
                                  reference.conv_grad_inputs_reference(w, gz, pad))


@needs_amx
def test_infinities_and_nans_propagate():
    x, w, gz, size, pad = case((2, 5, 6, 6, 4, 3, 3, 1, 1))
    gz[0, 1, 2, 2], gz[1, 3, 0, 5] = np.inf, np.nan
    with np.errstate(invalid='ignore'):
        for got, want in [(kernels.sign_conv_grad_weights(x, gz, size, pad),
                           reference.conv_grad_weights_reference(x, gz, size, pad)),
                          (kernels.sign_conv_grad_inputs(w, gz, pad),
                           reference.conv_grad_inputs_reference(w, gz, pad))]:
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
            np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))


@needs_amx
def test_same_bits_on_any_thread_count():
    x, w, gz, size, pad = case(GEOMETRIES[5])
    try:
        results = []
        for threads in (1, 2, 3):
            kernels.set_num_threads(threads)
            results.append((kernels.sign_conv_grad_weights(x, gz, size, pad),
                            kernels.sign_conv_grad_inputs(w, gz, pad)))
    finally:
        kernels.set_num_threads(None)       # OpenMP's default again
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_without_amx_the_functions_are_the_references(monkeypatch):
    monkeypatch.setenv('BINARY_NET_AMX', '0')
    assert not kernels.amx_available()
    x, w, gz, size, pad = case(GEOMETRIES[0])
    np.testing.assert_array_equal(
        kernels.sign_conv_grad_weights(x, gz, size, pad),
        reference.conv_grad_weights_reference(x, gz, size, pad).astype(np.float32))
    np.testing.assert_array_equal(
        kernels.sign_conv_grad_inputs(w, gz, pad),
        reference.conv_grad_inputs_reference(w, gz, pad).astype(np.float32))


@pytest.mark.parametrize('isa', ['avx2', 'portable'])
def test_the_other_code_paths_have_no_amx(isa):
    """Only the native path is compiled for AMX; on the others both gradients are
    the references."""
    x, w, gz, size, pad = case(GEOMETRIES[0])
    try:
        kernels.use_isa(isa)
        assert not kernels.amx_available()
        got = kernels.sign_conv_grad_inputs(w, gz, pad)
    finally:
        kernels.use_isa(None)
    np.testing.assert_array_equal(
        got, reference.conv_grad_inputs_reference(w, gz, pad).astype(np.float32))


def test_shapes_that_do_not_fit_are_one_line_errors():
    x, w, gz, size, pad = case(GEOMETRIES[0])
    with pytest.raises(ValueError, match='does not fit'):
        kernels.sign_conv_grad_weights(x, gz[:, :, 1:], size, pad)
    with pytest.raises(ValueError, match='does not fit'):
        kernels.sign_conv_grad_inputs(w, gz[:, 1:], pad)
    with pytest.raises(ValueError, match='must be 4-D'):
        kernels.sign_conv_grad_inputs(w[0], gz, pad)


@pytest.mark.parametrize('geometry', [GEOMETRIES[0], GEOMETRIES[2]])
def test_theano_ops_compute_corrmms_gradients(geometry):
    x, w, gz, size, pad = case(geometry)
    xv, wv, gv = T.ftensor4(), T.ftensor4(), T.ftensor4()
    ops = [theano_ext.SignCorrGradWeights(pad)(xv, gv), theano_ext.SignCorrGradInputs(pad)(wv, gv)]
    fn = theano.function([xv, wv, gv], ops + [o.shape for o in ops])
    gw, gx, gw_shape, gx_shape = fn(x, w, gz)
    want_w, want_x = theano_grads(x, w, gz, pad)
    assert tuple(gw_shape) == w.shape and tuple(gx_shape) == x.shape
    assert_float32_sum(gw, want_w, 3 * gz.shape[0] * gz.shape[2] * gz.shape[3])
    assert_float32_sum(gx, want_x, 3 * w.shape[0] * size[0] * size[1])
    with pytest.raises(TypeError, match='float32'):
        theano_ext.SignCorrGradInputs(pad)(T.dtensor4(), gv)


def test_the_rewrite_picks_them_for_binary_operands_only():
    """In a binary convolution's gradient graph, both CorrMM gradients become the AMX
    ops where AMX runs; the weight gradient of a float input stays Theano's."""
    xv = T.ftensor4()
    w = theano.shared(np.random.RandomState(0).randn(8, 4, 3, 3).astype(np.float32))
    sx, sw = binarize.sign(xv), binarize.sign(w)
    y_bin = T.nnet.conv2d(sx, sw, border_mode=(1, 1))
    y_float = T.nnet.conv2d(xv, sw, border_mode=(1, 1))
    cost = (y_bin ** 2).sum() + (y_float ** 2).sum()
    with theano_ext.enabled(True):
        fn = theano_ext.function([xv], T.grad(cost, [xv, w]))
    names = [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]
    assert names.count('SignCorrGradWeights') == (1 if AMX else 0)
    assert names.count('SignCorrGradInputs') == (2 if AMX else 0)
