"""The fused C ops of binary_net.theano_ext against numpy, and the graph rewrite.

Every op must compute exactly what the Theano expression it replaces computes
(the rewrite is only allowed to change speed), so most checks are bitwise.
"""
import numpy as np
import pytest
import theano
import theano.tensor as T

from binary_net import binarize, theano_ext
from binary_net.theano_ext import AbsSum, FastElemwise, FastSum, Scale, XnorDot
from binary_net.theano_ext.scalar import VectorSgn

SHAPES = [(1, 1), (3, 5), (7, 1), (1, 9), (64, 64), (65, 257), (300, 17), (513, 700)]


def ops_in(f):
    return [node.op for node in f.maker.fgraph.toposort()]


def compile_plain(inputs, outputs):
    with theano_ext.enabled(False):
        return theano.function(inputs, outputs)


def compile_fused(inputs, outputs):
    with theano_ext.enabled(True):
        return theano.function(inputs, outputs, mode=theano_ext.fused_mode())


def awkward(rng, shape, dtype):
    """Values with exact zeros, negative zeros, ones and large magnitudes."""
    x = rng.randn(*shape) * rng.choice([1e-3, 1, 50], size=shape)
    flat = x.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    flat[5::13] = np.sign(flat[5::13] + 0.5)
    return x.astype(dtype)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('axis', [0, 1])
def test_abs_sum_equals_theano_sum_of_abs(dtype, axis):
    x = T.matrix(dtype=dtype)
    expr = T.sum(abs(x), axis=axis, acc_dtype='float64')
    plain = compile_plain([x], expr)
    fused = compile_fused([x], expr)
    assert any(isinstance(op, AbsSum) for op in ops_in(fused))
    assert not any(isinstance(op, AbsSum) for op in ops_in(plain))
    rng = np.random.RandomState(0)
    for shape in SHAPES:
        X = awkward(rng, shape, dtype)
        got, want = fused(X), plain(X)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got, np.abs(X.astype(np.float64)).sum(axis=axis),
                                   rtol=1e-6)


@pytest.mark.parametrize('axis', [0, 1])
def test_sign_and_alpha_come_from_one_pass(axis):
    W = T.matrix()
    sign = binarize.sign(W)
    alpha = T.mean(abs(W), axis=axis)
    plain = compile_plain([W], [sign, alpha])
    fused = compile_fused([W], [sign, alpha])
    fused_ops = ops_in(fused)
    assert any(isinstance(op, AbsSum) and op.with_sign for op in fused_ops)
    assert not any(isinstance(getattr(op, 'scalar_op', None), binarize.ScalarSign)
                   for op in fused_ops)
    rng = np.random.RandomState(1)
    for shape in SHAPES:
        X = awkward(rng, shape, theano.config.floatX)
        (s1, a1), (s2, a2) = fused(X), plain(X)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(s1, np.where(X >= 0, 1, -1))   # sign(-0.0) = +1


def test_gradients_are_those_of_the_straightforward_graph():
    """theano.grad is taken before the rewrite: the fused graph computes the same
    gradients, through sign (straight-through) and alpha alike."""
    W = T.matrix()
    C = T.matrix()
    loss = T.sum(binarize.sign(W) * C) + T.sum(binarize.weight_scale(W) * C[0])
    grad = theano.grad(loss, W)
    plain = compile_plain([W, C], grad)
    fused = compile_fused([W, C], grad)
    rng = np.random.RandomState(2)
    X = awkward(rng, (6, 5), theano.config.floatX)
    Cv = rng.randn(6, 5).astype(theano.config.floatX)
    np.testing.assert_array_equal(fused(X, Cv), plain(X, Cv))


