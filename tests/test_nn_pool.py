"""Pooling ops against the NumPy twins in ref_pool.py: forward, argmax, backward (scatter twin and
finite differences), thread invariance and argument validation."""
import itertools
import random

import numpy as np
import pytest

import cnnc
import cnnc.nn as nn
import gradcheck
import ref_pool as ref

LAYOUTS = ["NHWC", "NCHW"]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _fits(shape_nhwc, k, s, d, padding, ceil_mode):
    """Whether a config is valid (window fits, explicit pads smaller than the pool extent)."""
    _, h, w, _ = shape_nhwc
    (kh, kw), (dh, dw) = _pair(k), _pair(d)
    keh, kew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    pt, pb, pl, pr = ref.pads_of(padding, (h, w), k, s if s is not None else k, d)
    if not isinstance(padding, str) and (max(pt, pb) >= keh or max(pl, pr) >= kew):
        return False
    return keh <= h + pt + pb and kew <= w + pl + pr


def _make_cases(count, with_dilation, seed):
    """A deterministic sample of the edge-case grid (plus fixed corner cases)."""
    shapes = [(1, 1, 1, 1), (1, 5, 7, 3), (2, 6, 6, 9), (3, 7, 5, 1), (2, 11, 13, 17), (1, 2, 3, 5)]
    pools = [1, 2, 3, (2, 3), (3, 1)]
    strides = [None, 1, 2, 3, (1, 2), (3, 2)]
    dils = [1, 2, (1, 2)] if with_dilation else [1]
    pads = ["valid", "same", 1, (1, 0), ((0, 1), (1, 2)), ((2, 0), (0, 1))]
    grid = list(itertools.product(shapes, pools, strides, dils, pads, [False, True], LAYOUTS))
    rnd = random.Random(seed)
    rnd.shuffle(grid)
    fixed = [
        ((1, 1, 1, 1), 1, None, 1, "valid", False, "NHWC"),
        ((1, 1, 1, 1), 1, 3, 1, "same", True, "NCHW"),
        ((2, 5, 5, 3), 2, 2, 1, "valid", True, "NHWC"),       # ceil adds a partial window
        ((2, 5, 5, 3), 2, 2, 1, "valid", True, "NCHW"),
        ((1, 6, 6, 2), 3, 2, 1, 1, True, "NHWC"),              # ceil drops a window in padding
        ((1, 7, 9, 4), 3, 3, 1, "same", False, "NCHW"),        # 'same' with odd totals
        ((2, 8, 7, 10), (3, 2), (2, 3), 1, ((2, 1), (0, 1)), True, "NHWC"),
    ]
    if with_dilation:
        fixed.append(((1, 9, 8, 3), 3, 2, (2, 3), ((1, 3), (2, 0)), True, "NCHW"))
        fixed.append(((2, 1, 1, 3), 2, 1, 3, ((2, 1), (2, 1)), False, "NHWC"))  # pad-only windows
    cases = [c for c in fixed if _fits(c[0], c[1], c[2], c[3], c[4], c[5])]
    for c in grid:
        if len(cases) >= count:
            break
        if _fits(c[0], c[1], c[2], c[3], c[4], c[5]):
            cases.append(c)
    return cases


def _case_id(c):
    shape, k, s, d, pad, ceil, layout = c
    return f"{layout}-x{'x'.join(map(str, shape))}-k{k}-s{s}-d{d}-p{pad}-ceil{int(ceil)}".replace(" ", "")


MAX_CASES = _make_cases(120, True, 1)
AVG_CASES = _make_cases(120, False, 2)


def _x(rng, shape_nhwc, layout, distinct=False):
    n, h, w, c = shape_nhwc
    size = n * h * w * c
    if distinct:  # distinct values at least 0.01 apart: no ties, no kinks for finite differences
        x = (rng.permutation(size) * 0.01 - size * 0.005).reshape(shape_nhwc)
    else:
        x = rng.standard_normal(shape_nhwc)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


# ---- max pooling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool2d_forward_and_argmax(case, rng):
    shape, k, s, d, pad, ceil, layout = case
    # few distinct values -> many ties, checking the first-in-scan-order rule
    x = _x(rng, shape, layout)
    x = np.round(x * 2).astype(np.float32)
    y = nn.max_pool2d(x, k, s, pad, layout, dilations=d, ceil_mode=ceil)
    y2, arg = nn.max_pool2d_with_argmax(x, k, s, pad, layout, dilations=d, ceil_mode=ceil)
    ry, rarg = ref.max_pool2d(x, k, s, pad, layout, d, ceil)
    assert y.dtype == np.float32 and arg.dtype == np.int64
    assert y.shape == ry.shape and arg.shape == ry.shape
    np.testing.assert_array_equal(y, ry.astype(np.float32))
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(arg, rarg)


