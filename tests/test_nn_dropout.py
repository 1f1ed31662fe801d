"""Dropout: counter-based masks (depend only on seed and position), scaling, backward, validation."""
import numpy as np
import pytest

import cnnc.nn as nn
import gradcheck


def test_dropout_scaling_and_mask(rng):
    x = rng.standard_normal((3, 5, 7, 11)).astype(np.float32)
    y, mask = nn.dropout(x, 0.3, seed=42)
    assert y.shape == x.shape and mask.shape == x.shape
    assert y.dtype == np.float32 and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    np.testing.assert_allclose(y, x * mask / (1 - 0.3), rtol=1e-6, atol=0)
    assert np.all(y[mask == 0] == 0)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_keep_fraction(rate):
    x = np.ones(200_003, dtype=np.float32)
    y, mask = nn.dropout(x, rate, seed=7)
    keep = mask.mean()
    # binomial standard deviation is <= 0.0012 here; allow 5 sigma
    assert abs(keep - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / x.size) + 1e-9
    if rate == 0.0:
        assert mask.all() and np.array_equal(y, x)
    # E[y] == E[x] for inverted dropout
    assert abs(y.mean() - 1.0) < 0.02


def test_dropout_seed_determinism(threads):
    x = np.arange(100_000, dtype=np.float32).reshape(100, 1000)
    threads(1)
    y1, m1 = nn.dropout(x, 0.5, seed=123)
    threads(2)
    y2, m2 = nn.dropout(x, 0.5, seed=123)
    assert np.array_equal(m1, m2) and np.array_equal(y1, y2)
    _, m3 = nn.dropout(x, 0.5, seed=124)
    assert not np.array_equal(m1, m3)
    assert 0.45 < (m1 != m3).mean() < 0.55  # independent masks disagree on about half
    # the mask depends on (seed, flat position) only: not on the shape or the values
    _, m4 = nn.dropout(np.zeros(x.size), 0.5, seed=123)
    assert np.array_equal(m4, m1.reshape(-1))
    _, m5 = nn.dropout(np.zeros(500), 0.5, seed=123)
    assert np.array_equal(m5, m1.reshape(-1)[:500])
    dx1 = nn.dropout_grad(x, m1, 0.5)
    threads(1)
    assert np.array_equal(nn.dropout_grad(x, m1, 0.5), dx1)


def test_dropout_large_seeds():
    x = np.ones(1000, dtype=np.float32)
    _, a = nn.dropout(x, 0.5, 2**64 - 1)
    _, b = nn.dropout(x, 0.5, np.uint64(2**64 - 1))
    _, c = nn.dropout(x, 0.5, 0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_dropout_grad(rng):
    x = rng.standard_normal((4, 9, 5)).astype(np.float32)
    rate = 0.25
    _, mask = nn.dropout(x, rate, seed=5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = nn.dropout_grad(dy, mask, rate)
    np.testing.assert_allclose(dx, dy * mask / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(nn.dropout_grad(dy, mask.astype(bool), rate), dx)
    np.testing.assert_array_equal(nn.dropout_grad(dy, mask.astype(np.int64) * 3, rate), dx)
    # finite differences of the (linear, fixed-mask) forward twin
    m64 = mask.astype(np.float64)
    gradcheck.check_grad(lambda v: v * m64 / (1 - rate), x.astype(np.float64), dy.astype(np.float64),
                         nn.dropout_grad(dy, mask, rate), rng, count=20, name="dropout")


def test_dropout_shapes():
    y, m = nn.dropout(3.0, 0.0, 1)
    assert y.shape == () and m.shape == () and y == 3.0
    y, m = nn.dropout(np.zeros((0, 3)), 0.5, 1)
    assert y.shape == (0, 3) and m.shape == (0, 3)
    assert nn.dropout_grad(np.zeros((0, 3)), m, 0.5).shape == (0, 3)
    y, m = nn.dropout([[1, 2], [3, 4]], 0.5, 9)  # integer lists are converted
    assert y.dtype == np.float32 and y.shape == (2, 2)


def test_dropout_bad_inputs():
    x = np.ones((2, 3), dtype=np.float32)
    for rate in (1.0, -0.1, 1.5, float("nan"), 1 - 1e-12):
        with pytest.raises(ValueError, match="rate must be"):
            nn.dropout(x, rate, 0)
    with pytest.raises(TypeError, match="rate must be a real number"):
        nn.dropout(x, "0.5", 0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer < 2\\*\\*64"):
        nn.dropout(x, 0.5, -1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer < 2\\*\\*64"):
        nn.dropout(x, 0.5, 2**64)
    with pytest.raises(TypeError, match="seed must be an integer"):
        nn.dropout(x, 0.5, 1.5)
    with pytest.raises(TypeError, match="x must hold real numbers"):
        nn.dropout(np.array(["a"]), 0.5, 0)
    with pytest.raises(ValueError, match="rate must be"):
        nn.dropout_grad(x, np.ones((2, 3), np.uint8), 1.0)
    with pytest.raises(ValueError, match=r"mask must have dy's shape \(2, 3\), received \(3, 2\)"):
        nn.dropout_grad(x, np.ones((3, 2), np.uint8), 0.5)
    with pytest.raises(TypeError, match="mask must be a boolean or integer array"):
        nn.dropout_grad(x, np.ones((2, 3)), 0.5)
