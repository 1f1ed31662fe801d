"""ONNX op kernels for cnnc.onnx.InferenceSession.

Each supported op has
  * a checker  `_check_<op>(attrs, opset, node) -> list of reasons` (used by find_unsupported, before
    anything runs; `attrs` are plain Python values), and
  * a maker    `make(node) -> kernel`, called once at load with a `NodeInfo` that knows the constant
    inputs; the kernel is `kernel(*inputs) -> tuple of outputs` (absent optional inputs are None).

Heavy float32 work (Conv, pools, Gemm/MatMul 2-D, activations, BatchNormalization, softmax) runs on
cnnc's C core through cnnc.nn in NCHW; everything else is NumPy. Kernels never modify their inputs.
"""
import math

import numpy as np

from .. import nn

F32 = np.dtype(np.float32)
FLT_MAX = float(np.finfo(np.float32).max)
# Largest tensor a shape op (ConstantOfShape, Expand-like growth) may create: 2**31 elements.
MAX_ELEMENTS = 2**31

# ONNX TensorProto.DataType -> (numpy dtype, ORT type name). Only these types can flow.
ONNX_DTYPES = {
    1: (np.dtype(np.float32), "float"),
    2: (np.dtype(np.uint8), "uint8"),
    3: (np.dtype(np.int8), "int8"),
    4: (np.dtype(np.uint16), "uint16"),
    5: (np.dtype(np.int16), "int16"),
    6: (np.dtype(np.int32), "int32"),
    7: (np.dtype(np.int64), "int64"),
    9: (np.dtype(np.bool_), "bool"),
    10: (np.dtype(np.float16), "float16"),
    11: (np.dtype(np.float64), "double"),
    12: (np.dtype(np.uint32), "uint32"),
    13: (np.dtype(np.uint64), "uint64"),
}
ONNX_TYPE_NAMES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                   8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64",
                   14: "complex64", 15: "complex128", 16: "bfloat16"}
NP_TO_ONNX = {v[0]: k for k, v in ONNX_DTYPES.items()}


def type_name(elem_type):
    return ONNX_TYPE_NAMES.get(elem_type, f"type#{elem_type}")


class NodeInfo:
    """What a kernel maker needs to know about one node."""

    def __init__(self, name, op_type, opset, attrs, inputs, outputs, consts):
        self.name = name
        self.op_type = op_type
        self.opset = opset
        self.attrs = attrs
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.consts = consts          # value name -> ndarray, for the constant inputs
        self.fused_act = None         # 'relu' / 'relu6' set by the runtime's fusion pass
        self.fold_scale = None        # BatchNormalization folded into a Conv: (scale, shift)
        self.prepared_arrays = {}     # weights a kernel prepared (folded, transposed), shared with lowering

    def has_input(self, i):
        return i < len(self.inputs) and self.inputs[i] != ""

    def const(self, i):
        """The constant value of input i, or None (absent or computed at run time)."""
        if not self.has_input(i):
            return None
        return self.consts.get(self.inputs[i])

    def is_const(self, i):
        return self.has_input(i) and self.inputs[i] in self.consts

    def attr(self, name, default=None):
        return self.attrs.get(name, default)


def _err(node, msg):
    return ValueError(f"node {node.name!r} ({node.op_type}): {msg}")


def _f32(x):
    return x.dtype == F32 and x.ndim > 0


def _back(y, dtype):
    return y if y.dtype == dtype else y.astype(dtype)


def _arr(y):
    return y if isinstance(y, np.ndarray) else np.asarray(y)


# ---- attribute checks shared by several ops ------------------------------------------------------

