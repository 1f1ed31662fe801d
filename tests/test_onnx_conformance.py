"""ONNX's own backend test suite (onnx.backend.test.BackendTest) run on cnnc.onnx.backend.

Selected:
  * node tests (cases of onnx.backend.test.case.node) whose operator(s) cnnc.onnx supports
    (cnnc.onnx.SUPPORTED_OPS); an "_expanded" variant (the op's function body) only when every op of
    the body is supported too;
  * every 'light' model-zoo model (onnx/backend/test/data/light; ONNX's runner category "Real"),
    compared with the stored reference output within the stored tolerance;
  * the 'pytorch-converted', 'pytorch-operator' and 'simple' model tests using at least one
    supported op.
Selection goes through BackendTest.include() (one exact pattern per selected test); the tests not
selected, and the CUDA variants, are then dropped from the generated TestCase classes so that the
report counts only what runs.

Every selected test must pass unless it is in EXPECTED_FAILURES below (test name without the device
suffix -> one-line reason). A listed test must fail (it is reported as xfail with its reason) and an
unlisted one must pass: a new failure, or a listed test that starts to pass, fails the suite.

`python tests/test_onnx_conformance.py` runs the selection outside pytest and prints the counts per
category and a fresh EXPECTED_FAILURES table (reasons derived from the errors) to review and paste.
"""
import functools
import os
import re
import sys
import unittest
import warnings

import pytest

onnx = pytest.importorskip("onnx")

import onnx.backend.test  # noqa: E402
from onnx.backend.test.loader import load_model_tests  # noqa: E402

import cnnc.onnx  # noqa: E402
from cnnc.onnx.backend import CnncBackend  # noqa: E402

SUPPORTED = set(cnnc.onnx.SUPPORTED_OPS)
_OPSET_MAX = max(hi for _, hi in cnnc.onnx.SUPPORTED_OPS.values())

# ---------------------------------------------------------------------------------------------------
# Expected failures: test name (no _cpu suffix) -> reason.  Keep one line each; group by cause.
# ---------------------------------------------------------------------------------------------------
_1_D_AVERAGEPOOL = "1-D AveragePool; cnnc's convolution and pooling are 2-D only"
_1_D_CONV = "1-D Conv; cnnc's convolution and pooling are 2-D only"
_1_D_MAXPOOL = "1-D MaxPool; cnnc's convolution and pooling are 2-D only"
_3_D_AVERAGEPOOL = "3-D AveragePool; cnnc's convolution and pooling are 2-D only"
_3_D_CONV = "3-D Conv; cnnc's convolution and pooling are 2-D only"
_3_D_MAXPOOL = "3-D MaxPool; cnnc's convolution and pooling are 2-D only"
_GRAPH_INPUT_OUTPUT = '<graph input/output>: type optional_type is not supported (tensors only)'
_GRAPH_INPUT_OUTPUT_7 = '<graph input/output>: type sequence_type is not supported (tensors only)'
_AVERAGEPOOL = 'AveragePool: dilations=[2, 2]: AveragePool supports dilations 1 only'
_BATCHNORMALIZATION = 'BatchNormalization: training_mode=1: only inference is supported'
_GRADIENT = "Gradient: domain 'ai.onnx.preview.training' is not supported (only the default ONNX domain)"
_MAXPOOL = 'MaxPool: storage_order=1: only 0 (row major) is supported'
_MAXPOOL_12 = 'MaxPool: the Indices output is not supported'
_VALUEERROR = "ValueError: the model bytes (160 bytes): node '#0 (Dropout)' (Dropout): training_mode=True is not supported (inference only)"
_VALUEERROR_14 = "ValueError: the model bytes (168 bytes): node '#0 (Dropout)' (Dropout): training_mode=True is not supported (inference only)"
_VALUEERROR_15 = "ValueError: the model bytes (171 bytes): node '#0 (Dropout)' (Dropout): training_mode=True is not supported (inference only)"
_VALUEERROR_16 = "ValueError: the model bytes (193 bytes): node '#0 (Dropout)' (Dropout): training_mode=True is not supported (inference only)"
_VALUEERROR_17 = "ValueError: the model bytes (201 bytes): node '#0 (Dropout)' (Dropout): training_mode=True is not supported (inference only)"
_VALUEERROR_18 = "ValueError: the model bytes (204 bytes): node '#0 (Dropout)' (Dropout): training_mode=True is not supported (inference only)"
_ELEMENT_TYPE_BFLOAT16_IS_NOT_SUPPORTED = 'element type bfloat16 is not supported'
_ELEMENT_TYPE_FLOAT4E2M1_IS_NOT_SUPPORTED = 'element type float4e2m1 is not supported'
_ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED = 'element type float8e4m3fn is not supported'
_ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED = 'element type float8e4m3fnuz is not supported'
_ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED = 'element type float8e5m2 is not supported'
_ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED = 'element type float8e5m2fnuz is not supported'
_ELEMENT_TYPE_FLOAT8E8M0_IS_NOT_SUPPORTED = 'element type float8e8m0 is not supported'
_ELEMENT_TYPE_INT2_IS_NOT_SUPPORTED = 'element type int2 is not supported'
_ELEMENT_TYPE_INT4_IS_NOT_SUPPORTED = 'element type int4 is not supported'
_ELEMENT_TYPE_UINT2_IS_NOT_SUPPORTED = 'element type uint2 is not supported'
_ELEMENT_TYPE_UINT4_IS_NOT_SUPPORTED = 'element type uint4 is not supported'
_USES_UNSUPPORTED_OP_S_ABS = 'uses unsupported op(s) Abs'
_USES_UNSUPPORTED_OP_S_EXP = 'uses unsupported op(s) Exp'
_USES_UNSUPPORTED_OP_S_NEG = 'uses unsupported op(s) Neg'
_USES_UNSUPPORTED_OP_S_SLICE = 'uses unsupported op(s) Slice'
_USES_UNSUPPORTED_OP_S_SPLIT = 'uses unsupported op(s) Split'
_USES_UNSUPPORTED_OP_S_TILE = 'uses unsupported op(s) Tile'

