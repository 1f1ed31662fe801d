"""bundle() and Runtime: write bundles, and run them through the C runtime from Python (numpy only)."""
import os
import threading

import numpy as np

from .. import _alloc, _core
from ._format import BundleError


def _graph(src):
    from . import _lower
    if hasattr(src, "layers") and hasattr(src, "_require_built"):
        return _lower.from_sequential(src)
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.exists(path):
            raise FileNotFoundError(f"model file {path!r} does not exist")
        if not path.lower().endswith(".onnx"):
            from ..models import load_model
            try:
                model = load_model(path)
            except Exception as exc:  # noqa: BLE001 - any reason: say what the file should be
                raise BundleError(f"{path!r} is neither a .onnx file nor a model saved by cnnc ({exc})") from None
            return _lower.from_sequential(model)
        return _lower.from_onnx(path)
    if isinstance(src, (bytes, bytearray, memoryview)) or type(src).__name__ == "ModelProto":
        return _lower.from_onnx(src)
    raise TypeError(f"bundle() takes a built Sequential, a saved model or .onnx path, or ONNX bytes; received "
                    f"{type(src).__name__}")


def bundle_bytes(model_or_onnx, plan_batch=1):
    """The bundle of a built Sequential, a saved cnnc model (path), or an ONNX model (path, bytes or
    ModelProto), as bytes. plan_batch: the batch size whose memory plan is stored (the C runtime plans
    other batch sizes itself, with the same algorithm)."""
    if isinstance(plan_batch, bool) or not isinstance(plan_batch, (int, np.integer)) or plan_batch < 1:
        raise ValueError(f"plan_batch must be a positive int, received {plan_batch!r}")
    return _graph(model_or_onnx).to_bytes(int(plan_batch))


def bundle(model_or_onnx, path, plan_batch=1):
    """Write the bundle of a model to path (see bundle_bytes); returns the number of bytes written."""
    data = bundle_bytes(model_or_onnx, plan_batch)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)


def arena_bytes(model, batch_size):
    """Bytes of the arena the C runtime asks for to run a Sequential's bundle on one batch (with the
    calling thread's ISA path and thread count)."""
    return Runtime(bundle_bytes(model)).arena_size(batch_size)


