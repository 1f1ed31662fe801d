"""The AVX-512 path: its 12x16 GEMM micro-kernel and 12-row A packer, with the AVX2 kernels for the rest.

For every element of C the micro-kernel performs the AVX2 6x16 kernel's operations in the same order (an
FMA chain over each k block from zero, then alpha, beta, bias, residual, relu), the k blocks are the same,
and every other kernel the path runs is the AVX2 one. So the two paths give the same bits on any data, and
these tests compare them bit for bit: the GEMM over a grid around the 12-row and 16-column tile edges and
the cache blocks, its epilogues, each convolution algorithm forward and backward, a training run. The GEMM
is also checked against NumPy.

Without an AVX-512 CPU they run in the test build whose AVX-512 files are compiled against an emulation
header (setup.py, CNNC_AVX512_EMULATION=1; .ci/run makes one); elsewhere they skip.
"""
import numpy as np
import pytest

import cnnc
from cnnc import _core, layers, models, nn

import reference as ref

def _on(isa, arch, fn):
    isa(arch)
    return fn()


def _same(a, b):
    """Bit equality of two results (arrays, or tuples/lists of arrays or None)."""
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _both(isa, fn, threads=(1, 2)):
    """fn() on the AVX-512 path at each thread count, asserted to give the AVX2 path's bits."""
    isa("avx512")  # skips the test where the path cannot run
    assert _core.gemm_blocking()["mr"] == 12 and _core.gemm_blocking()["nr"] == 16
    got = []
    for t in threads:
        with cnnc._config.thread_limit(t):
            wide = _on(isa, "avx512", fn)
            narrow = _on(isa, "avx2", fn)
        assert _same(wide, narrow), f"{t} thread(s): the AVX-512 path's bits differ from AVX2's"
        got.append(wide)
    return got[0]


def _gemm(a, b, c0, ta, tb, m, n, k, alpha, beta):
    c = c0.copy()
    _core.gemm(a, b, c, int(ta), int(tb), m, n, k, a.shape[1], b.shape[1], c.shape[1], alpha, beta)
    return c


# m around the 12-row tile (5 is the first size past the few-row kernels) and the 144-row block; n around
# the 16-column tile; k around a k block (256; 300 is split into two blocks of 150, 600 into three)
GRID = [(m, n, k) for m in (5, 11, 12, 13, 24, 25, 150) for n, k in ((15, 7), (16, 256), (17, 300), (33, 1))]
GRID += [(37, 50, 600), (290, 40, 20), (12, 4100, 9)]  # several k blocks; several row blocks; column blocks


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)],
                         ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("m,n,k", GRID, ids=[f"{m}x{n}x{k}" for m, n, k in GRID])
def test_gemm_gives_avx2s_bits_and_numpys_values(m, n, k, ta, tb, isa, rng):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for alpha, beta in ((1.0, 0.0), (0.5, -2.0)):
        c = _both(isa, lambda: _gemm(a, b, c0, ta, tb, m, n, k, alpha, beta))
        want = alpha * ref.matmul(a, b, ta, tb) + beta * c0.astype(np.float64)
        mag = abs(alpha) * ref.matmul_mag(a, b, ta, tb) + abs(beta * c0)
        ref.assert_close(c, want, mag=mag, name=f"alpha={alpha} beta={beta}")


def test_gemm_non_finite_values_land_where_avx2s_do(isa, rng):
    m, n, k = 25, 33, 300
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    a[3, 7], a[13, 0], b[299, 16], b[5, 2] = np.nan, np.inf, -np.inf, np.inf
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c0[24, 32] = np.nan
    c = _both(isa, lambda: _gemm(a, b, c0, False, False, m, n, k, 1.0, 1.0))
    want = ref.matmul(a, b) + c0.astype(np.float64)
    assert np.array_equal(np.isnan(c), np.isnan(want)) and np.array_equal(np.isinf(c), np.isinf(want))


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("m", [5, 12, 13, 37])
def test_dense_with_bias_and_activation(m, activation, isa, rng):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, 300), (300, 70), (70,)))
    y = _both(isa, lambda: nn.dense(x, w, b, activation=activation))
    np.testing.assert_allclose(y, nn.bias_add(x.astype(np.float64) @ w, b, activation=activation),
                               rtol=1e-4, atol=1e-4)
    _both(isa, lambda: nn.dense_grad(x, w, np.tanh(y)))


CONV_CASES = {  # x shape (NHWC), kernel, cout, groups, strides, padding; the algorithm it takes
    "3x3 im2col": ((2, 13, 11, 20), 3, 29, 1, 1, "same", "im2col"),
    "5x5 strided": ((3, 17, 16, 8), 5, 16, 1, 2, "valid", "im2col"),
    "1x1 pointwise": ((2, 9, 7, 24), 1, 40, 1, 1, "valid", "im2col"),
    "grouped": ((2, 8, 9, 12), 3, 18, 3, 1, "same", "im2col"),
    "direct (3 channels)": ((2, 19, 18, 3), 3, 32, 1, 1, "same", "direct"),
    "winograd": ((2, 16, 16, 32), 3, 48, 1, 1, "same", "winograd"),
    "depthwise": ((2, 14, 15, 24), 3, 24, 24, 2, "same", "depthwise"),
}


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_convolution_forward_and_gradients(name, data_format, isa, rng):
    xs, k, cout, groups, strides, padding, algorithm = CONV_CASES[name]
    x = rng.standard_normal(xs).astype(np.float32)
    w = (0.3 * rng.standard_normal((k, k, xs[3] // groups, cout))).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    if data_format == "NCHW":
        x, w = x.transpose(0, 3, 1, 2).copy(), w.transpose(3, 2, 0, 1).copy()
    kw = dict(strides=strides, padding=padding, groups=groups, data_format=data_format)
    isa("avx512")
    if data_format == "NHWC" or algorithm != "depthwise":
        assert nn.conv2d_algorithm(x, w, **kw) == algorithm
    y = _both(isa, lambda: nn.conv2d(x, w, b, activation="relu", **kw))
    assert (y > 0).any() and (y == 0).any()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _both(isa, lambda: nn.conv2d_grad(x, w, dy, **kw))


def test_training_a_small_cnn(isa):
    """A few RMSprop steps of a Chollet-style CNN end with the AVX2 path's weights, bit for bit."""
    data = np.random.default_rng(3)
    x = data.standard_normal((40, 28, 28, 1)).astype(np.float32)
    y = data.integers(0, 10, 40)

    def train():
        cnnc.utils.set_random_seed(0)
        model = models.Sequential([
            layers.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.Flatten(),
            layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        return model.get_weights() + [model.predict(x[:5], verbose=0)]

    _both(isa, train)