@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool2d_grad_vs_twin(case, rng):
    shape, k, s, d, pad, ceil, layout = case
    x = _x(rng, shape, layout)
    kw = dict(strides=s, padding=pad, data_format=layout, dilations=d, ceil_mode=ceil)
    y, arg = nn.max_pool2d_with_argmax(x, k, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = nn.max_pool2d_grad(x, dy, k, **kw)
    _, rarg = ref.max_pool2d(x, k, s, pad, layout, d, ceil)
    np.testing.assert_allclose(dx, ref.scatter_grad(x.shape, dy, rarg), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(nn.max_pool2d_grad(x, dy, k, argmax=arg, **kw), dx)


def _taps_of_argmax(arg, x_shape, out_shape, k, s, d, pad, ceil, layout):
    """The tap positions i * kw + j an argmax stands for (255 where it is -1): the twin of taps."""
    n, h, w, c = (x_shape if layout == "NHWC" else (x_shape[0], x_shape[2], x_shape[3], x_shape[1]))
    (kh, kw), (sh, sw), (dh, dw) = _pair(k), _pair(s if s is not None else k), _pair(d)
    pt, _, pl, _ = ref.pads_of(pad, (h, w), k, s if s is not None else k, d)
    idx = np.indices(out_shape)
    yo, xo = (idx[1], idx[2]) if layout == "NHWC" else (idx[2], idx[3])
    a = arg.astype(np.int64)
    flat = a % (h * w * c) // c if layout == "NHWC" else a % (h * w)
    ih, iw = flat // w, flat % w
    i, j = (ih - (yo * sh - pt)) // dh, (iw - (xo * sw - pl)) // dw
    return np.where(a < 0, 255, i * kw + j).astype(np.uint8)


@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool2d_taps_are_the_argmax(case, rng):
    """Training's one-byte taps: the argmax's choices (ties, zeros of both signs, NaN, infinities,
    windows of padding only), and a backward with the argmax backward's bits."""
    shape, k, s, d, pad, ceil, layout = case
    x = np.round(_x(rng, shape, layout) * 2).astype(np.float32)  # few values: many ties
    flat = x.reshape(-1)
    flat[rng.random(flat.size) < 0.1] = -0.0
    flat[rng.random(flat.size) < 0.03] = np.nan
    flat[rng.random(flat.size) < 0.03] = -np.inf
    flat[rng.random(flat.size) < 0.02] = np.inf
    kw = dict(strides=s, padding=pad, data_format=layout, dilations=d, ceil_mode=ceil)
    y, arg = nn.max_pool2d_with_argmax(x, k, **kw)
    yt, taps = nn.max_pool2d_with_taps(x, k, **kw)
    assert taps.dtype == np.uint8 and taps.shape == y.shape
    assert _same_bits(yt, y)
    np.testing.assert_array_equal(taps, _taps_of_argmax(arg, x.shape, y.shape, k, s, d, pad, ceil, layout))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy.reshape(-1)[::7] = -0.0
    dx = nn.max_pool2d_grad(x.shape, dy, k, taps=taps, **kw)
    assert _same_bits(dx, nn.max_pool2d_grad(x, dy, k, argmax=arg, **kw))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool2d_taps_threads_and_first_nan_zero(layout, threads, rng):
    x = _first_nan_and_zero_planes()  # NCHW
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for k, s, pad in [(2, 2, "valid"), (3, 2, 1), ((2, 3), (1, 2), "valid"), (3, 1, "same")]:
        kw = dict(strides=s, padding=pad, data_format=layout)
        y, arg = nn.max_pool2d_with_argmax(x, k, **kw)
        yt, taps = nn.max_pool2d_with_taps(x, k, **kw)
        assert _same_bits(yt, y)
        dy = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
        assert _same_bits(nn.max_pool2d_grad(x.shape, dy, k, taps=taps, **kw),
                          nn.max_pool2d_grad(x, dy, k, argmax=arg, **kw))
    # disjoint windows (the backward's store-only path), overlapping ones: any thread count, same bits
    shape = (5, 26, 26, 70) if layout == "NHWC" else (5, 70, 26, 26)
    xb = np.round(rng.standard_normal(shape) * 3).astype(np.float32)
    for k, s in [(2, 2), (3, 2)]:
        out = []
        for t in (1, 2):
            threads(t)
            yb, tb = nn.max_pool2d_with_taps(xb, k, s, data_format=layout)
            dyb = np.linspace(-1, 1, yb.size, dtype=np.float32).reshape(yb.shape)
            out.append((yb, tb, nn.max_pool2d_grad(xb.shape, dyb, k, s, data_format=layout, taps=tb)))
        for a, b in zip(*out):
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_max_pool2d_taps_bad_input():
    x = np.zeros((2, 4, 4, 3), np.float32)
    y, taps = nn.max_pool2d_with_taps(x, 2)
    dy = np.ones_like(y)
    with pytest.raises(ValueError, match="taps must be uint8"):
        nn.max_pool2d_grad(x.shape, dy, 2, taps=taps.astype(np.int64))
    with pytest.raises(ValueError, match="taps must be uint8"):
        nn.max_pool2d_grad(x.shape, dy, 2, taps=taps[:1])
    for bad in (4, 254):  # a 2x2 window has taps 0..3 (and 255: none)
        t = taps.copy()
        t[1, 1, 0, 2] = bad
        with pytest.raises(ValueError, match="outside its window"):
            nn.max_pool2d_grad(x.shape, dy, 2, taps=t)
    # overlapping windows with padding (the general path): a tap past the window, a tap in the padding
    y3, t3 = nn.max_pool2d_with_taps(x, 3, 1, "same")
    for at, bad in (((0, 2, 2, 1), 9), ((0, 0, 0, 1), 0)):  # window (0, 0): tap 0 lies in the padding
        t = t3.copy()
        t[at] = bad
        with pytest.raises(ValueError, match="outside its window"):
            nn.max_pool2d_grad(x.shape, np.ones_like(y3), 3, 1, "same", taps=t)
    with pytest.raises(ValueError, match="shape must be 4 positive ints"):
        nn.max_pool2d_grad((2, 4, 4), dy, 2, taps=taps)
    with pytest.raises(ValueError, match="more than 255 taps"):
        nn.max_pool2d_with_taps(np.zeros((1, 20, 20, 1), np.float32), 16)


FD_CASES = [
    ((2, 5, 6, 3), 2, None, 1, "valid", False, "NHWC"),
    ((1, 7, 5, 2), 3, 2, 1, "same", True, "NCHW"),
    ((2, 6, 7, 3), 3, (1, 2), (2, 1), ((1, 2), (0, 1)), True, "NHWC"),
    ((1, 5, 5, 4), (2, 3), 1, 1, 1, False, "NCHW"),
    ((3, 4, 4, 1), 2, 3, 1, "same", False, "NHWC"),
]


@pytest.mark.parametrize("case", FD_CASES, ids=_case_id)
def test_max_pool2d_grad_finite_differences(case, rng):
    shape, k, s, d, pad, ceil, layout = case
    x = _x(rng, shape, layout, distinct=True)
    kw = dict(strides=s, padding=pad, data_format=layout, dilations=d, ceil_mode=ceil)
    r = rng.standard_normal(nn.max_pool2d(x, k, **kw).shape)
    dx = nn.max_pool2d_grad(x, r.astype(np.float32), k, **kw)
    f = lambda v: ref.max_pool2d(v, k, s, pad, layout, d, ceil)[0]  # noqa: E731
    gradcheck.check_grad(f, x.astype(np.float64), r, dx, rng, count=x.size, name="max_pool2d")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool2d_nan_and_ties(layout):
    x = np.zeros((1, 4, 4, 2), dtype=np.float32)  # NHWC; all ties
    x[0, 1, 1, 0] = np.nan
    x[0, 0, 3, 1] = np.nan
    x[0, 3, 2, 1] = np.inf
    x[0, 2, 2, 0] = np.nan
    x[0, 2, 3, 0] = 5.0
    xin = x if layout == "NHWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y, arg = nn.max_pool2d_with_argmax(xin, 2, data_format=layout)
    ry, rarg = ref.max_pool2d(xin, 2, 2, "valid", layout)
    np.testing.assert_array_equal(y, ry.astype(np.float32))
    np.testing.assert_array_equal(arg, rarg)
    yn = y if layout == "NHWC" else y.transpose(0, 2, 3, 1)
    assert np.isnan(yn[0, 0, 0, 0]) and np.isnan(yn[0, 0, 1, 1]) and np.isnan(yn[0, 1, 1, 0])
    assert yn[0, 1, 1, 1] == np.inf and yn[0, 0, 0, 1] == 0
    # the tie in window (0, 0), channel 1 resolves to the first tap: x[0, 0, 0, 1]
    flat = np.arange(x.size).reshape(x.shape)
    if layout == "NCHW":
        flat = np.arange(x.size).reshape(xin.shape).transpose(0, 2, 3, 1)
    an = arg if layout == "NHWC" else arg.transpose(0, 2, 3, 1)
    assert an[0, 0, 0, 1] == flat[0, 0, 0, 1]
    assert an[0, 0, 0, 0] == flat[0, 1, 1, 0]            # the NaN wins
    assert an[0, 1, 1, 0] == flat[0, 2, 2, 0]            # NaN beats a later 5.0


def test_max_pool2d_padding_never_wins():
    x = np.full((1, 3, 3, 2), -np.inf, dtype=np.float32)
    x[0, 2, 2, 1] = -1e30
    y, arg = nn.max_pool2d_with_argmax(x, 3, 1, padding="same")
    assert np.all(y[..., 0] == -np.inf)
    assert np.all(arg >= 0)  # a real (-inf) element, not the padding
    ry, rarg = ref.max_pool2d(x, 3, 1, "same")
    np.testing.assert_array_equal(arg, rarg)
    # a window holding padding only (dilation skips over the input): -inf and argmax -1
    x1 = np.ones((1, 1, 1, 2), dtype=np.float32)
    y1, a1 = nn.max_pool2d_with_argmax(x1, (2, 1), 1, padding=((2, 1), (0, 0)), dilations=(3, 1))
    assert y1.shape == (1, 1, 1, 2)
    assert np.all(y1 == -np.inf) and np.all(a1 == -1)
    np.testing.assert_array_equal(nn.max_pool2d_grad(x1, np.ones_like(y1), (2, 1), 1, ((2, 1), (0, 0)),
                                                     dilations=(3, 1)), 0)
    np.testing.assert_array_equal(
        nn.avg_pool2d(x1, (2, 1), 1, padding=((1, 0), (0, 0))), np.ones((1, 1, 1, 2)))


# ---- NCHW max pooling without argmax (the inference kernel) ---------------------------------------
# nn.max_pool2d on NCHW input without argmax runs its own kernel (pool.c, max_nchw_planes): vectorised
# loops with the window a constant for 3x3 and 2x2 windows at stride 1 or 2, a run-time loop for any
# other window, a scalar loop for windows that stick out of the input (padding, ceil_mode), and the
# argmax path's loop for a plane holding a NaN. Checked bit for bit against the twin and against the
# argmax path (whose y is the reference loop) over a grid of sizes, paddings and ceil_mode.

NCHW_WINDOWS = [  # (pool, strides, dilations)
    (3, 2, 1), (3, 1, 1), (2, 2, 1), (2, 1, 1),           # the constant-window loops
    ((2, 3), (1, 2), 1), (3, 3, 1), (3, 2, 2), ((3, 2), 2, (2, 1)), (1, 2, 1), (4, 2, 1),
]
NCHW_SIZES = [(1, 1), (2, 2), (3, 3), (4, 5), (7, 6), (9, 13), (16, 17), (27, 27), (6, 41)]
NCHW_PADS = ["valid", 1, ((0, 1), (1, 0)), ((1, 0), (0, 1)), "same"]


def _nchw_values(rng, shape, nan_plane=None):
    """Few distinct values (many ties), signed zeros and infinities; NaN in one plane if asked."""
    x = np.round(rng.standard_normal(shape) * 1.5).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.random(flat.size) < 0.15] = -0.0
    flat[rng.random(flat.size) < 0.03] = np.inf
    flat[rng.random(flat.size) < 0.03] = -np.inf
    if nan_plane is not None:
        plane = x.reshape(-1, shape[2] * shape[3])[nan_plane]
        plane[rng.integers(0, plane.size, size=2)] = np.nan
    return x


def _same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("window", NCHW_WINDOWS, ids=lambda w: f"k{w[0]}-s{w[1]}-d{w[2]}".replace(" ", ""))
def test_max_pool2d_nchw_inference_grid(window, rng):
    k, s, d = window
    checked = 0
    for (h, w), pad, ceil in itertools.product(NCHW_SIZES, NCHW_PADS, [False, True]):
        if not _fits((1, h, w, 1), k, s, d, pad, ceil):
            continue
        x = _nchw_values(rng, (2, 3, h, w), nan_plane=4 if (h + w) % 2 else None)
        y = nn.max_pool2d(x, k, s, pad, "NCHW", dilations=d, ceil_mode=ceil)
        ry, _ = ref.max_pool2d(x, k, s, pad, "NCHW", d, ceil)
        np.testing.assert_array_equal(y, ry.astype(np.float32), err_msg=f"{(h, w)} {pad} {ceil}")
        finite = ~np.isnan(y)
        assert np.array_equal(np.signbit(y[finite]), np.signbit(ry[finite])), f"{(h, w)} {pad} {ceil}"
        ya, _ = nn.max_pool2d_with_argmax(x, k, s, pad, "NCHW", dilations=d, ceil_mode=ceil)
        assert _same_bits(y, ya), f"{(h, w)} {pad} {ceil}"
        checked += 1
    assert checked >= 20


def _first_nan_and_zero_planes():
    """x[1, 4, 7, 9] (NCHW): every window's rows 0 and 1 hold, plane 0 two NaNs with different
    payloads, plane 1 -0 before +0 in scan order (+0 first in column order), plane 2 +0 before -0,
    plane 3 NaN after a +inf."""
    x = np.full((1, 4, 7, 9), -1.0, dtype=np.float32)
    bits = x.view(np.uint32)
    bits[0, 0, 0::2, 1::2] = 0x7FC00001
    bits[0, 0, 1::2, 0::2] = 0xFFC00002
    x[0, 1, 0::2, 1::2] = -0.0
    x[0, 1, 1::2, 0::2] = 0.0
    x[0, 2, 0::2, 1::2] = 0.0
    x[0, 2, 1::2, 0::2] = -0.0
    x[0, 3, 0::2, 0::2] = np.inf
    x[0, 3, 1::2, 1::2] = np.nan
    return x


@pytest.mark.parametrize("window", [(3, 2), (2, 2), (3, 1), ((2, 3), (1, 2))], ids=str)
def test_max_pool2d_nchw_first_nan_and_first_zero(window):
    """The first NaN in (kh, kw) scan order wins with its own bits; of equal zeros the first keeps its
    sign (a per-column or per-row-last order would pick the other one here)."""
    k, s = window
    x = _first_nan_and_zero_planes()
    for pad in ["valid", 1]:
        y = nn.max_pool2d(x, k, s, pad, "NCHW")
        ya, _ = nn.max_pool2d_with_argmax(x, k, s, pad, "NCHW")
        assert _same_bits(y, ya)
        ry, _ = ref.max_pool2d(x, k, s, pad, "NCHW")
        np.testing.assert_array_equal(y, ry.astype(np.float32))
        finite = ~np.isnan(y)
        assert np.array_equal(np.signbit(y[finite]), np.signbit(ry[finite]))
    # valid windows of the 2x2 / 3x3 pools start on even rows and span both row parities
    y = nn.max_pool2d(x, k, s, "valid", "NCHW")
    yb = y.view(np.uint32)
    if window in [(3, 2), (2, 2)]:
        assert np.all(yb[0, 0] == 0x7FC00001)
        assert np.all(np.signbit(y[0, 1])) and not np.any(np.signbit(y[0, 2]))
        assert np.all(np.isnan(y[0, 3]))


def test_max_pool2d_nchw_padding_only_windows_and_threads(threads, rng):
    x1 = np.ones((1, 2, 1, 1), dtype=np.float32)
    y1 = nn.max_pool2d(x1, (2, 1), 1, padding=((2, 1), (0, 0)), data_format="NCHW", dilations=(3, 1))
    assert y1.shape == (1, 2, 1, 1) and np.all(y1 == -np.inf)
    x = _nchw_values(rng, (3, 70, 19, 17), nan_plane=9)
    kw = dict(padding=((1, 0), (0, 1)), data_format="NCHW", ceil_mode=True)
    threads(1)
    r1 = [nn.max_pool2d(x, 3, 2, **kw), nn.max_pool2d(x, (2, 3), 1, dilations=(2, 1), **kw)]
    threads(2)
    r2 = [nn.max_pool2d(x, 3, 2, **kw), nn.max_pool2d(x, (2, 3), 1, dilations=(2, 1), **kw)]
    for a, b in zip(r1, r2):
        assert _same_bits(a, b)


# ---- average pooling ------------------------------------------------------------------------------

@pytest.mark.parametrize("cip", [False, True])
@pytest.mark.parametrize("case", AVG_CASES, ids=_case_id)
def test_avg_pool2d_forward(case, cip, rng):
    shape, k, s, _, pad, ceil, layout = case
    x = _x(rng, shape, layout)
    y = nn.avg_pool2d(x, k, s, pad, layout, ceil_mode=ceil, count_include_pad=cip)
    ry = ref.avg_pool2d(x, k, s, pad, layout, ceil, cip)
    assert y.dtype == np.float32 and y.shape == ry.shape
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cip", [False, True])
@pytest.mark.parametrize("case", AVG_CASES[::3], ids=_case_id)
def test_avg_pool2d_grad_is_adjoint(case, cip, rng):
    """<avg(x), dy> == <x, avg_grad(dy)>: the backward is the forward's transpose."""
    shape, k, s, _, pad, ceil, layout = case
    x = _x(rng, shape, layout)
    kw = dict(strides=s, padding=pad, data_format=layout, ceil_mode=ceil, count_include_pad=cip)
    y = nn.avg_pool2d(x, k, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = nn.avg_pool2d_grad(x, dy, k, **kw)
    ry = ref.avg_pool2d(x, k, s, pad, layout, ceil, cip)
    lhs = float(np.sum(ry * dy))
    rhs = float(np.sum(x.astype(np.float64) * dx))
    assert abs(lhs - rhs) <= 1e-4 * (np.abs(ry).sum() * np.abs(dy).max() + 1)


AVG_FD_CASES = [
    ((2, 5, 6, 3), 2, None, 1, "valid", False, "NHWC"),
    ((1, 7, 5, 2), 3, 2, 1, "same", True, "NCHW"),
    ((2, 6, 7, 3), 3, (1, 2), 1, ((1, 2), (0, 1)), True, "NHWC"),
    ((1, 5, 5, 4), (2, 3), 1, 1, 1, False, "NCHW"),
    ((3, 5, 4, 1), 3, 2, 1, ((2, 0), (1, 2)), True, "NCHW"),
]


@pytest.mark.parametrize("cip", [False, True])
@pytest.mark.parametrize("case", AVG_FD_CASES, ids=_case_id)
def test_avg_pool2d_grad_finite_differences(case, cip, rng):
    shape, k, s, _, pad, ceil, layout = case
    x = _x(rng, shape, layout)
    kw = dict(strides=s, padding=pad, data_format=layout, ceil_mode=ceil, count_include_pad=cip)
    r = rng.standard_normal(nn.avg_pool2d(x, k, **kw).shape)
    dx = nn.avg_pool2d_grad(x, r.astype(np.float32), k, **kw)
    f = lambda v: ref.avg_pool2d(v, k, s, pad, layout, ceil, cip)  # noqa: E731
    gradcheck.check_grad(f, x.astype(np.float64), r, dx, rng, count=x.size, name="avg_pool2d")


def test_avg_pool2d_count_include_pad_known_values():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    ex = nn.avg_pool2d(x, 2, 2, padding=1, count_include_pad=False)[0, :, :, 0]
    inc = nn.avg_pool2d(x, 2, 2, padding=1, count_include_pad=True)[0, :, :, 0]
    np.testing.assert_allclose(ex, [[1, 2.5], [5.5, 7]])
    np.testing.assert_allclose(inc, [[0.25, 1.25], [2.75, 7]])
    # ceil mode: the extra window is clipped to the padded input for the include-pad divisor
    x5 = np.ones((1, 5, 5, 1), dtype=np.float32)
    inc5 = nn.avg_pool2d(x5, 2, 2, padding=((0, 1), (0, 1)), ceil_mode=True,
                         count_include_pad=True)[0, :, :, 0]
    np.testing.assert_allclose(inc5, [[1, 1, 0.5]] * 2 + [[0.5, 0.5, 0.25]])
    ceil = nn.avg_pool2d(x5, 2, 2, ceil_mode=True, count_include_pad=True)[0, :, :, 0]
    np.testing.assert_allclose(ceil, np.ones((3, 3)))  # beyond the padded input: not counted


# ---- output sizes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("h,k,s,p,ceil,expected", [
    (5, 2, 2, (0, 0), False, 2), (5, 2, 2, (0, 0), True, 3), (6, 3, 2, (1, 1), True, 4),
    (6, 3, 3, (1, 1), True, 3), (4, 3, 2, (0, 2), True, 2), (1, 1, 3, (0, 0), True, 1),
    (7, 3, 2, (2, 2), True, 5), (7, 3, 2, (2, 2), False, 5), (8, 2, 3, (1, 0), True, 3),
])
def test_pool_output_size(h, k, s, p, ceil, expected):
    assert ref.out_len(h, k, s, 1, p[0], p[1], ceil) == expected  # the twin agrees with PyTorch
    x = np.zeros((1, h, 1, 1), dtype=np.float32)
    y = nn.max_pool2d(x, (k, 1), (s, 1), padding=(p, (0, 0)), ceil_mode=ceil)
    assert y.shape == (1, expected, 1, 1)


