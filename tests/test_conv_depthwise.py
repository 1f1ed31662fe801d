"""The direct depthwise convolution (src_c/conv_depthwise.c): groups = input channels, Cout = m * C, each
output its KH*KW-term sum read straight from x. The forward in NHWC (channels in vectors) and NCHW (a
padded plane in stride phases), the data and weight gradients in NHWC; against the float64 twin, finite
differences, exact integer data on every ISA build and thread count, and im2col's non-finite semantics.

Every case asserts conv2d_algorithm(...) == 'depthwise', so a change of the rule cannot silently turn
these into im2col tests."""
import numpy as np
import pytest

import cnnc
from cnnc import layers, memory, models, nn

import gradcheck
import reference as ref

RNG = np.random.default_rng(23)

GRID = [  # n, h, w, c, m, kernel, strides, padding, dilations
    (2, 7, 6, 8, 1, (3, 3), 1, "same", 1),                       # one vector of channels
    (1, 9, 9, 13, 1, (3, 3), 2, "same", 1),                      # a vector and a masked tail of 5
    (2, 8, 5, 40, 1, (5, 5), (1, 2), ((2, 0), (1, 3)), (2, 1)),  # 32 + 8 channels, asymmetric all
    (1, 12, 12, 70, 1, (7, 7), 3, ((3, 3), (3, 3)), 1),          # 2 x 32 + a tail of 6, stride 3
    (1, 6, 6, 3, 2, (3, 3), 1, "valid", 1),                      # multiplier 2
    (2, 5, 7, 5, 3, (3, 2), (2, 1), ((1, 2), (0, 1)), 1),        # multiplier 3, a 3x2 kernel
    (1, 8, 8, 2, 1, (5, 5), 1, ((4, 4), (4, 4)), 1),             # windows wholly in the padding
    (3, 4, 33, 16, 1, (1, 1), 1, "valid", 1),                    # 1x1: a scale per channel
    (1, 11, 10, 64, 1, (3, 3), 1, "same", 1),                    # the common shape
    (2, 9, 75, 4, 1, (1, 3), 1, ((0, 0), (1, 1)), 1),            # rows wider than a 32-column block
    (1, 10, 9, 6, 1, (3, 3), (3, 2), ((2, 2), (0, 1)), (1, 2)),  # strides 3 x 2 with dilation: phases
]
IDS = [f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-m{c[4]}-k{c[5][0]}{c[5][1]}-s{c[6]}-p{c[7]}-d{c[8]}" for c in GRID]
LAYOUTS = ["NHWC", "NCHW"]


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _case(case, layout, seed=0, integers=False):
    n, h, w, c, m, k, s, pad, d = case
    rng = np.random.default_rng(seed)
    if integers:  # small integers: every sum is exact in float32, whatever its order
        x = rng.integers(-3, 4, (n, h, w, c)).astype(np.float32)
        wt = rng.integers(-3, 4, k + (1, c * m)).astype(np.float32)
        b = rng.integers(-3, 4, c * m).astype(np.float32)
    else:
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
        wt = rng.standard_normal(k + (1, c * m)).astype(np.float32)
        b = rng.standard_normal(c * m).astype(np.float32)
    if layout == "NCHW":
        x, wt = np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.ascontiguousarray(wt.transpose(3, 2, 0, 1))
    kw = dict(strides=s, padding=pad, dilations=d, groups=c, data_format=layout)
    return x, wt, b, kw


def _dy(x, wt, kw, seed=1, integers=False):
    shape = nn.conv2d(x, wt, **kw).shape
    rng = np.random.default_rng(seed)
    if integers:
        return rng.integers(-3, 4, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("act", [None, "relu", "tanh"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_forward_matches_the_twin(case, layout, act):
    x, w, b, kw = _case(case, layout)
    assert nn.conv2d_algorithm(x, w, **kw) == "depthwise"
    y = nn.conv2d(x, w, b, activation=act, **kw)
    want = ref.conv2d(x, w, b, activation=act, **kw)
    ref.assert_close(y, want, mag=ref.conv2d_mag(x, w, b, **kw), name="y")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_gradients_match_the_twin(case, layout):
    x, w, _, kw = _case(case, layout)
    algo = "depthwise" if layout == "NHWC" else "im2col"  # NCHW's backward stays im2col's
    assert nn.conv2d_algorithm(x, w, data_grad=True, **kw) == algo
    assert nn.conv2d_algorithm(x, w, weight_grad=True, **kw) == algo
    dy = _dy(x, w, kw)
    dx, dw, db = nn.conv2d_grad(x, w, dy, **kw)
    rdx, rdw, rdb = ref.conv2d_grad(x, w, dy, **kw)
    mdx, mdw, mdb = ref.conv2d_grad_mag(x, w, dy, **kw)
    ref.assert_close(dx, rdx, mag=mdx, name="dx")
    ref.assert_close(dw, rdw, mag=mdw, name="dw")
    ref.assert_close(db, rdb, mag=mdb, name="db")
    none, dw2, db2 = nn.conv2d_grad(x, w, dy, need_dx=False, **kw)
    assert none is None
    assert np.array_equal(_bits(dw2), _bits(dw)) and np.array_equal(_bits(db2), _bits(db))


@pytest.mark.parametrize("case", [GRID[1], GRID[2], GRID[5], GRID[6]], ids=[IDS[1], IDS[2], IDS[5], IDS[6]])
def test_finite_differences(case):
    x, w, b, kw = _case(case, "NHWC", seed=4)
    dy = _dy(x, w, kw, seed=5)
    r = dy.astype(np.float64)
    dx, dw, db = nn.conv2d_grad(x, w, dy, **kw)
    rng = np.random.default_rng(6)
    gradcheck.check_grad(lambda t: ref.conv2d(t, w, b, **kw), x, r, dx, rng, count=24, name="dx")
    gradcheck.check_grad(lambda t: ref.conv2d(x, t, b, **kw), w, r, dw, rng, count=24, name="dw")
    gradcheck.check_grad(lambda t: ref.conv2d(x, w, t, **kw), b, r, db, rng, count=8, name="db")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [GRID[2], GRID[3], GRID[5], GRID[9]], ids=[IDS[2], IDS[3], IDS[5], IDS[9]])
def test_every_isa_and_thread_count_gives_the_exact_sums(case, layout, isa, isa_paths):
    """Exact integer data: the twin's values, bit for bit, on every ISA path at 1 and 2 threads."""
    x, w, b, kw = _case(case, layout, seed=7, integers=True)
    dy = _dy(x, w, kw, seed=8, integers=True)
    want_y = ref.conv2d(x, w, b, **kw).astype(np.float32)
    want = [g.astype(np.float32) for g in ref.conv2d_grad(x, w, dy, **kw)]
    prev = cnnc.get_num_threads()
    try:
        for arch in isa_paths:
            isa(arch)
            for threads in (1, 2):
                cnnc.set_num_threads(threads)
                assert np.array_equal(_bits(nn.conv2d(x, w, b, **kw)), _bits(want_y)), (arch, threads)
                for got, exp, name in zip(nn.conv2d_grad(x, w, dy, **kw), want, ("dx", "dw", "db")):
                    assert np.array_equal(_bits(got), _bits(exp)), (name, arch, threads)
    finally:
        cnnc.set_num_threads(prev)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m", [1, 2])
def test_thread_counts_give_the_same_bits(layout, m, isa):
    """Random data over many rows (the weight gradient's fixed chunks, several rows per chunk), large
    enough to run threaded."""
    case = (24, 12, 11, 40, m, (3, 3), 1, "same", 1)
    x, w, b, kw = _case(case, layout, seed=9)
    dy = _dy(x, w, kw, seed=10)
    prev = cnnc.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            cnnc.set_num_threads(t)
            outs.append([nn.conv2d(x, w, b, activation="relu", **kw), *nn.conv2d_grad(x, w, dy, **kw)])
    finally:
        cnnc.set_num_threads(prev)
    for a, c in zip(outs[0], outs[1]):
        assert np.array_equal(_bits(a), _bits(c))


def _nonfinite_patterns_agree(got, want, name):
    want = np.asarray(want)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: NaN positions differ"
    assert np.array_equal(np.isposinf(got), np.isposinf(want)), f"{name}: +inf positions differ"
    assert np.array_equal(np.isneginf(got), np.isneginf(want)), f"{name}: -inf positions differ"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m", [1, 2])
def test_a_non_finite_weight_meets_the_padding_as_through_im2col(layout, m):
    """Padding reads as zeros and is multiplied: 0 * inf makes NaN at the borders an inf tap reaches,
    as im2col's column matrix does; inside, the inf (or NaN) propagates as it is."""
    case = (2, 6, 7, 9, m, (3, 3), 1, "same", 1)
    x, w, b, kw = _case(case, "NHWC", seed=11)
    w[0, 2, 0, 3] = np.inf    # top-right tap of output channel 3
    w[1, 1, 0, 5] = -np.inf   # centre tap of channel 5: never meets the padding
    w[2, 0, 0, 7] = np.nan
    x[1, 3, 4, 2] = np.nan
    if layout == "NCHW":
        x, w = np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    kw["data_format"] = layout
    assert nn.conv2d_algorithm(x, w, **kw) == "depthwise"
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.conv2d(x, w, b, **kw)
    y = nn.conv2d(x, w, b, **kw)
    _nonfinite_patterns_agree(y, want, "y")
    assert np.isnan(y).any() and np.isinf(y).any()
    fin = np.isfinite(want)
    ref.assert_close(y[fin], want[fin], mag=ref.conv2d_mag(x, np.nan_to_num(w), b, **kw)[fin], name="y")


@pytest.mark.parametrize("m", [1, 2])
def test_non_finite_gradients_propagate_as_through_im2col(m):
    """An inf or NaN in dy: dw takes NaN from 0 * inf wherever a padded tap meets it (as im2col's column
    matrix gives it), dx only through the taps inside the input (as col2im), db sums it."""
    case = (2, 6, 7, 9, m, (3, 3), (1, 2), "same", 1)
    x, w, _, kw = _case(case, "NHWC", seed=12)
    assert nn.conv2d_algorithm(x, w, weight_grad=True, **kw) == "depthwise"
    dy = _dy(x, w, kw, seed=13)
    dy[0, 0, 1, 2] = np.inf      # top row: meets the padded taps above it
    dy[1, 2, 1, 4 * m] = np.nan  # inside: a padded tap only at the left/right edge, if any
    dy[1, 3, 0, 1] = -np.inf     # left column
    x[0, 2, 2, 6] = np.inf       # in x: dw through the taps that read it
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.conv2d_grad(x, w, dy, **kw)
    got = nn.conv2d_grad(x, w, dy, **kw)
    for g, e, name in zip(got, want, ("dx", "dw", "db")):
        _nonfinite_patterns_agree(g, e, name)
    assert np.isnan(got[1]).any()
    dx, dw, _ = got
    mdx, mdw, _ = ref.conv2d_grad_mag(np.nan_to_num(x), w, np.nan_to_num(dy), **kw)
    for g, e, mag, name in ((dx, want[0], mdx, "dx"), (dw, want[1], mdw, "dw")):
        fin = np.isfinite(e)
        ref.assert_close(g[fin], e[fin], mag=mag[fin], name=name)


def test_the_rule():
    algo = nn.conv2d_algorithm
    assert algo((8, 28, 28, 32), (3, 3, 1, 32), groups=32) == "depthwise"
    assert algo((8, 28, 28, 32), (3, 3, 1, 64), groups=32) == "depthwise"              # multiplier 2
    assert algo((8, 32, 28, 28), (32, 1, 3, 3), groups=32, data_format="NCHW") == "depthwise"
    assert algo((8, 28, 28, 2), (16, 16, 1, 2), groups=2, padding="same") == "depthwise"
    assert algo((8, 40, 40, 2), (17, 17, 1, 2), groups=2, padding="same") == "im2col"  # kernel > 16
    assert algo((8, 40, 40, 2), (3, 3, 1, 2), groups=2, strides=17) == "im2col"        # stride > 16
    assert algo((8, 28, 28, 4), (3, 3, 2, 4), groups=2) == "im2col"                    # 2 channels a group
    assert algo((8, 28, 28, 1), (3, 3, 1, 8), groups=1) == "direct"                    # one group
    for grad in ("data_grad", "weight_grad"):
        assert algo((8, 28, 28, 32), (3, 3, 1, 32), groups=32, **{grad: True}) == "depthwise"
        assert algo((8, 32, 28, 28), (32, 1, 3, 3), groups=32, data_format="NCHW", **{grad: True}) == "im2col"


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_a_depthwise_model_trains_and_its_memory_estimate_holds(data_format):
    """A Sequential model with DepthwiseConv2D layers: its training steps take the depthwise path (the
    gradients checked above), the loss goes down, and the memory estimate follows what a step
    allocates (the depthwise workspaces, sized by the same C functions)."""
    cnnc.utils.set_random_seed(3)
    shape = (16, 16, 3) if data_format == "channels_last" else (3, 16, 16)
    model = models.Sequential([
        layers.Input(shape),
        layers.Conv2D(16, 3, padding="same", activation="relu", data_format=data_format),
        layers.DepthwiseConv2D(3, padding="same", activation="relu", data_format=data_format),
        layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu", data_format=data_format),
        layers.Flatten(data_format=data_format),
        layers.Dense(4, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    b = 32
    x = RNG.random((b,) + shape, dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) * 8).astype(np.int64) % 4
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=b, epochs=15, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first
    model.release_training_memory()
    measured = memory.measure(model.fit, x, y, batch_size=b, epochs=1, verbose=0)
    est = model.memory_estimate(b).training_bytes
    assert abs(est - measured) <= 0.02 * measured, (est, measured)
