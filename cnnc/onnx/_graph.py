"""Loading, validation, type/shape inference, topological order and buffer lifetimes of ONNX graphs.

Everything here runs once, when an InferenceSession is created; nothing here runs per call.
"""
import os

from ._ops import MAX_ELEMENTS, ONNX_DTYPES, OPS, SUPPORTED_OPS, type_name

MIN_OPSET, MAX_OPSET = 6, 28  # 6: legacy broadcasting etc. handled per op; 22-28 only widen element types
_DEFAULT_DOMAINS = ("", "ai.onnx")


class UnsupportedModelError(ValueError):
    """The model uses ops, attributes, types or opsets that cnnc.onnx cannot run.

    `.nodes` lists every problem as (node name, op_type, reason)."""

    def __init__(self, nodes, model_label="the model"):
        self.nodes = list(nodes)
        lines = [f"  - node {n!r} ({op}): {why}" for n, op, why in self.nodes]
        super().__init__(f"{model_label} cannot be run by cnnc.onnx: {len(self.nodes)} unsupported "
                         f"node(s)/feature(s):\n" + "\n".join(lines))


# ---- loading -------------------------------------------------------------------------------------

def _parse(data, label):
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise ValueError(f"{label}: the model is empty (0 bytes)")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"{label}: not a valid ONNX model (protobuf parsing failed: {exc})") from None
    if not model.HasField("graph") or not len(model.opset_import):
        raise ValueError(f"{label}: not a valid ONNX model (no graph or no opset_import; the data "
                         f"may be truncated or not an ONNX file)")
    return model


def load_model(src):
    """path / bytes / ModelProto -> (ModelProto, label for messages)."""
    import onnx

    if isinstance(src, onnx.ModelProto):
        return src, f"model {src.graph.name or '<unnamed>'!r}"
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        label = f"the model bytes ({len(data)} bytes)"
        return _parse(data, label), label
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "ONNX model file not found", path)
        if os.path.isdir(path):
            raise IsADirectoryError(21, "expected an ONNX model file, received a directory", path)
        with open(path, "rb") as f:
            data = f.read()
        label = f"ONNX model file {path!r}"
        model = _parse(data, label)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            from onnx.external_data_helper import load_external_data_for_model
            try:
                load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
            except Exception as exc:  # missing/short external files, bad locations
                raise ValueError(f"{label}: cannot load its external data: {exc}") from None
        return model, label
    raise TypeError(f"InferenceSession expects a file path, bytes or an onnx.ModelProto, received "
                    f"{type(src).__name__}")


# ---- tensors -------------------------------------------------------------------------------------

_FIELD = {1: "float_data", 2: "int32_data", 3: "int32_data", 4: "int32_data", 5: "int32_data",
          6: "int32_data", 7: "int64_data", 9: "int32_data", 10: "int32_data", 11: "double_data",
          12: "uint64_data", 13: "uint64_data"}


def tensor_to_array(t, what):
    """A TensorProto -> ndarray after checking its dims and data length (no huge allocations)."""
    import onnx
    from onnx import numpy_helper

    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} has a negative dimension: dims {dims}")
    if t.data_type not in ONNX_DTYPES:
        raise ValueError(f"{what} has the unsupported data type {type_name(t.data_type)}")
    count = 1
    for d in dims:
        count *= d
    if count > MAX_ELEMENTS * 4:
        raise ValueError(f"{what} declares dims {dims} ({count} elements): too large")
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise ValueError(f"{what} stores its data externally and the data was not loaded (load the "
                         f"model from its file path)")
    itemsize = ONNX_DTYPES[t.data_type][0].itemsize
    if t.HasField("raw_data"):
        have = len(t.raw_data)
        if have != count * itemsize:
            raise ValueError(f"{what} declares dims {dims} ({count} elements, {count * itemsize} bytes) "
                             f"but holds {have} bytes of data")
    else:
        have = len(getattr(t, _FIELD[t.data_type]))
        if have != count:
            raise ValueError(f"{what} declares dims {dims} ({count} elements) but holds {have} "
                             f"values")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise ValueError(f"{what} cannot be decoded: {exc}") from None
    arr = arr.reshape(dims)
    return arr if arr.flags.c_contiguous else arr.copy()  # (ascontiguousarray turns 0-d into 1-d)


# ---- attributes ----------------------------------------------------------------------------------

def node_attrs(node, label):
    """AttributeProto list -> {name: python value} (strings decoded, tensors as ndarrays)."""
    import onnx
    from onnx import helper

    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = tensor_to_array(a.t, f"{label}: attribute {a.name!r}")
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                        onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.TENSORS):
            out[a.name] = f"<{onnx.AttributeProto.AttributeType.Name(a.type)} attribute, unsupported>"
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list):
                v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
            out[a.name] = v
    return out


