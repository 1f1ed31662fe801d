"""cnnc.onnx.InferenceSession against ONNX Runtime (the oracle): every supported op, graphs, the
buffer plan, the ORT-style API, and the light models shipped with the onnx package."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cnnc.onnx as connx  # noqa: E402
from cnnc.onnx._random import randomized_weights  # noqa: E402

F = TensorProto.FLOAT


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """cnnc on 1 thread here (many tiny graphs); thread-count behaviour is covered by test_threads.py."""
    import cnnc
    old = cnnc.get_num_threads()
    cnnc.set_num_threads(1)
    yield
    cnnc.set_num_threads(old)


RNG = np.random.default_rng(1234)


def rnd(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def make(nodes, inputs, outputs, inits=(), opset=13, name="g"):
    """inputs/outputs: list of (name, elem_type, shape) ; inits: dict name -> ndarray."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    ir = 7 if opset <= 12 else 8 if opset <= 18 else 9 if opset <= 20 else 10
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def ort_run(model, feeds, threads=1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def check(model, feeds, rtol=1e-5, atol=1e-5):
    got = connx.InferenceSession(model.SerializeToString()).run(None, feeds)
    want = ort_run(model, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale)
    return got


def unary_model(op, x_shape, opset=13, out_shape=None, dtype=F, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="n", **attrs)
    return make([node], [("x", dtype, x_shape)], [("y", dtype, out_shape)], opset=opset)


# ---- Conv ----------------------------------------------------------------------------------------

CONV_CASES = [
    dict(),
    dict(pads=[1, 1, 1, 1]),
    dict(pads=[0, 1, 2, 1], strides=[2, 1]),                 # asymmetric
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
    dict(auto_pad="VALID", strides=[2, 2]),
    dict(dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(dilations=[1, 2], pads=[0, 2, 1, 1], strides=[1, 2]),  # (ORT rejects dilations with SAME_*)
    dict(group=2, pads=[1, 1, 1, 1]),
    dict(group=6, pads=[1, 0, 1, 0], depthwise=True),
    dict(group=6, strides=[2, 2], depthwise=True, mult=2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("bias", [True, False])
def test_conv(case, bias):
    case = dict(case)
    depthwise = case.pop("depthwise", False)
    mult = case.pop("mult", 1)
    g = case.get("group", 1)
    cin = 6
    cout = cin * mult if depthwise else 4
    w = rnd(cout, cin // g, 3, 3)
    inits = {"w": w}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rnd(cout)
        ins.append("b")
    node = helper.make_node("Conv", ins, ["y"], name="c", **case)
    for opset in (7, 11, 21):
        m = make([node], [("x", F, [2, cin, 9, 8])], [("y", F, None)], inits, opset=opset)
        check(m, {"x": rnd(2, cin, 9, 8)})


def test_conv_weight_as_input_and_relu_fusion():
    w = rnd(4, 3, 3, 3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    m = make(nodes, [("x", F, [1, 3, 7, 7]), ("w", F, [4, 3, 3, 3])], [("y", F, None)])
    check(m, {"x": rnd(1, 3, 7, 7), "w": w})
    m2 = make(nodes, [("x", F, [1, 3, 7, 7])], [("y", F, None)], {"w": w})
    s = connx.InferenceSession(m2.SerializeToString())
    assert [p.op_type for p in s._plan] == ["Conv+Relu"]
    check(m2, {"x": rnd(1, 3, 7, 7)})


# ---- pools ---------------------------------------------------------------------------------------

POOL_CASES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], auto_pad="VALID"),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[2, 3], strides=[3, 2], pads=[1, 0, 1, 1], ceil_mode=1),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("opset", [10, 12, 21])
def test_maxpool(case, opset):
    m = unary_model("MaxPool", [2, 3, 10, 9], opset=opset, **case)
    check(m, {"x": rnd(2, 3, 10, 9)})


@pytest.mark.parametrize("dil", [[2, 2], [1, 2]])
def test_maxpool_dilations(dil):
    m = unary_model("MaxPool", [1, 2, 11, 10], opset=12, kernel_shape=[3, 2], dilations=dil, pads=[1, 1, 0, 1])
    check(m, {"x": rnd(1, 2, 11, 10)})


def test_maxpool_opset7():
    m = unary_model("MaxPool", [1, 2, 8, 8], opset=7, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    check(m, {"x": rnd(1, 2, 8, 8)})


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("cip", [0, 1])
def test_avgpool(case, cip):
    for opset in (10, 19):
        m = unary_model("AveragePool", [2, 3, 10, 9], opset=opset, count_include_pad=cip, **case)
        check(m, {"x": rnd(2, 3, 10, 9)})


def test_avgpool_opset7():
    m = unary_model("AveragePool", [1, 2, 8, 8], opset=7, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                    count_include_pad=1)
    check(m, {"x": rnd(1, 2, 8, 8)})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [[2, 5, 6, 7], [2, 3, 9], [1, 2, 3, 4, 5]])
def test_global_pool(op, shape):
    check(unary_model(op, shape), {"x": rnd(*shape)})


# ---- Gemm / MatMul -------------------------------------------------------------------------------

@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0)])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (4, 5), (4, 1), ()])
def test_gemm(ta, tb, alpha, beta, c_shape):
    a = rnd(*((3, 4) if ta else (4, 3)))
    b = rnd(*((5, 3) if tb else (3, 5)))
    inits = {"b": b}
    ins = ["a", "b"]
    if c_shape is not None:
        inits["c"] = rnd(*c_shape)
        ins.append("c")
    node = helper.make_node("Gemm", ins, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    m = make([node], [("a", F, list(a.shape))], [("y", F, None)], inits)
    check(m, {"a": a})
    if c_shape is not None:  # B and C as run-time inputs
        m = make([node], [("a", F, list(a.shape)), ("b", F, list(b.shape)), ("c", F, list(c_shape))],
                 [("y", F, None)])
        check(m, {"a": a, "b": b, "c": inits["c"]})


def test_gemm_opset7_and_9_with_c():
    for opset in (7, 9):
        node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)
        m = make([node], [("a", F, [2, 3])], [("y", F, None)], {"b": rnd(4, 3), "c": rnd(4)}, opset=opset)
        check(m, {"a": rnd(2, 3)})


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                   ((4,), (4, 5)), ((3, 4), (4,)), ((2, 1, 3, 4), (3, 4, 2))])
@pytest.mark.parametrize("const_b", [True, False])
def test_matmul(sa, sb, const_b):
    a, b = rnd(*sa), rnd(*sb)
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    if const_b:
        m = make([node], [("a", F, list(sa))], [("y", F, None)], {"b": b})
        check(m, {"a": a})
    else:
        m = make([node], [("a", F, list(sa)), ("b", F, list(sb))], [("y", F, None)])
        check(m, {"a": a, "b": b})


