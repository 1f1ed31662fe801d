"""The Winograd F(2x2, 3x3) path of conv2d (src_c/winograd.c) against the float64 twin.

conv2d_algorithm says which path a shape takes; every case here asserts it is 'winograd', so a change
of the selection rule cannot silently turn these into im2col tests."""
import numpy as np
import pytest

import cnnc
import cnnc.nn as nn
import reference as ref

RNG = np.random.default_rng(5)


def _case(fmt, n, h, w, cin, cout, seed=0):
    rng = np.random.default_rng(seed)
    if fmt == "NHWC":
        x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
        k = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    else:
        x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
        k = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    return x, k, rng.standard_normal(cout).astype(np.float32)


GRID = [  # n, h, w, cin, cout, padding
    (1, 17, 16, 32, 16, "same"),             # odd output height: the last tile row is cut
    (2, 16, 17, 33, 23, "valid"),            # channel counts off the 32-channel blocks
    (1, 19, 18, 40, 33, ((2, 0), (1, 2))),   # asymmetric padding, a tile row reading padding only
    (3, 9, 11, 33, 16, 1),
    (1, 30, 31, 64, 48, "valid"),
]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", GRID, ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}-{c[5]}" for c in GRID])
@pytest.mark.parametrize("bias,act", [(True, "relu"), (False, None), (True, "tanh")])
def test_matches_the_twin(fmt, case, bias, act):
    n, h, w, cin, cout, pad = case
    x, k, b = _case(fmt, n, h, w, cin, cout)
    b = b if bias else None
    assert nn.conv2d_algorithm(x, k, padding=pad, data_format=fmt) == "winograd"
    y = nn.conv2d(x, k, b, padding=pad, data_format=fmt, activation=act)
    want = ref.conv2d(x, k, b, padding=pad, data_format=fmt, activation=act)
    ref.assert_close(y, want, mag=ref.conv2d_mag(x, k, b, padding=pad, data_format=fmt))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_several_chunks_and_thread_counts(fmt):
    x, k, b = _case(fmt, 3, 50, 50, 64, 64, seed=1)  # 3 x 24 x 24 tiles: more than one chunk
    assert nn.conv2d_algorithm(x, k, data_format=fmt) == "winograd"
    prev = cnnc.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            cnnc.set_num_threads(t)
            outs.append(nn.conv2d(x, k, b, data_format=fmt))
    finally:
        cnnc.set_num_threads(prev)
    np.testing.assert_array_equal(outs[0], outs[1])
    ref.assert_close(outs[0], ref.conv2d(x, k, b, data_format=fmt), mag=ref.conv2d_mag(x, k, b, data_format=fmt))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_infinities_and_nan_propagate_as_in_a_direct_convolution(fmt):
    """The transforms would mix a non-finite input into all four outputs of its tile (inf - inf);
    those tiles are recomputed directly."""
    x, k, b = _case(fmt, 2, 16, 16, 32, 16, seed=2)
    cl = fmt == "NHWC"
    spots = [((0, 3, 4, 5), np.nan), ((0, 8, 8, 0), np.inf), ((1, 0, 15, 7), -np.inf), ((1, 9, 2, 3), np.inf),
             ((1, 9, 3, 3), -np.inf)]
    for (n, i, j, c), v in spots:
        x[(n, i, j, c) if cl else (n, c, i, j)] = v
    assert nn.conv2d_algorithm(x, k, padding="same", data_format=fmt) == "winograd"
    y = nn.conv2d(x, k, b, padding="same", data_format=fmt)
    with np.errstate(invalid="ignore"):
        want = ref.conv2d(x, k, b, padding="same", data_format=fmt)
    assert np.array_equal(np.isnan(y), np.isnan(want))
    assert np.array_equal(np.isposinf(y), np.isposinf(want))
    assert np.array_equal(np.isneginf(y), np.isneginf(want))
    fin = np.isfinite(want)
    assert fin.sum() > 0.9 * fin.size  # most outputs stay finite: the damage is local, as it should be
    with np.errstate(invalid="ignore"):
        mag = ref.conv2d_mag(np.where(np.isfinite(x), x, 0), k, b, padding="same", data_format=fmt)
    ref.assert_close(np.where(fin, y, 0), np.where(fin, want, 0), mag=mag)


