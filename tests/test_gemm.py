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


# ---- few-row products (m below the micro-kernel's tile: B is read in place, not packed) -----------
# Through the binding with explicit leading dimensions, alpha and beta: the C contract itself.
from cnnc import _core  # noqa: E402

SMALL_N = [1, 3, 8, 9, 17, 64, 100]
SMALL_K = [1, 3, 8, 9, 31, 300]
ALPHA_BETA = [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)]


def _padded(rng, rows, cols, pad):
    """A C-contiguous float32 buffer rows x (cols + pad): the matrix is its first cols columns."""
    return rng.standard_normal((rows, cols + pad)).astype(np.float32)


def _core_gemm(a_buf, b_buf, c_buf, ta, tb, m, n, k, alpha, beta):
    _core.gemm(a_buf, b_buf, c_buf, int(ta), int(tb), m, n, k, a_buf.shape[1], b_buf.shape[1],
               c_buf.shape[1], alpha, beta)


def _small_case(rng, m, n, k, ta, tb, pad=3):
    a = _padded(rng, k if ta else m, m if ta else k, pad)
    b = _padded(rng, n if tb else k, k if tb else n, pad + 2)
    c0 = _padded(rng, m, n, pad + 1)
    return a, b, c0


def _small_twin(a, b, c0, ta, tb, m, n, k, alpha, beta):
    av = a[:, :m] if ta else a[:, :k]
    bv = b[:, :k] if tb else b[:, :n]
    prod = ref.matmul(av, bv, ta, tb)
    want = alpha * prod + beta * c0[:, :n].astype(np.float64)
    mag = abs(alpha) * ref.matmul_mag(av, bv, ta, tb) + abs(beta) * np.abs(c0[:, :n].astype(np.float64))
    return want, mag


@pytest.mark.parametrize("ta,tb", TRANS, ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("m", range(1, 8))
def test_gemm_few_rows_grid(m, ta, tb, rng):
    """m = 1..7 (the few-row path and the packed path on either side of the switch), odd and tiny n
    and k, leading dimensions larger than the widths, alpha/beta variants; the padding columns of C
    must stay untouched."""
    for n in SMALL_N:
        for k in SMALL_K:
            for alpha, beta in ALPHA_BETA:
                a, b, c0 = _small_case(rng, m, n, k, ta, tb)
                c = c0.copy()
                _core_gemm(a, b, c, ta, tb, m, n, k, alpha, beta)
                want, mag = _small_twin(a, b, c0, ta, tb, m, n, k, alpha, beta)
                ref.assert_close(c[:, :n], want, mag=mag, name=f"m{m} n{n} k{k} a{alpha} b{beta}")
                assert np.array_equal(c[:, n:], c0[:, n:]), "columns past n were written"


@pytest.mark.parametrize("tb", [False, True], ids=["NN", "NT"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_gemm_few_rows_special_values(m, tb, rng):
    """beta = 0 does not read C (NaN there vanishes); a NaN in row i of A or in column j of op(B)
    reaches exactly row i / column j of C; inf propagates."""
    n, k = 37, 21
    a, b, _ = _small_case(rng, m, n, k, False, tb, pad=0)
    c = np.full((m, n), np.nan, np.float32)
    _core_gemm(a, b, c, False, tb, m, n, k, 1.0, 0.0)
    assert np.all(np.isfinite(c))
    a2, b2 = a.copy(), b.copy()
    a2[m - 1, 5] = np.nan
    jb = 11
    if tb:
        b2[jb, 7] = np.nan
    else:
        b2[7, jb] = np.nan
    c = np.zeros((m, n), np.float32)
    _core_gemm(a2, b2, c, False, tb, m, n, k, 1.0, 1.0)
    bad = np.zeros((m, n), bool)
    bad[m - 1, :] = True
    bad[:, jb] = True
    assert np.array_equal(np.isnan(c), bad)
    a3 = a.copy()
    a3[0, 0] = np.inf
    bcol0 = b[:n, 0] if tb else b[0, :n]
    c = np.zeros((m, n), np.float32)
    _core_gemm(a3, b, c, False, tb, m, n, k, 1.0, 0.0)
    assert np.array_equal(np.isposinf(c[0]), bcol0 > 0) and np.array_equal(np.isneginf(c[0]), bcol0 < 0)


@pytest.mark.parametrize("ta,tb", TRANS, ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("m", [1, 3, 4, 5])
def test_gemm_few_rows_threads_bit_identical(m, ta, tb, threads, rng):
    """Wide products (several column chunks, ragged last one) give the same bits on 1 and 2 threads."""
    n, k = 4500 + m, 301
    a, b, c0 = _small_case(rng, m, n, k, ta, tb, pad=1)
    out = []
    for t in (1, 2):
        threads(t)
        c = c0.copy()
        _core_gemm(a, b, c, ta, tb, m, n, k, 1.0, 1.0)
        out.append(c)
    assert np.array_equal(out[0], out[1])
    want, mag = _small_twin(a, b, c0, ta, tb, m, n, k, 1.0, 1.0)
    ref.assert_close(out[0][:, :n], want, mag=mag)


def test_gemm_few_rows_isa_paths_agree(rng):
    """The vector few-row kernels and the portable ones agree (to rounding) on the same operands."""
    if not _core.cpu_supports("avx2"):
        pytest.skip("no AVX2 on this CPU")
    before = _core.arch_name()
    got = {}
    try:
        for arch in ("generic", "avx2"):
            assert _core._init_arch(arch) == arch
            for m in (1, 2, 3, 4):
                for tb in (False, True):
                    a, b, c0 = _small_case(np.random.default_rng(m), m, 203, 77, False, tb)
                    c = c0.copy()
                    _core_gemm(a, b, c, False, tb, m, 203, 77, 0.5, -2.0)
                    got[arch, m, tb] = (c, _small_twin(a, b, c0, False, tb, m, 203, 77, 0.5, -2.0))
    finally:
        _core._init_arch(before)
    for (arch, m, tb), (c, (want, mag)) in got.items():
        ref.assert_close(c[:, :203], want, mag=mag, name=f"{arch} m{m} tb{tb}")
        other = got["avx2" if arch == "generic" else "generic", m, tb][0]
        ref.assert_close(c[:, :203], other[:, :203].astype(np.float64), mag=mag)


@pytest.mark.parametrize("ta", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_gemm_few_rows_same_bits_as_packed_path(m, ta, rng):
    """B stored k x n: the few-row product gives the bits of the packed path (which a product with 6
    rows takes: its first m rows), k spanning several k blocks, alpha/beta applied per block alike."""
    n, k = 45, 700
    a6 = rng.standard_normal((6, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((6, n)).astype(np.float32)
    for alpha, beta in ALPHA_BETA:
        a_store = np.ascontiguousarray(a6.T) if ta else a6
        packed = c0.copy()
        _core.gemm(a_store, b, packed, int(ta), 0, 6, n, k, 6 if ta else k, n, n, alpha, beta)
        a_few = np.ascontiguousarray(a6[:m].T) if ta else np.ascontiguousarray(a6[:m])
        few = c0[:m].copy()
        _core.gemm(a_few, b, few, int(ta), 0, m, n, k, m if ta else k, n, n, alpha, beta)
        assert np.array_equal(few, packed[:m]), (alpha, beta)