def _check_2d_window(attrs, node, what="kernel_shape", required=False):
    reasons = []
    ks = attrs.get("kernel_shape")
    if ks is None and required:
        reasons.append("the required attribute 'kernel_shape' is missing")
    if ks is not None and (len(ks) != 2 or min(ks) < 1):
        reasons.append(f"{what}={list(ks)}: only 2-D windows (4-D tensors) are supported")
    for key in ("strides", "dilations"):
        v = attrs.get(key)
        if v is not None and (len(v) != 2 or min(v) < 1):
            reasons.append(f"{key}={list(v)}: need 2 positive values (2-D only)")
    p = attrs.get("pads")
    if p is not None and (len(p) != 4 or min(p) < 0):
        reasons.append(f"pads={list(p)}: need 4 non-negative values (2-D only)")
    ap = attrs.get("auto_pad", "NOTSET")
    if ap not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        reasons.append(f"auto_pad={ap!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    return reasons


def _pads_2d(node, in_hw, kernel, strides, dilations):
    """-> ((top, bottom), (left, right)) for the ONNX pads / auto_pad attributes."""
    ap = node.attr("auto_pad", "NOTSET")
    if ap == "VALID":
        return ((0, 0), (0, 0))
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            o = -(-size // s)
            total = max((o - 1) * s + d * (k - 1) + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if ap == "SAME_UPPER" else (big, small))
        return tuple(out)
    p = node.attr("pads") or [0, 0, 0, 0]
    return ((int(p[0]), int(p[2])), (int(p[1]), int(p[3])))


def _check_4d(node, x, what="X"):
    if x.ndim != 4:
        raise _err(node, f"input {what} must be 4-D [N, C, H, W] (only 2-D spatial ops are "
                         f"supported), received shape {x.shape}")


# ---- Conv ----------------------------------------------------------------------------------------

def _check_conv(attrs, opset, node):
    return _check_2d_window(attrs, node)


def make_conv(node):
    strides = tuple(node.attr("strides") or (1, 1))
    dil = tuple(node.attr("dilations") or (1, 1))
    group = int(node.attr("group", 1))
    w_const, b_const = node.const(1), node.const(2)
    w_prep = b_prep = None
    if w_const is not None:
        if w_const.ndim != 4:
            raise _err(node, f"weight W must be 4-D [M, C/group, kH, kW] (2-D convolution only), "
                             f"received shape {w_const.shape}")
        w_prep = np.ascontiguousarray(w_const, dtype=F32)
    if b_const is not None:
        b_prep = np.ascontiguousarray(b_const, dtype=F32).reshape(-1)
    if node.fold_scale is not None and w_prep is not None:
        scale, shift = node.fold_scale
        w_prep = np.ascontiguousarray(w_prep * scale.reshape(-1, 1, 1, 1), dtype=F32)
        b_prep = (shift if b_prep is None else (b_prep * scale + shift)).astype(F32)
    act = node.fused_act
    pad_cache = {}
    node.prepared = {i for i, v in ((1, w_prep), (2, b_prep)) if v is not None and node.is_const(i)}
    if w_prep is not None:  # W (and B) as the conv runs them: BN folded in
        node.prepared_arrays = {"conv_w": w_prep, "conv_b": b_prep}

    def conv(x, w=None, b=None):
        _check_4d(node, x)
        ww = w_prep if w_prep is not None else w
        bb = b_prep if (b_prep is not None or b is None) else b
        if ww.ndim != 4:
            raise _err(node, f"weight W must be 4-D, received shape {ww.shape}")
        ks = node.attr("kernel_shape")
        if ks is not None and tuple(ks) != tuple(ww.shape[2:]):
            raise _err(node, f"kernel_shape {list(ks)} does not match the weight shape {ww.shape}")
        hw = x.shape[2:]
        pads = pad_cache.get(hw)
        if pads is None:
            pads = pad_cache[hw] = _pads_2d(node, hw, ww.shape[2:], strides, dil)
        y = nn.conv2d(x, ww, bb, strides=strides, padding=pads, dilations=dil, groups=group,
                      data_format="NCHW", activation=act)
        return (_back(y, x.dtype),)

    return conv


# ---- pooling -------------------------------------------------------------------------------------

def _check_maxpool(attrs, opset, node):
    reasons = _check_2d_window(attrs, node, required=True)
    if attrs.get("storage_order", 0) != 0:
        reasons.append(f"storage_order={attrs['storage_order']}: only 0 (row major) is supported")
    if len(node.output) > 1 and node.output[1]:
        reasons.append("the Indices output is not supported")
    return reasons


def _check_avgpool(attrs, opset, node):
    reasons = _check_2d_window(attrs, node, required=True)
    d = attrs.get("dilations")
    if d is not None and any(v != 1 for v in d):
        reasons.append(f"dilations={list(d)}: AveragePool supports dilations 1 only")
    return reasons


def _make_pool(node, kind):
    ks = tuple(int(k) for k in node.attr("kernel_shape"))
    strides = tuple(node.attr("strides") or (1, 1))
    dil = tuple(node.attr("dilations") or (1, 1))
    ceil = bool(node.attr("ceil_mode", 0))
    cip = bool(node.attr("count_include_pad", 0))
    pad_cache = {}

    def pool(x):
        _check_4d(node, x)
        hw = x.shape[2:]
        pads = pad_cache.get(hw)
        if pads is None:
            pads = pad_cache[hw] = _pads_2d(node, hw, ks, strides, dil)
        if kind == "max":
            y = nn.max_pool2d(x, ks, strides, padding=pads, data_format="NCHW", dilations=dil,
                              ceil_mode=ceil)
        else:
            y = nn.avg_pool2d(x, ks, strides, padding=pads, data_format="NCHW", ceil_mode=ceil,
                              count_include_pad=cip)
        return (_back(y, x.dtype),)

    return pool


def make_maxpool(node):
    return _make_pool(node, "max")


def make_avgpool(node):
    return _make_pool(node, "avg")


def _make_global(node, kind):
    def gpool(x):
        if x.ndim < 3:
            raise _err(node, f"input must be at least 3-D [N, C, ...], received shape {x.shape}")
        if x.ndim == 4 and x.size:
            f = nn.global_avg_pool2d if kind == "avg" else nn.global_max_pool2d
            return (_back(f(x, data_format="NCHW", keepdims=True), x.dtype),)
        axes = tuple(range(2, x.ndim))
        y = x.mean(axis=axes, keepdims=True) if kind == "avg" else x.max(axis=axes, keepdims=True)
        return (_arr(y).astype(x.dtype, copy=False),)
    return gpool


def make_globalavgpool(node):
    return _make_global(node, "avg")


def make_globalmaxpool(node):
    return _make_global(node, "max")


# ---- Gemm / MatMul -------------------------------------------------------------------------------

def _check_gemm6_c(node, a, b, c, ta, tb):
    """Gemm-6: C must be (M, N) when broadcast=0; broadcast=1 broadcasts C to (M, N) (NumPy rules,
    one way: the unidirectional broadcasting Gemm-7 kept when it dropped the attribute)."""
    if a.ndim != 2 or b.ndim != 2:
        return  # the kernel reports it
    mn = (a.shape[1] if ta else a.shape[0], b.shape[0] if tb else b.shape[1])
    if node.attr("broadcast", 0):
        try:
            ok = np.broadcast_shapes(c.shape, mn) == mn
        except ValueError:
            ok = False
        if not ok:
            raise _err(node, f"broadcast=1: C {c.shape} cannot be broadcast to (M, N) = {mn}")
    elif c.shape != mn:
        raise _err(node, f"broadcast=0 (opset {node.opset}): C must have the shape (M, N) = {mn}, "
                         f"received {c.shape} (set broadcast=1 to broadcast C)")


def _check_gemm(attrs, opset, node):
    b = attrs.get("broadcast", 0)
    return [] if b in (0, 1) else [f"broadcast={b}: must be 0 or 1"]


def make_gemm(node):
    legacy = node.opset < 7
    ta, tb = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    act = node.fused_act
    b_const, c_const = node.const(1), node.const(2)
    b_prep = None  # [K, N] float32 C-contiguous, ready for nn.dense / nn.matmul
    if b_const is not None and b_const.dtype == F32:
        if b_const.ndim != 2:
            raise _err(node, f"B must be 2-D, received shape {b_const.shape}")
        b_prep = np.ascontiguousarray(b_const.T if tb else b_const)
    c_vec = c_full = None
    if c_const is not None and c_const.dtype == F32:
        c_scaled = (c_const * np.float32(beta)).astype(F32) if beta != 1.0 else c_const
        if c_const.ndim == 1 or (c_const.ndim == 2 and c_const.shape[0] == 1):
            c_vec = np.ascontiguousarray(c_scaled.reshape(-1))
        else:
            c_full = c_scaled
    node.prepared = set()
    if b_prep is not None:
        node.prepared.add(1)
        node.prepared_arrays = {"gemm_b": b_prep}  # op(B) as [K, N]
    if c_vec is not None or c_full is not None:
        node.prepared.add(2)

    def gemm(a, b, c=None):
        if b is None:
            b = b_const
        if c is None and node.is_const(2):
            c = c_const
        if legacy and c is not None:
            _check_gemm6_c(node, a, b, c, ta, tb)
        if a.ndim != 2:
            raise _err(node, f"A must be 2-D, received shape {a.shape}")
        if b_prep is not None and a.dtype == F32:
            n_out = b_prep.shape[1]
            const_c = c_vec is not None or c_full is not None
            if (not ta and alpha == 1.0 and a.size and (c_vec is not None and c_vec.shape[0] == n_out
                                                       or c is None)):
                return (nn.dense(a, b_prep, c_vec, activation=act),)
            y = nn.matmul(a, b_prep, transpose_a=ta)
            if alpha != 1.0:
                y *= np.float32(alpha)
            if const_c:
                y = y + (c_vec if c_vec is not None else c_full)
            elif c is not None:
                y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
        else:
            if b.ndim != 2:
                raise _err(node, f"B must be 2-D, received shape {b.shape}")
            aa, bb = (a.T if ta else a), (b.T if tb else b)
            if aa.shape[1] != bb.shape[0]:
                raise _err(node, f"inner dimensions differ: A {a.shape} (transA={int(ta)}) and "
                                 f"B {b.shape} (transB={int(tb)})")
            if a.dtype == F32 and b.dtype == F32 and a.size and b.size:
                y = nn.matmul(a, b, transpose_a=ta, transpose_b=tb)
            else:
                y = _arr(np.matmul(aa, bb))
            if alpha != 1.0:
                y = y * y.dtype.type(alpha)
            if c is not None:
                y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
        if act is not None:
            y = _ACT_NUMPY[act](y)
        return (_back(y, a.dtype),)

    return gemm


def make_matmul(node):
    def matmul(a, b):
        if (a.dtype == F32 and b.dtype == F32 and b.ndim == 2 and a.ndim >= 2 and a.size and b.size
                and a.shape[-1] == b.shape[0]):
            y = nn.matmul(a.reshape(-1, a.shape[-1]), b)
            return (y.reshape(a.shape[:-1] + (b.shape[1],)),)
        try:
            return (_arr(np.matmul(a, b)),)
        except ValueError as exc:
            raise _err(node, f"shapes {a.shape} and {b.shape} cannot be multiplied: {exc}") from None
    return matmul


# ---- elementwise ---------------------------------------------------------------------------------

def _broadcast_error(node, arrays):
    return _err(node, "input shapes " + ", ".join(str(a.shape) for a in arrays) +
                " cannot be broadcast together")


def _legacy_b(node, a, b):
    """Add/Sub/Mul/Div before opset 7: B reshaped for ONNX's legacy ('limited') broadcasting.

    broadcast=0: B must have A's shape. broadcast=1: B of one element (any rank <= A's) is a scalar;
    otherwise B's dims are aligned with A's dims starting at `axis` (suffix matching when `axis` is
    absent) and B is padded with 1s to A's rank; B's dims in that window must equal A's or be 1 (the
    PyTorch-exported reference data expands size-1 dims), and the result always has A's shape."""
    if not node.attr("broadcast", 0):
        if a.shape != b.shape:
            raise _err(node, f"broadcast=0 (opset {node.opset}): B must have the shape of A {a.shape}, "
                             f"received {b.shape} (set broadcast=1 for legacy broadcasting)")
        return b
    if b.ndim > a.ndim:
        raise _err(node, f"broadcast=1: B of rank {b.ndim} {b.shape} cannot be broadcast to A of rank "
                         f"{a.ndim} {a.shape}")
    if b.size == 1:
        return b.reshape(())
    axis = node.attr("axis")
    ax = a.ndim - b.ndim if axis is None else int(axis)
    if not 0 <= ax <= a.ndim - b.ndim:
        raise _err(node, f"broadcast=1, axis={axis}: B {b.shape} does not fit in A {a.shape} at that "
                         f"axis")
    window = a.shape[ax:ax + b.ndim]
    if any(db not in (1, da) for da, db in zip(window, b.shape)):
        raise _err(node, f"broadcast=1: B {b.shape} does not match A's dims {window} starting at axis "
                         f"{ax} (A {a.shape})")
    return b.reshape((1,) * ax + b.shape + (1,) * (a.ndim - ax - b.ndim))


def _check_legacy_broadcast(attrs, opset, node):
    reasons = []
    if attrs.get("broadcast", 0) not in (0, 1):
        reasons.append(f"broadcast={attrs['broadcast']}: must be 0 or 1")
    if "axis" in attrs and attrs["axis"] < 0:
        reasons.append(f"axis={attrs['axis']}: a negative axis is not defined for legacy (opset < 7) "
                       f"broadcasting")
    return reasons


def _binary(fn):
    def maker(node):
        legacy = node.opset < 7

        def kernel(a, b):
            if legacy:
                b = _legacy_b(node, a, b)
            try:
                return (_arr(fn(a, b)),)
            except ValueError:
                raise _broadcast_error(node, (a, b)) from None
        return kernel
    return maker


def _div(a, b):
    if a.dtype.kind in "iu":
        if a.dtype.kind == "u":
            return np.floor_divide(a, b)
        q = np.floor_divide(np.abs(a), np.abs(b))
        return np.where((a < 0) != (b < 0), -q, q).astype(a.dtype)
    return np.divide(a, b)


make_add = _binary(np.add)
make_sub = _binary(np.subtract)
make_mul = _binary(np.multiply)
make_div = _binary(_div)


def make_sum(node):
    same_shape = node.opset < 8  # Sum-6 (opsets 6 and 7): no broadcasting

    def total(*xs):
        if same_shape and any(x.shape != xs[0].shape for x in xs[1:]):
            raise _err(node, f"Sum-6 (opset {node.opset}) needs inputs of one shape (no broadcasting "
                             f"before opset 8), received " + ", ".join(str(x.shape) for x in xs))
        y = xs[0]
        try:
            for x in xs[1:]:
                y = np.add(y, x)
        except ValueError:
            raise _broadcast_error(node, xs) from None
        return (_arr(y),)
    return total


# ---- activations ---------------------------------------------------------------------------------

def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_ACT_NUMPY = {
    "relu": lambda x: np.maximum(x, x.dtype.type(0)),
    "relu6": lambda x: np.clip(x, 0, 6).astype(x.dtype),
}


def _unary(nn_fn, np_fn):
    """A float activation: cnnc's C core for float32, NumPy (keeping the dtype) otherwise."""
    def kernel(x):
        if _f32(x):
            return (nn_fn(x),)
        return (_arr(np_fn(x)).astype(x.dtype, copy=False),)
    return kernel


def make_relu(node):
    return _unary(nn.relu, _ACT_NUMPY["relu"])


def make_leakyrelu(node):
    alpha = float(node.attr("alpha", 0.01))
    return _unary(lambda x: nn.leaky_relu(x, alpha), lambda x: np.where(x >= 0, x, x * alpha))


def make_elu(node):
    alpha = float(node.attr("alpha", 1.0))
    return _unary(lambda x: nn.elu(x, alpha), lambda x: np.where(x > 0, x, alpha * np.expm1(x)))


_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


def make_selu(node):
    alpha = float(node.attr("alpha", _SELU_ALPHA))
    gamma = float(node.attr("gamma", _SELU_GAMMA))

    def np_selu(x):
        return gamma * np.where(x > 0, x, alpha * np.expm1(x))
    if np.float32(alpha) == np.float32(_SELU_ALPHA) and np.float32(gamma) == np.float32(_SELU_GAMMA):
        return _unary(nn.selu, np_selu)
    return _unary(lambda x: np_selu(x).astype(F32), np_selu)


def make_sigmoid(node):
    return _unary(nn.sigmoid, _np_sigmoid)


def make_tanh(node):
    return _unary(nn.tanh, np.tanh)


def make_hardsigmoid(node):
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    return _unary(lambda x: nn.hard_sigmoid(x, alpha, beta),
                  lambda x: np.clip(alpha * x + beta, 0, 1))


def make_hardswish(node):
    return _unary(nn.hard_swish, lambda x: x * np.clip(x / 6 + 0.5, 0, 1))


def make_prelu(node):
    legacy = node.opset < 7

    def prelu(x, slope):
        if legacy:  # PRelu-6: a slope of one element is shared; a 1-D slope of C values is per channel
            if slope.size == 1:
                slope = slope.reshape(())
            elif x.ndim >= 2 and slope.shape == (x.shape[1],):
                slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
            elif slope.shape != x.shape:
                raise _err(node, f"PRelu-6 needs a slope of one element, of shape (C,) = "
                                 f"({x.shape[1] if x.ndim >= 2 else '?'},) or of X's shape {x.shape}; "
                                 f"received {slope.shape}")
        try:
            np.broadcast_shapes(slope.shape, x.shape)
        except ValueError:
            raise _broadcast_error(node, (x, slope)) from None
        return (_arr(np.where(x < 0, x * slope, x)).astype(x.dtype, copy=False),)
    return prelu


def _scalar(v, node, what):
    if v is None:
        return None
    if v.size != 1:
        raise _err(node, f"{what} must be a scalar, received shape {v.shape}")
    return v.reshape(()).item()


def make_clip(node):
    def clip(x, lo=None, hi=None):
        if node.opset < 11:
            lo_v, hi_v = node.attr("min", -FLT_MAX), node.attr("max", FLT_MAX)
        else:
            lo_v, hi_v = _scalar(lo, node, "min"), _scalar(hi, node, "max")
        if _f32(x) and (lo_v is None or math.isfinite(lo_v)) and (hi_v is None or math.isfinite(hi_v)):
            lo32 = -FLT_MAX if lo_v is None else float(lo_v)
            hi32 = FLT_MAX if hi_v is None else float(hi_v)
            if lo32 <= hi32:
                return (nn.clip(x, lo32, hi32),)
        y = x
        if lo_v is not None:
            y = np.maximum(y, x.dtype.type(lo_v))
        if hi_v is not None:
            y = np.minimum(y, x.dtype.type(hi_v))
        return (_arr(y).astype(x.dtype, copy=False) if y is not x else x,)
    return clip


def _make_softmax(node, log):
    new = node.opset >= 13
    axis = int(node.attr("axis", -1 if new else 1))
    f = nn.log_softmax if log else nn.softmax

    def np_softmax(x, ax):
        m = x.max(axis=ax, keepdims=True)
        e = x - m
        s = np.exp(e).sum(axis=ax, keepdims=True)
        return e - np.log(s) if log else np.exp(e) / s

    def softmax(x):
        r = x.ndim
        if not -r <= axis < max(r, 1):
            raise _err(node, f"axis {axis} is out of range for an input of rank {r}")
        ax = axis % r if r else 0
        if x.size == 0 or r == 0:
            return (_arr(np_softmax(x, ax if r else None)) if r else np.zeros_like(x) if log
                    else np.ones_like(x),)
        if new:
            if _f32(x):
                return (f(x, axis=ax),)
            return (np_softmax(x, ax).astype(x.dtype),)
        x2 = x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)
        y = f(x2, axis=-1) if _f32(x) else np_softmax(x2, 1).astype(x.dtype)
        return (y.reshape(x.shape),)
    return softmax


def make_softmax(node):
    return _make_softmax(node, False)


def make_logsoftmax(node):
    return _make_softmax(node, True)


def _check_softmax(attrs, opset, node):
    return []


# ---- normalization -------------------------------------------------------------------------------

def _check_bn(attrs, opset, node):
    reasons = []
    if opset < 7 and attrs.get("is_test", 0) != 1:
        reasons.append(f"is_test={attrs.get('is_test', 0)}{' (the default)' if 'is_test' not in attrs else ''}: "
                       f"BatchNormalization-6 then runs in training mode (batch statistics); only "
                       f"is_test=1 (inference) is supported")
    if opset < 9 and attrs.get("spatial", 1) != 1:
        reasons.append(f"spatial={attrs['spatial']}: only spatial=1 is supported")
    if attrs.get("training_mode", 0) != 0:
        reasons.append(f"training_mode={attrs['training_mode']}: only inference is supported")
    extra = [o for o in node.output[1:] if o]
    if extra:
        reasons.append(f"the training outputs {extra} are not supported (inference only)")
    return reasons


def bn_scale_shift(scale, bias, mean, var, eps):
    """Per-channel (a, b) with BN(x) = a * x + b, computed in float64 then rounded."""
    a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    b = bias.astype(np.float64) - mean.astype(np.float64) * a
    return a.astype(F32), b.astype(F32)


def make_batchnorm(node):
    eps = float(node.attr("epsilon", 1e-5))
    params = [node.const(i) for i in range(1, 5)]
    prep = None
    if all(p is not None for p in params):
        prep = [np.ascontiguousarray(p, dtype=F32).reshape(-1) for p in params]
        node.prepared = {1, 2, 3, 4}

    def bn(x, scale, bias, mean, var):
        if x.ndim < 2:
            raise _err(node, f"X must be at least 2-D [N, C, ...], received shape {x.shape}")
        c = x.shape[1]
        ps = prep if prep is not None else [p.reshape(-1) for p in (scale, bias, mean, var)]
        for nm, p in zip(("scale", "B", "input_mean", "input_var"), ps):
            if p.shape != (c,):
                raise _err(node, f"{nm} must have shape ({c},) for X of shape {x.shape}, "
                                 f"received {p.shape}")
        if _f32(x) and x.ndim in (2, 4) and x.size:
            return (nn.batch_norm(x, *ps, epsilon=eps, data_format="NCHW"),)
        shape = (1, c) + (1,) * (x.ndim - 2)
        s, m, v, b = (p.astype(x.dtype).reshape(shape) for p in (ps[0], ps[2], ps[3], ps[1]))
        return (_arr((x - m) / np.sqrt(v + x.dtype.type(eps)) * s + b).astype(x.dtype, copy=False),)
    return bn


def make_lrn(node):
    size = int(node.attr("size"))
    alpha, beta, bias = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)), \
        float(node.attr("bias", 1.0))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2

    def lrn(x):
        if x.ndim < 3:
            raise _err(node, f"X must be at least 3-D [N, C, ...], received shape {x.shape}")
        c = x.shape[1]
        sq = np.square(x)
        pad = [(0, 0)] * x.ndim
        pad[1] = (lo, hi)
        sq = np.pad(sq, pad)
        s = sq[:, 0:c].copy()
        for i in range(1, size):
            s += sq[:, i:i + c]
        y = x / (x.dtype.type(bias) + x.dtype.type(alpha / size) * s) ** x.dtype.type(beta)
        return (_arr(y).astype(x.dtype, copy=False),)
    return lrn


