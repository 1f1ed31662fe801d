"""A convolution and the max pool after it as one op in training: nn.conv2d_max_pool (the pooled output
and the pool's taps, the convolution's output computed only where a window covers it) and Sequential
training, whose pool backward then returns the gradient of the convolution's pre-activation. Checked
against the two separate ops (the same bits), a float64 twin, finite differences, and the memory
estimate."""
import numpy as np
import pytest

import cnnc
from cnnc import _nn_core, layers, memory, models, nn
from cnnc.layers import pooling

import gradcheck
import ref_pool
import reference as ref

RNG = np.random.default_rng(11)


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# name: (x shape NHWC, Cout, k, conv padding, conv strides, pool, groups)
OPS = {
    "chollet's first layer (direct, pooled on the stack)": ((3, 28, 28, 1), 32, 3, "valid", 1, 2, 1),
    "chollet's second layer (Winograd, tiles = windows, odd output)": ((3, 13, 13, 32), 64, 3, "valid", 1, 2, 1),
    "Winograd, same padding, channel tail": ((3, 14, 14, 32), 40, 3, "same", 1, 2, 1),
    "direct, 3x3 pool": ((3, 17, 17, 2), 20, 3, "same", 1, 3, 1),
    "direct, 2x3 pool": ((3, 16, 17, 4), 24, 3, "valid", 1, (2, 3), 1),
    "strided conv": ((3, 21, 21, 1), 16, 3, "same", 2, 2, 1),
    "im2col (8 channels), pooled from the workspace": ((3, 12, 12, 8), 16, 3, "valid", 1, 2, 1),
    "depthwise (groups = channels)": ((3, 11, 11, 6), 12, 3, "valid", 1, 2, 6),
    "a pool as large as the output": ((3, 6, 6, 3), 5, 3, "valid", 1, 4, 1),
}


# dx from the chosen elements only (NHWC, one group), its blocks: channel blocks of 64 (a partial one),
# filter blocks of whole vectors (a tail that is not), several groups of pooled outputs, windows that
# are not one span per kernel row (padding, dilation); the last field is the dilation
DX_OPS = {
    "dx: two channel blocks, a 45-float filter": ((2, 9, 9, 5), 100, 3, "valid", 1, 2, 1, 1),
    "dx: 361 pooled outputs in four groups, 70 channels": ((1, 40, 40, 3), 70, 3, "valid", 1, 2, 1, 1),
    "dx: three filter blocks, dilation 2": ((2, 15, 15, 16), 24, 3, "valid", 1, 2, 1, 2),
    "dx: 5x5 same, filter blocks of 7, 7 and 8 vectors with a tail": ((2, 10, 10, 7), 9, 5, "same", 1, 2, 1, 1),
}


