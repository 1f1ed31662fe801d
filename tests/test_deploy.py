"""cnnc.deploy: bundles, the C runtime through cnnc.deploy.Runtime, and its checks on malformed bundles.

Outputs are compared with the model's layers run one by one in Python (predict itself runs through the
C runtime) and with InferenceSession (rtol 1e-5; atol 1e-6 for values near zero, e.g. softmax tails);
the C runtime calls the same kernels, so most comparisons are exact."""
import os
import struct
import zlib

import numpy as np
import pytest

from cnnc import _config, deploy, layers, models, zoo
from cnnc.deploy import BundleError, Runtime
from cnnc.deploy import _format as fmt

RNG = np.random.default_rng(7)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def layerwise(m, x):
    """The model's output from its layers' forward passes, one by one (not the C runtime)."""
    return m._layer_forward(np.ascontiguousarray(x, dtype=np.float32), training=False)


@pytest.fixture(scope="module")
def chollet():
    m = zoo.chollet_cnn()
    m.compile("rmsprop", "sparse_categorical_crossentropy")
    return m


@pytest.fixture(scope="module")
def chollet_bundle(chollet):
    return deploy.bundle_bytes(chollet)


# ---- Sequential -> bundle -> C runtime --------------------------------------------------------------

@pytest.mark.parametrize("name", ["chollet", "geron"])
def test_textbook_cnns_match_predict(name, chollet):
    m = chollet if name == "chollet" else zoo.geron_cnn()
    rt = Runtime(deploy.bundle_bytes(m))
    assert rt.input_names == ["input"] and rt.output_names == ["output"]
    assert rt.fixed_batch is None
    for b in (1, 3, 17):
        x = RNG.random((b, 28, 28, 1), dtype=np.float32)
        y = rt.run(x)
        assert y.shape == (b, 10) and y.dtype == np.float32
        close(y, layerwise(m, x))


def test_batch_sizes_and_float64_inputs(chollet, chollet_bundle):
    rt = Runtime(chollet_bundle)
    x = RNG.random((4, 28, 28, 1))  # float64: converted
    y4 = rt.run(x)
    y1 = rt.run(x[:1])
    close(y4[:1], y1)
    assert rt.input_shape(0, 9) == (9, 28, 28, 1) and rt.output_shape(0, 9) == (9, 10)


def _varied_model(fmt_):
    m = models.Sequential([
        layers.Input((12, 10, 3) if fmt_ == "channels_last" else (3, 12, 10)),
        layers.ZeroPadding2D(((1, 0), (2, 1)), data_format=fmt_),
        layers.Conv2D(6, 3, strides=(1, 2), padding="same", activation="elu", data_format=fmt_),
        layers.BatchNormalization(axis=-1 if fmt_ == "channels_last" else 1),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", activation="tanh", data_format=fmt_),
        layers.LeakyReLU(0.2),
        layers.MaxPooling2D(2, strides=1, padding="same", data_format=fmt_),
        layers.AveragePooling2D(2, padding="same", data_format=fmt_),
        layers.Conv2D(5, 1, dilation_rate=1, activation="sigmoid", data_format=fmt_),
        layers.Dropout(0.5),
        layers.Flatten(data_format=fmt_),
        layers.Dense(7, activation="hard_sigmoid"),
        layers.Reshape((7, 1)),
        layers.Flatten(),
        layers.Dense(4),
        layers.Softmax(),
    ])
    m.compile("sgd", "mse")
    # non-trivial batch-norm statistics
    bn = m.layers[2]
    bn.params["moving_mean"][:] = RNG.standard_normal(bn.params["moving_mean"].shape)
    bn.params["moving_variance"][:] = RNG.random(bn.params["moving_variance"].shape) + 0.5
    return m


@pytest.mark.parametrize("fmt_", ["channels_last", "channels_first"])
def test_many_layer_types_match_predict(fmt_):
    m = _varied_model(fmt_)
    rt = Runtime(deploy.bundle_bytes(m))
    x = RNG.standard_normal((3,) + m.input_shape[1:]).astype(np.float32)
    close(rt.run(x), layerwise(m, x))