EXPECTED_FAILURES = {
    'test_averagepool_1d_default': _1_D_AVERAGEPOOL,
    'test_Conv1d': _1_D_CONV,
    'test_Conv1d_dilated': _1_D_CONV,
    'test_Conv1d_groups': _1_D_CONV,
    'test_Conv1d_pad1': _1_D_CONV,
    'test_Conv1d_pad1size1': _1_D_CONV,
    'test_Conv1d_pad2': _1_D_CONV,
    'test_Conv1d_pad2size1': _1_D_CONV,
    'test_Conv1d_stride': _1_D_CONV,
    'test_MaxPool1d': _1_D_MAXPOOL,
    'test_MaxPool1d_stride': _1_D_MAXPOOL,
    'test_MaxPool1d_stride_padding_dilation': _1_D_MAXPOOL,
    'test_maxpool_1d_default': _1_D_MAXPOOL,
    'test_operator_maxpool': _1_D_MAXPOOL,
    'test_AvgPool3d': _3_D_AVERAGEPOOL,
    'test_AvgPool3d_stride': _3_D_AVERAGEPOOL,
    'test_AvgPool3d_stride1_pad0_gpu_input': _3_D_AVERAGEPOOL,
    'test_averagepool_3d_default': _3_D_AVERAGEPOOL,
    'test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False': _3_D_AVERAGEPOOL,
    'test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True': _3_D_AVERAGEPOOL,
    'test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False': _3_D_AVERAGEPOOL,
    'test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True': _3_D_AVERAGEPOOL,
    'test_averagepool_3d_dilations_small': _3_D_AVERAGEPOOL,
    'test_Conv3d': _3_D_CONV,
    'test_Conv3d_dilated': _3_D_CONV,
    'test_Conv3d_dilated_strided': _3_D_CONV,
    'test_Conv3d_groups': _3_D_CONV,
    'test_Conv3d_no_bias': _3_D_CONV,
    'test_Conv3d_stride': _3_D_CONV,
    'test_Conv3d_stride_padding': _3_D_CONV,
    'test_MaxPool3d': _3_D_MAXPOOL,
    'test_MaxPool3d_stride': _3_D_MAXPOOL,
    'test_MaxPool3d_stride_padding': _3_D_MAXPOOL,
    'test_maxpool_3d_default': _3_D_MAXPOOL,
    'test_maxpool_3d_dilations': _3_D_MAXPOOL,
    'test_maxpool_3d_dilations_use_ref_impl': _3_D_MAXPOOL,
    'test_maxpool_3d_dilations_use_ref_impl_large': _3_D_MAXPOOL,
    'test_identity_opt': _GRAPH_INPUT_OUTPUT,
    'test_identity_sequence': _GRAPH_INPUT_OUTPUT_7,
    'test_averagepool_2d_dilations': _AVERAGEPOOL,
    'test_batchnorm_epsilon_training_mode': _BATCHNORMALIZATION,
    'test_batchnorm_example_training_mode': _BATCHNORMALIZATION,
    'test_gradient_of_add': _GRADIENT,
    'test_gradient_of_add_and_mul': _GRADIENT,
    'test_maxpool_with_argmax_2d_precomputed_strides': _MAXPOOL,
    'test_maxpool_with_argmax_2d_precomputed_pads': _MAXPOOL_12,
    'test_training_dropout': _VALUEERROR,
    'test_training_dropout_default': _VALUEERROR_14,
    'test_training_dropout_zero_ratio': _VALUEERROR_15,
    'test_training_dropout_mask': _VALUEERROR_16,
    'test_training_dropout_default_mask': _VALUEERROR_17,
    'test_training_dropout_zero_ratio_mask': _VALUEERROR_18,
    'test_cast_BFLOAT16_to_FLOAT': _ELEMENT_TYPE_BFLOAT16_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_BFLOAT16': _ELEMENT_TYPE_BFLOAT16_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_FLOAT4E2M1': _ELEMENT_TYPE_FLOAT4E2M1_IS_NOT_SUPPORTED,
    'test_cast_FLOAT4E2M1_to_FLOAT': _ELEMENT_TYPE_FLOAT4E2M1_IS_NOT_SUPPORTED,
    'test_cast_FLOAT4E2M1_to_FLOAT16': _ELEMENT_TYPE_FLOAT4E2M1_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_FLOAT4E2M1': _ELEMENT_TYPE_FLOAT4E2M1_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_FLOAT8E4M3FN': _ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E4M3FN_to_FLOAT': _ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E4M3FN_to_FLOAT16': _ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_FLOAT8E4M3FN': _ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FN': _ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN': _ELEMENT_TYPE_FLOAT8E4M3FN_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_FLOAT8E4M3FNUZ': _ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E4M3FNUZ_to_FLOAT': _ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E4M3FNUZ_to_FLOAT16': _ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_FLOAT8E4M3FNUZ': _ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FNUZ': _ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FNUZ': _ELEMENT_TYPE_FLOAT8E4M3FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_FLOAT8E5M2': _ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E5M2_to_FLOAT': _ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E5M2_to_FLOAT16': _ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_FLOAT8E5M2': _ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2': _ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT_to_FLOAT8E5M2': _ELEMENT_TYPE_FLOAT8E5M2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_FLOAT8E5M2FNUZ': _ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E5M2FNUZ_to_FLOAT': _ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT8E5M2FNUZ_to_FLOAT16': _ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_FLOAT8E5M2FNUZ': _ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2FNUZ': _ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED,
    'test_cast_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ': _ELEMENT_TYPE_FLOAT8E5M2FNUZ_IS_NOT_SUPPORTED,
    'test_cast_e8m0_FLOAT16_to_FLOAT8E8M0': _ELEMENT_TYPE_FLOAT8E8M0_IS_NOT_SUPPORTED,
    'test_cast_e8m0_FLOAT8E8M0_to_FLOAT': _ELEMENT_TYPE_FLOAT8E8M0_IS_NOT_SUPPORTED,
    'test_cast_e8m0_FLOAT8E8M0_to_FLOAT16': _ELEMENT_TYPE_FLOAT8E8M0_IS_NOT_SUPPORTED,
    'test_cast_e8m0_FLOAT_to_FLOAT8E8M0': _ELEMENT_TYPE_FLOAT8E8M0_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_INT2': _ELEMENT_TYPE_INT2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_INT2': _ELEMENT_TYPE_INT2_IS_NOT_SUPPORTED,
    'test_cast_INT2_to_FLOAT': _ELEMENT_TYPE_INT2_IS_NOT_SUPPORTED,
    'test_cast_INT2_to_FLOAT16': _ELEMENT_TYPE_INT2_IS_NOT_SUPPORTED,
    'test_cast_INT2_to_INT8': _ELEMENT_TYPE_INT2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_INT4': _ELEMENT_TYPE_INT4_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_INT4': _ELEMENT_TYPE_INT4_IS_NOT_SUPPORTED,
    'test_cast_INT4_to_FLOAT': _ELEMENT_TYPE_INT4_IS_NOT_SUPPORTED,
    'test_cast_INT4_to_FLOAT16': _ELEMENT_TYPE_INT4_IS_NOT_SUPPORTED,
    'test_cast_INT4_to_INT8': _ELEMENT_TYPE_INT4_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_UINT2': _ELEMENT_TYPE_UINT2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_UINT2': _ELEMENT_TYPE_UINT2_IS_NOT_SUPPORTED,
    'test_cast_UINT2_to_FLOAT': _ELEMENT_TYPE_UINT2_IS_NOT_SUPPORTED,
    'test_cast_UINT2_to_FLOAT16': _ELEMENT_TYPE_UINT2_IS_NOT_SUPPORTED,
    'test_cast_UINT2_to_UINT8': _ELEMENT_TYPE_UINT2_IS_NOT_SUPPORTED,
    'test_cast_FLOAT16_to_UINT4': _ELEMENT_TYPE_UINT4_IS_NOT_SUPPORTED,
    'test_cast_FLOAT_to_UINT4': _ELEMENT_TYPE_UINT4_IS_NOT_SUPPORTED,
    'test_cast_UINT4_to_FLOAT': _ELEMENT_TYPE_UINT4_IS_NOT_SUPPORTED,
    'test_cast_UINT4_to_FLOAT16': _ELEMENT_TYPE_UINT4_IS_NOT_SUPPORTED,
    'test_cast_UINT4_to_UINT8': _ELEMENT_TYPE_UINT4_IS_NOT_SUPPORTED,
    'test_Softsign': _USES_UNSUPPORTED_OP_S_ABS,
    'test_PoissonNLLLLoss_no_reduce': _USES_UNSUPPORTED_OP_S_EXP,
    'test_Softmin': _USES_UNSUPPORTED_OP_S_NEG,
    'test_operator_basic': _USES_UNSUPPORTED_OP_S_NEG,
    'test_operator_params': _USES_UNSUPPORTED_OP_S_NEG,
    'test_operator_symbolic_override_nested': _USES_UNSUPPORTED_OP_S_NEG,
    'test_operator_index': _USES_UNSUPPORTED_OP_S_SLICE,
    'test_GLU': _USES_UNSUPPORTED_OP_S_SPLIT,
    'test_GLU_dim': _USES_UNSUPPORTED_OP_S_SPLIT,
    'test_operator_repeat': _USES_UNSUPPORTED_OP_S_TILE,
    'test_operator_repeat_dim_overflow': _USES_UNSUPPORTED_OP_S_TILE,
}


