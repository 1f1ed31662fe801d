"""Lowering to the bundle graph: from a built Sequential (directly, no onnx needed) and from an ONNX
model (through cnnc.onnx.InferenceSession's plan: constants folded, BatchNormalization folded into
Conv, Relu/Clip(0, 6) fused)."""
import numpy as np

from .. import _alloc, _core
from ..onnx._ops import bn_scale_shift  # numpy only: no onnx import
from ._format import (BIN_ADD, BIN_DIV, BIN_MAX, BIN_MIN, BIN_MUL, BIN_PRELU, BIN_SUB, NCHW, NHWC, OP_ACT,
                      OP_AFFINE, OP_AVGPOOL, OP_BINARY, OP_CONCAT, OP_CONV, OP_DENSE, OP_GATHER, OP_GAVGPOOL,
                      OP_GMAXPOOL, OP_LRN, OP_MATMUL, OP_MAXPOOL, OP_PAD, OP_SOFTMAX, OP_TRANSPOSE, OP_UNARY,
                      PAD_CONSTANT, PAD_EDGE, PAD_REFLECT, UN_SQRT, BundleError, Graph)

F32 = np.float32
FLT_MAX = float(np.finfo(np.float32).max)
K = _core.ACT_KINDS
NONE_ACT = (K["none"], 0.0, 0.0)


# ---- Sequential -----------------------------------------------------------------------------------

def _act_triple(act):
    return (int(act.kind), float(act.alpha), float(act.beta))


def _apply_act(g, act, x, dims, label):
    """A separate activation op (or softmax over the last axis) after x; returns the new value."""
    if act is None or act.is_linear:
        return x
    if act.softmax:
        return g.op(OP_SOFTMAX, [x], dims, 0, [len(dims) - 1, 0], label=label + " softmax")
    return g.op(OP_ACT, [x], dims, 0, [act.kind], [act.alpha, act.beta], label=label + " " + act.name)


def _fused_or_separate(layer_act):
    """(fused activation triple, activation to apply afterwards) the way the layers do it."""
    if layer_act is None or layer_act.is_linear:
        return NONE_ACT, None
    if layer_act.from_output and not layer_act.softmax:
        return _act_triple(layer_act), None
    return NONE_ACT, layer_act


def _bn_affine(layer):
    """(scale, shift) of an inference-mode BatchNormalization."""
    gamma, beta = layer._gamma_beta()
    a, s = bn_scale_shift(gamma, beta, layer.params["moving_mean"], layer.params["moving_variance"],
                          layer.epsilon)
    return _alloc.track(a), _alloc.track(s)


