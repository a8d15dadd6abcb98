"""The forward binary convolution of training by XNOR-popcount (theano_ext.XnorCorr)."""
import numpy as np
import pytest
import theano
import theano.tensor as T

from binary_net import binarize, theano_ext


def reference(x, w, pad, stride):
    """Cross-correlation of sign(x) (zero-padded after binarizing) with the flipped
    sign(w): what conv2d(sign(x), sign(w)) computes, in integer numpy loops."""
    sx = np.where(x >= 0, 1, -1).astype(np.int64)
    sw = np.where(w >= 0, 1, -1).astype(np.int64)[:, :, ::-1, ::-1]
    (ph, pw), (sh, sv) = pad, stride
    P = np.pad(sx, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, wd = P.shape
    f, _, fh, fw = sw.shape
    oh, ow = (h - fh) // sh + 1, (wd - fw) // sv + 1
    out = np.zeros((n, f, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = P[:, :, i * sh:i * sh + fh, j * sv:j * sv + fw]
            out[:, :, i, j] = np.einsum('ncuv,fcuv->nf', patch, sw)
    return out


@pytest.mark.parametrize('channels, pad, stride', [(3, (1, 1), (1, 1)), (70, (1, 1), (1, 1)),
                                                  (64, (0, 0), (2, 2)), (130, (2, 1), (1, 2))])
def test_fused_binary_convolution_is_exact(channels, pad, stride):
    x, w = T.tensor4(), T.tensor4()
    y = T.nnet.conv2d(binarize.sign(x), binarize.sign(w), border_mode=pad, subsample=stride)
    with theano_ext.enabled(True):
        fused = theano_ext.function([x, w], y)
    ops = [type(n.op).__name__ for n in fused.maker.fgraph.toposort()]
    assert 'XnorCorr' in ops and not any('CorrMM' in op for op in ops)
    rng = np.random.RandomState(channels)
    X = rng.randn(3, channels, 9, 8).astype(np.float32)
    X[0, 0, :2] = 0.0                                   # a real zero binarizes to +1
    W = rng.randn(5, channels, 3, 3).astype(np.float32)
    got = fused(X, W)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, reference(X, W, pad, stride))


def test_not_used_when_an_operand_is_not_binary():
    x, w = T.tensor4(), T.tensor4()
    y = T.nnet.conv2d(x, binarize.sign(w), border_mode=(1, 1))
    with theano_ext.enabled(True):
        f = theano_ext.function([x, w], y)
    ops = [type(n.op).__name__ for n in f.maker.fgraph.toposort()]
    assert 'XnorCorr' not in ops
    rng = np.random.RandomState(0)
    X, W = rng.randn(2, 4, 5, 5).astype(np.float32), rng.randn(3, 4, 3, 3).astype(np.float32)
    plain = theano.function([x, w], y, mode=theano.compile.get_default_mode()
                            .excluding('binary_net_fused'))
    np.testing.assert_allclose(f(X, W), plain(X, W), rtol=1e-5, atol=1e-5)