class _StrictBackend(CnncBackend):
    """cnnc's backend, but never 'incompatible': a model with unsupported ops must be listed above
    rather than silently skipped by the runner."""

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return True


# ---- selection -------------------------------------------------------------------------------------

_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


def _ops(model):
    return {n.op_type for n in model.graph.node}


def _node_selection():
    """name -> set of ops, for the node tests to run."""
    cases = {t.name: t for t in load_model_tests(kind="node")}
    chosen = {}
    for name, t in cases.items():
        base = cases.get(_EXPANDED.sub("", name), t)
        if base.model is None or t.model is None:
            continue
        ops, base_ops = _ops(t.model), _ops(base.model)
        if base_ops and base_ops <= SUPPORTED and ops <= SUPPORTED:
            chosen[name] = ops
    return chosen


def _light_model_path(t):
    return os.path.join(os.path.dirname(onnx.__file__), "..", t.url) if t.url else None


def _model_selection(kind):
    """name -> set of ops for the model tests of one kind ('real' = the light models: all of them)."""
    chosen = {}
    for t in load_model_tests(kind=kind):
        if kind == "real":
            path = os.path.normpath(_light_model_path(t))
        else:
            path = os.path.join(t.model_dir, "model.onnx")
        if not os.path.exists(path):
            continue
        ops = _ops(onnx.load(path, load_external_data=False))
        if kind == "real" or ops & SUPPORTED:
            chosen[t.name] = ops
    return chosen


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the case generators' numpy overflow warnings
    backend_test = onnx.backend.test.BackendTest(_StrictBackend, __name__)
    SELECTED = {
        "NodeModel": _node_selection(),
        "RealModel": _model_selection("real"),
        "PyTorchConvertedModel": _model_selection("pytorch-converted"),
        "PyTorchOperatorModel": _model_selection("pytorch-operator"),
        "SimpleModel": _model_selection("simple"),
    }

