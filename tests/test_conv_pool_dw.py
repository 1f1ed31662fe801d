"""dw and db of a convolution fused with a max pool, from the pooled gradient at the chosen elements
(_nn_core.conv2d_max_pool_dw, the C core's cnnc_conv2d_pool_weight_grad): checked against a NumPy twin
in float64 that sums over the chosen elements' windows, against the dense weight gradient of the
scattered gradient, across tile shapes (segments of one vector, of up to 12, of more than 12), padding,
strides, dilation and pool shapes; the same bits on every ISA path and thread count on exact data; and
the cases it declines."""
import numpy as np
import pytest

import cnnc
from cnnc import _nn_core, nn

RNG = np.random.default_rng(21)


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _pad_of(padding, size, k, s, d):
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def twin(x, wshape, g, taps, pool, strides, padding, dilations):
    """dw[kh, kw, ci, co] and db[co] in float64: every pooled output's g times the input under its
    chosen element's window, padding read as zeros."""
    n, h, w, c = x.shape
    kh, kw, _, cout = wshape
    sh, sw = strides
    dh, dw_ = dilations
    pkh, pkw = pool
    pt, pb = _pad_of(padding, h, kh, sh, dh)
    pl, pr = _pad_of(padding, w, kw, sw, dw_)
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c))
    xp[:, pt:pt + h, pl:pl + w] = x
    dw = np.zeros(wshape)
    ph, pw = g.shape[1], g.shape[2]
    for b in range(n):
        for py in range(ph):
            for px in range(pw):
                for co in range(cout):
                    t = int(taps[b, py, px, co])
                    oy, ox = py * pkh + t // pkw, px * pkw + t % pkw
                    win = xp[b, oy * sh:oy * sh + (kh - 1) * dh + 1:dh, ox * sw:ox * sw + (kw - 1) * dw_ + 1:dw_]
                    dw[..., co] += g[b, py, px, co] * win
    return dw, g.astype(np.float64).sum(axis=(0, 1, 2))


