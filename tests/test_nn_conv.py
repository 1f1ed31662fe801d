"""nn.conv2d and nn.conv2d_grad against the float64 NumPy twins, over an edge-case grid."""
import zlib

import numpy as np
import pytest

import cnnc.nn as nn
import gradcheck
import reference as ref

LAYOUTS = ["NHWC", "NCHW"]

# name, n, h, w, c, cout, (kh, kw), strides, padding, dilations, groups
EXPLICIT_CASES = [
    ("all_ones", 1, 1, 1, 1, 1, (1, 1), 1, "valid", 1, 1),
    ("pointwise", 3, 5, 7, 17, 3, (1, 1), 1, "valid", 1, 1),
    ("k3_valid", 1, 5, 7, 3, 5, (3, 3), 1, "valid", 1, 1),
    ("k5_same_s2", 3, 13, 7, 5, 17, (5, 5), 2, "same", 1, 1),
    ("s_unequal", 1, 13, 13, 3, 5, (3, 3), (1, 3), "valid", 1, 1),
    ("k2x3_s3x2_same", 1, 7, 13, 1, 17, (2, 3), (3, 2), "same", 1, 1),
    ("dil2_same", 1, 13, 7, 5, 3, (3, 3), 1, "same", 2, 1),
    ("dil_unequal", 3, 7, 13, 3, 5, (3, 2), (2, 1), "valid", (2, 1), 1),
    ("pad_asym", 1, 5, 7, 3, 5, (3, 3), 1, ((0, 2), (1, 0)), 1, 1),
    ("pad_asym_s2", 3, 7, 5, 5, 3, (3, 5), 2, ((2, 1), (0, 3)), 1, 1),
    ("pad_pair", 1, 5, 5, 17, 1, (3, 3), 1, (2, 1), 1, 1),
    ("pad_int_s3", 1, 7, 7, 1, 1, (5, 5), 3, 2, 1, 1),
    ("kernel_gt_input", 1, 2, 1, 3, 5, (3, 3), 1, 1, 1, 1),
    ("same_odd_total_s2", 1, 7, 7, 3, 3, (2, 2), 2, "same", 1, 1),
    ("same_negative_total", 1, 13, 13, 3, 3, (1, 1), 5, "same", 1, 1),
    ("same_k2", 1, 5, 7, 3, 5, (2, 2), 1, "same", 1, 1),
    ("same_k6_s5", 1, 13, 13, 1, 1, (6, 6), 5, "same", 1, 1),
    ("groups2", 1, 7, 5, 6, 10, (3, 3), 1, "same", 1, 2),
    ("groups2_asym", 3, 5, 7, 10, 6, (3, 2), (2, 1), ((1, 0), (0, 1)), 1, 2),
    ("groups3_dil", 1, 13, 7, 9, 3, (3, 3), 2, "same", 2, 3),
    ("depthwise", 1, 7, 7, 5, 5, (3, 3), 1, "same", 1, 5),
    ("depthwise_x2_s2", 3, 7, 5, 5, 10, (3, 3), 2, "same", 1, 5),
    ("depthwise17_dil2", 1, 13, 13, 17, 17, (3, 3), 1, "valid", 2, 17),
    ("depthwise_k5_x2", 1, 13, 7, 3, 6, (5, 5), (1, 2), "same", 1, 3),
    ("wide_channels", 1, 13, 13, 17, 33, (3, 3), 1, "same", 1, 1),
    ("batch3_k5", 3, 13, 13, 3, 17, (5, 5), 1, "valid", 1, 1),
    ("k5_s3_dil2_same", 1, 13, 13, 5, 5, (5, 5), 3, "same", 2, 1),
    ("column", 1, 13, 1, 3, 5, (3, 1), 2, "same", 1, 1),
    ("row", 3, 1, 13, 5, 3, (1, 3), (1, 2), ((0, 0), (2, 1)), 1, 1),
    ("pointwise_groups", 3, 5, 7, 6, 4, (1, 1), 1, "valid", 1, 2),
    ("pointwise_strided", 1, 7, 5, 5, 3, (1, 1), (2, 3), "valid", 1, 1),
    ("pointwise_padded", 1, 5, 5, 3, 17, (1, 1), 1, ((1, 0), (2, 1)), 1, 1),
    ("pointwise_same_s2", 3, 7, 7, 17, 5, (1, 1), 2, "same", 1, 1),
]


