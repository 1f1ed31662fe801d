"""Export a built cnnc Sequential model to ONNX.

    import cnnc.onnx
    proto = cnnc.onnx.export(model, "model.onnx")

The graph keeps the model's input layout: a Keras-style channels_last model takes NHWC inputs. ONNX
convolutions and pools work in NCHW, so the exporter tracks the layout of the running tensor as a
permutation of the Keras tensor (graph tensor == keras_tensor.transpose(perm)) and inserts a
Transpose only where a layer needs another layout: NCHW for conv/pool layers, the Keras layout for
Flatten/Reshape/Dense on rank > 2 and at the graph output. Elementwise layers, softmax, zero padding
and batch normalization work in whatever layout the tensor is in, so consecutive conv/pool/BN/
activation layers stay NCHW.

onnx is imported lazily: cnnc itself does not depend on it.
"""
import os

import numpy as np

__all__ = ["export", "SUPPORTED_OPSETS"]

SUPPORTED_OPSETS = range(13, 22)  # 13 through 21

_SELU_ALPHA = 1.6732632423543772
_SELU_GAMMA = 1.0507009873554805


def _same_pads(size, k, stride, dilation):
    """TensorFlow/Keras 'same' padding along one axis: (begin, end), the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


class _Builder:
    """Collects nodes and initializers, hands out unique names and tracks the running tensor's layout."""

    def __init__(self, onnx, opset):
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._used = set()
        self._consts = {}
        # the running tensor: its name and perm (graph tensor = keras_tensor.transpose(perm))
        self.x = None
        self.perm = None

    def unique(self, base):
        name, i = base, 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name

    def const(self, name, value, dtype=np.float32):
        arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        name = self.unique(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name=name))
        return name

    def shared_const(self, key, value, dtype=np.float32):
        """A small constant shared by every node that needs it (scalars of Clip, Min, ...)."""
        arr = np.asarray(value, dtype=dtype)
        k = (key, arr.dtype.str, arr.shape, arr.tobytes())
        if k not in self._consts:
            self._consts[k] = self.const(key, arr, dtype)
        return self._consts[k]

    def producer_op(self, skip=("Transpose",)):
        """The op type of the node that produced the running tensor, looking through the ops in
        `skip` (onnxruntime moves Transposes around); None for the graph input."""
        name = self.x
        for n in reversed(self.nodes):
            if name in n.output:
                if n.op_type not in skip:
                    return n.op_type
                name = n.input[0]
        return None

    def node(self, op, inputs, prefix, **attrs):
        out = self.unique(f"{prefix}/{op}")
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    # ---- layout ---------------------------------------------------------------------------------
    def to_perm(self, target, prefix):
        """Transpose the running tensor so that it holds keras_tensor.transpose(target)."""
        target = tuple(target)
        if self.perm == target:
            return
        p = [self.perm.index(t) for t in target]
        self.x = self.node("Transpose", [self.x], prefix, perm=p)
        self.perm = target

    def to_keras(self, prefix):
        self.to_perm(tuple(range(len(self.perm))), prefix)

    def graph_axis(self, keras_axis):
        return self.perm.index(keras_axis % len(self.perm))


def _nchw_perm(data_format):
    """The perm that makes a 4-D tensor of this Keras data format NCHW in the graph."""
    return (0, 3, 1, 2) if data_format == "channels_last" else (0, 1, 2, 3)


def _spatial_axes(data_format):
    return (1, 2) if data_format == "channels_last" else (2, 3)


# ---- activations ----------------------------------------------------------------------------------
def _activation(b, x, act, prefix, softmax_axis):
    """Emit `act` (a cnnc.activations.Activation) on tensor x; softmax over graph axis softmax_axis."""
    name = act.name
    if act.softmax:
        return b.node("Softmax", [x], prefix, axis=int(softmax_axis))
    if act.is_linear:
        return x
    if name == "relu":
        return b.node("Relu", [x], prefix)
    if name in ("relu6", "clip"):
        lo = b.shared_const("clip_min", np.float32(act.alpha))
        hi = b.shared_const("clip_max", np.float32(act.beta))
        return b.node("Clip", [x, lo, hi], prefix)
    if name == "leaky_relu":
        return b.node("LeakyRelu", [x], prefix, alpha=act.alpha)
    if name == "elu":
        return b.node("Elu", [x], prefix, alpha=act.alpha)
    if name == "selu":
        return b.node("Selu", [x], prefix, alpha=_SELU_ALPHA, gamma=_SELU_GAMMA)
    if name == "sigmoid":
        return b.node("Sigmoid", [x], prefix)
    if name == "tanh":
        return b.node("Tanh", [x], prefix)
    if name == "hard_sigmoid":
        return b.node("HardSigmoid", [x], prefix, alpha=act.alpha, beta=act.beta)
    if name == "hard_swish":
        if b.opset >= 14:
            return b.node("HardSwish", [x], prefix)
        hs = b.node("HardSigmoid", [x], prefix, alpha=1.0 / 6.0, beta=0.5)
        return b.node("Mul", [x, hs], prefix)
    raise NotImplementedError(f"activation '{name}' (in {prefix}) has no ONNX export")