# ---- global pooling -------------------------------------------------------------------------------

GLOBAL_SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (3, 1, 4, 70), (1, 9, 2, 129)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_pools_forward(shape, layout, rng):
    x = _x(rng, shape, layout)
    x.reshape(-1)[::7] = 0.5  # ties
    n, c = shape[0], shape[3]
    ya = nn.global_avg_pool2d(x, layout)
    ym = nn.global_max_pool2d(x, layout)
    np.testing.assert_allclose(ya, ref.global_avg_pool2d(x, layout), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ym, ref.global_max_pool2d(x, layout)[0].astype(np.float32))
    keep = (n, 1, 1, c) if layout == "NHWC" else (n, c, 1, 1)
    assert nn.global_avg_pool2d(x, layout, keepdims=True).shape == keep
    np.testing.assert_array_equal(nn.global_max_pool2d(x, layout, keepdims=True).reshape(n, c), ym)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_global_max_pool_nan(layout, rng):
    x = _x(rng, (2, 3, 4, 5), layout)
    x.reshape(-1)[[3, 40, 77]] = np.nan
    np.testing.assert_array_equal(nn.global_max_pool2d(x, layout),
                                  ref.global_max_pool2d(x, layout)[0].astype(np.float32))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_pools_grad_vs_twin(shape, layout, rng):
    x = _x(rng, shape, layout)
    x.reshape(-1)[::5] = 0.25  # ties: the first maximum gets the gradient
    n, h, w, c = shape
    dy = rng.standard_normal((n, c)).astype(np.float32)
    dxa = nn.global_avg_pool2d_grad(x, dy, layout)
    exp = dy / (h * w)
    exp = exp[:, None, None, :] if layout == "NHWC" else exp[:, :, None, None]
    np.testing.assert_allclose(dxa, np.broadcast_to(exp, x.shape), rtol=1e-6)
    dxm = nn.global_max_pool2d_grad(x, dy, layout)
    _, arg = ref.global_max_pool2d(x, layout)
    np.testing.assert_array_equal(dxm, ref.scatter_grad(x.shape, dy, arg).astype(np.float32))
    keep = dy.reshape((n, 1, 1, c) if layout == "NHWC" else (n, c, 1, 1))
    np.testing.assert_array_equal(nn.global_max_pool2d_grad(x, keep, layout), dxm)
    np.testing.assert_array_equal(nn.global_avg_pool2d_grad(x, keep, layout), dxa)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_global_pools_grad_finite_differences(layout, rng):
    x = _x(rng, (2, 3, 4, 5), layout, distinct=True)
    r = rng.standard_normal((2, 5))
    for fwd, grad, twin in (
            (nn.global_avg_pool2d, nn.global_avg_pool2d_grad, ref.global_avg_pool2d),
            (nn.global_max_pool2d, nn.global_max_pool2d_grad,
             lambda v, lay: ref.global_max_pool2d(v, lay)[0])):
        dx = grad(x, r.astype(np.float32), layout)
        gradcheck.check_grad(lambda v: twin(v, layout), x.astype(np.float64), r, dx, rng,
                             count=x.size, name=fwd.__name__)


