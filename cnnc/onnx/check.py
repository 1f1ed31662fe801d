"""What is in an ONNX model, and can cnnc run it?  `check_model_report(path_or_bytes)`.

The report lists the model's inputs and outputs, how often each operator is used, the number of
parameters, the multiply-accumulates of one forward pass for one sample, and every node that
cnnc.onnx.InferenceSession cannot run (with the reason).  `str(report)` is the summary that
`cnnc onnx check MODEL` prints.

Conventions
-----------
parameters
    Elements of the floating-point constants of the graph: initializers, Constant nodes and
    ConstantOfShape nodes whose shape is constant (the ONNX test-suite's "light" models create
    their weights with ConstantOfShape).  Integer tensors (shapes, axes, indices) are not counted.
macs
    Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul for ONE sample: a symbolic
    (or missing) batch dimension of the graph inputs is taken as 1, and a fixed batch N > 1 is
    divided out.  Conv: H_out * W_out * C_out * (C_in / group) * prod(kernel); ConvTranspose:
    H_in * W_in * C_in * (C_out / group) * prod(kernel); Gemm: M * N * K; MatMul: prod(output) * K.
    Bias additions, normalization, pooling and elementwise operations are not counted (the
    convention of the usual "FLOPs" tables, where FLOPs = 2 * MACs).  Nodes whose shapes cannot be
    inferred are listed in `macs_unknown`.
"""
import collections
import os

import numpy as np

__all__ = ["CheckReport", "check_model_report", "load_model_proto"]

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def load_model_proto(model):
    """A ModelProto from a path, serialized bytes or a ModelProto; returns (proto, display name)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "<ModelProto>"
    if isinstance(model, (bytes, bytearray, memoryview)):
        return onnx.load_from_string(bytes(model)), "<bytes>"
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no ONNX model at {path!r}")
        return onnx.load(path), path
    raise TypeError(f"expected a path, the bytes of an ONNX model or an onnx.ModelProto, received "
                    f"{type(model).__name__}")


def _dims(type_proto):
    """Shape of a tensor type as a tuple (ints, strings for symbolic dims, None for unknown);
    None when the rank is unknown."""
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None
    out = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _dtype_name(elem_type):
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001 - exotic types (float8, string, ...)
        import onnx
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _value_type(vi):
    t = vi.type
    if t.HasField("tensor_type"):
        return _dtype_name(t.tensor_type.elem_type)
    return t.WhichOneof("value")


def _fmt_count(n, unit=""):
    if n is None:
        return "unknown"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}" + (f" {unit}" if unit else "")
    return f"{n:g} {unit}".rstrip()


def _fmt_shape(shape):
    if shape is None:
        return "(unknown rank)"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class CheckReport:
    """The result of check_model_report (plain attributes; str() gives the readable summary)."""

    def __init__(self, *, name, supported, unsupported, inputs, outputs, op_counts, parameters, macs,
                 macs_by_op, macs_unknown, opset, ir_version, producer, batch, node_count):
        self.name = name
        self.supported = supported
        self.unsupported = unsupported
        self.inputs = inputs
        self.outputs = outputs
        self.op_counts = op_counts
        self.parameters = parameters
        self.macs = macs
        self.macs_by_op = macs_by_op
        self.macs_unknown = macs_unknown
        self.opset = opset
        self.ir_version = ir_version
        self.producer = producer
        self.batch = batch
        self.node_count = node_count

    def __bool__(self):
        return bool(self.supported)

    def to_dict(self):
        return {k: v for k, v in vars(self).items()}

    def __repr__(self):
        return (f"<CheckReport {self.name!r} supported={self.supported} nodes={self.node_count} "
                f"unsupported={len(self.unsupported)} parameters={self.parameters} macs={self.macs}>")

    def __str__(self):
        lines = []
        prod = f"{self.producer}, " if self.producer else ""
        lines.append(f"ONNX model: {self.name} ({prod}IR version {self.ir_version}, opset {self.opset})")
        lines.append("Inputs:")
        for name, shape, dtype in self.inputs:
            lines.append(f"  {name}: {dtype} {_fmt_shape(shape)}")
        lines.append("Outputs:")
        for name, shape, dtype in self.outputs:
            lines.append(f"  {name}: {dtype} {_fmt_shape(shape)}")
        lines.append(f"Parameters: {self.parameters:,}")
        per = "per sample" if self.batch == 1 else f"per sample (model batch {self.batch})"
        if self.macs_by_op:
            detail = ", ".join(f"{op} {_fmt_count(v)}" for op, v in self.macs_by_op.items())
            macs = f"{_fmt_count(self.macs, 'MACs')} {per} ({detail})"
        else:
            macs = f"0 {per} (no Conv, ConvTranspose, Gemm or MatMul)"
        if self.macs_unknown:
            macs += f"; shapes unknown for {len(self.macs_unknown)} node(s), not counted: " + \
                ", ".join(self.macs_unknown[:5]) + (" ..." if len(self.macs_unknown) > 5 else "")
        lines.append(f"MACs: {macs}")
        lines.append(f"Operators: {self.node_count} node(s), {len(self.op_counts)} type(s)")
        width = max((len(op) for op in self.op_counts), default=0)
        for op, n in self.op_counts.items():
            lines.append(f"  {op:<{width}}  {n}")
        if self.supported:
            lines.append("Supported: yes - cnnc.onnx.InferenceSession can run every node")
        else:
            n = len(self.unsupported)
            lines.append(f"Supported: NO - {n} node(s) cnnc.onnx.InferenceSession cannot run:")
            for name, op, reason in self.unsupported:
                lines.append(f"  {name or '<unnamed>'} ({op}): {reason}")
        return "\n".join(lines)


# ---- shapes ---------------------------------------------------------------------------------------

def _batch_one(model):
    """Copy of the model whose graph inputs have batch dimension 1 where it was symbolic or unknown;
    returns (copy, declared batch or 1)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    batch = None
    for vi in m.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or len(tt.shape.dim) < 2:
            continue
        d = tt.shape.dim[0]
        if d.HasField("dim_value") and d.dim_value > 0:
            batch = batch or int(d.dim_value)
        else:
            d.Clear()
            d.dim_value = 1
    return m, batch or 1


