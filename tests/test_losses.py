"""cnnc.losses: values against hand/NumPy computations, gradients against central finite
differences (float64), fused softmax/sigmoid gradients against the chain rule, stability, errors."""
import numpy as np
import pytest

from cnnc import losses
from cnnc.losses import (BinaryCrossentropy, CategoricalCrossentropy, MeanAbsoluteError, MeanSquaredError,
                         SparseCategoricalCrossentropy)

EPS = 1e-7


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar function f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f(x)
        x[idx] = old - h
        fm = f(x)
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


def check_grad(loss, y_true, y_pred, sample_weight=None, rtol=1e-4, atol=1e-7):
    got = loss.gradient(y_true, y_pred, sample_weight=sample_weight)
    assert got.dtype == np.float32 and got.shape == np.shape(y_pred)
    want = numeric_grad(lambda p: loss(y_true, p, sample_weight=sample_weight), y_pred)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.fixture
def batch(rng):
    """Four samples of five classes: one-hot targets, probabilities away from the clip bounds, logits."""
    labels = np.array([0, 3, 4, 1])
    y = np.eye(5)[labels]
    z = rng.standard_normal((4, 5)) * 1.5
    return labels, y, softmax(z), z


# ---- categorical crossentropy ------------------------------------------------------------------

def test_categorical_value_by_hand():
    y = np.array([[1.0, 0, 0], [0, 0, 1]])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    want = -(np.log(0.7) + np.log(0.8)) / 2
    assert CategoricalCrossentropy()(y, p) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p), [-np.log(0.7), -np.log(0.8)], rtol=1e-12)
    assert CategoricalCrossentropy(reduction="sum")(y, p) == pytest.approx(2 * want, rel=1e-12)
    np.testing.assert_allclose(CategoricalCrossentropy(reduction="none")(y, p), [-np.log(0.7), -np.log(0.8)])


def test_categorical_normalises_and_clips():
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p = np.array([[2.0, 6.0, 2.0], [0.0, 0.5, 0.5]])      # rows divided by their sums; 0 clipped to 1e-7
    want = (-np.log(0.6) - np.log(EPS)) / 2
    assert CategoricalCrossentropy()(y, p) == pytest.approx(want, rel=1e-9)


def test_categorical_label_smoothing(batch):
    _, y, p, _ = batch
    s = 0.2
    ys = y * (1 - s) + s / 5
    want = np.mean(-np.sum(ys * np.log(p), axis=-1))
    assert CategoricalCrossentropy(label_smoothing=s)(y, p) == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p, label_smoothing=s),
                               -np.sum(ys * np.log(p), axis=-1), rtol=1e-10)


def test_categorical_from_logits(batch):
    _, y, _, z = batch
    logp = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    assert CategoricalCrossentropy(from_logits=True)(y, z) == pytest.approx(np.mean(-np.sum(y * logp, -1)), rel=1e-10)
    s = 0.1
    ys = y * (1 - s) + s / 5
    assert CategoricalCrossentropy(from_logits=True, label_smoothing=s)(y, z) == pytest.approx(
        np.mean(-np.sum(ys * logp, -1)), rel=1e-10)


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.1}, {"from_logits": True},
                                    {"from_logits": True, "label_smoothing": 0.3}, {"reduction": "sum"}])
def test_categorical_gradient_finite_differences(batch, kwargs):
    _, y, p, z = batch
    loss = CategoricalCrossentropy(**kwargs)
    x = z if kwargs.get("from_logits") else p * np.array([1.0, 2.0, 0.5, 1.5])[:, None]   # unnormalised rows too
    check_grad(loss, y, x)


def test_categorical_gradient_zero_where_clipped():
    y = np.array([[1.0, 0.0, 0.0]])
    p = np.array([[1e-9, 0.5, 0.5 - 1e-9]])
    g = CategoricalCrossentropy().gradient(y, p)
    # -log(clip(q0)) is constant in p0 (q0 is clipped): only the normalisation moves
    want = numeric_grad(lambda x: CategoricalCrossentropy()(y, x), p, h=1e-12)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(g)) and abs(g[0, 0]) < 1.0