def test_abs_sum_gradient():
    for op in (AbsSum(0), AbsSum(1)):
        theano.gradient.verify_grad(op, [np.random.RandomState(3).randn(4, 3) + 0.3],
                                    rng=np.random.RandomState(4))


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_xnor_dot_is_exact(dtype):
    a, b = T.matrix(dtype=dtype), T.matrix(dtype=dtype)
    f = theano.function([a, b], XnorDot()(a, b))
    rng = np.random.RandomState(5)
    for m, k, n in [(1, 1, 1), (3, 5, 7), (2, 63, 65), (5, 64, 64), (7, 65, 129),
                    (4, 200, 3), (100, 784, 300), (9, 1000, 130)]:
        A = np.where(rng.rand(m, k) < 0.5, -1, 1).astype(dtype)
        B = np.where(rng.rand(k, n) < 0.5, -1, 1).astype(dtype)
        got = f(A, B)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, A.astype(np.float64) @ B)
        # non-contiguous operands
        np.testing.assert_array_equal(f(np.asfortranarray(A), B[:, ::-1]),
                                      A.astype(np.float64) @ B[:, ::-1])


def test_binary_forward_product_uses_xnor_dot():
    x, W = T.matrix(), T.matrix()
    out = T.dot(binarize.sign(x), binarize.sign(W)) * binarize.weight_scale(W)
    fused = compile_fused([x, W], out)
    plain = compile_plain([x, W], out)
    assert any(isinstance(op, XnorDot) for op in ops_in(fused))
    rng = np.random.RandomState(6)
    X = awkward(rng, (10, 130), theano.config.floatX)
    Wv = awkward(rng, (130, 70), theano.config.floatX)
    np.testing.assert_array_equal(fused(X, Wv), plain(X, Wv))


def test_real_valued_products_stay_blas():
    x, W = T.matrix(), T.matrix()
    fused = compile_fused([x, W], T.dot(x, binarize.sign(W)))
    assert not any(isinstance(op, XnorDot) for op in ops_in(fused))


def test_scale():
    x, s = T.matrix(), T.scalar()
    f = theano.function([x, s], Scale()(x, s))
    X = awkward(np.random.RandomState(7), (33, 65), theano.config.floatX)
    s_value = np.asarray(0.1, dtype=theano.config.floatX)
    np.testing.assert_array_equal(f(X, s_value), s_value * X)


def test_duplicated_gemm_is_shared():
    """Theano folds a constant into a second copy of a GEMM whose result is used
    elsewhere too; the rewrite computes the GEMM once and scales it."""
    a, b = T.matrix(), T.matrix()
    d = T.dot(a, b)
    outs = [0.1 * d, T.sqr(d)]
    plain = compile_plain([a, b], outs)
    fused = compile_fused([a, b], outs)
    count = lambda f, name: sum(type(op).__name__ == name for op in ops_in(f))  # noqa: E731
    assert count(plain, 'Dot22Scalar') == 1 and count(plain, 'Dot22') == 1
    assert count(fused, 'Dot22Scalar') == 0 and count(fused, 'Dot22Into') == 1
    rng = np.random.RandomState(8)
    A = rng.randn(40, 30).astype(theano.config.floatX)
    B = rng.randn(30, 20).astype(theano.config.floatX)
    for got, want in zip(fused(A, B), plain(A, B)):
        np.testing.assert_array_equal(got, want)


ELEMWISE_CASES = [
    # (expression builder, input dtypes)
    (lambda x, y, s: T.clip(x + (-73.9 * s * y) / (0.5 * (1e-8 + T.sqrt(abs(y)))), -1, 1),
     ('float32', 'float32', 'float32')),
    (lambda x, y, s: 0.9 * x + 0.1 * y * s, ('float64', 'float64', 'float64')),
    (lambda x, y, s: T.cast(T.lt(x, y), 'float32') * s, ('float32', 'float32', 'float32')),
    (lambda x, y, s: x * T.cast(y, 'float32') + s, ('float32', 'int32', 'float32')),
    (lambda x, y, s: T.switch(T.ge(x, 0), x, y) * s, ('float32', 'float32', 'float32')),
]