def _check_lrn(attrs, opset, node):
    if "size" not in attrs:
        return ["the required attribute 'size' is missing"]
    if attrs["size"] < 1:
        return [f"size={attrs['size']} must be >= 1"]
    return []


def _check_dropout(attrs, opset, node):
    if opset < 7 and attrs.get("is_test", 0) != 1:
        return [f"is_test={attrs.get('is_test', 0)}{' (the default)' if 'is_test' not in attrs else ''}: "
                f"Dropout-6 then drops values at random (training mode); only is_test=1 (inference, "
                f"Y = X) is supported"]
    return []


def make_dropout(node):
    mask_dtype = np.dtype(np.bool_) if node.opset >= 10 else None

    def dropout(x, ratio=None, training_mode=None):
        if training_mode is not None and training_mode.size and bool(training_mode.reshape(-1)[0]):
            raise _err(node, "training_mode=True is not supported (inference only)")
        if len(node.outputs) > 1 and node.outputs[1]:
            return x, np.ones(x.shape, dtype=mask_dtype or x.dtype)
        return (x,)
    return dropout


# ---- shape ops -----------------------------------------------------------------------------------

def make_identity(node):
    return lambda x: (x,)


def _axis(node, axis, rank, what="axis", extra=0):
    r = rank + extra
    if not -r <= axis < max(r, 1):
        raise _err(node, f"{what} {axis} is out of range for rank {rank}")
    return axis % r if r else 0