def test_selection_rule():
    rule = nn.conv2d_algorithm
    assert rule((1, 18, 18, 32), (3, 3, 32, 16)) == "winograd"       # 16 x 16 outputs: 64 tiles
    assert rule((1, 15, 18, 32), (3, 3, 32, 16)) == "im2col"         # 13 x 16 outputs: 56 tiles
    assert rule((2, 16, 16, 32), (3, 3, 32, 16)) == "winograd"       # 98 tiles
    assert rule((1, 18, 18, 31), (3, 3, 31, 16)) == "im2col"         # too few input channels
    assert rule((1, 18, 18, 16), (3, 3, 16, 64)) == "im2col"         # (SqueezeNet's 16 -> 64)
    assert rule((1, 18, 18, 32), (3, 3, 32, 15)) == "im2col"         # too few output channels
    assert rule((1, 34, 34, 32), (3, 3, 32, 16), strides=2) == "im2col"
    assert rule((1, 22, 22, 32), (3, 3, 32, 16), dilations=2) == "im2col"
    assert rule((1, 18, 18, 64), (3, 3, 32, 32), groups=2) == "im2col"
    assert rule((1, 20, 20, 32), (5, 5, 32, 16)) == "im2col"
    assert rule((1, 32, 18, 18), (16, 32, 3, 3), data_format="NCHW") == "winograd"
    # tiles filled: 3 x 3 outputs take 4 tiles of 4 (0.56 filled), 7 x 7 take 16 (0.77)
    assert rule((16, 5, 5, 32), (3, 3, 32, 16)) == "im2col"           # 64 tiles, 0.56 filled
    assert rule((4, 9, 9, 32), (3, 3, 32, 16)) == "winograd"          # 64 tiles, 0.77 filled


# ---- the data gradient dx of conv2d_grad -------------------------------------------------------------

GRAD_GRID = [  # n, h, w, cin, cout, padding (both channel counts >= 64: the data gradient's rule)
    (2, 14, 13, 64, 72, "same"),           # dx: a convolution of dy with padding 1
    (2, 16, 16, 72, 64, "valid"),          # padding 2 (a "full" convolution)
    (1, 19, 18, 65, 67, ((2, 0), (1, 2))), # asymmetric, the largest padding it takes
]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", GRAD_GRID, ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}-{c[5]}" for c in GRAD_GRID])
def test_data_gradient_matches_the_twin(fmt, case):
    n, h, w, cin, cout, pad = case
    x, k, _ = _case(fmt, n, h, w, cin, cout, seed=4)
    assert nn.conv2d_algorithm(x, k, padding=pad, data_format=fmt, data_grad=True) == "winograd"
    y = nn.conv2d(x, k, padding=pad, data_format=fmt)
    dy = np.random.default_rng(6).standard_normal(y.shape).astype(np.float32)
    dx, dw, db = nn.conv2d_grad(x, k, dy, padding=pad, data_format=fmt)
    rdx, rdw, rdb = ref.conv2d_grad(x, k, dy, padding=pad, data_format=fmt)
    mdx, mdw, mdb = ref.conv2d_grad_mag(x, k, dy, padding=pad, data_format=fmt)
    ref.assert_close(dx, rdx, mag=mdx, name="dx")
    ref.assert_close(dw, rdw, mag=mdw, name="dw")
    ref.assert_close(db, rdb, mag=mdb, name="db")
    # dw alone (need_dx=False) is the same computation
    _, dw2, _ = nn.conv2d_grad(x, k, dy, padding=pad, data_format=fmt, need_dx=False)
    np.testing.assert_array_equal(dw2, dw)