@pytest.mark.parametrize('case', range(len(ELEMWISE_CASES)))
def test_fast_elemwise_matches_theano(case):
    build, dtypes = ELEMWISE_CASES[case]
    x = T.matrix(dtype=dtypes[0])
    y = T.matrix(dtype=dtypes[1])
    s = T.scalar(dtype=dtypes[2])
    expr = build(x, y, s)
    plain = compile_plain([x, y, s], expr)
    fused = compile_fused([x, y, s], expr)
    assert any(isinstance(op, FastElemwise) for op in ops_in(fused))
    rng = np.random.RandomState(9)
    for shape in [(1, 1), (3, 4), (1000, 300), (0, 5)]:
        X = awkward(rng, shape, dtypes[0]) if shape[0] else np.zeros(shape, dtypes[0])
        Y = (rng.randn(*shape) * 3).astype(dtypes[1])
        S = np.asarray(0.7, dtype=dtypes[2])
        np.testing.assert_array_equal(fused(X, Y, S), plain(X, Y, S))
        # non-contiguous operands take the same path through a contiguous copy
        if shape[0] > 1:
            np.testing.assert_array_equal(fused(X[::-1], Y[::-1], S), plain(X[::-1], Y[::-1], S))


BROADCAST_CASES = [
    # (expression of x (N, C, H, W), v (C,), k (N, 1, H, W), s scalar), shapes (N, C, H, W)
    lambda x, v, k, s: x * v.dimshuffle('x', 0, 'x', 'x') + s * k,              # batch norm
    lambda x, v, k, s: (x * T.cast(T.le(abs(x), 1), 'float32')                 # STE + K
                        + s * k * T.sgn(x) * v.dimshuffle('x', 0, 'x', 'x')),
    lambda x, v, k, s: (x - v.dimshuffle('x', 0, 'x', 'x')) / (k + 2.5) - s,
    lambda x, v, k, s: T.switch(T.ge(k, 0), x, v.dimshuffle('x', 0, 'x', 'x')) * s,
]


@pytest.mark.parametrize('case', range(len(BROADCAST_CASES)))
def test_fast_elemwise_broadcasting_matches_theano(case):
    """Inputs broadcast along some axes (per channel, per position) run in the
    grouped loop and give Theano's own results bit for bit."""
    x, k = T.tensor4(), T.TensorType(theano.config.floatX, (False, True, False, False))()
    v, s = T.vector(), T.scalar()
    expr = BROADCAST_CASES[case](x, v, k, s)
    plain = compile_plain([x, v, k, s], expr)
    fused = compile_fused([x, v, k, s], expr)
    fast = [op for op in ops_in(fused) if isinstance(op, FastElemwise)]
    assert fast
    rng = np.random.RandomState(11)
    for shape in [(2, 3, 4, 5), (50, 64, 8, 8), (1, 1, 1, 7), (3, 1, 2, 2), (0, 3, 2, 2)]:
        N, C, H, W = shape
        X = (rng.randn(*shape) * 2).astype(theano.config.floatX)
        V = rng.randn(C).astype(theano.config.floatX)
        K = rng.randn(N, 1, H, W).astype(theano.config.floatX)
        S = np.asarray(0.3, dtype=theano.config.floatX)
        np.testing.assert_array_equal(fused(X, V, K, S), plain(X, V, K, S))
        if N > 1:
            np.testing.assert_array_equal(fused(X[::-1], V, K[::-1], S),
                                          plain(X[::-1], V, K[::-1], S))