def _op_args(name, layout):
    xs, cout, k, pad, st, pool, groups, *dil = OPS[name] if name in OPS else DX_OPS[name]
    x = RNG.standard_normal(xs).astype(np.float32)
    w = (RNG.standard_normal((k, k, xs[3] // groups, cout)) * 0.3).astype(np.float32)
    b = RNG.standard_normal(cout).astype(np.float32) * 0.1
    if layout == "NCHW":
        x, w = np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    kw = dict(strides=st, padding=pad, groups=groups, data_format=layout)
    if dil:
        kw["dilations"] = dil[0]
    return x, w, b, pool, kw


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("act", [None, "relu", "tanh"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_conv2d_max_pool_gives_the_two_ops_bits(name, layout, act, arch, threads, isa):
    isa(arch)
    x, w, b, pool, kw = _op_args(name, layout)
    at = (lambda n, h, w: (n, h, w)) if layout == "NHWC" else (lambda n, h, w: (n, slice(None), h, w))
    x[at(1, slice(2, 5), slice(3, 6))] = -0.0  # ties at zero after a relu
    x[at(1, 4, 4)] = np.nan  # the first NaN wins its windows
    x[at(0, 3, 1)] = np.inf
    with cnnc._config.thread_limit(threads):
        y, taps = nn.conv2d_max_pool(x, w, b, pool, activation=act, return_taps=True, **kw)
        y_only = nn.conv2d_max_pool(x, w, b, pool, activation=act, **kw)
        conv = nn.conv2d(x, w, b, activation=act, **kw)
        want_y, want_taps = nn.max_pool2d_with_taps(conv, pool, data_format=layout)
    assert np.array_equal(_bits(y), _bits(want_y))
    assert np.array_equal(taps, want_taps)
    assert np.array_equal(_bits(y_only), _bits(want_y))
    assert not np.isnan(y[2:]).any()
    if act != "relu":  # relu maps NaN to 0
        assert np.isnan(y[1]).any()


@pytest.mark.parametrize("act", [None, "relu", "sigmoid"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_conv2d_max_pool_against_the_float64_twin(name, layout, act):
    x, w, b, pool, kw = _op_args(name, layout)
    y, taps = nn.conv2d_max_pool(x, w, b, pool, activation=act, return_taps=True, **kw)
    z = ref.conv2d(x, w, b, strides=kw["strides"], padding=kw["padding"], groups=kw["groups"],
                   data_format=layout, activation=act)
    want = ref_pool.max_pool2d(z, ref.pair(pool), layout=layout)[0]
    mag = ref_pool.max_pool2d(ref.conv2d_mag(x, w, b, strides=kw["strides"], padding=kw["padding"],
                                             groups=kw["groups"], data_format=layout),
                              ref.pair(pool), layout=layout)[0]  # bounds each window's sums' magnitudes
    np.testing.assert_array_less(np.abs(y - want), 1e-4 * mag + 1e-6)
    # each tap points at its window's maximum in the twin (up to float32 rounding)
    kh, kwd = ref.pair(pool)
    zn = z if layout == "NHWC" else z.transpose(0, 2, 3, 1)
    tn = taps if layout == "NHWC" else taps.transpose(0, 2, 3, 1)
    yn = want if layout == "NHWC" else want.transpose(0, 2, 3, 1)
    mn = mag if layout == "NHWC" else mag.transpose(0, 2, 3, 1)
    n, ph, pw, c = tn.shape
    i, j = tn // kwd, tn % kwd
    rows = np.arange(ph)[None, :, None, None] * kh + i
    cols = np.arange(pw)[None, None, :, None] * kwd + j
    picked = zn[np.arange(n)[:, None, None, None], rows, cols, np.arange(c)[None, None, None, :]]
    np.testing.assert_array_less(np.abs(picked - yn), 1e-4 * mn + 1e-6)


def test_conv2d_max_pool_rejects_bad_arguments():
    x = np.zeros((1, 8, 8, 2), np.float32)
    w = np.zeros((3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        nn.conv2d_max_pool(x, w, pool_size=7)  # the convolution's output is 6 x 6
    with pytest.raises(ValueError, match="pool_size"):
        nn.conv2d_max_pool(x, w, pool_size=0)
    with pytest.raises(ValueError, match="softmax"):
        nn.conv2d_max_pool(x, w, pool_size=2, activation="softmax")
    big = np.zeros((1, 20, 20, 1), np.float32)
    with pytest.raises(ValueError, match="255 taps"):
        nn.conv2d_max_pool(big, np.zeros((3, 3, 1, 2), np.float32), pool_size=16, return_taps=True)
    y = nn.conv2d_max_pool(big, np.zeros((3, 3, 1, 2), np.float32), pool_size=16)  # no taps: any window
    assert y.shape == (1, 1, 1, 2)
    with pytest.raises(ValueError, match="b"):
        nn.conv2d_max_pool(x, w, np.zeros(3, np.float32), pool_size=2)


# ---- Sequential training ------------------------------------------------------------------------

def _model(conv, pool, data_format="channels_last", c=3, hw=12, head=True, lead=False):
    """Input -> [a 1x1 convolution: the pair's convolution then computes dx] -> conv -> pool -> [head]."""
    cnnc.utils.set_random_seed(5)
    shape = (hw, hw, c) if data_format == "channels_last" else (c, hw, hw)
    ls = [layers.Input(shape)] + ([layers.Conv2D(c, 1, data_format=data_format)] if lead else []) + [conv, pool]
    if head:
        ls += [layers.Flatten(data_format=data_format), layers.Dense(5, activation="softmax")]
    return models.Sequential(ls)


def test_which_pairs_train_fused():
    conv = lambda **k: layers.Conv2D(4, 3, **k)  # noqa: E731
    assert pooling.conv_max_pool_pairs(_model(conv(activation="relu"), layers.MaxPooling2D(2)).layers) == {0}
    assert pooling.conv_max_pool_pairs(_model(conv(), layers.MaxPooling2D(3)).layers) == {0}
    assert pooling.conv_max_pool_pairs(_model(layers.DepthwiseConv2D(3, activation="elu"),
                                              layers.MaxPooling2D(2)).layers) == {0}
    not_fused = [
        (conv(activation="relu"), layers.MaxPooling2D(2, strides=1)),  # overlapping windows
        (conv(activation="relu"), layers.MaxPooling2D(2, padding="same")),  # padded windows
        (conv(activation="hard_swish"), layers.MaxPooling2D(2)),  # its derivative needs the input
        (conv(activation="relu"), layers.AveragePooling2D(2)),
        (conv(activation="relu"), layers.MaxPooling2D(16)),  # more than 255 taps
        (layers.BatchNormalization(), layers.MaxPooling2D(2)),  # not a convolution
    ]
    for c, p in not_fused:
        assert pooling.conv_max_pool_pairs(_model(c, p, hw=18).layers) == frozenset(), (c, p)
    from cnnc import zoo
    assert pooling.conv_max_pool_pairs(zoo.chollet_cnn().layers) == {0, 2}


TRAIN = {
    # name: (conv layer factory, pool layer factory, data_format, channels, size)
    "relu, direct": (lambda f: layers.Conv2D(8, 3, activation="relu", data_format=f),
                     lambda f: layers.MaxPooling2D(2, data_format=f), 1, 13),
    "relu, Winograd": (lambda f: layers.Conv2D(16, 3, activation="relu", data_format=f),
                       lambda f: layers.MaxPooling2D(2, data_format=f), 32, 11),
    "linear, 3x3 pool": (lambda f: layers.Conv2D(6, 3, padding="same", data_format=f),
                         lambda f: layers.MaxPooling2D(3, data_format=f), 2, 10),
    "tanh, 2x3 pool, strided": (lambda f: layers.Conv2D(5, 3, strides=2, padding="same", activation="tanh",
                                                        data_format=f),
                                lambda f: layers.MaxPooling2D((3, 3), data_format=f), 3, 14),
    "sigmoid, im2col": (lambda f: layers.Conv2D(7, 3, activation="sigmoid", data_format=f),
                        lambda f: layers.MaxPooling2D(2, data_format=f), 8, 12),
    "elu, depthwise": (lambda f: layers.DepthwiseConv2D(3, depth_multiplier=2, activation="elu", data_format=f),
                       lambda f: layers.MaxPooling2D(2, data_format=f), 4, 11),
}


def _train(model, x, y, fuse, monkeypatch, steps=2, pooled_dx=False):
    if not fuse:
        monkeypatch.setattr(pooling, "conv_max_pool_pairs", lambda ls: frozenset())
    if not pooled_dx:  # the dense dx and dw
        monkeypatch.setattr(_nn_core, "pool_dx_workspace_size", lambda *a: -1)
        monkeypatch.setattr(_nn_core, "pool_dw_workspace_size", lambda *a: -1)
    try:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        losses = [model.train_on_batch(x, y) for _ in range(steps)]
        return losses, [_bits(w) for w in model.get_weights()]
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("lead", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", sorted(TRAIN))
def test_fused_training_gives_the_unfused_bits(name, data_format, lead, threads, monkeypatch):
    """With dx and dw computed densely (conv2d_grad), the fused step is the unfused step, bit for bit."""
    make_conv, make_pool, c, hw = TRAIN[name]
    shape = (4, hw, hw, c) if data_format == "channels_last" else (4, c, hw, hw)
    x = RNG.standard_normal(shape).astype(np.float32)
    y = RNG.integers(0, 5, 4)
    with cnnc._config.thread_limit(threads):
        fused_model = _model(make_conv(data_format), make_pool(data_format), data_format, c, hw, lead=lead)
        assert pooling.conv_max_pool_pairs(fused_model.layers) == {int(lead)}
        fused = _train(fused_model, x, y, True, monkeypatch)
        fused_model._forward(x, training=True)  # the fused op ran: the convolution kept no output
        conv, pool = fused_model.layers[int(lead):int(lead) + 2]
        assert conv._y is None and conv._z is None and pool._act is conv.activation and pool._taps is not None
        unfused = _train(_model(make_conv(data_format), make_pool(data_format), data_format, c, hw, lead=lead),
                         x, y, False, monkeypatch)
    assert fused[0] == unfused[0]
    for a, b in zip(fused[1], unfused[1]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(TRAIN))
def test_fused_training_with_dx_from_the_chosen_elements(name, threads, monkeypatch):
    """A fused pair after another layer takes its dx from the pooled gradient where that path applies
    (NHWC, one group, dx not Winograd's): the unfused step's results up to rounding, the same bits at 1
    and 2 threads."""
    make_conv, make_pool, c, hw = TRAIN[name]
    x = RNG.standard_normal((4, hw, hw, c)).astype(np.float32)
    y = RNG.integers(0, 5, 4)
    calls = []
    real = _nn_core.conv2d_max_pool_dx

    def spy(*a, **k):
        dx = real(*a, **k)
        calls.append(dx is not None)
        return dx

    with cnnc._config.thread_limit(threads):
        model = _model(make_conv("channels_last"), make_pool("channels_last"), c=c, hw=hw, lead=True)
        monkeypatch.setattr(_nn_core, "conv2d_max_pool_dx", spy)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        losses = [model.train_on_batch(x, y) for _ in range(2)]
        got = model.get_weights()
        monkeypatch.undo()
        want = _train(_model(make_conv("channels_last"), make_pool("channels_last"), c=c, hw=hw, lead=True),
                      x, y, False, monkeypatch)
    applies = "depthwise" not in name
    assert calls == [applies] * 2
    np.testing.assert_allclose(losses, want[0], rtol=1e-6)
    for a, b in zip(got, want[1]):
        np.testing.assert_allclose(a, b.view(np.float32), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("act", ["tanh", "relu", "linear"])
def test_fused_backward_against_finite_differences(act):
    """L = sum(max_pool(act(conv(x, w) + b)) * r): the pool's backward (the pre-activation's gradient)
    and the convolution's backward give dL/dx and dL/dw of the float64 twin."""
    rng = np.random.default_rng(3)
    conv, pool = layers.Conv2D(4, 3, activation=act), layers.MaxPooling2D(2)
    model = _model(conv, pool, c=2, hw=9, head=False)
    x = rng.standard_normal((3, 9, 9, 2)).astype(np.float32)
    w, b = conv.params["kernel"], conv.params["bias"]
    b[...] = rng.standard_normal(4).astype(np.float32) * 0.1
    assert pooling.conv_max_pool_pairs(model.layers) == {0}
    y = model._forward(x, training=True)
    r = rng.standard_normal(y.shape)
    pooled = pool._backward_fused(r.astype(np.float32))  # the gradient at the chosen elements
    g, taps, pool_kw, _ = pooled
    assert _nn_core.conv2d_max_pool_dx(x.shape, w, g, taps, 2) is not None
    assert _nn_core.conv2d_max_pool_dw(x, w, g, taps, 2) is not None
    dx_pooled = conv.backward(None, pooled=pooled)
    grads_pooled = dict(conv.grads)
    dz = pool.backward(r.astype(np.float32))  # scattered: the dense paths
    dx = conv.backward(dz, preactivation=True)

    def f_x(xv):
        return ref_pool.max_pool2d(ref.conv2d(xv, w, b, activation=act), (2, 2))[0]

    def f_w(wv):
        return ref_pool.max_pool2d(ref.conv2d(x, wv, b, activation=act), (2, 2))[0]

    gradcheck.check_grad(f_x, x, r, dx, rng, count=24, name="dx")
    gradcheck.check_grad(f_x, x, r, dx_pooled, rng, count=24, name="dx from the chosen elements")
    gradcheck.check_grad(f_w, w, r, conv.grads["kernel"], rng, count=24, name="dw")
    gradcheck.check_grad(f_w, w, r, grads_pooled["kernel"], rng, count=24, name="dw from the chosen elements")

    def f_b(bv):
        return ref_pool.max_pool2d(ref.conv2d(x, w, bv, activation=act), (2, 2))[0]

    gradcheck.check_grad(f_b, b, r, grads_pooled["bias"], rng, count=4, name="db from the chosen elements")


@pytest.mark.parametrize("act,data_format", [("relu", "channels_last"), ("linear", "channels_first"),
                                             ("tanh", "channels_last")])
def test_memory_estimate_of_fused_pairs(act, data_format):
    """The estimate follows what a training step of fused pairs allocates: the pooled output and taps,
    the fused op's workspace, and in backward a pooled-size gradient then the convolution's."""
    cnnc.utils.set_random_seed(1)
    shape = (28, 28, 1) if data_format == "channels_last" else (1, 28, 28)
    model = models.Sequential([
        layers.Input(shape),
        layers.Conv2D(16, 3, activation=act, data_format=data_format),
        layers.MaxPooling2D(2, data_format=data_format),
        layers.Conv2D(32, 3, activation=act, data_format=data_format),
        layers.MaxPooling2D(2, data_format=data_format),
        layers.Flatten(data_format=data_format),
        layers.Dense(10, activation="softmax"),
    ])
    assert pooling.conv_max_pool_pairs(model.layers) == {0, 2}
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    b = 32
    x = RNG.random((b,) + shape, dtype=np.float32)
    y = RNG.integers(0, 10, b)
    model.fit(x, y, batch_size=b, epochs=1, verbose=0)
    model.release_training_memory()  # a step that allocates afresh: its peak is the step's own
    measured = memory.measure(model.fit, x, y, batch_size=b, epochs=1, verbose=0)
    est = model.memory_estimate(b).training_bytes
    assert abs(est - measured) <= 0.02 * measured, (est, measured)


# ---- dx from the chosen elements ------------------------------------------------------------------

def _pooled_grad_case(name, integers=False):
    """(x, w, g, taps, pool, conv kwargs, dense dx) for an NHWC single-group case of OPS."""
    x, w, b, pool, kw = _op_args(name, "NHWC")
    if integers:  # sums of small integers are exact in float32: every order and ISA gives the same bits
        x, w = np.round(x * 2), np.round(w * 4)
    y, taps = nn.conv2d_max_pool(x, w, b, pool, activation="relu", return_taps=True, **kw)
    dp = RNG.standard_normal(y.shape).astype(np.float32)
    if integers:
        dp = np.round(dp * 3)
    g = nn.relu_grad(y, dp)  # zero where the pooled value is: those channels are skipped
    g.reshape(-1)[::7] = 0.0
    zshape = nn.conv2d(x, w, **kw).shape
    dz = nn.max_pool2d_grad(zshape, g, taps=taps, pool_size=pool)
    dense = nn.conv2d_grad(x, w, dz, **kw)[0]
    return x, w, g, taps, pool, kw, dense


DX_CASES = sorted(n for n in OPS if OPS[n][6] == 1) + sorted(DX_OPS)


@pytest.mark.parametrize("name", DX_CASES)
def test_dx_from_the_chosen_elements_is_the_dense_dx(name):
    x, w, g, taps, pool, kw, dense = _pooled_grad_case(name)
    assert (g == 0).any() and (g != 0).any()
    if _nn_core.pool_dx_workspace_size(nn._nn_core._conv_args(x, w, kw["strides"], kw["padding"], kw.get("dilations", 1), 1, "NHWC")[5],
                                       w.shape[3], 1, *ref.pair(pool)) < 0:
        pytest.skip("conv2d_grad's dx takes Winograd here")
    dx = _nn_core.conv2d_max_pool_dx(x.shape, w, g, taps, pool, **kw)
    mag = np.abs(nn.conv2d_grad(np.abs(x), np.abs(w), np.abs(nn.max_pool2d_grad(
        nn.conv2d(x, w, **kw).shape, g, taps=taps, pool_size=pool)), **kw)[0])
    np.testing.assert_array_less(np.abs(dx - dense), 1e-5 * mag + 1e-7)


@pytest.mark.parametrize("name", DX_CASES)
def test_dx_from_the_chosen_elements_same_bits_on_every_path(name, isa, isa_paths):
    """Exact integer data: both ISA builds and 1 or 2 threads give the dense dx's bits."""
    x, w, g, taps, pool, kw, dense = _pooled_grad_case(name, integers=True)
    for arch in isa_paths:
        isa(arch)
        for threads in (1, 2):
            with cnnc._config.thread_limit(threads):
                dx = _nn_core.conv2d_max_pool_dx(x.shape, w, g, taps, pool, **kw)
            if dx is None:
                pytest.skip("conv2d_grad's dx takes Winograd here")
            assert np.array_equal(_bits(dx), _bits(dense)), (arch, threads)


def test_dx_from_the_chosen_elements_declines():
    name = "chollet's second layer (Winograd, tiles = windows, odd output)"
    x, w, g, taps, pool, kw, dense = _pooled_grad_case(name)
    assert _nn_core.conv2d_max_pool_dx(x.shape, w, g, taps, pool, **kw) is not None
    bad = w.copy()
    bad[1, 1, 3, 7] = np.inf  # would meet the skipped zeros: NaN in the dense dx
    assert _nn_core.conv2d_max_pool_dx(x.shape, bad, g, taps, pool, **kw) is None
    # NCHW, groups > 1: not this path
    xn, wn = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
    assert _nn_core.conv2d_max_pool_dx(xn.shape, wn, g.transpose(0, 3, 1, 2), taps.transpose(0, 3, 1, 2), pool,
                                       data_format="NCHW") is None
    xg, wg = np.zeros((2, 12, 12, 4), np.float32), np.zeros((3, 3, 2, 8), np.float32)
    assert _nn_core.conv2d_max_pool_dx(xg.shape, wg, np.zeros((2, 5, 5, 8), np.float32),
                                       np.zeros((2, 5, 5, 8), np.uint8), 2, groups=2) is None
    # where conv2d_grad's dx takes Winograd (64 -> 128 channels at 14 x 14), it is as fast: not taken
    xw, ww = np.zeros((4, 14, 14, 64), np.float32), np.zeros((3, 3, 64, 128), np.float32)
    assert nn.conv2d_algorithm(xw, ww, padding="same", data_grad=True) == "winograd"
    assert _nn_core.conv2d_max_pool_dx(xw.shape, ww, np.zeros((4, 7, 7, 128), np.float32),
                                       np.zeros((4, 7, 7, 128), np.uint8), 2, padding="same") is None
    # a tap outside its 2 x 2 window
    t = taps.copy()
    t[0, 0, 0, 0] = 4
    g1 = g.copy()
    g1[0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError):
        _nn_core.conv2d_max_pool_dx(x.shape, w, g1, t, pool, **kw)
    with pytest.raises(ValueError, match="taps"):
        _nn_core.conv2d_max_pool_dx(x.shape, w, g, taps.astype(np.int32), pool, **kw)
