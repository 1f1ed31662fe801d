"""Batch normalization against the NumPy twins in ref_pool.py: inference, training (statistics,
moving averages), backward (finite differences), thread invariance and argument validation."""
import numpy as np
import pytest

import cnnc.nn as nn
import gradcheck
import ref_pool as ref

# (shape, data_format): 2-D [N, C], 4-D in both layouts; sizes 1, primes, C not a multiple of 8,
# C larger than one channel block (32) in the NHWC path.
CASES = [
    ((1, 1), "NHWC"), ((7, 3), "NHWC"), ((64, 37), "NCHW"),  # 2-D ignores data_format
    ((1, 1, 1, 1), "NHWC"), ((2, 3, 5, 7), "NHWC"), ((3, 5, 4, 70), "NHWC"),
    ((1, 1, 1, 1), "NCHW"), ((2, 7, 3, 5), "NCHW"), ((3, 13, 4, 1), "NCHW"), ((1, 3, 1, 11), "NCHW"),
]


def _cid(case):
    return f"{case[1]}-{'x'.join(map(str, case[0]))}"


def _channels(shape, layout):
    return shape[-1] if len(shape) == 2 or layout == "NHWC" else shape[1]


def _params(rng, c):
    gamma = rng.uniform(0.5, 2.0, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    mean = rng.standard_normal(c).astype(np.float32)
    var = rng.uniform(0.1, 3.0, c).astype(np.float32)
    return gamma, beta, mean, var


@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_batch_norm_inference(case, rng):
    shape, layout = case
    c = _channels(shape, layout)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    gamma, beta, mean, var = _params(rng, c)
    y = nn.batch_norm(x, gamma, beta, mean, var, epsilon=1e-3, data_format=layout)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, ref.batch_norm(x, gamma, beta, mean, var, 1e-3, layout),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_batch_norm_train(case, rng):
    shape, layout = case
    c = _channels(shape, layout)
    x = (rng.standard_normal(shape) * 2 + 5).astype(np.float32)
    gamma, beta, mm0, mv0 = _params(rng, c)
    mm, mv = mm0.copy(), mv0.copy()
    y, bmean, binvstd = nn.batch_norm_train(x, gamma, beta, mm, mv, momentum=0.9, epsilon=1e-3,
                                            data_format=layout)
    ry, rmean, rvar = ref.batch_norm_train(x, gamma, beta, 1e-3, layout)
    np.testing.assert_allclose(y, ry, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bmean, rmean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(binvstd, 1 / np.sqrt(rvar + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(mm, 0.9 * mm0 + 0.1 * rmean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mv, 0.9 * mv0 + 0.1 * rvar, rtol=1e-5, atol=1e-6)
    # without moving statistics
    y2, m2, i2 = nn.batch_norm_train(x, gamma, beta, data_format=layout)
    np.testing.assert_array_equal(m2, bmean)
    np.testing.assert_array_equal(i2, binvstd)
    np.testing.assert_array_equal(y2, y)


def test_batch_norm_train_large_mean_is_accurate(rng):
    """Two-pass double statistics: a large offset does not destroy the variance."""
    x = (rng.standard_normal((4000, 3)) + 1e4).astype(np.float32)
    _, mean, invstd = nn.batch_norm_train(x, np.ones(3), np.zeros(3), epsilon=0.0)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-7)
    np.testing.assert_allclose(invstd, 1 / x64.std(0), rtol=1e-6)


def test_batch_norm_momentum_extremes(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    mm, mv = np.full(4, 7.0, np.float32), np.full(4, 9.0, np.float32)
    nn.batch_norm_train(x, np.ones(4), np.zeros(4), mm, mv, momentum=1.0)
    np.testing.assert_array_equal(mm, 7.0)
    np.testing.assert_array_equal(mv, 9.0)
    nn.batch_norm_train(x, np.ones(4), np.zeros(4), mm, mv, momentum=0.0)
    np.testing.assert_allclose(mm, x.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mv, x.astype(np.float64).var(0), rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_batch_norm_grad_finite_differences(case, rng):
    shape, layout = case
    c = _channels(shape, layout)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    gamma, beta, _, _ = _params(rng, c)
    eps = 1e-3
    _, bmean, binvstd = nn.batch_norm_train(x, gamma, beta, epsilon=eps, data_format=layout)
    r = rng.standard_normal(shape)
    dx, dgamma, dbeta = nn.batch_norm_grad(x, r.astype(np.float32), gamma, bmean, binvstd, layout)
    assert dx.shape == x.shape and dgamma.shape == (c,) and dbeta.shape == (c,)
    x64, g64, b64 = (a.astype(np.float64) for a in (x, gamma, beta))
    count = min(x.size, 40)
    gradcheck.check_grad(lambda v: ref.batch_norm_train(v, g64, b64, eps, layout)[0], x64, r, dx,
                         rng, count=count, name="batch_norm dx")
    gradcheck.check_grad(lambda v: ref.batch_norm_train(x64, v, b64, eps, layout)[0], g64, r,
                         dgamma, rng, count=c, name="batch_norm dgamma")
    gradcheck.check_grad(lambda v: ref.batch_norm_train(x64, g64, v, eps, layout)[0], b64, r,
                         dbeta, rng, count=c, name="batch_norm dbeta")


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_batch_norm_thread_invariance(layout, threads, rng):
    shape = (4, 70, 9, 11) if layout == "NHWC" else (5, 67, 7, 9)
    c = _channels(shape, layout)
    x = (rng.standard_normal(shape) + 3).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, mean, var = _params(rng, c)

    def run():
        mm, mv = mean.copy(), var.copy()
        y, bm, bi = nn.batch_norm_train(x, gamma, beta, mm, mv, data_format=layout)
        return [nn.batch_norm(x, gamma, beta, mean, var, data_format=layout), y, bm, bi, mm, mv,
                *nn.batch_norm_grad(x, dy, gamma, bm, bi, layout)]

    threads(1)
    r1 = run()
    threads(2)
    r2 = run()
    for a, b in zip(r1, r2):
        assert np.array_equal(a, b)


def test_batch_norm_bad_inputs():
    x = np.zeros((2, 3, 4, 5), dtype=np.float32)
    p = np.ones(5, np.float32)
    with pytest.raises(ValueError, match=r"x must be 2-D \[N, C\] or 4-D.*3-D"):
        nn.batch_norm(x[0], p, p, p, p)
    with pytest.raises(ValueError, match=r"gamma must have shape \(5,\).*\(4,\)"):
        nn.batch_norm(x, np.ones(4), p, p, p)
    q = np.ones(3)
    with pytest.raises(ValueError, match=r"variance must have shape \(3,\).*\(4,\)"):
        nn.batch_norm(x, q, q, q, np.ones(4), data_format="NCHW")
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        nn.batch_norm(x, p, p, p, p, epsilon=-1.0)
    with pytest.raises(TypeError, match="epsilon must be a real number"):
        nn.batch_norm(x, p, p, p, p, epsilon="small")
    with pytest.raises(ValueError, match="data_format must be"):
        nn.batch_norm(x, p, p, p, p, data_format="NWHC")
    with pytest.raises(TypeError, match="x must hold real numbers"):
        nn.batch_norm(x.astype(complex), p, p, p, p)
    with pytest.raises(ValueError, match="x must not be empty"):
        nn.batch_norm(np.zeros((0, 5)), p, p, p, p)
    with pytest.raises(ValueError, match="momentum must be <= 1"):
        nn.batch_norm_train(x, p, p, momentum=1.5)
    with pytest.raises(TypeError, match="moving_mean is updated in place, so it must be a NumPy"):
        nn.batch_norm_train(x, p, p, moving_mean=[0.0] * 5)
    with pytest.raises(TypeError, match="moving_variance .* must have dtype float32.*float64"):
        nn.batch_norm_train(x, p, p, moving_variance=np.ones(5))
    with pytest.raises(TypeError, match="moving_mean .* must be C-contiguous"):
        nn.batch_norm_train(x, p, p, moving_mean=np.ones(10, np.float32)[::2])
    ro = np.ones(5, np.float32)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="moving_mean .* must be writable"):
        nn.batch_norm_train(x, p, p, moving_mean=ro)
    with pytest.raises(ValueError, match=r"moving_variance must have shape \(5,\)"):
        nn.batch_norm_train(x, p, p, moving_variance=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="dy must have x's shape"):
        nn.batch_norm_grad(x, np.zeros((2, 3, 4, 4)), p, p, p)
    with pytest.raises(ValueError, match=r"batch_invstd must have shape \(5,\)"):
        nn.batch_norm_grad(x, x, p, p, np.ones(2))
