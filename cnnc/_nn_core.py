"""Functional ops on the C core: matmul, dense, bias_add, conv2d, im2col and activations.

Every function validates and converts its inputs (any real dtype -> float32, any strides ->
C-contiguous), then calls the C core with the GIL released.
"""
import numpy as np

from . import _alloc, _core
from ._checks import (as_float32, as_int, as_layout, as_pair, check_nonempty, check_shape, check_total,
                      resolve_padding, window_output)

__all__ = [
    "matmul", "dense", "dense_grad", "bias_add", "bias_add_grad", "conv2d", "conv2d_grad", "conv2d_algorithm",
    "conv2d_max_pool",
    "im2col",
    "relu", "relu_grad", "leaky_relu", "leaky_relu_grad", "elu", "elu_grad", "selu", "selu_grad",
    "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "hard_sigmoid", "hard_sigmoid_grad", "hard_swish",
    "hard_swish_grad", "relu6", "relu6_grad", "clip", "clip_grad", "softmax", "softmax_grad",
    "log_softmax", "log_softmax_grad", "activation_names",
]

_K = _core.ACT_KINDS
# name -> (C kind, alpha, beta) with the defaults of tf.nn / Keras / ONNX
_ACTIVATIONS = {
    "linear": (_K["none"], 0.0, 0.0),
    "relu": (_K["relu"], 0.0, 0.0),
    "leaky_relu": (_K["leaky_relu"], 0.2, 0.0),
    "elu": (_K["elu"], 1.0, 0.0),
    "selu": (_K["selu"], 0.0, 0.0),
    "sigmoid": (_K["sigmoid"], 0.0, 0.0),
    "tanh": (_K["tanh"], 0.0, 0.0),
    "hard_sigmoid": (_K["hard_sigmoid"], 0.2, 0.5),
    "hard_swish": (_K["hard_swish"], 0.0, 0.0),
    "relu6": (_K["clip"], 0.0, 6.0),
}


def activation_names():
    """Names accepted by the `activation=` argument of dense, conv2d and bias_add."""
    return sorted(_ACTIVATIONS) + ["softmax"]


def _activation(activation, softmax_ok):
    """-> ((kind, alpha, beta), apply_softmax)"""
    if activation is None:
        return _ACTIVATIONS["linear"], False
    if isinstance(activation, str):
        name = activation.lower()
        if name == "softmax":
            if not softmax_ok:
                raise ValueError("activation='softmax' needs the channels on the last axis (NHWC or 2-D)")
            return _ACTIVATIONS["linear"], True
        if name in _ACTIVATIONS:
            return _ACTIVATIONS[name], False
    raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(activation_names())} or None")


def _softmax_last_axis(y):
    cols = y.shape[-1]
    out = _alloc.empty_like(y)
    _core.softmax_forward(y, out, y.size // cols, cols, False)
    return out


# ---- GEMM / dense ------------------------------------------------------------------------------

def _matrix(a, name):
    """-> (C-contiguous float32 storage, transposed?) without copying F-ordered float32 input."""
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, received shape {arr.shape}")
    if arr.dtype == np.float32 and not arr.flags.c_contiguous and arr.T.flags.c_contiguous:
        return arr.T, True
    return as_float32(arr, name, ndim=2), False


def matmul(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) for 2-D arrays, computed in float32 by cnnc's GEMM."""
    sa, ta = _matrix(a, "a")
    sb, tb = _matrix(b, "b")
    ta ^= bool(transpose_a)
    tb ^= bool(transpose_b)
    m, k = (sa.shape[1], sa.shape[0]) if ta else sa.shape
    kb, n = (sb.shape[1], sb.shape[0]) if tb else sb.shape
    if k != kb:
        raise ValueError(f"matmul: inner dimensions differ: op(a) is {m}x{k} and op(b) is {kb}x{n} "
                         f"(a {np.shape(a)}, b {np.shape(b)}, transpose_a={transpose_a}, "
                         f"transpose_b={transpose_b})")
    c = _alloc.empty((m, n), dtype=np.float32)
    if c.size == 0:
        return c
    if k == 0:
        c.fill(0.0)
        return c
    _core.gemm(sa, sb, c, ta, tb, m, n, k, sa.shape[1], sb.shape[1], n, 1.0, 0.0)
    return c


def _dense_args(x, w):
    x = as_float32(x, "x", min_ndim=2)
    w = as_float32(w, "w", ndim=2)
    check_nonempty(x, "x")
    check_nonempty(w, "w")
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"dense: x has {x.shape[-1]} features (shape {x.shape}) but w expects "
                         f"{w.shape[0]} (shape {w.shape})")
    return x, w