def test_sample_weight(batch):
    _, y, p, z = batch
    w = np.array([1.0, 0.0, 2.0, 0.5])
    per = -np.sum(y * np.log(p), axis=-1)
    assert CategoricalCrossentropy()(y, p, sample_weight=w) == pytest.approx(np.sum(per * w) / 4, rel=1e-10)
    check_grad(CategoricalCrossentropy(), y, p, sample_weight=w)
    check_grad(CategoricalCrossentropy(from_logits=True), y, z, sample_weight=w[:, None])
    with pytest.raises(ValueError, match=r"sample_weight shape \(3,\)"):
        CategoricalCrossentropy()(y, p, sample_weight=np.ones(3))


# ---- fused gradients ---------------------------------------------------------------------------

def softmax_backward(p, g):
    return p * (g - np.sum(g * p, axis=-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_fused_softmax_gradient_equals_chain_rule(batch, smoothing):
    labels, y, p, z = batch
    loss = CategoricalCrossentropy(label_smoothing=smoothing)
    fused = loss.fused_softmax_gradient(y, p)
    assert fused.dtype == np.float32 and fused.shape == p.shape
    chained = softmax_backward(p, loss.gradient(y, p).astype(np.float64))
    np.testing.assert_allclose(fused, chained, rtol=1e-5, atol=1e-7)
    ys = y * (1 - smoothing) + smoothing / 5
    np.testing.assert_allclose(fused, (p - ys) / 4, rtol=1e-6, atol=1e-8)
    # same as differentiating the from_logits loss
    np.testing.assert_allclose(fused, CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
                               .gradient(y, z), rtol=1e-5, atol=1e-8)
    if smoothing == 0:
        sparse = SparseCategoricalCrossentropy().fused_softmax_gradient(labels, p)
        np.testing.assert_allclose(sparse, fused, rtol=1e-7)


def test_fused_softmax_with_sample_weight(batch):
    _, y, p, _ = batch
    w = np.array([0.5, 1.0, 0.0, 3.0])
    loss = CategoricalCrossentropy()
    np.testing.assert_allclose(loss.fused_softmax_gradient(y, p, sample_weight=w),
                               softmax_backward(p, loss.gradient(y, p, sample_weight=w).astype(np.float64)),
                               rtol=1e-5, atol=1e-7)


def test_fused_softmax_saturated_is_exact():
    # the chained gradient is wrong here (clipping kills it), the fused one is (p - t)/N
    y = np.array([[1.0, 0.0]])
    p = np.array([[1e-12, 1.0 - 1e-12]])
    np.testing.assert_allclose(CategoricalCrossentropy().fused_softmax_gradient(y, p), [[-1.0, 1.0]], atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_fused_sigmoid_gradient_equals_chain_rule(rng, smoothing):
    z = rng.standard_normal((6, 3))
    p = sigmoid(z)
    y = (rng.random((6, 3)) > 0.5).astype(np.float64)
    loss = BinaryCrossentropy(label_smoothing=smoothing)
    fused = loss.fused_sigmoid_gradient(y, p)
    chained = loss.gradient(y, p).astype(np.float64) * p * (1 - p)
    np.testing.assert_allclose(fused, chained, rtol=1e-5, atol=1e-8)
    ys = y * (1 - smoothing) + 0.5 * smoothing
    np.testing.assert_allclose(fused, (p - ys) / 18, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fused, BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
                               .gradient(y, z), rtol=1e-5, atol=1e-8)


def test_fused_not_applicable_returns_none(batch):
    _, y, p, _ = batch
    assert CategoricalCrossentropy(from_logits=True).fused_softmax_gradient(y, p) is None
    assert CategoricalCrossentropy().fused_sigmoid_gradient(y, p) is None
    assert BinaryCrossentropy().fused_softmax_gradient(y, p) is None
    assert BinaryCrossentropy(from_logits=True).fused_sigmoid_gradient(y, p) is None
    assert MeanSquaredError().fused_softmax_gradient(y, p) is None
    assert MeanSquaredError().fused_sigmoid_gradient(y, p) is None


# ---- stability ---------------------------------------------------------------------------------

def test_extreme_logits_are_stable():
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    z = np.array([[1e4, -1e4, 0.0], [1e30, -1e30, 3.0], [-50.0, 2000.0, -2000.0]], dtype=np.float32)
    for loss in (CategoricalCrossentropy(from_logits=True), CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)):
        v = loss(y, z)
        g = loss.gradient(y, z)
        assert np.isfinite(v) and np.all(np.isfinite(g))
    assert CategoricalCrossentropy(from_logits=True)(y, z) == pytest.approx((0 + 2e30 + 4000) / 3, rel=1e-6)
    labels = np.array([0, 1, 2])
    assert SparseCategoricalCrossentropy(from_logits=True)(labels, z) == pytest.approx(
        CategoricalCrossentropy(from_logits=True)(y, z))
    zb = np.array([[1e4, -1e4], [-1e30, 1e30], [80.0, -80.0]], dtype=np.float32)
    yb = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    bce = BinaryCrossentropy(from_logits=True)
    v, g = bce(yb, zb), bce.gradient(yb, zb)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    assert v == pytest.approx((0 + 1e4 + 1e30 + 0 + 80 + 80) / 6, rel=1e-6)
    np.testing.assert_allclose(g, (sigmoid(zb.astype(np.float64)) - yb) / 6, atol=1e-7)


def test_probabilities_at_zero_and_one_are_stable():
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[0.0, 1.0], [0.0, 1.0]])
    for loss in (CategoricalCrossentropy(), BinaryCrossentropy(), CategoricalCrossentropy(label_smoothing=0.1)):
        assert np.isfinite(loss(y, p)) and np.all(np.isfinite(loss.gradient(y, p)))
    assert BinaryCrossentropy()(y, p) == pytest.approx(-np.log(EPS) / 2, rel=1e-6)