SGN_CASES = [
    lambda x, y: T.sgn(x - y),                                      # alone
    lambda x, y: x * T.cast(T.le(abs(y), 1), x.dtype) + y * T.sgn(x),   # inside a composite
    lambda x, y: T.sgn(x) * T.sgn(y) + T.sgn(x + y),               # several, nested
]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('case', range(len(SGN_CASES)))
def test_fast_elemwise_sgn_is_theanos_bit_for_bit(case, dtype):
    """FastElemwise swaps Theano's sgn for VectorSgn (branch-free C): the same bits
    for +-0, NaNs of either sign and any payload, infinities and subnormals."""
    x, y = T.matrix(dtype=dtype), T.matrix(dtype=dtype)
    expr = SGN_CASES[case](x, y)
    plain = compile_plain([x, y], expr)
    fused = compile_fused([x, y], expr)
    fast = [op for op in ops_in(fused) if isinstance(op, FastElemwise)]
    scalar = fast[0].elemwise.scalar_op if fast else None
    inner = [n.op for n in scalar.fgraph.apply_nodes] if hasattr(scalar, 'fgraph') else [scalar]
    assert any(isinstance(op, VectorSgn) for op in inner)
    assert not any(type(op) is theano.scalar.Sgn for op in inner)
    rng = np.random.RandomState(12)
    bits = np.uint32 if dtype == 'float32' else np.uint64
    tiny = np.finfo(dtype).tiny
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, tiny / 4, -tiny / 4,
                        1.0, -1.0, 3e-30, -7.5], dtype)
    odd_nan = np.array([np.nan], dtype).view(bits) | bits(1)      # a NaN with a payload
    special = np.concatenate([special, odd_nan.view(dtype), (-odd_nan.view(dtype))])
    for shape in [(1, 1), (7, 13), (300, 257)]:
        X = (rng.randn(*shape) * 2).astype(dtype)
        Y = (rng.randn(*shape) * 2).astype(dtype)
        X.flat[:min(X.size, special.size)] = special[:X.size]
        Y.flat[::3] = special[np.arange(Y.flat[::3].size) % special.size]
        got, want = fused(X, Y), plain(X, Y)
        np.testing.assert_array_equal(got.view(bits), want.view(bits))


def test_fast_elemwise_broadcasting_rejects_mismatched_shapes():
    x, v = T.tensor4(), T.vector()
    fused = compile_fused([x, v], x * v.dimshuffle('x', 0, 'x', 'x') + 1)
    assert any(isinstance(op, FastElemwise) for op in ops_in(fused))
    with pytest.raises(ValueError):
        fused(np.ones((2, 3, 4, 4), theano.config.floatX), np.ones(4, theano.config.floatX))


def test_fast_elemwise_in_place_update_of_shared_variable():
    rng = np.random.RandomState(10)
    start = rng.uniform(-1, 1, (300, 200)).astype(theano.config.floatX)
    results = []
    for fused in (False, True):
        W = theano.shared(start.copy())
        g = T.matrix()
        with theano_ext.enabled(fused):
            f = theano_ext.function([g], [], updates=[(W, T.clip(W - 0.3 * g, -1, 1))])
        for step in range(3):
            f(np.full((300, 200), 0.5 * (step + 1), dtype=theano.config.floatX))
        results.append(W.get_value())
        if fused:
            assert any(isinstance(op, FastElemwise) and op.destroy_map for op in ops_in(f))
    np.testing.assert_array_equal(results[0], results[1])


def test_fast_elemwise_rejects_mismatched_shapes_like_theano():
    x, y = T.matrix(), T.matrix()
    fused = compile_fused([x, y], x * y + 1)
    with pytest.raises(ValueError):
        fused(np.ones((3, 4), theano.config.floatX), np.ones((4, 3), theano.config.floatX))


def test_switch_off():
    x = T.matrix()
    expr = T.sum(abs(x), axis=0, acc_dtype='float64')
    with theano_ext.enabled(False):
        assert not theano_ext.is_enabled()
        f = theano.function([x], expr)
    assert theano_ext.is_enabled()
    assert not any(isinstance(op, AbsSum) for op in ops_in(f))
    mode = theano.compile.get_default_mode().excluding('binary_net_fused')
    g = theano.function([x], expr, mode=mode)
    assert not any(isinstance(op, AbsSum) for op in ops_in(g))