# ---- layers ---------------------------------------------------------------------------------------
def _conv(b, layer, in_shape):
    p = layer.name
    b.to_perm(_nchw_perm(layer.data_format), p)
    cin = in_shape[layer._channel_axis]
    w = np.ascontiguousarray(layer._conv_kernel().transpose(3, 2, 0, 1))   # [Cout, Cin/g, KH, KW]
    inputs = [b.x, b.const(f"{p}/{layer._kernel_name}", w)]
    if layer.use_bias:
        inputs.append(b.const(f"{p}/bias", layer.params["bias"]))
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                 dilations=list(layer.dilation_rate), group=int(layer._groups(cin)))
    attrs.update(_pad_attrs(layer.padding, in_shape, layer.data_format, layer.kernel_size, layer.strides,
                            layer.dilation_rate))
    y = b.node("Conv", inputs, p, **attrs)
    # the activation works on the channels: graph axis 1 (NCHW) for both data formats
    b.x = _activation(b, y, layer.activation, p, softmax_axis=1)


def _pad_attrs(padding, in_shape, data_format, kernel, strides, dilations):
    if padding == "valid":
        return {"pads": [0, 0, 0, 0]}
    sizes = [in_shape[a] for a in _spatial_axes(data_format)]
    if any(s is None for s in sizes):   # spatial size unknown until run time
        return {"auto_pad": "SAME_UPPER"}
    (t, bo), (l, r) = (_same_pads(s, k, st, d) for s, k, st, d in zip(sizes, kernel, strides, dilations))
    return {"pads": [t, l, bo, r]}


def _pool(b, layer, in_shape, op):
    p = layer.name
    b.to_perm(_nchw_perm(layer.data_format), p)
    attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides))
    pad = _pad_attrs(layer.padding, in_shape, layer.data_format, layer.pool_size, layer.strides, (1, 1))
    pads = pad.get("pads")
    if b.producer_op() == "Pad" and pads is not None:
        # onnxruntime's PadFusion folds a zero Pad (ZeroPadding2D) into a following pool's `pads`,
        # which is wrong for MaxPool (pool padding acts as -inf, not 0) and for count_include_pad=0.
        # It leaves pools with auto_pad alone, so such pools get auto_pad=VALID, and their own
        # 'same' padding becomes a Pad node.
        if any(pads):
            _padded_pool(b, layer, in_shape, op, attrs, pads)
            return
        pad = {"auto_pad": "VALID"}
    attrs.update(pad)
    if op == "AveragePool":
        attrs["count_include_pad"] = 0   # Keras leaves 'same' padding out of the averages
    b.x = b.node(op, [b.x], p, **attrs)