def test_matmul_double_and_int():
    for t, dt in ((TensorProto.DOUBLE, np.float64), (TensorProto.INT64, np.int64)):
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        m = make([node], [("a", t, [3, 4]), ("b", t, [4, 2])], [("y", t, None)])
        a = (rnd(3, 4) * 5).astype(dt)
        b = (rnd(4, 2) * 5).astype(dt)
        check(m, {"a": a, "b": b})


# ---- elementwise ---------------------------------------------------------------------------------

BCAST = [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (5,)), ((2, 3, 4, 5), (3, 1, 1)),
         ((1, 3, 1, 5), (2, 1, 4, 1)), ((4, 5), ()), ((), (3,))]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("sa,sb", BCAST, ids=str)
def test_binary(op, sa, sb):
    node = helper.make_node(op, ["a", "b"], ["y"])
    m = make([node], [("a", F, list(sa)), ("b", F, list(sb))], [("y", F, None)])
    b = rnd(*sb)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    check(m, {"a": rnd(*sa), "b": b})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("t,dt", [(TensorProto.INT64, np.int64), (TensorProto.INT32, np.int32),
                                  (TensorProto.DOUBLE, np.float64)])
def test_binary_other_dtypes(op, t, dt):
    node = helper.make_node(op, ["a", "b"], ["y"])
    m = make([node], [("a", t, [3, 4]), ("b", t, [4])], [("y", t, None)])
    a = np.array(RNG.integers(-20, 20, (3, 4))).astype(dt)
    b = np.array([3, -2, 5, -7]).astype(dt)
    check(m, {"a": a, "b": b})


def test_sum_variadic():
    for k in (1, 2, 4):
        shapes = [(2, 3, 4), (3, 1), (4,), (1, 1, 1)][:k]
        names = [f"x{i}" for i in range(k)]
        node = helper.make_node("Sum", names, ["y"])
        for opset in (7, 8, 13):
            if opset == 7 and k > 1:
                continue  # Sum-6 has no broadcasting
            m = make([node], [(n, F, list(s)) for n, s in zip(names, shapes)], [("y", F, None)], opset=opset)
            check(m, {n: rnd(*s) for n, s in zip(names, shapes)})


# ---- activations ---------------------------------------------------------------------------------

ACTS = [("Relu", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}), ("Elu", {}), ("Elu", {"alpha": 0.5}),
        ("Selu", {}), ("Selu", {"alpha": 1.5, "gamma": 1.2}), ("Sigmoid", {}), ("Tanh", {}),
        ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}),
        ("Softmax", {}), ("LogSoftmax", {}), ("Identity", {})]


@pytest.mark.parametrize("op,attrs", ACTS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation(op, attrs, dtype):
    t = F if dtype == np.float32 else TensorProto.DOUBLE
    m = unary_model(op, [2, 3, 4, 5], opset=14 if op == "HardSwish" else 13, dtype=t, **attrs)
    x = (rnd(2, 3, 4, 5) * 4).astype(dtype)
    if dtype == np.float64 and op in ("LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish"):
        # ORT has no double kernel for these: compare with its float32 result
        got = connx.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
        assert got.dtype == np.float64
        m32 = unary_model(op, [2, 3, 4, 5], opset=14 if op == "HardSwish" else 13, **attrs)
        want = ort_run(m32, {"x": x.astype(np.float32)})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        return
    check(m, {"x": x}, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1), (5,), (2, 3, 4, 5)])
def test_prelu(slope_shape):
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    for opset in (7, 9, 16):
        m = make([node], [("x", F, [2, 3, 4, 5])], [("y", F, None)], {"s": rnd(*slope_shape)}, opset=opset)
        check(m, {"x": rnd(2, 3, 4, 5)})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [7, 11, 13])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -3])
def test_softmax_opsets(op, opset, axis):
    attrs = {} if axis is None else {"axis": axis}
    m = unary_model(op, [2, 3, 4, 5], opset=opset, **attrs)
    check(m, {"x": rnd(2, 3, 4, 5) * 3})