def test_global_pooling_and_activation_layers():
    m = models.Sequential([
        layers.Input((6, 6, 4)),
        layers.Conv2D(8, 3, padding="same"),
        layers.Activation("relu6"),
        layers.GlobalAveragePooling2D(keepdims=True),
        layers.Conv2D(3, 1, activation="selu"),
        layers.GlobalMaxPooling2D(),
        layers.ELU(0.7),
        layers.Dense(2, activation="softmax"),
    ])
    m.compile("sgd", "mse")
    rt = Runtime(deploy.bundle_bytes(m))
    x = RNG.standard_normal((5, 6, 6, 4)).astype(np.float32)
    close(rt.run(x), layerwise(m, x))


def test_unsupported_layer_is_reported():
    m = models.Sequential([layers.Input((4, 4, 2)), layers.ReLU(threshold=0.5), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(BundleError, match=r"re_lu.*ReLU with a threshold"):
        deploy.bundle_bytes(m)


def test_bundle_file_saved_model_and_cli(tmp_path, chollet):
    saved = tmp_path / "m.cnnc"
    chollet.save(str(saved))
    out = tmp_path / "m.cnnb"
    n = deploy.bundle(str(saved), out)
    assert n == os.path.getsize(out)
    x = RNG.random((2, 28, 28, 1), dtype=np.float32)
    close(Runtime(str(out)).run(x), layerwise(chollet, x))
    from cnnc import cli
    out2 = tmp_path / "m2.cnnb"
    assert cli.main(["bundle", str(saved), str(out2)]) == 0
    assert out2.read_bytes() == out.read_bytes()
    with pytest.raises(BundleError, match="neither a .onnx file nor a model saved by cnnc"):
        bad = tmp_path / "x.bin"
        bad.write_bytes(b"hello")
        deploy.bundle(str(bad), tmp_path / "y.cnnb")


def test_arena_is_the_memory_reports_figure(chollet):
    for b in (1, 64):
        report = chollet.memory_estimate(b)
        rt = Runtime(deploy.bundle_bytes(chollet))
        assert report.deploy_arena_bytes == rt.arena_size(b) > 0
        assert "C runtime arena" in str(report)
        assert report.to_dict()["deploy_arena_bytes"] == report.deploy_arena_bytes
    m = models.Sequential([layers.Input((4, 4, 2)), layers.ReLU(threshold=0.5)])
    m.compile("sgd", "mse")
    r = m.memory_estimate(2)
    assert r.deploy_arena_bytes is None and "not available" in str(r)


def test_plan_matches_the_c_planner_at_other_batches(chollet):
    g = deploy._lower.from_sequential(chollet)
    for b in (1, 2, 7, 64):
        data = g.to_bytes(plan_batch=b)  # the loader rejects a stored plan that differs from its own
        rt = Runtime(data)
        plan, _ = rt.arena_parts(b)
        assert plan == g.plan(b)[1]


def test_plan_reuses_memory(chollet):
    g = deploy._lower.from_sequential(chollet)
    offsets, total = g.plan(64)
    arena = [i for i, v in enumerate(g.values) if v.kind == fmt.V_ARENA]
    assert total < sum(4 * g.values[i].size_at(64) for i in arena)
    # no two tensors alive at the same time overlap
    first, last = {}, {}
    for k, op in enumerate(g.ops):
        r = g.root(op.output)
        first[r] = last[r] = k
        for i in op.inputs:
            if i >= 0:
                last[g.root(i)] = k
    for i in arena:
        for j in arena:
            if i < j and not (last[i] < first[j] or last[j] < first[i]):
                si, sj = 4 * g.values[i].size_at(64), 4 * g.values[j].size_at(64)
                assert offsets[i] + si <= offsets[j] or offsets[j] + sj <= offsets[i]


def test_threads_give_identical_results(chollet_bundle):
    rt = Runtime(chollet_bundle)
    x = RNG.random((9, 28, 28, 1), dtype=np.float32)
    with _config.thread_limit(1):
        y1 = rt.run(x)
    with _config.thread_limit(2):
        y2 = rt.run(x)
    assert np.array_equal(y1, y2)


def test_bad_inputs(chollet_bundle):
    rt = Runtime(chollet_bundle)
    with pytest.raises(ValueError, match=r"input 'input' must have shape \(2, 28, 28, 1\).*received \(2, 28, 28\)"):
        rt.run(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(TypeError, match="real numeric array"):
        rt.run(np.zeros((1, 28, 28, 1), np.complex64))
    with pytest.raises(ValueError, match="unknown input name"):
        rt.run({"x": np.zeros((1, 28, 28, 1), np.float32)})
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        rt.arena_size(0)
    with pytest.raises(TypeError, match="path or bytes"):
        Runtime(3)
    y = rt.run({"input": np.zeros((1, 28, 28, 1), np.float32)})
    close(y, rt.run([np.zeros((1, 28, 28, 1), np.float32)]))


def test_import_does_not_load_onnx(run_py):
    code = ("import sys, numpy as np, cnnc.deploy as d\n"
            "from cnnc import zoo\n"
            "m = zoo.chollet_cnn(); b = d.bundle_bytes(m)\n"
            "d.Runtime(b).run(np.zeros((1, 28, 28, 1), np.float32))\n"
            "assert 'onnx' not in sys.modules, 'onnx imported'\n")
    r = run_py(code)
    assert r.returncode == 0, r.stderr


# ---- malformed bundles --------------------------------------------------------------------------------

def _recrc(data):
    data = bytearray(data)
    data[24:28] = struct.pack("<I", zlib.crc32(bytes(data[32:])) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture(scope="module")
def small_bundle():
    m = models.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                           layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(4, activation="softmax")])
    m.compile("sgd", "mse")
    return deploy.bundle_bytes(m)


def test_truncated_and_flipped_bundles_are_rejected(small_bundle):
    data = small_bundle
    Runtime(data)
    for n in list(range(0, 200)) + list(range(200, len(data), 37)):
        with pytest.raises(BundleError):
            Runtime(data[:n])
    for i in range(0, len(data), 3):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(BundleError):
            Runtime(bytes(bad))


def test_wrong_version_and_magic(small_bundle):
    bad = bytearray(small_bundle)
    bad[8:12] = struct.pack("<I", 99)
    with pytest.raises(BundleError, match="version 99"):
        Runtime(_recrc(bad))
    with pytest.raises(BundleError, match="bad magic"):
        Runtime(b"NOTABNDL" + small_bundle[8:])
    with pytest.raises(BundleError, match="checksum"):
        bad = bytearray(small_bundle)
        bad[-1] ^= 1
        Runtime(bytes(bad))


def _value_field(data, vid, off):
    return fmt.HEADER_SIZE + vid * fmt.VALUE_SIZE + off


def test_absurd_fields_with_valid_checksum_are_rejected(small_bundle):
    data = small_bundle
    nv = struct.unpack_from("<I", data, 32)[0]
    cases = []
    for field, value in ((32, 0xFFFFFFFF), (36, 0x7FFFFFFF), (40, 0), (44, 5000)):  # counts
        b = bytearray(data)
        struct.pack_into("<I", b, field, value)
        cases.append(b)
    for vid in range(nv):
        for off, fmt_, value in ((0, "<i", 9), (8, "<i", 9), (12, "<i", 5), (16, "<q", 1 << 62),
                                 (16, "<q", -1), (4, "<i", vid + 3), (80, "<q", 1 << 40), (80, "<q", 12345)):
            b = bytearray(data)
            struct.pack_into(fmt_, b, _value_field(data, vid, off), value)
            cases.append(b)
    b = bytearray(data)
    struct.pack_into("<q", b, 64, 1 << 50)  # weights offset
    cases.append(b)
    b = bytearray(data)
    struct.pack_into("<q", b, 48, 3)  # a fixed batch with batch axes
    cases.append(b)
    for i, case in enumerate(cases):
        with pytest.raises(BundleError):
            Runtime(_recrc(case))


def test_stored_plan_must_match(small_bundle):
    data = small_bundle
    nv = struct.unpack_from("<I", data, 32)[0]
    for vid in range(nv):
        kind = struct.unpack_from("<i", data, _value_field(data, vid, 0))[0]
        if kind == fmt.V_ARENA:
            b = bytearray(data)
            off = struct.unpack_from("<q", data, _value_field(data, vid, 80))[0]
            struct.pack_into("<q", b, _value_field(data, vid, 80), off + 64)
            with pytest.raises(BundleError, match="differs from the plan"):
                Runtime(_recrc(b))
            return
    pytest.fail("no arena tensor in the small bundle")


def test_random_bytes_are_rejected():
    rng = np.random.default_rng(0)
    for n in (0, 1, 79, 80, 81, 500, 5000):
        with pytest.raises(BundleError):
            Runtime(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        with pytest.raises(BundleError):
            Runtime(fmt.MAGIC + rng.integers(0, 256, n, dtype=np.uint8).tobytes())


# ---- ONNX -> bundle -----------------------------------------------------------------------------------

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnnc.onnx import InferenceSession  # noqa: E402

F = TensorProto.FLOAT
DATA = os.path.join(os.path.dirname(__file__), "data", "onnx")


def _make(nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, F, s) for n, s in outputs],
                              [numpy_helper.from_array(v, n) for n, v in dict(inits).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _same_as_session(data, feeds):
    sess = InferenceSession(data)
    ref = sess.run(None, feeds)
    rt = Runtime(deploy.bundle_bytes(data))
    got = rt.run(dict(feeds))
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        close(g, r)
    return rt


@pytest.mark.parametrize("path", ["torch_resnet.onnx", "torch_resnet_bn.onnx", "torch_mobilenet.onnx",
                                  "torch_squeezenet.onnx", "torch_chain.onnx"])
def test_pytorch_exported_models(path):
    data = open(os.path.join(DATA, path), "rb").read()
    sess = InferenceSession(data)
    inp = sess.get_inputs()[0]
    for b in (1, 2):
        shape = [b if not isinstance(d, int) else d for d in inp.shape]
        if isinstance(inp.shape[0], int) and b != inp.shape[0]:
            continue
        _same_as_session(data, {inp.name: RNG.standard_normal(shape).astype(np.float32)})


def test_light_squeezenet_fixed_batch():
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_squeezenet.onnx")
    if not os.path.exists(path):
        pytest.skip("light_squeezenet.onnx is not in this onnx package")
    data = open(path, "rb").read()
    x = RNG.standard_normal((1, 3, 224, 224)).astype(np.float32)
    rt = _same_as_session(data, {"data_0": x})
    assert rt.fixed_batch == 1
    with pytest.raises(ValueError, match="batch size 1 only"):
        rt.arena_size(2)


def _unary_graph(op, x_shape, attrs=None, opset=13, extra_inputs=(), inits=()):
    node = helper.make_node(op, ["x"] + [n for n, _ in extra_inputs], ["y"], **(attrs or {}))
    return _make([node], [("x", x_shape)], [("y", None)], inits, opset)


OP_CASES = [
    ("Relu", {}, 13), ("LeakyRelu", {"alpha": 0.3}, 13), ("Elu", {"alpha": 0.5}, 13), ("Selu", {}, 13),
    ("Sigmoid", {}, 13), ("Tanh", {}, 13), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 13),
    ("HardSwish", {}, 14), ("Softmax", {}, 13), ("LogSoftmax", {}, 13), ("Softmax", {"axis": 1}, 11),
    ("Transpose", {"perm": [0, 3, 1, 2]}, 13), ("Flatten", {"axis": 2}, 13), ("Identity", {}, 13),
    ("GlobalAveragePool", {}, 13), ("GlobalMaxPool", {}, 13),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "ceil_mode": 1}, 13),
    ("AveragePool", {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "count_include_pad": 1}, 13),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 13),
    ("LRN", {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0}, 13),
    ("Clip", {"min": -0.5, "max": 0.25}, 6),
]