# ---- tf.nn.max_pool -------------------------------------------------------------------------------

def test_max_pool_depth_textbook(rng):
    x = rng.standard_normal((2, 70, 120, 3)).astype(np.float32)
    y = nn.max_pool(x, ksize=(1, 1, 1, 3), strides=(1, 1, 1, 3), padding="VALID")
    assert y.shape == (2, 70, 120, 1)
    np.testing.assert_array_equal(y[..., 0], x.max(axis=-1))


@pytest.mark.parametrize("shape,k", [((2, 3, 4, 6), 2), ((1, 1, 1, 9), 3), ((3, 2, 5, 4), 4),
                                     ((1, 2, 2, 5), 1), ((2, 3, 3, 10), 5)])
def test_max_pool_depth_vs_twin(shape, k, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::4] = 0.0  # ties
    y = nn.max_pool(x, (1, 1, 1, k), (1, 1, 1, k))
    ry, rarg = ref.max_pool_depth(x, k)
    np.testing.assert_array_equal(y, ry.astype(np.float32))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = nn.max_pool_grad(x, dy, (1, 1, 1, k), (1, 1, 1, k))
    np.testing.assert_array_equal(dx, ref.scatter_grad(x.shape, dy, rarg).astype(np.float32))


def test_max_pool_depth_grad_finite_differences(rng):
    x = _x(rng, (2, 3, 2, 6), "NHWC", distinct=True)
    r = rng.standard_normal((2, 3, 2, 2))
    dx = nn.max_pool_grad(x, r.astype(np.float32), (1, 1, 1, 3), (1, 1, 1, 3))
    gradcheck.check_grad(lambda v: ref.max_pool_depth(v, 3)[0], x.astype(np.float64), r, dx, rng,
                         count=x.size, name="max_pool depth")


