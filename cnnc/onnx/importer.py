"""Import an ONNX model as a trainable cnnc Sequential: `import_model(path_or_bytes)`.

Only graphs that are ONE chain of layer-like operators can become a Sequential (for fine-tuning);
any other graph (residual additions, concatenations, unsupported operators) raises a ValueError that
names the node breaking the chain - such models run with cnnc.onnx.InferenceSession.

The Sequential takes the same input as the ONNX model: an NCHW model gives channels_first layers.
Transpose nodes are followed rather than computed: the importer keeps the running graph tensor as a
permutation of the Sequential's tensor, so cnnc's own exports of channels_last models (NHWC input,
Transpose to NCHW before the convolutions and back before Flatten/Dense) import as channels_last
layers again.

Mapping (ONNX -> cnnc.layers):
    Conv (+ a following activation, fused)  -> Conv2D / DepthwiseConv2D (group == C_in, C_out a
                                                multiple of C_in) / Conv2D(groups=g); pads equal to
                                                Keras 'same' -> 'same', zero -> 'valid', others ->
                                                ZeroPadding2D + 'valid'
    MaxPool / AveragePool                   -> MaxPooling2D / AveragePooling2D ('same' / 'valid';
                                                other pads -> ZeroPadding2D + 'valid' where that is
                                                exact: AveragePool counting the pads, MaxPool of a
                                                non-negative input (after ReLU, ...)); ceil_mode too
                                                for MaxPool
    Gemm, MatMul (+ Add of a constant)      -> Dense (transB handled, alpha/beta folded)
    Flatten                                 -> Flatten
    Reshape (constant shape)                -> Reshape
    GlobalAveragePool / GlobalMaxPool,
    ReduceMean / ReduceMax over H, W        -> GlobalAveragePooling2D / GlobalMaxPooling2D (a
                                                following Flatten is folded into keepdims=False)
    BatchNormalization (inference)          -> BatchNormalization(axis=channel axis) with weights
    Relu, Sigmoid, Tanh, LeakyRelu, Elu, Selu, HardSigmoid, HardSwish, Clip(0, m), Softmax
                                            -> the producing layer's activation, else Activation /
                                                ReLU / LeakyReLU / ELU / Softmax layers
    Pad (constant 0, spatial axes)          -> ZeroPadding2D
    Dropout, Identity, Transpose            -> nothing (Transpose changes the tracked layout)
Constant sub-graphs (Constant, ConstantOfShape, ... on constants only) are folded first.
"""
import re

import numpy as np

from .check import load_model_proto

__all__ = ["import_model"]

_SELU_ALPHA = 1.6732632423543772
_SELU_GAMMA = 1.0507009873554805
_ACT_OPS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Clip", "Softmax")
_NONNEG_ACTS = ("relu", "relu6", "sigmoid", "softmax", "hard_sigmoid")
_ADVICE = "run the model with cnnc.onnx.InferenceSession instead"


class _ChainError(ValueError):
    pass


def _attrs(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _node_desc(node):
    return f"node '{node.name}' ({node.op_type})" if node.name else f"a {node.op_type} node"


def _close(a, b, tol=1e-6):
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def _fold_constants(graph, opset):
    """name -> np.ndarray for initializers and every node output computable from constants alone.
    Returns (consts, folded node ids)."""
    from onnx import helper, numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    folded = set()
    nondeterministic = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli", "Dropout"}
    for i, node in enumerate(graph.node):
        if node.op_type in nondeterministic or node.domain not in ("", "ai.onnx"):
            continue
        if not all(name == "" or name in consts for name in node.input):
            continue
        if node.op_type == "Constant":
            a = node.attribute[0]
            if a.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(a.t)
            else:
                consts[node.output[0]] = np.asarray(helper.get_attribute_value(a))
            folded.add(i)
            continue
        if node.op_type == "ConstantOfShape":  # the weights of ONNX's "light" zoo models: fill directly
            value = _attrs(node).get("value")
            fill = numpy_helper.to_array(value).reshape(-1)[:1] if value is not None else np.zeros(1, np.float32)
            consts[node.output[0]] = np.full([int(d) for d in np.ravel(consts[node.input[0]])], fill[0],
                                             dtype=fill.dtype)
            folded.add(i)
            continue
        try:
            from onnx.reference import ReferenceEvaluator

            ins = [n for n in node.input if n]
            g = helper.make_graph(
                [node], "fold",
                [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(consts[n].dtype), consts[n].shape)
                 for n in ins],
                [helper.make_tensor_value_info(o, 0, None) for o in node.output if o])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
            outs = ReferenceEvaluator(m).run(None, {n: consts[n] for n in ins})
        except Exception:  # noqa: BLE001 - leave it to the chain walk, which names the node
            continue
        for name, value in zip([o for o in node.output if o], outs):
            consts[name] = np.asarray(value)
        folded.add(i)
    return consts, folded