def test_softmax_opset_semantics_differ():
    x = rnd(2, 3, 4)
    y11 = connx.InferenceSession(unary_model("Softmax", [2, 3, 4], opset=11).SerializeToString()).run(None, {"x": x})[0]
    y13 = connx.InferenceSession(unary_model("Softmax", [2, 3, 4], opset=13).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y11.reshape(2, -1).sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(y13.sum(-1), 1, rtol=1e-5)


def test_clip_opset6_attrs():
    # opset 7..10 use Clip-6 (min/max attributes)
    for attrs in ({}, {"min": -0.5}, {"max": 0.7}, {"min": -0.5, "max": 0.7}, {"min": 0.0, "max": 6.0}):
        for opset in (7, 10):
            m = unary_model("Clip", [3, 4, 5], opset=opset, **attrs)
            check(m, {"x": rnd(3, 4, 5) * 4})


@pytest.mark.parametrize("opset", [11, 12, 13])
@pytest.mark.parametrize("lo,hi", [(None, None), (-0.5, None), (None, 0.7), (-0.5, 0.7), (0.0, 6.0), (1.0, -1.0)])
@pytest.mark.parametrize("as_input", [False, True])
def test_clip_opset11(opset, lo, hi, as_input):
    ins, inits, feeds_in = ["x", "", ""], {}, [("x", F, [3, 4, 5])]
    feeds = {"x": rnd(3, 4, 5) * 4}
    for i, (nm, v) in enumerate((("lo", lo), ("hi", hi)), 1):
        if v is not None:
            ins[i] = nm
            if as_input:
                feeds_in.append((nm, F, []))
                feeds[nm] = np.array(v, np.float32)
            else:
                inits[nm] = np.array(v, np.float32)
    while ins[-1] == "":
        ins.pop()
    m = make([helper.make_node("Clip", ins, ["y"])], feeds_in, [("y", F, None)], inits, opset=opset)
    check(m, feeds)


def test_clip_int():
    m = make([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", TensorProto.INT64, [6])],
             [("y", TensorProto.INT64, None)], {"lo": np.array(-2, np.int64), "hi": np.array(3, np.int64)})
    check(m, {"x": np.arange(-5, 7, 2, dtype=np.int64)})


# ---- normalization, dropout, LRN -----------------------------------------------------------------

@pytest.mark.parametrize("shape", [[2, 3, 4, 5], [4, 3], [2, 3, 5], [1, 3, 2, 2, 2]])
@pytest.mark.parametrize("opset", [7, 9, 14, 15])
def test_batchnorm(shape, opset):
    c = shape[1]
    inits = {"s": rnd(c), "b": rnd(c), "m": rnd(c), "v": np.abs(rnd(c)) + 0.5}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    m = make([node], [("x", F, shape)], [("y", F, None)], inits, opset=opset)
    check(m, {"x": rnd(*shape)})


@pytest.mark.parametrize("size", [1, 3, 5])  # (ORT requires an odd size)
def test_lrn(size):
    for attrs in ({}, {"alpha": 0.01, "beta": 0.5, "bias": 2.0}):
        m = unary_model("LRN", [2, 7, 4, 3], opset=13, size=size, **attrs)
        check(m, {"x": rnd(2, 7, 4, 3)})


@pytest.mark.parametrize("opset", [7, 10, 12, 13])
@pytest.mark.parametrize("mask", [False, True])
def test_dropout(opset, mask):
    outs = ["y", "mask"] if mask else ["y"]
    ins = ["x"]
    inits = {}
    if opset >= 12:
        ins = ["x", "r"]
        inits = {"r": np.array(0.3, np.float32)}
    node = helper.make_node("Dropout", ins, outs)
    mt = TensorProto.BOOL if opset >= 10 else F
    m = make([node], [("x", F, [3, 4])], [("y", F, None)] + ([("mask", mt, None)] if mask else []), inits, opset=opset)
    x = rnd(3, 4)
    if mask and opset < 12:
        # ORT's Dropout-7/10 kernels return an all-zero mask in inference; the ONNX reference (and
        # cnnc) return all ones (every element kept), like ORT's Dropout-12+.
        y, mk = connx.InferenceSession(m.SerializeToString()).run(None, {"x": x})
        np.testing.assert_array_equal(y, x)
        assert mk.dtype == (np.bool_ if opset >= 10 else np.float32) and mk.shape == x.shape and mk.all()
        from onnx.reference import ReferenceEvaluator
        np.testing.assert_array_equal(ReferenceEvaluator(m).run(None, {"x": x})[1], mk)
        return
    check(m, {"x": x})


# ---- shape ops -----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, 2, 4, -1, -4])
def test_flatten(axis):
    for opset in (11, 13, 21):
        check(unary_model("Flatten", [2, 3, 4, 5], opset=opset, axis=axis), {"x": rnd(2, 3, 4, 5)})


@pytest.mark.parametrize("shape,allowzero", [([6, -1], 0), ([0, 12, -1], 0), ([-1], 0), ([2, 0, 4, 5], 0),
                                             ([1, 2, 3, 20], 0), ([2, 3, 20], 1)])
def test_reshape(shape, allowzero):
    node = helper.make_node("Reshape", ["x", "s"], ["y"], **({"allowzero": allowzero} if allowzero else {}))
    m = make([node], [("x", F, [2, 3, 4, 5])], [("y", F, None)], {"s": np.array(shape, np.int64)}, opset=14)
    check(m, {"x": rnd(2, 3, 4, 5)})
    m7 = make([helper.make_node("Reshape", ["x", "s"], ["y"])], [("x", F, [2, 3, 4, 5]), ("s", TensorProto.INT64, [len(shape)])],
              [("y", F, None)], opset=7)
    if not allowzero:
        check(m7, {"x": rnd(2, 3, 4, 5), "s": np.array(shape, np.int64)})


@pytest.mark.parametrize("perm", [None, [0, 2, 3, 1], [3, 1, 0, 2]])
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    check(unary_model("Transpose", [2, 3, 4, 5], **attrs), {"x": rnd(2, 3, 4, 5)})


@pytest.mark.parametrize("axis", [0, 1, -1, 3])
def test_concat(axis):
    shapes = [[2, 3, 4, 5]] * 3
    shapes = [list(s) for s in shapes]
    for i, s in enumerate(shapes):
        s[axis] = i + 1
    names = ["a", "b", "c"]
    node = helper.make_node("Concat", names, ["y"], axis=axis)
    for opset in (7, 11, 13):
        m = make([node], [(n, F, s) for n, s in zip(names, shapes)], [("y", F, None)], opset=opset)
        check(m, {n: rnd(*s) for n, s in zip(names, shapes)})


@pytest.mark.parametrize("axes", [None, [0], [0, 2], [-1]])
def test_squeeze(axes):
    shape = [1, 3, 1, 1]
    for opset in (11, 13, 21):
        if opset < 13 or axes is None:
            node = helper.make_node("Squeeze", ["x"], ["y"], **({} if axes is None else {"axes": axes}))
            inits = {}
        else:
            node = helper.make_node("Squeeze", ["x", "a"], ["y"])
            inits = {"a": np.array(axes, np.int64)}
        m = make([node], [("x", F, shape)], [("y", F, None)], inits, opset=opset)
        check(m, {"x": rnd(*shape)})


@pytest.mark.parametrize("axes", [[0], [1, 3], [-1], [0, -1], [4, 0]])
def test_unsqueeze(axes):
    for opset in (7, 11, 13, 21):
        if opset < 13:
            node = helper.make_node("Unsqueeze", ["x"], ["y"], axes=axes)
            inits = {}
        else:
            node = helper.make_node("Unsqueeze", ["x", "a"], ["y"])
            inits = {"a": np.array(axes, np.int64)}
        if opset < 11 and any(a < 0 for a in axes):
            continue
        m = make([node], [("x", F, [3, 4, 5])], [("y", F, None)], inits, opset=opset)
        check(m, {"x": rnd(3, 4, 5)})


PADS = [[0, 0, 1, 2, 0, 0, 2, 1], [0, 1, 0, 0, 0, 0, 1, 3], [0, 0, -1, 1, 0, 0, 1, -2]]


@pytest.mark.parametrize("pads", PADS, ids=str)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_opset2(pads, mode):
    attrs = {"pads": pads, "mode": mode}
    if mode == "constant":
        attrs["value"] = 1.5
    for opset in (7, 10):
        check(unary_model("Pad", [2, 3, 4, 5], opset=opset, **attrs), {"x": rnd(2, 3, 4, 5)})


@pytest.mark.parametrize("pads", PADS, ids=str)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_opset11(pads, mode):
    for opset in (11, 13, 18, 19, 21):
        if mode == "wrap" and opset < 19:
            continue
        ins = ["x", "p"] + (["v"] if mode == "constant" else [])
        inits = {"p": np.array(pads, np.int64)}
        if mode == "constant":
            inits["v"] = np.array(-2.5, np.float32)
        node = helper.make_node("Pad", ins, ["y"], mode=mode)
        m = make([node], [("x", F, [2, 3, 4, 5])], [("y", F, None)], inits, opset=opset)
        check(m, {"x": rnd(2, 3, 4, 5)})


def test_pad_axes_opset18():
    node = helper.make_node("Pad", ["x", "p", "v", "a"], ["y"], mode="constant")
    m = make([node], [("x", F, [2, 3, 4, 5])], [("y", F, None)],
             {"p": np.array([1, 2, 3, 0], np.int64), "v": np.array(0.5, np.float32),
              "a": np.array([1, -1], np.int64)}, opset=18)
    check(m, {"x": rnd(2, 3, 4, 5)})


def test_pad_int_no_value():
    node = helper.make_node("Pad", ["x", "p"], ["y"])
    m = make([node], [("x", TensorProto.INT64, [2, 3])], [("y", TensorProto.INT64, None)],
             {"p": np.array([1, 0, 0, 2], np.int64)}, opset=13)
    check(m, {"x": np.arange(6, dtype=np.int64).reshape(2, 3)})


@pytest.mark.parametrize("opset", [9, 13, 21])
def test_constant_shape_gather_cast_chain(opset):
    # Shape -> Gather -> Unsqueeze/Concat -> Reshape (the classic exported "flatten") and friends
    unsq = (helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]) if opset < 13 else
            helper.make_node("Unsqueeze", ["n", "zero_axes"], ["n1"]))
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        unsq,
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("ConstantOfShape", ["shape_c"], ["ones"],
                         value=numpy_helper.from_array(np.array([2.0], np.float32))),
        helper.make_node("Mul", ["flat", "ones"], ["y"]),
    ]
    inits = {"shape_c": np.array([1, 60], np.int64)}
    if opset >= 13:
        inits["zero_axes"] = np.array([0], np.int64)
    m = make(nodes, [("x", F, ["N", 3, 4, 5])], [("y", F, None), ("sf", F, None)], inits, opset=opset)
    check(m, {"x": rnd(2, 3, 4, 5)})


