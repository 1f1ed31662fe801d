"""ONNX's node test cases (onnx.backend.test.case.node, as onnx.backend.test.loader generates them) bundled
with cnnc.deploy and run by the C runtime (cnnc.deploy.Runtime).

Selected: every node case whose graph inputs are all float32 and which cnnc.onnx.InferenceSession loads
and runs without error on all of its data sets. Each one is bundled with cnnc.deploy.bundle_bytes and
run with cnnc.deploy.Runtime; its outputs must match the stored expected outputs with the tolerance
logic of ONNX's backend runner (the one tests/test_onnx_conformance.py goes through: shape, dtype, then
assert_allclose with the case's rtol/atol), and InferenceSession's outputs with rtol 1e-5 / atol 1e-6.

The cases the bundler refuses are listed in REFUSED (case name -> words the BundleError must contain).
The list is exact: a listed case that starts to bundle fails, and so does an unlisted case that is
refused. `PYTHONPATH=. python tests/test_deploy_onnx_nodes.py` prints the counts and a fresh REFUSED table.
"""
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx.backend.test.loader import load_model_tests  # noqa: E402
from onnx.backend.test.runner import Runner  # noqa: E402

import cnnc.onnx  # noqa: E402
from cnnc import deploy  # noqa: E402
from cnnc.deploy import BundleError  # noqa: E402
from cnnc.onnx import InferenceSession  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# Refused: case name -> words the BundleError must contain. The C runtime computes float32 tensors only
# (by design: no integer or bool tensors), and needs at least one input.
# ---------------------------------------------------------------------------------------------------
_INT64_SHAPE = "output 'y' is int64 (output 0 of node '#0 (Shape)' (Shape)): the C runtime computes float32 tensors only"
_BOOL_MASK = "output 'z' is bool (output 1 of node '#0 (Dropout)' (Dropout)): the C runtime computes float32 tensors only"
_NO_INPUTS = "the model has no inputs"

REFUSED = {
    "test_constant": _NO_INPUTS,
    "test_dropout_default_mask": _BOOL_MASK,
    "test_dropout_default_mask_ratio": _BOOL_MASK,
    "test_shape": _INT64_SHAPE,
    "test_shape_clip_end": _INT64_SHAPE,
    "test_shape_clip_start": _INT64_SHAPE,
    "test_shape_end_1": _INT64_SHAPE,
    "test_shape_end_negative_1": _INT64_SHAPE,
    "test_shape_example": _INT64_SHAPE,
    "test_shape_start_1": _INT64_SHAPE,
    "test_shape_start_1_end_2": _INT64_SHAPE,
    "test_shape_start_1_end_negative_1": _INT64_SHAPE,
    "test_shape_start_greater_than_end": _INT64_SHAPE,
    "test_shape_start_negative_1": _INT64_SHAPE,
}

SUPPORTED = set(cnnc.onnx.SUPPORTED_OPS)


def _graph_inputs(model):
    init = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def _runs_in_session(case, inputs):
    try:
        sess = InferenceSession(case.model.SerializeToString())
        for data_in, _ in case.data_sets:
            sess.run(None, {i.name: a for i, a in zip(inputs, data_in)})
    except Exception:  # noqa: BLE001 - any failure: InferenceSession does not run it, not selected
        return False
    return True


def _select():
    """name -> case, for the float32-input node cases InferenceSession runs."""
    chosen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators' numpy overflow warnings
        cases = load_model_tests(kind="node")
        for case in cases:
            model = case.model
            if model is None or not case.data_sets:
                continue
            if not {n.op_type for n in model.graph.node} <= SUPPORTED:
                continue
            inputs = _graph_inputs(model)
            if any(i.type.tensor_type.elem_type != onnx.TensorProto.FLOAT for i in inputs):
                continue
            if any(np.asarray(a).dtype != np.float32 for data_in, _ in case.data_sets for a in data_in):
                continue
            if _runs_in_session(case, inputs):
                chosen[case.name] = case
    return chosen


CASES = _select()


def _bundle_and_compare(case):
    data = case.model.SerializeToString()
    bundle = deploy.bundle_bytes(data)
    rt = deploy.Runtime(bundle)
    sess = InferenceSession(data)
    inputs = _graph_inputs(case.model)
    for data_in, expected in case.data_sets:
        feeds = {i.name: a for i, a in zip(inputs, data_in)}
        got = rt.run(dict(feeds))
        got = got if isinstance(got, list) else [got]
        Runner.assert_similar_outputs(list(expected), got, rtol=case.rtol, atol=case.atol)
        for g, r in zip(got, sess.run(None, feeds)):
            assert g.shape == r.shape
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_node_case_bundles_and_matches(name):
    case = CASES[name]
    reason = REFUSED.get(name)
    if reason is None:
        _bundle_and_compare(case)
        return
    try:
        deploy.bundle_bytes(case.model.SerializeToString())
    except BundleError as exc:
        assert reason in str(exc), f"{name}: refused for another reason: {exc}"
    else:
        pytest.fail(f"{name} is in REFUSED ({reason}) but now bundles: remove it from the list")


def test_refused_cases_are_selected():
    """Every REFUSED entry names a selected case (no stale entries)."""
    assert not sorted(set(REFUSED) - set(CASES))


def test_selection_reaches_the_ops_the_bundles_lower():
    ops = set().union(*({n.op_type for n in c.model.graph.node} for c in CASES.values()))
    for op in ("Conv", "MaxPool", "AveragePool", "BatchNormalization", "Gemm", "MatMul", "Clip", "Relu",
               "Softmax", "Concat", "Transpose", "LRN", "PRelu", "Add", "Sum", "Flatten"):
        assert op in ops, op
    assert len(CASES) >= 150
    assert len(REFUSED) / len(CASES) < 0.1


# ---- python tests/test_deploy_onnx_nodes.py: counts and a fresh REFUSED table ------------------------

def _main():
    refused, failed = {}, {}
    for name in sorted(CASES):
        try:
            _bundle_and_compare(CASES[name])
        except BundleError as exc:
            problems = [ln.strip() for ln in str(exc).splitlines()[1:]] or [str(exc)]
            refused[name] = problems[0]
        except Exception as exc:  # noqa: BLE001
            failed[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    print(f"{len(CASES)} cases: {len(CASES) - len(refused) - len(failed)} bundle and match, {len(refused)} "
          f"refused, {len(failed)} bundle but fail", file=sys.stderr)
    for name, why in failed.items():
        print(f"FAILS {name}: {why}", file=sys.stderr)
    print("REFUSED = {")
    for name, why in refused.items():
        print(f"    {name!r}: {why!r},")
    print("}")


if __name__ == "__main__":
    _main()
