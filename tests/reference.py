"""Plain NumPy reference twins of cnnc's core ops, in float64.

Written from the definitions in the cnnc spec only (cross-correlation, Keras 'same' padding, Keras and
ONNX weight layouts, ...); nothing here imports cnnc. Every op also has a "magnitude" twin (the same
computation on |inputs|, i.e. the sum of |terms| feeding each output), which the tests use to scale
their absolute tolerances: a float32 dot product's rounding error is bounded by a small multiple of
eps32 * sum|terms|, not by |result| (which may cancel to ~0).

The conv twins use direct summation over kernel taps (no im2col), so they are independent of the
im2col twin, which the tests cross-check separately.
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


# ---------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------
def pair(v):
    if isinstance(v, (tuple, list)):
        assert len(v) == 2
        return int(v[0]), int(v[1])
    return int(v), int(v)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def same_pad_1d(size, k, stride, dilation):
    """TensorFlow/Keras 'same' along one axis -> (lo, hi)."""
    k_eff = dilation * (k - 1) + 1
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, hw, khw, strides, dilations):
    """-> (top, bottom, left, right)."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = hw, khw, pair(strides), pair(dilations)
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return 0, 0, 0, 0
        if padding.lower() == "same":
            t, b = same_pad_1d(h, kh, sh, dh)
            l, r = same_pad_1d(w, kw, sw, dw)
            return t, b, l, r
        raise ValueError(padding)
    if isinstance(padding, (tuple, list)):
        if all(isinstance(p, (tuple, list)) for p in padding):
            (t, b), (l, r) = padding
            return int(t), int(b), int(l), int(r)
        ph, pw = pair(padding)
        return ph, ph, pw, pw
    p = int(padding)
    return p, p, p, p


def out_size(size, k, s, d, lo, hi):
    return (size + lo + hi - (d * (k - 1) + 1)) // s + 1


def _to_nhwc(x, data_format):
    return x if data_format.upper() == "NHWC" else np.transpose(x, (0, 2, 3, 1))


def _from_nhwc(y, data_format):
    return y if data_format.upper() == "NHWC" else np.transpose(y, (0, 3, 1, 2))


def _w_to_hwio(w, data_format):
    """Weights to the Keras layout [KH, KW, C/groups, Cout]."""
    return w if data_format.upper() == "NHWC" else np.transpose(w, (2, 3, 1, 0))


def _w_from_hwio(w, data_format):
    return w if data_format.upper() == "NHWC" else np.transpose(w, (3, 2, 0, 1))


# ---------------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------------
def matmul(a, b, transpose_a=False, transpose_b=False):
    a, b = f64(a), f64(b)
    if transpose_a:
        a = a.T
    if transpose_b:
        b = b.T
    return a @ b


def matmul_mag(a, b, transpose_a=False, transpose_b=False):
    return matmul(np.abs(f64(a)), np.abs(f64(b)), transpose_a, transpose_b)


# ---------------------------------------------------------------------------------------------------
# activations (forward and derivative w.r.t. the forward input)
# ---------------------------------------------------------------------------------------------------
def relu(x):
    x = f64(x)
    return np.maximum(x, 0.0)


def relu_grad(x, dy):
    x = f64(x)
    return f64(dy) * (x > 0)


def leaky_relu(x, alpha=0.2):
    x = f64(x)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_grad(x, dy, alpha=0.2):
    x = f64(x)
    return f64(dy) * np.where(x > 0, 1.0, alpha)


def elu(x, alpha=1.0):
    x = f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_grad(x, dy, alpha=1.0):
    x = f64(x)
    return f64(dy) * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def selu_grad(x, dy):
    return SELU_SCALE * elu_grad(x, dy, SELU_ALPHA)


def sigmoid(x):
    x = f64(x)
    # stable for large |x|: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(x, dy):
    s = sigmoid(x)
    return f64(dy) * s * (1.0 - s)


def tanh(x):
    return np.tanh(f64(x))


def tanh_grad(x, dy):
    t = np.tanh(f64(x))
    return f64(dy) * (1.0 - t * t)


def hard_sigmoid(x, alpha=0.2, beta=0.5):
    return np.clip(alpha * f64(x) + beta, 0.0, 1.0)


def hard_sigmoid_grad(x, dy, alpha=0.2, beta=0.5):
    z = alpha * f64(x) + beta
    return f64(dy) * np.where((z > 0) & (z < 1), alpha, 0.0)


def hard_swish(x):
    x = f64(x)
    return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def hard_swish_grad(x, dy):
    x = f64(x)
    d = np.where(x <= -3.0, 0.0, np.where(x >= 3.0, 1.0, x / 3.0 + 0.5))
    return f64(dy) * d


def clip(x, min_value, max_value):
    return np.minimum(np.maximum(f64(x), min_value), max_value)


def clip_grad(x, dy, min_value, max_value):
    x = f64(x)
    return f64(dy) * ((x > min_value) & (x < max_value))


def relu6(x):
    return clip(x, 0.0, 6.0)


def relu6_grad(x, dy):
    return clip_grad(x, dy, 0.0, 6.0)


def linear(x):
    return f64(x)


def linear_grad(x, dy):
    return f64(dy)


def softmax(x, axis=-1):
    x = f64(x)
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = f64(x)
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def softmax_grad(x, dy, axis=-1):
    y = softmax(x, axis)
    dy = f64(dy)
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def softmax_grad_mag(x, dy, axis=-1):
    """Sum of |terms| of softmax_grad: y * (|dy| + sum|dy * y|)."""
    y = softmax(x, axis)
    dy = np.abs(f64(dy))
    return y * (dy + np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax_grad(x, dy, axis=-1):
    dy = f64(dy)
    return dy - softmax(x, axis) * np.sum(dy, axis=axis, keepdims=True)


def log_softmax_grad_mag(x, dy, axis=-1):
    dy = np.abs(f64(dy))
    return dy + softmax(x, axis) * np.sum(dy, axis=axis, keepdims=True)


# name -> (forward, grad, kinks to keep test inputs away from, forward kwargs)
ACTIVATIONS = {
    "relu": (relu, relu_grad, [0.0], {}),
    "leaky_relu": (leaky_relu, leaky_relu_grad, [0.0], {}),
    "elu": (elu, elu_grad, [0.0], {}),
    "selu": (selu, selu_grad, [0.0], {}),
    "sigmoid": (sigmoid, sigmoid_grad, [], {}),
    "tanh": (tanh, tanh_grad, [], {}),
    "hard_sigmoid": (hard_sigmoid, hard_sigmoid_grad, [-2.5, 2.5], {}),
    "hard_swish": (hard_swish, hard_swish_grad, [-3.0, 3.0], {}),
    "relu6": (relu6, relu6_grad, [0.0, 6.0], {}),
}

# the names accepted by activation= of dense/conv2d/bias_add (softmax handled separately)
FUSED_ACTIVATIONS = [None, "linear", "relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh",
                     "hard_sigmoid", "hard_swish", "relu6"]


def apply_activation(y, activation, axis=-1):
    if activation is None or activation == "linear":
        return f64(y)
    if activation == "softmax":
        return softmax(y, axis)
    return ACTIVATIONS[activation][0](y)


def activation_lipschitz(activation):
    """An upper bound of |act'| (how much an input error can grow through the activation).
    softmax: |d y_i| = y_i |dz_i - sum_j y_j dz_j| <= 2 max_j |dz_j| (callers pass row-max mags)."""
    return {"selu": SELU_SCALE * SELU_ALPHA, "softmax": 2.0}.get(activation, 1.0)


def away_from_kinks(x, kinks, margin=0.05):
    """Move values within `margin` of a kink to kink +- 2*margin (keeps dtype)."""
    x = np.array(x, copy=True)
    for k in kinks:
        near = np.abs(x.astype(np.float64) - k) < margin
        x[near] = np.where(x[near] >= k, k + 2 * margin, k - 2 * margin)
    return x


# ---------------------------------------------------------------------------------------------------
# dense / bias_add
# ---------------------------------------------------------------------------------------------------
def dense(x, w, b=None, activation=None):
    y = f64(x) @ f64(w)
    if b is not None:
        y = y + f64(b)
    return apply_activation(y, activation)


def dense_preact(x, w, b=None):
    return dense(x, w, b, None)


def dense_mag(x, w, b=None):
    return dense(np.abs(f64(x)), np.abs(f64(w)), None if b is None else np.abs(f64(b)))


def dense_grad(x, w, dy):
    x, w, dy = f64(x), f64(w), f64(dy)
    k, u = w.shape
    x2, dy2 = x.reshape(-1, k), dy.reshape(-1, u)
    dx = (dy2 @ w.T).reshape(x.shape)
    dw = x2.T @ dy2
    db = dy2.sum(axis=0)
    return dx, dw, db


def dense_grad_mag(x, w, dy):
    return dense_grad(np.abs(f64(x)), np.abs(f64(w)), np.abs(f64(dy)))


def bias_add(x, b, activation=None, data_format="NHWC"):
    x, b = f64(x), f64(b)
    if data_format.upper() == "NCHW" and x.ndim > 2:
        shape = [1] * x.ndim
        shape[1] = b.size
        y = x + b.reshape(shape)
        axis = 1
    else:
        y = x + b
        axis = -1
    return apply_activation(y, activation, axis=axis)


# ---------------------------------------------------------------------------------------------------
# conv2d (direct summation over taps)
# ---------------------------------------------------------------------------------------------------
def conv_geometry(x_shape, w_shape, strides=1, padding="valid", dilations=1, groups=1,
                  data_format="NHWC"):
    """Everything the twins need, in NHWC / HWIO terms."""
    if data_format.upper() == "NHWC":
        n, h, w_, c = x_shape
        kh, kw, cg, cout = w_shape
    else:
        n, c, h, w_ = x_shape
        cout, cg, kh, kw = w_shape
    sh, sw = pair(strides)
    dh, dw = pair(dilations)
    t, b, l, r = resolve_padding(padding, (h, w_), (kh, kw), (sh, sw), (dh, dw))
    if dh * (kh - 1) + 1 > h + t + b or dw * (kw - 1) + 1 > w_ + l + r:
        raise ValueError("reference: the dilated kernel is larger than the padded input")
    oh = out_size(h, kh, sh, dh, t, b)
    ow = out_size(w_, kw, sw, dw, l, r)
    return dict(n=n, h=h, w=w_, c=c, kh=kh, kw=kw, cg=cg, cout=cout, groups=groups, sh=sh, sw=sw,
                dh=dh, dw=dw, pt=t, pb=b, pl=l, pr=r, oh=oh, ow=ow)


def conv_output_shape(x_shape, w_shape, strides=1, padding="valid", dilations=1, groups=1,
                      data_format="NHWC"):
    g = conv_geometry(x_shape, w_shape, strides, padding, dilations, groups, data_format)
    if data_format.upper() == "NHWC":
        return (g["n"], g["oh"], g["ow"], g["cout"])
    return (g["n"], g["cout"], g["oh"], g["ow"])


def _tap_slice(g, i, j):
    """Slices of the padded NHWC input read by kernel tap (i, j) for all outputs."""
    r0, c0 = i * g["dh"], j * g["dw"]
    return (slice(None), slice(r0, r0 + (g["oh"] - 1) * g["sh"] + 1, g["sh"]),
            slice(c0, c0 + (g["ow"] - 1) * g["sw"] + 1, g["sw"]))


def _pad_nhwc(x, g):
    return np.pad(x, ((0, 0), (g["pt"], g["pb"]), (g["pl"], g["pr"]), (0, 0)))


def conv2d_preact(x, w, b=None, strides=1, padding="valid", dilations=1, groups=1,
                  data_format="NHWC"):
    x, w = f64(x), f64(w)
    g = conv_geometry(x.shape, w.shape, strides, padding, dilations, groups, data_format)
    xh = _pad_nhwc(_to_nhwc(x, data_format), g)
    wh = _w_to_hwio(w, data_format)
    G, cg, cout = groups, g["cg"], g["cout"]
    assert g["c"] == cg * G and cout % G == 0
    og = cout // G
    y = np.zeros((g["n"], g["oh"], g["ow"], cout))
    for i in range(g["kh"]):
        for j in range(g["kw"]):
            patch = xh[_tap_slice(g, i, j)]  # [N, OH, OW, C]
            for gi in range(G):
                y[..., gi * og:(gi + 1) * og] += np.einsum(
                    "nhwc,co->nhwo", patch[..., gi * cg:(gi + 1) * cg],
                    wh[i, j, :, gi * og:(gi + 1) * og])
    if b is not None:
        y += f64(b)
    return _from_nhwc(y, data_format)


def conv2d(x, w, b=None, strides=1, padding="valid", dilations=1, groups=1, data_format="NHWC",
           activation=None):
    y = conv2d_preact(x, w, b, strides, padding, dilations, groups, data_format)
    axis = -1 if data_format.upper() == "NHWC" else 1
    return apply_activation(y, activation, axis=axis)


def conv2d_mag(x, w, b=None, strides=1, padding="valid", dilations=1, groups=1,
               data_format="NHWC"):
    return conv2d_preact(np.abs(f64(x)), np.abs(f64(w)), None if b is None else np.abs(f64(b)),
                         strides, padding, dilations, groups, data_format)


def conv2d_grad(x, w, dy, strides=1, padding="valid", dilations=1, groups=1, data_format="NHWC"):
    """Analytic gradients of y = conv2d(x, w, b): dx by scattering dy through the taps (a transposed
    convolution), dw by correlating the input with dy, db by summing dy."""
    x, w, dy = f64(x), f64(w), f64(dy)
    g = conv_geometry(x.shape, w.shape, strides, padding, dilations, groups, data_format)
    xh = _pad_nhwc(_to_nhwc(x, data_format), g)
    wh = _w_to_hwio(w, data_format)
    dyh = _to_nhwc(dy, data_format)
    assert dyh.shape == (g["n"], g["oh"], g["ow"], g["cout"]), (dyh.shape, g)
    G, cg, cout = groups, g["cg"], g["cout"]
    og = cout // G
    dxh = np.zeros_like(xh)
    dwh = np.zeros_like(wh)
    for i in range(g["kh"]):
        for j in range(g["kw"]):
            sl = _tap_slice(g, i, j)
            patch = xh[sl]
            for gi in range(G):
                cs, os_ = slice(gi * cg, (gi + 1) * cg), slice(gi * og, (gi + 1) * og)
                dxh[sl + (cs,)] += np.einsum("nhwo,co->nhwc", dyh[..., os_], wh[i, j, :, os_])
                dwh[i, j, :, os_] = np.einsum("nhwc,nhwo->co", patch[..., cs], dyh[..., os_])
    dxh = dxh[:, g["pt"]:g["pt"] + g["h"], g["pl"]:g["pl"] + g["w"], :]
    db = dyh.sum(axis=(0, 1, 2))
    return _from_nhwc(dxh, data_format), _w_from_hwio(dwh, data_format), db


def conv2d_grad_mag(x, w, dy, **kw):
    return conv2d_grad(np.abs(f64(x)), np.abs(f64(w)), np.abs(f64(dy)), **kw)


# ---------------------------------------------------------------------------------------------------
# im2col
# ---------------------------------------------------------------------------------------------------
def im2col(x, kernel_size, strides=1, padding="valid", dilations=1, data_format="NHWC"):
    """NHWC -> [N*OH*OW, KH*KW*C], row (n, oh, ow), column (kh, kw, c).
    NCHW -> [C*KH*KW, N*OH*OW], row (c, kh, kw), column (n, oh, ow)."""
    x = f64(x)
    kh, kw = pair(kernel_size)
    xn = _to_nhwc(x, data_format)
    n, h, w_, c = xn.shape
    sh, sw = pair(strides)
    dh, dw = pair(dilations)
    t, b, l, r = resolve_padding(padding, (h, w_), (kh, kw), (sh, sw), (dh, dw))
    if dh * (kh - 1) + 1 > h + t + b or dw * (kw - 1) + 1 > w_ + l + r:
        raise ValueError("reference: the dilated kernel is larger than the padded input")
    oh, ow = out_size(h, kh, sh, dh, t, b), out_size(w_, kw, sw, dw, l, r)
    xp = np.pad(xn, ((0, 0), (t, b), (l, r), (0, 0)))
    cols = np.empty((n, oh, ow, kh, kw, c))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                                        j * dw:j * dw + (ow - 1) * sw + 1:sw, :]
    if data_format.upper() == "NHWC":
        return cols.reshape(n * oh * ow, kh * kw * c)
    return cols.transpose(5, 3, 4, 0, 1, 2).reshape(c * kh * kw, n * oh * ow)


def conv2d_via_im2col(x, w, b=None, strides=1, padding="valid", dilations=1, data_format="NHWC"):
    """groups=1 conv as im2col + GEMM (a second, independent twin used to cross-check conv2d)."""
    x, w = f64(x), f64(w)
    g = conv_geometry(x.shape, w.shape, strides, padding, dilations, 1, data_format)
    col = im2col(x, (g["kh"], g["kw"]), strides, padding, dilations, data_format)
    if data_format.upper() == "NHWC":
        y = col @ w.reshape(-1, g["cout"])
        y = y.reshape(g["n"], g["oh"], g["ow"], g["cout"])
    else:
        y = w.reshape(g["cout"], -1) @ col  # [Cout, N*OH*OW]
        y = y.reshape(g["cout"], g["n"], g["oh"], g["ow"]).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + (f64(b) if data_format.upper() == "NHWC" else f64(b)[:, None, None])
    return y


# ---------------------------------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------------------------------
# A float32 result computed from float32 (or float32-rounded) inputs is judged against the float64
# twin with |got - ref| <= RTOL * |ref| + ATOL_MAG * mag + atol, where mag is the sum of |terms| that
# produced the entry (the *_mag twins). ATOL_MAG = 1e-5 (~84 eps32) covers the sqrt(K)-growing
# rounding error of any reasonable summation order for K up to ~10^4 terms (plus float64 -> float32
# input rounding, 2 eps32 per term), while a missing, duplicated or misplaced term shifts the entry by
# about mag / K, i.e. >= 1e-4 * mag for every K used here: that is a real bug, and it fails.
RTOL = 1e-4
ATOL_MAG = 1e-5


def assert_close(got, ref, mag=None, rtol=RTOL, atol_mag=ATOL_MAG, atol=0.0, lipschitz=1.0,
                 name="result"):
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != expected {ref.shape}"
    assert np.all(np.isfinite(got) == np.isfinite(ref)), f"{name}: non-finite values differ"
    g = got.astype(np.float64)
    tol = rtol * np.abs(ref) + atol
    if mag is not None:
        tol = tol + atol_mag * lipschitz * np.asarray(mag, dtype=np.float64)
    fin = np.isfinite(ref)
    err = np.where(fin, np.abs(g - np.where(fin, ref, 0.0)), 0.0)
    bad = err > tol
    if bad.any():
        idx = np.argwhere(bad)[:5]
        details = ", ".join(f"{tuple(int(v) for v in i)}: got {g[tuple(i)]!r} want {ref[tuple(i)]!r} "
                            f"(tol {tol[tuple(i)]:.3g})" for i in idx)
        raise AssertionError(f"{name}: {int(bad.sum())} of {bad.size} entries out of tolerance; "
                             f"max err {err.max():.3g}; first: {details}")
