"""Layers: outputs and gradients against cnnc.nn ops and NumPy, shapes, configs and errors."""
import numpy as np
import pytest

import cnnc
import cnnc.nn as nn
from cnnc import layers, models


@pytest.fixture(autouse=True)
def _seed():
    cnnc.utils.set_random_seed(1234)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_conv2d_matches_nn_op_forward_and_backward(rng):
    layer = layers.Conv2D(5, (3, 2), strides=(2, 1), padding="same", activation="relu", dilation_rate=1)
    x = _rand(rng, 2, 7, 6, 3)
    y = layer(x, training=True)
    k, b = layer.params["kernel"], layer.params["bias"]
    assert k.shape == (3, 2, 3, 5) and b.shape == (5,)
    np.testing.assert_array_equal(y, nn.conv2d(x, k, b, strides=(2, 1), padding="same", activation="relu"))
    dy = _rand(rng, *y.shape)
    dx = layer.backward(dy)
    dz = nn.relu_grad(nn.conv2d(x, k, b, strides=(2, 1), padding="same"), dy)
    rdx, rdw, rdb = nn.conv2d_grad(x, k, dz, strides=(2, 1), padding="same")
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_array_equal(layer.grads["kernel"], rdw)
    np.testing.assert_array_equal(layer.grads["bias"], rdb)


def test_conv2d_channels_first_equals_channels_last(rng):
    last = layers.Conv2D(4, 3, padding="same", activation="tanh", groups=2)
    first = layers.Conv2D(4, 3, padding="same", activation="tanh", groups=2, data_format="channels_first")
    x = _rand(rng, 2, 6, 5, 6)
    y_last = last(x, training=True)
    first.build((None, 6, 6, 5))
    first.set_weights(last.get_weights())  # the kernel layout is the same for both formats
    y_first = first(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), training=True)
    np.testing.assert_allclose(y_first.transpose(0, 2, 3, 1), y_last, rtol=1e-5, atol=1e-6)
    dy = _rand(rng, *y_last.shape)
    dx_last = last.backward(dy)
    dx_first = first.backward(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(dx_first.transpose(0, 2, 3, 1), dx_last, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.grads["kernel"], last.grads["kernel"], rtol=1e-4, atol=1e-5)


def test_depthwise_conv2d_is_per_channel(rng):
    layer = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False)
    x = _rand(rng, 2, 5, 5, 3)
    y = layer(x)
    k = layer.params["depthwise_kernel"]
    assert k.shape == (3, 3, 3, 2) and y.shape == (2, 5, 5, 6)
    for c in range(3):
        for m in range(2):
            ref = nn.conv2d(x[..., c:c + 1], k[:, :, c:c + 1, m:m + 1], padding="same")
            np.testing.assert_allclose(y[..., c * 2 + m:c * 2 + m + 1], ref, rtol=1e-5, atol=1e-6)


def test_dense_on_higher_rank_and_softmax(rng):
    layer = layers.Dense(4, activation="softmax")
    x = _rand(rng, 3, 2, 5)
    y = layer(x)
    assert y.shape == (3, 2, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, nn.softmax(x @ layer.params["kernel"] + layer.params["bias"]), rtol=1e-5)


@pytest.mark.parametrize("cls,kw", [
    (layers.MaxPooling2D, dict(pool_size=2)),
    (layers.MaxPooling2D, dict(pool_size=3, strides=2, padding="same")),
    (layers.AveragePooling2D, dict(pool_size=(2, 3), padding="same")),
    (layers.MaxPool2D, dict(pool_size=2, data_format="channels_first")),
])
def test_pooling_layers_match_ops(cls, kw, rng):
    layer = cls(**kw)
    x = _rand(rng, 2, 7, 6, 3)
    y = layer(x, training=True)
    fmt = "NCHW" if kw.get("data_format") == "channels_first" else "NHWC"
    op = nn.max_pool2d if issubclass(cls, layers.MaxPooling2D) else nn.avg_pool2d
    grad = nn.max_pool2d_grad if issubclass(cls, layers.MaxPooling2D) else nn.avg_pool2d_grad
    okw = dict(pool_size=kw["pool_size"], strides=kw.get("strides"), padding=kw.get("padding", "valid"),
               data_format=fmt)
    np.testing.assert_array_equal(y, op(x, **okw))
    dy = _rand(rng, *y.shape)
    np.testing.assert_array_equal(layer.backward(dy), grad(x, dy, **okw))
    assert layer.compute_output_shape((None,) + x.shape[1:]) == (None,) + y.shape[1:]


