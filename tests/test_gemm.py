"""nn.matmul against NumPy in float64: transposes, awkward sizes, views, dtypes, determinism."""
import itertools

import numpy as np
import pytest

import cnnc.nn as nn
import reference as ref

SIZES = [1, 2, 5, 6, 7, 15, 16, 17, 31, 33, 64, 100, 257]
TRANS = list(itertools.product([False, True], repeat=2))


def _sampled_shapes(count=36, seed=7):
    """Every size appears as m, as n and as k at least once, plus random combos; total m*n*k is
    capped so the whole set stays quick."""
    r = np.random.default_rng(seed)
    shapes = []
    for i, s in enumerate(SIZES):  # each size in each role, paired with rotating partners
        a, b = SIZES[(i + 3) % len(SIZES)], SIZES[(i + 7) % len(SIZES)]
        shapes += [(s, a, b), (a, s, b), (a, b, s)]
    while len(shapes) < count + 3 * len(SIZES):
        m, n, k = (int(v) for v in r.choice(SIZES, 3))
        if m * n * k <= 257 * 257 * 64:
            shapes.append((m, n, k))
    return sorted(set(shapes))


SHAPES = _sampled_shapes()


def _operands(rng, m, n, k, ta, tb, dtype=np.float32):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


@pytest.mark.parametrize("ta,tb", TRANS, ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("m,n,k", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_matmul_sizes(m, n, k, ta, tb, rng):
    a, b = _operands(rng, m, n, k, ta, tb)
    c = nn.matmul(a, b, transpose_a=ta, transpose_b=tb)
    assert c.dtype == np.float32 and c.shape == (m, n)
    ref.assert_close(c, ref.matmul(a, b, ta, tb), mag=ref.matmul_mag(a, b, ta, tb))


@pytest.mark.parametrize("ta,tb", TRANS, ids=["NN", "NT", "TN", "TT"])
def test_matmul_large_crosses_cache_blocks(ta, tb, rng):
    """300 x 517 x 1100: several kc (~256) panels along k, partial mc/nc blocks and edge tiles."""
    m, n, k = 300, 517, 1100
    a, b = _operands(rng, m, n, k, ta, tb)
    c = nn.matmul(a, b, transpose_a=ta, transpose_b=tb)
    ref.assert_close(c, ref.matmul(a, b, ta, tb), mag=ref.matmul_mag(a, b, ta, tb))


def test_matmul_noncontiguous_views(rng):
    big = rng.standard_normal((90, 120)).astype(np.float32)
    a = big[1:60:2, 3:100:3]  # 30 x 33, strided
    b = big.T[5:38, ::4]  # 33 x 23, transposed view
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    c = nn.matmul(a, b)
    ref.assert_close(c, ref.matmul(a, b), mag=ref.matmul_mag(a, b))
    # negative strides and Fortran order
    a2, b2 = a[::-1], np.asfortranarray(b)
    ref.assert_close(nn.matmul(a2, b2), ref.matmul(a2, b2), mag=ref.matmul_mag(a2, b2))
    # a transposed view with transpose_a: op(a.T) = a
    ref.assert_close(nn.matmul(a.T, b, transpose_a=True), ref.matmul(a, b), mag=ref.matmul_mag(a, b))
    ref.assert_close(nn.matmul(a, b.T, transpose_b=True), ref.matmul(a, b), mag=ref.matmul_mag(a, b))
    # the inputs are left alone
    assert np.array_equal(big, big.copy())


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.float16, np.float64,
                                   np.bool_])
def test_matmul_dtypes(dtype, rng):
    if dtype == np.bool_:
        a, b = rng.random((7, 17)) > 0.5, rng.random((17, 5)) > 0.5
    elif np.issubdtype(dtype, np.integer):
        lo = 0 if np.issubdtype(dtype, np.unsignedinteger) else -9
        a, b = rng.integers(lo, 10, (7, 17)).astype(dtype), rng.integers(lo, 10, (17, 5)).astype(dtype)
    else:
        a, b = rng.standard_normal((7, 17)).astype(dtype), rng.standard_normal((17, 5)).astype(dtype)
    c = nn.matmul(a, b)
    assert c.dtype == np.float32
    want = ref.matmul(a, b)
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        assert np.array_equal(c, want)  # small integers: exact in float32
    else:
        # float64 inputs are rounded to float32 first (2 eps32 per term, inside ATOL_MAG)
        ref.assert_close(c, want, mag=ref.matmul_mag(a, b))


def test_matmul_lists(rng):
    c = nn.matmul([[1, 2], [3, 4]], [[5], [6]])
    assert c.dtype == np.float32 and np.array_equal(c, [[17], [39]])


def test_matmul_inner_dim_mismatch_names_shapes():
    with pytest.raises(ValueError) as info:
        nn.matmul(np.ones((3, 4)), np.ones((5, 2)))
    msg = str(info.value)
    assert "(3, 4)" in msg and "(5, 2)" in msg
    with pytest.raises(ValueError):
        nn.matmul(np.ones((3, 4)), np.ones((3, 2)), transpose_a=False)
    # with the transpose the same operands agree
    assert nn.matmul(np.ones((3, 4)), np.ones((3, 2)), transpose_a=True).shape == (4, 2)


def test_matmul_special_values():
    a = np.array([[1.0, np.inf], [0.0, 2.0]], np.float32)
    b = np.array([[1.0], [1.0]], np.float32)
    c = nn.matmul(a, b)
    assert np.isposinf(c[0, 0]) and c[1, 0] == 2.0
    z = nn.matmul(np.zeros((5, 3)), np.zeros((3, 4)))
    assert np.array_equal(z, np.zeros((5, 4)))


def test_matmul_bit_identical_1_vs_2_threads(threads, rng):
    a = rng.standard_normal((200, 400)).astype(np.float32)
    b = rng.standard_normal((400, 300)).astype(np.float32)
    threads(1)
    c1 = nn.matmul(a, b)
    c1t = nn.matmul(a.T.copy(), b.T.copy(), transpose_a=True, transpose_b=True)
    threads(2)
    c2 = nn.matmul(a, b)
    c2t = nn.matmul(a.T.copy(), b.T.copy(), transpose_a=True, transpose_b=True)
    assert np.array_equal(c1, c2)
    assert np.array_equal(c1t, c2t)
    ref.assert_close(c1, ref.matmul(a, b), mag=ref.matmul_mag(a, b))