def _padded_pool(b, layer, in_shape, op, attrs, pads):
    """A 'same' pool right after a zero Pad, without `pads` (see _pool): the window padding becomes a
    Pad of its own (-inf for MaxPool; zeros for AveragePool, whose averages are then rescaled by
    window size / number of real elements, i.e. count_include_pad=0)."""
    p = layer.name
    t, l, bo, r = pads
    pad_value = -np.inf if op == "MaxPool" else 0.0
    pads_name = b.const(f"{p}/pads", np.array([0, 0, t, l, 0, 0, bo, r], np.int64), dtype=np.int64)
    value = b.const(f"{p}/pad_value", np.float32(pad_value))
    x = b.node("Pad", [b.x, pads_name, value], p, mode="constant")
    y = b.node(op, [x], p, auto_pad="VALID", **attrs)
    if op == "AveragePool":
        (kh, kw), (sh, sw) = layer.pool_size, layer.strides
        h, w = (in_shape[a] for a in _spatial_axes(layer.data_format))
        ho, wo = -(-h // sh), -(-w // sw)
        rows = np.array([min(i * sh - t + kh, h) - max(i * sh - t, 0) for i in range(ho)], np.float32)
        cols = np.array([min(j * sw - l + kw, w) - max(j * sw - l, 0) for j in range(wo)], np.float32)
        scale = (kh * kw) / np.outer(rows, cols)
        y = b.node("Mul", [y, b.const(f"{p}/count_scale", scale.reshape(1, 1, ho, wo).astype(np.float32))], p)
    b.x = y


def _global_pool(b, layer, in_shape, op):
    p = layer.name
    b.to_perm(_nchw_perm(layer.data_format), p)
    b.x = b.node(op, [b.x], p)          # [N, C, 1, 1]: the Keras output with keepdims, in NCHW
    if not layer.keepdims:
        b.x = b.node("Flatten", [b.x], p, axis=1)
        b.perm = (0, 1)


def _dense(b, layer, in_shape):
    p = layer.name
    b.to_keras(p)
    w = b.const(f"{p}/kernel", layer.params["kernel"])
    if len(in_shape) == 2:
        inputs = [b.x, w]
        if layer.use_bias:
            inputs.append(b.const(f"{p}/bias", layer.params["bias"]))
        y = b.node("Gemm", inputs, p)
    else:
        y = b.node("MatMul", [b.x, w], p)
        if layer.use_bias:
            y = b.node("Add", [y, b.const(f"{p}/bias", layer.params["bias"])], p)
    b.x = _activation(b, y, layer.activation, p, softmax_axis=-1)


def _batch_norm(b, layer, in_shape):
    p = layer.name
    axis = layer._axis   # Keras axis of the features (1 for 2-D inputs; 1 or 3 for 4-D ones)
    if b.graph_axis(axis) != 1:
        if len(in_shape) == 4 and axis == 3:
            b.to_perm((0, 3, 1, 2), p)
        else:
            b.to_keras(p)
    c = in_shape[axis]
    ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
    inputs = [b.x,
              b.const(f"{p}/gamma", layer.params.get("gamma", ones)),
              b.const(f"{p}/beta", layer.params.get("beta", zeros)),
              b.const(f"{p}/moving_mean", layer.params["moving_mean"]),
              b.const(f"{p}/moving_variance", layer.params["moving_variance"])]
    b.x = b.node("BatchNormalization", inputs, p, epsilon=float(layer.epsilon))


def _flatten(b, layer, in_shape):
    p = layer.name
    r = len(in_shape)
    if r <= 2:
        return  # cnnc's Flatten of a 2-D tensor is the identity
    if layer.data_format == "channels_first":
        # cnnc (as Keras) moves the channels last, then flattens row-major
        b.to_perm((0,) + tuple(range(2, r)) + (1,), p)
    else:
        b.to_keras(p)
    b.x = b.node("Flatten", [b.x], p, axis=1)
    b.perm = (0, 1)


def _reshape(b, layer, in_shape):
    p = layer.name
    out_shape = layer.compute_output_shape(in_shape)
    b.to_keras(p)
    dims = [0] + [-1 if d is None else int(d) for d in out_shape[1:]]
    if sum(d == -1 for d in dims) > 1:   # unknown sizes: let ONNX infer the -1 of target_shape
        dims = [0] + [int(d) for d in layer.target_shape]
    shape = b.const(f"{p}/shape", np.array(dims, np.int64), dtype=np.int64)
    b.x = b.node("Reshape", [b.x, shape], p)
    b.perm = tuple(range(len(out_shape)))


def _zero_padding(b, layer, in_shape):
    p = layer.name
    t, bo, l, r = layer.padding
    ah, aw = _spatial_axes(layer.data_format)
    gh, gw = b.graph_axis(ah), b.graph_axis(aw)   # pads follow the axes, whatever the layout
    pads = [0] * 8
    pads[gh], pads[gh + 4], pads[gw], pads[gw + 4] = t, bo, l, r
    pads_name = b.const(f"{p}/pads", np.array(pads, np.int64), dtype=np.int64)
    b.x = b.node("Pad", [b.x, pads_name], p, mode="constant")


def _relu_layer(b, layer, in_shape):
    p = layer.name
    if layer.act is not None:
        b.x = _activation(b, b.x, layer.act, p, softmax_axis=-1)
        return
    # general ReLU: x >= threshold ? x : negative_slope * (x - threshold), then min(., max_value)
    x = b.x
    thr = b.shared_const("relu_threshold", np.float32(layer.threshold))
    cond = b.node("GreaterOrEqual", [x, thr], p)
    if layer.negative_slope == 0.0:
        below = b.shared_const("zero", np.float32(0.0))
    else:
        below = b.node("Mul", [b.node("Sub", [x, thr], p),
                               b.shared_const("relu_negative_slope", np.float32(layer.negative_slope))], p)
    y = b.node("Where", [cond, x, below], p)
    if layer.max_value is not None:
        y = b.node("Min", [y, b.shared_const("relu_max_value", np.float32(layer.max_value))], p)
    b.x = y


def _activation_layer(b, layer, in_shape, keras_axis=-1):
    b.x = _activation(b, b.x, layer.act, layer.name, softmax_axis=b.graph_axis(keras_axis))


def _layer_handlers():
    from .. import layers as L

    return {
        L.Conv2D: _conv,
        L.DepthwiseConv2D: _conv,
        L.MaxPooling2D: lambda b, l, s: _pool(b, l, s, "MaxPool"),
        L.AveragePooling2D: lambda b, l, s: _pool(b, l, s, "AveragePool"),
        L.GlobalAveragePooling2D: lambda b, l, s: _global_pool(b, l, s, "GlobalAveragePool"),
        L.GlobalMaxPooling2D: lambda b, l, s: _global_pool(b, l, s, "GlobalMaxPool"),
        L.Dense: _dense,
        L.BatchNormalization: _batch_norm,
        L.Dropout: lambda b, l, s: None,     # identity in inference
        L.InputLayer: lambda b, l, s: None,
        L.Flatten: _flatten,
        L.Reshape: _reshape,
        L.ZeroPadding2D: _zero_padding,
        L.Activation: _activation_layer,
        L.ReLU: _relu_layer,
        L.LeakyReLU: _activation_layer,
        L.ELU: _activation_layer,
        L.Softmax: lambda b, l, s: _activation_layer(b, l, s, keras_axis=l.axis),
    }


def _value_info(helper, TensorProto, name, shape, batch):
    dims = [batch] + [None if d is None else int(d) for d in shape[1:]]
    dims = [f"{name}_dim{i}" if d is None else d for i, d in enumerate(dims)]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def export(model, path=None, opset=17, input_name="input", output_name="output", dynamic_batch=True):
    """Convert a built cnnc Sequential model to an onnx.ModelProto (inference graph).

    path: also write the model there (str or os.PathLike). opset: ONNX opset of the default domain,
    13 through 21. The input and output keep the model's (Keras) layouts and shapes; with
    dynamic_batch the batch axis is the symbolic dimension 'N', otherwise the model's batch size
    (1 when it has none). Raises ValueError for an unbuilt model or an unsupported opset, and
    NotImplementedError for a layer without an ONNX equivalent.
    """
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or int(opset) not in SUPPORTED_OPSETS:
        raise ValueError(f"opset {opset!r} is not supported: cnnc exports ONNX opsets "
                         f"{SUPPORTED_OPSETS[0]} through {SUPPORTED_OPSETS[-1]}")
    opset = int(opset)
    for what, value in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what} must be a non-empty string, received {value!r}")
    if input_name == output_name:
        raise ValueError(f"input_name and output_name must differ, both are {input_name!r}")
    layers = list(getattr(model, "layers", None) or [])
    name = getattr(model, "name", "model")
    if not layers:
        raise ValueError(f"model '{name}' has no layers to export")
    if not getattr(model, "built", False) or not all(l.built for l in layers):
        raise ValueError(f"model '{name}' is not built yet, so it cannot be exported: give the first layer "
                         f"input_shape=, start with Input(shape=...), call build(), or fit/predict once")

    import onnx
    from onnx import TensorProto, helper

    from .. import __version__

    handlers = _layer_handlers()
    for layer in layers:
        if type(layer) not in handlers:
            raise NotImplementedError(f"layer '{layer.name}' of type {type(layer).__name__} has no ONNX export")

    b = _Builder(onnx, opset)
    b._used.update((input_name, output_name))
    in_shape = tuple(model.input_shape)
    b.x, b.perm = input_name, tuple(range(len(in_shape)))
    shape = in_shape
    for layer in layers:
        out_shape = tuple(layer.compute_output_shape(shape))
        handlers[type(layer)](b, layer, shape)
        if len(b.perm) != len(out_shape):   # internal consistency of the layout tracking
            raise AssertionError(f"export of layer '{layer.name}' lost track of the tensor layout")
        shape = out_shape

    # the output in the Keras layout, named output_name
    b.to_keras("output")
    producer = next((n for n in reversed(b.nodes) if b.x in n.output), None)
    if producer is None:   # nothing but no-op layers
        b.nodes.append(helper.make_node("Identity", [b.x], [output_name], name=b.unique("output/Identity")))
    else:                  # the final tensor feeds no node: rename it
        producer.output[list(producer.output).index(b.x)] = output_name

    if dynamic_batch:
        batch = "N"
    else:
        bis = getattr(model, "_batch_input_shape", None)
        batch = int(bis[0]) if bis and bis[0] is not None else 1
    graph = helper.make_graph(
        b.nodes, str(name),
        [_value_info(helper, TensorProto, input_name, in_shape, batch)],
        [_value_info(helper, TensorProto, output_name, shape, batch)],
        initializer=b.initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opset_ids, producer_name="cnnc", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opset_ids))
    proto.doc_string = f"cnnc Sequential model '{name}'"
    if path is not None:
        onnx.save_model(proto, os.fspath(path))
    return proto
