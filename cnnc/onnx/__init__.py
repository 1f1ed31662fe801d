"""cnnc.onnx - run ONNX models on cnnc's C core, with ONNX Runtime's Python API.

    import cnnc.onnx
    sess = cnnc.onnx.InferenceSession("model.onnx")
    (probs,) = sess.run(None, {sess.get_inputs()[0].name: x})

Everything is imported lazily: `import cnnc.onnx` is cheap and `import cnnc` never imports onnx (the
onnx package is needed only when a model is loaded, exported or checked).

InferenceSession, UnsupportedModelError, find_unsupported, SUPPORTED_OPS (op -> (min_opset,
max_opset)) come from the runtime; export, import_model, check_model_report and backend from the
exporter, importer, check report and ONNX backend modules.
"""
import importlib

__all__ = ["InferenceSession", "UnsupportedModelError", "find_unsupported", "SUPPORTED_OPS",
           "export", "import_model", "check_model_report", "backend"]

# attribute -> (submodule, attribute in it or None for the module itself)
_LAZY = {
    "InferenceSession": ("runtime", "InferenceSession"),
    "UnsupportedModelError": ("_graph", "UnsupportedModelError"),
    "find_unsupported": ("_graph", "find_unsupported"),
    "SUPPORTED_OPS": ("_ops", "SUPPORTED_OPS"),
    "export": ("_export", "export"),
    "import_model": ("importer", "import_model"),
    "check_model_report": ("check", "check_model_report"),
    "backend": ("backend", None),
}


def __getattr__(name):
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'cnnc.onnx' has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{spec[0]}")
    value = module if spec[1] is None else getattr(module, spec[1])
    if spec[0] in ("runtime", "_graph", "_ops"):
        globals()[name] = value  # cache; the other helpers' modules may still be in flux
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
