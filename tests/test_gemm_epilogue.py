"""Bias and activation applied by the GEMM to each output tile as it is finished (the epilogue).

The fused result must be bit-identical to the GEMM alone followed by the separate bias+activation
pass (nn.bias_add), for every path the epilogue is on: NHWC (bias per GEMM column) and NCHW (per
GEMM row) convolutions, grouped and 1x1 ones, the NCHW panels threads take whole, a K deep enough to
be split over several rounds, the few-row GEMM (dense at batch <= 4), and every fused activation. The
direct NCHW kernel for few input channels (conv_direct.c, the 'strided' case) applies them the same way.
The values themselves are checked against NumPy in test_nn_conv.py and test_nn_dense.py.
"""
import numpy as np
import pytest

from cnnc import nn

from reference import FUSED_ACTIVATIONS

ACTS = [a for a in FUSED_ACTIVATIONS if a not in (None, "linear")] + [None]


def _rand(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


CONV_CASES = [  # name, x shape (NHWC), kernel h/w, cout, groups, strides, padding
    ("3x3", (2, 9, 8, 5), 3, 7, 1, 1, "same"),
    ("1x1", (3, 5, 6, 8), 1, 11, 1, 1, "valid"),
    ("grouped", (2, 7, 7, 12), 3, 9, 3, 1, "same"),
    ("strided", (2, 11, 10, 3), 3, 16, 1, 2, "valid"),
    ("deep-k", (1, 6, 6, 520), 3, 20, 1, 1, "same"),  # K = 4680: B's depth split over rounds
]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_epilogue_bit_identical(case, data_format, activation, with_bias, threads, rng):
    _, xs, k, cout, groups, strides, padding = case
    x = _rand(rng, xs)
    w = _rand(rng, (k, k, xs[3] // groups, cout), scale=0.3)
    b = _rand(rng, (cout,)) if with_bias else None
    if data_format == "NCHW":
        x, w = x.transpose(0, 3, 1, 2).copy(), w.transpose(3, 2, 0, 1).copy()
    kw = dict(strides=strides, padding=padding, groups=groups, data_format=data_format)
    for n in (1, 2):
        threads(n)
        assert nn.conv2d_algorithm(x, w, **kw) in ("im2col", "direct")  # direct: few NCHW channels
        fused = nn.conv2d(x, w, b, activation=activation, **kw)
        plain = nn.bias_add(nn.conv2d(x, w, **kw), b, activation=activation, data_format=data_format)
        assert np.array_equal(fused, plain, equal_nan=True), (n, np.abs(fused - plain).max())


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("m", [1, 3, 4, 5, 37])  # up to 4 rows: the few-row GEMM; then the packed one
@pytest.mark.parametrize("k", [7, 300, 4700])
def test_dense_epilogue_bit_identical(m, k, activation, threads, rng):
    x, w, b = _rand(rng, (m, k)), _rand(rng, (k, 70), scale=0.1), _rand(rng, (70,))
    for n in (1, 2):
        threads(n)
        fused = nn.dense(x, w, b, activation=activation)
        plain = nn.bias_add(nn.dense(x, w), b, activation=activation)
        assert np.array_equal(fused, plain, equal_nan=True), (n, np.abs(fused - plain).max())
        # without a bias: the activation alone
        assert np.array_equal(nn.dense(x, w, activation=activation),
                              nn.bias_add(nn.dense(x, w), None, activation=activation), equal_nan=True)


def test_epilogue_propagates_nan_and_inf(rng):
    x = _rand(rng, (2, 6, 6, 4))
    x[0, 2, 3, 1] = np.nan
    x[1, 0, 0, 0] = np.inf
    w = _rand(rng, (3, 3, 4, 5))
    b = _rand(rng, (5,))
    for act in ("relu", "tanh", "sigmoid"):
        fused = nn.conv2d(x, w, b, padding="same", activation=act)
        with np.errstate(invalid="ignore"):
            plain = nn.bias_add(nn.conv2d(x, w, padding="same"), b, activation=act)
        assert np.array_equal(fused, plain, equal_nan=True)
        if act != "relu":  # relu maps NaN to 0, in both paths
            assert np.isnan(fused).any()
