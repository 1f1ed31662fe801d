"""Pooling: max/average 2-D pooling, global pooling and tf.nn-style max_pool (re-exported by cnnc.nn).

Every function validates its arguments, converts arrays to C-contiguous float32 and calls the C core.
Layouts: 'NHWC' x[N, H, W, C] (also 'channels_last') and 'NCHW' x[N, C, H, W] ('channels_first').
"""
import numpy as np

from . import _alloc, _core
from ._checks import (as_float32, as_int, as_layout, as_pair, check_nonempty, check_shape,
                      check_total, resolve_padding, window_output)

__all__ = [
    "max_pool2d", "max_pool2d_with_argmax", "max_pool2d_with_taps", "max_pool2d_grad",
    "avg_pool2d", "avg_pool2d_grad",
    "global_avg_pool2d", "global_max_pool2d", "global_avg_pool2d_grad", "global_max_pool2d_grad",
    "max_pool", "max_pool_grad",
]


def _as_bool(v, name):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    raise TypeError(f"{name} must be a bool, received {v!r}")


def _split(shape, layout):
    """(n, h, w, c) of a 4-D shape."""
    if layout == "NHWC":
        n, h, w, c = shape
    else:
        n, c, h, w = shape
    return n, h, w, c


def _join(n, h, w, c, layout):
    return (n, h, w, c) if layout == "NHWC" else (n, c, h, w)


def _geometry(what, x, pool_size, strides, padding, data_format, dilations, ceil_mode):
    """Validate a 2-D pooling call -> (x float32, geom tuple for _core, output shape). x may be
    an _XShape (the backward from taps needs x's shape only)."""
    if not isinstance(x, _XShape):
        x = as_float32(x, "x", ndim=4)
        check_nonempty(x, "x")
    layout = as_layout(data_format)
    kh, kw = as_pair(pool_size, "pool_size", 1)
    sh, sw = (kh, kw) if strides is None else as_pair(strides, "strides", 1)
    dh, dw = as_pair(dilations, "dilations", 1)
    ceil_mode = _as_bool(ceil_mode, "ceil_mode")
    n, h, w, c = _split(x.shape, layout)
    keh, kew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    pt, pb, pl, pr = resolve_padding(padding, (h, w), (keh, kew), (sh, sw))
    if not isinstance(padding, str):
        for side, pad, ext, axis in (("top", pt, keh, "height"), ("bottom", pb, keh, "height"),
                                     ("left", pl, kew, "width"), ("right", pr, kew, "width")):
            if pad >= ext:
                raise ValueError(f"{what}: padding must be smaller than the pool extent on each side; "
                                 f"received {side} padding {pad} with a pool {axis} extent of {ext} "
                                 f"(padding={padding!r})")
    oh = window_output(h, kh, sh, dh, pt, pb, f"{what} (height)", ceil_mode, kname="pool_size")
    ow = window_output(w, kw, sw, dw, pl, pr, f"{what} (width)", ceil_mode, kname="pool_size")
    out_shape = _join(n, oh, ow, c, layout)
    check_total(out_shape, f"{what} output")
    geom = (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, layout, ceil_mode)
    return x, geom, out_shape


class _XShape:
    """The shape of a 4-D x that is not at hand (max_pool2d_grad from taps)."""

    def __init__(self, shape, what):
        shape = tuple(shape)
        if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
            raise ValueError(f"{what}: x's shape must be 4 positive ints, received {shape!r}")
        self.shape = tuple(int(d) for d in shape)


def _check_dy(dy, expected, what):
    dy = as_float32(dy, "dy")
    if dy.shape != tuple(expected):
        raise ValueError(f"{what}: dy must have the forward output shape {tuple(expected)}, "
                         f"received {dy.shape}")
    return dy


def max_pool2d(x, pool_size, strides=None, padding="valid", data_format="NHWC", dilations=1,
               ceil_mode=False):
    """Max pooling over H and W; padding never wins and NaN propagates."""
    x, geom, out_shape = _geometry("max_pool2d", x, pool_size, strides, padding, data_format,
                                   dilations, ceil_mode)
    y = _alloc.empty(out_shape, dtype=np.float32)
    _core.max_pool2d_forward(geom, x, y, None)
    return y