@pytest.mark.parametrize("op,attrs,opset", OP_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OP_CASES)])
def test_single_ops(op, attrs, opset):
    x = RNG.standard_normal((2, 4, 5, 6)).astype(np.float32)
    _same_as_session(_unary_graph(op, ["N", 4, 5, 6], attrs, opset), {"x": x})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    pads = np.array([0, 1, 2, 0, 0, 0, 1, 1], np.int64)
    node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, ["N", 3, 4, 5])],
                              [helper.make_tensor_value_info("y", F, None)],
                              [numpy_helper.from_array(pads, "p"), numpy_helper.from_array(np.array(1.5, np.float32), "v")])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    _same_as_session(data, {"x": RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "PRelu"])
@pytest.mark.parametrize("bshape", [(4, 1, 1), (1, 4, 5, 6), (), (6,), (5, 1)])
def test_binary_broadcasting(op, bshape):
    bval = (RNG.random(bshape) + 0.5).astype(np.float32)
    node = helper.make_node(op, ["x", "b"], ["y"])
    data = _make([node], [("x", ["N", 4, 5, 6])], [("y", None)], {"b": bval})
    _same_as_session(data, {"x": RNG.standard_normal((3, 4, 5, 6)).astype(np.float32)})


def test_graph_with_branches_concat_sum_and_two_outputs():
    w1 = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w2 = RNG.standard_normal((2, 3, 1, 1)).astype(np.float32)
    gw = RNG.standard_normal((6 * 4 * 4, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w2"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Sum", ["r", "c", "r"], ["s"]),
        helper.make_node("Shape", ["s"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["s", "newshape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "gw"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("prob", F, None), helper.make_tensor_value_info("s", F, None)],
        [numpy_helper.from_array(v, n) for n, v in {
            "w1": w1, "w2": w2, "gw": gw, "zero": np.array(0, np.int64), "ax": np.array([0], np.int64),
            "minus1": np.array([-1], np.int64)}.items()])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    for b in (1, 4):
        rt = _same_as_session(data, {"x": RNG.standard_normal((b, 3, 4, 4)).astype(np.float32)})
    assert rt.output_names == ["prob", "s"]


def test_output_that_is_an_input_or_alias_gets_a_copy():
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"])]
    data = _make(nodes, [("x", ["N", 2, 3])], [("y", None), ("f", None)])
    _same_as_session(data, {"x": RNG.standard_normal((2, 2, 3)).astype(np.float32)})


@pytest.mark.parametrize("axis", [1, 2, -1])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_over_any_inner_axis(op, axis):
    data = _unary_graph(op, ["N", 4, 5, 3], {"axis": axis}, 13)
    _same_as_session(data, {"x": RNG.standard_normal((2, 4, 5, 3)).astype(np.float32)})


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c", ["vector", "matrix", "runtime", None])
@pytest.mark.parametrize("const_b", [True, False])
def test_gemm_attributes(ta, tb, c, const_b):
    a = RNG.standard_normal((3, 4) if ta else (4, 3)).astype(np.float32)  # A is [K, M] when transposed
    b = RNG.standard_normal((5, 3) if tb else (3, 5)).astype(np.float32)
    inputs, feeds, inits = [("a", list(a.shape))], {"a": a}, {}
    if const_b:
        inits["b"] = b
    else:
        inputs.append(("b", list(b.shape)))
        feeds["b"] = b
    names = ["a", "b"]
    if c is not None:
        cv = RNG.standard_normal({"vector": (5,), "matrix": (4, 5), "runtime": (4, 5)}[c]).astype(np.float32)
        if c == "runtime":
            inputs.append(("c", [4, 5]))
            feeds["c"] = cv
        else:
            inits["c"] = cv
        names.append("c")
    node = helper.make_node("Gemm", names, ["y"], transA=ta, transB=tb, alpha=0.7, beta=1.3)
    _same_as_session(_make([node], inputs, [("y", None)], inits), feeds)


def test_matmul_with_runtime_operands():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "z"], ["u"])]
    w = RNG.standard_normal((6, 3)).astype(np.float32)
    data = _make(nodes, [("x", ["N", 2, 6]), ("z", ["N", 3, 4])], [("u", None)], {"w": w})
    for b in (1, 3):
        _same_as_session(data, {"x": RNG.standard_normal((b, 2, 6)).astype(np.float32),
                                "z": RNG.standard_normal((b, 3, 4)).astype(np.float32)})