def make_flatten(node):
    axis0 = int(node.attr("axis", 1))

    def flatten(x):
        r = x.ndim
        if not -r <= axis0 <= r:
            raise _err(node, f"axis {axis0} is out of range for an input of rank {r}")
        ax = axis0 % r if axis0 < 0 else axis0
        outer = int(np.prod(x.shape[:ax], dtype=np.int64))
        inner = int(np.prod(x.shape[ax:], dtype=np.int64))
        return (x.reshape(outer, inner),)
    return flatten


def make_reshape(node):
    allowzero = bool(node.attr("allowzero", 0))

    def reshape(x, shape):
        if shape.ndim != 1 or shape.dtype.kind not in "iu":
            raise _err(node, f"the shape input must be a 1-D int64 tensor, received {shape.dtype} "
                             f"{shape.shape}")
        target = [int(v) for v in shape]
        for i, d in enumerate(target):
            if d == 0 and not allowzero:
                if i >= x.ndim:
                    raise _err(node, f"shape {target} copies dimension {i} (0) but the input has "
                                     f"rank {x.ndim}")
                target[i] = x.shape[i]
            elif d < -1:
                raise _err(node, f"invalid shape {target}")
        if target.count(-1) > 1:
            raise _err(node, f"shape {target} has more than one -1")
        try:
            return (x.reshape(target),)
        except ValueError:
            raise _err(node, f"cannot reshape an input of shape {x.shape} ({x.size} elements) to "
                             f"{[int(v) for v in shape]}") from None
    return reshape