for _names in SELECTED.values():
    for _name in _names:
        backend_test.include(f"^{re.escape(_name)}_cpu$")


def _strict(func, name):
    reason = EXPECTED_FAILURES.get(name)

    @functools.wraps(func)
    def test(*args, **kwargs):
        if reason is None:
            return func(*args, **kwargs)
        try:
            func(*args, **kwargs)
        except unittest.SkipTest:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is the expected one
            pytest.xfail(f"{reason} [{type(exc).__name__}]")
        pytest.fail(f"{name} is in EXPECTED_FAILURES ({reason}) but now passes: remove it from the list")

    return test


TEST_CASES = {}
for _case_name, _case in backend_test.test_cases.items():
    _category = _case_name[len("OnnxBackend"):-len("Test")]
    _wanted = SELECTED.get(_category, {})
    for _attr in [a for a in vars(_case) if a.startswith("test_")]:
        _base = _attr[:-len("_cpu")] if _attr.endswith("_cpu") else None
        if _base is None or _base not in _wanted:
            delattr(_case, _attr)          # CUDA variants and tests not selected
        else:
            setattr(_case, _attr, _strict(getattr(_case, _attr), _base))
    if any(a.startswith("test_") for a in vars(_case)):
        TEST_CASES[_case_name] = _case