@pytest.mark.parametrize("axis,idx", [(1, [2, 0, -1]), (2, [[1, 1], [0, 3]]), (1, 3)])
def test_gather(axis, idx):
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    data = _make([node], [("x", ["N", 4, 5])], [("y", None)], {"i": np.array(idx, np.int64)})
    _same_as_session(data, {"x": RNG.standard_normal((2, 4, 5)).astype(np.float32)})


def test_unsupported_onnx_is_reported_per_node():
    nodes = [helper.make_node("Gather", ["x", "i"], ["g"], axis=0), helper.make_node("Relu", ["g"], ["y"]),
             helper.make_node("Softmax", ["x"], ["s"], axis=0)]
    data = _make(nodes, [("x", ["N", 4])], [("y", None), ("s", None)], {"i": np.array([0, 0], np.int64)})
    with pytest.raises(BundleError) as err:
        deploy.bundle_bytes(data)
    assert "(Gather): gathering along the batch axis" in str(err.value)
    assert "(Softmax): softmax over the batch axis" in str(err.value)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    data = _make(nodes, [("x", ["N", 3])], [("y", None)], {"w": RNG.standard_normal((2, 2)).astype(np.float32)})
    with pytest.raises(BundleError, match="to find its shapes failed"):
        deploy.bundle_bytes(data)