def make_transpose(node):
    perm = node.attr("perm")

    def transpose(x):
        p = tuple(perm) if perm is not None else tuple(range(x.ndim))[::-1]
        if sorted(p) != list(range(x.ndim)):
            raise _err(node, f"perm {list(p)} is not a permutation of the {x.ndim} axes of shape "
                             f"{x.shape}")
        return (np.transpose(x, p),)
    return transpose


def make_concat(node):
    axis = node.attr("axis")

    def concat(*xs):
        xs = [x for x in xs if x is not None]
        r = xs[0].ndim
        ax = _axis(node, int(axis), r)
        try:
            return (np.concatenate(xs, axis=ax),)
        except ValueError:
            raise _err(node, f"cannot concatenate shapes {[x.shape for x in xs]} along axis "
                             f"{axis}") from None
    return concat


def _check_concat(attrs, opset, node):
    return [] if "axis" in attrs else ["the required attribute 'axis' is missing"]


def _axes_from(node, axes_input):
    if node.opset < 13:
        a = node.attr("axes")
        return None if a is None else [int(v) for v in a]
    if axes_input is None:
        return None
    return [int(v) for v in axes_input.reshape(-1)]


def make_squeeze(node):
    def squeeze(x, axes_in=None):
        axes = _axes_from(node, axes_in)
        if axes is None:
            return (x.reshape([d for d in x.shape if d != 1]),)
        norm = sorted({_axis(node, a, x.ndim, "axes") for a in axes})
        for a in norm:
            if x.shape[a] != 1:
                raise _err(node, f"cannot squeeze axis {a} of size {x.shape[a]} (shape {x.shape})")
        return (np.squeeze(x, axis=tuple(norm)),)
    return squeeze


