"""Conv -> max pool fused into one op of the C runtime (Graph.fuse_conv_pools): the NHWC direct path
pools the convolution's rows on the stack and never writes them out; other convolutions pool from
the workspace. Either way the bits are the two ops'."""
import numpy as np
import pytest

import cnnc
from cnnc import deploy, layers, models
from cnnc.deploy import _format, _lower

RNG = np.random.default_rng(7)


def _net(c, cout, hw, k, pool, act="relu", padding="valid", strides=1, pool_strides=None, pool_padding="valid",
         data_format="channels_last"):
    cnnc.utils.set_random_seed(3)
    shape = (hw, hw, c) if data_format == "channels_last" else (c, hw, hw)
    return models.Sequential([
        layers.Input(shape),
        layers.Conv2D(cout, k, strides=strides, padding=padding, activation=act, data_format=data_format),
        layers.MaxPooling2D(pool, strides=pool_strides, padding=pool_padding, data_format=data_format),
    ])  # the pooled tensor is the output: every element is compared (a dense layer would mix NaNs in)


def _fused(model):
    return [op.label for op in _lower.from_sequential(model).ops if "max pool" in op.label]


def _predict(model, x, fuse, monkeypatch):
    model._runner_cache = None
    if not fuse:
        monkeypatch.setattr(_format.Graph, "fuse_conv_pools", lambda self: None)
    try:
        return model.predict(x, batch_size=len(x), verbose=0)
    finally:
        monkeypatch.undo()
        model._runner_cache = None


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


CASES = {
    # name: (C, Cout, H=W, k, pool, activation, conv padding, conv strides)
    "chollet's first layer (direct, relu in the kernel)": (1, 32, 28, 3, 2, "relu", "valid", 1),
    "geron's first layer (7x7 same)": (1, 64, 28, 7, 2, "relu", "same", 1),
    "odd size: the last row and column are not pooled": (3, 8, 13, 3, 2, "relu", "valid", 1),
    "3x3 pool, no activation": (2, 20, 17, 3, 3, "linear", "same", 1),
    "2x3 pool, sigmoid (epilogue on the band)": (4, 24, 16, 3, (2, 3), "sigmoid", "valid", 1),
    "strided conv": (1, 16, 21, 3, 2, "tanh", "same", 2),
    "8 channels: not direct, pooled from the workspace": (8, 16, 12, 3, 2, "relu", "valid", 1),
    "a wide band: pooled from the workspace": (1, 256, 40, 3, 2, "relu", "same", 1),
    "chollet's second layer (Winograd: each tile is a window)": (32, 64, 13, 3, 2, "relu", "valid", 1),
    "Winograd, same padding, 40 channels, linear": (32, 40, 12, 3, 2, "linear", "same", 1),
    "Winograd, odd width, sigmoid": (48, 16, 15, 3, 2, "sigmoid", "same", 1),
    "Winograd with a 3x3 pool: pooled from the workspace": (32, 16, 14, 3, 3, "tanh", "same", 1),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_conv_pool_gives_the_unfused_bits(name, arch, threads, monkeypatch, isa):
    isa(arch)
    c, cout, hw, k, pool, act, pad, st = CASES[name]
    model = _net(c, cout, hw, k, pool, act, pad, st)
    assert len(_fused(model)) == 1
    x = RNG.standard_normal((3, hw, hw, c)).astype(np.float32)
    x[1, 2:5, 3:6, :] = -0.0
    x[2, 4, 4, 0] = np.nan  # NaN wins its windows, wherever it lies in them
    x[0, hw - 3, 1, 0] = np.inf  # Winograd computes the tiles that read it directly
    with cnnc._config.thread_limit(threads):
        fused = _predict(model, x, True, monkeypatch)
        unfused = _predict(model, x, False, monkeypatch)
        layerwise = model._layer_forward(x, training=False)
    assert np.array_equal(_bits(fused), _bits(unfused))
    assert np.array_equal(_bits(fused), _bits(layerwise))
    assert not np.isnan(fused[:2]).any()
    if act in ("linear", "sigmoid", "tanh"):  # ReLU maps NaN to 0
        assert np.isnan(fused[2]).any()


def test_what_is_not_fused():
    assert _fused(_net(1, 8, 12, 3, 2, pool_strides=1)) == []  # overlapping windows
    assert _fused(_net(1, 8, 13, 3, 2, pool_padding="same")) == []  # padded pool (11 rows)
    assert _fused(_net(1, 8, 12, 3, 2, data_format="channels_first")) == []  # NCHW
    assert len(_fused(_net(1, 8, 12, 3, 2))) == 1


def test_the_fused_op_saves_the_convolutions_output():
    """At batch 64 Chollet's first convolution's 5.5 MB output no longer takes arena memory."""
    from cnnc import zoo
    model = zoo.chollet_cnn()
    g = _lower.from_sequential(model)
    assert all(op.label.endswith(" + max pool 2x2") for op in g.ops[:2])
    rt = deploy.Runtime(g.to_bytes(plan_batch=64))
    plan, _ = rt.arena_parts(64)
    assert plan < 64 * 26 * 26 * 32 * 4


def test_winograd_computes_only_the_pooled_tiles():
    """With a 2x2 pool after a Winograd convolution, the fused op's tiles are the pool's windows: 2 x 5 x 5
    tiles instead of 2 x 6 x 6 for an 11 x 11 output, so it needs less workspace than the convolution
    alone, and no tensor for the convolution's output."""
    model = _net(32, 64, 13, 3, 2)
    assert cnnc.nn.conv2d_algorithm((2, 13, 13, 32), (3, 3, 32, 64)) == "winograd"
    fused = deploy.Runtime(_lower.from_sequential(model).to_bytes(plan_batch=2)).arena_parts(2)
    mp = pytest.MonkeyPatch()
    mp.setattr(_format.Graph, "fuse_conv_pools", lambda self: None)
    try:
        unfused = deploy.Runtime(_lower.from_sequential(model).to_bytes(plan_batch=2)).arena_parts(2)
    finally:
        mp.undo()
    assert fused[1] < unfused[1]  # workspace: 50 tiles' V and M instead of 72 tiles'
    assert fused[0] < unfused[0]  # tensors: the convolution's output is not one


def test_prepacked_bundle_runs_the_fused_op(tmp_path):
    model = _net(1, 32, 28, 3, 2)
    path = str(tmp_path / "m.cnnb")
    deploy.bundle(model, path)
    x = RNG.standard_normal((2, 28, 28, 1)).astype(np.float32)
    rt = deploy.Runtime(path)
    want = model._layer_forward(x, training=False)
    assert np.array_equal(_bits(rt.run(x)), _bits(want))


def test_a_bad_fused_pool_window_is_rejected():
    g = _lower.from_sequential(_net(1, 8, 12, 3, 2))
    conv = next(op for op in g.ops if "max pool" in op.label)
    for bad in (0, 11):  # no window; a window taller than the convolution's output (10 rows)
        conv.ints[11] = bad
        with pytest.raises(deploy.BundleError, match="fused pool window"):
            deploy.Runtime(g.to_bytes(plan_batch=1))