def test_selu_with_other_constants_and_conv_with_runtime_weights():
    data = _unary_graph("Selu", ["N", 3, 4], {"alpha": 1.5, "gamma": 0.8})
    _same_as_session(data, {"x": RNG.standard_normal((2, 3, 4)).astype(np.float32)})
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 1, 0])
    data = _make([node], [("x", ["N", 2, 5, 5]), ("w", [3, 2, 3, 2]), ("b", [3])], [("y", None)])
    _same_as_session(data, {"x": RNG.standard_normal((2, 2, 5, 5)).astype(np.float32),
                            "w": RNG.standard_normal((3, 2, 3, 2)).astype(np.float32),
                            "b": RNG.standard_normal(3).astype(np.float32)})


def test_scalar_inputs_keep_their_rank():
    node = helper.make_node("Mul", ["x", "s"], ["y"])
    data = _make([node], [("x", ["N", 3]), ("s", [])], [("y", None)])
    _same_as_session(data, {"x": RNG.standard_normal((2, 3)).astype(np.float32), "s": np.array(1.5, np.float32)})


def test_empty_output_next_to_a_full_one():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Gather", ["x", "i"], ["e"], axis=1)]
    data = _make(nodes, [("x", ["N", 3])], [("y", None), ("e", None)], {"i": np.zeros(0, np.int64)})
    rt = Runtime(deploy.bundle_bytes(data))
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    y, e = rt.run(x)
    assert e.shape == (2, 0)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