def make_unsqueeze(node):
    def unsqueeze(x, axes_in=None):
        axes = _axes_from(node, axes_in)
        if axes is None:
            raise _err(node, "the axes are missing")
        r = x.ndim + len(axes)
        norm = [_axis(node, a, x.ndim, "axes", extra=len(axes)) for a in axes]
        if len(set(norm)) != len(norm):
            raise _err(node, f"axes {axes} repeat an axis")
        shape = list(x.shape)
        for a in sorted(norm):
            shape.insert(a, 1)
        assert len(shape) == r
        return (x.reshape(shape),)
    return unsqueeze


def _check_pad(attrs, opset, node):
    mode = attrs.get("mode", "constant")
    modes = ("constant", "reflect", "edge") + (("wrap",) if opset >= 19 else ())
    if mode not in modes:
        return [f"mode={mode!r} is not one of {', '.join(modes)}"]
    return []


def make_pad(node):
    mode = node.attr("mode", "constant")

    def pad(x, pads_in=None, value_in=None, axes_in=None):
        r = x.ndim
        if node.opset < 11:
            pads = [int(v) for v in node.attr("pads")]
            value = float(node.attr("value", 0.0))
        else:
            pads = [int(v) for v in pads_in.reshape(-1)]
            value = 0 if value_in is None or value_in.size == 0 else value_in.reshape(-1)[0].item()
        if axes_in is not None:
            axes = [_axis(node, int(a), r, "axes") for a in axes_in.reshape(-1)]
            if len(pads) != 2 * len(axes):
                raise _err(node, f"pads {pads} must have 2 values per axis in {axes}")
            full = [0] * (2 * r)
            for i, a in enumerate(axes):
                full[a], full[a + r] = pads[i], pads[i + len(axes)]
            pads = full
        if len(pads) != 2 * r:
            raise _err(node, f"pads {pads} must have {2 * r} values for an input of rank {r}")
        begins, ends = pads[:r], pads[r:]
        crop = tuple(slice(-b if b < 0 else 0, (d + e) if e < 0 else None)
                     for b, e, d in zip(begins, ends, x.shape))
        y = x[crop]
        if any(s < 0 for s in y.shape) or any(b + e + d < 0 for b, e, d in zip(begins, ends, x.shape)):
            raise _err(node, f"negative pads {pads} remove more than the input shape {x.shape}")
        widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
        total = 1
        for d, (b, e) in zip(y.shape, widths):
            total *= d + b + e
        if total > MAX_ELEMENTS:
            raise _err(node, f"the padded output would have {total} elements")
        if mode == "constant":
            out = np.pad(y, widths, mode="constant", constant_values=np.array(value).astype(x.dtype))
        else:
            for (b, e), d in zip(widths, y.shape):
                if (b or e) and d == 0:
                    raise _err(node, f"cannot pad an empty axis in mode {mode!r}")
                if mode == "reflect" and (b or e) and d == 1:
                    raise _err(node, "reflect padding needs at least 2 elements along a padded axis")
            out = np.pad(y, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
        return (out,)
    return pad


def make_constant(node):
    value = constant_value(node)
    return lambda: (value,)


def constant_value(node):
    a = node.attrs
    if "value" in a:
        return a["value"]
    if "value_float" in a:
        return np.array(a["value_float"], dtype=F32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=F32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    raise _err(node, "no value attribute")


def _check_constant(attrs, opset, node):
    keys = [k for k in attrs if k.startswith("value") or k == "sparse_value"]
    bad = [k for k in keys if k in ("value_string", "value_strings", "sparse_value")]
    if bad:
        return [f"attribute {bad[0]!r} is not supported"]
    if len(keys) != 1:
        return [f"exactly one value attribute is required, received {keys}"]
    v = attrs[keys[0]]
    if keys[0] == "value" and not isinstance(v, np.ndarray):
        return [f"value: {v}"]
    return []


def _check_constantofshape(attrs, opset, node):
    v = attrs.get("value")
    if v is not None and not isinstance(v, np.ndarray):
        return [f"value: {v}"]
    if v is not None and v.size != 1:
        return [f"value must hold one element, received shape {v.shape}"]
    return []


def make_constantofshape(node):
    v = node.attr("value")
    fill = np.zeros((), F32) if v is None else v.reshape(())

    def cos(shape):
        if shape.ndim != 1 or shape.dtype.kind not in "iu":
            raise _err(node, f"the shape input must be a 1-D int64 tensor, received {shape.dtype} "
                             f"{shape.shape}")
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise _err(node, f"negative dimension in shape {dims}")
        total = 1
        for d in dims:
            total *= d
        if total > MAX_ELEMENTS:
            raise _err(node, f"shape {dims} has {total} elements, more than the {MAX_ELEMENTS} allowed")
        return (np.full(dims, fill, dtype=fill.dtype),)
    return cos


def make_shape(node):
    start, end = node.attr("start", 0), node.attr("end")

    def shape(x):
        return (np.array(x.shape[start:end], dtype=np.int64),)
    return shape


def make_gather(node):
    axis = int(node.attr("axis", 0))

    def gather(x, idx):
        if idx.dtype.kind not in "iu":
            raise _err(node, f"indices must be int32/int64, received {idx.dtype}")
        ax = _axis(node, axis, x.ndim)
        n = x.shape[ax]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise _err(node, f"indices out of range [{-n}, {n - 1}] for axis {ax} of shape {x.shape}")
        i = np.where(idx < 0, idx + n, idx) if idx.size else idx.astype(np.int64)
        return (_arr(np.take(x, i, axis=ax)),)
    return gather


def _check_cast(attrs, opset, node):
    to = attrs.get("to")
    if to is None:
        return ["the required attribute 'to' is missing"]
    if to not in ONNX_DTYPES:
        return [f"to={type_name(to)}: casting to this type is not supported"]
    if attrs.get("saturate", 1) != 1:
        return []  # only meaningful for float8 targets, which are rejected above
    return []


def make_cast(node):
    dt = ONNX_DTYPES[int(node.attr("to"))][0]

    def cast(x):
        if x.dtype == dt:
            return (x,)
        with np.errstate(all="ignore"):
            return (x.astype(dt),)
    return cast


# ---- the op table --------------------------------------------------------------------------------

def _no_check(attrs, opset, node):
    return []


def _check_clip(attrs, opset, node):
    return []


# op -> (min_opset, max_opset, maker, checker)
OPS = {
    "Conv": (6, 28, make_conv, _check_conv),
    "MaxPool": (6, 28, make_maxpool, _check_maxpool),
    "AveragePool": (6, 28, make_avgpool, _check_avgpool),
    "GlobalAveragePool": (6, 28, make_globalavgpool, _no_check),
    "GlobalMaxPool": (6, 28, make_globalmaxpool, _no_check),
    "Gemm": (6, 28, make_gemm, _check_gemm),
    "MatMul": (6, 28, make_matmul, _no_check),
    "Add": (6, 28, make_add, _check_legacy_broadcast),
    "Sub": (6, 28, make_sub, _check_legacy_broadcast),
    "Mul": (6, 28, make_mul, _check_legacy_broadcast),
    "Div": (6, 28, make_div, _check_legacy_broadcast),
    "Sum": (6, 28, make_sum, _no_check),
    "Relu": (6, 28, make_relu, _no_check),
    "LeakyRelu": (6, 28, make_leakyrelu, _no_check),
    "PRelu": (6, 28, make_prelu, _no_check),
    "Elu": (6, 28, make_elu, _no_check),
    "Selu": (6, 28, make_selu, _no_check),
    "Sigmoid": (6, 28, make_sigmoid, _no_check),
    "Tanh": (6, 28, make_tanh, _no_check),
    "HardSigmoid": (6, 28, make_hardsigmoid, _no_check),
    "HardSwish": (14, 28, make_hardswish, _no_check),
    "Clip": (6, 28, make_clip, _check_clip),
    "Softmax": (6, 28, make_softmax, _check_softmax),
    "LogSoftmax": (6, 28, make_logsoftmax, _check_softmax),
    "BatchNormalization": (6, 28, make_batchnorm, _check_bn),
    "Dropout": (6, 28, make_dropout, _check_dropout),
    "Identity": (6, 28, make_identity, _no_check),
    "Flatten": (6, 28, make_flatten, _no_check),
    "Reshape": (6, 28, make_reshape, _no_check),
    "Transpose": (6, 28, make_transpose, _no_check),
    "Concat": (6, 28, make_concat, _check_concat),
    "Squeeze": (6, 28, make_squeeze, _no_check),
    "Unsqueeze": (6, 28, make_unsqueeze, _no_check),
    "Pad": (6, 28, make_pad, _check_pad),
    "LRN": (6, 28, make_lrn, _check_lrn),
    "Constant": (6, 28, make_constant, _check_constant),
    "ConstantOfShape": (9, 28, make_constantofshape, _check_constantofshape),
    "Shape": (6, 28, make_shape, _no_check),
    "Gather": (6, 28, make_gather, _no_check),
    "Cast": (6, 28, make_cast, _check_cast),
}

SUPPORTED_OPS = {op: (lo, hi) for op, (lo, hi, _, _) in OPS.items()}