def dense(x, w, b=None, activation=None):
    """act(x @ w + b) on the last axis of x; w is [in, units] (the Keras layout)."""
    x, w = _dense_args(x, w)
    k, n = w.shape
    if b is not None:
        b = as_float32(b, "b", ndim=1)
        check_shape(b, (n,), "b")
    (kind, alpha, beta), softmax_after = _activation(activation, softmax_ok=True)
    y = _alloc.empty(x.shape[:-1] + (n,), dtype=np.float32)
    _core.dense_forward(x, w, b, y, x.size // k, k, n, kind, alpha, beta)
    return _softmax_last_axis(y) if softmax_after else y


def dense_grad(x, w, dy, need_dx=True):
    """(dx, dw, db) of y = x @ w + b (dx is None when need_dx is False)."""
    x, w = _dense_args(x, w)
    k, n = w.shape
    dy = as_float32(dy, "dy")
    check_shape(dy, x.shape[:-1] + (n,), "dy")
    dx = _alloc.empty_like(x) if need_dx else None
    dw, db = _alloc.empty_like(w), _alloc.empty(n, dtype=np.float32)
    _core.dense_backward(x, w, dy, dx, dw, db, x.size // k, k, n)
    return dx, dw, db


def _channel_view(x, layout):
    """-> (n, c, plane) with plane == 1 when channels are last."""
    if x.ndim == 4 and layout == "NCHW":
        return x.shape[0], x.shape[1], x.shape[2] * x.shape[3]
    return x.size // x.shape[-1], x.shape[-1], 1


def bias_add(x, b, activation=None, data_format="NHWC"):
    """act(x + b) with b broadcast along the channel axis (last, or axis 1 for 4-D NCHW)."""
    layout = as_layout(data_format)
    x = as_float32(x, "x", min_ndim=2)
    check_nonempty(x, "x")
    n, c, plane = _channel_view(x, layout)
    if b is not None:
        b = as_float32(b, "b", ndim=1)
        check_shape(b, (c,), "b")
    (kind, alpha, beta), softmax_after = _activation(activation, softmax_ok=plane == 1)
    y = x.copy()
    _core.bias_act(y, b, n, c, plane, kind, alpha, beta)
    return _softmax_last_axis(y) if softmax_after else y


def bias_add_grad(dy, data_format="NHWC"):
    """db: dy summed over every axis but the channel axis."""
    layout = as_layout(data_format)
    dy = as_float32(dy, "dy", min_ndim=2)
    check_nonempty(dy, "dy")
    n, c, plane = _channel_view(dy, layout)
    db = _alloc.empty(c, dtype=np.float32)
    _core.bias_grad(dy, db, n, c, plane)
    return db


# ---- convolution -------------------------------------------------------------------------------

def _window(x_shape, kernel_hw, strides, padding, dilations, layout, what, kname):
    """-> (win tuple for the C core, (oh, ow))"""
    if layout == "NHWC":
        n, h, w, c = x_shape
    else:
        n, c, h, w = x_shape
    kh, kw = kernel_hw
    sh, sw = as_pair(strides, "strides", 1)
    dh, dw = as_pair(dilations, "dilations", 1)
    pt, pb, pl, pr = resolve_padding(padding, (h, w), (dh * (kh - 1) + 1, dw * (kw - 1) + 1), (sh, sw))
    oh = window_output(h, kh, sh, dh, pt, pb, f"{what} (height)", kname=kname)
    ow = window_output(w, kw, sw, dw, pl, pr, f"{what} (width)", kname=kname)
    layout_id = 0 if layout == "NHWC" else 1
    return (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, layout_id), (oh, ow)


def _conv_args(x, w, strides, padding, dilations, groups, data_format):
    layout = as_layout(data_format)
    x = as_float32(x, "x", ndim=4)
    w = as_float32(w, "w", ndim=4)
    check_nonempty(x, "x")
    check_nonempty(w, "w")
    groups = as_int(groups, "groups", 1)
    if layout == "NHWC":
        n, h, wd, c = x.shape
        kh, kw, cg, cout = w.shape
        wdesc = "[KH, KW, C/groups, Cout]"
    else:
        n, c, h, wd = x.shape
        cout, cg, kh, kw = w.shape
        wdesc = "[Cout, C/groups, KH, KW]"
    if c % groups:
        raise ValueError(f"groups={groups} must divide the {c} input channels of x (shape {x.shape})")
    if cout % groups:
        raise ValueError(f"groups={groups} must divide the {cout} output channels of w (shape {w.shape})")
    if cg != c // groups:
        raise ValueError(f"conv2d: w {wdesc} expects {cg} input channels per group, received x with {c} "
                         f"channels and groups={groups} ({c // groups} per group); x shape {x.shape}, "
                         f"w shape {w.shape}, data_format={layout}")
    win, (oh, ow) = _window(x.shape, (kh, kw), strides, padding, dilations, layout, "conv2d",
                            "the kernel of w")
    yshape = (n, oh, ow, cout) if layout == "NHWC" else (n, cout, oh, ow)
    check_total(yshape, "the conv2d output")
    check_total((n * oh * ow, kh * kw * c), "the conv2d column matrix")
    return layout, x, w, groups, cout, win, yshape


def conv2d(x, w, b=None, strides=1, padding="valid", dilations=1, groups=1, data_format="NHWC",
           activation=None):
    """2-D convolution (cross-correlation), optionally with bias and a fused activation.

    NHWC: x [N, H, W, C], w [KH, KW, C/groups, Cout] -> [N, OH, OW, Cout].
    NCHW: x [N, C, H, W], w [Cout, C/groups, KH, KW] -> [N, Cout, OH, OW].
    padding: 'valid', 'same' (TensorFlow/Keras), an int, (ph, pw) or ((top, bottom), (left, right)).
    """
    layout, x, w, groups, cout, win, yshape = _conv_args(x, w, strides, padding, dilations, groups,
                                                         data_format)
    if b is not None:
        b = as_float32(b, "b", ndim=1)
        check_shape(b, (cout,), "b")
    (kind, alpha, beta), softmax_after = _activation(activation, softmax_ok=layout == "NHWC")
    y = _alloc.empty(yshape, dtype=np.float32)
    _core.conv2d_forward(x, w, b, y, win, cout, groups, kind, alpha, beta)
    return _softmax_last_axis(y) if softmax_after else y


def conv2d_max_pool(x, w, b=None, pool_size=2, strides=1, padding="valid", dilations=1, groups=1,
                    data_format="NHWC", activation=None, return_taps=False):
    """max_pool2d(conv2d(x, w, b, ..., activation=activation), pool_size) in one call: pool windows of
    pool_size with stride = pool_size and no padding (Keras' MaxPooling2D defaults). The same bits as
    the two ops. With return_taps, (y, taps) as max_pool2d_with_taps gives them, for
    max_pool2d_grad (windows of at most 255 taps). The NHWC direct and Winograd convolutions compute
    only the outputs a window covers and never write the convolution out."""
    layout, x, w, groups, cout, win, yshape = _conv_args(x, w, strides, padding, dilations, groups,
                                                         data_format)
    if b is not None:
        b = as_float32(b, "b", ndim=1)
        check_shape(b, (cout,), "b")
    (kind, alpha, beta), softmax_after = _activation(activation, softmax_ok=False)
    pkh, pkw = as_pair(pool_size, "pool_size", 1)
    oh, ow = (yshape[1], yshape[2]) if layout == "NHWC" else (yshape[2], yshape[3])
    if pkh > oh or pkw > ow:
        raise ValueError(f"conv2d_max_pool: pool_size {(pkh, pkw)} does not fit the convolution's output "
                         f"{oh} x {ow}")
    if return_taps and pkh * pkw > _core.POOL_MAX_TAPS:
        raise ValueError(f"conv2d_max_pool: a window of {pkh} x {pkw} has more than {_core.POOL_MAX_TAPS} "
                         f"taps; return_taps needs at most that many")
    n = yshape[0]
    pshape = (n, oh // pkh, ow // pkw, cout) if layout == "NHWC" else (n, cout, oh // pkh, ow // pkw)
    y = _alloc.empty(pshape, dtype=np.float32)
    taps = _alloc.empty(pshape, dtype=np.uint8) if return_taps else None
    _core.conv2d_pool_forward(x, w, b, y, taps, win, cout, groups, pkh, pkw, kind, alpha, beta)
    return (y, taps) if return_taps else y


def pool_dx_workspace_size(win, cout, groups, pkh, pkw):
    """Workspace bytes of conv2d_max_pool_dx for this convolution (win: the C core's window tuple) and
    pool; -1 when it does not take that path."""
    if _core.conv2d_algorithm(win, cout, groups, True, False) == "winograd":
        return -1
    return _core.conv2d_pool_data_grad_workspace_size(win, cout, groups, pkh, pkw)


def conv2d_max_pool_dx(x, w, g, taps, pool_size=2, strides=1, padding="valid", dilations=1, groups=1,
                       data_format="NHWC"):
    """dx of x -> conv2d_max_pool(x, w, ..., return_taps=True) for NHWC single-group convolutions, from g,
    the gradient of the activation's input at the pooled outputs' chosen elements (the activation's
    derivative at the pooled values times the pooled gradient), and the taps. The convolution's
    output gradient is g at those elements and zero elsewhere; this sums g-scaled filters over the
    chosen elements' input windows instead of a dense transposed convolution: conv2d_grad's dx up to
    rounding. None when it does not apply (NCHW, groups > 1, or conv2d_grad's dx would take Winograd,
    which is as fast or faster) or a weight is not finite (which would meet the skipped zeros); use
    conv2d_grad then. x may be the input or its shape (only the shape is read)."""
    x = np.empty(tuple(x), np.float32) if isinstance(x, (tuple, list)) else x
    a = _pooled_args("conv2d_max_pool_dx", pool_dx_workspace_size, x, w, g, taps, pool_size, strides, padding,
                     dilations, groups, data_format)
    if a is None:
        return None
    x, w, g, taps, args = a
    dx = _alloc.empty(x.shape, dtype=np.float32)
    if not _core.conv2d_pool_data_grad(w, g, taps, dx, *args):
        return None
    return dx


def _pooled_args(what, workspace_size, x, w, g, taps, pool_size, strides, padding, dilations, groups,
                 data_format):
    """(x, w, g, taps, (win, cout, groups, pkh, pkw)) for a gradient from the pooled elements, checked;
    None when workspace_size says its path does not apply."""
    layout, x, w, groups, cout, win, yshape = _conv_args(x, w, strides, padding, dilations, groups, data_format)
    pkh, pkw = as_pair(pool_size, "pool_size", 1)
    if workspace_size(win, cout, groups, pkh, pkw) < 0:
        return None
    pshape = (yshape[0], yshape[1] // pkh, yshape[2] // pkw, cout)
    g = as_float32(g, "g")
    check_shape(g, pshape, "g")
    taps = np.ascontiguousarray(taps)
    if taps.dtype != np.uint8 or taps.shape != pshape:
        raise ValueError(f"{what}: taps must be uint8 of shape {pshape}, received {taps.dtype} {taps.shape}")
    return x, w, g, taps, (win, cout, groups, pkh, pkw)


def pool_dw_workspace_size(win, cout, groups, pkh, pkw):
    """Workspace bytes of conv2d_max_pool_dw for this convolution and pool; -1 when it does not take
    that path."""
    return _core.conv2d_pool_weight_grad_workspace_size(win, cout, groups, pkh, pkw)


def conv2d_max_pool_dw(x, w, g, taps, pool_size=2, strides=1, padding="valid", dilations=1, groups=1,
                       data_format="NHWC"):
    """(dw, db) of x -> conv2d_max_pool(x, w, ..., return_taps=True) for NHWC single-group convolutions
    and pools of 2 or more taps, from g and the taps as conv2d_max_pool_dx takes them: dw sums g times
    the input window of each pooled output's chosen element only, instead of a dense weight gradient
    that also multiplies the zeros of every other element; conv2d_grad's dw and db up to rounding.
    None when it does not apply or an element of x is not finite (which would meet the skipped zeros);
    use conv2d_grad then. w may be the weights or their shape."""
    w = np.empty(tuple(w), np.float32) if isinstance(w, (tuple, list)) else w
    a = _pooled_args("conv2d_max_pool_dw", pool_dw_workspace_size, x, w, g, taps, pool_size, strides, padding,
                     dilations, groups, data_format)
    if a is None:
        return None
    x, w, g, taps, args = a
    dw, db = _alloc.empty(w.shape, dtype=np.float32), _alloc.empty(args[1], dtype=np.float32)
    if not _core.conv2d_pool_weight_grad(x, g, taps, dw, db, *args):
        return None
    return dw, db


def conv2d_algorithm(x, w, strides=1, padding="valid", dilations=1, groups=1, data_format="NHWC",
                     data_grad=False, weight_grad=False):
    """How conv2d computes this convolution: 'winograd' (F(2x2, 3x3): 3x3 kernels, stride 1, no
    dilation, one group, >= 32 input and 16 output channels, >= 64 2x2 output tiles filled at least
    70%), 'depthwise' (groups = input channels >= 2, kernels up to 16x16: each output its KH*KW-term
    sum read straight from x), 'direct' (one group, <= 4 input channels, C*KH*KW <= 256, not 1x1
    stride 1 unpadded: the GEMM's panels packed straight from x, the same results as im2col) or
    'im2col' (+ GEMM).
    data_grad: how conv2d_grad computes dx instead ('depthwise' for an NHWC depthwise convolution;
    Winograd when the stride-1 convolution of dy that gives it passes the same rule, paddings <= 2;
    else im2col). weight_grad: how it computes dw (Winograd F(3x3, 2x2) exactly when the forward is
    Winograd's, also im2col when Winograd's dw comes out non-finite, so infinities and NaNs propagate
    as in a direct sum; 'depthwise' for an NHWC depthwise convolution; 'direct' for NHWC single-group
    ones with <= 4 input channels and <= 32 taps; else im2col). In every path padding reads as zeros
    multiplied like any input, so infinities and NaNs propagate alike. x and w may be arrays or
    shapes."""
    x = np.empty(tuple(x), np.float32) if isinstance(x, (tuple, list)) else x
    w = np.empty(tuple(w), np.float32) if isinstance(w, (tuple, list)) else w
    _, _, _, groups, cout, win, _ = _conv_args(x, w, strides, padding, dilations, groups, data_format)
    if data_grad and weight_grad:
        raise ValueError("conv2d_algorithm: ask for data_grad or weight_grad, not both")
    return _core.conv2d_algorithm(win, cout, groups, bool(data_grad), bool(weight_grad))


def conv2d_grad(x, w, dy, strides=1, padding="valid", dilations=1, groups=1, data_format="NHWC",
                need_dx=True, need_dw=True):
    """(dx, dw, db) of y = conv2d(x, w, b, ...) without activation (dx is None when need_dx is False,
    dw and db are None when need_dw is False)."""
    layout, x, w, groups, cout, win, yshape = _conv_args(x, w, strides, padding, dilations, groups,
                                                         data_format)
    dy = as_float32(dy, "dy")
    if dy.shape != yshape:
        raise ValueError(f"dy must have the conv2d output shape {yshape} for x {x.shape} and w {w.shape}, "
                         f"received {dy.shape}")
    dx = _alloc.empty_like(x) if need_dx else None
    dw, db = (_alloc.empty_like(w), _alloc.empty(cout, dtype=np.float32)) if need_dw else (None, None)
    if dx is not None or dw is not None:
        _core.conv2d_backward(x, w, dy, dx, dw, db, win, cout, groups)
    return dx, dw, db


def im2col(x, kernel_size, strides=1, padding="valid", dilations=1, data_format="NHWC"):
    """The column matrix of the sliding windows.

    NHWC: [N*OH*OW, KH*KW*C], row (n, oh, ow), column (kh, kw, c).
    NCHW: [C*KH*KW, N*OH*OW], row (c, kh, kw), column (n, oh, ow).
    """
    layout = as_layout(data_format)
    x = as_float32(x, "x", ndim=4)
    check_nonempty(x, "x")
    kh, kw = as_pair(kernel_size, "kernel_size", 1)
    win, (oh, ow) = _window(x.shape, (kh, kw), strides, padding, dilations, layout, "im2col",
                            "kernel_size")
    n, c = win[0], win[3]
    shape = (n * oh * ow, kh * kw * c) if layout == "NHWC" else (c * kh * kw, n * oh * ow)
    check_total(shape, "the im2col matrix")
    col = _alloc.empty(shape, dtype=np.float32)
    _core.im2col(x, col, win, 0, c)
    return col


# ---- activations -------------------------------------------------------------------------------

def _act_forward(x, name, alpha=None, beta=None):
    x = as_float32(x, "x")
    kind, a, b = _ACTIVATIONS[name]
    y = _alloc.empty_like(x)
    if x.size:
        _core.act_forward(x, y, kind, a if alpha is None else alpha, b if beta is None else beta)
    return y


def _act_backward(x, dy, name, alpha=None, beta=None):
    x = as_float32(x, "x")
    dy = as_float32(dy, "dy")
    check_shape(dy, x.shape, "dy")
    kind, a, b = _ACTIVATIONS[name]
    dx = _alloc.empty_like(x)
    if x.size:
        _core.act_backward(x, None, dy, dx, kind, a if alpha is None else alpha, b if beta is None else beta)
    return dx


def _float(v, name):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, received {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"{name} must be finite, received {v!r}")
    return f


def relu(x):
    return _act_forward(x, "relu")


def relu_grad(x, dy):
    return _act_backward(x, dy, "relu")


def leaky_relu(x, alpha=0.2):
    return _act_forward(x, "leaky_relu", alpha=_float(alpha, "alpha"))


def leaky_relu_grad(x, dy, alpha=0.2):
    return _act_backward(x, dy, "leaky_relu", alpha=_float(alpha, "alpha"))


def elu(x, alpha=1.0):
    return _act_forward(x, "elu", alpha=_float(alpha, "alpha"))


def elu_grad(x, dy, alpha=1.0):
    return _act_backward(x, dy, "elu", alpha=_float(alpha, "alpha"))


def selu(x):
    return _act_forward(x, "selu")


def selu_grad(x, dy):
    return _act_backward(x, dy, "selu")


def sigmoid(x):
    return _act_forward(x, "sigmoid")


def sigmoid_grad(x, dy):
    return _act_backward(x, dy, "sigmoid")


def tanh(x):
    return _act_forward(x, "tanh")


def tanh_grad(x, dy):
    return _act_backward(x, dy, "tanh")


def hard_sigmoid(x, alpha=0.2, beta=0.5):
    return _act_forward(x, "hard_sigmoid", alpha=_float(alpha, "alpha"), beta=_float(beta, "beta"))


def hard_sigmoid_grad(x, dy, alpha=0.2, beta=0.5):
    return _act_backward(x, dy, "hard_sigmoid", alpha=_float(alpha, "alpha"), beta=_float(beta, "beta"))


def hard_swish(x):
    return _act_forward(x, "hard_swish")


def hard_swish_grad(x, dy):
    return _act_backward(x, dy, "hard_swish")


def relu6(x):
    return _act_forward(x, "relu6")


def relu6_grad(x, dy):
    return _act_backward(x, dy, "relu6")


def _clip_bounds(min_value, max_value):
    lo, hi = _float(min_value, "min_value"), _float(max_value, "max_value")
    if lo > hi:
        raise ValueError(f"min_value must be <= max_value, received {min_value!r} > {max_value!r}")
    return lo, hi


def clip(x, min_value, max_value):
    lo, hi = _clip_bounds(min_value, max_value)
    return _act_forward(x, "relu6", alpha=lo, beta=hi)


def clip_grad(x, dy, min_value, max_value):
    lo, hi = _clip_bounds(min_value, max_value)
    return _act_backward(x, dy, "relu6", alpha=lo, beta=hi)


def _softmax_rows(x, axis, name):
    x = as_float32(x, name, min_ndim=1)
    ndim = x.ndim
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an int in [{-ndim}, {ndim}), received {axis!r}")
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    return moved, int(axis)


def _softmax(x, axis, log):
    xm, axis = _softmax_rows(x, axis, "x")
    y = _alloc.empty_like(xm)
    if xm.size:
        _core.softmax_forward(xm, y, xm.size // xm.shape[-1], xm.shape[-1], log)
    return np.ascontiguousarray(np.moveaxis(y, -1, axis))


def _softmax_grad(x, dy, axis, log):
    xm, axis = _softmax_rows(x, axis, "x")
    dym, _ = _softmax_rows(dy, axis, "dy")
    check_shape(dym, xm.shape, "dy (moved to the softmax axis)")
    y = _alloc.empty_like(xm)
    dx = _alloc.empty_like(xm)
    if xm.size:
        rows, cols = xm.size // xm.shape[-1], xm.shape[-1]
        _core.softmax_forward(xm, y, rows, cols, log)
        _core.softmax_backward(y, dym, dx, rows, cols, log)
    return np.ascontiguousarray(np.moveaxis(dx, -1, axis))


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along axis."""
    return _softmax(x, axis, False)


def softmax_grad(x, dy, axis=-1):
    return _softmax_grad(x, dy, axis, False)


def log_softmax(x, axis=-1):
    """x - max - log(sum(exp(x - max))) along axis."""
    return _softmax(x, axis, True)


def log_softmax_grad(x, dy, axis=-1):
    return _softmax_grad(x, dy, axis, True)