def from_sequential(model, input_name="input", output_name="output"):
    """The bundle graph of a built Sequential (inference: dropout off, batch norm with moving stats)."""
    from .. import layers as L
    from .._checks import resolve_padding
    model._require_built("bundle()")
    g = Graph(fixed_batch=0)
    shape = (1,) + tuple(model.input_shape[1:])
    if any(d is None for d in shape):
        raise BundleError(f"the model's input shape {model.input_shape} has unknown dimensions besides the batch")
    x = g.input(input_name, shape, 0)
    problems = []
    for layer in model.layers:
        out = (1,) + tuple(layer.compute_output_shape((None,) + shape[1:])[1:])
        label = layer.name
        cl = getattr(layer, "data_format", "channels_last") == "channels_last"
        layout = NHWC if cl else NCHW
        if not type(layer).__module__.startswith("cnnc."):
            # a subclass may override forward(): only cnnc's own layer classes have known semantics
            problems.append(f"{label}: layer type {type(layer).__name__} (defined outside cnnc)")
            break
        if isinstance(layer, L.InputLayer):
            pass
        elif isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)):
            w = layer._c_kernel()
            kw = layer._op_kwargs()
            kh, kww = layer.kernel_size
            dh, dw = layer.dilation_rate
            sh, sw = layer.strides
            hw = shape[1:3] if cl else shape[2:4]
            t, b, left, r = resolve_padding(layer.padding, hw, (dh * (kh - 1) + 1, dw * (kww - 1) + 1), (sh, sw))
            fused, after = _fused_or_separate(layer.activation)
            if after is not None and after.softmax and not cl:
                problems.append(f"{label}: softmax over the channel axis of a channels_first Conv2D")
                break
            bias = layer.params.get("bias")
            ins = [x, g.const(w, lambda l=layer: l._c_kernel()),
                   g.const(bias, lambda l=layer: l.params["bias"]) if bias is not None else -1]
            x = g.op(OP_CONV, ins, out, 0, [sh, sw, dh, dw, t, b, left, r, kw["groups"], fused[0], layout],
                     [fused[1], fused[2]], label=label)
            x = _apply_act(g, after, x, out, label)
        elif isinstance(layer, L.Dense):
            fused, after = _fused_or_separate(layer.activation)
            bias = layer.params.get("bias")
            ins = [x, g.const(layer.params["kernel"], lambda l=layer: l.params["kernel"]),
                   g.const(bias, lambda l=layer: l.params["bias"]) if bias is not None else -1]
            x = g.op(OP_DENSE, ins, out, 0, [fused[0]], [fused[1], fused[2]], label=label)
            x = _apply_act(g, after, x, out, label)
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            ph, pw = layer.pool_size
            sh, sw = layer.strides
            hw = shape[1:3] if cl else shape[2:4]
            t, b, left, r = resolve_padding(layer.padding, hw, (ph, pw), (sh, sw))
            ints = [ph, pw, sh, sw, 1, 1, t, b, left, r, 0, layout]
            if isinstance(layer, L.MaxPooling2D):
                x = g.op(OP_MAXPOOL, [x], out, 0, ints, label=label)
            else:
                x = g.op(OP_AVGPOOL, [x], out, 0, ints + [0], label=label)
        elif isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
            code = OP_GAVGPOOL if isinstance(layer, L.GlobalAveragePooling2D) else OP_GMAXPOOL
            x = g.op(code, [x], out, 0, [layout], label=label)
        elif isinstance(layer, L.BatchNormalization):
            a, s = _bn_affine(layer)
            axis = layer._axis % len(shape)
            x = g.op(OP_AFFINE, [x, g.const(a, lambda l=layer: _bn_affine(l)[0]),
                                 g.const(s, lambda l=layer: _bn_affine(l)[1])], out, 0, [axis], label=label)
        elif isinstance(layer, L.Dropout):
            x = g.alias(x, out, 0)
        elif isinstance(layer, L.Flatten):
            if not cl and len(shape) > 2:
                perm = [0] + list(range(2, len(shape))) + [1]
                x = g.op(OP_TRANSPOSE, [x], tuple(shape[p] for p in perm), 0, perm, label=label + " to channels_last")
            x = g.alias(x, out, 0)
        elif isinstance(layer, L.Reshape):
            x = g.alias(x, out, 0)
        elif isinstance(layer, L.ZeroPadding2D):
            t, b, left, r = layer.padding
            ah, aw = layer._spatial()
            lo, hi = [0] * 4, [0] * 4
            lo[ah], hi[ah], lo[aw], hi[aw] = t, b, left, r
            x = g.op(OP_PAD, [x], out, 0, [PAD_CONSTANT] + lo + hi, [0.0], label=label)
        elif isinstance(layer, L.Softmax):
            axis = layer.axis % len(shape)
            if any(d != 1 for d in shape[axis + 1:]):
                problems.append(f"{label}: Softmax over axis {layer.axis}, not the last one")
                break
            x = g.op(OP_SOFTMAX, [x], out, 0, [axis, 0], label=label)
        elif hasattr(layer, "act"):  # Activation, ReLU, LeakyReLU, ELU
            if layer.act is None:
                problems.append(f"{label}: {type(layer).__name__} with a threshold (no C activation for it)")
                break
            x = _apply_act(g, layer.act, x, out, label)
        else:
            problems.append(f"{label}: layer type {type(layer).__name__}")
            break
        shape = out
    if problems:
        raise BundleError("cannot bundle this model: unsupported " + "; ".join(problems) +
                          ". Export it to ONNX and bundle the .onnx file if InferenceSession runs it.")
    g.set_outputs([(output_name, x)])
    g.fuse_conv_pools()
    g.prune()
    return g


# ---- ONNX -----------------------------------------------------------------------------------------

def _trace(sess, feeds):
    """Run the session's plan once, recording every value's (shape, dtype)."""
    info = {n: (a.shape, a.dtype) for n, a in feeds.items()}
    for name, arr in sess._output_consts.items():
        info[name] = (arr.shape, arr.dtype)
    sess._execute(dict(feeds), range(len(sess._plan)), seen=info)
    return info


def _pattern(name, traces, batches):
    """(dims at batch 1, batch axis) of a value from its traced shapes."""
    shapes = [t[name][0] for t in traces]
    if len(shapes) == 1:
        return tuple(shapes[0]), -1
    s1, s3 = shapes
    if len(s1) != len(s3):
        raise BundleError(f"value {name!r}: its rank changes with the batch size ({s1} vs {s3})")
    bdim = -1
    dims = []
    for i, (a, b) in enumerate(zip(s1, s3)):
        if a == b:
            dims.append(a)
        elif a > 0 and b == a * batches[1]:
            if bdim >= 0:
                raise BundleError(f"value {name!r}: more than one axis grows with the batch size ({s1} vs {s3})")
            bdim = i
            dims.append(a)
        else:
            raise BundleError(f"value {name!r}: a dimension is not proportional to the batch size ({s1} at "
                              f"batch 1, {s3} at batch {batches[1]})")
    return tuple(dims), bdim


