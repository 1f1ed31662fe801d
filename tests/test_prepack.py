"""Convolution weights packed once (cnnc_model_prepack) give the same bits as packing them at every run.

InferenceSession's C runner and deploy.Runtime pack their fixed weights for the GEMMs once; a runner
that does not (as Sequential's, whose weights change) packs them at every call. Each case runs one
ONNX graph through two sessions, one of them kept from packing, and needs identical outputs: over both
layouts' GEMM paths (NCHW weights as A, NHWC as B), groups, 1x1, the direct path for few input channels,
edge sizes around the micro-kernel's tile, both ISA paths and 1 and 2 threads."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import helper, numpy_helper  # noqa: E402

from cnnc import _core  # noqa: E402
from cnnc.deploy import runtime as rt  # noqa: E402
from cnnc.onnx import InferenceSession  # noqa: E402

F = onnx.TensorProto.FLOAT
RNG = np.random.default_rng(11)


class _Options:
    def __init__(self, threads):
        self.intra_op_num_threads = threads


def _conv_model(c, cout, hw, k, group=1, stride=1, pad=0, relu=True, bias=True):
    w = RNG.standard_normal((cout, c // group, k, k)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(cout).astype(np.float32), "b"))
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["c" if relu else "y"], group=group, strides=[stride, stride],
                              pads=[pad] * 4, kernel_shape=[k, k])]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, c, hw, hw])],
                              [helper.make_tensor_value_info("y", F, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _runner(sess):
    runners = [e for e in sess._signatures.values() if isinstance(e, rt.SessionRunner)]
    assert len(runners) == 1, sess._signatures
    return runners[0]


def _c_run(sess, x):
    sess.run(None, {"x": x})  # the first run traces; the second is the C runner's
    return sess.run(None, {"x": x})[0]


CASES = {
    # name: (C, Cout, H=W, k, group, stride, pad)
    "nchw 3x3, Cout a multiple of MR": (16, 24, 9, 3, 1, 1, 1),
    "nchw 3x3, ragged Cout": (8, 13, 10, 3, 1, 2, 1),
    "nchw 1x1 pointwise": (32, 40, 7, 1, 1, 1, 0),
    "nchw 1x1 strided": (32, 20, 9, 1, 1, 2, 0),
    "nchw groups": (12, 18, 8, 3, 3, 1, 1),
    "nchw direct, 3 channels": (3, 17, 15, 3, 1, 2, 1),
    "nchw deep K (two k blocks)": (64, 30, 6, 3, 1, 1, 0),
    "nchw direct, Cout = NR": (3, 8, 15, 3, 1, 1, 1),
    "nchw 3x3 on 7x7 (transposed GEMM)": (64, 32, 7, 3, 1, 1, 1),
    "nchw 1x1 on 7x7 (transposed GEMM)": (64, 48, 7, 1, 1, 1, 0),
    "nchw groups on 7x7 (transposed GEMM)": (32, 64, 7, 3, 2, 1, 1),
    "nchw winograd (transformed weights packed)": (32, 40, 16, 3, 1, 1, 1),
    "nchw winograd, Cout not a multiple of NR": (48, 20, 12, 3, 1, 1, 1),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_packed_weights_give_the_same_bits(name, arch, threads, monkeypatch, isa):
    isa(arch)
    c, cout, hw, k, group, stride, pad = CASES[name]
    data = _conv_model(c, cout, hw, k, group, stride, pad)
    x = RNG.standard_normal((1, c, hw, hw)).astype(np.float32)
    packed = InferenceSession(data, _Options(threads))
    y_packed = _c_run(packed, x)
    assert _runner(packed)._m.prepack() > 0, "the session did not pack its convolution's weights"
    call = rt._ExternalConstsRunner._call
    monkeypatch.setattr(rt._ExternalConstsRunner, "_call",
                        lambda self, b, i, o, consts, fixed=False: call(self, b, i, o, consts, False))
    plain = InferenceSession(data, _Options(threads))
    y_plain = _c_run(plain, x)
    assert np.array_equal(y_packed, y_plain)
    assert np.abs(y_plain).max() > 0


def test_a_change_of_isa_repacks_for_the_new_micro_kernel(isa):
    if _core.arch_name() == "generic":
        pytest.skip("one ISA path only")
    data = _conv_model(16, 32, 12, 3)
    x = RNG.standard_normal((1, 16, 12, 12)).astype(np.float32)
    sess = InferenceSession(data)
    y_best = _c_run(sess, x)
    packed_best = _runner(sess)._m.prepack()
    isa("generic")  # another tile width (NR): the old panels must not be used
    y_generic = sess.run(None, {"x": x})[0]
    ref = InferenceSession(data)
    _c_run(ref, x)
    sess_generic_fresh = ref.run(None, {"x": x})[0]
    assert np.array_equal(y_generic, sess_generic_fresh)
    np.testing.assert_allclose(y_generic, y_best, rtol=1e-5, atol=1e-5)
    assert _runner(sess)._m.prepack() > 0 and packed_best > 0


def test_what_is_not_packed():
    # NCHW convolutions with few output channels take the few-row GEMM, which reads the weights in
    # place (depthwise ones too: 2 per group here)
    for data, c, hw in [(_conv_model(16, 4, 8, 3), 16, 8), (_conv_model(8, 16, 8, 3, group=8, pad=1), 8, 8)]:
        sess = InferenceSession(data)
        _c_run(sess, RNG.standard_normal((1, c, hw, hw)).astype(np.float32))
        assert _runner(sess)._m.prepack() == 0


def test_deploy_runtime_packs_the_bundles_weights(tmp_path):
    # channels_last: the NHWC GEMMs, whose weights are the B operand
    from cnnc import deploy, layers, models
    model = models.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(8, 3, activation="relu"),
                               layers.Conv2D(40, 3, padding="same"), layers.Conv2D(16, 3),  # K = 360: 2 k blocks
                               layers.Conv2D(20, 1), layers.Flatten(),
                               layers.Dense(5)])
    path = tmp_path / "m.cnnb"
    deploy.bundle(model, str(path))
    run = deploy.Runtime(str(path))
    x = RNG.standard_normal((3, 10, 10, 2)).astype(np.float32)
    y = run.run(x)
    assert run._m.prepack() > 0
    assert np.array_equal(y, model.predict(x))  # Sequential's runner packs at every call


def _im2col(x, k, stride, pad):
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    col = np.empty((c, k, k, oh * ow), np.float32)
    for i in range(k):
        for j in range(k):
            col[:, i, j] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride].reshape(c, -1)
    return col.reshape(c * k * k, oh * ow), oh, ow


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(64, 32, 7, 3, 1), (64, 48, 7, 1, 0), (128, 100, 7, 3, 1), (40, 20, 5, 3, 1)])
def test_transposed_gemm_gives_the_plain_gemms_bits(shape, threads):
    """Convolutions with few output pixels run y^T = col^T w^T (rows: pixels); each element is the same
    dot product in the same k blocks as in y = w col, so the bits are cnnc's plain GEMM's."""
    c, cout, hw, k, pad = shape
    data = _conv_model(c, cout, hw, k, pad=pad)
    model = onnx.load_from_string(data)
    w = numpy_helper.to_array(model.graph.initializer[0]).reshape(cout, -1)
    b = numpy_helper.to_array(model.graph.initializer[1])
    x = RNG.standard_normal((1, c, hw, hw)).astype(np.float32)
    col, oh, ow = _im2col(x[0], k, 1, pad)
    prod = np.zeros((cout, oh * ow), np.float32)
    _core.gemm(w, np.ascontiguousarray(col), prod, 0, 0, cout, oh * ow, col.shape[0], col.shape[0], oh * ow, oh * ow)
    want = prod + b[:, None]
    want = np.where(want > 0, want, np.float32(0)).reshape(1, cout, oh, ow)
    sess = InferenceSession(data, _Options(threads))
    first = sess.run(None, {"x": x})[0]
    second = sess.run(None, {"x": x})[0]
    assert np.array_equal(first, want) and np.array_equal(second, want)


def test_winograd_weights_packed_at_one_batch_are_not_used_where_im2col_runs(tmp_path):
    """Whether a convolution runs Winograd depends on the batch (its tile count): weights packed for
    Winograd at batch 3 must not serve the im2col GEMM the same convolution takes at batch 1."""
    from cnnc import deploy, layers, models, nn
    model = models.Sequential([layers.Input((10, 10, 32)), layers.Conv2D(32, 3, padding="same", activation="relu")])
    path = tmp_path / "w.cnnb"
    deploy.bundle(model, str(path))
    run = deploy.Runtime(str(path))
    x = RNG.standard_normal((3, 10, 10, 32)).astype(np.float32)
    w = model.layers[0].params["kernel"]
    assert nn.conv2d_algorithm(x, w, padding="same") == "winograd"
    assert nn.conv2d_algorithm(x[:1], w, padding="same") == "im2col"
    y3 = run.run(x)  # packs U for Winograd
    assert run._m.prepack() > 0
    y1 = run.run(x[:1])
    assert np.array_equal(y3, model.predict(x)) and np.array_equal(y1, model.predict(x[:1]))


def test_packed_weights_are_in_cnncs_memory_accounting(monkeypatch):
    import gc
    from cnnc import _alloc
    data = _conv_model(64, 96, 12, 3)
    x = RNG.standard_normal((1, 64, 12, 12)).astype(np.float32)

    def held_by_a_session():
        gc.collect()
        before = _alloc.current_bytes()
        sess = InferenceSession(data)
        _c_run(sess, x)
        packed = _runner(sess)._m.prepack()
        grown = _alloc.current_bytes() - before
        del sess
        gc.collect()
        assert _alloc.current_bytes() == before  # all of it released with the session
        return grown, packed

    grown, packed = held_by_a_session()
    monkeypatch.setattr(_alloc, "hold", lambda owner, nbytes: None)
    grown_untracked, _ = held_by_a_session()
    assert packed >= 96 * 64 * 9 * 4 and grown - grown_untracked == packed