# ---- MatMul with 1-D and rank-broadcast operands, run-time Clip bounds and BatchNormalization ----------

MATMUL_SHAPES = [  # (A, B) at batch 1 ("N": the batch axis); NumPy matmul semantics
    ((5,), (5,)), ((5,), (5, 3)), ((4, 5), (5,)), ((5,), (2, 5, 3)), ((2, 3, 4, 5), (5,)),
    ((3, 1, 4, 5), (1, 2, 5, 2)), ((4, 5), (3, 5, 1)), ((2, 1, 1, 4, 5), (3, 5, 7)), ((1, 1, 5), (2, 5, 6)),
    (("N", 4, 5), (5,)), ((5,), ("N", 5, 3)), (("N", 1, 4, 5), (3, 5, 2)), (("N", 4, 5), ("N", 5, 2)),
    ((3, 4, 5), ("N", 1, 5, 2)), (("N", 7, 5), (1, 5, 17)),
]


def _batch_shape(shape, b):
    return tuple(b if d == "N" else d for d in shape)


MATMUL_CASES = [(a, b, c) for a, b in MATMUL_SHAPES for c in (False, True) if not (c and "N" in b)]


@pytest.mark.parametrize("sa,sb,const_b", MATMUL_CASES,
                         ids=[f"{a}@{b}{'-const' if c else ''}" for a, b, c in MATMUL_CASES])