def test_constant_variants():
    vals = [dict(value=numpy_helper.from_array(rnd(2, 3))), dict(value_float=1.5), dict(value_floats=[1.0, 2.0]),
            dict(value_int=3), dict(value_ints=[1, 2, 3])]
    for kw in vals:
        m = make([helper.make_node("Constant", [], ["y"], **kw)], [], [("y", F if "float" in str(kw) or "value" in kw and "int" not in str(kw) else TensorProto.INT64, None)])
        got = connx.InferenceSession(m.SerializeToString()).run(None, {})[0]
        want = ort_run(m, {})[0]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("start,end", [(None, None), (1, None), (-2, None), (0, -1), (1, 3), (5, None)])
def test_shape_start_end(start, end):
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    m = make([helper.make_node("Shape", ["x"], ["y"], **attrs)], [("x", F, [2, 3, 4, 5])],
             [("y", TensorProto.INT64, None)], opset=15)
    check(m, {"x": rnd(2, 3, 4, 5)})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("idx", [[0, 2], [[1, -1], [0, 0]], 1, [-3]])
def test_gather(axis, idx):
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    for opset in (7, 11, 13):
        m = make([node], [("x", F, [3, 4, 3])], [("y", F, None)], {"i": np.array(idx, np.int64)}, opset=opset)
        check(m, {"x": rnd(3, 4, 3)})