def _shape_table(model):
    """name -> shape tuple, for every value whose shape ONNX shape inference finds."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - invalid or exotic models: fall back to declared shapes
        inferred = model
    table = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            s = _dims(vi.type)
            if s is not None:
                table[vi.name] = s
    for t in g.initializer:
        table[t.name] = tuple(int(d) for d in t.dims)
    return table


def _known(shape):
    return shape is not None and all(isinstance(d, int) for d in shape)


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_macs(node, shapes):
    """MACs of one node for the shapes in the table, or None when a shape is unknown."""
    get = shapes.get
    op = node.op_type
    if op == "Conv":
        w, y = get(node.input[1]), get(node.output[0])
        if not (_known(w) and _known(y)) or len(y) < 2:
            return None
        return int(np.prod(y[2:], dtype=np.int64)) * y[1] * int(np.prod(w[1:], dtype=np.int64)) * y[0]
    if op == "ConvTranspose":
        x, w = get(node.input[0]), get(node.input[1])
        if not (_known(x) and _known(w)):
            return None
        # w: [C_in, C_out / group, k...]; every input pixel is scattered into C_out/g * k outputs
        return int(np.prod(x, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
    if op == "Gemm":
        a, y = get(node.input[0]), get(node.output[0])
        if not (_known(a) and _known(y)) or len(a) != 2:
            return None
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return y[0] * y[1] * k
    if op == "MatMul":
        a, y = get(node.input[0]), get(node.output[0])
        if not (_known(a) and _known(y)) or not a:
            return None
        return int(np.prod(y, dtype=np.int64)) * a[-1]
    return 0


_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _count_parameters(graph):
    from onnx import numpy_helper

    total = 0
    consts = {}
    for t in graph.initializer:
        consts[t.name] = t
        if t.data_type in _FLOAT_TYPES:
            total += int(np.prod(t.dims, dtype=np.int64))
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in _FLOAT_TYPES:
                    total += int(np.prod(a.t.dims, dtype=np.int64))
                    consts[node.output[0]] = a.t
        elif node.op_type == "ConstantOfShape" and node.input and node.input[0] in consts:
            value = _attr(node, "value")
            dtype = value.data_type if value is not None else 1
            if dtype in _FLOAT_TYPES:
                try:
                    shape = numpy_helper.to_array(consts[node.input[0]])
                    total += int(np.prod(shape, dtype=np.int64))
                except Exception:  # noqa: BLE001
                    pass
    return total


def check_model_report(path_or_bytes):
    """Inspect an ONNX model (a path, its bytes, or an onnx.ModelProto) and return a CheckReport."""
    from . import find_unsupported

    model, name = load_model_proto(path_or_bytes)
    graph = model.graph
    opset = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    inits = {t.name for t in graph.initializer}

    inputs = [(vi.name, _dims(vi.type), _value_type(vi)) for vi in graph.input if vi.name not in inits]
    outputs = [(vi.name, _dims(vi.type), _value_type(vi)) for vi in graph.output]

    counts = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                                 for n in graph.node)
    op_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    m1, batch = _batch_one(model)
    shapes = _shape_table(m1)
    macs_by_op = collections.OrderedDict()
    unknown = []
    total = 0
    for i, node in enumerate(graph.node):
        if node.op_type not in _MAC_OPS or node.domain not in ("", "ai.onnx"):
            continue
        v = _node_macs(node, shapes)
        if v is None:
            unknown.append(node.name or f"{node.op_type}#{i}")
            continue
        v = v // batch if v % batch == 0 else v / batch
        macs_by_op[node.op_type] = macs_by_op.get(node.op_type, 0) + v
        total += v

    unsupported = [tuple(t) for t in find_unsupported(model)]
    return CheckReport(
        name=name, supported=not unsupported, unsupported=unsupported, inputs=inputs, outputs=outputs,
        op_counts=op_counts, parameters=_count_parameters(graph), macs=int(total), macs_by_op=dict(macs_by_op),
        macs_unknown=unknown, opset=opset, ir_version=int(model.ir_version),
        producer=" ".join(x for x in (model.producer_name, model.producer_version) if x),
        batch=batch, node_count=len(graph.node))