def test_matmul_1d_and_broadcast_operands(sa, sb, const_b):
    """Each case against np.matmul and InferenceSession, at batch 1 and 3 (when batched), 1 and 2 threads;
    a constant 2-D B goes through the dense op, any other B through the matmul op."""
    from cnnc import get_num_threads, set_num_threads
    b_const = RNG.standard_normal(sb).astype(np.float32) if const_b else None
    inputs = [("a", list(sa))] + ([] if const_b else [("b", list(sb))])
    data = _make([helper.make_node("MatMul", ["a", "b"], ["y"])], inputs, [("y", None)],
                 {"b": b_const} if const_b else {})
    rt = Runtime(deploy.bundle_bytes(data))
    sess = InferenceSession(data)
    threads = get_num_threads()
    try:
        for batch in ((1, 3) if "N" in sa + sb else (1,)):
            a = RNG.standard_normal(_batch_shape(sa, batch)).astype(np.float32)
            b = b_const if const_b else RNG.standard_normal(_batch_shape(sb, batch)).astype(np.float32)
            feeds = {"a": a} if const_b else {"a": a, "b": b}
            want = np.matmul(a.astype(np.float64), b.astype(np.float64))
            ref = sess.run(None, feeds)[0]
            outs = []
            for t in (1, 2):
                set_num_threads(t)
                got = rt.run(dict(feeds))
                assert got.shape == want.shape == ref.shape
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
                close(got, ref)
                outs.append(got)
            np.testing.assert_array_equal(outs[0], outs[1])
    finally:
        set_num_threads(threads)