class Runtime:
    """Runtime(path_or_bytes): runs a bundle with the C runtime.

    run(x) takes one array (or a dict name -> array, or a list, for several inputs); the arrays are
    converted to float32. It returns one array, or a list when the model has several outputs. The
    arena is allocated once per batch size and reused (through cnnc's memory accounting)."""

    def __init__(self, path_or_bytes):
        if isinstance(path_or_bytes, (str, os.PathLike)):
            with open(os.fspath(path_or_bytes), "rb") as f:
                data = f.read()
            label = repr(os.fspath(path_or_bytes))
        elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
            label = "bundle bytes"
        else:
            raise TypeError(f"Runtime takes a path or bytes, received {type(path_or_bytes).__name__}")
        try:
            self._m = _core.BundleModel(np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8))
        except ValueError as exc:
            raise BundleError(f"{label}: {exc}") from None
        if self._m.external_consts:
            raise BundleError(f"{label}: the bundle was written without its weights (external constants); "
                              f"Runtime needs a bundle that holds them")
        self._label = label
        self._lock = threading.Lock()
        self._arena = None
        self.input_names = self._m.names(True)
        self.output_names = self._m.names(False)
        self.fixed_batch = int(self._m.fixed_batch) or None
        # which inputs have a batch axis (their first): the others keep one shape for any batch size
        self._batched = [not self.fixed_batch and self._m.shape(True, i, 1) != self._m.shape(True, i, 2)
                         for i in range(len(self.input_names))]
        self.nbytes = len(data)

    def __repr__(self):
        return f"<cnnc.deploy.Runtime {self._label}: inputs {self.input_names}, outputs {self.output_names}>"

    def input_shape(self, i=0, batch_size=None):
        return self._m.shape(True, i, self._batch(batch_size))

    def output_shape(self, i=0, batch_size=None):
        return self._m.shape(False, i, self._batch(batch_size))

    def _batch(self, batch_size):
        if batch_size is None:
            return self.fixed_batch or 1
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, received {batch_size!r}")
        if self.fixed_batch and batch_size != self.fixed_batch:
            raise ValueError(f"{self._label}: the model takes batch size {self.fixed_batch} only, received "
                             f"{batch_size}")
        return int(batch_size)

    def arena_size(self, batch_size=None):
        """Bytes of the arena a run of this batch size needs (tensor plan + largest kernel workspace)."""
        with self._lock:
            return int(self._m.prepare(self._batch(batch_size))[0])

    def arena_parts(self, batch_size=None):
        """(tensor plan bytes, workspace bytes) for a batch size."""
        with self._lock:
            return tuple(int(v) for v in self._m.prepare(self._batch(batch_size))[1:])

    def _feeds(self, x):
        names = self.input_names
        if isinstance(x, dict):
            unknown = [k for k in x if k not in names]
            if unknown:
                raise ValueError(f"{self._label}: unknown input name(s) {unknown}; the inputs are {names}")
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"{self._label}: missing input(s) {missing}")
            arrays = [x[n] for n in names]
        elif isinstance(x, (list, tuple)):
            if len(x) != len(names):
                raise ValueError(f"{self._label}: {len(names)} input(s) {names}, received {len(x)} arrays")
            arrays = list(x)
        else:
            if len(names) != 1:
                raise ValueError(f"{self._label}: the model has {len(names)} inputs {names}; pass a dict or a list")
            arrays = [x]
        out = []
        for name, a in zip(names, arrays):
            arr = np.asarray(a)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{self._label}: input {name!r} must be a real numeric array, received dtype "
                                f"{arr.dtype}")
            out.append(np.asarray(arr, dtype=np.float32, order="C"))  # keeps 0-d arrays 0-d
        return out

    def run(self, x):
        xs = self._feeds(x)
        batch = self.fixed_batch or 1
        if not self.fixed_batch and any(self._batched):
            k = self._batched.index(True)
            if xs[k].ndim == 0:
                raise ValueError(f"{self._label}: input {self.input_names[k]!r} must have a batch axis, received "
                                 f"a scalar")
            batch = xs[k].shape[0]
            if batch < 1:
                raise ValueError(f"{self._label}: empty batch (input {self.input_names[k]!r} of shape "
                                 f"{xs[k].shape})")
        for i, (name, a) in enumerate(zip(self.input_names, xs)):
            want = self._m.shape(True, i, batch)
            if a.shape != want:
                raise ValueError(f"{self._label}: input {name!r} must have shape {want} for batch {batch}, "
                                 f"received {a.shape}")
        outs = [_alloc.empty(self._m.shape(False, i, batch), np.float32) for i in range(len(self.output_names))]
        # the C runtime never touches an empty tensor, but the binding wants a real buffer for each
        dummy = np.zeros(1, np.float32)
        with self._lock:
            need = int(self._m.prepare(batch)[0])
            _alloc.hold(self, self._m.prepack())  # the bundle's weights never change: packed once
            if self._arena is None or self._arena.shape[0] < need:
                self._arena = None
                self._arena = _alloc.empty(max(need, 1), np.uint8)
            self._m.run([a if a.size else dummy for a in xs], [o if o.size else dummy for o in outs],
                        self._arena)
        return outs[0] if len(outs) == 1 else outs


