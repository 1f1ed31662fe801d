"""Results are bit-identical for 1 and 2 threads, and concurrent calls from Python threads are safe."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnc
import cnnc.nn as nn

CONV_KW = [
    dict(strides=1, padding="same", dilations=1, groups=1),
    dict(strides=(2, 1), padding=((1, 2), (0, 1)), dilations=(1, 2), groups=2),
    dict(strides=2, padding="same", dilations=1, groups=6),  # depthwise
]


def _conv_inputs(rng, data_format, groups):
    # big enough that every parallel loop (batch, rows, GEMM blocks) has work for 2 threads
    x = rng.standard_normal((3, 17, 19, 6)).astype(np.float32)
    w = rng.standard_normal((3, 3, 6 // groups, 24)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    if data_format == "NCHW":
        x, w = x.transpose(0, 3, 1, 2).copy(), w.transpose(3, 2, 0, 1).copy()
    return x, w, b


def _both(threads, fn):
    threads(1)
    r1 = fn()
    threads(2)
    r2 = fn()
    return r1, r2


def _assert_same(r1, r2):
    if isinstance(r1, tuple):
        assert len(r1) == len(r2)
        for a, b in zip(r1, r2):
            _assert_same(a, b)
        return
    assert r1.dtype == r2.dtype and r1.shape == r2.shape
    assert np.array_equal(r1, r2), f"max diff {np.max(np.abs(r1.astype(float) - r2))}"


@pytest.mark.parametrize("kw", CONV_KW, ids=["plain", "strided_grouped", "depthwise"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_conv2d_threads_bit_identical(data_format, kw, threads, rng):
    x, w, b = _conv_inputs(rng, data_format, kw["groups"])
    fwd = lambda: nn.conv2d(x, w, b, activation="relu", data_format=data_format, **kw)
    y1, y2 = _both(threads, fwd)
    _assert_same(y1, y2)
    dy = rng.standard_normal(y1.shape).astype(np.float32)
    _assert_same(*_both(threads, lambda: nn.conv2d_grad(x, w, dy, data_format=data_format, **kw)))


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_conv2d_large_threads_bit_identical(data_format, threads, rng):
    """Several images per call, a multi-MB column matrix and K = 288 > kc: the weight gradient is a
    reduction over images/chunks, which must not depend on the thread count."""
    x = rng.standard_normal((3, 40, 41, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 32, 17)).astype(np.float32)
    if data_format == "NCHW":
        x, w = x.transpose(0, 3, 1, 2).copy(), w.transpose(3, 2, 0, 1).copy()
    y1, y2 = _both(threads, lambda: nn.conv2d(x, w, padding="same", data_format=data_format))
    _assert_same(y1, y2)
    _assert_same(*_both(threads, lambda: nn.conv2d_grad(x, w, y1, padding="same",
                                                        data_format=data_format)))


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_im2col_threads_bit_identical(data_format, threads, rng):
    x, _, _ = _conv_inputs(rng, data_format, 1)
    _assert_same(*_both(threads, lambda: nn.im2col(x, 3, strides=(1, 2), padding="same",
                                                   data_format=data_format)))


def test_dense_threads_bit_identical(threads, rng):
    x = rng.standard_normal((67, 129)).astype(np.float32)
    w = rng.standard_normal((129, 65)).astype(np.float32)
    b = rng.standard_normal(65).astype(np.float32)
    _assert_same(*_both(threads, lambda: nn.dense(x, w, b, activation="tanh")))
    _assert_same(*_both(threads, lambda: nn.dense(x, w, b, activation="softmax")))
    dy = rng.standard_normal((67, 65)).astype(np.float32)
    _assert_same(*_both(threads, lambda: nn.dense_grad(x, w, dy)))
    x4 = rng.standard_normal((3, 5, 7, 24)).astype(np.float32)
    _assert_same(*_both(threads, lambda: nn.bias_add(x4, b[:24], "elu")))
    _assert_same(*_both(threads, lambda: nn.bias_add(x4, b[:5], "relu", data_format="NCHW")))


ACTS = ["relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "hard_sigmoid", "hard_swish",
        "relu6"]


@pytest.mark.parametrize("name", ACTS)
def test_activations_threads_bit_identical(name, threads, rng):
    x = (rng.standard_normal(100_003) * 4).astype(np.float32)  # odd length: ragged split
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _assert_same(*_both(threads, lambda: getattr(nn, name)(x)))
    _assert_same(*_both(threads, lambda: getattr(nn, name + "_grad")(x, dy)))


def test_softmax_and_matmul_threads_bit_identical(threads, rng):
    x = (rng.standard_normal((257, 391)) * 5).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for axis in (-1, 0):
        _assert_same(*_both(threads, lambda: nn.softmax(x, axis=axis)))
        _assert_same(*_both(threads, lambda: nn.log_softmax(x, axis=axis)))
        _assert_same(*_both(threads, lambda: nn.softmax_grad(x, dy, axis=axis)))
        _assert_same(*_both(threads, lambda: nn.log_softmax_grad(x, dy, axis=axis)))
    _assert_same(*_both(threads, lambda: nn.clip(x, -1.0, 2.0)))
    a = rng.standard_normal((131, 517)).astype(np.float32)
    _assert_same(*_both(threads, lambda: nn.matmul(a[:, :257], x)))
    _assert_same(*_both(threads, lambda: nn.matmul(x, a[:, :391], transpose_b=True)))


def _work(seed):
    """One worker's job: a mix of ops on its own inputs."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((2, 13, 11, 5)).astype(np.float32)
    w = r.standard_normal((3, 3, 5, 7)).astype(np.float32)
    y = nn.conv2d(x, w, padding="same", strides=(1, 2), activation="relu")
    dx, dw, db = nn.conv2d_grad(x, w, y, padding="same", strides=(1, 2))
    xc = x.transpose(0, 3, 1, 2).copy()
    yc = nn.conv2d(xc, w.transpose(3, 2, 0, 1).copy(), data_format="NCHW", dilations=2)
    m = nn.matmul(r.standard_normal((97, 65)), r.standard_normal((65, 33)))
    d = nn.dense(m, r.standard_normal((33, 9)).astype(np.float32), activation="softmax")
    s = nn.log_softmax(m, axis=0)
    t = nn.sigmoid_grad(m, m)
    return [y, dx, dw, db, yc, m, d, s, t]


@pytest.mark.parametrize("nthreads", [1, 2])
def test_concurrent_python_threads(nthreads, threads):
    threads(nthreads)
    seeds = list(range(12))
    sequential = [_work(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            concurrent = list(pool.map(_work, seeds))
            for seq, con in zip(sequential, concurrent):
                for a, b in zip(seq, con):
                    assert np.array_equal(a, b)
    assert cnnc.get_num_threads() == nthreads
