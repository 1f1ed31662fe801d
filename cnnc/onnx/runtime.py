"""cnnc.onnx.InferenceSession: run ONNX models on cnnc's C core with ONNX Runtime's Python API.

At load: parse, validate everything (unsupported ops -> one UnsupportedModelError listing all),
sort the nodes topologically, fold the constant subgraphs, fuse Conv+BatchNormalization(+Relu) and
Gemm+Relu, prepare the weights once (float32, C-contiguous, Gemm's B pre-transposed), and compute
the buffer plan: after each step, the values whose last consumer it was are dropped.
"""
import contextlib

import numpy as np

from ._graph import (Graph, UnsupportedModelError, find_unsupported, infer_shapes, last_uses,
                     load_model, node_attrs, node_label)
from ._ops import ONNX_DTYPES, OPS, NodeInfo, bn_scale_shift, type_name

__all__ = ["InferenceSession", "NodeArg", "ModelMetadata", "PlanStep"]


class NodeArg:
    """An input or output description, like onnxruntime.NodeArg."""

    def __init__(self, name, type_, shape):
        self.name = name
        self.type = type_
        self.shape = shape

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class ModelMetadata:
    def __init__(self, model):
        self.producer_name = model.producer_name
        self.producer_version = model.producer_version
        self.domain = model.domain
        self.description = model.doc_string
        self.graph_name = model.graph.name
        self.graph_description = model.graph.doc_string
        self.version = model.model_version
        self.custom_metadata_map = {p.key: p.value for p in model.metadata_props}


class PlanStep:
    """One step of the execution plan: a node (or a fused chain of nodes)."""
    __slots__ = ("name", "op_type", "inputs", "outputs", "const_inputs", "free", "kernel", "args", "info")

    def __init__(self, name, op_type, inputs, outputs, const_inputs, kernel, args):
        self.name = name
        self.op_type = op_type
        self.inputs = inputs              # run-time value names consumed
        self.outputs = outputs            # value names produced ('' for an absent optional output)
        self.const_inputs = const_inputs  # constant value names consumed
        self.free = []                    # value names dropped right after this step
        self.kernel = kernel
        self.args = args                  # per kernel argument: ('v', name) | ('c', array) | None
        self.info = None                  # the NodeInfo (attributes, constants) the kernel was made from

    def __repr__(self):
        return (f"PlanStep({self.name!r}, {self.op_type}, inputs={self.inputs}, outputs={self.outputs}, "
                f"free={self.free})")


def _tensor_type(elem):
    return "tensor(unknown)" if elem is None else f"tensor({type_name(elem)})"


def _wrap(label, name, op, exc):
    msg = str(exc)
    prefix = f"node {name!r}"
    if not msg.startswith(prefix):
        msg = f"{prefix} ({op}): {msg}"
    cls = exc.__class__ if isinstance(exc, (ValueError, TypeError)) else ValueError
    try:
        return cls(f"{label}: {msg}")
    except Exception:  # noqa: BLE001 - exception classes with other signatures
        return ValueError(f"{label}: {msg}")