def _transposed(g, x, dims, bdim, perm, label):
    """A transpose op of x (dims/bdim its pattern) by perm; returns (value, dims, bdim)."""
    out = tuple(dims[p] for p in perm)
    ob = perm.index(bdim) if bdim >= 0 else -1
    return g.op(OP_TRANSPOSE, [x], out, ob, list(perm), label=label), out, ob


def _matmul_operands(g, info, a_id, a_dims, a_bdim, b_const, val, traces, batches):
    """MatMul operands as the C matmul/dense ops take them: a 1-D A [K] becomes a [1, K] view and a 1-D B
    [K] a [K, 1] view (NumPy matmul semantics; the product then has that axis of size 1, dropped by a view
    afterwards). Returns (a_dims, a_bdim, a_id, b_const, b_id or None, (product dims, batch axis) or None
    when no operand is 1-D)."""
    b_dims, b_bdim = (b_const.shape, -1) if b_const is not None else _pattern(info.inputs[1], traces, batches)
    b_id = None
    if len(a_dims) >= 2 and len(b_dims) >= 2:
        _check_matmul_batch(a_dims, a_bdim, b_dims, b_bdim)
        return a_dims, a_bdim, a_id, b_const, None, None
    if (len(a_dims) == 1 and a_bdim >= 0) or (len(b_dims) == 1 and b_bdim >= 0):
        raise BundleError("a 1-D operand whose length grows with the batch size")
    if len(a_dims) == 1:
        a_dims = (1,) + tuple(a_dims)
        a_id = g.alias(a_id, a_dims, -1)
    if len(b_dims) == 1:
        b_dims = tuple(b_dims) + (1,)
        if b_const is not None:
            b_const = b_const.reshape(b_dims)
        else:
            b_id = g.alias(val(info, 1), b_dims, -1)
    _check_matmul_batch(a_dims, a_bdim, b_dims, b_bdim)
    tmp = f"\0matmul{id(info)}"
    for t in traces:
        sa, sb = t[info.inputs[0]][0], (b_const.shape if b_const is not None else t[info.inputs[1]][0])
        sa = (1,) + tuple(sa) if len(sa) == 1 else tuple(sa)
        sb = tuple(sb) + (1,) if len(sb) == 1 else tuple(sb)
        t[tmp] = (np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1]), F32)
    return a_dims, a_bdim, a_id, b_const, b_id, _pattern(tmp, traces, batches)


def _scalar_view(g, info, i, val, traces, batches, what):
    """Input i of a node (one element, the same at every batch size) as a rank-0 value."""
    c = info.const(i)
    d, b = (c.shape, -1) if c is not None else _pattern(info.inputs[i], traces, batches)
    if b >= 0 or int(np.prod(d)) != 1:
        raise BundleError(f"{what} {info.inputs[i]!r} of shape {list(d)}{' (batched)' if b >= 0 else ''} "
                          f"is not a scalar")
    v = val(info, i, what)
    return v if len(d) == 0 else g.alias(v, (), -1)