def _spatial(v):
    """tf.nn ksize/strides (int, 1-, 2- or 4-sequence) -> the max_pool2d pool_size/strides."""
    if isinstance(v, int):
        return v
    v = tuple(v)
    return {1: lambda: v[0], 2: lambda: v, 4: lambda: v[1:3]}[len(v)]()


@pytest.mark.parametrize("ksize,strides,padding", [
    ((1, 2, 2, 1), (1, 2, 2, 1), "VALID"), ((1, 3, 2, 1), (1, 1, 2, 1), "SAME"), (2, 1, "SAME"),
    ([3], [2], "VALID"), ((2, 3), (1, 2), "same")])
def test_max_pool_spatial_matches_max_pool2d(ksize, strides, padding, rng):
    x = _x(rng, (2, 7, 6, 3), "NHWC", distinct=True)
    k4, s4 = _spatial(ksize), _spatial(strides)
    y = nn.max_pool(x, ksize, strides, padding)
    np.testing.assert_array_equal(y, nn.max_pool2d(x, k4, s4, padding.lower()))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(nn.max_pool_grad(x, dy, ksize, strides, padding),
                                  nn.max_pool2d_grad(x, dy, k4, s4, padding.lower()))


def test_max_pool_bad_arguments():
    x = np.zeros((1, 4, 4, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="evenly divide"):
        nn.max_pool(x, (1, 1, 1, 4), (1, 1, 1, 4))
    with pytest.raises(ValueError, match="depth stride"):
        nn.max_pool(x, (1, 1, 1, 3), (1, 1, 1, 2))
    with pytest.raises(ValueError, match="VALID"):
        nn.max_pool(x, (1, 1, 1, 3), (1, 1, 1, 3), padding="SAME")
    with pytest.raises(ValueError, match="spatial"):
        nn.max_pool(x, (1, 2, 2, 2), (1, 2, 2, 2))
    with pytest.raises(ValueError, match="spatial"):
        nn.max_pool(x, (2, 2, 2, 1), (1, 2, 2, 1))
    with pytest.raises(ValueError, match="padding"):
        nn.max_pool(x, 2, 2, padding="FULL")
    with pytest.raises(ValueError, match="ksize"):
        nn.max_pool(x, (1, 2, 2), 2)
    with pytest.raises(ValueError, match="dy"):
        nn.max_pool_grad(x, np.zeros((1, 4, 4, 1)), (1, 1, 1, 3), (1, 1, 1, 3))


# ---- thread invariance ----------------------------------------------------------------------------

def _thread_calls(x, layout):
    kw = dict(strides=(2, 1), padding=((1, 2), (0, 1)), data_format=layout, ceil_mode=True)
    y, arg = nn.max_pool2d_with_argmax(x, 3, dilations=(1, 2), **kw)
    ya = nn.avg_pool2d(x, 3, count_include_pad=True, **kw)
    dy = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
    dya = np.linspace(-1, 1, ya.size, dtype=np.float32).reshape(ya.shape)
    n, c = x.shape[0], x.shape[3] if layout == "NHWC" else x.shape[1]
    dg = np.linspace(-1, 1, n * c, dtype=np.float32).reshape(n, c)
    out = [y, arg, nn.max_pool2d_grad(x, dy, 3, dilations=(1, 2), **kw), ya,
           nn.avg_pool2d_grad(x, dya, 3, count_include_pad=True, **kw),
           nn.global_avg_pool2d(x, layout), nn.global_max_pool2d(x, layout),
           nn.global_avg_pool2d_grad(x, dg, layout), nn.global_max_pool2d_grad(x, dg, layout)]
    if layout == "NHWC":
        yd = nn.max_pool(x, (1, 1, 1, 2), (1, 1, 1, 2))
        out += [yd, nn.max_pool_grad(x, np.ones_like(yd), (1, 1, 1, 2), (1, 1, 1, 2))]
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pooling_thread_invariance(layout, threads, rng):
    x = _x(rng, (3, 17, 19, 70), layout)
    x.reshape(-1)[::11] = 0.0
    threads(1)
    r1 = _thread_calls(x, layout)
    threads(2)
    r2 = _thread_calls(x, layout)
    for a, b in zip(r1, r2):
        assert np.array_equal(a, b)


# ---- bad input ------------------------------------------------------------------------------------

def test_pool_bad_inputs():
    x = np.zeros((2, 4, 5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"x must be a 4-D array.*\(4, 5, 3\)"):
        nn.max_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="x must be a 4-D"):
        nn.avg_pool2d(np.zeros((1, 2, 3, 4, 5)), 2)
    with pytest.raises(ValueError, match=r"max_pool2d \(height\): .*\(pool_size 5, .*larger than the padded"):
        nn.max_pool2d(x, 5)
    with pytest.raises(ValueError, match=r"avg_pool2d \(width\): .*\(pool_size 4, .*larger than the padded"):
        nn.avg_pool2d(x, (2, 4), padding=((0, 0), (0, 0)), data_format="NCHW")
    with pytest.raises(ValueError, match="pool_size must be >= 1"):
        nn.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="strides must be >= 1"):
        nn.avg_pool2d(x, 2, strides=-1)
    with pytest.raises(ValueError, match="dilations must be >= 1"):
        nn.max_pool2d(x, 2, dilations=(1, 0))
    with pytest.raises(ValueError, match="pool_size must be an int or a pair"):
        nn.max_pool2d(x, (2, 2, 2))
    with pytest.raises(TypeError, match="pool_size must be an integer"):
        nn.max_pool2d(x, 2.5)
    with pytest.raises(ValueError, match="padding must be smaller than the pool extent"):
        nn.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="padding must be smaller than the pool extent"):
        nn.avg_pool2d(x, 3, padding=((0, 3), (0, 0)))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        nn.avg_pool2d(x, 3, padding=-1)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        nn.max_pool2d(x, 2, padding="full")
    with pytest.raises(ValueError, match="data_format must be 'NHWC' or 'NCHW'"):
        nn.max_pool2d(x, 2, data_format="HWCN")
    with pytest.raises(TypeError, match="x must hold real numbers.*str"):
        nn.max_pool2d(np.full((1, 2, 2, 1), "a"), 1)
    with pytest.raises(TypeError, match="x must hold real numbers.*complex"):
        nn.avg_pool2d(np.zeros((1, 2, 2, 1), dtype=complex), 1)
    with pytest.raises(ValueError, match="x must not be empty"):
        nn.max_pool2d(np.zeros((0, 2, 2, 1)), 1)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        nn.max_pool2d(x, 2, ceil_mode="yes")
    with pytest.raises(TypeError, match="count_include_pad must be a bool"):
        nn.avg_pool2d(x, 2, count_include_pad=None)
    with pytest.raises(ValueError, match=r"dy must have the forward output shape \(2, 2, 2, 3\), "
                                         r"received \(2, 2, 3, 3\)"):
        nn.max_pool2d_grad(x, np.zeros((2, 2, 3, 3)), 2)
    with pytest.raises(ValueError, match="dy must have the forward output shape"):
        nn.avg_pool2d_grad(x, np.zeros((2, 2, 2)), 2)
    with pytest.raises(TypeError, match="dy must hold real numbers"):
        nn.avg_pool2d_grad(x, np.zeros((2, 2, 2, 3), dtype=object), 2)
    with pytest.raises(ValueError, match="argmax must have the forward output shape"):
        nn.max_pool2d_grad(x, np.zeros((2, 2, 2, 3)), 2, argmax=np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="argmax must be an integer array"):
        nn.max_pool2d_grad(x, np.zeros((2, 2, 2, 3)), 2, argmax=np.zeros((2, 2, 2, 3)))
    with pytest.raises(ValueError, match="argmax holds an index"):
        # image 1's outputs pointing into image 0
        nn.max_pool2d_grad(x, np.zeros((2, 2, 2, 3)), 2, argmax=np.zeros((2, 2, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"x must be a 4-D array"):
        nn.global_avg_pool2d(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\) or \(2, 1, 1, 3\)"):
        nn.global_max_pool2d_grad(x, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="keepdims must be a bool"):
        nn.global_max_pool2d(x, keepdims="no")


def test_pool_accepts_channels_aliases_and_lists(rng):
    x = _x(rng, (1, 4, 4, 2), "NHWC")
    np.testing.assert_array_equal(nn.max_pool2d(x, 2, data_format="channels_last"),
                                  nn.max_pool2d(x.tolist(), [2, 2]))
    xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(nn.avg_pool2d(xc, 2, data_format="channels_first"),
                                  nn.avg_pool2d(xc.astype(np.float64), 2, data_format="NCHW"))
    # non-contiguous views are accepted
    np.testing.assert_array_equal(nn.max_pool2d(x[:, ::-1], 2), nn.max_pool2d(x[:, ::-1].copy(), 2))


def test_core_checks_sizes_and_argmax_ranges():
    """The bindings refuse arrays of the wrong size, and the C backward refuses an argmax that points
    outside its own image/plane (which would race between threads) instead of writing there."""
    from cnnc import _core
    geom = (2, 4, 4, 1, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, "NHWC", False)
    dy = np.ones((2, 2, 2, 1), np.float32)
    dx = np.empty((2, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="max_pool2d_grad: invalid argument"):
        _core.max_pool2d_backward(geom, dy, np.zeros((2, 2, 2, 1), np.int64), dx)
    with pytest.raises(ValueError, match="max_pool2d_grad: invalid argument"):
        _core.max_pool2d_backward(geom, dy, np.full((2, 2, 2, 1), -2, np.int64), dx)
    with pytest.raises(ValueError, match="internal: y has 7 elements, the C call needs 8"):
        _core.max_pool2d_forward(geom, np.zeros(32, np.float32), np.empty(7, np.float32))
    with pytest.raises(ValueError, match="internal: dx has"):
        _core.avg_pool2d_backward(geom, False, dy, np.empty(31, np.float32))
    with pytest.raises(ValueError, match="global_max_pool2d_grad: invalid argument"):
        _core.global_max_pool2d_backward(2, 2, 2, 1, np.ones(2, np.float32),
                                         np.array([0, 9], np.int64), np.empty(8, np.float32))
    with pytest.raises(ValueError, match="max_pool_grad \\(depth\\): invalid argument"):
        _core.max_pool_depth_backward(2, 4, 2, 2, np.ones(4, np.float32),
                                      np.array([0, 2, 4, 3], np.int64), np.empty(8, np.float32))


@pytest.mark.parametrize("window", NCHW_WINDOWS, ids=lambda w: f"k{w[0]}-s{w[1]}-d{w[2]}".replace(" ", ""))
def test_max_pool2d_nhwc_inference_equals_argmax_path(window, rng):
    """NHWC inference folds the taps with plain maxima and redoes a row that holds a NaN with the exact
    fold: bit-identical to the argmax (training) path, NaN payloads and signed zeros included."""
    k, s, d = window
    checked = 0
    for (h, w), pad, ceil in itertools.product(NCHW_SIZES, NCHW_PADS, [False, True]):
        if not _fits((1, h, w, 1), k, s, d, pad, ceil):
            continue
        x = _nchw_values(rng, (2, 3, h, w), nan_plane=4 if (h + w) % 2 else None).transpose(0, 2, 3, 1).copy()
        y = nn.max_pool2d(x, k, s, pad, "NHWC", dilations=d, ceil_mode=ceil)
        ya, _ = nn.max_pool2d_with_argmax(x, k, s, pad, "NHWC", dilations=d, ceil_mode=ceil)
        assert _same_bits(y, ya), f"{(h, w)} {pad} {ceil}"
        ry, _ = ref.max_pool2d(x, k, s, pad, "NHWC", d, ceil)
        np.testing.assert_array_equal(y, ry.astype(np.float32), err_msg=f"{(h, w)} {pad} {ceil}")
        checked += 1
    assert checked >= 20


def test_max_pool2d_nhwc_first_nan_and_first_zero():
    x = _first_nan_and_zero_planes().transpose(0, 2, 3, 1).copy()
    for k, s in [(3, 2), (2, 2), (3, 1)]:
        for pad in ["valid", 1]:
            y = nn.max_pool2d(x, k, s, pad, "NHWC")
            ya, _ = nn.max_pool2d_with_argmax(x, k, s, pad, "NHWC")
            assert _same_bits(y, ya)
            assert np.isnan(y[..., 0]).any() and np.isnan(y[..., 3]).any()
