"""nn.dense, nn.dense_grad and nn.bias_add against the float64 twins."""
import numpy as np
import pytest

import cnnc.nn as nn
import gradcheck
import reference as ref

# x shape, units
DENSE_CASES = [
    ((1, 1), 1),
    ((1, 7), 5),
    ((5, 13), 17),
    ((3, 17), 1),
    ((7, 1), 33),
    ((17, 64), 100),
    ((2, 3, 5), 7),  # rank 3: applied on the last axis
    ((3, 1, 2, 13), 5),  # rank 4
    ((33, 257), 16),
]
DENSE_IDS = ["x".join(map(str, s)) + f"-u{u}" for s, u in DENSE_CASES]


def _dense_inputs(rng, shape, units, bias=True):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((shape[-1], units)).astype(np.float32)
    b = rng.standard_normal(units).astype(np.float32) if bias else None
    return x, w, b


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape,units", DENSE_CASES, ids=DENSE_IDS)
def test_dense_forward(shape, units, bias, rng):
    x, w, b = _dense_inputs(rng, shape, units, bias)
    y = nn.dense(x, w, b)
    assert y.dtype == np.float32 and y.shape == shape[:-1] + (units,)
    ref.assert_close(y, ref.dense(x, w, b), mag=ref.dense_mag(x, w, b))


@pytest.mark.parametrize("activation", ref.FUSED_ACTIVATIONS + ["softmax"])
def test_dense_fused_activation(activation, rng):
    x, w, b = _dense_inputs(rng, (5, 2, 13), 7)
    y = nn.dense(x, w, b, activation=activation)
    assert y.dtype == np.float32 and y.shape == (5, 2, 7)
    mag = ref.dense_mag(x, w, b)
    if activation == "softmax":
        # softmax is 1-Lipschitz in the max norm of its input shifts: |dy_i| <= max_j |dz_j|,
        # so scale each row's tolerance by that row's largest magnitude
        mag = np.broadcast_to(mag.max(axis=-1, keepdims=True), mag.shape)
    ref.assert_close(y, ref.dense(x, w, b, activation=activation), mag=mag, atol=1e-6,
                     lipschitz=ref.activation_lipschitz(activation))


def test_dense_softmax_rows_sum_to_one(rng):
    x, w, b = _dense_inputs(rng, (9, 13), 17)
    y = nn.dense(x * 100, w, b, activation="softmax")  # large logits: still finite
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    assert np.allclose(y.sum(axis=-1, dtype=np.float64), 1.0, atol=1e-5)


def test_dense_unknown_activation(rng):
    x, w, b = _dense_inputs(rng, (2, 3), 4)
    with pytest.raises(ValueError, match="relu"):
        nn.dense(x, w, b, activation="gelu_but_wrong")


@pytest.mark.parametrize("shape,units", DENSE_CASES, ids=DENSE_IDS)
def test_dense_grad_vs_twin(shape, units, rng):
    x, w, _ = _dense_inputs(rng, shape, units, bias=False)
    dy = rng.standard_normal(shape[:-1] + (units,)).astype(np.float32)
    dx, dw, db = nn.dense_grad(x, w, dy)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (units,)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    want, mags = ref.dense_grad(x, w, dy), ref.dense_grad_mag(x, w, dy)
    for got, r, m, name in zip((dx, dw, db), want, mags, ("dx", "dw", "db")):
        ref.assert_close(got, r, mag=m, name=name)


@pytest.mark.parametrize("shape,units", [((5, 13), 7), ((2, 3, 5), 4), ((1, 1), 1)])
def test_dense_grad_finite_differences(shape, units, rng):
    x, w, b = _dense_inputs(rng, shape, units)
    r = rng.standard_normal(shape[:-1] + (units,)).astype(np.float32).astype(np.float64)
    dx, dw, db = nn.dense_grad(x, w, r.astype(np.float32))
    mdx, mdw, mdb = ref.dense_grad_mag(x, w, r)
    gradcheck.check_grad(lambda t: ref.dense(t, w, b), x, r, dx, rng, mag=mdx, name="dx")
    gradcheck.check_grad(lambda t: ref.dense(x, t, b), w, r, dw, rng, mag=mdw, name="dw")
    gradcheck.check_grad(lambda t: ref.dense(x, w, t), b, r, db, rng, mag=mdb, name="db")


def test_dense_dtypes_and_views(rng):
    x, w, b = _dense_inputs(rng, (6, 10), 5)
    base = nn.dense(x, w, b)
    assert np.array_equal(nn.dense(x.astype(np.float64), w.astype(np.float64), b), base)
    big = np.zeros((12, 10), np.float32)
    big[::2] = x
    assert np.array_equal(nn.dense(big[::2], np.asfortranarray(w), b), base)
    xi, wi = rng.integers(-5, 6, (6, 10)), rng.integers(-5, 6, (10, 5))
    yi = nn.dense(xi, wi, np.arange(5))
    assert yi.dtype == np.float32 and np.array_equal(yi, xi @ wi + np.arange(5))


# bias_add: (shape, data_format)
BIAS_CASES = [
    ((1, 1), "NHWC"),
    ((7, 17), "NHWC"),
    ((3, 5, 7, 17), "NHWC"),
    ((1, 13, 1, 3), "NHWC"),
    ((3, 17, 5, 7), "NCHW"),
    ((1, 3, 13, 1), "NCHW"),
    ((2, 5, 3), "NHWC"),  # rank 3, channels last
]


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "selu", "hard_swish"])
@pytest.mark.parametrize("shape,data_format", BIAS_CASES,
                         ids=["x".join(map(str, s)) + "-" + f for s, f in BIAS_CASES])
def test_bias_add(shape, data_format, activation, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    c = shape[1] if data_format == "NCHW" else shape[-1]
    b = rng.standard_normal(c).astype(np.float32)
    y = nn.bias_add(x, b, activation=activation, data_format=data_format)
    assert y.dtype == np.float32 and y.shape == shape
    want = ref.bias_add(x, b, activation, data_format)
    mag = ref.bias_add(np.abs(x), np.abs(b), None, data_format)
    # one float32 addition: error <= eps32/2 * |x + b| <= eps32 * mag
    ref.assert_close(y, want, mag=mag, atol=1e-6, lipschitz=ref.activation_lipschitz(activation))
    assert not np.shares_memory(y, x)


def test_bias_add_2d_ignores_layout_and_exact(rng):
    x = rng.integers(-100, 100, (5, 3)).astype(np.float32)
    b = np.array([1, 2, 3], np.float32)
    assert np.array_equal(nn.bias_add(x, b), x + b)
    assert np.array_equal(nn.bias_add(x, b, activation="relu"), np.maximum(x + b, 0))


def test_bias_add_softmax_channels_last(rng):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    y = nn.bias_add(x, b, activation="softmax")
    mag = np.broadcast_to(np.abs(x).max(axis=-1, keepdims=True) + np.abs(b).max(), x.shape)
    ref.assert_close(y, ref.bias_add(x, b, "softmax"), mag=mag, atol=1e-6, lipschitz=2.0)
    with pytest.raises(ValueError, match="softmax|activation"):
        nn.bias_add(np.ones((2, 3, 4, 4)), np.ones(3), activation="softmax", data_format="NCHW")


def test_bias_add_unknown_activation(rng):
    with pytest.raises(ValueError, match="relu"):
        nn.bias_add(np.ones((2, 3)), np.ones(3), activation="nope")