# ---- sparse categorical ------------------------------------------------------------------------

@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_agrees_with_categorical(batch, from_logits):
    labels, y, p, z = batch
    x = z if from_logits else p
    dense = CategoricalCrossentropy(from_logits=from_logits)
    sparse = SparseCategoricalCrossentropy(from_logits=from_logits)
    for lab in (labels, labels[:, None], labels.astype(np.float32), labels.astype(np.uint8)):
        assert sparse(lab, x) == pytest.approx(dense(y, x), rel=1e-12)
        np.testing.assert_array_equal(sparse.gradient(lab, x), dense.gradient(y, x))
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels, x, from_logits=from_logits),
                               losses.categorical_crossentropy(y, x, from_logits=from_logits), rtol=1e-12)
    check_grad(sparse, labels, x)


def test_sparse_higher_rank():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 3, 3, 4))
    labels = rng.integers(0, 4, size=(2, 3, 3))
    y = np.eye(4)[labels]
    loss = SparseCategoricalCrossentropy(from_logits=True)
    assert loss(labels, z) == pytest.approx(CategoricalCrossentropy(from_logits=True)(y, z))
    assert losses.sparse_categorical_crossentropy(labels, z, from_logits=True).shape == (2, 3, 3)
    check_grad(loss, labels, z)


def test_sparse_label_errors(batch):
    _, _, p, _ = batch
    loss = SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"y_true.*class id 5.*\[0, 4\]"):
        loss(np.array([0, 1, 5, 2]), p)
    with pytest.raises(ValueError, match=r"y_true.*class id -1.*\[0, 4\]"):
        loss.gradient(np.array([0, -1, 2, 2]), p)
    with pytest.raises(ValueError, match="y_true must hold integer class ids"):
        loss(np.array([0, 1.5, 2, 2]), p)
    with pytest.raises(ValueError, match=r"y_true shape \(3,\) does not match y_pred shape \(4, 5\)"):
        loss(np.array([0, 1, 2]), p)
    with pytest.raises(ValueError, match=r"y_true shape \(4, 5\) does not match y_pred shape \(4, 5\)"):
        loss(np.eye(5)[[0, 1, 2, 3]], p)


# ---- binary crossentropy -----------------------------------------------------------------------

def test_binary_value_by_hand():
    y = np.array([[1.0, 0.0], [0.0, 0.0]])
    p = np.array([[0.9, 0.2], [0.4, 0.5]])
    per = [-(np.log(0.9) + np.log(0.8)) / 2, -(np.log(0.6) + np.log(0.5)) / 2]
    assert BinaryCrossentropy()(y, p) == pytest.approx(np.mean(per), rel=1e-12)
    np.testing.assert_allclose(losses.binary_crossentropy(y, p), per, rtol=1e-12)
    s = 0.2
    ys = y * (1 - s) + 0.5 * s
    want = np.mean(-(ys * np.log(p) + (1 - ys) * np.log(1 - p)))
    assert BinaryCrossentropy(label_smoothing=s)(y, p) == pytest.approx(want, rel=1e-12)