globals().update(TEST_CASES)
del _case_name, _case, _category, _wanted, _attr, _base, _names, _name  # no second reference for pytest


def test_expected_failures_are_selected():
    """Every EXPECTED_FAILURES entry names a test that runs here (no stale entries)."""
    everything = set().union(*SELECTED.values())
    stale = sorted(set(EXPECTED_FAILURES) - everything)
    assert not stale, f"EXPECTED_FAILURES lists tests that are not selected: {stale}"


def test_selection_covers_the_cnn_ops():
    """The node selection reaches the operators of CNN inference."""
    ops = set().union(*SELECTED["NodeModel"].values())
    for op in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Gemm", "MatMul",
               "Relu", "Softmax", "Flatten", "Reshape", "Concat", "Add"):
        if op in SUPPORTED:
            assert op in ops, op
    assert len(SELECTED["RealModel"]) == 9


def test_backend_api():
    import numpy as np
    from onnx import TensorProto, helper

    import cnnc.onnx.backend as backend

    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)
    a, b, c = (np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((4, 3), np.float32),
               np.float32([1, 2, 3, 4]))
    (y,) = backend.run_node(node, [a, b, c])
    np.testing.assert_allclose(y, a @ b.T + c)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["s"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    rep = backend.prepare(model)
    out = rep.run([np.float32([-1, 2])])
    assert out.r.tolist() == [0, 2] and out["s"][0] == 0.5
    assert rep.run({"x": np.float32([3, -3])}).r.tolist() == [3, 0]
    assert backend.is_compatible(model)
    bad = helper.make_model(helper.make_graph([helper.make_node("Erf", ["x"], ["r"])], "g", graph.input[:],
                                              graph.output[:1]), opset_imports=[helper.make_opsetid("", 13)])
    assert not backend.is_compatible(bad)
    with pytest.raises(cnnc.onnx.UnsupportedModelError):
        backend.prepare(bad)
    with pytest.raises(RuntimeError):
        backend.prepare(model, "CUDA")


# ---- python tests/test_onnx_conformance.py: counts and a fresh EXPECTED_FAILURES table -------------

def _reason_from(exc_text):
    """A one-line reason for a failure, from its traceback text."""
    m = re.search(r"opset (\d+) is outside the supported (\d+)\.\.(\d+)", exc_text)
    if m:
        return f"opset {m.group(1)} model; the runtime runs opsets {m.group(2)}..{m.group(3)}"
    m = re.findall(r"\((\w+)\): op is not supported", exc_text)
    if m:
        return "uses unsupported op(s) " + ", ".join(sorted(set(m)))
    m = re.search(r"\((\w+)\): kernel_shape=\[([\d, ]+)\]: only 2-D", exc_text)
    if m:
        return f"{len(m.group(2).split(','))}-D {m.group(1)}; cnnc's convolution and pooling are 2-D only"
    m = re.search(r"element type (type#(\d+)|\w+) is not supported", exc_text)
    if m:
        t = m.group(1)
        if m.group(2):
            t = onnx.TensorProto.DataType.Name(int(m.group(2))).lower()
        return f"element type {t} is not supported"
    m = re.search(r"cannot be run by cnnc.onnx: \d+ unsupported node\(s\)/feature\(s\):\n\s*- node '[^']*' "
                  r"\(([^)]*)\): (.*)", exc_text)
    if m:
        return f"{m.group(1)}: {m.group(2).strip()}"[:150]
    if "Not equal to tolerance" in exc_text or "Mismatched elements" in exc_text:
        return "output differs from the reference beyond the tolerance"
    last = [l for l in exc_text.strip().splitlines() if l.strip()]
    return (last[-1] if last else "fails")[:150]


def _main():
    import time
    import traceback

    counts = {}
    fresh = {}
    for case_name, case in TEST_CASES.items():
        cat = case_name[len("OnnxBackend"):-len("Test")]
        c = counts.setdefault(cat, {"pass": 0, "fail": 0, "skip": 0})
        t0 = time.perf_counter()
        for attr in sorted(a for a in vars(case) if a.startswith("test_")):
            name = attr[:-len("_cpu")]
            func = getattr(case, attr).__wrapped__
            try:
                func(case(attr))
                c["pass"] += 1
            except unittest.SkipTest:
                c["skip"] += 1
            except Exception:  # noqa: BLE001
                c["fail"] += 1
                fresh[name] = _reason_from(traceback.format_exc())
        print(f"{cat}: {c} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    print(_render(fresh))


def _render(failures):
    """Python source of the reason constants and EXPECTED_FAILURES for {test name: reason}."""
    reasons = sorted(set(failures.values()), key=lambda r: (not r.startswith("opset"), r))
    const = {}
    out = []
    for i, r in enumerate(reasons):
        m = re.match(r"opset (\d+) model", r)
        head = r.split(";")[0].split(":")[0]
        base = f"_OPSET_{m.group(1)}" if m else "_" + re.sub(r"\W+", "_", head).strip("_").upper()
        name = base if base not in const.values() else f"{base}_{i}"
        const[r] = name
        out.append(f"{name} = {r!r}")
    out.append("")
    out.append("EXPECTED_FAILURES = {")
    for name in sorted(failures, key=lambda n: (reasons.index(failures[n]), n)):
        out.append(f"    {name!r}: {const[failures[name]]},")
    out.append("}")
    return "\n".join(out)


if __name__ == "__main__":
    _main()
