"""cnnc.onnx.export: exported graphs pass the ONNX checker and match model.predict in onnxruntime."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnc  # noqa: E402
from cnnc import layers, models, utils, zoo  # noqa: E402
from cnnc.onnx import export  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def _session(path, optimize=True):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def roundtrip(model, x, tmp_path, opset=17, **kwargs):
    """Export to a file, run the full checker, compare onnxruntime with predict; returns the proto."""
    path = tmp_path / f"{model.name}_{opset}.onnx"
    proto = export(model, path, opset=opset, **kwargs)
    onnx.checker.check_model(os.fspath(path), full_check=True)
    x = np.ascontiguousarray(x, dtype=np.float32)
    want = model.predict(x, verbose=0)
    # with onnxruntime's graph optimizations (the default) and without: the exported graph itself
    # must be right, and stay right through onnxruntime's fusions
    for optimize in (True, False):
        sess = _session(path, optimize)
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return proto


def ops(proto):
    return [n.op_type for n in proto.graph.node]


def seq(*ls, input_shape, name=None):
    return models.Sequential([layers.Input(shape=input_shape)] + list(ls), name=name)


def randomize(model, rng):
    """Non-trivial weights everywhere (biases and BN statistics included)."""
    for layer in model.layers:
        for key, w in layer.params.items():
            if key == "moving_variance":
                w[...] = rng.uniform(0.5, 2.0, w.shape)
            elif key == "gamma":
                w[...] = rng.uniform(0.5, 1.5, w.shape)
            else:
                w[...] = rng.normal(0, 0.3, w.shape)


@pytest.fixture(autouse=True)
def _seed():
    utils.set_random_seed(1234)


# ---- the textbook CNNs ----------------------------------------------------------------------------
def test_chollet_cnn(tmp_path, rng):
    model = zoo.chollet_cnn()
    proto = roundtrip(model, rng.random((3, 28, 28, 1)), tmp_path)
    # NHWC in, one Transpose to NCHW after the input and one back before Flatten
    assert ops(proto).count("Transpose") == 2
    assert ops(proto)[0] == "Transpose"
    assert ops(proto).count("Conv") == 3 and ops(proto).count("Gemm") == 2
    assert ops(proto)[-1] == "Softmax"


def test_geron_cnn_with_dropout(tmp_path, rng):
    model = zoo.geron_cnn()
    proto = roundtrip(model, rng.random((2, 28, 28, 1)), tmp_path)
    assert "Dropout" not in ops(proto)
    assert ops(proto).count("Transpose") == 2
    assert ops(proto).count("MaxPool") == 3


def test_channels_first_cnn(tmp_path, rng):
    cf = "channels_first"
    model = seq(layers.Conv2D(4, 3, padding="same", data_format=cf, activation="relu"),
                layers.BatchNormalization(axis=1),
                layers.MaxPooling2D(2, data_format=cf),
                layers.Conv2D(6, 3, data_format=cf, activation="tanh"),
                layers.AveragePooling2D(2, padding="same", data_format=cf),
                layers.Flatten(data_format=cf),
                layers.Dense(5, activation="softmax"), input_shape=(3, 13, 11))
    randomize(model, rng)
    proto = roundtrip(model, rng.random((3, 3, 13, 11)), tmp_path)
    # only the Keras semantics of Flatten(channels_first) (channels moved last) needs a Transpose
    assert ops(proto).count("Transpose") == 1


def test_channels_first_default_flatten_has_no_transpose(tmp_path, rng):
    cf = "channels_first"
    model = seq(layers.Conv2D(4, 3, data_format=cf, activation="relu"),
                layers.GlobalMaxPooling2D(data_format=cf, keepdims=True),
                layers.Conv2D(3, 1, data_format=cf),
                layers.Flatten(), layers.Dense(2), input_shape=(2, 8, 8))
    randomize(model, rng)
    proto = roundtrip(model, rng.random((2, 2, 8, 8)), tmp_path)
    assert "Transpose" not in ops(proto)


def test_channels_first_4d_output(tmp_path, rng):
    cf = "channels_first"
    model = seq(layers.ZeroPadding2D(((1, 0), (2, 1)), data_format=cf),
                layers.DepthwiseConv2D(3, depth_multiplier=2, data_format=cf, activation="softmax"),
                input_shape=(3, 7, 6))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(2, 3, 7, 6)), tmp_path)
    assert "Transpose" not in ops(proto)


# ---- convolutions and pooling ---------------------------------------------------------------------
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, depth_multiplier=2),
    dict(kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=2),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=2, use_bias=False, activation="relu6"),
])
def test_depthwise_conv(tmp_path, rng, data_format, kw):
    shape = (9, 8, 3) if data_format == "channels_last" else (3, 9, 8)
    model = seq(layers.DepthwiseConv2D(data_format=data_format, **kw), input_shape=shape)
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(2,) + shape), tmp_path)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert {a.name: a for a in conv.attribute}["group"].i == 3


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kw", [
    dict(filters=4, kernel_size=3, strides=2, padding="same"),              # odd sizes: asymmetric pads
    dict(filters=5, kernel_size=(4, 3), strides=(3, 2), padding="same"),
    dict(filters=4, kernel_size=3, dilation_rate=(2, 3), padding="same"),
    dict(filters=4, kernel_size=3, dilation_rate=2),
    dict(filters=6, kernel_size=3, groups=3, padding="same", activation="elu"),
    dict(filters=4, kernel_size=1, strides=2, use_bias=False),
])
def test_conv2d(tmp_path, rng, data_format, kw):
    shape = (11, 9, 3) if data_format == "channels_last" else (3, 11, 9)
    model = seq(layers.Conv2D(data_format=data_format, **kw), input_shape=shape)
    randomize(model, rng)
    roundtrip(model, rng.normal(size=(2,) + shape), tmp_path)


def test_same_padding_is_explicit_and_asymmetric(tmp_path):
    model = seq(layers.Conv2D(2, 3, strides=2, padding="same"), input_shape=(10, 9, 1))
    proto = export(model)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    attrs = {a.name: a for a in conv.attribute}
    assert "auto_pad" not in attrs
    # TensorFlow: H 10 -> total 1 (0 before, 1 after); W 9 -> total 2 (1, 1)
    assert list(attrs["pads"].ints) == [0, 1, 1, 1]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("pool", [layers.MaxPooling2D, layers.AveragePooling2D])
@pytest.mark.parametrize("kw", [
    dict(pool_size=2),
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=(2, 3), padding="same"),
    dict(pool_size=(3, 2), strides=(1, 3), padding="valid"),
])
def test_pooling(tmp_path, rng, data_format, pool, kw):
    shape = (7, 9, 2) if data_format == "channels_last" else (2, 7, 9)
    model = seq(pool(data_format=data_format, **kw), input_shape=shape)
    proto = roundtrip(model, rng.normal(size=(3,) + shape), tmp_path)
    if pool is layers.AveragePooling2D:
        node = next(n for n in proto.graph.node if n.op_type == "AveragePool")
        assert {a.name: a for a in node.attribute}["count_include_pad"].i == 0


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("pool", [layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(tmp_path, rng, data_format, pool, keepdims):
    shape = (5, 6, 3) if data_format == "channels_last" else (3, 5, 6)
    model = seq(layers.Conv2D(4, 2, data_format=data_format),
                pool(data_format=data_format, keepdims=keepdims), input_shape=shape)
    randomize(model, rng)
    roundtrip(model, rng.normal(size=(2,) + shape), tmp_path)


def test_global_pooling_keepdims_then_dense(tmp_path, rng):
    model = seq(layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(keepdims=True),
                layers.Dense(3), layers.Flatten(), layers.Dense(2, activation="softmax"), input_shape=(6, 6, 2))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(2, 6, 6, 2)), tmp_path)
    assert "MatMul" in ops(proto) and "Gemm" in ops(proto)


# ---- normalization, padding, reshape, dense -------------------------------------------------------
def test_batch_norm_4d_and_2d(tmp_path, rng):
    model = seq(layers.Conv2D(4, 3), layers.BatchNormalization(), layers.Activation("relu"),
                layers.BatchNormalization(center=False, epsilon=1e-2),
                layers.Flatten(), layers.Dense(6), layers.BatchNormalization(scale=False),
                layers.BatchNormalization(center=False, scale=False), layers.Dense(3), input_shape=(6, 5, 2))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(4, 6, 5, 2)), tmp_path)
    assert ops(proto).count("BatchNormalization") == 4
    assert ops(proto).count("Transpose") == 2


def test_batch_norm_on_nhwc_input_and_axis_1(tmp_path, rng):
    # BN first (transposes to NCHW once, the conv reuses it); BN over axis 1 (H) of an NHWC tensor
    model = seq(layers.BatchNormalization(), layers.Conv2D(3, 2), layers.BatchNormalization(axis=1),
                layers.Conv2D(2, 2), input_shape=(5, 4, 2))
    randomize(model, rng)
    roundtrip(model, rng.normal(size=(2, 5, 4, 2)), tmp_path)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_zero_padding(tmp_path, rng, data_format):
    shape = (4, 5, 2) if data_format == "channels_last" else (2, 4, 5)
    model = seq(layers.ZeroPadding2D(((1, 2), (0, 3)), data_format=data_format),
                layers.Conv2D(3, 3, data_format=data_format),
                layers.ZeroPadding2D(1, data_format=data_format),
                layers.MaxPooling2D(2, data_format=data_format), input_shape=shape)
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(2,) + shape), tmp_path)
    assert ops(proto).count("Pad") == 2


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("pool", [layers.MaxPooling2D, layers.AveragePooling2D])
@pytest.mark.parametrize("kw", [dict(pool_size=3, strides=2), dict(pool_size=3, strides=2, padding="same"),
                                dict(pool_size=(2, 3), padding="same")])
def test_zero_padding_then_pool(tmp_path, rng, data_format, pool, kw):
    # onnxruntime folds a zero Pad into a following pool's `pads`, which is wrong for MaxPool and
    # count_include_pad=0: all-negative inputs show whether the padded zeros are kept
    shape = (6, 7, 2) if data_format == "channels_last" else (2, 6, 7)
    model = seq(layers.ZeroPadding2D(((1, 2), (2, 1)), data_format=data_format),
                pool(data_format=data_format, **kw), input_shape=shape)
    roundtrip(model, -rng.random((2,) + shape) - 0.5, tmp_path)


def test_reshape(tmp_path, rng):
    model = seq(layers.Conv2D(4, 3, activation="relu"), layers.Reshape((-1, 8)), layers.Dense(5),
                layers.Reshape((5, 3, 2)), layers.Conv2D(2, 2, padding="same"), layers.Reshape((-1,)),
                input_shape=(5, 6, 3))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(3, 5, 6, 3)), tmp_path)
    assert ops(proto).count("Reshape") == 3


def test_reshape_flat_input_to_image(tmp_path, rng):
    model = seq(layers.Reshape((6, 6, 1)), layers.Conv2D(3, 3), layers.Flatten(), layers.Dense(2),
                input_shape=(36,))
    randomize(model, rng)
    roundtrip(model, rng.normal(size=(2, 36)), tmp_path)


def test_dense_variants(tmp_path, rng):
    model = seq(layers.Dense(4, use_bias=False), layers.Dense(3, activation="softmax"),
                layers.Dense(2, use_bias=False, activation="sigmoid"), input_shape=(3, 5))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(2, 3, 5)), tmp_path)
    assert "MatMul" in ops(proto) and "Gemm" not in ops(proto)


def test_4d_output_of_channels_last_model_is_nhwc(tmp_path, rng):
    model = seq(layers.Conv2D(3, 3, padding="same", activation="softmax"), layers.MaxPooling2D(),
                input_shape=(6, 7, 2))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(2, 6, 7, 2)), tmp_path)
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out_dims[1:]] == [3, 3, 3]
    assert ops(proto)[-1] == "Transpose"


# ---- activations ----------------------------------------------------------------------------------
ACTIVATIONS = cnnc.activations.names()


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation(tmp_path, rng, name, opset):
    model = seq(layers.Conv2D(3, 2, activation=name), layers.Activation(name), layers.Flatten(),
                layers.Dense(4, activation=name), input_shape=(4, 3, 2), name=f"act_{name}")
    randomize(model, rng)
    x = rng.normal(0, 3, size=(3, 4, 3, 2))   # reaches the clipped ranges of hard_* and relu6
    roundtrip(model, x, tmp_path, opset=opset)


def test_hard_swish_ops_by_opset():
    model = seq(layers.Activation("hard_swish"), input_shape=(3,))
    assert ops(export(model, opset=14)) == ["HardSwish"]
    assert ops(export(model, opset=13)) == ["HardSigmoid", "Mul"]


@pytest.mark.parametrize("layer", [
    lambda: layers.ReLU(),
    lambda: layers.ReLU(max_value=1.5),
    lambda: layers.ReLU(negative_slope=0.1),
    lambda: layers.ReLU(threshold=0.5),
    lambda: layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=-0.5),
    lambda: layers.LeakyReLU(),
    lambda: layers.LeakyReLU(negative_slope=0.05),
    lambda: layers.ELU(),
    lambda: layers.ELU(alpha=0.5),
    lambda: layers.Softmax(),
    lambda: layers.Softmax(axis=1),
    lambda: layers.Softmax(axis=2),
    lambda: layers.Activation("softmax"),
], ids=["relu", "relu_max", "relu_slope", "relu_threshold", "relu_all", "leaky", "leaky_05", "elu",
        "elu_05", "softmax", "softmax_axis1", "softmax_axis2", "activation_softmax"])
def test_activation_layers_inside_nchw_section(tmp_path, rng, layer):
    # between two convolutions the tensor is NCHW in the graph: axes must follow the Keras layout
    model = seq(layers.Conv2D(3, 2), layer(), layers.Conv2D(2, 2), input_shape=(5, 4, 2))
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(0, 2, size=(2, 5, 4, 2)), tmp_path)
    assert ops(proto).count("Transpose") == 2


def test_relu_threshold_decomposition(tmp_path, rng):
    model = seq(layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=-0.5), input_shape=(7,))
    proto = roundtrip(model, np.linspace(-3, 3, 14, dtype=np.float32).reshape(2, 7), tmp_path)
    assert ops(proto) == ["GreaterOrEqual", "Sub", "Mul", "Where", "Min"]


# ---- a model with every layer type, trained -------------------------------------------------------
def every_layer_model():
    return seq(
        layers.ZeroPadding2D(1),
        layers.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="hard_swish"),
        layers.Conv2D(6, 1, groups=2, dilation_rate=1),
        layers.LeakyReLU(0.1),
        layers.MaxPooling2D(2, padding="same"),
        layers.Conv2D(8, 2, dilation_rate=2, padding="same"),
        layers.ELU(),
        layers.AveragePooling2D(3, strides=1, padding="same"),
        layers.ReLU(max_value=6.0),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(12),
        layers.BatchNormalization(),
        layers.Activation("selu"),
        layers.Reshape((3, 4)),
        layers.Dense(4, activation="tanh"),
        layers.Flatten(),
        layers.Dense(5),
        layers.Softmax(),
        input_shape=(11, 9, 3), name="every_layer")


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_every_layer_opsets(tmp_path, rng, opset):
    model = every_layer_model()
    randomize(model, rng)
    proto = roundtrip(model, rng.normal(size=(3, 11, 9, 3)), tmp_path, opset=opset)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    assert proto.ir_version == onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])


def test_trained_weights(tmp_path, rng):
    model = seq(layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization(),
                layers.MaxPooling2D(), layers.Dropout(0.2), layers.Flatten(), layers.Dense(8),
                layers.BatchNormalization(), layers.ReLU(), layers.Dense(3, activation="softmax"),
                input_shape=(8, 8, 2))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.normal(size=(32, 8, 8, 2)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 32), batch_size=8, epochs=1, verbose=0)
    bn = model.layers[1]
    assert not np.allclose(bn.params["moving_mean"], 0) and not np.allclose(bn.params["moving_variance"], 1)
    roundtrip(model, x[:6], tmp_path)


# ---- graph interface ------------------------------------------------------------------------------
def test_dynamic_batch(tmp_path, rng):
    model = zoo.chollet_cnn()
    path = tmp_path / "m.onnx"
    export(model, path)
    sess = _session(path)
    dim = sess.get_inputs()[0].shape[0]
    assert isinstance(dim, str)
    for n in (1, 5):
        x = rng.random((n, 28, 28, 1), dtype=np.float32)
        got = sess.run(None, {"input": x})[0]
        np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


def test_fixed_batch(rng):
    model = seq(layers.Dense(2), input_shape=(3,))
    proto = export(model, dynamic_batch=False)
    for vi in (proto.graph.input[0], proto.graph.output[0]):
        assert vi.type.tensor_type.shape.dim[0].dim_value == 1
    onnx.checker.check_model(proto, full_check=True)


def test_interface_fields(tmp_path):
    model = zoo.chollet_cnn(name="mnist_cnn")
    proto = export(model, input_name="pixels", output_name="probs")
    assert proto.producer_name == "cnnc" and proto.producer_version == cnnc.__version__
    assert proto.graph.name == "mnist_cnn"
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "pixels" and out.name == "probs"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "N" and [d.dim_value for d in in_dims[1:]] == [28, 28, 1]
    out_dims = out.type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "N" and out_dims[1].dim_value == 10
    assert {i.name for i in proto.graph.initializer}.isdisjoint({"pixels", "probs"})
    names = [n.name for n in proto.graph.node]
    assert len(set(names)) == len(names) and all(names)


def test_writes_path_and_returns_proto(tmp_path):
    model = seq(layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2), input_shape=(5, 5, 1))
    for path in (tmp_path / "a.onnx", str(tmp_path / "b.onnx")):
        proto = export(model, path)
        assert isinstance(proto, onnx.ModelProto)
        assert onnx.load(os.fspath(path)).SerializeToString() == proto.SerializeToString()
    assert export(model) == proto    # no path: nothing written, same model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


def test_save_onnx_suffix(tmp_path, rng):
    model = seq(layers.Conv2D(2, 3), layers.GlobalAveragePooling2D(), input_shape=(5, 5, 1))
    model.save(tmp_path / "m.onnx")
    sess = _session(tmp_path / "m.onnx")
    x = rng.random((2, 5, 5, 1), dtype=np.float32)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model.predict(x, verbose=0), rtol=RTOL,
                               atol=ATOL)


def test_unknown_spatial_size(tmp_path, rng):
    # no static H, W: 'same' padding falls back to auto_pad=SAME_UPPER (TensorFlow's convention)
    model = seq(layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                layers.MaxPooling2D(3, strides=2, padding="same"), layers.AveragePooling2D(2, padding="same"),
                layers.ZeroPadding2D(1), layers.MaxPooling2D(2, padding="same"),
                layers.GlobalAveragePooling2D(), layers.Dense(3), input_shape=(None, None, 3))
    for hw in [(9, 7), (10, 12)]:
        proto = roundtrip(model, rng.normal(size=(2,) + hw + (3,)), tmp_path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_param and dims[2].dim_param and dims[3].dim_value == 3


def test_dropout_only_model(tmp_path, rng):
    model = seq(layers.Dropout(0.5), input_shape=(4,))
    proto = roundtrip(model, rng.random((2, 4)), tmp_path)
    assert ops(proto) == ["Identity"]


# ---- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [12, 22, 7, "17", 17.0, True])
def test_unsupported_opset(opset):
    model = seq(layers.Dense(2), input_shape=(3,))
    with pytest.raises(ValueError, match=r"opset .* 13 through 21"):
        export(model, opset=opset)


def test_unbuilt_model(tmp_path):
    model = models.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_unsupported_layer():
    class Scale(layers.Layer):
        def forward(self, x, training=False):
            return 2 * x

    model = seq(layers.Dense(2), Scale(name="times_two"), input_shape=(3,))
    with pytest.raises(NotImplementedError, match=r"times_two.*Scale"):
        export(model)


def test_bad_names():
    model = seq(layers.Dense(2), input_shape=(3,))
    with pytest.raises(ValueError, match="differ"):
        export(model, input_name="x", output_name="x")
    with pytest.raises(ValueError, match="input_name"):
        export(model, input_name="")


def test_export_module_imports_without_onnx(run_py):
    code = ("import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import cnnc, cnnc.onnx\n"
            "from cnnc.onnx import export\n"
            "assert callable(export)\n"
            "print('ok')")
    res = run_py(code)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_export_is_the_function_not_the_submodule(run_py):
    # the exporter lives in cnnc.onnx._export, so importing that module (first, or again) never
    # replaces the function on the package (model.save uses `from .onnx import export`)
    code = ("import importlib, cnnc.onnx._export\n"
            "import cnnc.onnx\n"
            "for _ in range(2):\n"
            "    from cnnc.onnx import export\n"
            "    assert callable(export) and callable(cnnc.onnx.export), cnnc.onnx.export\n"
            "    importlib.import_module('cnnc.onnx._export')\n"
            "print('ok')")
    res = run_py(code)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout
