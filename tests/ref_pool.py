"""Plain NumPy twins (float64) of cnnc's pooling, batch-norm and dropout ops.

Written from the definitions only; nothing here imports cnnc.
 - Output size: floor((H + pt + pb - ke) / s) + 1, or with ceil_mode the ceiling, dropping the last
   window when it would start past the input and the left padding (PyTorch's rule).
 - 'same': TensorFlow/Keras padding, output = ceil(H / s), odd pixel at the bottom/right.
 - Max pooling: padding never wins (window taps outside the input are skipped), ties keep the first
   tap in (kh, kw) order, NaN propagates (the first NaN tap wins). argmax: flat index into x.
 - Average pooling: sum over taps inside the input divided by the number of such taps, or with
   count_include_pad by the size of the window clipped to the padded input (PyTorch's formula).
 - Batch norm: biased variance, y = gamma * (x - mean) / sqrt(var + eps) + beta.
"""
import numpy as np


def f64(a):
    return np.asarray(a, dtype=np.float64)


def pair(v):
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def same_pad(size, k_eff, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def pads_of(padding, hw, k, s, d):
    """-> (pt, pb, pl, pr) for 'valid', 'same', int, (ph, pw) or ((t, b), (l, r))."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = hw, pair(k), pair(s), pair(d)
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return 0, 0, 0, 0
        t, b = same_pad(h, dh * (kh - 1) + 1, sh)
        l, r = same_pad(w, dw * (kw - 1) + 1, sw)
        return t, b, l, r
    if isinstance(padding, (tuple, list)):
        if isinstance(padding[0], (tuple, list)):
            (t, b), (l, r) = padding
            return int(t), int(b), int(l), int(r)
        ph, pw = padding
        return int(ph), int(ph), int(pw), int(pw)
    return (int(padding),) * 4


def out_len(size, k, s, d, lo, hi, ceil_mode):
    ke = d * (k - 1) + 1
    num = size + lo + hi - ke
    assert num >= 0, "window larger than the padded input"
    if not ceil_mode:
        return num // s + 1
    o = (num + s - 1) // s + 1
    if (o - 1) * s >= size + lo:
        o -= 1
    return o


def to_nhwc(x, layout):
    return x if layout == "NHWC" else np.transpose(x, (0, 2, 3, 1))


def from_nhwc(y, layout):
    return y if layout == "NHWC" else np.transpose(y, (0, 3, 1, 2))


def _flat_index(n, ih, iw, c, shape_nhwc, layout):
    """Flat index into x (in its own layout) of element (n, ih, iw, c); arrays broadcast."""
    N, H, W, C = shape_nhwc
    if layout == "NHWC":
        return ((n * H + ih) * W + iw) * C + c
    return ((n * C + c) * H + ih) * W + iw


def _geometry(x_nhwc, k, s, d, pads, ceil_mode):
    N, H, W, C = x_nhwc.shape
    (kh, kw), (sh, sw), (dh, dw) = pair(k), pair(s), pair(d)
    pt, pb, pl, pr = pads
    oh = out_len(H, kh, sh, dh, pt, pb, ceil_mode)
    ow = out_len(W, kw, sw, dw, pl, pr, ceil_mode)
    return (kh, kw), (sh, sw), (dh, dw), oh, ow


def max_pool2d(x, k, s=None, padding="valid", layout="NHWC", d=1, ceil_mode=False):
    """-> (y float64, argmax int64), both in the output's layout."""
    s = k if s is None else s
    xn = f64(to_nhwc(f64(x), layout))
    N, H, W, C = xn.shape
    pads = pads_of(padding, (H, W), k, s, d)
    (kh, kw), (sh, sw), (dh, dw), oh, ow = _geometry(xn, k, s, d, pads, ceil_mode)
    pt, _, pl, _ = pads
    best = np.full((N, oh, ow, C), -np.inf)
    arg = np.full((N, oh, ow, C), -1, dtype=np.int64)
    n_idx = np.arange(N).reshape(N, 1, 1, 1)
    c_idx = np.arange(C).reshape(1, 1, 1, C)
    for i in range(kh):
        ih = np.arange(oh) * sh - pt + i * dh
        for j in range(kw):
            iw = np.arange(ow) * sw - pl + j * dw
            ok = ((ih >= 0) & (ih < H))[:, None] & ((iw >= 0) & (iw < W))[None, :]
            ok = np.broadcast_to(ok[None, :, :, None], best.shape)
            ihc, iwc = np.clip(ih, 0, H - 1), np.clip(iw, 0, W - 1)
            v = xn[:, ihc][:, :, iwc]
            first = arg < 0
            take = ok & (first | (v > best) | (np.isnan(v) & ~np.isnan(best)))
            best = np.where(take, v, best)
            idx = _flat_index(n_idx, ihc.reshape(1, oh, 1, 1), iwc.reshape(1, 1, ow, 1), c_idx,
                              xn.shape, layout)
            arg = np.where(take, idx, arg)
    return from_nhwc(best, layout), from_nhwc(arg, layout)


def avg_pool2d(x, k, s=None, padding="valid", layout="NHWC", ceil_mode=False,
               count_include_pad=False):
    s = k if s is None else s
    xn = f64(to_nhwc(f64(x), layout))
    N, H, W, C = xn.shape
    pads = pads_of(padding, (H, W), k, s, 1)
    (kh, kw), (sh, sw), _, oh, ow = _geometry(xn, k, s, 1, pads, ceil_mode)
    pt, pb, pl, pr = pads
    y = np.zeros((N, oh, ow, C))
    for a in range(oh):
        h0 = a * sh - pt
        h1 = min(h0 + kh, H + pb)
        for b in range(ow):
            w0 = b * sw - pl
            w1 = min(w0 + kw, W + pr)
            padded_count = (h1 - h0) * (w1 - w0)
            hs, he, ws, we = max(h0, 0), min(h1, H), max(w0, 0), min(w1, W)
            if he <= hs or we <= ws:
                continue
            total = xn[:, hs:he, ws:we, :].sum(axis=(1, 2))
            count = padded_count if count_include_pad else (he - hs) * (we - ws)
            y[:, a, b, :] = total / count
    return from_nhwc(y, layout)


def scatter_grad(x_shape, dy, argmax):
    """dx = 0; dx.flat[argmax] += dy (argmax -1 skipped)."""
    dx = np.zeros(int(np.prod(x_shape)))
    a = np.asarray(argmax).reshape(-1)
    g = f64(dy).reshape(-1)
    keep = a >= 0
    np.add.at(dx, a[keep], g[keep])
    return dx.reshape(x_shape)


def global_avg_pool2d(x, layout="NHWC"):
    return f64(x).mean(axis=(1, 2) if layout == "NHWC" else (2, 3))


def global_max_pool2d(x, layout="NHWC"):
    """-> (y [N, C], argmax [N, C]) with first-maximum ties and NaN propagation."""
    xn = f64(to_nhwc(f64(x), layout))
    N, H, W, C = xn.shape
    flat = xn.reshape(N, H * W, C)
    nan = np.isnan(flat)
    # first NaN if any, else first maximum
    pos = np.where(nan.any(axis=1), np.argmax(nan, axis=1), np.argmax(flat, axis=1))
    y = np.take_along_axis(flat, pos[:, None, :], axis=1)[:, 0, :]
    n_idx = np.arange(N)[:, None]
    c_idx = np.arange(C)[None, :]
    arg = _flat_index(n_idx, pos // W, pos % W, c_idx, xn.shape, layout)
    return y, arg


def max_pool_depth(x, k):
    """NHWC x -> max over consecutive groups of k channels (window == stride == k, k | C)."""
    x = f64(x)
    N, H, W, C = x.shape
    g = x.reshape(N, H, W, C // k, k)
    pos = np.argmax(g, axis=-1)
    y = np.max(g, axis=-1)
    base = (np.arange(N * H * W).reshape(N, H, W, 1)) * C + np.arange(C // k) * k
    return y, base + pos


def bn_axes(x, layout):
    if x.ndim == 2:
        return (0,), (1, -1)
    if layout == "NHWC":
        return (0, 1, 2), (1, 1, 1, -1)
    return (0, 2, 3), (1, -1, 1, 1)


def batch_norm(x, gamma, beta, mean, var, eps, layout="NHWC"):
    x = f64(x)
    _, shp = bn_axes(x, layout)
    r = lambda v: f64(v).reshape(shp)  # noqa: E731
    return r(gamma) * (x - r(mean)) / np.sqrt(r(var) + eps) + r(beta)


def batch_norm_train(x, gamma, beta, eps, layout="NHWC"):
    """-> (y, mean, biased var)."""
    x = f64(x)
    axes, _ = bn_axes(x, layout)
    mean = x.mean(axis=axes)
    var = ((x - x.mean(axis=axes, keepdims=True)) ** 2).mean(axis=axes)
    return batch_norm(x, gamma, beta, mean, var, eps, layout), mean, var