CAST_TYPES = [(TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64), (TensorProto.FLOAT16, np.float16),
              (TensorProto.INT32, np.int32), (TensorProto.INT64, np.int64), (TensorProto.INT8, np.int8),
              (TensorProto.UINT8, np.uint8), (TensorProto.BOOL, np.bool_)]


@pytest.mark.parametrize("src", CAST_TYPES, ids=lambda t: np.dtype(t[1]).name)
@pytest.mark.parametrize("dst", CAST_TYPES, ids=lambda t: np.dtype(t[1]).name)
def test_cast(src, dst):
    x = np.array([[0, 1, 2, 3], [7, 0, 100, 1]]).astype(src[1])
    for opset in (9, 13, 21):
        m = make([helper.make_node("Cast", ["x"], ["y"], to=dst[0])], [("x", src[0], [2, 4])],
                 [("y", dst[0], None)], opset=opset)
        check(m, {"x": x})


def test_cast_double_keeps_precision():
    nodes = [helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["d", "d"], ["y"])]
    m = make(nodes, [("x", F, [3])], [("y", TensorProto.DOUBLE, None)])
    x = np.array([1.1, 2.2, 3.3], np.float32)
    y = check(m, {"x": x}, rtol=1e-15, atol=0)[0]
    np.testing.assert_array_equal(y, x.astype(np.float64) ** 2)


# ---- graphs --------------------------------------------------------------------------------------

def _conv(name, x, y, cin, cout, k=3, **kw):
    return (helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], name=name, pads=[k // 2] * 4, **kw),
            {f"{name}_w": rnd(cout, cin, k, k) * 0.3, f"{name}_b": rnd(cout) * 0.1})


def _bn(name, x, y, c):
    return (helper.make_node("BatchNormalization", [x] + [f"{name}_{p}" for p in "sbmv"], [y], name=name),
            {f"{name}_s": rnd(c), f"{name}_b": rnd(c), f"{name}_m": rnd(c) * 0.1, f"{name}_v": np.abs(rnd(c)) + 0.5})


def residual_model():
    c1, i1 = _conv("conv1", "x", "c1", 8, 8)
    b1, i2 = _bn("bn1", "c1", "b1", 8)
    r1 = helper.make_node("Relu", ["b1"], ["r1"], name="relu1")
    c2, i3 = _conv("conv2", "r1", "c2", 8, 8)
    add = helper.make_node("Add", ["c2", "x"], ["s"], name="add")
    r2 = helper.make_node("Relu", ["s"], ["y"], name="relu2")
    inits = {**i1, **i2, **i3}
    return make([c1, b1, r1, c2, add, r2], [("x", F, ["batch", 8, 6, 6])], [("y", F, ["batch", 8, 6, 6])], inits)


def test_residual_block_and_plan():
    m = residual_model()
    check(m, {"x": rnd(3, 8, 6, 6)}, rtol=1e-4, atol=1e-5)
    s = connx.InferenceSession(m.SerializeToString())
    assert [p.op_type for p in s._plan] == ["Conv+BatchNormalization+Relu", "Conv", "Add", "Relu"]
    _check_plan(s)
    # x lives until the Add, then is freed
    freed_at = {v: i for i, p in enumerate(s._plan) for v in p.free}
    assert freed_at["x"] == 2
    assert "y" not in freed_at


def _check_plan(s):
    """No value is freed before its last consumer; every consumed value is freed exactly once
    (graph outputs never)."""
    outs = {o.name for o in s.get_outputs()}
    freed = {}
    for i, p in enumerate(s._plan):
        for v in p.free:
            assert v not in freed, v
            freed[v] = i
    for i, p in enumerate(s._plan):
        for v in p.inputs:
            assert v in outs or (v in freed and freed[v] >= i), (v, i)
    for v in outs:
        assert v not in freed
    consumed = {v for p in s._plan for v in p.inputs} | {o for p in s._plan for o in p.outputs if o}
    assert consumed - outs == set(freed)