def max_pool2d_with_argmax(x, pool_size, strides=None, padding="valid", data_format="NHWC",
                           dilations=1, ceil_mode=False):
    """(y, argmax): argmax (int64, y's shape) is the flat index into x of each chosen element
    (ties pick the first in (kh, kw) order; -1 for a window holding padding only)."""
    x, geom, out_shape = _geometry("max_pool2d_with_argmax", x, pool_size, strides, padding,
                                   data_format, dilations, ceil_mode)
    y = _alloc.empty(out_shape, dtype=np.float32)
    argmax = _alloc.empty(out_shape, dtype=np.int64)
    _core.max_pool2d_forward(geom, x, y, argmax)
    return y, argmax


def max_pool2d_with_taps(x, pool_size, strides=None, padding="valid", data_format="NHWC",
                         dilations=1, ceil_mode=False):
    """(y, taps): taps (uint8, y's shape) is the position i * kw + j of each chosen element in its
    window (ties pick the first in (kh, kw) order; 255 for a window holding padding only): what
    training keeps for max_pool2d_grad, an eighth of an int64 argmax. Windows of at most 255 taps."""
    x, geom, out_shape = _geometry("max_pool2d_with_taps", x, pool_size, strides, padding,
                                   data_format, dilations, ceil_mode)
    if geom[4] * geom[5] > _core.POOL_MAX_TAPS:
        raise ValueError(f"max_pool2d_with_taps: a window of {geom[4]} x {geom[5]} has more than "
                         f"{_core.POOL_MAX_TAPS} taps; use max_pool2d_with_argmax")
    y = _alloc.empty(out_shape, dtype=np.float32)
    taps = _alloc.empty(out_shape, dtype=np.uint8)
    _core.max_pool2d_forward_taps(geom, x, y, taps)
    return y, taps