def test_matmul_batch_axis_against_a_fixed_dimension_is_refused():
    data = _make([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", ["N", 4, 5]), ("b", [3, 5, 2])],
                 [("y", None)])
    with pytest.raises(BundleError, match="batch axis of one operand"):
        deploy.bundle_bytes(data)


@pytest.mark.parametrize("bounds", ["both", "min", "max", "min_const", "max_const", "crossed"])
def test_clip_with_runtime_bounds(bounds):
    names, inputs, inits, feeds = ["x", "", ""], [("x", ["N", 3, 4])], {}, {}
    lo, hi = np.array(-0.3, np.float32), np.array(0.6, np.float32)
    if bounds == "crossed":
        lo, hi = hi, lo
    wanted = {"both": (1, 2), "crossed": (1, 2), "min": (1,), "max": (2,), "min_const": (1, 2),
              "max_const": (1, 2)}[bounds]
    for i, (nm, v) in enumerate((("lo", lo), ("hi", hi)), start=1):
        if i not in wanted:
            continue
        names[i] = nm
        if (bounds == "min_const" and i == 1) or (bounds == "max_const" and i == 2):
            inits[nm] = v
        else:
            inputs.append((nm, []))
            feeds[nm] = v
    while names[-1] == "":
        names.pop()
    data = _make([helper.make_node("Clip", names, ["y"])], inputs, [("y", None)], inits)
    x = RNG.standard_normal((3, 3, 4)).astype(np.float32)
    x[0, 0, :3] = [np.nan, np.inf, -np.inf]
    rt = _same_as_session(data, dict(feeds, x=x))
    got = rt.run(dict(feeds, x=x))
    fmax = np.finfo(np.float32).max  # an absent bound is the float32 extreme (ONNX's default)
    want = np.minimum(np.maximum(x, lo if 1 in wanted else -fmax), hi if 2 in wanted else fmax)
    np.testing.assert_array_equal(got, want)  # NaN stays NaN
    assert np.isnan(got[0, 0, 0])


@pytest.mark.parametrize("x_shape", [["N", 3], ["N", 3, 5], ["N", 3, 4, 5]])
@pytest.mark.parametrize("const_mean", [False, True])
def test_batchnorm_with_runtime_parameters(x_shape, const_mean):
    c = 3
    params = {"scale": RNG.standard_normal(c), "bias": RNG.standard_normal(c), "mean": RNG.standard_normal(c),
              "var": RNG.random(c) + 0.1}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    inputs = [("x", x_shape)] + [(k, [c]) for k in params if not (const_mean and k == "mean")]
    inits = {"mean": params["mean"]} if const_mean else {}
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=0.01)
    data = _make([node], inputs, [("y", None)], inits)
    for b in (1, 4):
        x = RNG.standard_normal(_batch_shape(x_shape, b)).astype(np.float32)
        feeds = dict({k: v for k, v in params.items() if not (const_mean and k == "mean")}, x=x)
        _same_as_session(data, feeds)
        got = Runtime(deploy.bundle_bytes(data)).run(feeds)
        shape = (1, c) + (1,) * (len(x_shape) - 2)
        p = {k: v.astype(np.float64).reshape(shape) for k, v in params.items()}
        want = (x - p["mean"]) / np.sqrt(p["var"] + 0.01) * p["scale"] + p["bias"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_non_float_outputs_are_refused_by_name_and_float_constant_outputs_bundle():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Shape", ["x"], ["s"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 3])],
                              [helper.make_tensor_value_info("y", F, None),
                               helper.make_tensor_value_info("s", TensorProto.INT64, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    with pytest.raises(BundleError, match=r"output 's' is int64 \(output 0 of node .*\(Shape\)\): the C runtime "
                                          r"computes float32 tensors only"):
        deploy.bundle_bytes(data)
    c = RNG.standard_normal((2, 2)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["c"], ["k"])]
    data = _make(nodes, [("x", ["N", 3])], [("y", None), ("k", None)], {"c": c})
    rt = _same_as_session(data, {"x": RNG.standard_normal((2, 3)).astype(np.float32)})
    np.testing.assert_array_equal(rt.run(np.ones((5, 3), np.float32))[1], c)


def _one_op_bundle(code, ints, dims=(1, 4), n_in=1):
    g = fmt.Graph()
    x = g.input("x", dims, 0)
    inputs = [x] + [g.const(np.full(dims[1:], 0.5, np.float32))] * (n_in - 1)
    y = g.op(code, inputs, dims, 0, ints=ints)
    g.set_outputs([("y", y)])
    return g.to_bytes()


@pytest.mark.parametrize("kind, fn", [(fmt.BIN_MAX, np.maximum), (fmt.BIN_MIN, np.minimum)])
def test_binary_max_min_kinds_and_their_validation(kind, fn):
    x = np.float32([[-1.0, 0.5, 2.0, np.nan]])
    got = Runtime(_one_op_bundle(fmt.OP_BINARY, [kind], n_in=2)).run(x)
    np.testing.assert_array_equal(got, fn(x, np.float32(0.5)))  # NaN propagates like NumPy's
    for bad in (fmt.BIN_MIN + 1, -1, 1 << 40):
        with pytest.raises(BundleError, match="unknown binary kind"):
            Runtime(_one_op_bundle(fmt.OP_BINARY, [bad], n_in=2))


def test_unary_sqrt_and_its_validation():
    x = np.float32([[0.0, 2.0, 9.0, -1.0]])
    got = Runtime(_one_op_bundle(fmt.OP_UNARY, [fmt.UN_SQRT])).run(x)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(got, np.sqrt(x))
    for bad in (fmt.UN_SQRT + 1, -1):
        with pytest.raises(BundleError, match="unknown unary kind"):
            Runtime(_one_op_bundle(fmt.OP_UNARY, [bad]))
    with pytest.raises(BundleError, match="unknown op code 19"):
        Runtime(_one_op_bundle(fmt.OP_UNARY + 1, [0]))
    with pytest.raises(BundleError, match="bad arity"):
        Runtime(_one_op_bundle(fmt.OP_UNARY, []))
