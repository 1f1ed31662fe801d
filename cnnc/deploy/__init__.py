"""Deployment: bundles for the standalone C runtime, and the runtime from Python.

    cnnc.deploy.bundle(model_or_onnx, "model.cnnb")    # a trained Sequential, or an ONNX model
    rt = cnnc.deploy.Runtime("model.cnnb")             # numpy only; onnx is never imported
    y = rt.run(x)

The same bundle runs in C (src_c/cnnc.h: cnnc_model_load, cnnc_model_arena_size, cnnc_model_run) with
one arena whose size is known before the first run. The format is described in cnnc/deploy/_format.py.
"""
from ._format import BundleError
from .runtime import Runtime, arena_bytes, bundle, bundle_bytes

__all__ = ["bundle", "bundle_bytes", "Runtime", "BundleError", "arena_bytes"]