def _text(v):
    """Protobuf strings holding invalid UTF-8 come back as bytes."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def node_label(node, index):
    return _text(node.name) if node.name else f"#{index} ({_text(node.op_type)})"


def default_opset(model):
    ver = None
    for o in model.opset_import:
        if o.domain in _DEFAULT_DOMAINS:
            ver = o.version
    return ver


# ---- up-front validation -------------------------------------------------------------------------

def find_unsupported(model):
    """Every node/feature of `model` (an onnx.ModelProto) that cnnc.onnx cannot run, as a list of
    (node name, op_type, reason); empty when the whole model is supported."""
    from onnx import defs

    problems = []
    opset = default_opset(model)
    if opset is None:
        problems.append(("<model>", "opset_import", "no opset is imported for the default domain ''"))
    elif not MIN_OPSET <= opset <= MAX_OPSET:
        problems.append(("<model>", "opset_import",
                         f"default-domain opset {opset} is outside the supported {MIN_OPSET}..{MAX_OPSET}"))
    g = model.graph
    if len(g.sparse_initializer):
        problems.append(("<model>", "sparse_initializer", "sparse initializers are not supported"))
    inits = {t.name for t in g.initializer}
    for vi in list(g.input) + list(g.output):
        if vi.name in inits:
            continue
        kind = vi.type.WhichOneof("value")
        if kind not in (None, "tensor_type"):
            problems.append((vi.name, "<graph input/output>", f"type {kind} is not supported (tensors only)"))
        elif kind == "tensor_type" and vi.type.tensor_type.elem_type not in ONNX_DTYPES:
            problems.append((vi.name, "<graph input/output>",
                             f"element type {type_name(vi.type.tensor_type.elem_type)} is not supported"))
    for t in g.initializer:
        if t.data_type not in ONNX_DTYPES:
            problems.append((t.name, "<initializer>", f"data type {type_name(t.data_type)} is not supported"))
    ver = opset if opset is not None and MIN_OPSET <= opset <= MAX_OPSET else None
    for i, node in enumerate(g.node):
        name = node_label(node, i)
        op = node.op_type
        if node.domain not in _DEFAULT_DOMAINS:
            problems.append((name, op, f"domain {node.domain!r} is not supported (only the default "
                                       f"ONNX domain)"))
            continue
        if op not in OPS:
            problems.append((name, op, "op is not supported"))
            continue
        lo, hi = SUPPORTED_OPS[op]
        if ver is None:
            continue
        if not lo <= ver <= hi:
            problems.append((name, op, f"op is supported in opsets {lo}..{hi}, the model uses {ver}"))
            continue
        try:
            attrs = node_attrs(node, f"node {name!r}")
        except ValueError as exc:
            problems.append((name, op, str(exc)))
            continue
        try:
            known = set(defs.get_schema(op, ver, "").attributes)
        except Exception:  # noqa: BLE001 - no schema at this opset
            problems.append((name, op, f"op does not exist in opset {ver}"))
            continue
        for a in attrs:
            if a not in known:
                problems.append((name, op, f"unknown attribute {a!r} = {attrs[a]!r} (opset {ver})"))
        for reason in OPS[op][3](attrs, ver, node):
            problems.append((name, op, reason))
    return problems


# ---- graph structure -----------------------------------------------------------------------------

class Graph:
    """The parsed, validated graph: constants, inputs, nodes in topological order, types, shapes."""

    def __init__(self, model, label):
        self.model = model
        self.label = label
        self.opset = default_opset(model)
        g = model.graph
        self.consts = {}
        for i, t in enumerate(g.initializer):
            if not t.name:
                raise ValueError(f"{label}: initializer #{i} has no name")
            if t.name in self.consts:
                raise ValueError(f"{label}: initializer {t.name!r} is defined twice")
            self.consts[t.name] = tensor_to_array(t, f"{label}: initializer {t.name!r}")
        self.inputs = []  # (name, elem_type, shape list) of the inputs that must be fed
        self.types = {n: _np_to_onnx(a.dtype) for n, a in self.consts.items()}
        self.shapes = {n: list(a.shape) for n, a in self.consts.items()}
        seen = set()
        for vi in g.input:
            if vi.name in seen:
                raise ValueError(f"{label}: graph input {vi.name!r} is declared twice")
            seen.add(vi.name)
            if vi.name in self.consts:
                continue  # IR < 4 style: initializers listed as inputs (defaults; treated as constants)
            elem, shape = _value_info(vi, f"{label}: graph input {vi.name!r}")
            self.inputs.append((vi.name, elem, shape))
            self.types[vi.name] = elem
            self.shapes[vi.name] = shape
        if not len(g.output):
            raise ValueError(f"{label}: the graph declares no outputs")
        self.declared_outputs = []
        for vi in g.output:
            elem, shape = _value_info(vi, f"{label}: graph output {vi.name!r}", allow_missing=True)
            self.declared_outputs.append((vi.name, elem, shape))
        self.nodes = self._toposort(g)
        self.output_names = [o[0] for o in self.declared_outputs]
        produced = set(self.types) | {o for n in self.nodes for o in n.output if o}
        for name in self.output_names:
            if name not in produced:
                raise ValueError(f"{label}: graph output {name!r} is not produced by any node, input or "
                                 f"initializer")
        for vi in g.value_info:
            if vi.type.WhichOneof("value") == "tensor_type":
                for d in vi.type.tensor_type.shape.dim:
                    if d.HasField("dim_value") and d.dim_value < 0:
                        raise ValueError(f"{label}: value_info {vi.name!r} has a negative dimension "
                                         f"{d.dim_value}")

    def _toposort(self, g):
        label = self.label
        available = set(self.consts) | {n for n, _, _ in self.inputs}
        producer = {}
        for i, node in enumerate(g.node):
            for o in node.output:
                if not o:
                    continue
                if o in available or o in producer:
                    raise ValueError(f"{label}: value {o!r} (output of node {node_label(node, i)!r}) "
                                     f"is defined more than once")
                producer[o] = i
        for i, node in enumerate(g.node):
            for x in node.input:
                if x and x not in available and x not in producer:
                    raise ValueError(f"{label}: node {node_label(node, i)!r} ({node.op_type}) consumes "
                                     f"{x!r}, which is not a graph input, an initializer or the output "
                                     f"of any node")
        # Kahn's algorithm, keeping the file order among ready nodes.
        import heapq
        waiting = {}
        consumers = {}
        ready = []
        for i, node in enumerate(g.node):
            deps = {x for x in node.input if x and x in producer}
            waiting[i] = len(deps)
            for x in deps:
                consumers.setdefault(x, []).append(i)
            if not deps:
                heapq.heappush(ready, i)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for o in g.node[i].output:
                for j in consumers.get(o, ()):
                    waiting[j] -= 1
                    if waiting[j] == 0:
                        heapq.heappush(ready, j)
        if len(order) != len(g.node):
            stuck = [node_label(g.node[i], i) for i in range(len(g.node)) if waiting[i] > 0]
            raise ValueError(f"{label}: the graph has a cycle; these nodes wait on each other: "
                             f"{stuck[:10]}{' ...' if len(stuck) > 10 else ''}")
        self.order = order  # original index of each sorted node
        return [g.node[i] for i in order]


def _np_to_onnx(dtype):
    for k, (dt, _) in ONNX_DTYPES.items():
        if dt == dtype:
            return k
    return 0


def _value_info(vi, what, allow_missing=False):
    kind = vi.type.WhichOneof("value")
    if kind is None and allow_missing:
        return None, None
    if kind != "tensor_type":
        raise ValueError(f"{what} must be a tensor, received {kind}")
    tt = vi.type.tensor_type
    elem = tt.elem_type
    if elem == 0 and allow_missing:
        elem = None
    elif elem not in ONNX_DTYPES:
        raise ValueError(f"{what} has the unsupported element type {type_name(elem)}")
    if not tt.HasField("shape"):
        return elem, None
    shape = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            if d.dim_value < 0:
                raise ValueError(f"{what} declares a negative dimension {d.dim_value}")
            if d.dim_value > 2**40:
                raise ValueError(f"{what} declares an absurd dimension {d.dim_value}")
            shape.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            shape.append(d.dim_param)
        else:
            shape.append(None)
    return elem, shape


# ---- shape inference -----------------------------------------------------------------------------

def infer_shapes(model, label):
    """onnx's shape inference -> {value name: (elem_type, shape list)}. Not strict: onnx's inference
    rejects some models ONNX Runtime runs (e.g. IR 3 initializers not listed as inputs), so a failure
    here is not an error; every kernel checks its shapes anyway, naming the node."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - onnx's inference is an aid only: the kernels check shapes
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        try:
            elem, shape = _value_info(vi, vi.name, allow_missing=True)
        except ValueError:
            continue
        out[vi.name] = (elem, shape)
    return out


# ---- buffer lifetimes ----------------------------------------------------------------------------

def last_uses(steps, keep):
    """steps: list of (inputs, outputs) value-name lists in execution order; keep: names that must
    survive (graph outputs). -> list, per step, of the names that die right after it: values whose
    last consumer is that step, and outputs nobody consumes."""
    last = {}
    for i, (ins, outs) in enumerate(steps):
        for o in outs:
            if o:
                last.setdefault(o, i)
        for x in ins:
            if x:
                last[x] = i
    frees = [[] for _ in steps]
    for name, i in last.items():
        if name not in keep:
            frees[i].append(name)
    for f in frees:
        f.sort()
    return frees