def test_data_gradient_rule():
    rule = lambda *a, **k: nn.conv2d_algorithm(*a, data_grad=True, **k)  # noqa: E731
    assert rule((2, 14, 14, 64), (3, 3, 64, 64), padding="same") == "winograd"
    assert rule((1, 18, 18, 64), (3, 3, 64, 64), padding=3) == "im2col"   # padding 3: dx would need cropping
    assert rule((2, 14, 14, 32), (3, 3, 32, 64), padding="same") == "im2col"  # dx has 32 channels
    assert rule((2, 14, 14, 64), (3, 3, 64, 32), padding="same") == "im2col"  # dy has 32 channels
    assert rule((2, 14, 14, 64), (3, 3, 64, 64), strides=2, padding="same") == "im2col"


def test_data_gradient_nonfinite_dy_propagates_exactly():
    x, k, _ = _case("NHWC", 2, 14, 14, 64, 64, seed=7)
    assert nn.conv2d_algorithm(x, k, padding="same", data_grad=True) == "winograd"
    dy = np.random.default_rng(8).standard_normal((2, 14, 14, 64)).astype(np.float32)
    dy[0, 5, 6, 3] = np.nan
    dy[1, 0, 0, 0] = np.inf
    dx, _, _ = nn.conv2d_grad(x, k, dy, padding="same")
    with np.errstate(invalid="ignore"):
        rdx = ref.conv2d_grad(x, k, dy, padding="same")[0]
    assert np.array_equal(np.isnan(dx), np.isnan(rdx))
    assert np.array_equal(np.isinf(dx), np.isinf(rdx))
    fin = np.isfinite(rdx)
    assert fin.sum() > 0.9 * fin.size


def test_a_block_whose_transform_overflows_is_computed_directly():
    """Finite inputs near the float32 maximum overflow in the input transform (d1 + d2); such tiles are
    recomputed directly, so the outputs are the direct convolution's finite values."""
    x, k, _ = _case("NHWC", 2, 16, 16, 32, 16, seed=4)
    x[0, 4:8, 4:8, :] = 3e38  # rows and columns 4 and 5 sit at positions 1 and 2 of a tile's block
    k *= 1e-3
    assert nn.conv2d_algorithm(x, k, padding="same") == "winograd"
    y = nn.conv2d(x, k, padding="same")
    want = ref.conv2d(x, k, padding="same")
    assert np.isfinite(want).all() and np.isfinite(y).all()
    ref.assert_close(y, want, mag=ref.conv2d_mag(x, k, None, padding="same"))


@pytest.mark.parametrize("pool", [False, True])
def test_the_isa_builds_of_the_transforms_agree(isa, isa_paths, pool):
    """The portable and AVX2 builds of the per-tile transforms compute the same sums: with small
    integers (and weights whose transform is exact) every product and sum is exact, so the outputs are
    the same bits whatever the GEMM kernel. 36 and 20 channels: the AVX2 loops' scalar tails too."""
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 4, (2, 13, 13, 36)).astype(np.float32)
    k = (2 * rng.integers(-2, 3, (3, 3, 36, 20))).astype(np.float32)
    b = rng.integers(-4, 5, 20).astype(np.float32)
    x[1, 4, 6, 3] = np.nan
    model = cnnc.models.Sequential([cnnc.layers.Input((13, 13, 36)),
                                    cnnc.layers.Conv2D(20, 3, activation="relu", padding="same")] +
                                   ([cnnc.layers.MaxPooling2D(2)] if pool else []))
    model.layers[0].set_weights([k, b])
    assert nn.conv2d_algorithm(x, k, padding="same") == "winograd"
    outs = []
    for arch in isa_paths:
        isa(arch)
        model._runner_cache = None
        outs.append(model.predict(x, batch_size=2, verbose=0))
    assert all(np.array_equal(outs[0].view(np.uint32), o.view(np.uint32)) for o in outs[1:])
    assert not np.isnan(outs[0]).any()  # the NaN's outputs went through relu: NaN > 0 is false, so 0