def test_clipped_update_and_its_alpha_come_from_one_pass():
    """binary_updates' W <- clip(W + step) and xalpha <- mean |W| (per column)."""
    results = []
    for fused in (False, True):
        W = theano.shared(np.linspace(-1.2, 1.2, 513 * 300).reshape(513, 300)
                          .astype(theano.config.floatX))
        xalpha = theano.shared(np.zeros(300, dtype=theano.config.floatX))
        g = T.matrix()
        new_W = T.clip(W - 0.37 * g / (1e-3 + T.sqrt(abs(g))), -1, 1)
        with theano_ext.enabled(fused):
            f = theano_ext.function([g], [], updates=[(W, new_W),
                                                      (xalpha, binarize.weight_scale(new_W))])
        for step in range(3):
            f(np.random.RandomState(step).randn(513, 300).astype(theano.config.floatX))
        results.append((W.get_value(), xalpha.get_value()))
        if fused:
            ops = ops_in(f)
            assert any(isinstance(op, FastElemwise) and op.abs_sum_of is not None for op in ops)
            assert not any(isinstance(op, AbsSum) for op in ops)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_other_theano_programs_are_not_rewritten():
    """Importing the package (and its ops) leaves everyone else's theano.function alone.

    A plain function of expressions the rewrites would replace compiles to the same
    graph as with the package's rewrites excluded, and to the fused graph only in
    the package's own mode.
    """
    import binary_net.layers  # noqa: F401  (what loading a model or a shared cache imports)
    x, w, g = T.matrix(), T.matrix(), T.matrix()
    W = theano.shared(np.zeros((5, 4), dtype=theano.config.floatX))
    exprs = [T.sum(abs(x), axis=0, acc_dtype='float64'),
             T.dot(binarize.sign(x), binarize.sign(w)),
             T.dot(x, w)]
    with theano_ext.enabled(True):
        plain = theano.function([x, w], exprs)
        user = theano.function([g], [], updates=[(W, T.clip(W - 0.3 * g, -1, 1))])
        ours = theano.function([x, w], exprs, mode=theano_ext.fused_mode())
        excluded = theano.function(
            [x, w], exprs, mode=theano.compile.get_default_mode().excluding('binary_net_fused'))
    fused_types = (AbsSum, FastElemwise, Scale, XnorDot, theano_ext.Dot22Into)
    for f in (plain, user):
        assert not any(isinstance(op, fused_types) for op in ops_in(f))
    assert [type(op) for op in ops_in(plain)] == [type(op) for op in ops_in(excluded)]
    assert any(isinstance(op, AbsSum) for op in ops_in(ours))
    assert any(isinstance(op, theano_ext.Dot22Into) for op in ops_in(ours))
    X = np.random.RandomState(3).randn(6, 5).astype(theano.config.floatX)
    Wv = np.random.RandomState(4).randn(5, 4).astype(theano.config.floatX)
    for a, b in zip(plain(X, Wv), ours(X, Wv)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('axis,shape', [
    ((0, 2, 3), (50, 16, 8, 8)),     # batch norm's per-channel sums
    ((1,), (4, 16, 5, 5)),            # a sum over channels (K's mean)
    ((0,), (100, 300)),               # column sums (dense batch norm)
    ((1,), (30, 1000)),               # row sums
    ((0, 1), (7, 9)),                 # everything
    ((1, 3), (3, 5, 4, 6)),           # alternating groups
    ((0, 2, 3), (0, 4, 3, 3)),        # an empty batch
    ((0, 2, 3), (2, 1, 1, 9)),        # axes of length 1
])
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_fast_sum_matches_theano(axis, shape, dtype):
    """Float64-accumulated sums run as FastSum and agree with Theano's to float64
    rounding before the cast."""
    x = T.TensorType(dtype, (False,) * len(shape))()
    expr = T.sum(x, axis=axis, acc_dtype='float64')
    plain = compile_plain([x], expr)
    fused = compile_fused([x], expr)
    assert any(isinstance(op, FastSum) for op in ops_in(fused))
    assert not any(type(op).__name__ == 'Sum' for op in ops_in(fused))
    rng = np.random.RandomState(12)
    X = (rng.randn(*shape) * 3 + 1).astype(dtype)
    got, want = fused(X), plain(X)
    assert got.shape == want.shape and got.dtype == want.dtype
    exact = X.astype(np.float64).sum(axis=axis)
    rtol = 1e-6 if dtype == 'float32' else 1e-12
    np.testing.assert_allclose(got, exact, rtol=rtol, atol=rtol * np.abs(X).sum())
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(X).sum())
    if X.size and shape[0] > 1:
        np.testing.assert_allclose(fused(X[::-1]), exact if axis[0] == 0 else plain(X[::-1]),
                                   rtol=rtol, atol=rtol * np.abs(X).sum())


