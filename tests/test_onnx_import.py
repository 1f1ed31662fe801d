"""cnnc.onnx.import_model: ONNX chains -> trainable cnnc Sequential models; and PyTorch-exported
models (tests/data/onnx, made by tools/make_onnx_test_models.py) in cnnc.onnx.InferenceSession."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cnnc.onnx  # noqa: E402
from cnnc import layers as L  # noqa: E402
from cnnc.models import Sequential  # noqa: E402
from cnnc.onnx import export  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "onnx")
TORCH_MODELS = ("torch_chain", "torch_resnet", "torch_resnet_bn", "torch_squeezenet", "torch_mobilenet")


def _ort(model_bytes, x, input_name=None):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {input_name or sess.get_inputs()[0].name: x})[0]


def _close(a, b, tol=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


# ---- round trips: cnnc -> export -> import_model ---------------------------------------------------

def _big_model(fmt, rng):
    shp = (3, 16, 16) if fmt == "channels_first" else (16, 16, 3)
    ch = 1 if fmt == "channels_first" else -1
    m = Sequential([
        L.Input(shape=shp),
        L.ZeroPadding2D(1, data_format=fmt),
        L.Conv2D(8, 3, padding="same", activation="relu", data_format=fmt),
        L.BatchNormalization(axis=ch),
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu6", data_format=fmt),
        L.MaxPooling2D(2, padding="same", data_format=fmt),
        L.Conv2D(8, 3, padding="valid", activation="hard_swish", data_format=fmt, groups=2),
        L.AveragePooling2D(2, data_format=fmt),
        L.Flatten(data_format=fmt),
        L.Dense(16, activation="tanh"), L.Dropout(0.5), L.LeakyReLU(0.1),
        L.Dense(5, activation="softmax")])
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.random(w.shape).astype(np.float32) + 0.5 for w in layer.get_weights()])
    return m, shp


def _gap_model(fmt, rng):
    shp = (3, 12, 10) if fmt == "channels_first" else (12, 10, 3)
    return Sequential([L.Input(shape=shp), L.Conv2D(4, 3, data_format=fmt, activation="sigmoid"),
                       L.GlobalAveragePooling2D(data_format=fmt), L.Dense(3), L.Softmax()]), shp


def _misc_model(fmt, rng):
    shp = (3, 9, 9) if fmt == "channels_first" else (9, 9, 3)
    return Sequential([
        L.Input(shape=shp), L.Conv2D(4, 3, strides=2, data_format=fmt, activation="softmax"),
        L.GlobalMaxPooling2D(data_format=fmt, keepdims=True), L.Flatten(), L.Reshape((2, 2)),
        L.Dense(3, activation="elu"), L.Reshape((6,)), L.ReLU(max_value=2.0), L.ELU(0.5),
        L.BatchNormalization(), L.Activation("selu"), L.Dense(4, activation="hard_sigmoid")]), shp


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("make", [_big_model, _gap_model, _misc_model], ids=["cnn", "gap", "misc"])
def test_round_trip_gives_identical_predictions(fmt, make):
    rng = np.random.default_rng(0)
    model, shp = make(fmt, rng)
    x = rng.standard_normal((4,) + shp).astype(np.float32)
    proto = export(model)
    back = cnnc.onnx.import_model(proto.SerializeToString())
    assert back.input_shape == model.input_shape
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    # the layers keep their data format (the exporter's Transposes are folded back)
    formats = {getattr(l, "data_format", None) for l in back.layers} - {None}
    assert formats <= {fmt, "channels_last"} if fmt == "channels_first" else formats == {"channels_last"}
    conv_formats = {l.data_format for l in back.layers if isinstance(l, (L.Conv2D, L.DepthwiseConv2D))}
    assert conv_formats == {fmt}


def test_round_trip_fuses_activations_and_keeps_weights(tmp_path):
    rng = np.random.default_rng(1)
    model, shp = _big_model("channels_first", rng)
    path = tmp_path / "m.onnx"
    export(model, str(path))
    back = cnnc.onnx.import_model(str(path))
    kinds = [type(l).__name__ for l in back.layers]
    assert kinds == ["ZeroPadding2D", "Conv2D", "BatchNormalization", "DepthwiseConv2D", "MaxPooling2D", "Conv2D",
                     "AveragePooling2D", "Flatten", "Dense", "LeakyReLU", "Dense"]
    acts = [l.activation.name for l in back.layers if isinstance(l, (L.Conv2D, L.DepthwiseConv2D, L.Dense))]
    assert acts == ["relu", "relu6", "hard_swish", "tanh", "softmax"]
    assert back.count_params() == model.count_params()
    src = [l for l in model.layers if l.params]
    dst = [l for l in back.layers if l.params]
    for a, b in zip(src, dst):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)


# ---- models written with onnx.helper (NCHW), checked against onnxruntime -------------------------------

def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _helper_cnn(opset=14, rng=None):
    """A small NCHW CNN in the style of the ONNX model zoo: explicit pads, Gemm with transB."""
    rng = rng or np.random.default_rng(0)
    inits = {
        "w1": _w(rng, 8, 3, 3, 3), "b1": _w(rng, 8),
        "bn_s": (rng.random(8) + 0.5).astype(np.float32), "bn_b": _w(rng, 8),
        "bn_m": _w(rng, 8), "bn_v": (rng.random(8) + 0.5).astype(np.float32),
        "wd": _w(rng, 8, 1, 3, 3), "bd": _w(rng, 8),
        "w2": _w(rng, 12, 8, 1, 1),
        "fc_w": _w(rng, 10, 12 * 4 * 4), "fc_b": _w(rng, 10),
        "shape": np.array([0, -1], np.int64),
        "clip_lo": np.array(0.0, np.float32), "clip_hi": np.array(6.0, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"], name="bn1",
                         epsilon=1e-3),
        helper.make_node("Clip", ["n1", "clip_lo", "clip_hi"], ["r1"], name="relu6"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "wd", "bd"], ["c2"], name="dw", kernel_shape=[3, 3], group=8,
                         pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("HardSwish", ["c2"], ["h2"], name="hswish"),
        helper.make_node("Conv", ["h2", "w2"], ["c3"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("LeakyRelu", ["c3"], ["l3"], name="lrelu", alpha=0.2),
        helper.make_node("AveragePool", ["l3"], ["a3"], name="avg", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        helper.make_node("Dropout", ["a3"], ["d3"], name="drop"),
        helper.make_node("Reshape", ["d3", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["g"], name="fc", transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "helper_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = _model(graph, opset)
    onnx.checker.check_model(model)
    return model


def test_helper_cnn_imports_and_matches_onnxruntime():
    model = _helper_cnn()
    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16)).astype(np.float32)
    seq = cnnc.onnx.import_model(model.SerializeToString())
    assert seq.input_shape == (None, 3, 16, 16)
    kinds = [type(l).__name__ for l in seq.layers]
    # pads [1, 1, 1, 1] of a 3x3 stride-1 conv are Keras 'same'; the stride-2 max pool's are not (zero
    # padding is exact after ReLU6); the average pool counts its pads, so they become zeros too
    assert kinds == ["Conv2D", "BatchNormalization", "Activation", "ZeroPadding2D", "MaxPooling2D",
                     "DepthwiseConv2D", "Conv2D", "ZeroPadding2D", "AveragePooling2D", "Reshape", "Dense"], kinds
    assert all(l.data_format == "channels_first" for l in seq.layers if hasattr(l, "data_format"))
    assert seq.layers[0].padding == "same" and seq.layers[2].activation.name == "relu6"
    dw = seq.layers[5]
    assert dw.padding == "same" and dw.activation.name == "hard_swish" and dw.strides == (2, 2)
    assert seq.layers[6].activation.name == "leaky_relu"
    assert seq.layers[-1].activation.name == "softmax"
    _close(seq.predict(x, verbose=0), _ort(model.SerializeToString(), x))


def _chain_model(nodes, inits, in_shape, out_shape, opset=13):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    if out_shape is None:
        graph.output[0].type.tensor_type.ClearField("shape")
    return _model(graph, opset)


def _model(graph, opset):
    ops = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=ops, ir_version=helper.find_min_ir_version_for(ops))


@pytest.mark.parametrize("case", [
    "same_upper", "same_lower", "valid", "dilated", "grouped", "depth_multiplier", "maxpool_ceil", "avg_same",
    "pad_op", "global_max", "reduce_mean", "matmul_add", "flatten", "clip_relu", "softmax_nchw", "elu_alpha",
    "constant_folding", "opset11_pad", "opset9_attrs"])
def test_operator_mappings_match_onnxruntime(case):
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    w = _w(rng, 6, 4, 3, 3)
    b = _w(rng, 6)
    opset = 13
    inits = {"w": w, "b": b}
    in_shape, out_shape = ["N", 4, 11, 11], None
    conv = lambda **kw: helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], **kw)
    if case == "same_upper":
        nodes = [conv(auto_pad="SAME_UPPER", strides=[2, 2])]
    elif case == "same_lower":
        nodes = [conv(auto_pad="SAME_LOWER", strides=[2, 2])]
    elif case == "valid":
        nodes = [conv(auto_pad="VALID")]
    elif case == "dilated":
        nodes = [conv(dilations=[2, 2], pads=[2, 2, 2, 2])]
    elif case == "grouped":
        inits["w"] = _w(rng, 6, 2, 3, 3)
        nodes = [conv(group=2, pads=[1, 0, 1, 0])]
    elif case == "depth_multiplier":
        inits["w"], inits["b"] = _w(rng, 8, 1, 3, 3), _w(rng, 8)
        nodes = [conv(group=4, pads=[1, 1, 1, 1])]
    elif case == "maxpool_ceil":
        nodes = [conv(), helper.make_node("Relu", ["y"], ["r"]),
                 helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
                 helper.make_node("Sigmoid", ["p"], ["q"]),
                 helper.make_node("MaxPool", ["q"], ["s"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                  ceil_mode=1),
                 helper.make_node("Identity", ["s"], ["z"]),
                 helper.make_node("Flatten", ["z"], ["y2"])]
        nodes[-1].output[0] = "y"
        nodes[0].output[0] = "c"
        nodes[1].input[0] = "c"
    elif case == "avg_same":
        nodes = [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[1, 1, 1, 1])]
    elif case == "pad_op":
        inits["pads"] = np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64)
        nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"]), conv()]
        nodes[1].input[0] = "xp"
    elif case == "global_max":
        nodes = [helper.make_node("GlobalMaxPool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
    elif case == "reduce_mean":
        nodes = [conv(), helper.make_node("ReduceMean", ["c"], ["y"], axes=[2, 3], keepdims=0)]
        nodes[0].output[0] = "c"
    elif case == "matmul_add":
        in_shape = ["N", 7]
        inits = {"m": _w(rng, 7, 5), "c": _w(rng, 5)}
        nodes = [helper.make_node("MatMul", ["x", "m"], ["t"]), helper.make_node("Add", ["t", "c"], ["u"]),
                 helper.make_node("Tanh", ["u"], ["y"])]
    elif case == "flatten":
        inits = {"m": _w(rng, 4 * 11 * 11, 3)}
        nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "m"], ["y"])]
    elif case == "clip_relu":
        inits["lo"] = np.array(0.0, np.float32)
        inits["hi"] = np.array(1.5, np.float32)
        nodes = [conv(), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
        nodes[0].output[0] = "c"
    elif case == "softmax_nchw":
        nodes = [conv(), helper.make_node("Softmax", ["c"], ["y"], axis=1)]
        nodes[0].output[0] = "c"
    elif case == "elu_alpha":
        nodes = [conv(), helper.make_node("Elu", ["c"], ["e"], alpha=0.5), helper.make_node("Selu", ["e"], ["y"])]
        nodes[0].output[0] = "c"
    elif case == "constant_folding":
        inits = {"wshape": np.array([6, 4, 3, 3], np.int64)}
        nodes = [helper.make_node("ConstantOfShape", ["wshape"], ["w"],
                                  value=numpy_helper.from_array(np.array([0.05], np.float32))),
                 helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(b)),
                 conv(pads=[1, 1, 1, 1])]
    elif case == "opset11_pad":
        opset = 11
        inits["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
        inits["val"] = np.array(0.0, np.float32)
        nodes = [helper.make_node("Pad", ["x", "pads", "val"], ["xp"], mode="constant"), conv()]
        nodes[1].input[0] = "xp"
    elif case == "opset9_attrs":
        opset = 9
        nodes = [conv(pads=[1, 1, 1, 1]), helper.make_node("Clip", ["c"], ["k"], min=0.0, max=6.0),
                 helper.make_node("Pad", ["k"], ["y"], pads=[0, 0, 1, 1, 0, 0, 0, 0])]
        nodes[0].output[0] = "c"
    model = _chain_model(nodes, inits, in_shape, out_shape, opset)
    x = rng.standard_normal([3] + in_shape[1:]).astype(np.float32)
    seq = cnnc.onnx.import_model(model.SerializeToString())
    _close(seq.predict(x, verbose=0), _ort(model.SerializeToString(), x))


def test_reshape_and_input_shape_follow_the_onnx_model():
    rng = np.random.default_rng(3)
    inits = {"s": np.array([-1, 4, 121], np.int64), "m": _w(rng, 121, 2)}
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("MatMul", ["r", "m"], ["y"])]
    model = _chain_model(nodes, inits, [2, 4, 11, 11], None)
    seq = cnnc.onnx.import_model(model)
    assert seq.input_shape == (None, 4, 11, 11)
    x = rng.standard_normal((2, 4, 11, 11)).astype(np.float32)
    _close(seq.predict(x, verbose=0), _ort(model.SerializeToString(), x))


# ---- the imported model trains ------------------------------------------------------------------------

def test_imported_model_fine_tunes():
    from cnnc import utils
    utils.set_random_seed(0)
    model = _helper_cnn()
    seq = cnnc.onnx.import_model(model.SerializeToString())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 16, 16)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) * 3  # a learnable toy target among 10 classes
    seq.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in seq.get_weights()]
    loss0 = seq.evaluate(x, y, verbose=0)
    hist = seq.fit(x, y, epochs=3, batch_size=16, verbose=0)
    loss1 = seq.evaluate(x, y, verbose=0)
    loss0 = loss0[0] if isinstance(loss0, (list, tuple)) else loss0
    loss1 = loss1[0] if isinstance(loss1, (list, tuple)) else loss1
    changed = [not np.array_equal(a, b) for a, b in zip(before, seq.get_weights())]
    assert sum(changed) >= len(changed) // 2
    assert loss1 < loss0, (loss0, loss1, hist.history)
    # and it still exports: the fine-tuned model goes back to ONNX
    proto = export(seq)
    xs = x[:4]
    _close(_ort(proto.SerializeToString(), xs), seq.predict(xs, verbose=0))


# ---- graphs that are not a chain ---------------------------------------------------------------------

def _residual_model():
    rng = np.random.default_rng(0)
    inits = {"w": _w(rng, 4, 4, 3, 3)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "x"], ["y"], name="residual_add")]
    return _chain_model(nodes, inits, ["N", 4, 8, 8], None)


def test_branching_graph_raises_a_clear_error():
    with pytest.raises(ValueError) as info:
        cnnc.onnx.import_model(_residual_model())
    msg = str(info.value)
    assert "'x'" in msg and "feeds 2 nodes" in msg and "residual_add" in msg
    assert "cnnc.onnx.InferenceSession" in msg


def test_unsupported_op_and_unmappable_attributes_raise():
    rng = np.random.default_rng(0)
    cases = [
        ([helper.make_node("LRN", ["x"], ["y"], name="lrn", size=3)], {}, "'lrn' (LRN)"),
        ([helper.make_node("Conv", ["x", "w"], ["y"], name="c1d")], {"w": _w(rng, 2, 4, 3)}, "2-D only"),
        ([helper.make_node("Relu", ["x"], ["r"]),
          helper.make_node("MaxPool", ["r"], ["y", "idx"], name="mp", kernel_shape=[2, 2])], {}, "Indices"),
        ([helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[3, 3], strides=[2, 2],
                           pads=[1, 1, 1, 1])], {}, ">= 0"),   # not Keras 'same' and x may be negative
        ([helper.make_node("HardSigmoid", ["x"], ["y"], name="hs", alpha=1 / 6)], {}, "alpha"),
    ]
    in_shape = ["N", 4, 8, 8]
    for nodes, inits, needle in cases:
        model = _chain_model(nodes, inits, in_shape, None)
        with pytest.raises(ValueError) as info:
            cnnc.onnx.import_model(model)
        assert needle in str(info.value), str(info.value)
        assert "cnnc.onnx.InferenceSession" in str(info.value)


# ---- PyTorch-exported models (tests/data/onnx) ------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_reference():
    return np.load(os.path.join(DATA, "torch_reference.npz"))


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_pytorch_models_run_in_inference_session(name, torch_reference):
    path = os.path.join(DATA, f"{name}.onnx")
    assert os.path.getsize(path) < 200 * 1024
    x = torch_reference["x"]
    sess = cnnc.onnx.InferenceSession(path)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    _close(y, torch_reference[name])                     # PyTorch's own output
    with open(path, "rb") as f:
        _close(y, _ort(f.read(), x))                     # and onnxruntime's
    assert cnnc.onnx.check_model_report(path).supported


def test_pytorch_chain_imports_bn_relu6_hardswish(torch_reference):
    seq = cnnc.onnx.import_model(os.path.join(DATA, "torch_chain.onnx"))
    kinds = [type(l).__name__ for l in seq.layers]
    assert kinds.count("BatchNormalization") == 2 and "DepthwiseConv2D" in kinds
    acts = {l.activation.name for l in seq.layers if hasattr(l, "activation") and l.activation is not None}
    assert {"relu6", "hard_swish", "elu"} <= acts
    _close(seq.predict(torch_reference["x"], verbose=0), torch_reference["torch_chain"])


@pytest.mark.parametrize("name", ["torch_resnet", "torch_resnet_bn", "torch_squeezenet", "torch_mobilenet"])
def test_pytorch_branching_models_do_not_import(name):
    with pytest.raises(ValueError, match="branch|merge") as info:
        cnnc.onnx.import_model(os.path.join(DATA, f"{name}.onnx"))
    assert "cnnc.onnx.InferenceSession" in str(info.value)