def test_binary_from_logits(rng):
    z = rng.standard_normal((5, 2)) * 3
    y = rng.random((5, 2))
    q = sigmoid(z)
    want = np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)))
    assert BinaryCrossentropy(from_logits=True)(y, z) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.1}, {"from_logits": True},
                                    {"from_logits": True, "label_smoothing": 0.4}])
def test_binary_gradient_finite_differences(rng, kwargs):
    y = (rng.random((4, 3)) > 0.5).astype(np.float64)
    x = rng.standard_normal((4, 3)) if kwargs.get("from_logits") else rng.uniform(0.05, 0.95, (4, 3))
    check_grad(BinaryCrossentropy(**kwargs), y, x)
    check_grad(BinaryCrossentropy(**kwargs), y, x, sample_weight=np.array([1.0, 2.0, 0.0, 0.5]))


def test_binary_label_shapes():
    p = np.array([[0.9], [0.2], [0.6]])
    y = np.array([1.0, 0.0, 0.0])
    loss = BinaryCrossentropy()
    want = -(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3
    assert loss(y, p) == pytest.approx(want)                   # (N,) labels against (N, 1) outputs
    assert loss(y[:, None], p[:, 0]) == pytest.approx(want)    # and (N, 1) labels against (N,)
    assert loss(y, p[:, 0]) == pytest.approx(want)
    assert loss.gradient(y, p).shape == (3, 1) and loss.gradient(y, p[:, 0]).shape == (3,)
    np.testing.assert_allclose(loss.gradient(y, p)[:, 0], loss.gradient(y, p[:, 0]))
    # 1-D outputs are one value per sample, so per-sample weights apply
    w = np.array([1.0, 0.0, 0.0])
    assert loss(y, p[:, 0], sample_weight=w) == pytest.approx(-np.log(0.9) / 3)
    with pytest.raises(ValueError, match=r"y_true shape \(2,\) does not match y_pred shape \(3, 1\)"):
        loss(np.array([1.0, 0.0]), p)


# ---- regression losses -------------------------------------------------------------------------

def test_mse_mae_values_and_gradients(rng):
    y = rng.standard_normal((4, 3))
    p = rng.standard_normal((4, 3))
    assert MeanSquaredError()(y, p) == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    assert MeanAbsoluteError()(y, p) == pytest.approx(np.mean(np.abs(p - y)), rel=1e-12)
    np.testing.assert_allclose(losses.mse(y, p), np.mean((p - y) ** 2, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(losses.mae(y, p), np.mean(np.abs(p - y), axis=-1), rtol=1e-12)
    assert losses.mean_squared_error is losses.mse and losses.MAE is losses.mean_absolute_error
    np.testing.assert_allclose(MeanSquaredError().gradient(y, p), 2 * (p - y) / 12, rtol=1e-6)
    np.testing.assert_allclose(MeanAbsoluteError().gradient(y, p), np.sign(p - y) / 12, rtol=1e-6)
    check_grad(MeanSquaredError(), y, p)
    check_grad(MeanAbsoluteError(), y, p)
    assert MeanAbsoluteError().gradient([[1.0, 2.0]], [[1.0, 3.0]]).tolist() == [[0.0, 0.5]]


def test_image_shaped_outputs(rng):
    y = rng.standard_normal((2, 4, 4, 3))
    p = rng.standard_normal((2, 4, 4, 3))
    assert losses.mse(y, p).shape == (2, 4, 4)
    assert MeanSquaredError()(y, p) == pytest.approx(np.mean((p - y) ** 2))
    w = np.array([1.0, 3.0])                       # per-sample weights broadcast over H, W
    per = np.mean((p - y) ** 2, axis=-1)
    assert MeanSquaredError()(y, p, sample_weight=w) == pytest.approx(np.sum(per * w[:, None, None]) / 32)
    check_grad(MeanSquaredError(), y[:, :2, :2], p[:, :2, :2], sample_weight=w)


def test_float32_inputs(batch):
    _, y, p, z = batch
    loss = CategoricalCrossentropy(from_logits=True)
    assert isinstance(loss(y.astype(np.float32), z.astype(np.float32)), float)
    assert loss.gradient(y.astype(np.float32), z.astype(np.float32)).dtype == np.float32


# ---- errors, lookup, config --------------------------------------------------------------------

def test_shape_and_argument_errors(batch):
    _, y, p, _ = batch
    with pytest.raises(ValueError, match=r"y_true shape \(4, 4\) does not match y_pred shape \(4, 5\)"):
        CategoricalCrossentropy()(y[:, :4], p)
    with pytest.raises(ValueError, match=r"y_true shape \(4,\) does not match y_pred shape \(4, 5\).*Sparse"):
        CategoricalCrossentropy().gradient(np.array([0, 1, 2, 3]), p)
    with pytest.raises(ValueError, match=r"y_true shape \(4, 4\) does not match y_pred shape \(4, 5\)"):
        MeanSquaredError()(y[:, :4], p)
    with pytest.raises(ValueError, match="y_pred must not be empty"):
        MeanSquaredError()(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="y_pred must have at least 1 dimension"):
        MeanSquaredError()(1.0, 2.0)
    with pytest.raises(TypeError, match="y_pred must hold real numbers"):
        MeanSquaredError()([["a"]], [["b"]])
    with pytest.raises(ValueError, match="label_smoothing"):
        CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        BinaryCrossentropy(label_smoothing=-0.1)
    with pytest.raises(TypeError, match="from_logits"):
        BinaryCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match="reduction"):
        MeanSquaredError(reduction="mean_of_everything")
    with pytest.raises(ValueError, match="reduction='none'"):
        MeanSquaredError(reduction="none").gradient(y, p)


def test_get():
    cases = {"categorical_crossentropy": CategoricalCrossentropy, "CategoricalCrossentropy": CategoricalCrossentropy,
             "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
             "binary_crossentropy": BinaryCrossentropy, "mse": MeanSquaredError, "MSE": MeanSquaredError,
             "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
             "mean_absolute_error": MeanAbsoluteError, "MeanAbsoluteError": MeanAbsoluteError}
    for name, cls in cases.items():
        assert type(losses.get(name)) is cls
    loss = BinaryCrossentropy(from_logits=True)
    assert losses.get(loss) is loss
    assert type(losses.get(MeanSquaredError)) is MeanSquaredError
    assert type(losses.get(losses.categorical_crossentropy)) is CategoricalCrossentropy
    assert type(losses.get(losses.mae)) is MeanAbsoluteError
    with pytest.raises(ValueError) as err:
        losses.get("hinge")
    assert "unknown loss 'hinge'" in str(err.value)
    for choice in ("binary_crossentropy", "categorical_crossentropy", "mae", "mse", "sparse_categorical_crossentropy"):
        assert choice in str(err.value)
    with pytest.raises(ValueError, match="subclass cnnc.losses.Loss"):
        losses.get(lambda t, p: 0.0)


@pytest.mark.parametrize("loss", [CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                                  SparseCategoricalCrossentropy(from_logits=True, name="sce"),
                                  BinaryCrossentropy(label_smoothing=0.05, reduction="sum"),
                                  MeanSquaredError(), MeanAbsoluteError(reduction="none")])
def test_config_round_trip(loss):
    cfg = loss.get_config()
    again = type(loss).from_config(cfg)
    assert type(again) is type(loss) and again.get_config() == cfg
    ser = losses.serialize(loss)
    assert ser == {"class_name": type(loss).__name__, "config": cfg}
    assert losses.deserialize(ser).get_config() == cfg
    assert losses.get(ser).get_config() == cfg


def test_default_names_and_keras_config_keys():
    assert CategoricalCrossentropy().name == "categorical_crossentropy"
    assert SparseCategoricalCrossentropy().name == "sparse_categorical_crossentropy"
    assert BinaryCrossentropy().name == "binary_crossentropy"
    assert MeanSquaredError().name == "mean_squared_error"
    assert MeanAbsoluteError().name == "mean_absolute_error"
    cfg = {"name": "cce", "reduction": "sum_over_batch_size", "from_logits": True, "label_smoothing": 0.0,
           "axis": -1, "dtype": None}
    assert CategoricalCrossentropy.from_config(cfg).from_logits
    with pytest.raises(ValueError, match="axis"):
        CategoricalCrossentropy.from_config(dict(cfg, axis=1))