def _runtime_bn(g, info, channels, eps, val, traces, batches):
    """(scale, shift) values [C] of a BatchNormalization whose parameters are computed at run time."""
    ps = []
    for i, what in ((1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")):
        c = info.const(i)
        d, b = (c.shape, -1) if c is not None else _pattern(info.inputs[i], traces, batches)
        if b >= 0 or int(np.prod(d)) != channels:
            raise BundleError(f"{what} {info.inputs[i]!r} of shape {list(d)}{' (batched)' if b >= 0 else ''}: "
                              f"needs {channels} values, the same at every batch size")
        v = val(info, i, what)
        ps.append(v if tuple(d) == (channels,) else g.alias(v, (channels,), -1))
    scale, bias, mean, var = ps
    c = (channels,)
    t = g.op(OP_BINARY, [var, g.const(np.array(eps, F32))], c, -1, [BIN_ADD], label=info.name + " var + eps")
    t = g.op(OP_UNARY, [t], c, -1, [UN_SQRT], label=info.name + " sqrt")
    a = g.op(OP_BINARY, [scale, t], c, -1, [BIN_DIV], label=info.name + " scale")
    t = g.op(OP_BINARY, [mean, a], c, -1, [BIN_MUL], label=info.name + " mean * scale")
    return a, g.op(OP_BINARY, [bias, t], c, -1, [BIN_SUB], label=info.name + " shift")


def _check_matmul_batch(a_dims, a_bdim, b_dims, b_bdim):
    """The leading (batch) dims of the operands broadcast at every batch size: a batch axis of one meets
    a 1 or the batch axis of the other."""
    la, lb = len(a_dims) - 2, len(b_dims) - 2
    r = max(la, lb)
    for i in range(r):
        ia, ib = i - (r - la), i - (r - lb)
        a_b, b_b = ia >= 0 and ia == a_bdim, ib >= 0 and ib == b_bdim
        da, db = (a_dims[ia] if ia >= 0 else 1), (b_dims[ib] if ib >= 0 else 1)
        if (a_b and not b_b and db != 1) or (b_b and not a_b and da != 1):
            raise BundleError(f"the batch axis of one operand meets a dimension of the other that does not "
                              f"grow with the batch size (A {list(a_dims)}, B {list(b_dims)})")


def from_onnx(src):
    """The bundle graph of an ONNX model (path, bytes or ModelProto) that cnnc's InferenceSession runs."""
    from ..onnx.runtime import InferenceSession

    sess = InferenceSession(src)
    if not sess._inputs:
        raise BundleError("the model has no inputs: the C runtime runs models of at least one float32 input "
                          "(a model without inputs computes constants)")
    batched = {}  # input name -> its first dimension is the (symbolic) batch size
    for name, elem, shape in sess._inputs:
        if elem != 1:
            raise BundleError(f"input {name!r} is not float32: the C runtime takes float32 inputs only")
        if shape is None or any(not isinstance(d, int) for d in shape[1:]):
            raise BundleError(f"input {name!r} has shape {shape}: only the first (batch) dimension may be "
                              f"symbolic")
        batched[name] = bool(shape) and not isinstance(shape[0], int)
    # dynamic: some input has a symbolic batch dimension (inputs with static shapes, e.g. a scalar
    # parameter, keep them); otherwise every shape is fixed
    dynamic = any(batched.values())
    rng = np.random.default_rng(0)
    batches = (1, 3) if dynamic else (None,)
    traces = []
    for b in batches:
        feeds = {}
        for name, elem, shape in sess._inputs:
            dims = [b if (i == 0 and not isinstance(d, int)) else d for i, d in enumerate(shape)]
            feeds[name] = rng.standard_normal(dims).astype(F32)
        try:
            traces.append(_trace(sess, feeds))
        except (ValueError, TypeError, IndexError) as exc:
            raise BundleError(f"running the model at batch size {b or 'fixed'} to find its shapes failed: "
                              f"{exc}") from None
    fixed = 0
    if not dynamic:
        first = sess._inputs[0][2]
        fixed = first[0] if first else 1
        if fixed < 1:
            raise BundleError(f"input {sess._inputs[0][0]!r} has a batch dimension of {fixed}")
    return _lower_session(sess, traces, batches, batched, fixed, copy_consts=True)


def for_session(sess, trace):
    """The fixed-shape graph of an InferenceSession for the shapes of one run (trace: value name ->
    (shape, dtype) of that run). Constants are the session's own arrays (not copied), so the graph is
    meant to run with external constants while the session lives."""
    for name, elem, _ in sess._inputs:
        if elem != 1:
            raise BundleError(f"input {name!r} is not float32: the C runtime takes float32 inputs only")
    if not sess._inputs:
        raise BundleError("the model has no inputs")
    return _lower_session(sess, [trace], (None,), {name: False for name, _, _ in sess._inputs}, 1,
                          copy_consts=False)


def _lower_session(sess, traces, batches, batched, fixed, copy_consts):
    """The graph of sess's plan: traces are its value shapes at the given batch sizes (None: fixed shapes)."""
    from ..onnx._ops import _legacy_b, _pads_2d
    from ..onnx.runtime import _clip_bounds

    g = Graph(fixed_batch=fixed, copy_consts=copy_consts)
    ids = {}
    for name, _, _ in sess._inputs:
        dims, bdim = _pattern(name, traces, batches)
        ids[name] = g.input(name, dims, 0 if batched[name] else -1)
        if batched[name] and bdim != 0:
            raise BundleError(f"input {name!r}: the batch must be its first dimension")

    problems = []

    def is_float(name):
        return traces[0][name][1] == F32

    def val(info, i, what="input"):
        name = info.inputs[i]
        if name in ids:
            return ids[name]
        c = info.consts.get(name)
        if c is not None:
            if c.dtype != F32:
                raise BundleError(f"node {info.name!r} ({info.op_type}): {what} {name!r} is {c.dtype}, not float32")
            ids[name] = g.const(c)
            return ids[name]
        raise BundleError(f"node {info.name!r} ({info.op_type}): {what} {name!r} is computed by an op the C "
                          f"runtime does not run")

    def const(info, i):
        return info.const(i) if info.has_input(i) else None

    for step in sess._plan:
        info = step.info
        op = info.op_type
        out = info.outputs[0] if info.outputs else ""
        if not out or not is_float(out):
            continue  # shape arithmetic (Shape, Gather, Cast to int...): dead once shapes are fixed
        # further outputs (Dropout's mask...) are not computed: a graph output among them is refused below
        try:
            dims, bdim = _pattern(out, traces, batches)
            xdims = _pattern(info.inputs[0], traces, batches)[0] if info.inputs and info.inputs[0] else None
            if op == "Conv":
                w = const(info, 1)
                if w is not None and "conv_w" in info.prepared_arrays:  # as the session's kernel runs it
                    w, b = info.prepared_arrays["conv_w"], info.prepared_arrays["conv_b"]
                    w_id, b_id, ks = g.const(w), (g.const(b) if b is not None else -1), w.shape[2:]
                elif w is not None:
                    w = np.asarray(w, F32)
                    b = const(info, 2)
                    b = None if b is None else np.asarray(b, F32).reshape(-1)
                    if info.fold_scale is not None:
                        scale, shift = info.fold_scale
                        w = (w * scale.reshape(-1, 1, 1, 1)).astype(F32)
                        b = (shift if b is None else b * scale + shift).astype(F32)
                    w_id, b_id, ks = g.const(w), (g.const(b) if b is not None else -1), w.shape[2:]
                else:  # weights computed at run time (the bias may be too)
                    w_id, b_id = val(info, 1), (val(info, 2) if info.has_input(2) else -1)
                    ks = _pattern(info.inputs[1], traces, batches)[0][2:]
                strides = tuple(info.attr("strides") or (1, 1))
                dil = tuple(info.attr("dilations") or (1, 1))
                (t, bo), (le, r) = _pads_2d(info, xdims[2:], ks, strides, dil)
                act = {None: NONE_ACT, "relu": (K["relu"], 0.0, 0.0), "relu6": (K["clip"], 0.0, 6.0)}[info.fused_act]
                ids[out] = g.op(OP_CONV, [val(info, 0), w_id, b_id], dims, bdim,
                                [strides[0], strides[1], dil[0], dil[1], t, bo, le, r, int(info.attr("group", 1)),
                                 act[0], NCHW], [act[1], act[2]], label=info.name)
            elif op in ("MaxPool", "AveragePool"):
                ks = tuple(int(k) for k in info.attr("kernel_shape"))
                strides = tuple(info.attr("strides") or (1, 1))
                dil = tuple(info.attr("dilations") or (1, 1))
                (t, bo), (le, r) = _pads_2d(info, xdims[2:], ks, strides, dil)
                ints = [ks[0], ks[1], strides[0], strides[1], dil[0], dil[1], t, bo, le, r,
                        int(info.attr("ceil_mode", 0)), NCHW]
                if op == "MaxPool":
                    ids[out] = g.op(OP_MAXPOOL, [val(info, 0)], dims, bdim, ints, label=info.name)
                else:
                    ids[out] = g.op(OP_AVGPOOL, [val(info, 0)], dims, bdim,
                                    ints + [int(info.attr("count_include_pad", 0))], label=info.name)
            elif op in ("GlobalAveragePool", "GlobalMaxPool"):
                if len(xdims) != 4:
                    raise BundleError("only 4-D inputs")
                ids[out] = g.op(OP_GAVGPOOL if op == "GlobalAveragePool" else OP_GMAXPOOL, [val(info, 0)], dims,
                                bdim, [NCHW], label=info.name)
            elif op in ("Gemm", "MatMul"):
                a_id = val(info, 0)
                a_dims, a_bdim = _pattern(info.inputs[0], traces, batches)
                b_const = const(info, 1)
                b_id = None  # the value of B when it is not folded into a dense op (made when needed)
                out_id = None  # MatMul with a 1-D operand: the product [..., M|1, N|1], viewed as the output
                if op == "Gemm":
                    if len(a_dims) != 2:
                        raise BundleError("A must be 2-D")
                    alpha, beta = float(info.attr("alpha", 1.0)), float(info.attr("beta", 1.0))
                    ta, tb = bool(info.attr("transA", 0)), bool(info.attr("transB", 0))
                else:
                    alpha, beta, ta, tb = 1.0, 1.0, False, False
                    a_dims, a_bdim, a_id, b_const, b_id, mm = _matmul_operands(
                        g, info, a_id, a_dims, a_bdim, b_const, val, traces, batches)
                    if mm is not None:  # a 1-D operand: compute the product, then view it as the output
                        out_id, dims, bdim = out, *mm
                if ta:
                    a_id, a_dims, a_bdim = _transposed(g, a_id, a_dims, a_bdim, [1, 0], info.name + " A^T")
                n_out = dims[-1]
                bias, after = None, None  # bias: [N] folded into dense; after: a value added to the product
                if op == "Gemm" and info.has_input(2):
                    c = const(info, 2)
                    if (c is not None and c.dtype == F32 and c.size in (1, n_out) and c.ndim <= 2
                            and (c.ndim < 2 or c.shape[0] == 1)):
                        bias = np.broadcast_to(np.asarray(c, F32).reshape(-1), (n_out,)) * F32(beta)
                    elif c is not None:
                        after = g.const(np.asarray(c, F32) * F32(beta))
                    else:
                        after = val(info, 2)
                        if beta != 1.0:
                            cd, cb = _pattern(info.inputs[2], traces, batches)
                            after = g.op(OP_BINARY, [after, g.const(np.array(beta, F32))], cd, cb, [BIN_MUL],
                                         label=info.name + " beta*C")
                relu = info.fused_act == "relu"
                if b_const is not None and b_const.dtype == F32 and b_const.ndim == 2:
                    if op == "Gemm" and "gemm_b" in info.prepared_arrays:  # the session's op(B), shared
                        w = info.prepared_arrays["gemm_b"]
                    else:
                        w = np.asarray(b_const.T if tb else b_const, F32)
                    if alpha != 1.0:
                        w = (w * F32(alpha)).astype(F32)
                    act = (K["relu"], 0.0, 0.0) if relu and after is None else NONE_ACT
                    y = g.op(OP_DENSE, [a_id, g.const(w), g.const(bias) if bias is not None else -1], dims, bdim,
                             [act[0]], [act[1], act[2]], label=info.name)
                    relu = relu and after is not None
                else:
                    if b_id is None:
                        b_id = val(info, 1)
                    if tb:
                        bd, bb = _pattern(info.inputs[1], traces, batches)
                        b_id = _transposed(g, b_id, bd, bb, [1, 0], info.name + " B^T")[0]
                    y = g.op(OP_MATMUL, [a_id, b_id], dims, bdim, label=info.name)
                    if alpha != 1.0:
                        y = g.op(OP_BINARY, [y, g.const(np.array(alpha, F32))], dims, bdim, [BIN_MUL],
                                 label=info.name + " alpha")
                    if bias is not None:
                        after = g.const(bias)
                if after is not None:
                    y = g.op(OP_BINARY, [y, after], dims, bdim, [BIN_ADD], label=info.name + " + C")
                if relu:
                    y = g.op(OP_ACT, [y], dims, bdim, [K["relu"]], [0.0, 0.0], label=info.name + " relu")
                if out_id is not None:  # drop the axes of the 1-D operands
                    y = g.alias(y, *_pattern(out_id, traces, batches))
                ids[out] = y
            elif op == "Gather":
                idx = const(info, 1)
                if idx is None or idx.dtype.kind not in "iu":
                    raise BundleError("the indices must be constant integers")
                axis = int(info.attr("axis", 0)) % len(xdims)
                if axis == _pattern(info.inputs[0], traces, batches)[1]:
                    raise BundleError("gathering along the batch axis")
                n = xdims[axis]
                if any(not -n <= int(i) < n for i in idx.reshape(-1)):
                    raise BundleError("an index is out of range")
                ids[out] = g.op(OP_GATHER, [val(info, 0)], dims, bdim, [axis] + [int(i) % n for i in idx.reshape(-1)],
                                label=info.name)
            elif op in ("Add", "Sub", "Mul", "Div"):
                kind = {"Add": BIN_ADD, "Sub": BIN_SUB, "Mul": BIN_MUL, "Div": BIN_DIV}[op]
                a_id = val(info, 0)
                if info.opset < 7 and info.attr("broadcast", 0):
                    bc = const(info, 1)
                    if bc is None:
                        raise BundleError("legacy broadcasting needs a constant B")
                    b_id = g.const(_legacy_b(info, np.empty(traces[0][info.inputs[0]][0], F32), bc))
                else:
                    b_id = val(info, 1)
                ids[out] = g.op(OP_BINARY, [a_id, b_id], dims, bdim, [kind], label=info.name)
            elif op == "Sum":
                acc = val(info, 0)
                acc_shape = [traces[i][info.inputs[0]][0] for i in range(len(traces))]
                for j in range(1, len(info.inputs)):
                    acc_shape = [np.broadcast_shapes(s, traces[i][info.inputs[j]][0]) for i, s in enumerate(acc_shape)]
                    if j == len(info.inputs) - 1:
                        d, bd = dims, bdim
                    else:
                        tmp = f"\0sum{id(info)}_{j}"
                        for i, t in enumerate(traces):
                            t[tmp] = (acc_shape[i], F32)
                        d, bd = _pattern(tmp, traces, batches)
                    acc = g.op(OP_BINARY, [acc, val(info, j)], d, bd, [BIN_ADD], label=info.name)
                ids[out] = acc
            elif op in ("Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
                        "Clip"):
                if op == "Relu":
                    a = (K["relu"], 0.0, 0.0)
                elif op == "LeakyRelu":
                    a = (K["leaky_relu"], float(info.attr("alpha", 0.01)), 0.0)
                elif op == "Elu":
                    a = (K["elu"], float(info.attr("alpha", 1.0)), 0.0)
                elif op == "Selu":
                    alpha = float(info.attr("alpha", 1.67326319217681884765625))
                    gamma = float(info.attr("gamma", 1.05070102214813232421875))
                    if F32(alpha) == F32(1.67326319217681884765625) and F32(gamma) == F32(1.05070102214813232421875):
                        a = (K["selu"], 0.0, 0.0)
                    else:  # gamma * elu_alpha(x)
                        e = g.op(OP_ACT, [val(info, 0)], dims, bdim, [K["elu"]], [alpha, 0.0], label=info.name + " elu")
                        ids[out] = g.op(OP_BINARY, [e, g.const(np.array(gamma, F32))], dims, bdim, [BIN_MUL],
                                        label=info.name + " gamma")
                        continue
                elif op == "Sigmoid":
                    a = (K["sigmoid"], 0.0, 0.0)
                elif op == "Tanh":
                    a = (K["tanh"], 0.0, 0.0)
                elif op == "HardSigmoid":
                    a = (K["hard_sigmoid"], float(info.attr("alpha", 0.2)), float(info.attr("beta", 0.5)))
                elif op == "HardSwish":
                    a = (K["hard_swish"], 0.0, 0.0)
                else:
                    if info.opset >= 11 and any(info.has_input(i) and not info.is_const(i) for i in (1, 2)):
                        # bounds computed at run time: max(x, min) then min(., max); an absent bound is
                        # the float32 extreme (ONNX's default: infinities become +-FLT_MAX)
                        y = val(info, 0)
                        for i, kind, what, dflt in ((1, BIN_MAX, "min", -FLT_MAX), (2, BIN_MIN, "max", FLT_MAX)):
                            bound = (_scalar_view(g, info, i, val, traces, batches, what) if info.has_input(i)
                                     else g.const(np.array(dflt, F32)))
                            y = g.op(OP_BINARY, [y, bound], dims, bdim, [kind], label=f"{info.name} {what}")
                        ids[out] = y
                        continue
                    lo, hi = _clip_bounds(info, info.consts)
                    lo = -FLT_MAX if lo is None else max(float(lo), -FLT_MAX)
                    hi = FLT_MAX if hi is None else min(float(hi), FLT_MAX)
                    if lo > hi:
                        raise BundleError(f"min {lo} > max {hi}")
                    a = (K["clip"], lo, hi)
                ids[out] = g.op(OP_ACT, [val(info, 0)], dims, bdim, [a[0]], [a[1], a[2]], label=info.name)
            elif op == "PRelu":
                slope = const(info, 1)
                if info.opset < 7:
                    if slope is None:
                        raise BundleError("PRelu-6 needs a constant slope")
                    if slope.size == 1:
                        slope = slope.reshape(())
                    elif len(xdims) >= 2 and slope.shape == (xdims[1],):
                        slope = slope.reshape((-1,) + (1,) * (len(xdims) - 2))
                    s_id = g.const(slope)
                else:
                    s_id = val(info, 1)
                ids[out] = g.op(OP_BINARY, [val(info, 0), s_id], dims, bdim, [BIN_PRELU], label=info.name)
            elif op in ("Softmax", "LogSoftmax"):
                r = len(xdims)
                axis = int(info.attr("axis", -1 if info.opset >= 13 else 1))
                axis = axis % r if r else 0
                log = int(op == "LogSoftmax")
                if info.opset >= 13 and any(d != 1 for d in xdims[axis + 1:]):
                    if axis == bdim:
                        raise BundleError("softmax over the batch axis")
                    # over one inner axis: move it last, normalise, move it back
                    perm = [i for i in range(r) if i != axis] + [axis]
                    t, td, tb = _transposed(g, val(info, 0), xdims, bdim, perm, info.name + " axis last")
                    t = g.op(OP_SOFTMAX, [t], td, tb, [r - 1, log], label=info.name)
                    inv = [perm.index(i) for i in range(r)]
                    ids[out] = _transposed(g, t, td, tb, inv, info.name + " axis back")[0]
                else:
                    if bdim >= axis and bdim >= 0:
                        raise BundleError("the softmax rows would span the batch axis")
                    ids[out] = g.op(OP_SOFTMAX, [val(info, 0)], dims, bdim, [axis, log], label=info.name)
            elif op == "BatchNormalization":
                ps = [const(info, i) for i in range(1, 5)]
                if len(xdims) < 2:
                    raise BundleError(f"X {list(xdims)}: needs a 2-D or larger input")
                eps = float(info.attr("epsilon", 1e-5))
                if all(p is not None for p in ps):
                    a, s = bn_scale_shift(*[np.asarray(p, F32).reshape(-1) for p in ps], eps)
                    a_id, s_id = g.const(a), g.const(s)
                else:  # parameters computed at run time: a = scale / sqrt(var + eps), s = B - mean * a
                    a_id, s_id = _runtime_bn(g, info, xdims[1], eps, val, traces, batches)
                ids[out] = g.op(OP_AFFINE, [val(info, 0), a_id, s_id], dims, bdim, [1], label=info.name)
            elif op in ("Dropout", "Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Cast"):
                ids[out] = g.alias(val(info, 0), dims, bdim)
            elif op == "Transpose":
                perm = info.attr("perm")
                perm = list(perm) if perm is not None else list(range(len(xdims)))[::-1]
                ids[out] = g.op(OP_TRANSPOSE, [val(info, 0)], dims, bdim, perm, label=info.name)
            elif op == "Concat":
                axis = int(info.attr("axis")) % len(dims)
                ins = [val(info, i) for i in range(len(info.inputs)) if info.inputs[i]]
                ids[out] = g.op(OP_CONCAT, ins, dims, bdim, [axis], label=info.name)
            elif op == "Pad":
                r = len(xdims)
                mode = {"constant": PAD_CONSTANT, "reflect": PAD_REFLECT, "edge": PAD_EDGE}.get(
                    info.attr("mode", "constant"))
                if mode is None:
                    raise BundleError(f"mode {info.attr('mode')!r}")
                if info.opset < 11:
                    pads = [int(v) for v in info.attr("pads")]
                    value = float(info.attr("value", 0.0))
                else:
                    pc, vc, ac = const(info, 1), const(info, 2), const(info, 3)
                    if pc is None or (info.has_input(2) and vc is None) or (info.has_input(3) and ac is None):
                        raise BundleError("pads, value and axes must be constant")
                    pads = [int(v) for v in pc.reshape(-1)]
                    value = 0.0 if vc is None or vc.size == 0 else float(vc.reshape(-1)[0])
                    if ac is not None:
                        axes = [int(a) % r for a in ac.reshape(-1)]
                        full = [0] * (2 * r)
                        for i, a in enumerate(axes):
                            full[a], full[a + r] = pads[i], pads[i + len(axes)]
                        pads = full
                if len(pads) != 2 * r or min(pads) < 0:
                    raise BundleError(f"pads {pads}: only non-negative pads")
                ids[out] = g.op(OP_PAD, [val(info, 0)], dims, bdim, [mode] + pads, [value], label=info.name)
            elif op == "LRN":
                ids[out] = g.op(OP_LRN, [val(info, 0)], dims, bdim, [int(info.attr("size"))],
                                [float(info.attr("alpha", 1e-4)), float(info.attr("beta", 0.75)),
                                 float(info.attr("bias", 1.0))], label=info.name)
            else:
                raise BundleError("no C runtime kernel for this op")
        except BundleError as exc:
            problems.append(f"node {info.name!r} ({op}): {exc}")
    outputs = []
    producer = {o: step.info for step in sess._plan for o in step.info.outputs if o}
    for name in sess._output_names:
        traced = traces[0].get(name)
        dtype = np.dtype(traced[1]) if traced is not None else F32
        if dtype != F32:
            src = producer.get(name)
            src = (f"output {src.outputs.index(name)} of node {src.name!r} ({src.op_type})" if src is not None
                   else "a constant")
            problems.append(f"output {name!r} is {dtype} ({src}): the C runtime computes float32 tensors only")
        elif name in sess._output_consts:
            outputs.append((name, g.const(sess._output_consts[name])))
        elif name not in ids:
            if not any(name in p for p in problems):
                problems.append(f"output {name!r} is computed by an op the C runtime does not run")
        else:
            outputs.append((name, ids[name]))
    if problems:
        raise BundleError("cannot bundle this ONNX model for the C runtime:\n  " + "\n  ".join(problems))
    g.set_outputs(outputs)
    g.fuse_residual_adds()
    g.prune()
    return g
