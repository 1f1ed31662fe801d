"""InferenceSession hands an input signature to the C runtime from its second run.

The first run of a signature goes through the plan step by step (the path ONNX's conformance suite
checks) and records the shapes; the second and later runs are one call into the C runtime, lowered for
those shapes with the session's own weight arrays. These tests run every float32 ONNX node case and the
light model-zoo models twice and check the C runs against the stored expected outputs."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import helper, numpy_helper  # noqa: E402
from onnx.backend.test.runner import Runner  # noqa: E402

import cnnc  # noqa: E402
from cnnc.deploy.runtime import SessionRunner  # noqa: E402
from cnnc.onnx import InferenceSession  # noqa: E402
from cnnc.onnx._random import randomized_weights  # noqa: E402

import test_deploy_onnx_nodes as nodes  # noqa: E402

F = onnx.TensorProto.FLOAT
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
RNG = np.random.default_rng(3)


def _entries(sess):
    return list(sess._signatures.values())


@pytest.mark.parametrize("name", sorted(nodes.CASES))
def test_node_case_second_run_in_the_c_runtime(name):
    case = nodes.CASES[name]
    sess = InferenceSession(case.model.SerializeToString())
    inputs = nodes._graph_inputs(case.model)
    for data_in, expected in case.data_sets:
        feeds = {i.name: a for i, a in zip(inputs, data_in)}
        first = sess.run(None, feeds)
        second = sess.run(None, feeds)
        Runner.assert_similar_outputs(list(expected), second, rtol=case.rtol, atol=case.atol)
        for a, b in zip(first, second):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    runners = [e for e in _entries(sess) if isinstance(e, SessionRunner)]
    if name in nodes.REFUSED:
        assert not runners, f"{name}: the C runtime took a case the bundles refuse"
    else:
        assert runners and all(isinstance(e, SessionRunner) for e in _entries(sess)), _entries(sess)


LIGHT_MODELS = ["squeezenet", "shufflenet", "inception_v1", "densenet121", "resnet50"]


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_models_second_run_matches_the_reference(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    model = onnx.load(path)
    expected = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    # the stored output is for the light model's own (constant) weights: any input gives it
    sess = InferenceSession(model.SerializeToString())
    first = sess.run(None, {inp.name: x})[0]
    second = sess.run(None, {inp.name: x})[0]
    assert isinstance(_entries(sess)[0], SessionRunner)
    np.testing.assert_allclose(second, expected, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-6)
    # random weights: the C run against the step-by-step plan, and the weights are shared, not copied
    sess = InferenceSession(randomized_weights(model).SerializeToString())
    first = sess.run(None, {inp.name: x})[0]
    second = sess.run(None, {inp.name: x})[0]
    assert np.abs(first).max() > 1e-3
    np.testing.assert_allclose(second, first, rtol=1e-4, atol=1e-6 * np.abs(first).max())
    runner = _entries(sess)[0]
    prepared = {id(a) for s in sess._plan for a in s.info.prepared_arrays.values() if a is not None}
    prepared |= {id(a) for s in sess._plan for a in s.info.consts.values()}
    big = [a for a in runner._consts if a.size >= 4096]
    assert big and all(id(a) in prepared for a in big)


def _conv_model():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes_ = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes_, "g", [helper.make_tensor_value_info("x", F, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", F, None)],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_signatures_shapes_threads_and_output_subsets():
    sess = InferenceSession(_conv_model())
    xs = [RNG.standard_normal(s).astype(np.float32) for s in [(1, 3, 8, 8), (2, 3, 5, 7), (1, 3, 8, 8)]]
    first = [sess.run(None, {"x": x})[0] for x in xs]
    assert len(_entries(sess)) == 2  # two signatures traced
    prev = cnnc.get_num_threads()
    try:
        for t in (1, 2):
            cnnc.set_num_threads(t)
            for x, f in zip(xs, first):
                np.testing.assert_array_equal(sess.run(["y"], {"x": x})[0], f)
    finally:
        cnnc.set_num_threads(prev)
    assert all(isinstance(e, SessionRunner) for e in _entries(sess))
    # a bad feed still gets the session's error, not the runner's
    with pytest.raises(ValueError, match="expects rank 4"):
        sess.run(None, {"x": xs[0][0]})


def test_at_most_eight_signatures_are_compiled():
    sess = InferenceSession(_conv_model())
    for h in range(4, 16):
        x = RNG.standard_normal((1, 3, h, 6)).astype(np.float32)
        a = sess.run(None, {"x": x})[0]
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], a)
    assert len(_entries(sess)) == InferenceSession._MAX_SIGNATURES


def test_integer_inputs_keep_the_plan():
    nodes_ = [helper.make_node("Cast", ["i"], ["f"], to=F), helper.make_node("Relu", ["f"], ["y"])]
    graph = helper.make_graph(nodes_, "g", [helper.make_tensor_value_info("i", onnx.TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", F, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    sess = InferenceSession(data)
    for _ in range(3):
        np.testing.assert_array_equal(sess.run(None, {"i": np.array([-1, 0, 4])})[0], [0, 0, 4])
    assert _entries(sess) == [False]