class InferenceSession:
    """InferenceSession(path_or_bytes, sess_options=None, providers=None): ONNX Runtime's API."""

    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None,
                 **kwargs):
        model, label = load_model(path_or_bytes)
        problems = find_unsupported(model)
        if problems:
            raise UnsupportedModelError(problems, label)
        self._model_meta = ModelMetadata(model)
        self._label = label
        threads = getattr(sess_options, "intra_op_num_threads", 0) if sess_options is not None else 0
        self._threads = int(threads) if isinstance(threads, int) and threads > 0 else 0
        graph = Graph(model, label)
        self._inferred = infer_shapes(model, label)
        self._build(graph)

    # ---- build --------------------------------------------------------------------------------

    def _build(self, graph):
        label = self._label
        consts = dict(graph.consts)
        types = dict(graph.types)
        infos = []
        for index, node in zip(graph.order, graph.nodes):
            name = node_label(node, index)
            attrs = node_attrs(node, f"{label}: node {name!r}")
            info = NodeInfo(name, node.op_type, graph.opset, attrs, node.input, node.output, consts)
            if all((not x) or x in consts for x in node.input):
                self._fold(info, consts)
                for o in info.outputs:
                    if o in consts:
                        types[o] = _elem(consts[o])
            else:
                infos.append(info)
        graph_outputs = set(graph.output_names)
        infos = _fuse(infos, consts, graph_outputs)

        steps = []
        for info in infos:
            try:
                kernel = OPS[info.op_type][2](info)
            except (ValueError, TypeError) as exc:
                raise _wrap(label, info.name, info.op_type, exc) from None
            prepared = getattr(info, "prepared", ())
            args, ins, cins = [], [], []
            for i, x in enumerate(info.inputs):
                if not x:
                    args.append(None)
                elif x in consts:
                    args.append(None if i in prepared else ("c", consts[x]))
                    cins.append(x)
                else:
                    args.append(("v", x))
                    ins.append(x)
            steps.append(PlanStep(info.name, getattr(info, "fused_op", info.op_type), ins,
                                  [o for o in info.outputs], cins, kernel, args))
            steps[-1].info = info
        frees = last_uses([(s.inputs, s.outputs) for s in steps], graph_outputs)
        for s, f in zip(steps, frees):
            s.free = f
        self._plan = steps
        self._output_names = list(graph.output_names)
        self._output_consts = {o: consts[o] for o in graph.output_names if o in consts}
        self._inputs = graph.inputs
        self._input_map = {n: (elem, shape) for n, elem, shape in graph.inputs}
        self._initializer_names = set(graph.consts)
        self._needed_cache = {}
        # input signature -> the value shapes of a run (first run), then its C-runtime runner (or False)
        self._signatures = {}
        # types/shapes for get_outputs
        self._outputs = []
        for name, elem, shape in graph.declared_outputs:
            inf_elem, inf_shape = self._inferred.get(name, (None, None))
            if elem is None:
                elem = inf_elem if inf_elem is not None else types.get(name)
            if shape is None:
                shape = inf_shape if inf_shape is not None else (
                    list(consts[name].shape) if name in consts else None)
            self._outputs.append(NodeArg(name, _tensor_type(elem), shape))

    def _fold(self, info, consts):
        """Evaluate a node whose inputs are all constant, once, at load."""
        try:
            kernel = OPS[info.op_type][2](info)
            args = [consts[x] if x else None for x in info.inputs]
            with np.errstate(all="ignore"):
                outs = kernel(*args)
        except (ValueError, TypeError, IndexError) as exc:
            raise _wrap(self._label, info.name, info.op_type, exc) from None
        except MemoryError:
            raise ValueError(f"{self._label}: node {info.name!r} ({info.op_type}): out of memory while "
                             f"computing a constant") from None
        for o, v in zip(info.outputs, outs):
            if o:
                consts[o] = np.asarray(v)

    # ---- ORT API -------------------------------------------------------------------------------

    def get_inputs(self):
        return [NodeArg(n, _tensor_type(e), None if s is None else list(s)) for n, e, s in self._inputs]

    def get_outputs(self):
        return [NodeArg(o.name, o.type, None if o.shape is None else list(o.shape)) for o in self._outputs]

    def get_overridable_initializers(self):
        return []

    def get_modelmeta(self):
        return self._model_meta

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def get_provider_options(self):
        return {"CPUExecutionProvider": {}}

    def get_session_options(self):
        return None

    def _check_feed(self, feeds):
        label = self._label
        if not isinstance(feeds, dict):
            raise TypeError(f"{label}: input_feed must be a dict of input name -> array, received "
                            f"{type(feeds).__name__}")
        values = {}
        for name, v in feeds.items():
            if name not in self._input_map:
                if name in self._initializer_names:
                    raise ValueError(f"{label}: {name!r} is an initializer; overriding initializers is "
                                     f"not supported")
                raise ValueError(f"{label}: unknown input name {name!r}; the model's inputs are "
                                 f"{[n for n, _, _ in self._inputs]}")
            elem, shape = self._input_map[name]
            arr = v if isinstance(v, np.ndarray) else np.asarray(v)
            want = ONNX_DTYPES[elem][0]
            if arr.dtype != want:
                raise TypeError(f"{label}: input {name!r} expects tensor({type_name(elem)}) "
                                f"(numpy {want}), received an array of dtype {arr.dtype}")
            if shape is not None:
                if arr.ndim != len(shape):
                    raise ValueError(f"{label}: input {name!r} expects rank {len(shape)} (shape "
                                     f"{shape}), received shape {arr.shape}")
                for i, (d, s) in enumerate(zip(arr.shape, shape)):
                    if isinstance(s, int) and d != s:
                        raise ValueError(f"{label}: input {name!r} expects dimension {i} to be {s} "
                                         f"(shape {shape}), received shape {arr.shape}")
            values[name] = arr
        missing = [n for n, _, _ in self._inputs if n not in values]
        if missing:
            raise ValueError(f"{label}: missing input(s) {missing}; the model's inputs are "
                             f"{[n for n, _, _ in self._inputs]}")
        return values

    def _needed(self, names):
        """Indices of the plan steps needed for these outputs (cached per output tuple)."""
        key = tuple(names)
        got = self._needed_cache.get(key)
        if got is None:
            want = set(names)
            idx = []
            for i in range(len(self._plan) - 1, -1, -1):
                s = self._plan[i]
                if want.intersection(s.outputs):
                    idx.append(i)
                    want.update(s.inputs)
            got = self._needed_cache[key] = sorted(idx)
        return got

    def run(self, output_names, input_feed, run_options=None):
        label = self._label
        if output_names is None or len(output_names) == 0:
            output_names = self._output_names
        else:
            output_names = list(output_names)
            bad = [n for n in output_names if n not in self._output_names]
            if bad:
                raise ValueError(f"{label}: unknown output name(s) {bad}; the model's outputs are "
                                 f"{self._output_names}")
        values = self._check_feed(input_feed)
        from .. import _config
        limit = _config.thread_limit(self._threads) if self._threads else contextlib.nullcontext()
        sig = self._signature(values)
        with limit:
            outs = self._run_compiled(sig, values)
            if outs is None:
                plan = self._plan
                every = set(output_names) == set(self._output_names)
                steps = range(len(plan)) if every else self._needed(output_names)
                seen = self._trace_for(sig, values) if every else None
                self._execute(values, steps, seen)
                outs = values
        result = []
        for n in output_names:
            if n in self._output_consts and n not in outs:
                result.append(self._output_consts[n].copy())
            else:
                result.append(np.asarray(outs[n]))
        return result

    # The C runtime takes over an input signature (the feeds' names, dtypes and shapes) from its second
    # run: the first runs the plan step by step and records every value's shape, then the plan is
    # lowered for those shapes (weights shared with the plan) and later runs are one C call. Signatures
    # the C runtime cannot run (integer tensors, ops it lacks) keep the step-by-step plan.
    _MAX_SIGNATURES = 8

    @staticmethod
    def _signature(values):
        return tuple(sorted((n, a.dtype.str, a.shape) for n, a in values.items()))

    def _trace_for(self, sig, values):
        """A dict to record this run's value shapes into, when its signature is new (else None)."""
        if sig in self._signatures or len(self._signatures) >= self._MAX_SIGNATURES:
            return None
        seen = {n: (a.shape, a.dtype) for n, a in values.items()}
        for name, arr in self._output_consts.items():
            seen[name] = (arr.shape, arr.dtype)
        self._signatures[sig] = seen
        return seen

    def _run_compiled(self, sig, values):
        """The outputs {name: array} of a C-runtime run, or None when this signature has none (yet)."""
        entry = self._signatures.get(sig)
        if entry is None or entry is False:
            return None
        if isinstance(entry, dict):  # traced by an earlier run: lower it now
            from ..deploy import BundleError
            from ..deploy.runtime import SessionRunner
            try:
                entry = SessionRunner(self, entry)
            except BundleError:
                entry = False
            self._signatures[sig] = entry
            if entry is False:
                return None
        return entry.run(values)

    def _execute(self, values, steps, seen=None):
        """Run plan steps on values (name -> array, updated in place; values are dropped after their
        last reader). seen, a dict, receives every computed value's (shape, dtype)."""
        label, plan = self._label, self._plan
        with np.errstate(all="ignore"):
            for i in steps:
                s = plan[i]
                try:
                    args = [None if a is None else (values[a[1]] if a[0] == "v" else a[1]) for a in s.args]
                    outs = s.kernel(*args)
                except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError) as exc:
                    raise _wrap(label, s.name, s.op_type, exc) from None
                except MemoryError:
                    raise MemoryError(f"{label}: node {s.name!r} ({s.op_type}): out of memory") from None
                for o, v in zip(s.outputs, outs):
                    if o:
                        values[o] = v
                        if seen is not None:
                            seen[o] = (np.shape(v), np.asarray(v).dtype)
                for f in s.free:
                    values.pop(f, None)


