"""cnnc.onnx.check_model_report: inputs/outputs, op counts, parameters, MACs, unsupported nodes."""
import collections
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cnnc.onnx  # noqa: E402
from cnnc import layers as L  # noqa: E402
from cnnc.models import Sequential  # noqa: E402
from cnnc.onnx import export  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _light(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not shipped with this onnx")
    return path


# Published figures at 224x224 (multiply-accumulates of conv/fc layers; parameters incl. BN statistics
# where the model has them): ResNet-50 4.1 G / 25.6 M, VGG-19 19.6 G / 143.7 M, SqueezeNet 1.1
# 0.35 G / 1.24 M, AlexNet (BVLC) 61.0 M parameters.
@pytest.mark.parametrize("name, macs, params", [
    ("resnet50", 4.09e9, 25.6e6),
    ("vgg19", 19.6e9, 143.67e6),
    ("squeezenet", 0.35e9, 1.235e6),
    ("bvlc_alexnet", None, 60.97e6),
])
def test_light_models_macs_and_parameters(name, macs, params):
    r = cnnc.onnx.check_model_report(_light(name))
    if macs is not None:
        assert r.macs == pytest.approx(macs, rel=0.02), r.macs
    assert r.parameters == pytest.approx(params, rel=0.01), r.parameters
    assert r.macs_unknown == []
    assert r.batch == 1 and r.opset == 9


def test_light_model_report_fields():
    path = _light("resnet50")
    r = cnnc.onnx.check_model_report(path)
    m = onnx.load(path)
    assert r.inputs == [("gpu_0/data_0", (1, 3, 224, 224), "float32")]
    assert r.outputs == [("gpu_0/softmax_1", (1, 1000), "float32")]
    assert r.op_counts == dict(collections.Counter(n.op_type for n in m.graph.node))
    assert list(r.op_counts.values()) == sorted(r.op_counts.values(), reverse=True)
    assert r.node_count == len(m.graph.node)
    assert set(r.macs_by_op) == {"Conv", "Gemm"}
    assert r.macs_by_op["Gemm"] == 2048 * 1000
    assert r.supported is (not cnnc.onnx.find_unsupported(m))
    text = str(r)
    for needle in ("gpu_0/data_0: float32 [1, 3, 224, 224]", "Parameters: 25,", "MACs: 4.09 G", "Conv", "opset 9"):
        assert needle in text, (needle, text)


def test_all_light_models_report_without_unknown_shapes():
    for f in sorted(os.listdir(LIGHT)) if os.path.isdir(LIGHT) else []:
        if f.endswith(".onnx"):
            r = cnnc.onnx.check_model_report(os.path.join(LIGHT, f))
            assert r.macs > 0 and r.parameters > 0 and not r.macs_unknown, f


def _unsupported_model():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Erf", ["a"], ["b"], name="erf_1"),
        helper.make_node("Sin", ["b"], ["c"], name="sin_1"),
        helper.make_node("MyOp", ["c"], ["d"], name="custom_1", domain="com.example"),
        helper.make_node("Erf", ["d"], ["y"], name="erf_2"),
    ]
    graph = helper.make_graph(nodes, "unsupported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    ops = [helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=ops, ir_version=8)


def test_report_lists_every_unsupported_node():
    model = _unsupported_model()
    r = cnnc.onnx.check_model_report(model.SerializeToString())
    assert not r.supported and not r
    names = [u[0] for u in r.unsupported]
    assert names == ["erf_1", "sin_1", "custom_1", "erf_2"]
    assert [u[1] for u in r.unsupported] == ["Erf", "Sin", "MyOp", "Erf"]
    assert r.unsupported == [tuple(p) for p in cnnc.onnx.find_unsupported(model)]
    text = str(r)
    assert "Supported: NO - 4 node(s)" in text
    for name in names:
        assert name in text
    assert r.inputs == [("x", ("N", 4), "float32")]
    assert r.macs == 0 and r.parameters == 0
    assert r.op_counts == {"Erf": 2, "Relu": 1, "Sin": 1, "com.example.MyOp": 1}


def test_macs_of_a_small_exported_model(tmp_path):
    model = Sequential([L.Input(shape=(16, 16, 3)),
                        L.Conv2D(8, 3, padding="same", activation="relu"),          # 16*16*8*3*9
                        L.DepthwiseConv2D(3, strides=2, padding="same"),            # 8*8*8*9
                        L.MaxPooling2D(2),
                        L.Flatten(),
                        L.Dense(10)])                                               # 128*10
    path = tmp_path / "m.onnx"
    export(model, str(path))
    r = cnnc.onnx.check_model_report(str(path))
    assert r.macs_by_op == {"Conv": 16 * 16 * 8 * 3 * 9 + 8 * 8 * 8 * 9, "Gemm": 128 * 10}
    assert r.macs == sum(r.macs_by_op.values())
    assert r.parameters == model.count_params()
    assert r.inputs == [("input", ("N", 16, 16, 3), "float32")]   # symbolic batch, counted as 1
    assert r.batch == 1 and r.supported
    assert "Supported: yes" in str(r)
    assert r.producer.startswith("cnnc")


def test_fixed_batch_is_divided_out_and_matmul_counted():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 7)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3, 7])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    r = cnnc.onnx.check_model_report(model)
    assert r.batch == 4
    assert r.macs == 3 * 7 * 5          # per sample
    assert r.parameters == 35
    assert "model batch 4" in str(r)


def test_bad_inputs():
    with pytest.raises(FileNotFoundError):
        cnnc.onnx.check_model_report("/nonexistent/model.onnx")
    with pytest.raises(TypeError):
        cnnc.onnx.check_model_report(42)