# ---- the weight gradient dw of conv2d_grad: F(3x3, 2x2) ---------------------------------------------

def _grad_case(fmt, case, seed):
    n, h, w, cin, cout, pad = case
    x, k, _ = _case(fmt, n, h, w, cin, cout, seed=seed)
    y = nn.conv2d(x, k, padding=pad, data_format=fmt)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    return x, k, dy, pad


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", GRID, ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}-{c[5]}" for c in GRID])
def test_weight_gradient_matches_the_twin(fmt, case):
    """Odd outputs (dy's last tile row or column read as zeros), channel counts off the blocks,
    asymmetric padding: dw and db against the float64 twin, with and without dx."""
    x, k, dy, pad = _grad_case(fmt, case, seed=11)
    assert nn.conv2d_algorithm(x, k, padding=pad, data_format=fmt, weight_grad=True) == "winograd"
    dx, dw, db = nn.conv2d_grad(x, k, dy, padding=pad, data_format=fmt)
    rdx, rdw, rdb = ref.conv2d_grad(x, k, dy, padding=pad, data_format=fmt)
    mdx, mdw, mdb = ref.conv2d_grad_mag(x, k, dy, padding=pad, data_format=fmt)
    ref.assert_close(dw, rdw, mag=mdw, name="dw")
    ref.assert_close(db, rdb, mag=mdb, name="db")
    ref.assert_close(dx, rdx, mag=mdx, name="dx")
    _, dw2, _ = nn.conv2d_grad(x, k, dy, padding=pad, data_format=fmt, need_dx=False)
    np.testing.assert_array_equal(dw2, dw)


def test_weight_gradient_rule_follows_the_forward():
    rule = lambda *a, **k: nn.conv2d_algorithm(*a, weight_grad=True, **k)  # noqa: E731
    for xs, ws, kw in [((1, 18, 18, 32), (3, 3, 32, 16), {}), ((1, 15, 18, 32), (3, 3, 32, 16), {}),
                       ((1, 18, 18, 31), (3, 3, 31, 16), {}), ((1, 34, 34, 32), (3, 3, 32, 16), {"strides": 2}),
                       ((16, 5, 5, 32), (3, 3, 32, 16), {}), ((2, 14, 14, 64), (3, 3, 64, 64), {"padding": 3}),
                       ((1, 32, 18, 18), (16, 32, 3, 3), {"data_format": "NCHW"})]:
        assert rule(xs, ws, **kw) == nn.conv2d_algorithm(xs, ws, **kw)
    assert rule((1, 18, 18, 32), (3, 3, 32, 16)) == "winograd"
    assert rule((1, 18, 18, 3), (3, 3, 3, 16)) == "direct"  # few taps: conv_dw.c
    with pytest.raises(ValueError, match="not both"):
        nn.conv2d_algorithm((1, 18, 18, 32), (3, 3, 32, 16), data_grad=True, weight_grad=True)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_weight_gradient_chunks_and_thread_counts(fmt):
    """3 x 24 x 24 tiles at 64 -> 64 channels are several chunks, each adding to the 16 sums: the same
    bits with 1 and 2 threads."""
    x, k, dy, pad = _grad_case(fmt, (3, 50, 50, 64, 64, "valid"), seed=13)
    assert nn.conv2d_algorithm(x, k, data_format=fmt, weight_grad=True) == "winograd"
    prev = cnnc.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            cnnc.set_num_threads(t)
            outs.append(nn.conv2d_grad(x, k, dy, data_format=fmt, need_dx=False)[1])
    finally:
        cnnc.set_num_threads(prev)
    np.testing.assert_array_equal(outs[0], outs[1])
    rdw = ref.conv2d_grad(x, k, dy, data_format=fmt)[1]
    ref.assert_close(outs[0], rdw, mag=ref.conv2d_grad_mag(x, k, dy, data_format=fmt)[1], name="dw")


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_weight_gradient_nonfinite_inputs_propagate_as_in_a_direct_sum(fmt):
    """An infinity or NaN in x or dy makes Winograd's dw non-finite; dw is then computed directly, so
    which entries are NaN or infinite is the direct sum's."""
    cl = fmt == "NHWC"
    for spots_x, spots_dy in [([((0, 3, 4, 5), np.nan)], []), ([((1, 9, 2, 3), np.inf)], []),
                              ([], [((0, 5, 6, 3), -np.inf)]), ([((1, 15, 15, 0), np.inf)], [((1, 0, 0, 0), np.inf)])]:
        x, k, dy, pad = _grad_case(fmt, (2, 16, 16, 32, 16, "same"), seed=17)
        for (n, i, j, c), v in spots_x:
            x[(n, i, j, c) if cl else (n, c, i, j)] = v
        for (n, i, j, c), v in spots_dy:
            dy[(n, i, j, c) if cl else (n, c, i, j)] = v
        assert nn.conv2d_algorithm(x, k, padding=pad, data_format=fmt, weight_grad=True) == "winograd"
        dw = nn.conv2d_grad(x, k, dy, padding=pad, data_format=fmt, need_dx=False)[1]
        with np.errstate(invalid="ignore"):
            rdw = ref.conv2d_grad(x, k, dy, padding=pad, data_format=fmt)[1]
        assert np.array_equal(np.isnan(dw), np.isnan(rdw))
        assert np.array_equal(np.isposinf(dw), np.isposinf(rdw))
        assert np.array_equal(np.isneginf(dw), np.isneginf(rdw))
        assert not np.isfinite(rdw).all()