@pytest.mark.parametrize("cls", [layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D])
def test_global_pooling(cls, rng):
    x = _rand(rng, 2, 4, 5, 3)
    y = cls()(x)
    ref = x.mean(axis=(1, 2)) if cls is layers.GlobalAveragePooling2D else x.max(axis=(1, 2))
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    assert cls(keepdims=True)(x).shape == (2, 1, 1, 3)


def test_batch_normalization_training_and_inference(rng):
    layer = layers.BatchNormalization(momentum=0.9)
    x = _rand(rng, 4, 3, 3, 5) * 2 + 1
    y = layer(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=1e-2)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    y_inf = layer(x, training=False)
    mm, mv = layer.params["moving_mean"], layer.params["moving_variance"]
    np.testing.assert_allclose(y_inf, (x - mm) / np.sqrt(mv + 1e-3), rtol=1e-4, atol=1e-5)
    assert layer.count_params() == 20 and len(layer.trainable_weights) == 2


def test_frozen_batch_normalization_runs_in_inference_mode(rng):
    layer = layers.BatchNormalization(trainable=False)
    x = _rand(rng, 4, 5)
    before = layer.params["moving_mean"].copy() if layer.built else None
    y = layer(x, training=True)
    assert before is None
    np.testing.assert_array_equal(layer.params["moving_mean"], np.zeros(5, np.float32))
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-5)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(dx, np.full_like(x, 1 / np.sqrt(1 + 1e-3)), rtol=1e-5)


def test_dropout_training_only(rng):
    layer = layers.Dropout(0.5)
    x = np.ones((64, 32), np.float32)
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = layer(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y > 0).mean() < 0.7
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, y)


def test_flatten_reshape_padding_roundtrip(rng):
    x = _rand(rng, 2, 3, 4, 5)
    f = layers.Flatten()
    assert f(x).shape == (2, 60)
    np.testing.assert_array_equal(f.backward(f(x)), x)
    fc = layers.Flatten(data_format="channels_first")
    np.testing.assert_array_equal(fc(x), np.moveaxis(x, 1, -1).reshape(2, -1))
    np.testing.assert_array_equal(fc.backward(fc(x)), x)
    r = layers.Reshape((4, -1))
    assert r(x).shape == (2, 4, 15)
    np.testing.assert_array_equal(r.backward(r(x)), x)
    z = layers.ZeroPadding2D(((1, 2), (0, 3)))
    y = z(x)
    assert y.shape == (2, 6, 7, 5)
    np.testing.assert_array_equal(z.backward(y), x)


