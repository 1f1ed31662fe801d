"""cnnc.onnx.backend: cnnc as an ONNX backend (onnx.backend.base.Backend), for ONNX's conformance suite.

    import cnnc.onnx.backend as backend
    rep = backend.prepare(model_proto)           # a BackendRep around cnnc.onnx.InferenceSession
    outputs = rep.run([x])                       # inputs in the order of the graph inputs
    outputs = backend.run_node(node, [a, b])     # one node, through a one-node model

Only the CPU device exists. is_compatible(model) is False when cnnc.onnx.find_unsupported lists
anything (the ONNX test runner then skips the model).
"""
import numpy as np
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

__all__ = ["CnncBackend", "CnncBackendRep", "prepare", "run_model", "run_node", "supports_device",
           "is_compatible"]


def _load(model):
    """ModelProto from a ModelProto, bytes or a path."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    from .check import load_model_proto
    return load_model_proto(model)[0]


class CnncBackendRep(BackendRep):
    """A prepared model: run(inputs) -> the outputs (a namedtuple-like tuple, by graph output name)."""

    def __init__(self, session, input_names, output_names):
        self.session = session
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(self.input_names):
                raise ValueError(f"the model has {len(self.input_names)} input(s) {self.input_names}, received "
                                 f"{len(inputs)} arrays")
            feeds = {n: np.asarray(v) for n, v in zip(self.input_names, inputs)}
        outs = self.session.run(None, feeds)
        return namedtupledict("Outputs", self.output_names)(*outs)


class CnncBackend(Backend):
    """cnnc's ONNX backend: CPU only, through cnnc.onnx.InferenceSession."""

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        from . import find_unsupported
        return cls.supports_device(device) and not find_unsupported(_load(model))

    @classmethod
    def supports_device(cls, device):
        try:
            return Device(device).type == DeviceType.CPU
        except Exception:  # noqa: BLE001 - unknown device strings
            return False

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        from .runtime import InferenceSession

        if not cls.supports_device(device):
            raise RuntimeError(f"cnnc runs on the CPU only, received device {device!r}")
        model = _load(model)
        inits = {t.name for t in model.graph.initializer}
        input_names = [vi.name for vi in model.graph.input if vi.name not in inits]
        output_names = [vi.name for vi in model.graph.output]
        session = InferenceSession(model.SerializeToString())
        return CnncBackendRep(session, input_names, output_names)

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        """Run one NodeProto on `inputs` (arrays for node.input in order, or a dict by name)."""
        model = _node_model(node, inputs, outputs_info, kwargs.get("opset_version"))
        if isinstance(inputs, dict):
            feeds = [inputs[n] for n in node.input if n]
        else:
            feeds = [np.asarray(v) for v, n in zip(inputs, node.input) if n]
        return cls.prepare(model, device).run(feeds)


def _node_model(node, inputs, outputs_info, opset):
    """A one-node ModelProto whose inputs are typed by the given arrays and whose outputs are typed by
    ONNX shape inference (or outputs_info: (elem_type, shape) per output)."""
    import onnx
    from onnx import helper

    from ._ops import SUPPORTED_OPS

    if opset is None:
        hi = max((v[1] for v in SUPPORTED_OPS.values()), default=onnx.defs.onnx_opset_version())
        opset = min(onnx.defs.onnx_opset_version(), hi)
    if isinstance(inputs, dict):
        arrays = {n: np.asarray(inputs[n]) for n in node.input if n}
    else:
        arrays = {n: np.asarray(v) for v, n in zip(inputs, node.input) if n}
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                    for n, a in arrays.items()]
    outs = [o for o in node.output if o]
    if outputs_info is not None:
        graph_outputs = [helper.make_tensor_value_info(o, int(t), s) for o, (t, s) in zip(outs, outputs_info)]
    else:
        graph_outputs = [helper.make_empty_tensor_value_info(o) for o in outs]
    graph = helper.make_graph([node], "cnnc_run_node", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))])
    if outputs_info is None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            types = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
            for vi in model.graph.output:
                got = types.get(vi.name)
                if got is not None and got.type.tensor_type.elem_type:
                    vi.CopyFrom(got)
        except Exception:  # noqa: BLE001 - the runtime reports what it cannot type
            pass
    return model


prepare = CnncBackend.prepare
run_model = CnncBackend.run_model
run_node = CnncBackend.run_node
supports_device = CnncBackend.supports_device
is_compatible = CnncBackend.is_compatible