class _Importer:
    def __init__(self, model):
        from .. import layers as L

        self.L = L
        self.model = model
        g = model.graph
        self.graph = g
        self.opset = 1
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = int(imp.version)
        self.consts, folded = _fold_constants(g, self.opset)
        self.nodes = [n for i, n in enumerate(g.node) if i not in folded]
        self.consumers = {}
        for n in self.nodes:
            for name in n.input:
                if name and name not in self.consts:
                    self.consumers.setdefault(name, []).append(n)
        self.layers = []       # (layer, weights or None)
        self.used_names = set()
        self.visited = set()
        self.nonneg = False    # the running tensor is known to be >= 0 (for zero-padded max pooling)

    # ---- helpers ------------------------------------------------------------------------------
    def fail(self, node, why):
        where = _node_desc(node) if node is not None else "the graph"
        raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: {where} {why}; "
                          f"import_model handles one chain of supported layers - {_ADVICE}")

    def const(self, node, idx, what):
        if idx >= len(node.input) or not node.input[idx]:
            return None
        name = node.input[idx]
        if name not in self.consts:
            self.fail(node, f"needs a constant {what} (input '{name}' is computed)")
        return self.consts[name]

    def layer_name(self, node, suffix=""):
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name).strip("_") if node.name else ""
        if not base:
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", node.op_type).lower()
        base += suffix
        name, i = base, 1
        while name in self.used_names:
            name = f"{base}_{i}"
            i += 1
        self.used_names.add(name)
        return name

    def add(self, layer, weights=None, nonneg=False):
        self.layers.append((layer, weights))
        self.kshape = tuple(layer.compute_output_shape(self.kshape))
        self.nonneg = nonneg

    @property
    def gshape(self):
        return tuple(self.kshape[p] for p in self.perm)

    def single_consumer(self, tensor):
        """The one node reading `tensor`, or None when it is the graph output or read by several."""
        cons = self.consumers.get(tensor, [])
        if tensor in self.outputs or len(cons) != 1:
            return None
        return cons[0]

    def image_format(self, node):
        """The Keras data format whose NCHW view is the running graph tensor."""
        if len(self.perm) != 4:
            self.fail(node, f"expects a 4-D NCHW tensor, received rank {len(self.perm)}")
        if self.perm == (0, 1, 2, 3):
            return "channels_first"
        if self.perm == (0, 3, 1, 2):
            return "channels_last"
        self.fail(node, f"works on a tensor whose layout (permutation {self.perm} of the model's) is neither "
                        f"NCHW nor NHWC")

    def spatial_in(self):
        g = self.gshape
        return g[2], g[3]

    # ---- activations ----------------------------------------------------------------------------
    def act_spec(self, node):
        """(fused activation name or None, factory of a standalone layer, output >= 0)."""
        L = self.L
        op = node.op_type
        a = _attrs(node)
        name = self.layer_name
        if op in ("Relu", "Sigmoid", "Tanh", "HardSwish"):
            act = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hard_swish"}[op]
            return act, lambda: L.Activation(act, name=name(node)), act in _NONNEG_ACTS
        if op == "LeakyRelu":
            alpha = float(a.get("alpha", 0.01))
            fused = "leaky_relu" if _close(alpha, 0.2) else None
            return fused, lambda: L.LeakyReLU(negative_slope=alpha, name=name(node)), False
        if op == "Elu":
            alpha = float(a.get("alpha", 1.0))
            fused = "elu" if _close(alpha, 1.0) else None
            return fused, lambda: L.ELU(alpha=alpha, name=name(node)), False
        if op == "Selu":
            alpha, gamma = a.get("alpha", _SELU_ALPHA), a.get("gamma", _SELU_GAMMA)
            if not (_close(alpha, _SELU_ALPHA) and _close(gamma, _SELU_GAMMA)):
                self.fail(node, "has alpha/gamma other than the standard SELU constants, which cnnc's selu uses")
            return "selu", lambda: L.Activation("selu", name=name(node)), False
        if op == "HardSigmoid":
            alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
            if not (_close(alpha, 0.2) and _close(beta, 0.5)):
                self.fail(node, f"has alpha={alpha:g}, beta={beta:g}; cnnc's hard_sigmoid is "
                                f"max(0, min(1, 0.2 x + 0.5))")
            return "hard_sigmoid", lambda: L.Activation("hard_sigmoid", name=name(node)), True
        if op == "Clip":
            if self.opset >= 11:
                lo, hi = self.const(node, 1, "min"), self.const(node, 2, "max")
            else:
                lo, hi = a.get("min"), a.get("max")
            lo = None if lo is None or np.size(lo) == 0 else float(np.ravel(lo)[0])
            hi = None if hi is None or np.size(hi) == 0 else float(np.ravel(hi)[0])
            lo = None if lo is not None and lo <= -3.0e38 else lo
            hi = None if hi is not None and hi >= 3.0e38 else hi
            if lo != 0.0:
                self.fail(node, f"clips to [{lo}, {hi}]; only Clip(0, max) (ReLU, ReLU6) maps to a cnnc layer")
            if hi is None:
                return "relu", lambda: L.Activation("relu", name=name(node)), True
            if hi == 6.0:
                return "relu6", lambda: L.Activation("relu6", name=name(node)), True
            return None, lambda: L.ReLU(max_value=hi, name=name(node)), True
        if op == "Softmax":
            rank = len(self.perm)
            axis = int(a.get("axis", -1 if self.opset >= 13 else 1)) % rank
            if self.opset < 13 and axis != rank - 1:
                g = self.gshape
                if any(d != 1 for d in g[axis + 1:]):
                    self.fail(node, f"(opset {self.opset}) normalizes over all axes from {axis} on, which is not a "
                                    f"single-axis softmax")
            kaxis = self.perm[axis]
            return ("softmax" if kaxis == len(self.kshape) - 1 or rank == 4 and kaxis in (1, 3) else None,
                    lambda: L.Softmax(axis=kaxis, name=name(node)), True), kaxis
        raise AssertionError(op)

    def fuse_activation(self, out, can_fuse):
        """After a Conv/Dense producing `out`: when its only consumer is an activation that can_fuse(name)
        accepts, consume it and return (activation name, new output, nonneg)."""
        nxt = self.single_consumer(out)
        if nxt is None or nxt.op_type not in _ACT_OPS:
            return None, out, False
        spec = self.act_spec(nxt)
        kaxis = None
        if nxt.op_type == "Softmax":
            spec, kaxis = spec
        fused, _, nonneg = spec
        if fused is None or not can_fuse(fused, kaxis):
            return None, out, False
        self.visited.add(id(nxt))
        return fused, nxt.output[0], nonneg

    def do_activation(self, node):
        spec = self.act_spec(node)
        if node.op_type == "Softmax":
            spec, _ = spec
        _, factory, nonneg = spec
        self.add(factory(), nonneg=nonneg)
        return node.output[0]

    # ---- padding --------------------------------------------------------------------------------
    def explicit_pads(self, node, a, kernel, strides, dilations, ceil_mode=False):
        """(top, left, bottom, right) from pads/auto_pad; 'same' for SAME_UPPER of unknown size."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            h, w = self.spatial_in()
            if h is None or w is None:
                if auto == "SAME_UPPER":
                    return "same"
                self.fail(node, "has auto_pad SAME_LOWER on an input of unknown size")
            pads = []
            for size, k, s, d in zip((h, w), kernel, strides, dilations):
                out = -(-size // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
            return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
        pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        if len(pads) != 4:
            self.fail(node, f"has pads {pads}; cnnc's layers are 2-D")
        return tuple(pads)

    def padding_mode(self, pads, kernel, strides, dilations):
        """'valid', 'same' or None (needs explicit padding) for ONNX pads (top, left, bottom, right)."""
        from .._checks import same_padding

        if pads == "same":
            return "same"
        if not any(pads):
            return "valid"
        h, w = self.spatial_in()
        if h is None or w is None:
            return None
        (t, b), (l, r) = (same_padding(size, d * (k - 1) + 1, s)
                          for size, k, s, d in zip((h, w), kernel, strides, dilations))
        return "same" if (t, l, b, r) == tuple(pads) else None

    def add_zero_padding(self, node, pads, fmt):
        t, l, b, r = pads
        self.add(self.L.ZeroPadding2D(((t, b), (l, r)), data_format=fmt, name=self.layer_name(node, "_pad")),
                 nonneg=self.nonneg)

    # ---- operators ------------------------------------------------------------------------------
    def do_conv(self, node):
        L = self.L
        a = _attrs(node)
        fmt = self.image_format(node)
        w = self.const(node, 1, "weight")
        bias = self.const(node, 2, "bias")
        if w.ndim != 4:
            self.fail(node, f"is a {w.ndim - 2}-D convolution; cnnc's Conv2D is 2-D only")
        cout, cin_g, kh, kw = (int(d) for d in w.shape)
        kernel = tuple(int(k) for k in a.get("kernel_shape", (kh, kw)))
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        group = int(a.get("group", 1))
        cin = self.gshape[1]
        if cin is not None and cin != cin_g * group:
            self.fail(node, f"has weights for {cin_g * group} input channels, the input has {cin}")
        if strides != (1, 1) and dil != (1, 1):
            self.fail(node, "combines strides > 1 with dilations > 1, which cnnc's Conv2D does not support")
        pads = self.explicit_pads(node, a, kernel, strides, dil)
        mode = self.padding_mode(pads, kernel, strides, dil)
        if mode is None:  # zero padding is exactly what a convolution's pads do
            self.add_zero_padding(node, pads, fmt)
            mode = "valid"
        depthwise = group > 1 and group == cin_g * group and cin_g == 1 and cout % group == 0
        out = node.output[0]
        softmax_axis = 1 if fmt == "channels_first" else 3
        act, out, nonneg = self.fuse_activation(
            out, lambda name, kaxis: name != "softmax" or kaxis == softmax_axis)
        common = dict(kernel_size=kernel, strides=strides, padding=mode, data_format=fmt, dilation_rate=dil,
                      activation=act, use_bias=bias is not None, name=self.layer_name(node))
        if depthwise:
            m = cout // group
            layer = L.DepthwiseConv2D(depth_multiplier=m, **common)
            # ONNX output channel c*m + j reads input channel c: W[c*m + j, 0] -> kernel[:, :, c, j]
            weights = [w.reshape(group, m, kh, kw).transpose(2, 3, 0, 1)]
        else:
            layer = L.Conv2D(cout, groups=group, **common)
            weights = [w.transpose(2, 3, 1, 0)]
        if bias is not None:
            weights.append(bias.reshape(cout))
        self.add(layer, weights, nonneg=nonneg)
        return out

    def do_pool(self, node):
        L = self.L
        a = _attrs(node)
        fmt = self.image_format(node)
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "also returns Indices, which cnnc's MaxPooling2D layer does not")
        kernel = tuple(int(k) for k in a["kernel_shape"])
        if len(kernel) != 2:
            self.fail(node, f"pools over {len(kernel)} axes; cnnc's pooling layers are 2-D")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        if dil != (1, 1):
            self.fail(node, "has dilations, which cnnc's pooling layers do not support")
        is_max = node.op_type == "MaxPool"
        pads = self.explicit_pads(node, a, kernel, strides, dil)
        if int(a.get("ceil_mode", 0)) and pads != "same":
            h, w = self.spatial_in()
            if h is None or w is None:
                self.fail(node, "has ceil_mode=1 on an input of unknown size")
            t, l, b, r = pads
            extra = []
            for size, k, s, lo, hi in ((h, kernel[0], strides[0], t, b), (w, kernel[1], strides[1], l, r)):
                span = size + lo + hi - k
                out = -(-span // s) + 1
                if (out - 1) * s >= size + lo:  # ONNX/PyTorch: the last window starts inside the input
                    out -= 1
                extra.append(max((out - 1) * s + k - (size + lo + hi), 0))
            if any(extra):
                if not is_max:
                    self.fail(node, "has ceil_mode=1 adding partial windows, which cnnc's AveragePooling2D cannot do")
                pads = (t, l, b + extra[0], r + extra[1])
        mode = self.padding_mode(pads, kernel, strides, dil)
        include_pad = bool(a.get("count_include_pad", 0))
        if not is_max and mode == "same" and include_pad and pads != "same":
            mode = None  # the pads are counted in the averages: pad with zeros explicitly
        if mode is None:
            if is_max and not self.nonneg:
                self.fail(node, f"has pads {list(pads)} that are neither zero nor Keras 'same'; cnnc can zero-pad "
                                f"before a max pool only when the input is known to be >= 0 (after ReLU, ...)")
            if not is_max and not include_pad:
                self.fail(node, f"has pads {list(pads)} that are neither zero nor Keras 'same', left out of the "
                                f"averages (count_include_pad=0)")
            self.add_zero_padding(node, pads, fmt)
            mode = "valid"
        cls = L.MaxPooling2D if is_max else L.AveragePooling2D
        self.add(cls(pool_size=kernel, strides=strides, padding=mode, data_format=fmt, name=self.layer_name(node)),
                 nonneg=self.nonneg)
        return node.output[0]

    def _flatten_after(self, out):
        """The consumer of a [N, C, 1, 1] tensor that only flattens it, or None."""
        nxt = self.single_consumer(out)
        if nxt is None:
            return None
        if nxt.op_type == "Flatten" and int(_attrs(nxt).get("axis", 1)) == 1:
            return nxt
        if nxt.op_type == "Reshape" and len(nxt.input) > 1 and nxt.input[1] in self.consts:
            shape = [int(d) for d in self.consts[nxt.input[1]].reshape(-1)]
            if len(shape) == 2 and (shape[1] in (-1, self.gshape[1]) and shape[0] in (0, -1) or
                                    shape[0] == 0 and shape[1] == -1):
                return nxt
        return None

    def do_global_pool(self, node, op=None):
        L = self.L
        op = op or node.op_type
        fmt = self.image_format(node)
        cls = L.GlobalAveragePooling2D if op == "GlobalAveragePool" else L.GlobalMaxPooling2D
        out = node.output[0]
        keepdims = True
        if op != node.op_type:  # ReduceMean / ReduceMax
            keepdims = bool(int(_attrs(node).get("keepdims", 1)))
        if keepdims:
            flat = self._flatten_after(out)
            if flat is not None:
                self.visited.add(id(flat))
                out, keepdims = flat.output[0], False
        self.add(cls(data_format=fmt, keepdims=keepdims, name=self.layer_name(node)),
                 nonneg=self.nonneg and op == "GlobalMaxPool")
        if not keepdims:
            self.perm = (0, 1)
        return out

    def do_reduce(self, node):
        a = _attrs(node)
        # axes: an attribute before opset 18 (ReduceMean 13 / ReduceMax 13), an input from opset 18 on
        axes = self.const(node, 1, "axes") if self.opset >= 18 else a.get("axes")
        rank = len(self.perm)
        if axes is None or rank != 4 or sorted(int(x) % rank for x in np.ravel(axes)) != [2, 3]:
            self.fail(node, "reduces over axes other than the spatial axes (2, 3) of an NCHW tensor")
        return self.do_global_pool(node, "GlobalAveragePool" if node.op_type == "ReduceMean" else "GlobalMaxPool")

    def do_dense(self, node):
        L = self.L
        rank = len(self.perm)
        if self.perm != tuple(range(rank)) or (node.op_type == "Gemm" and rank != 2):
            self.fail(node, f"multiplies a rank-{rank} tensor held in permutation {self.perm} of the model's layout")
        if node.input[0] not in self.current_names:
            self.fail(node, "multiplies a constant by the running tensor (the running tensor must be the first input)")
        if node.op_type == "Gemm":
            a = _attrs(node)
            if int(a.get("transA", 0)):
                self.fail(node, "has transA=1")
            w = self.const(node, 1, "B")
            if w.ndim != 2:
                self.fail(node, "has a B that is not a matrix")
            w = w.T if int(a.get("transB", 0)) else w
            w = w * np.float32(a.get("alpha", 1.0))
            c = self.const(node, 2, "C")
            bias = None
            if c is not None:
                bias = np.broadcast_to(np.asarray(c, np.float32) * np.float32(a.get("beta", 1.0)),
                                       (1, w.shape[1])) if c.ndim <= 2 else None
                if bias is None or (c.ndim == 2 and c.shape[0] != 1):
                    self.fail(node, f"adds a C of shape {c.shape} that is not a bias vector")
                bias = bias.reshape(-1)
            out = node.output[0]
        else:  # MatMul (+ Add)
            w = self.const(node, 1, "weight matrix")
            if w.ndim != 2:
                self.fail(node, "multiplies by a constant that is not a matrix")
            out = node.output[0]
            bias = None
            nxt = self.single_consumer(out)
            if nxt is not None and nxt.op_type == "Add":
                other = [i for i in nxt.input if i != out]
                if len(other) == 1 and other[0] in self.consts:
                    c = self.consts[other[0]]
                    if c.size == w.shape[1] and (c.ndim == 1 or c.ndim == 2 and c.shape[0] == 1) or c.size == 1:
                        bias = np.broadcast_to(c.reshape(-1), (w.shape[1],))
                        self.visited.add(id(nxt))
                        out = nxt.output[0]
        units = int(w.shape[1])
        if self.kshape[-1] is not None and self.kshape[-1] != w.shape[0]:
            self.fail(node, f"has weights for {w.shape[0]} input features, the input has {self.kshape[-1]}")
        act, out, nonneg = self.fuse_activation(out, lambda name, kaxis: name != "softmax" or kaxis == rank - 1)
        layer = L.Dense(units, activation=act, use_bias=bias is not None, name=self.layer_name(node))
        weights = [np.asarray(w, np.float32)]
        if bias is not None:
            weights.append(np.asarray(bias, np.float32))
        self.add(layer, weights, nonneg=nonneg)
        return out

    def do_flatten(self, node):
        L = self.L
        axis = int(_attrs(node).get("axis", 1))
        rank = len(self.perm)
        if axis % max(rank, 1) != 1 and not (rank == 2 and axis in (1, -1)):
            self.fail(node, f"flattens from axis {axis}; only axis 1 (keep the batch axis) maps to cnnc's Flatten")
        if rank == 2:
            return node.output[0]
        if self.perm == tuple(range(rank)):
            layer = L.Flatten(name=self.layer_name(node))       # row-major, as ONNX
        elif rank == 4 and self.perm == (0, 2, 3, 1):
            layer = L.Flatten(data_format="channels_first", name=self.layer_name(node))
        else:
            self.fail(node, f"flattens a tensor held in permutation {self.perm} of the model's layout")
        self.add(layer, nonneg=self.nonneg)
        self.perm = (0, 1)
        return node.output[0]

    def do_reshape(self, node):
        L = self.L
        shape = self.const(node, 1, "shape") if self.opset >= 5 else np.asarray(_attrs(node).get("shape"))
        shape = [int(d) for d in np.ravel(shape)]
        if int(_attrs(node).get("allowzero", 0)) and 0 in shape:
            self.fail(node, "has allowzero=1 with a 0 in the shape")
        rank = len(self.perm)
        if self.perm != tuple(range(rank)):
            self.fail(node, f"reshapes a tensor held in permutation {self.perm} of the model's layout")
        g = self.gshape
        dims = [g[i] if d == 0 else d for i, d in enumerate(shape)]
        batch = self.batch
        if dims[0] not in (-1, None) and not (batch is not None and dims[0] == batch):
            self.fail(node, f"reshapes to {shape}, changing the batch axis")
        rest = dims[1:]
        if dims[0] == -1 and -1 in rest:
            self.fail(node, f"reshapes to {shape} with two -1")
        if any(d is None for d in rest):
            self.fail(node, f"reshapes to {shape}, copying a dimension of unknown size")
        self.add(L.Reshape(tuple(rest), name=self.layer_name(node)), nonneg=self.nonneg)
        self.perm = tuple(range(len(self.kshape)))
        return node.output[0]

    def do_batch_norm(self, node):
        L = self.L
        a = _attrs(node)
        if int(a.get("training_mode", 0)) or any(o for o in node.output[1:]):
            self.fail(node, "runs in training mode (training_mode=1 or running statistics as outputs)")
        if int(a.get("spatial", 1)) != 1:
            self.fail(node, "has spatial=0 (per-pixel statistics)")
        gamma, beta, mean, var = (self.const(node, i, what) for i, what in
                                  ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        rank = len(self.perm)
        if rank not in (2, 4):
            self.fail(node, f"normalizes a rank-{rank} tensor; cnnc's BatchNormalization takes 2-D or 4-D inputs")
        kaxis = self.perm[1]
        layer = L.BatchNormalization(axis=kaxis, epsilon=float(a.get("epsilon", 1e-5)),
                                     momentum=float(a.get("momentum", 0.9)), name=self.layer_name(node))
        self.add(layer, [gamma.reshape(-1), beta.reshape(-1), mean.reshape(-1), var.reshape(-1)])
        return node.output[0]

    def do_pad(self, node):
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            self.fail(node, f"pads in mode '{mode}'; only zero padding maps to ZeroPadding2D")
        if self.opset >= 11:
            pads = self.const(node, 1, "pads")
            value = self.const(node, 2, "constant_value")
            axes = self.const(node, 3, "axes")
        else:
            pads, value, axes = a.get("pads"), a.get("value", 0.0), None
        value = 0.0 if value is None or np.size(value) == 0 else float(np.ravel(value)[0])
        if value != 0.0:
            self.fail(node, f"pads with {value}; only zero padding maps to ZeroPadding2D")
        rank = len(self.perm)
        pads = [int(p) for p in np.ravel(pads)]
        axes = list(range(rank)) if axes is None else [int(x) % rank for x in np.ravel(axes)]
        if rank != 4 or len(pads) != 2 * len(axes):
            self.fail(node, "does not pad a 4-D tensor")
        begin, end = [0] * 4, [0] * 4
        for i, ax in enumerate(axes):
            begin[self.perm[ax]], end[self.perm[ax]] = pads[i], pads[i + len(axes)]
        if any(p < 0 for p in begin + end):
            self.fail(node, "crops (negative pads)")
        padded = {k for k in range(4) if begin[k] or end[k]}
        if not padded:
            return node.output[0]
        if padded <= {2, 3} and (self.fmt == "channels_first" or not padded <= {1, 2}):
            fmt, (ah, aw) = "channels_first", (2, 3)
        elif padded <= {1, 2}:
            fmt, (ah, aw) = "channels_last", (1, 2)
        else:
            self.fail(node, f"pads non-spatial axes ({begin} / {end} on the model's layout)")
        self.add(self.L.ZeroPadding2D(((begin[ah], end[ah]), (begin[aw], end[aw])), data_format=fmt,
                                      name=self.layer_name(node)), nonneg=self.nonneg)
        return node.output[0]

    def do_transpose(self, node):
        p = _attrs(node).get("perm")
        rank = len(self.perm)
        p = list(range(rank))[::-1] if p is None else [int(i) for i in p]
        if sorted(p) != list(range(rank)) or p[0] != 0:
            self.fail(node, f"transposes with perm {p}, moving the batch axis")
        self.perm = tuple(self.perm[i] for i in p)
        return node.output[0]

    def do_skip(self, node):
        if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1] and node.output[1] in self.consumers:
            self.fail(node, "has its mask output used")
        return node.output[0]

    # ---- the walk -------------------------------------------------------------------------------
    def run(self):
        from .. import layers as L
        from ..models import Sequential

        g = self.graph
        inputs = [vi for vi in g.input if vi.name not in self.consts]
        if len(inputs) != 1:
            raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: it has {len(inputs)} inputs "
                              f"({', '.join(v.name for v in inputs)}), a Sequential has one - {_ADVICE}")
        if len(g.output) != 1:
            raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: it has {len(g.output)} outputs "
                              f"({', '.join(v.name for v in g.output)}), a Sequential has one - {_ADVICE}")
        vi = inputs[0]
        tt = vi.type.tensor_type
        if tt.elem_type != 1:
            raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: its input '{vi.name}' is not "
                              f"float32 - {_ADVICE}")
        dims = []
        for d in tt.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") else None)
        if len(dims) < 2:
            raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: its input '{vi.name}' has rank "
                              f"{len(dims)}, it needs a batch axis and features - {_ADVICE}")
        self.batch = dims[0]
        self.kshape = (None,) + tuple(dims[1:])
        self.in_shape = self.kshape
        self.perm = tuple(range(len(dims)))
        self.fmt = "channels_first"
        self.outputs = {o.name for o in g.output}
        out_name = g.output[0].name
        cur = vi.name
        self.current_names = {cur}
        handlers = {
            "Conv": self.do_conv, "MaxPool": self.do_pool, "AveragePool": self.do_pool,
            "GlobalAveragePool": self.do_global_pool, "GlobalMaxPool": self.do_global_pool,
            "ReduceMean": self.do_reduce, "ReduceMax": self.do_reduce,
            "Gemm": self.do_dense, "MatMul": self.do_dense, "Flatten": self.do_flatten, "Reshape": self.do_reshape,
            "BatchNormalization": self.do_batch_norm, "Pad": self.do_pad, "Transpose": self.do_transpose,
            "Dropout": self.do_skip, "Identity": self.do_skip,
        }
        for op in _ACT_OPS:
            handlers[op] = self.do_activation
        while cur != out_name:
            cons = self.consumers.get(cur, [])
            if len(cons) > 1:
                names = ", ".join(_node_desc(n) for n in cons)
                raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: tensor '{cur}' feeds "
                                  f"{len(cons)} nodes ({names}), a branch; {_ADVICE}")
            if not cons:
                raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: tensor '{cur}' is not used "
                                  f"and is not the graph output '{out_name}' - {_ADVICE}")
            node = cons[0]
            dynamic = [i for i in node.input if i and i not in self.consts]
            if dynamic != [cur]:
                others = [i for i in dynamic if i != cur]
                self.fail(node, f"also takes the computed tensor(s) {', '.join(repr(o) for o in others)} (a merge of "
                                f"branches such as a residual connection or a concatenation)")
            if node.domain not in ("", "ai.onnx") or node.op_type not in handlers:
                dom = f" of domain '{node.domain}'" if node.domain not in ("", "ai.onnx") else ""
                self.fail(node, f"is an operator{dom} that import_model does not map to a layer")
            self.visited.add(id(node))
            cur = handlers[node.op_type](node)
            self.current_names = {cur}
            if node.op_type in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
                self.fmt = self.layers[-1][0].data_format if self.layers else self.fmt
        if self.consumers.get(cur):
            self.fail(self.consumers[cur][0], f"reads the graph output '{cur}' (a branch)")
        if self.perm != tuple(range(len(self.perm))):
            raise _ChainError(f"cannot import this ONNX model as a cnnc Sequential: its output is a transposed view "
                              f"(permutation {self.perm}) of what the layers compute - {_ADVICE}")
        left = [n for n in self.nodes if id(n) not in self.visited]
        if left:
            self.fail(left[0], "is not on the chain from the input to the output")

        model = Sequential([L.Input(shape=self.in_shape[1:])] + [layer for layer, _ in self.layers],
                           name=re.sub(r"[^A-Za-z0-9_.-]+", "_", g.name or "onnx_model") or "onnx_model")
        for layer, weights in self.layers:
            if weights is not None:
                layer.set_weights([np.ascontiguousarray(w, dtype=np.float32) for w in weights])
        return model


def import_model(path_or_bytes):
    """Build a trainable cnnc Sequential from an ONNX model (a path, its bytes, or an onnx.ModelProto).

    The model must be one chain of supported operators (see this module's docstring); the Sequential
    takes the ONNX model's input as it is (NCHW models give channels_first layers) and holds the
    ONNX weights. Anything else raises ValueError naming the node that breaks the chain; such models
    run with cnnc.onnx.InferenceSession.
    """
    model, _ = load_model_proto(path_or_bytes)
    return _Importer(model).run()
