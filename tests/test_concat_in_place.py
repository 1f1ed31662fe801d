"""Concatenations computed in place: the ops writing a concatenation's inputs write straight into its
output when the output is one block per input (batch 1 for a channel concatenation), and the memory
plan places those inputs inside it. The Python writer (Graph.plan) and the C runtime (model.c) must
compute the same plan (the C runtime refuses a bundle whose stored plan differs), at every batch."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import helper, numpy_helper  # noqa: E402

from cnnc import deploy  # noqa: E402
from cnnc.deploy import _lower  # noqa: E402
from cnnc.onnx import InferenceSession  # noqa: E402

F = onnx.TensorProto.FLOAT
RNG = np.random.default_rng(7)


def _conv(name, x, cout, c, inits, k=1):
    inits.append(numpy_helper.from_array(RNG.standard_normal((cout, c, k, k)).astype(np.float32), name + "_w"))
    return helper.make_node("Conv", [x, name + "_w"], [name], kernel_shape=[k, k], pads=[k // 2] * 4, name=name)


def _fire(extra_reader=False, nested=False, shared=False):
    """x -> s = relu(conv(x)); e1 = conv1x1(s), e3 = conv3x3(s); y = concat(e1, e3) (a SqueezeNet fire
    module), then a conv on y. extra_reader: e1 is a graph output too. nested: concat(y, e4) again.
    shared: another op reads e1 too (z = relu(e1), an output)."""
    inits = []
    nodes = [_conv("s", "x", 4, 6, inits), helper.make_node("Relu", ["s"], ["sr"]),
             _conv("e1", "sr", 5, 4, inits), _conv("e3", "sr", 7, 4, inits, k=3),
             helper.make_node("Concat", ["e1", "e3"], ["cat"], axis=1)]
    last = "cat"
    if nested:
        nodes += [_conv("e4", "sr", 3, 4, inits), helper.make_node("Concat", ["cat", "e4"], ["cat2"], axis=1)]
        last = "cat2"
    ch = 15 if nested else 12
    nodes.append(_conv("y", last, 2, ch, inits))
    outs = [helper.make_tensor_value_info("y", F, None)]
    if shared:
        nodes.append(helper.make_node("Relu", ["e1"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", F, None))
    if extra_reader:
        outs.append(helper.make_tensor_value_info("e1", F, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 6, 9, 9])], outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _in_place(data, batch):
    g = _lower.from_onnx(data)
    sizes = [4 * v.size_at(batch) for v in g.values]
    into = g.concat_inputs_in_place(batch, sizes)
    offsets, _ = g.plan(batch)
    for v, (out, at) in into.items():
        assert offsets[v] == offsets[out] + at
    return g, into


@pytest.mark.parametrize("plan_batch", [1, 2])
def test_inputs_written_into_the_concatenation_and_the_c_plan_agrees(plan_batch):
    data = _fire()
    g, into = _in_place(data, 1)
    assert len(into) == 2  # e1 and e3
    assert not _in_place(data, 2)[1]  # at batch 2 the output is not one block per input
    rt = deploy.Runtime(deploy.bundle_bytes(data, plan_batch=plan_batch))  # the C plan equals the stored one
    sess = InferenceSession(data)
    for batch in (1, 2, 1):
        x = RNG.standard_normal((batch, 6, 9, 9)).astype(np.float32)
        np.testing.assert_allclose(rt.run(x), sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_what_is_not_computed_in_place():
    # e1 is also a graph output (its own buffer), or read by another op; the nested concatenation's
    # first input is itself a concatenation (not written by an op of its own)
    _, into = _in_place(_fire(extra_reader=True), 1)
    assert len(into) == 1  # e3 only
    _, into = _in_place(_fire(shared=True), 1)
    assert len(into) == 1  # e3 only: e1 is read by another op too
    g, into = _in_place(_fire(nested=True), 1)
    names = {op.output: op.label for op in g.ops}
    assert sorted(names[v] for v in into) == ["e1", "e3", "e4"]
    for data in (_fire(extra_reader=True), _fire(nested=True), _fire(shared=True)):
        rt = deploy.Runtime(deploy.bundle_bytes(data))
        sess = InferenceSession(data)
        x = RNG.standard_normal((1, 6, 9, 9)).astype(np.float32)
        got = rt.run(x)
        for a, want in zip(got if isinstance(got, list) else [got], sess.run(None, {"x": x})):
            np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-5)


def test_session_runs_the_light_squeezenet_with_its_concatenations_in_place():
    import os
    from cnnc.deploy.runtime import SessionRunner
    from cnnc.onnx._random import randomized_weights
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_squeezenet.onnx")
    sess = InferenceSession(randomized_weights(onnx.load(path)).SerializeToString())
    x = RNG.standard_normal((1, 3, 224, 224)).astype(np.float32)
    first = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    trace = next(iter(sess._signatures.values()))
    g = _lower.for_session(sess, trace)
    assert len(g.concat_inputs_in_place(1, [4 * v.size_at(1) for v in g.values])) == 16  # 8 fire modules
    second = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert any(isinstance(e, SessionRunner) for e in sess._signatures.values())
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-6)