def branch_model():
    a, ia = _conv("ca", "x", "ya", 4, 3, k=1)
    b, ib = _conv("cb", "x", "yb", 4, 5, k=3)
    p = helper.make_node("MaxPool", ["x"], ["yp"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    cat = helper.make_node("Concat", ["ya", "yb", "yp"], ["cat"], axis=1)
    r = helper.make_node("Relu", ["cat"], ["r"])
    c, ic = _conv("cc", "r", "y", 12, 2, k=1)
    return make([a, b, p, cat, r, c], [("x", F, [None, 4, 5, 5])], [("y", F, None), ("cat", F, None)],
                {**ia, **ib, **ic})


def test_branches_concat_and_output_subset():
    m = branch_model()
    x = rnd(2, 4, 5, 5)
    y, cat = check(m, {"x": x}, rtol=1e-4)
    s = connx.InferenceSession(m.SerializeToString())
    _check_plan(s)
    (cat2,) = s.run(["cat"], {"x": x})
    np.testing.assert_array_equal(cat2, cat)
    y2, cat3 = s.run(["y", "cat"], {"x": x})
    np.testing.assert_array_equal(y2, y)
    assert s.get_inputs()[0].shape == [None, 4, 5, 5]


def classifier_model():
    c, ic = _conv("c", "x", "c1", 3, 4)
    r = helper.make_node("Relu", ["c1"], ["r"])
    p = helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2])
    f = helper.make_node("Flatten", ["p"], ["f"])
    g = helper.make_node("Gemm", ["f", "gw", "gb"], ["g"], transB=1)
    sm = helper.make_node("Softmax", ["g"], ["y"])
    return make([c, r, p, f, g, sm], [("x", F, ["N", 3, 8, 8])], [("y", F, ["N", 10])],
                {**ic, "gw": rnd(10, 64) * 0.2, "gb": rnd(10)})


def test_flatten_gemm_softmax_chain_and_api():
    m = classifier_model()
    m.producer_name = "cnnc-tests"
    for n in (1, 4):
        check(m, {"x": rnd(n, 3, 8, 8)}, rtol=1e-4)
    s = connx.InferenceSession(m.SerializeToString())
    (i,) = s.get_inputs()
    (o,) = s.get_outputs()
    assert (i.name, i.type, i.shape) == ("x", "tensor(float)", ["N", 3, 8, 8])
    assert (o.name, o.type, o.shape) == ("y", "tensor(float)", ["N", 10])
    assert s.get_modelmeta().producer_name == "cnnc-tests"
    assert s.get_modelmeta().graph_name == "g"
    _check_plan(s)
    # Gemm's B was pre-transposed once at load: the plan passes no constant for it
    gemm = [p for p in s._plan if p.op_type.startswith("Gemm")][0]
    assert gemm.args[1] is None


def test_path_input_and_inferred_output_shape(tmp_path):
    m = classifier_model()
    del m.graph.output[0].type.tensor_type.shape.dim[:]
    m.graph.output[0].type.tensor_type.ClearField("shape")
    p = tmp_path / "m.onnx"
    onnx.save(m, str(p))
    s = connx.InferenceSession(str(p))
    assert s.get_outputs()[0].shape in (["N", 10], [None, 10])
    x = rnd(2, 3, 8, 8)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], connx.InferenceSession(p).run(None, {"x": x})[0])


def test_session_options_threads():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    m = classifier_model()
    x = rnd(2, 3, 8, 8)
    import cnnc
    before = cnnc.get_num_threads()
    y1 = connx.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert cnnc.get_num_threads() == before
    y2 = connx.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y1, y2)


def test_find_unsupported_lists_everything():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="c3d", kernel_shape=[1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p", "idx"], name="mp", kernel_shape=[2, 2], storage_order=1),
             helper.make_node("Foo", ["p"], ["q"], name="foo"),
             helper.make_node("Relu", ["q"], ["r"], name="mine", domain="com.example"),
             helper.make_node("BatchNormalization", ["r", "s", "s", "s", "s"], ["y"], name="bn", training_mode=1),
             helper.make_node("Pad", ["y"], ["z"], name="pad", pads=[0] * 8, mode="wrap")]
    m = make(nodes, [("x", F, [1, 1, 4, 4, 4])], [("z", F, None)],
             {"w": rnd(1, 1, 1, 1, 1), "s": rnd(1)}, opset=15)
    probs = connx.find_unsupported(m)
    names = {p[0] for p in probs}
    assert {"c3d", "mp", "foo", "mine", "bn"} <= names
    with pytest.raises(connx.UnsupportedModelError) as ei:
        connx.InferenceSession(m.SerializeToString())
    assert isinstance(ei.value, ValueError)
    msg = str(ei.value)
    for frag in ("c3d", "kernel_shape", "storage_order", "Indices", "Foo", "com.example", "training_mode"):
        assert frag in msg, frag
    assert ei.value.nodes == probs
    # opset out of range
    m2 = make([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [1])], [("y", F, None)], opset=29)
    assert connx.find_unsupported(m2)
    with pytest.raises(connx.UnsupportedModelError, match="opset 29"):
        connx.InferenceSession(m2.SerializeToString())
    assert connx.find_unsupported(residual_model()) == []
    assert connx.SUPPORTED_OPS["HardSwish"] == (14, 28)
    assert connx.SUPPORTED_OPS["Conv"] == (6, 28)
    m5 = make([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [1])], [("y", F, None)], opset=5)
    with pytest.raises(connx.UnsupportedModelError, match="opset 5 is outside the supported 6..28"):
        connx.InferenceSession(m5.SerializeToString())


def test_import_cnnc_does_not_import_onnx(run_py):
    r = run_py("import sys, cnnc, cnnc.onnx; assert 'onnx' not in sys.modules, 'onnx imported'; "
               "assert 'onnxruntime' not in sys.modules; print('ok')")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