@pytest.mark.parametrize("layer,fn", [
    (layers.ReLU(), lambda x: np.maximum(x, 0)),
    (layers.ReLU(max_value=6.0), lambda x: np.clip(x, 0, 6)),
    (layers.ReLU(negative_slope=0.1, threshold=0.5), lambda x: np.where(x >= 0.5, x, 0.1 * (x - 0.5))),
    (layers.LeakyReLU(), lambda x: np.where(x > 0, x, 0.3 * x)),
    (layers.ELU(alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    (layers.Activation("tanh"), np.tanh),
    (layers.Activation("hard_swish"), lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
    (layers.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
])
def test_activation_layers_forward_and_numeric_gradient(layer, fn, rng):
    x = (rng.standard_normal((3, 7)) * 3).astype(np.float32)
    x[np.abs(x - 0.5) < 0.05] += 0.2  # keep away from kinks
    x[np.abs(x) < 0.05] += 0.2
    y = layer(x, training=True)
    np.testing.assert_allclose(y, fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    r = rng.standard_normal(x.shape)
    dx = layer.backward(r.astype(np.float32))
    eps = 1e-6
    num = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        xp, xm = x.astype(np.float64), x.astype(np.float64)
        xp[i] += eps
        xm[i] -= eps
        num[i] = ((fn(xp) - fn(xm)) * r).sum() / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-3, atol=1e-4)


def test_model_gradients_match_finite_differences(rng):
    """The whole backward chain (conv, BN, pooling, flatten, dense, softmax + loss) against central
    differences of the training loss."""
    model = models.Sequential([
        layers.Conv2D(3, 3, padding="same", activation="tanh", input_shape=(6, 6, 2)),
        layers.BatchNormalization(),
        layers.AveragePooling2D(2),
        layers.Conv2D(4, 2, activation="sigmoid"),
        layers.Flatten(),
        layers.Dense(5, activation="elu"),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = _rand(rng, 4, 6, 6, 2)
    y = cnnc.utils.to_categorical(rng.integers(0, 3, 4), 3)

    def loss_value():
        out = model._forward(x, training=True)
        return model.loss(y, out)

    out = model._forward(x, training=True)
    dy, pre = model._loss_gradient(y, out)
    model._backward(dy, pre)
    grads = {(l.name, k): l.grads[k].copy() for l in model.layers for k in l.trainable_param_names()}
    eps = 1e-2
    for (lname, k), g in grads.items():
        p = next(l for l in model.layers if l.name == lname).params[k]
        for idx in list(np.ndindex(p.shape))[:: max(1, p.size // 6)]:
            old = p[idx]
            p[idx] = old + eps
            lp = loss_value()
            p[idx] = old - eps
            lm = loss_value()
            p[idx] = old
            num = (lp - lm) / (2 * eps)
            assert abs(num - g[idx]) <= 2e-2 * abs(num) + 2e-3, (lname, k, idx, num, g[idx])


def test_layer_configs_round_trip():
    for layer in [layers.Conv2D(8, (3, 5), strides=2, padding="same", activation="relu", groups=2,
                                kernel_regularizer="l2", name="c"),
                  layers.DepthwiseConv2D(3, depth_multiplier=2, data_format="channels_first"),
                  layers.Dense(7, activation="sigmoid", use_bias=False, kernel_initializer="he_normal"),
                  layers.MaxPooling2D(3, strides=1, padding="same"), layers.AveragePooling2D(),
                  layers.GlobalAveragePooling2D(keepdims=True), layers.BatchNormalization(momentum=0.9),
                  layers.Dropout(0.25, seed=3), layers.Flatten(), layers.Reshape((2, -1)),
                  layers.ZeroPadding2D(2), layers.ReLU(max_value=6.0), layers.LeakyReLU(0.1), layers.ELU(0.7),
                  layers.Softmax(), layers.Activation("selu")]:
        cfg = layer.get_config()
        again = type(layer).from_config(cfg)
        assert again.get_config() == cfg
        d = layers.serialize(layer)
        assert type(layers.deserialize(d)) is type(layer)


def test_layer_names_follow_keras():
    cnnc.utils.clear_session()
    assert layers.Conv2D(1, 1).name == "conv2d"
    assert layers.Conv2D(1, 1).name == "conv2d_1"
    assert layers.MaxPooling2D().name == "max_pooling2d"
    assert layers.BatchNormalization().name == "batch_normalization"


def test_channel_mismatch_error_names_layer_and_shapes(rng):
    cnnc.utils.clear_session()
    model = models.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8, 1)), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"Conv2D 'conv2d' expects 1 input channel, received 3"):
        model.predict(_rand(rng, 2, 8, 8, 3), verbose=0)
    dense = layers.Dense(3)
    dense(_rand(rng, 2, 4))
    with pytest.raises(ValueError, match=r"Dense 'dense' expects 4 input features, received 5"):
        dense(_rand(rng, 2, 5))


@pytest.mark.parametrize("make,match", [
    (lambda: layers.Conv2D(0, 3), "filters"),
    (lambda: layers.Conv2D(4, 3, padding="full"), "padding"),
    (lambda: layers.Conv2D(4, 3, strides=0), "strides"),
    (lambda: layers.Conv2D(4, 3, groups=3), "groups"),
    (lambda: layers.Conv2D(4, 3, activation="nope"), "unknown activation 'nope'"),
    (lambda: layers.Conv2D(4, 3, data_format="NHWC_ish"), "data_format"),
    (lambda: layers.Dense(3, bogus=1), "bogus"),
    (lambda: layers.Dropout(1.0), "rate"),
    (lambda: layers.MaxPooling2D(0), "pool_size"),
    (lambda: layers.Reshape((2, -1, -1)), "target_shape"),
])
def test_bad_layer_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_kernel_larger_than_input_is_reported():
    with pytest.raises(ValueError, match=r"Conv2D '.*' with kernel_size \(5, 5\).*does not fit"):
        models.Sequential([layers.Conv2D(2, 5, input_shape=(3, 3, 1))])
