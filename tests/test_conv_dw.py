"""The direct weight gradient (src_c/conv_dw.c): dw and db of NHWC convolutions with few taps (at most
4 input channels, 32 taps), summed from x and dy in place, against the float64 twin.

Every case asserts conv2d_algorithm(..., weight_grad=True) == 'direct', so a change of the rule cannot
silently turn these into im2col tests."""
import numpy as np
import pytest

import cnnc
import cnnc.nn as nn
import reference as ref

GRID = [  # n, h, w, c, cout, kernel, strides, padding, dilations
    (2, 9, 11, 1, 32, (3, 3), 1, "valid", 1),           # Chollet's first layer, smaller
    (3, 10, 7, 3, 20, (3, 3), 1, "same", 1),            # RGB, channels off the 8-wide vectors
    (1, 12, 12, 4, 8, (5, 5), 2, "same", 1),            # stride 2, 25 taps x 4 channels > 32: not here
    (2, 13, 9, 2, 33, (3, 2), (2, 1), ((2, 0), (1, 3)), 1),  # asymmetric everything, padding > kernel
    (1, 15, 15, 1, 7, (3, 3), 1, 1, 2),                 # dilation 2: the padded row spaced taps
    (1, 6, 6, 1, 1, (1, 1), 1, "valid", 1),             # 1 tap, 1 output channel
    (40, 5, 4, 1, 16, (3, 3), 1, "same", 1),            # 200 output rows: 64 groups of 3 or 4
    (1, 8, 8, 1, 9, (5, 5), 1, ((4, 4), (4, 4)), 1),    # a window can lie wholly in the padding
    (2, 7, 30, 3, 24, (3, 3), 3, "valid", 1),           # 27 taps: three register groups of nine
]
IDS = [f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}-k{c[5][0]}{c[5][1]}-s{c[6]}-p{c[7]}-d{c[8]}" for c in GRID]


def _case(case, seed=0):
    n, h, w, c, cout, k, s, pad, d = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal(k + (c, cout)).astype(np.float32)
    kw = dict(strides=s, padding=pad, dilations=d)
    y = nn.conv2d(x, wt, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    return x, wt, dy, kw


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_matches_the_twin(case):
    x, w, dy, kw = _case(case)
    if w.shape[0] * w.shape[1] * w.shape[2] > 32:
        assert nn.conv2d_algorithm(x, w, weight_grad=True, **kw) == "im2col"
    else:
        assert nn.conv2d_algorithm(x, w, weight_grad=True, **kw) == "direct"
    dx, dw, db = nn.conv2d_grad(x, w, dy, **kw)
    rdx, rdw, rdb = ref.conv2d_grad(x, w, dy, **kw)
    mdx, mdw, mdb = ref.conv2d_grad_mag(x, w, dy, **kw)
    ref.assert_close(dw, rdw, mag=mdw, name="dw")
    ref.assert_close(db, rdb, mag=mdb, name="db")
    ref.assert_close(dx, rdx, mag=mdx, name="dx")
    _, dw2, db2 = nn.conv2d_grad(x, w, dy, need_dx=False, **kw)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


def test_the_rule():
    rule = lambda *a, **k: nn.conv2d_algorithm(*a, weight_grad=True, **k)  # noqa: E731
    assert rule((64, 28, 28, 1), (3, 3, 1, 32)) == "direct"
    assert rule((64, 28, 28, 3), (3, 3, 3, 32)) == "direct"                      # 27 taps
    assert rule((64, 28, 28, 1), (5, 5, 1, 32), padding="same") == "direct"      # 25 taps
    assert rule((64, 28, 28, 1), (7, 7, 1, 64), padding="same") == "im2col"      # 49 taps
    assert rule((64, 28, 28, 5), (1, 1, 5, 32)) == "im2col"                      # 5 input channels
    assert rule((64, 1, 28, 28), (32, 1, 3, 3), data_format="NCHW") == "im2col"  # NHWC only
    assert rule((64, 28, 28, 4), (3, 3, 2, 32), groups=2) == "im2col"


@pytest.mark.parametrize("case", [GRID[0], GRID[6], GRID[8]], ids=[IDS[0], IDS[6], IDS[8]])
def test_thread_counts_give_the_same_bits(case):
    x, w, dy, kw = _case(case, seed=3)
    prev = cnnc.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            cnnc.set_num_threads(t)
            outs.append(nn.conv2d_grad(x, w, dy, need_dx=False, **kw)[1:])
    finally:
        cnnc.set_num_threads(prev)
    for a, b in zip(outs[0], outs[1]):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_the_isa_builds_agree(isa, isa_paths):
    """Small integers: every product and sum is exact, so dw and db are the same bits on every ISA path
    and equal to the twin's; 20 output channels take the AVX2 kernel's scalar tail."""
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 4, (3, 10, 9, 3)).astype(np.float32)
    dy = rng.integers(-3, 4, (3, 10, 9, 20)).astype(np.float32)
    w = np.zeros((3, 3, 3, 20), np.float32)
    assert nn.conv2d_algorithm(x, w, padding="same", weight_grad=True) == "direct"
    outs = []
    for arch in isa_paths:
        isa(arch)
        outs.append(nn.conv2d_grad(x, w, dy, padding="same", need_dx=False)[1:])
    _, rdw, rdb = ref.conv2d_grad(x, w, dy, padding="same")
    for got, want in zip(outs[0], (rdw, rdb)):
        np.testing.assert_array_equal(got, want)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("where", ["dy", "x"])
def test_infinities_and_nan_propagate_as_in_the_direct_sum(where):
    """Padding is multiplied like any input: an infinite dy at the border makes the taps that read
    padding NaN (0 x inf), as in the twin."""
    x, w, dy, kw = _case((2, 9, 11, 1, 16, (3, 3), 1, "same", 1), seed=5)
    if where == "dy":
        dy[1, 0, 0, 3] = np.inf
        dy[0, 2, 2, 9] = -np.inf
    else:
        x[0, 4, 5, 0] = np.nan
        x[1, 8, 10, 0] = np.inf
    assert nn.conv2d_algorithm(x, w, weight_grad=True, **kw) == "direct"
    _, dw, db = nn.conv2d_grad(x, w, dy, need_dx=False, **kw)
    with np.errstate(invalid="ignore"):
        _, rdw, rdb = ref.conv2d_grad(x, w, dy, **kw)
    for got, want in ((dw, rdw), (db, rdb)):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.array_equal(np.isposinf(got), np.isposinf(want))
        assert np.array_equal(np.isneginf(got), np.isneginf(want))
    assert not np.isfinite(rdw).all()
    if where == "dy":  # the damage stays in channels 3 and 9
        assert np.isnan(rdw[0, 0, 0, 3]) and np.isinf(rdw[1, 1, 0, 3]) and np.isfinite(rdw[..., :3]).all()