def _random_cases(count, seed=20240611):
    """Reproducible random draws from the same grid of awkward values."""
    r = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n = int(r.choice([1, 3]))
        h, w = (int(v) for v in r.choice([1, 5, 7, 13], 2))
        kh, kw = (int(v) for v in r.choice([1, 2, 3, 5], 2))
        strides = tuple(int(v) for v in r.choice([1, 2, 3], 2))
        dil = tuple(int(v) for v in r.choice([1, 2], 2))
        kind = r.integers(4)
        if kind == 0:  # depthwise (multiplier 1 or 2)
            c = int(r.choice([1, 3, 5, 17]))
            groups, cout = c, c * int(r.choice([1, 2]))
        else:
            groups = int(r.choice([1, 1, 2]))
            c = groups * int(r.choice([1, 3, 5]))
            cout = groups * int(r.choice([1, 3, 5, 17 if groups == 1 else 3]))
        pk = r.integers(5)
        padding = ["valid", "same", int(r.integers(0, 3)),
                   (int(r.integers(0, 3)), int(r.integers(0, 3))),
                   tuple((int(r.integers(0, 4)), int(r.integers(0, 4))) for _ in range(2))][pk]
        try:
            ref.conv_geometry((n, h, w, c), (kh, kw, c // groups, cout), strides, padding, dil,
                              groups)
        except ValueError:
            continue
        cases.append((f"rand{len(cases)}", n, h, w, c, cout, (kh, kw), strides, padding, dil,
                      groups))
    return cases


CASES = EXPLICIT_CASES + _random_cases(30)
CASE_IDS = [c[0] for c in CASES]


def make_inputs(rng, case, data_format, bias=True):
    _, n, h, w, c, cout, (kh, kw), strides, padding, dil, groups = case
    if data_format == "NHWC":
        x = rng.standard_normal((n, h, w, c))
        wt = rng.standard_normal((kh, kw, c // groups, cout))
    else:
        x = rng.standard_normal((n, c, h, w))
        wt = rng.standard_normal((cout, c // groups, kh, kw))
    b = rng.standard_normal(cout) if bias else None
    kwargs = dict(strides=strides, padding=padding, dilations=dil, groups=groups,
                  data_format=data_format)
    f32 = lambda a: None if a is None else a.astype(np.float32)
    return f32(x), f32(wt), f32(b), kwargs


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conv2d_forward(case, data_format, rng):
    x, w, b, kw = make_inputs(rng, case, data_format, bias=zlib.crc32(case[0].encode()) % 2 == 0)
    y = nn.conv2d(x, w, b, **kw)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape == ref.conv_output_shape(x.shape, w.shape, **kw)
    ref.assert_close(y, ref.conv2d(x, w, b, **kw), mag=ref.conv2d_mag(x, w, b, **kw))


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conv2d_grad_vs_twin(case, data_format, rng):
    x, w, _, kw = make_inputs(rng, case, data_format, bias=False)
    dy = rng.standard_normal(ref.conv_output_shape(x.shape, w.shape, **kw)).astype(np.float32)
    dx, dw, db = nn.conv2d_grad(x, w, dy, **kw)
    for got in (dx, dw, db):
        assert got.dtype == np.float32
    rdx, rdw, rdb = ref.conv2d_grad(x, w, dy, **kw)
    mdx, mdw, mdb = ref.conv2d_grad_mag(x, w, dy, **kw)
    ref.assert_close(dx, rdx, mag=mdx, name="dx")
    ref.assert_close(dw, rdw, mag=mdw, name="dw")
    ref.assert_close(db, rdb, mag=mdb, name="db")


FD_CASES = [c for c in CASES if c[0] in (
    "k3_valid", "k5_same_s2", "dil_unequal", "pad_asym_s2", "kernel_gt_input", "same_odd_total_s2",
    "groups2_asym", "groups3_dil", "depthwise_x2_s2", "depthwise_k5_x2")]


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", FD_CASES, ids=[c[0] for c in FD_CASES])
def test_conv2d_grad_finite_differences(case, data_format, rng):
    x, w, b, kw = make_inputs(rng, case, data_format, bias=True)
    r = rng.standard_normal(ref.conv_output_shape(x.shape, w.shape, **kw))
    dx, dw, db = nn.conv2d_grad(x, w, r.astype(np.float32), **kw)
    r32 = r.astype(np.float32).astype(np.float64)  # the cotangent cnnc actually saw
    mdx, mdw, mdb = ref.conv2d_grad_mag(x, w, r32, **kw)
    gradcheck.check_grad(lambda t: ref.conv2d(t, w, b, **kw), x, r32, dx, rng, mag=mdx, name="dx")
    gradcheck.check_grad(lambda t: ref.conv2d(x, t, b, **kw), w, r32, dw, rng, mag=mdw, name="dw")
    gradcheck.check_grad(lambda t: ref.conv2d(x, w, t, **kw), b, r32, db, rng, mag=mdb, name="db")


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("activation", ref.FUSED_ACTIVATIONS)
def test_conv2d_fused_activation(activation, data_format, rng):
    case = ("act", 3, 7, 5, 5, 6, (3, 3), (2, 1), "same", 1, 1)
    x, w, b, kw = make_inputs(rng, case, data_format)
    # a pre-activation error e moves act(pre) by at most L*e (L = the activation's Lipschitz
    # bound), so the same magnitude-scaled tolerance covers a branch flip at a kink
    y = nn.conv2d(x, w, b, activation=activation, **kw)
    assert y.dtype == np.float32
    mag = ref.conv2d_mag(x, w, b, **kw)
    ref.assert_close(y, ref.conv2d(x, w, b, activation=activation, **kw), mag=mag, atol=1e-6,
                     lipschitz=ref.activation_lipschitz(activation))


def test_conv2d_softmax_channels_last(rng):
    """activation='softmax' normalises over the channel axis, which must be the last one (NHWC)."""
    case = ("sm", 3, 5, 7, 5, 6, (3, 3), 1, "same", 1, 1)
    x, w, b, kw = make_inputs(rng, case, "NHWC")
    y = nn.conv2d(x, w, b, activation="softmax", **kw)
    mag = ref.conv2d_mag(x, w, b, **kw)
    mag = np.broadcast_to(mag.max(axis=-1, keepdims=True), mag.shape)
    ref.assert_close(y, ref.conv2d(x, w, b, activation="softmax", **kw), mag=mag, atol=1e-6,
                     lipschitz=ref.activation_lipschitz("softmax"))
    xc, wc, bc, kwc = make_inputs(rng, case, "NCHW")
    with pytest.raises(ValueError, match="softmax|activation"):
        nn.conv2d(xc, wc, bc, activation="softmax", **kwc)


def test_conv2d_unknown_activation(rng):
    x = np.ones((1, 3, 3, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="relu"):  # the message lists the valid choices
        nn.conv2d(x, w, activation="bogus")


def test_conv2d_is_cross_correlation():
    """A delta input returns the kernel unflipped (rotated 180 deg: conv would flip it)."""
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 2, 0] = 1.0
    k = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    y = nn.conv2d(x, k[:, :, None, None], padding="same")
    # y[i, j] = sum k[a, b] x[i + a - 1, j + b - 1] -> delta at (2, 2) reads k[3 - i, 3 - j]
    assert np.array_equal(y[0, 1:4, 1:4, 0], k[::-1, ::-1])
    # and the plain valid correlation of the kernel with itself-shaped ones
    ones = np.ones((1, 3, 3, 1), np.float32)
    assert nn.conv2d(ones, k[:, :, None, None])[0, 0, 0, 0] == k.sum()
    x2 = np.zeros((1, 3, 3, 1), np.float32)
    x2[0, 0, 0, 0] = 1.0  # top-left pixel only meets w[0, 0] in a valid 3x3 window
    assert nn.conv2d(x2, k[:, :, None, None])[0, 0, 0, 0] == k[0, 0]


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_conv2d_padding_spellings(data_format, rng):
    """'same' == its explicit ((t, b), (l, r)); int p == ((p, p), (p, p)); (ph, pw) == ((ph, ph), (pw, pw))."""
    case = ("pad", 1, 7, 13, 3, 5, (2, 3), (2, 3), "same", 1, 1)
    x, w, b, kw = make_inputs(rng, case, data_format)
    del kw["padding"]
    hw = x.shape[1:3] if data_format == "NHWC" else x.shape[2:4]
    t, bo, l, r = ref.resolve_padding("same", hw, (2, 3), (2, 3), 1)
    assert (t, bo, l, r) == (0, 1, 1, 1)  # odd totals: the extra row/column goes bottom/right
    same = nn.conv2d(x, w, b, padding="same", **kw)
    assert np.array_equal(same, nn.conv2d(x, w, b, padding=((t, bo), (l, r)), **kw))
    assert np.array_equal(nn.conv2d(x, w, b, padding="SAME", **kw), same)
    assert np.array_equal(nn.conv2d(x, w, b, padding=2, **kw),
                          nn.conv2d(x, w, b, padding=((2, 2), (2, 2)), **kw))
    assert np.array_equal(nn.conv2d(x, w, b, padding=(1, 2), **kw),
                          nn.conv2d(x, w, b, padding=((1, 1), (2, 2)), **kw))
    assert np.array_equal(nn.conv2d(x, w, b, padding=0, **kw),
                          nn.conv2d(x, w, b, padding="valid", **kw))


def test_conv2d_same_output_size_is_ceil():
    """Keras 'same': out = ceil(in / stride) for every stride, kernel and dilation."""
    for size in (1, 5, 7, 13):
        for k in (1, 2, 3, 5):
            for s in (1, 2, 3):
                for d in (1, 2):
                    x = np.ones((1, size, size + 2, 1), np.float32)
                    w = np.ones((k, k, 1, 1), np.float32)
                    y = nn.conv2d(x, w, strides=s, dilations=d, padding="same")
                    assert y.shape == (1, -(-size // s), -(-(size + 2) // s), 1), (size, k, s, d)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_conv2d_dtypes_and_views(data_format, rng):
    """Any real dtype and non-contiguous views are accepted; the result is float32 and matches."""
    case = ("dt", 3, 7, 5, 3, 5, (3, 3), 1, "same", 1, 1)
    x, w, b, kw = make_inputs(rng, case, data_format)
    base = nn.conv2d(x, w, b, **kw)
    # float64 inputs holding float32 values: identical after the float32 conversion
    y64 = nn.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kw)
    assert y64.dtype == np.float32 and np.array_equal(y64, base)
    # non-contiguous views of the same values
    xv = np.asfortranarray(x)
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), np.float32)
    big[..., ::2] = x
    assert np.array_equal(nn.conv2d(xv, w, b, **kw), base)
    assert np.array_equal(nn.conv2d(big[..., ::2], w, b, **kw), base)
    assert np.array_equal(nn.conv2d(x, np.asfortranarray(w), b[::-1].copy()[::-1], **kw), base)
    # integer inputs: small integers give exact float32 results
    xi = rng.integers(-3, 4, x.shape)
    wi = rng.integers(-3, 4, w.shape)
    yi = nn.conv2d(xi, wi, **kw)
    assert yi.dtype == np.float32
    assert np.array_equal(yi, ref.conv2d(xi, wi, **kw))
    # bool is a real dtype too
    yb = nn.conv2d(xi > 0, wi, **kw)
    assert np.array_equal(yb, ref.conv2d((xi > 0).astype(np.float64), wi, **kw))


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_conv2d_inputs_not_modified(data_format, rng):
    case = ("ro", 1, 5, 5, 3, 3, (3, 3), 1, "same", 1, 1)
    x, w, b, kw = make_inputs(rng, case, data_format)
    copies = [a.copy() for a in (x, w, b)]
    y = nn.conv2d(x, w, b, activation="relu", **kw)
    dx, dw, db = nn.conv2d_grad(x, w, y, **kw)
    for a, c in zip((x, w, b), copies):
        assert np.array_equal(a, c)


def test_conv2d_layouts_agree(rng):
    """NCHW with transposed data and ONNX weights == NHWC with Keras weights."""
    x = rng.standard_normal((3, 7, 13, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    kw = dict(strides=(2, 1), padding=((1, 2), (0, 1)), dilations=(1, 2), groups=2)
    y = nn.conv2d(x, w, **kw)
    yc = nn.conv2d(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), data_format="NCHW", **kw)
    ref.assert_close(yc.transpose(0, 2, 3, 1), y, mag=ref.conv2d_mag(x, w, **kw), rtol=2e-6,
                     atol_mag=2e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    g = nn.conv2d_grad(x, w, dy, **kw)
    gc = nn.conv2d_grad(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), dy.transpose(0, 3, 1, 2),
                        data_format="NCHW", **kw)
    m = ref.conv2d_grad_mag(x, w, dy, **kw)
    ref.assert_close(gc[0].transpose(0, 2, 3, 1), g[0], mag=m[0])
    ref.assert_close(gc[1].transpose(2, 3, 1, 0), g[1], mag=m[1])
    ref.assert_close(gc[2], g[2], mag=m[2])


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_conv2d_groups_equal_split_convs(data_format, rng):
    """A grouped conv is the concatenation of independent convs over the channel groups."""
    case = ("g", 1, 7, 7, 6, 9, (3, 3), 1, "same", 1, 3)
    x, w, b, kw = make_inputs(rng, case, data_format)
    y = nn.conv2d(x, w, b, **kw)
    del kw["groups"]
    parts = []
    for g in range(3):
        if data_format == "NHWC":
            parts.append(nn.conv2d(x[..., 2 * g:2 * g + 2], w[..., 3 * g:3 * g + 3],
                                   b[3 * g:3 * g + 3], **kw))
        else:
            parts.append(nn.conv2d(x[:, 2 * g:2 * g + 2], w[3 * g:3 * g + 3], b[3 * g:3 * g + 3],
                                   **kw))
    cat = np.concatenate(parts, axis=-1 if data_format == "NHWC" else 1)
    ref.assert_close(y, cat, mag=ref.conv2d_mag(x, w, b, groups=3, **kw), rtol=2e-6, atol_mag=2e-6)


def test_conv2d_grad_uncovered_inputs_get_zero(rng):
    """Valid conv with stride 3 never reads the last rows/columns: their dx must be exactly 0."""
    x = rng.standard_normal((1, 8, 8, 2)).astype(np.float32)  # windows at 0, 3 cover rows 0..4
    w = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    y = nn.conv2d(x, w, strides=3)
    assert y.shape == (1, 3, 3, 3)
    dx, _, _ = nn.conv2d_grad(x, w, np.ones_like(y), strides=3)
    assert np.all(dx[:, 2::3, :, :] == 0) and np.all(dx[:, :, 2::3, :] == 0)


def test_twin_cross_checks(rng):
    """The direct-summation twin agrees with the im2col+GEMM twin and with explicit loops."""
    x = rng.standard_normal((2, 7, 9, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    for kw in (dict(), dict(strides=(2, 3), padding="same", dilations=(2, 1)),
               dict(padding=((2, 0), (1, 3)), strides=2)):
        ref.assert_close(ref.conv2d(x, w, **kw), ref.conv2d_via_im2col(x, w, **kw), rtol=1e-12,
                         atol_mag=1e-12, mag=ref.conv2d_mag(x, w, **kw))
    y = ref.conv2d(x, w)
    want = np.zeros((5, 8, 4))
    for i in range(5):
        for j in range(8):
            for o in range(4):
                want[i, j, o] = sum(x[1, i + a, j + b, c] * w[a, b, c, o]
                                    for a in range(3) for b in range(2) for c in range(3))
    assert np.allclose(y[1], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_conv2d_large_multi_chunk(data_format, rng):
    """A bigger problem: GEMM depth K = 3*3*32 = 288 crosses a ~256 kc block, the im2col matrix of a
    single image is several MB (so a batch is processed in more than one piece by a chunking
    implementation, with a ragged last piece), and m = N*OH*OW spans many mc blocks."""
    case = ("big", 3, 56, 57, 32, 17, (3, 3), 1, "same", 1, 1)
    x, w, b, kw = make_inputs(rng, case, data_format)
    y = nn.conv2d(x, w, b, **kw)
    ref.assert_close(y, ref.conv2d(x, w, b, **kw), mag=ref.conv2d_mag(x, w, b, **kw))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = nn.conv2d_grad(x, w, dy, **kw)
    for g, r, m, name in zip(got, ref.conv2d_grad(x, w, dy, **kw),
                             ref.conv2d_grad_mag(x, w, dy, **kw), ("dx", "dw", "db")):
        ref.assert_close(g, r, mag=m, name=name)


# ---- NCHW forward in pixel panels ----------------------------------------------------------------
# The NCHW forward pass builds its column matrix in panels of output pixels when the whole-image one
# would exceed ~1 MiB; these shapes span two or more panels, with a ragged last one, and panel edges
# that fall inside output rows. With 2 threads, cases with few panels share each panel between the
# threads, cases with many (batch x groups x panels) give each thread whole panels.
# name, n, h, w, c, cout, (kh, kw), strides, padding, dilations, groups
PANEL_CASES = [
    ("panels_same", 1, 40, 43, 32, 5, (3, 3), 1, "same", 1, 1),
    ("panels_pad_asym_s2x1", 2, 75, 77, 16, 7, (3, 5), (2, 1), ((2, 1), (0, 3)), 1, 1),
    ("panels_dil2", 1, 60, 61, 24, 3, (3, 3), 1, "same", 2, 1),
    ("panels_groups2", 1, 50, 53, 64, 8, (3, 3), 1, "valid", 1, 2),
    # enough (image, group, panel) tasks for threads to take whole panels
    ("panels_batch3_groups2", 3, 50, 53, 64, 8, (3, 3), (1, 2), ((1, 0), (2, 1)), (1, 2), 2),
    ("panels_small_k", 1, 120, 121, 3, 17, (3, 3), 1, 1, 1, 1),
    ("panels_k7_s2", 1, 151, 149, 3, 4, (7, 7), 2, 3, 1, 1),
]
PANEL_IDS = [c[0] for c in PANEL_CASES]


def _nchw_col_bytes(case):
    _, n, h, w, c, cout, (kh, kw), strides, padding, dil, groups = case
    x = np.zeros((n, c, h, w), np.float32)
    col = nn.im2col(x[:1, : c // groups], (kh, kw), strides=strides, padding=padding, dilations=dil,
                    data_format="NCHW")
    return col.nbytes


@pytest.mark.parametrize("case", PANEL_CASES, ids=PANEL_IDS)
def test_conv2d_nchw_panels(case, threads, rng):
    assert _nchw_col_bytes(case) > 1 << 20, "the case must need more than one panel"
    x, w, b, kw = make_inputs(rng, case, "NCHW")
    out = {}
    for t in (1, 2):
        threads(t)
        out[t] = (nn.conv2d(x, w, b, **kw), nn.conv2d(x, w, None, activation="relu", **kw))
    assert np.array_equal(out[1][0], out[2][0]) and np.array_equal(out[1][1], out[2][1])
    y, yr = out[1]
    ref.assert_close(y, ref.conv2d(x, w, b, **kw), mag=ref.conv2d_mag(x, w, b, **kw))
    want = ref.conv2d(x, w, None, **kw)
    ref.assert_close(yr, np.maximum(want, 0.0), mag=ref.conv2d_mag(x, w, None, **kw))


@pytest.mark.parametrize("case", [c for c in PANEL_CASES if c[-1] == 1], ids=lambda c: c[0])
def test_conv2d_nchw_panels_equal_one_gemm(case, rng):
    """Without bias, each image's output is bit for bit the GEMM of the weights with the whole-image
    column matrix: working in panels changes which columns a GEMM call sees, never the arithmetic."""
    x, w, _, kw = make_inputs(rng, case, "NCHW", bias=False)
    y = nn.conv2d(x, w, None, **kw)
    cout = w.shape[0]
    for i in range(x.shape[0]):
        col = nn.im2col(x[i:i + 1], w.shape[2:], strides=kw["strides"], padding=kw["padding"],
                        dilations=kw["dilations"], data_format="NCHW")
        direct = nn.matmul(w.reshape(cout, -1), col)
        assert np.array_equal(y[i].reshape(cout, -1), direct)


# ---- NCHW forward with few input channels: the direct path ---------------------------------------
# NCHW single-group convolutions with 1..4 input channels (C*KH*KW <= 256, not 1x1 stride 1 unpadded)
# pack the GEMM's panels straight from x (conv_direct.c), in work items of whole 16-pixel panels that
# cross output rows, and apply bias and activation per block of output channels. The arithmetic is
# the im2col path's: checked against the twin for every activation, and bit for bit against the GEMM
# of the weights with the column matrix (nn.im2col + nn.matmul, then + b and ReLU in float32).
# name, n, h, w, c, cout, (kh, kw), strides, padding, dilations
DIRECT_CASES = [
    ("rgb_k3_s2", 1, 45, 46, 3, 64, (3, 3), 2, "valid", 1),        # SqueezeNet's first layer, smaller
    ("rgb_k7_s2_p3", 2, 31, 30, 3, 13, (7, 7), 2, 3, 1),          # ResNet's, K = 147
    ("c1_k3_same", 1, 17, 16, 1, 7, (3, 3), 1, "same", 1),
    ("c2_k5_s2_same", 2, 19, 22, 2, 6, (5, 5), 2, "same", 1),
    ("c4_k8_k256", 1, 20, 21, 4, 5, (8, 8), 1, "valid", 1),        # K = 256, the largest taken
    ("c3_k2x3_s1x2_asym", 1, 12, 15, 3, 17, (2, 3), (1, 2), ((1, 0), (2, 1)), 1),
    ("c4_dil2_s2", 2, 23, 18, 4, 9, (3, 3), 2, "same", (2, 1)),
    ("c3_s3_pad_heavy", 1, 10, 11, 3, 12, (5, 5), 3, ((4, 2), (3, 4)), 1),  # windows of padding only
    ("c1_1x1_s2", 1, 9, 8, 1, 3, (1, 1), 2, "valid", 1),
    ("c2_1x1_padded", 1, 5, 7, 2, 5, (1, 1), 1, ((1, 0), (0, 2)), 1),
    ("c3_cout1", 3, 14, 9, 3, 1, (3, 3), 1, 1, 1),
    ("c3_tiny", 2, 2, 3, 3, 6, (3, 3), 1, 1, 1),                   # one partial panel per image
    ("c3_one_row", 1, 1, 40, 3, 7, (1, 3), (1, 2), ((0, 0), (1, 1)), 1),
    ("c3_one_col", 1, 37, 1, 3, 8, (3, 1), 1, "same", 1),
    # runs of a panel whose windows all lie inside the row take one loop for the window's taps (3 wide
    # at stride 1 or 2, 7 wide at stride 2); wide rows mix such runs with runs that reach the padding
    ("c2_k3_s1_valid", 1, 11, 37, 2, 8, (3, 3), 1, "valid", 1),
    ("c1_k3_s1_same_wide", 2, 5, 50, 1, 7, (3, 3), 1, "same", 1),
    ("c3_k3_s2_p1_wide", 1, 7, 75, 3, 11, (3, 3), 2, 1, 1),
    ("c3_k7_s2_valid", 1, 17, 40, 3, 6, (7, 7), 2, "valid", 1),
    ("c3_k7_s2_p3_wide", 1, 9, 80, 3, 5, (7, 7), 2, 3, 1),
]
DIRECT_IDS = [c[0] for c in DIRECT_CASES]


def _direct_inputs(rng, case, bias=True):
    _, n, h, w, c, cout, (kh, kw), strides, padding, dil = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((cout, c, kh, kw)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return x, wt, b, dict(strides=strides, padding=padding, dilations=dil, data_format="NCHW")


def _gemm_twin(x, w, b, relu, **kw):
    """act(w[Cout, K] @ col + b) with the steps the im2col path takes, in float32."""
    cout = w.shape[0]
    ys = []
    for i in range(x.shape[0]):
        col = nn.im2col(x[i:i + 1], w.shape[2:], strides=kw["strides"], padding=kw["padding"],
                        dilations=kw["dilations"], data_format="NCHW")
        y = nn.matmul(w.reshape(cout, -1), col)
        if b is not None:
            y = y + b.reshape(cout, 1)
        if relu:
            y = np.where(y > 0, y, np.float32(0.0))
        ys.append(y.astype(np.float32))
    return np.stack(ys)


@pytest.mark.parametrize("case", DIRECT_CASES, ids=DIRECT_IDS)
def test_conv2d_direct_vs_twin_and_gemm(case, threads, rng):
    x, w, b, kw = _direct_inputs(rng, case)
    assert nn.conv2d_algorithm(x, w, **kw) == "direct"
    out = {}
    for t in (1, 2):
        threads(t)
        out[t] = [nn.conv2d(x, w, bb, activation=act, **kw)
                  for bb in (None, b) for act in (None, "relu")]
    for a, c in zip(out[1], out[2]):
        assert np.array_equal(a, c), "the thread count changed the result"
    y_shape = ref.conv_output_shape(x.shape, w.shape, **kw)
    for (bb, act), y in zip([(bb, act) for bb in (None, b) for act in (None, "relu")], out[1]):
        assert y.shape == y_shape and y.dtype == np.float32
        want = _gemm_twin(x, w, bb, act == "relu", **kw).reshape(y_shape)
        assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), f"bias {bb is not None}, {act}"
        ref.assert_close(y, ref.conv2d(x, w, bb, activation=act, **kw),
                         mag=ref.conv2d_mag(x, w, bb, **kw))


@pytest.mark.parametrize("activation", ref.FUSED_ACTIVATIONS)
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_direct_fused_activation(activation, bias, rng):
    case = ("act", 2, 21, 19, 3, 10, (3, 3), 2, 1, 1)
    x, w, b, kw = _direct_inputs(rng, case, bias=bias)
    assert nn.conv2d_algorithm(x, w, **kw) == "direct"
    y = nn.conv2d(x, w, b, activation=activation, **kw)
    ref.assert_close(y, ref.conv2d(x, w, b, activation=activation, **kw),
                     mag=ref.conv2d_mag(x, w, b, **kw), atol=1e-6,
                     lipschitz=ref.activation_lipschitz(activation))
    if activation in (None, "linear", "relu"):  # the same float32 steps as the im2col path
        want = _gemm_twin(x, w, b, activation == "relu", **kw).reshape(y.shape)
        assert np.array_equal(y.view(np.uint32), want.view(np.uint32))


# NHWC: the output pixels are the GEMM's rows; their panels of A are packed straight from x, K (at most
# one k block) multiplied with the packed weights' column panels, bias and ReLU in the registers:
# bit for bit the im2col GEMM (nn.im2col + nn.matmul, then + b and ReLU in float32).
def _nhwc_inputs(rng, case, bias=True):
    x, w, b, kw = _direct_inputs(rng, case, bias)
    kw["data_format"] = "NHWC"
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b, kw


def _gemm_twin_nhwc(x, w, b, relu, **kw):
    col = nn.im2col(x, w.shape[:2], strides=kw["strides"], padding=kw["padding"], dilations=kw["dilations"],
                    data_format="NHWC")
    y = nn.matmul(col, w.reshape(-1, w.shape[3]))
    if b is not None:
        y = y + b
    if relu:
        y = np.where(y > 0, y, np.float32(0.0))
    return y.astype(np.float32)


@pytest.mark.parametrize("case", DIRECT_CASES, ids=DIRECT_IDS)
def test_conv2d_direct_nhwc_vs_twin_and_gemm(case, threads, rng):
    x, w, b, kw = _nhwc_inputs(rng, case)
    assert nn.conv2d_algorithm(x, w, **kw) == "direct"
    out = {}
    for t in (1, 2):
        threads(t)
        out[t] = [nn.conv2d(x, w, bb, activation=act, **kw) for bb in (None, b) for act in (None, "relu")]
    for a, c in zip(out[1], out[2]):
        assert np.array_equal(a, c), "the thread count changed the result"
    y_shape = ref.conv_output_shape(x.shape, w.shape, **kw)
    for (bb, act), y in zip([(bb, act) for bb in (None, b) for act in (None, "relu")], out[1]):
        assert y.shape == y_shape and y.dtype == np.float32
        want = _gemm_twin_nhwc(x, w, bb, act == "relu", **kw).reshape(y_shape)
        assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), f"bias {bb is not None}, {act}"
        ref.assert_close(y, ref.conv2d(x, w, bb, activation=act, **kw), mag=ref.conv2d_mag(x, w, bb, **kw))


@pytest.mark.parametrize("activation", ref.FUSED_ACTIVATIONS)
def test_conv2d_direct_nhwc_fused_activation(activation, rng):
    x, w, b, kw = _nhwc_inputs(rng, ("act", 2, 21, 19, 3, 20, (3, 3), 2, 1, 1))
    assert nn.conv2d_algorithm(x, w, **kw) == "direct"
    y = nn.conv2d(x, w, b, activation=activation, **kw)
    ref.assert_close(y, ref.conv2d(x, w, b, activation=activation, **kw), mag=ref.conv2d_mag(x, w, b, **kw),
                     atol=1e-6, lipschitz=ref.activation_lipschitz(activation))


def test_conv2d_direct_non_finite(rng):
    """inf and NaN inputs propagate as through im2col + GEMM (same arithmetic)."""
    x, w, b, kw = _direct_inputs(rng, ("nf", 1, 9, 10, 3, 7, (3, 3), 1, 1, 1))
    x[0, 1, 4, 4] = np.inf
    x[0, 2, 0, 9] = np.nan
    x[0, 0, 8, 0] = -np.inf
    y = nn.conv2d(x, w, b, **kw)
    want = _gemm_twin(x, w, b, False, **kw).reshape(y.shape)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    fin = ~np.isnan(want)
    np.testing.assert_array_equal(y[fin], want[fin])


def test_conv2d_direct_rule():
    rule = nn.conv2d_algorithm
    assert rule((1, 3, 224, 224), (64, 3, 3, 3), strides=2, data_format="NCHW") == "direct"
    assert rule((1, 4, 20, 20), (5, 4, 8, 8), data_format="NCHW") == "direct"        # K = 256
    assert rule((1, 4, 20, 20), (5, 4, 9, 8), data_format="NCHW") == "im2col"        # K = 288
    assert rule((1, 5, 20, 20), (5, 5, 3, 3), data_format="NCHW") == "im2col"        # 5 channels
    assert rule((1, 20, 20, 3), (3, 3, 3, 64), strides=2) == "direct"                 # NHWC
    assert rule((1, 20, 20, 5), (3, 3, 5, 64)) == "im2col"                            # NHWC, 5 channels
    assert rule((1, 4, 20, 20), (6, 2, 3, 3), groups=2, data_format="NCHW") == "im2col"
    assert rule((1, 3, 20, 20), (6, 3, 1, 1), data_format="NCHW") == "im2col"        # x is the col
    assert rule((1, 3, 20, 20), (6, 3, 1, 1), strides=2, data_format="NCHW") == "direct"
    assert rule((1, 3, 20, 20), (64, 3, 3, 3), data_format="NCHW", data_grad=True) == "im2col"