# (x shape NHWC, Cout, kernel, strides, padding, dilations, pool)
CASES = {
    "chollet's first layer (1 channel: three one-vector segments per tile)": ((3, 28, 28, 1), 32, (3, 3), 1, "valid", 1, 2),
    "chollet's second layer (a 12-vector segment)": ((3, 13, 13, 32), 64, (3, 3), 1, "valid", 1, 2),
    "7x7 same on one channel (seven one-vector segments)": ((2, 28, 28, 1), 20, (7, 7), 1, "same", 1, 2),
    "RGB, channel tail (two-vector segments, padded copy)": ((2, 15, 16, 3), 13, (3, 3), 1, "same", 1, 2),
    "segments of more than 12 vectors (3 x 40 floats)": ((2, 9, 9, 40), 10, (3, 3), 1, "valid", 1, 2),
    "100 channels: 3 x 100 floats, a 12 + 12 + 12 + 2 vector split": ((1, 8, 8, 100), 7, (3, 3), 1, "same", 1, 2),
    "strided, 3x3 pool": ((2, 21, 21, 4), 9, (3, 3), 2, "same", 1, 3),
    "2x3 pool, odd sizes": ((3, 16, 17, 5), 11, (3, 2), 1, "valid", 1, (2, 3)),
    "dilated in width (a segment per tap)": ((2, 14, 15, 6), 8, (3, 3), 1, "valid", (1, 2), 2),
    "dilated in height, strided": ((2, 17, 13, 8), 12, (2, 3), (2, 1), 1, (2, 1), 2),
    "a pool as large as the output": ((2, 6, 6, 3), 5, (3, 3), 1, "valid", 1, 4),
    "one image, one output channel": ((1, 10, 10, 16), 1, (3, 3), 1, "valid", 1, 2),
}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _case(name, integers=False):
    xs, cout, k, st, pad, dil, pool = CASES[name]
    x = RNG.standard_normal(xs).astype(np.float32)
    w = (RNG.standard_normal(k + (xs[3], cout)) * 0.3).astype(np.float32)
    if integers:  # sums of small integers are exact in float32: every order and ISA gives the same bits
        x, w = np.round(x * 2), np.round(w * 4)
    kw = dict(strides=st, padding=pad, dilations=dil)
    y, taps = nn.conv2d_max_pool(x, w, None, pool, activation="relu", return_taps=True, **kw)
    dp = RNG.standard_normal(y.shape).astype(np.float32)
    if integers:
        dp = np.round(dp * 3)
    g = nn.relu_grad(y, dp)
    g.reshape(-1)[::5] = 0.0
    return x, w, g, taps, _pair(pool), kw


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_pooled_dw_against_the_float64_twin(name, threads):
    x, w, g, taps, pool, kw = _case(name)
    with cnnc._config.thread_limit(threads):
        got = _nn_core.conv2d_max_pool_dw(x, w, g, taps, pool, **kw)
    assert got is not None
    dw, db = got
    want_dw, want_db = twin(x, w.shape, g, taps, pool, _pair(kw["strides"]), kw["padding"], _pair(kw["dilations"]))
    mag, _ = twin(np.abs(x), w.shape, np.abs(g), taps, pool, _pair(kw["strides"]), kw["padding"],
                  _pair(kw["dilations"]))
    np.testing.assert_array_less(np.abs(dw - want_dw), 1e-6 * mag + 1e-30)
    np.testing.assert_array_less(np.abs(db - want_db), 1e-6 * np.abs(g).sum(axis=(0, 1, 2)) + 1e-30)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooled_dw_is_the_dense_dw(name):
    """The dense weight gradient of the scattered gradient, up to rounding."""
    x, w, g, taps, pool, kw = _case(name)
    dz = nn.max_pool2d_grad(nn.conv2d(x, w, **kw).shape, g, taps=taps, pool_size=pool)
    _, dense_dw, dense_db = nn.conv2d_grad(x, w, dz, need_dx=False, **kw)
    dw, db = _nn_core.conv2d_max_pool_dw(x, w, g, taps, pool, **kw)
    mag, _ = twin(np.abs(x), w.shape, np.abs(g), taps, pool, _pair(kw["strides"]), kw["padding"],
                  _pair(kw["dilations"]))
    np.testing.assert_array_less(np.abs(dw - dense_dw), 2e-6 * mag + 1e-30)
    np.testing.assert_allclose(db, dense_db, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooled_dw_same_bits_on_every_path(name, isa, isa_paths):
    """Exact integer data: every ISA path and thread count gives the twin's values bit for bit. Float
    data: each path gives the same bits at any thread count, and AVX-512 (which runs the AVX2 kernel)
    AVX2's."""
    x, w, g, taps, pool, kw = _case(name, integers=True)
    want_dw, want_db = twin(x, w.shape, g, taps, pool, _pair(kw["strides"]), kw["padding"], _pair(kw["dilations"]))
    xf, wf, gf, tf, _, _ = _case(name)
    seen = {}
    for arch in isa_paths:
        isa(arch)
        for threads in (1, 2, 4):
            with cnnc._config.thread_limit(threads):
                dw, db = _nn_core.conv2d_max_pool_dw(x, w, g, taps, pool, **kw)
                fdw, fdb = _nn_core.conv2d_max_pool_dw(xf, wf, gf, tf, pool, **kw)
            assert np.array_equal(_bits(dw), _bits(want_dw)), (arch, threads)
            assert np.array_equal(_bits(db), _bits(want_db)), (arch, threads)
            key = "generic" if arch == "generic" else "avx2"
            got = np.concatenate([_bits(fdw).ravel(), _bits(fdb)])
            seen.setdefault(key, got)
            assert np.array_equal(got, seen[key]), (arch, threads)


def test_pooled_dw_declines_and_rejects():
    name = "chollet's second layer (a 12-vector segment)"
    x, w, g, taps, pool, kw = _case(name)
    assert _nn_core.conv2d_max_pool_dw(x, w, g, taps, pool, **kw) is not None
    for bad in (np.inf, -np.inf, np.nan):  # would meet the skipped zeros: NaN in the dense dw
        xb = x.copy()
        xb[1, 4, 5, 6] = bad
        assert _nn_core.conv2d_max_pool_dw(xb, w, g, taps, pool, **kw) is None
    # a non-finite g is in both sums alike: taken, and it propagates
    gb = g.copy()
    gb[0, 1, 1, 3] = np.inf
    dw, db = _nn_core.conv2d_max_pool_dw(x, w, gb, taps, pool, **kw)
    assert not np.isfinite(db[3]) and np.isfinite(db[:3]).all()
    # NCHW, groups > 1, a one-tap pool: not this path
    xn, wn = np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    assert _nn_core.conv2d_max_pool_dw(xn, wn, g.transpose(0, 3, 1, 2), taps.transpose(0, 3, 1, 2), pool,
                                       data_format="NCHW") is None
    xg, wg = np.zeros((2, 12, 12, 4), np.float32), np.zeros((3, 3, 2, 8), np.float32)
    assert _nn_core.conv2d_max_pool_dw(xg, wg, np.zeros((2, 5, 5, 8), np.float32),
                                       np.zeros((2, 5, 5, 8), np.uint8), 2, groups=2) is None
    assert _nn_core.conv2d_max_pool_dw(x, w, np.zeros((3, 11, 11, 64), np.float32),
                                       np.zeros((3, 11, 11, 64), np.uint8), 1) is None
    # a tap outside its 2 x 2 window; wrong shapes and dtypes
    t = taps.copy()
    t[2, 4, 4, 63] = 4
    with pytest.raises(ValueError):
        _nn_core.conv2d_max_pool_dw(x, w, g, t, pool, **kw)
    with pytest.raises(ValueError, match="taps"):
        _nn_core.conv2d_max_pool_dw(x, w, g, taps.astype(np.int32), pool, **kw)
    with pytest.raises(ValueError, match="g"):
        _nn_core.conv2d_max_pool_dw(x, w, g[:, :4], taps, pool, **kw)