@pytest.mark.parametrize('ws,stride,pad', [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))])
def test_parallel_pooling_is_theanos_own_bit_for_bit(ws, stride, pad):
    """Max-pooling and its gradient (overlapping windows too) run with OpenMP and
    give Theano's serial results exactly; windows that tile the image take
    TiledMaxPoolGrad."""
    from theano.tensor.signal.pool import pool_2d
    x = T.tensor4()
    y = pool_2d(x, ws=ws, stride=stride, pad=pad, ignore_border=True, mode='max')
    outs = [y, T.grad((y ** 2).sum(), x)]
    plain = compile_plain([x], outs)
    fused = compile_fused([x], outs)
    names = {type(op).__name__ for op in ops_in(fused)}
    if theano_ext.cop.openmp_supported():
        grad_op = 'TiledMaxPoolGrad' if ws == stride and not any(pad) else 'ParallelMaxPoolGrad'
        assert {'ParallelPool', grad_op} <= names
        assert not {'Pool', 'MaxPoolGrad'} & names
    rng = np.random.RandomState(13)
    for shape in [(6, 5, 9, 8), (1, 1, 4, 4), (50, 16, 16, 16)]:
        X = rng.randn(*shape).astype(theano.config.floatX)
        X[0, 0, :2, :2] = 1.5           # ties inside one window
        for got, want in zip(fused(X), plain(X)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('ws', [(2, 2), (3, 2), (1, 4)])
def test_tiled_max_pool_grad_is_theanos_bit_for_bit(ws):
    """TiledMaxPoolGrad (C and numpy) against Theano's MaxPoolGrad on images whose
    size the window does not divide, ties, equal planes and -0 gradients."""
    from theano.tensor.signal import pool
    x, z, gz = T.tensor4(), T.tensor4(), T.tensor4()
    theirs = theano.function([x, z, gz], pool.MaxPoolGrad(ignore_border=True)(
        x, z, gz, ws, ws, (0, 0)), mode=theano.compile.mode.Mode(linker='c'))
    ours = theano_ext.TiledMaxPoolGrad(ws)(x, z, gz)
    ours_c = theano.function([x, z, gz], ours, mode=theano.compile.mode.Mode(linker='c'))
    ours_py = theano.function([x, z, gz], ours, mode=theano.compile.mode.Mode(linker='py'))
    maxpool = theano.function([x], pool.Pool(ignore_border=True)(x, ws, ws, (0, 0)))
    rng = np.random.RandomState(17)
    for shape in [(3, 4, 7, 9), (2, 1, 8, 8), (1, 2, ws[0], ws[1])]:
        X = rng.randint(-3, 4, size=shape).astype(theano.config.floatX)  # many ties
        X[0, 0] = 2.0                                    # a constant plane
        Z = maxpool(X)
        G = rng.randn(*Z.shape).astype(X.dtype)
        G.flat[::3] = -0.0
        want = theirs(X, Z, G)
        assert np.abs(want).sum() > 0
        for got in (ours_c(X, Z, G), ours_py(X, Z, G)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            assert np.array_equal(np.signbit(got), np.signbit(want))
    with pytest.raises(ValueError, match='shapes'):
        ours_c(np.zeros((1, 1, 4, 4), 'float32'), np.zeros((1, 1, 3, 2), 'float32'),
               np.zeros((1, 1, 3, 2), 'float32'))