# ---- the light models shipped with onnx ----------------------------------------------------------

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
# (model, rtol, atol) as in onnx.backend.test.case.model.collect_testcases
LIGHT = [("bvlc_alexnet", 1e-3, 1e-7), ("densenet121", 2e-3, 1e-7), ("inception_v1", 1e-3, 1e-7),
         ("inception_v2", 1e-3, 1e-7), ("resnet50", 1e-3, 1e-7), ("shufflenet", 1e-3, 1e-7),
         ("squeezenet", 1e-3, 1e-7)]
# vgg19 and zfnet512 (hundreds of MB of generated weights) are checked against their stored outputs by
# the conformance suite (tests/test_onnx_conformance.py), which runs all nine light models.


def dummy_input(vi):
    """The conformance runner's input for light models (generate_dummy_data(random=False))."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


@pytest.mark.parametrize("name,rtol,atol", LIGHT, ids=[c[0] for c in LIGHT])
def test_light_model(name, rtol, atol):
    path = os.path.join(LIGHT_DIR, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip("light model not shipped with this onnx")
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    feeds = {vi.name: dummy_input(vi) for vi in model.graph.input if vi.name not in inits}
    s = connx.InferenceSession(path)
    outs = s.run(None, feeds)
    for i, got in enumerate(outs):
        ref = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT_DIR, f"light_{name}_output_{i}.pb")))
        assert got.shape == ref.shape and got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)
    _check_plan(s)


@pytest.mark.parametrize("name", ["squeezenet", "resnet50", "inception_v1", "shufflenet", "densenet121",
                                  "inception_v2"])
def test_light_model_random_weights_vs_ort(name):
    path = os.path.join(LIGHT_DIR, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip("light model not shipped with this onnx")
    m = randomized_weights(onnx.load(path))
    inits = {t.name for t in m.graph.initializer}
    feeds = {vi.name: dummy_input(vi) for vi in m.graph.input if vi.name not in inits}
    got = connx.InferenceSession(m.SerializeToString()).run(None, feeds)
    want = ort_run(m, feeds, threads=1)
    for g, w in zip(got, want):
        scale = float(np.abs(w).max())
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * scale)


# ---- opset 6: legacy broadcasting and the opset-6 attributes ---------------------------------------
# ONNX Runtime does not run opset-6 Add/Gemm/... (no kernels before opset 7): NumPy is the oracle.

def _run6(nodes, inputs, feeds, inits=()):
    m = make(nodes, inputs, [("y", F, None)], inits, opset=6)
    assert connx.find_unsupported(m) == []
    return connx.InferenceSession(m.SerializeToString()).run(None, feeds)[0]


_A = rnd(2, 3, 4, 5)


@pytest.mark.parametrize("op,fn", [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
                                   ("Div", np.divide)])
@pytest.mark.parametrize("b_shape,axis,b_view", [
    ((), None, ()),                       # scalar
    ((1, 1), None, ()),                   # one element, any rank <= A's
    ((5,), None, (5,)),                   # suffix matching
    ((4, 5), None, (4, 5)),
    ((3, 4), 1, (1, 3, 4, 1)),            # axis=1
    ((2,), 0, (2, 1, 1, 1)),              # axis=0
    ((3,), 1, (1, 3, 1, 1)),              # per channel
    ((1, 4), 1, (1, 1, 4, 1)),            # a size-1 dim inside the window expands
    ((2, 3, 4, 5), None, (2, 3, 4, 5)),   # same shape
])
def test_opset6_legacy_broadcast(op, fn, b_shape, axis, b_view):
    b = rnd(*b_shape) if b_shape else np.array(rnd(1)[0])
    attrs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
    node = helper.make_node(op, ["a", "b"], ["y"], **attrs)
    got = _run6([node], [("a", F, list(_A.shape)), ("b", F, list(b_shape))], {"a": _A, "b": b})
    want = fn(_A, b.reshape(b_view))
    assert got.shape == _A.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_opset6_legacy_broadcast_hand_computed():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    for b, axis, want in (([10, 20], 0, [[10, 11, 12], [23, 24, 25]]),
                          ([10, 20, 30], 1, [[10, 21, 32], [13, 24, 35]]),
                          ([10, 20, 30], None, [[10, 21, 32], [13, 24, 35]])):
        attrs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
        got = _run6([helper.make_node("Add", ["a", "b"], ["y"], **attrs)],
                    [("a", F, [2, 3]), ("b", F, [len(b)])], {"a": a, "b": np.float32(b)})
        assert got.tolist() == want, (b, axis)
    # axis=0 aligns B with A's rows, where NumPy broadcasting would align it with the columns
    sq = np.arange(9, dtype=np.float32).reshape(3, 3)
    got = _run6([helper.make_node("Add", ["a", "b"], ["y"], broadcast=1, axis=0)],
                [("a", F, [3, 3]), ("b", F, [3])], {"a": sq, "b": np.float32([100, 200, 300])})
    np.testing.assert_array_equal(got, sq + np.float32([100, 200, 300])[:, None])  # rows, not columns


@pytest.mark.parametrize("attrs,b_shape,frag", [
    ({}, (5,), "broadcast=0"),                              # no broadcasting without broadcast=1
    ({"broadcast": 1}, (4,), "does not match"),             # suffix mismatch
    ({"broadcast": 1, "axis": 3}, (3, 4), "does not fit"),  # window runs past A
    ({"broadcast": 1, "axis": 2}, (3, 4), "does not match"),
    ({"broadcast": 1, "axis": 0}, (3,), "does not match"),
    ({"broadcast": 1}, (1, 2, 3, 4, 5), "rank"),            # B larger than A
])
def test_opset6_legacy_broadcast_errors(attrs, b_shape, frag):
    node = helper.make_node("Mul", ["a", "b"], ["y"], **attrs)
    m = make([node], [("a", F, [2, 3, 4, 5]), ("b", F, list(b_shape))], [("y", F, None)], opset=6)
    sess = connx.InferenceSession(m.SerializeToString())
    with pytest.raises(ValueError, match=frag):
        sess.run(None, {"a": _A, "b": rnd(*b_shape)})


def test_opset6_checks_up_front():
    a = [("a", F, [2, 3]), ("b", F, [3])]
    neg = make([helper.make_node("Add", ["a", "b"], ["y"], broadcast=1, axis=-1)], a, [("y", F, None)], opset=6)
    assert "negative axis" in connx.find_unsupported(neg)[0][2]
    # the opset-6 attributes are unknown at opset 7
    m7 = make([helper.make_node("Add", ["a", "b"], ["y"], broadcast=1)], a, [("y", F, None)], opset=7)
    assert "unknown attribute 'broadcast'" in connx.find_unsupported(m7)[0][2]
    x = [("x", F, [2, 3, 4, 4])]
    p = {k: np.ones(3, np.float32) for k in "sbmv"}
    for is_test, ok in ((None, False), (0, False), (1, True)):
        attrs = {} if is_test is None else {"is_test": is_test}
        bn = make([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], momentum=0.5,
                                    **attrs)], x, [("y", F, None)], p, opset=6)
        dr = make([helper.make_node("Dropout", ["x"], ["y"], ratio=0.3, **attrs)], x, [("y", F, None)],
                  opset=6)
        for m, op in ((bn, "BatchNormalization"), (dr, "Dropout")):
            probs = connx.find_unsupported(m)
            assert (probs == []) == ok, (op, is_test, probs)
            if not ok:
                assert "is_test" in probs[0][2] and "training" in probs[0][2]
    sp = make([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], is_test=1, spatial=0)],
              x, [("y", F, None)], p, opset=6)
    assert "spatial=0" in connx.find_unsupported(sp)[0][2]
    # inference with is_test=1: momentum is ignored, Dropout is the identity
    xv = rnd(2, 3, 4, 4)
    y = _run6([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], is_test=1,
                                momentum=0.5, epsilon=1e-3)], x, {"x": xv}, p)
    np.testing.assert_allclose(y, (xv - 1) / np.sqrt(1 + 1e-3) + 1, rtol=1e-5, atol=1e-5)
    y = _run6([helper.make_node("Dropout", ["x"], ["y"], is_test=1, ratio=0.3)], x, {"x": xv})
    np.testing.assert_array_equal(y, xv)


def test_opset6_gemm_broadcast():
    a, b = rnd(2, 3), rnd(3, 4)
    ins = [("a", F, [2, 3]), ("b", F, [3, 4]), ("c", F, None)]
    for c_shape in ((4,), (1,), (2, 4), (1, 4), (2, 1)):
        c = rnd(*c_shape)
        got = _run6([helper.make_node("Gemm", ["a", "b", "c"], ["y"], broadcast=1, beta=0.5)], ins,
                    {"a": a, "b": b, "c": c})
        np.testing.assert_allclose(got, a @ b + 0.5 * c, rtol=1e-5, atol=1e-5)
    c = rnd(2, 4)
    got = _run6([helper.make_node("Gemm", ["a", "b", "c"], ["y"])], ins, {"a": a, "b": b, "c": c})
    np.testing.assert_allclose(got, a @ b + c, rtol=1e-5, atol=1e-5)
    # constant B and C (the prepared fast path) go through the same checks
    for attrs, c_shape, ok in (({"broadcast": 1}, (4,), True), ({}, (4,), False), ({"broadcast": 1}, (3,), False)):
        m = make([helper.make_node("Gemm", ["a", "b", "c"], ["y"], **attrs)], [("a", F, [2, 3])], [("y", F, None)],
                 {"b": b, "c": rnd(*c_shape)}, opset=6)
        sess = connx.InferenceSession(m.SerializeToString())
        if ok:
            sess.run(None, {"a": a})
        else:
            with pytest.raises(ValueError, match="broadcast"):
                sess.run(None, {"a": a})


def test_opset6_prelu_sum():
    x = rnd(2, 3, 4)
    ins = [("x", F, [2, 3, 4])]
    for slope, view in ((rnd(3), (3, 1)), (rnd(1), ()), (rnd(2, 3, 4), (2, 3, 4))):
        got = _run6([helper.make_node("PRelu", ["x", "s"], ["y"])], ins, {"x": x}, {"s": slope})
        s = slope.reshape(view)
        np.testing.assert_allclose(got, np.where(x < 0, x * s, x), rtol=1e-6)
    m = make([helper.make_node("PRelu", ["x", "s"], ["y"])], ins, [("y", F, None)], {"s": rnd(4)}, opset=6)
    with pytest.raises(ValueError, match="PRelu-6"):  # numpy broadcasting over the last axis is opset 7+
        connx.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    got = _run6([helper.make_node("Sum", ["x", "x", "x"], ["y"])], ins, {"x": x})
    np.testing.assert_allclose(got, 3 * x, rtol=1e-6)
    m = make([helper.make_node("Sum", ["x", "z"], ["y"])], ins + [("z", F, [4])], [("y", F, None)], opset=6)
    with pytest.raises(ValueError, match="one shape"):
        connx.InferenceSession(m.SerializeToString()).run(None, {"x": x, "z": rnd(4)})