def test_weight_gradient_that_overflows_is_computed_directly():
    """Finite x near the float32 maximum, with opposite signs two rows apart, overflows the input
    transform (d0 - d2); dw is then computed directly: the direct sum's finite values."""
    x, k, dy, pad = _grad_case("NHWC", (2, 16, 16, 32, 16, "same"), seed=23)
    x[0, 4, 4:8, :] = 3e38
    x[0, 6, 4:8, :] = -3e38
    dy *= 1e-4
    assert nn.conv2d_algorithm(x, k, padding=pad, weight_grad=True) == "winograd"
    dw = nn.conv2d_grad(x, k, dy, padding=pad, need_dx=False)[1]
    rdw = ref.conv2d_grad(x, k, dy, padding=pad)[1]
    assert np.isfinite(rdw).all() and np.isfinite(dw).all()
    ref.assert_close(dw, rdw, mag=ref.conv2d_grad_mag(x, k, dy, padding=pad)[1], name="dw")


def test_the_isa_builds_agree_on_the_weight_gradient(isa, isa_paths):
    """Small integers: every product and sum is exact (and G's halves too), so dw is the same bits on
    every ISA path, and equal to the twin's; 36 and 20 channels take the AVX2 loops' scalar tails."""
    rng = np.random.default_rng(29)
    x = rng.integers(-3, 4, (2, 13, 13, 36)).astype(np.float32)
    dy = rng.integers(-3, 4, (2, 13, 13, 20)).astype(np.float32)
    k = np.zeros((3, 3, 36, 20), np.float32)
    assert nn.conv2d_algorithm(x, k, padding="same", weight_grad=True) == "winograd"
    outs = []
    for arch in isa_paths:
        isa(arch)
        outs.append(nn.conv2d_grad(x, k, dy, padding="same", need_dx=False)[1])
    assert all(np.array_equal(outs[0].view(np.uint32), o.view(np.uint32)) for o in outs[1:])
    np.testing.assert_array_equal(outs[0], ref.conv2d_grad(x, k, dy, padding="same")[1])
