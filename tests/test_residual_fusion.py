"""conv -> Add (residual) -> activation runs as one conv op in the C runtime, with the same bits.

The lowering (Graph.fuse_residual_adds) gives the conv the residual as a 4th input; the C runtime adds
it after the bias and before the activation: in the micro-kernel's registers on the NCHW GEMM paths,
while transposing the output on the transposed GEMM (few output pixels), in a pass after the
convolution for Winograd, the direct path and NHWC; the depthwise path's epilogue per output plane. Each case compares an
InferenceSession's C runs with fusion against one lowered without it (bit for bit) and against the
session's own first run (the step-by-step plan)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import helper, numpy_helper  # noqa: E402

from cnnc import _core  # noqa: E402
from cnnc.deploy import _format, _lower  # noqa: E402
from cnnc.deploy.runtime import SessionRunner  # noqa: E402
from cnnc.onnx import InferenceSession  # noqa: E402

F = onnx.TensorProto.FLOAT
RNG = np.random.default_rng(5)


class _Options:
    def __init__(self, threads):
        self.intra_op_num_threads = threads


def _conv(name, x, y, c, cout, k, pad, inits, group=1):
    inits.append(numpy_helper.from_array((RNG.standard_normal((cout, c // group, k, k)) * 0.3).astype(np.float32),
                                         name + "_w"))
    inits.append(numpy_helper.from_array(RNG.standard_normal(cout).astype(np.float32), name + "_b"))
    return helper.make_node("Conv", [x, name + "_w", name + "_b"], [y], kernel_shape=[k, k], pads=[pad] * 4,
                            group=group, name=name)


def _model(c, cout, hw, k, act="Relu", residual_first=True, second_reader=False, group=1):
    """x -> r = conv0(x); t = conv1(x); y = act(t + r). residual_first False: r = Sigmoid(x), computed
    after conv1 (cout must be c)."""
    inits = []
    pad = k // 2
    t = _conv("conv1", "x", "t", c, cout, k, pad, inits, group)
    if residual_first:
        nodes = [_conv("conv0", "x", "r", c, cout, 1, 0, inits), t]
    else:
        nodes = [t, helper.make_node("Sigmoid", ["x"], ["r"])]
    nodes.append(helper.make_node("Add", ["t", "r"] if residual_first else ["r", "t"], ["s"]))
    outs = ["y"]
    if act is None:
        nodes[-1].output[0] = "y"
    else:
        attrs = {"alpha": 0.1} if act == "LeakyRelu" else {}
        nodes.append(helper.make_node(act, ["s"], ["y"], **attrs))
    if second_reader:
        outs.append("t")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, c, hw, hw])],
                              [helper.make_tensor_value_info(o, F, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _fused_count(sess):
    trace = next(iter(sess._signatures.values()))
    if isinstance(trace, SessionRunner):
        raise AssertionError("trace already lowered")
    g = _lower.for_session(sess, trace)
    return sum("residual" in op.label for op in g.ops)


def _runs(data, x, threads, fuse=True, monkeypatch=None):
    if not fuse:
        monkeypatch.setattr(_format.Graph, "fuse_residual_adds", lambda self: None)
    sess = InferenceSession(data, _Options(threads))
    first = sess.run(None, {"x": x})
    fused = _fused_count(sess)
    second = sess.run(None, {"x": x})
    assert any(isinstance(e, SessionRunner) for e in sess._signatures.values())
    if not fuse:
        monkeypatch.undo()
    return first, second, fused


CASES = {
    # name: (C, Cout, H=W, k, activation, group)
    "1x1, relu (in the micro-kernel)": (16, 24, 9, 1, "Relu", 1),
    "3x3 im2col, relu": (8, 20, 10, 3, "Relu", 1),
    "3x3 groups, leaky relu (per-tile epilogue)": (12, 18, 8, 3, "LeakyRelu", 3),
    "3x3 depthwise, relu (the epilogue per plane)": (12, 12, 9, 3, "Relu", 12),
    "3x3 depthwise x2, sigmoid": (8, 16, 9, 3, "Sigmoid", 8),
    "1x1, no activation": (16, 13, 7, 1, None, 1),
    "few output channels (few-row GEMM)": (16, 4, 9, 3, "Relu", 1),
    "winograd (a pass after)": (32, 32, 16, 3, "Relu", 1),
    "direct, 3 channels (a pass after)": (3, 8, 15, 3, "Sigmoid", 1),
    "1x1 on 7x7, transposed GEMM, relu": (32, 32, 7, 1, "Relu", 1),
    "3x3 on 7x7, transposed GEMM, sigmoid": (32, 48, 7, 3, "Sigmoid", 1),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_residual_gives_the_unfused_bits(name, arch, threads, monkeypatch, isa):
    isa(arch)
    c, cout, hw, k, act, group = CASES[name]
    data = _model(c, cout, hw, k, act, group=group)
    x = RNG.standard_normal((1, c, hw, hw)).astype(np.float32)
    plan, fused, n = _runs(data, x, threads)
    assert n == 1
    _, unfused, n0 = _runs(data, x, threads, fuse=False, monkeypatch=monkeypatch)
    assert n0 == 0
    assert np.array_equal(fused[0], unfused[0])
    np.testing.assert_allclose(fused[0], plan[0], rtol=1e-5, atol=1e-5)
    if act == "Relu":
        assert (fused[0] == 0).any() and (fused[0] > 0).any()


def test_what_is_not_fused():
    x = RNG.standard_normal((1, 8, 9, 9)).astype(np.float32)
    # the residual is computed after the conv: the conv cannot wait for it
    plan, second, n = _runs(_model(8, 8, 9, 3, residual_first=False), x, 1)
    assert n == 0
    np.testing.assert_allclose(second[0], plan[0], rtol=1e-5, atol=1e-5)
    # the conv's result is also a graph output: it must be kept as it is
    plan, second, n = _runs(_model(8, 16, 9, 3, second_reader=True), x, 1)
    assert n == 0
    for a, b in zip(plan, second):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_a_bundle_with_a_residual_conv_runs_in_deploy_runtime(tmp_path):
    from cnnc import deploy
    data = _model(16, 24, 9, 1, "Relu")
    (tmp_path / "m.onnx").write_bytes(data)
    deploy.bundle(str(tmp_path / "m.onnx"), str(tmp_path / "m.cnnb"))
    x = RNG.standard_normal((1, 16, 9, 9)).astype(np.float32)
    got = deploy.Runtime(str(tmp_path / "m.cnnb")).run(x)
    want = InferenceSession(data).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_act_none_matches_the_c_headers_code():
    assert _core.ACT_KINDS["none"] == _format.ACT_NONE