class _ExternalConstsRunner:
    """A lowered graph written without its weights, run by the C runtime with constants the caller
    passes at each call (the base of the Sequential and InferenceSession runners)."""

    def _load(self, g, plan_batch=1):
        self._m = _core.BundleModel(np.frombuffer(g.to_bytes(plan_batch, external_consts=True), dtype=np.uint8))
        self._sizes = [int(np.prod(s, dtype=np.int64)) for s in self._m.const_shapes()]
        self._lock = threading.Lock()
        self._arena = None  # kept between runs when the constants are fixed (_call)

    def arena_parts(self, batch_size):
        """(tensor plan bytes, workspace bytes) of a run of this batch size."""
        with self._lock:
            return tuple(int(v) for v in self._m.prepare(int(batch_size))[1:])

    def _call(self, batch, inputs, outputs, consts, fixed=False):
        """One run into outputs, the arena allocated through cnnc's accounting. fixed: the constants
        never change (an InferenceSession's): their convolution weights are packed once, and the arena
        is kept for the next run (a fresh one would be paged in again at every run). Otherwise (a
        Sequential, whose weights change) the arena lives for the call only."""
        dummy = np.zeros(1, np.float32)  # the binding wants a buffer even for an empty tensor
        with self._lock:
            need = int(self._m.prepare(batch)[0])
            arena = self._arena if fixed else None
            if arena is None or arena.shape[0] < need:
                self._arena = arena = None  # a smaller kept arena is freed before the new one is made
                arena = _alloc.empty(max(need, 1), np.uint8)
            if fixed:
                _alloc.hold(self, self._m.prepack(consts, self._sizes))
                self._arena = arena
            self._m.run([a if a.size else dummy for a in inputs], [o if o.size else dummy for o in outputs],
                        arena, consts, self._sizes)
            del arena


class SequentialRunner(_ExternalConstsRunner):
    """Inference of a built Sequential through the C runtime, reading the model's weights at each call
    (the bundle is written without them), so training, set_weights and in-place edits are seen.

    Built once per model structure by Sequential; raises BundleError when a layer has no C lowering."""

    def __init__(self, model):
        from . import _lower
        g = _lower.from_sequential(model)
        self._sources = g.const_sources()
        if any(s is None for s in self._sources):
            raise BundleError("internal: a constant of the lowered model has no source")
        self._load(g)
        self.input_shape = tuple(self._m.shape(True, 0, 1)[1:])

    def consts(self):
        """The constants as the model holds them now, or None when their sizes no longer match the
        lowering (a layer was rebuilt)."""
        out = [np.ascontiguousarray(f(), dtype=np.float32) for f in self._sources]
        if any(a.size != n for a, n in zip(out, self._sizes)):
            return None
        return out

    def run(self, x, consts):
        """Outputs for x (C-contiguous float32 of shape (batch,) + input_shape)."""
        out = _alloc.empty(self._m.shape(False, 0, x.shape[0]), np.float32)
        self._call(x.shape[0], [x], [out], consts)
        return out


class SessionRunner(_ExternalConstsRunner):
    """One input signature of an InferenceSession run by the C runtime: the graph lowered for those
    fixed shapes and written without weights; the constants are the session's own arrays (shared, not
    copied), passed at each call. Raises BundleError when an op or dtype has no C lowering."""

    def __init__(self, sess, trace):
        from . import _lower
        g = _lower.for_session(sess, trace)
        self._consts = g.const_arrays()
        self._load(g, g.fixed_batch)
        if [a.size for a in self._consts] != self._sizes:
            raise BundleError("internal: the constants do not match the lowered graph")
        self.input_names = self._m.names(True)
        self.output_names = self._m.names(False)
        self._batch = int(self._m.fixed_batch)
        self._in_shapes = [self._m.shape(True, i, self._batch) for i in range(len(self.input_names))]
        self._out_shapes = [self._m.shape(False, i, self._batch) for i in range(len(self.output_names))]

    def run(self, feeds):
        """{output name: array} for feeds {input name: float32 array of the traced shape}."""
        xs = [np.asarray(feeds[n], dtype=np.float32, order="C") for n in self.input_names]  # 0-d stays 0-d
        if any(x.shape != s for x, s in zip(xs, self._in_shapes)):
            raise ValueError("internal: the feeds do not have the shapes this runner was lowered for")
        outs = [_alloc.empty(s, np.float32) for s in self._out_shapes]
        self._call(self._batch, xs, outs, self._consts, fixed=True)  # the session's weights are fixed
        return dict(zip(self.output_names, outs))