def _check_argmax(argmax, out_shape, what):
    """argmax as a C-contiguous int64 array of out_shape (its entries are checked by the C backward,
    which refuses an index outside the matching image or plane; _stray_argmax says which)."""
    a = np.asarray(argmax)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what}: argmax must be an integer array, received dtype {a.dtype}")
    if a.shape != tuple(out_shape):
        raise ValueError(f"{what}: argmax must have the forward output shape {tuple(out_shape)}, "
                         f"received {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _stray_argmax(a, x_shape, layout, what):
    """The error for an argmax entry that is neither -1 nor inside its image (NHWC) / plane (NCHW)."""
    n, h, w, c = _split(x_shape, layout)
    if layout == "NHWC":
        block = h * w * c
        lo = (np.arange(n, dtype=np.int64) * block).reshape(n, 1, 1, 1)
    else:
        block = h * w
        lo = (np.arange(n * c, dtype=np.int64) * block).reshape(n, c, 1, 1)
    ok = (a == -1) | ((a >= lo) & (a < lo + block))
    bad = a[~ok].ravel()[0] if not ok.all() else "?"
    return ValueError(f"{what}: argmax holds an index ({bad}) outside the pooling window's "
                      f"{'image' if layout == 'NHWC' else 'plane'} of x (shape {tuple(x_shape)})")


def max_pool2d_grad(x, dy, pool_size, strides=None, padding="valid", data_format="NHWC",
                    dilations=1, ceil_mode=False, argmax=None, taps=None):
    """dx of max_pool2d: dy routed to the chosen element of each window, given by `taps`
    (max_pool2d_with_taps) or `argmax` (max_pool2d_with_argmax), else recomputed from x. x may be
    given by its shape alone (a tuple) when taps are."""
    what = "max_pool2d_grad"
    if taps is not None and isinstance(x, tuple):
        x = _XShape(x, what)
    x, geom, out_shape = _geometry(what, x, pool_size, strides, padding, data_format, dilations,
                                   ceil_mode)
    dy = _check_dy(dy, out_shape, what)
    if taps is not None:
        t = np.asarray(taps)
        if t.dtype != np.uint8 or t.shape != tuple(out_shape):
            raise ValueError(f"{what}: taps must be uint8 of the forward output shape {tuple(out_shape)}, "
                             f"received {t.dtype} {t.shape}")
        dx = _alloc.empty(x.shape, dtype=np.float32)
        try:
            _core.max_pool2d_backward_taps(geom, dy, np.ascontiguousarray(t), dx)
        except ValueError:
            raise ValueError(f"{what}: taps holds a position outside its window or the input") from None
        return dx
    if argmax is None:
        argmax = _alloc.empty(out_shape, dtype=np.int64)
        _core.max_pool2d_forward(geom, x, _alloc.empty(out_shape, dtype=np.float32), argmax)
        checked = True
    else:
        argmax, checked = _check_argmax(argmax, out_shape, what), False
    dx = _alloc.empty(x.shape, dtype=np.float32)
    try:
        _core.max_pool2d_backward(geom, dy, argmax, dx)
    except ValueError:
        if checked:
            raise
        raise _stray_argmax(argmax, x.shape, geom[14], what) from None
    return dx


def avg_pool2d(x, pool_size, strides=None, padding="valid", data_format="NHWC", ceil_mode=False,
               count_include_pad=False):
    """Average pooling. count_include_pad=False divides by the number of input elements in the
    window (pads excluded, TF 'same' semantics); True by the window positions inside the padded input
    (PyTorch semantics)."""
    x, geom, out_shape = _geometry("avg_pool2d", x, pool_size, strides, padding, data_format, 1,
                                   ceil_mode)
    cip = _as_bool(count_include_pad, "count_include_pad")
    y = _alloc.empty(out_shape, dtype=np.float32)
    _core.avg_pool2d_forward(geom, cip, x, y)
    return y


def avg_pool2d_grad(x, dy, pool_size, strides=None, padding="valid", data_format="NHWC",
                    ceil_mode=False, count_include_pad=False):
    """dx of avg_pool2d (x supplies the input shape)."""
    what = "avg_pool2d_grad"
    x, geom, out_shape = _geometry(what, x, pool_size, strides, padding, data_format, 1, ceil_mode)
    cip = _as_bool(count_include_pad, "count_include_pad")
    dy = _check_dy(dy, out_shape, what)
    dx = _alloc.empty(x.shape, dtype=np.float32)
    _core.avg_pool2d_backward(geom, cip, dy, dx)
    return dx


# ---- global pooling ------------------------------------------------------------------------------

def _global_setup(x, data_format, keepdims, what):
    x = as_float32(x, "x", ndim=4)
    check_nonempty(x, "x")
    layout = as_layout(data_format)
    n, h, w, c = _split(x.shape, layout)
    keep = None if keepdims is None else _as_bool(keepdims, "keepdims")
    return x, layout, (n, h, w, c), keep


def _global_out_shape(n, c, layout, keepdims):
    if not keepdims:
        return (n, c)
    return (n, 1, 1, c) if layout == "NHWC" else (n, c, 1, 1)


def global_avg_pool2d(x, data_format="NHWC", keepdims=False):
    """Mean over H and W -> [N, C] (keepdims: [N, 1, 1, C] / [N, C, 1, 1])."""
    x, layout, (n, h, w, c), keep = _global_setup(x, data_format, keepdims, "global_avg_pool2d")
    y = _alloc.empty((n, c), dtype=np.float32)
    _core.global_avg_pool2d_forward(n, h, w, c, layout, x, y)
    return y.reshape(_global_out_shape(n, c, layout, keep))


def global_max_pool2d(x, data_format="NHWC", keepdims=False):
    """Maximum over H and W -> [N, C] (keepdims: [N, 1, 1, C] / [N, C, 1, 1]); NaN propagates."""
    x, layout, (n, h, w, c), keep = _global_setup(x, data_format, keepdims, "global_max_pool2d")
    y = _alloc.empty((n, c), dtype=np.float32)
    _core.global_max_pool2d_forward(n, h, w, c, layout, x, y, None)
    return y.reshape(_global_out_shape(n, c, layout, keep))


def _global_dy(dy, n, c, layout, what):
    dy = as_float32(dy, "dy")
    allowed = [(n, c), _global_out_shape(n, c, layout, True)]
    if dy.shape not in allowed:
        raise ValueError(f"{what}: dy must have shape {allowed[0]} or {allowed[1]}, received {dy.shape}")
    return np.ascontiguousarray(dy.reshape(n, c))


def global_avg_pool2d_grad(x, dy, data_format="NHWC"):
    """dx of global_avg_pool2d: dy / (H*W) broadcast over H and W (dy [N, C] or keepdims shape)."""
    what = "global_avg_pool2d_grad"
    x, layout, (n, h, w, c), _ = _global_setup(x, data_format, None, what)
    dy = _global_dy(dy, n, c, layout, what)
    dx = _alloc.empty(x.shape, dtype=np.float32)
    _core.global_avg_pool2d_backward(n, h, w, c, layout, dy, dx)
    return dx


def global_max_pool2d_grad(x, dy, data_format="NHWC"):
    """dx of global_max_pool2d: dy routed to the (first) maximum of each (n, c) plane."""
    what = "global_max_pool2d_grad"
    x, layout, (n, h, w, c), _ = _global_setup(x, data_format, None, what)
    dy = _global_dy(dy, n, c, layout, what)
    argmax = _alloc.empty((n, c), dtype=np.int64)
    _core.global_max_pool2d_forward(n, h, w, c, layout, x, _alloc.empty((n, c), dtype=np.float32),
                                    argmax)
    dx = _alloc.empty(x.shape, dtype=np.float32)
    _core.global_max_pool2d_backward(n, h, w, c, dy, argmax, dx)
    return dx


# ---- tf.nn.max_pool ------------------------------------------------------------------------------

def _four(v, name):
    """tf.nn convention: an int or a 1-, 2- or 4-sequence -> (b, h, w, c)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        seq = list(v)
        if len(seq) == 1:
            k = as_int(seq[0], name, 1)
            return (1, k, k, 1)
        if len(seq) == 2:
            return (1, as_int(seq[0], name, 1), as_int(seq[1], name, 1), 1)
        if len(seq) == 4:
            return tuple(as_int(s, name, 1) for s in seq)
        raise ValueError(f"{name} must be an int or a sequence of 1, 2 or 4 ints, received {v!r}")
    k = as_int(v, name, 1)
    return (1, k, k, 1)


def _tf_plan(x, ksize, strides, padding, what):
    """-> ('spatial', x, geom, out_shape) or ('depth', x, (rows, c, k, s), out_shape)."""
    x = as_float32(x, "x", ndim=4)
    check_nonempty(x, "x")
    ks = _four(ksize, "ksize")
    st = _four(strides, "strides")
    if not isinstance(padding, str) or padding.upper() not in ("VALID", "SAME"):
        raise ValueError(f"{what}: padding must be 'VALID' or 'SAME', received {padding!r}")
    pad = padding.upper()
    if ks[0] == 1 and ks[3] == 1 and st[0] == 1 and st[3] == 1:
        _, geom, out_shape = _geometry(what, x, ks[1:3], st[1:3], pad.lower(), "NHWC", 1, False)
        return "spatial", x, geom, out_shape
    if ks[:3] == (1, 1, 1) and st[:3] == (1, 1, 1):
        n, h, w, c = x.shape
        k, s = ks[3], st[3]
        if pad != "VALID":
            raise ValueError(f"{what}: depth pooling (ksize {ks}) requires padding='VALID', "
                             f"received {padding!r}")
        if s != k:
            raise ValueError(f"{what}: depth pooling requires the depth stride to equal the depth "
                             f"window, received ksize[3]={k}, strides[3]={s}")
        if c % k != 0:
            raise ValueError(f"{what}: depth pooling requires the depth window (ksize[3]={k}) to "
                             f"evenly divide the number of channels, received x with {c} channels "
                             f"(shape {x.shape})")
        return "depth", x, (n * h * w, c, k, s), (n, h, w, c // k)
    raise ValueError(f"{what}: pooling must be either spatial (ksize and strides of the form "
                     f"(1, kh, kw, 1)) or across depth only (of the form (1, 1, 1, k)); received "
                     f"ksize={tuple(ks)}, strides={tuple(st)}")


def max_pool(x, ksize, strides, padding="VALID"):
    """tf.nn.max_pool for NHWC input: ksize/strides are ints or 4-tuples (1, kh, kw, 1) for spatial
    pooling, or (1, 1, 1, k) for pooling across channels (padding 'VALID', k dividing C)."""
    kind, x, geom, out_shape = _tf_plan(x, ksize, strides, padding, "max_pool")
    y = _alloc.empty(out_shape, dtype=np.float32)
    if kind == "spatial":
        _core.max_pool2d_forward(geom, x, y, None)
    else:
        rows, c, k, s = geom
        _core.max_pool_depth_forward(rows, c, k, s, x, y, None)
    return y


def max_pool_grad(x, dy, ksize, strides, padding="VALID"):
    """dx of max_pool (same arguments, dy of the forward output's shape)."""
    what = "max_pool_grad"
    kind, x, geom, out_shape = _tf_plan(x, ksize, strides, padding, what)
    dy = _check_dy(dy, out_shape, what)
    argmax = _alloc.empty(out_shape, dtype=np.int64)
    scratch = _alloc.empty(out_shape, dtype=np.float32)
    dx = _alloc.empty(x.shape, dtype=np.float32)
    if kind == "spatial":
        _core.max_pool2d_forward(geom, x, scratch, argmax)
        _core.max_pool2d_backward(geom, dy, argmax, dx)
    else:
        rows, c, k, s = geom
        _core.max_pool_depth_forward(rows, c, k, s, x, scratch, argmax)
        _core.max_pool_depth_backward(rows, c, k, s, dy, argmax, dx)
    return dx