def _elem(arr):
    from ._graph import _np_to_onnx
    return _np_to_onnx(arr.dtype) or None


# ---- fusion --------------------------------------------------------------------------------------

def _fuse(infos, consts, graph_outputs):
    """Conv -> BatchNormalization (constant params) folds into the Conv's weights; Conv/Gemm -> Relu
    (or Clip(0, 6)) becomes the C core's fused activation. Only when the intermediate value has no
    other consumer and is not a graph output."""
    uses = {}
    for info in infos:
        for x in info.inputs:
            if x:
                uses[x] = uses.get(x, 0) + 1
    by_input = {}
    for info in infos:
        for x in info.inputs:
            if x:
                by_input.setdefault(x, []).append(info)
    removed = set()

    def sole_consumer(value):
        if value in graph_outputs or uses.get(value, 0) != 1:
            return None
        c = by_input[value][0]
        return None if id(c) in removed else c

    for info in infos:
        if id(info) in removed or info.op_type not in ("Conv", "Gemm"):
            continue
        if info.op_type == "Conv" and not (info.is_const(1) and (not info.has_input(2) or info.is_const(2))):
            continue
        names, ops = [info.name], [info.op_type]
        out = info.outputs[0]
        nxt = sole_consumer(out)
        if (info.op_type == "Conv" and nxt is not None and nxt.op_type == "BatchNormalization"
                and nxt.inputs[0] == out and all(nxt.is_const(i) for i in range(1, 5))
                and not any(o for o in nxt.outputs[1:])
                and consts[info.inputs[1]].dtype == np.float32):
            params = [np.asarray(consts[nxt.inputs[i]], dtype=np.float32).reshape(-1) for i in range(1, 5)]
            cout = consts[info.inputs[1]].shape[0]
            if all(p.shape == (cout,) for p in params):
                info.fold_scale = bn_scale_shift(*params, float(nxt.attr("epsilon", 1e-5)))
                info.outputs = [nxt.outputs[0]]
                removed.add(id(nxt))
                names.append(nxt.name)
                ops.append(nxt.op_type)
                out = info.outputs[0]
                nxt = sole_consumer(out)
        if nxt is not None and nxt.inputs[0] == out:
            act = None
            if nxt.op_type == "Relu":
                act = "relu"
            elif nxt.op_type == "Clip":
                lo, hi = _clip_bounds(nxt, consts)
                if lo == 0.0 and hi == 6.0:
                    act = "relu6"
            if act is not None and (info.op_type == "Conv" or act == "relu"):
                info.fused_act = act
                info.outputs = [nxt.outputs[0]]
                removed.add(id(nxt))
                names.append(nxt.name)
                ops.append(nxt.op_type)
        if len(ops) > 1:
            info.fused_op = "+".join(ops)
            info.name = "+".join(names)
    return [i for i in infos if id(i) not in removed]


def _clip_bounds(node, consts):
    if node.opset < 11:
        return node.attr("min"), node.attr("max")
    out = []
    for i in (1, 2):
        if not node.has_input(i):
            out.append(None)
        elif node.inputs[i] in consts and consts[node.inputs[i]].size == 1:
            out.append(float(consts[node.inputs[i]].reshape(())))
        else:
            return None, None
    return tuple(out)
