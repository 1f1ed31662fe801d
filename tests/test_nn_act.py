"""Activations, their gradients, softmax and log_softmax against the float64 twins."""
import functools

import numpy as np
import pytest

import cnnc.nn as nn
import gradcheck
import reference as ref


def _spec(name, kwargs=None, kinks=None):
    """(id, cnnc forward, cnnc grad, twin forward, twin grad, kinks)."""
    kwargs = kwargs or {}
    f, g = getattr(nn, name), getattr(nn, name + "_grad")
    rf, rg = getattr(ref, name), getattr(ref, name + "_grad")
    if kinks is None:
        kinks = ref.ACTIVATIONS[name][2]
    label = name + "".join(f"-{k}{v}" for k, v in kwargs.items())
    return (label, functools.partial(f, **kwargs), functools.partial(g, **kwargs),
            functools.partial(rf, **kwargs), functools.partial(rg, **kwargs), kinks)


SPECS = [
    _spec("relu"),
    _spec("leaky_relu"),
    _spec("leaky_relu", dict(alpha=0.05)),
    _spec("elu"),
    _spec("elu", dict(alpha=0.5)),
    _spec("selu"),
    _spec("sigmoid"),
    _spec("tanh"),
    _spec("hard_sigmoid"),
    _spec("hard_sigmoid", dict(alpha=0.25, beta=0.4), kinks=[-1.6, 2.4]),
    _spec("hard_swish"),
    _spec("relu6"),
    _spec("clip", dict(min_value=-1.5, max_value=2.0), kinks=[-1.5, 2.0]),
]
SPEC_IDS = [s[0] for s in SPECS]
SHAPES = [(1,), (7,), (17,), (1031,), (3, 5, 7), (2, 3, 1, 5)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def _x(rng, shape, kinks, scale=8.0):
    x = rng.uniform(-scale, scale, shape).astype(np.float32)
    return ref.away_from_kinks(x, kinks)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_activation_forward(spec, shape, rng):
    _, f, _, rf, _, kinks = spec
    x = _x(rng, shape, kinks)
    x0 = x.copy()
    y = f(x)
    assert y.dtype == np.float32 and y.shape == shape
    assert np.array_equal(x, x0), "the input was modified"
    # an elementwise float32 function: a few ulp of the result, or of 1 near the zeros of
    # expm1 / tanh where float32 evaluation legitimately loses relative accuracy
    ref.assert_close(y, rf(x), atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_activation_grad_vs_twin(spec, shape, rng):
    _, _, g, _, rg, kinks = spec
    x = _x(rng, shape, kinks)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = g(x, dy)
    assert dx.dtype == np.float32 and dx.shape == shape
    ref.assert_close(dx, rg(x, dy), mag=np.abs(dy), atol_mag=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_activation_grad_finite_differences(spec, rng):
    _, _, g, rf, _, kinks = spec
    x = _x(rng, (4, 6), kinks, scale=7.0)
    r = rng.standard_normal((4, 6)).astype(np.float32).astype(np.float64)
    dx = g(x, r.astype(np.float32))
    gradcheck.check_grad(rf, x, r, dx, rng, count=24, mag=np.abs(r), name="dx")


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_activation_extremes_are_finite(spec):
    _, f, g, rf, rg, _ = spec
    x = np.array([-3e38, -1000, -100, -88.7, -20, -1e-30, 0, 1e-30, 20, 88.7, 100, 1000, 3e38],
                 np.float32)
    y = f(x)
    dx = g(x, np.ones_like(x))
    assert np.all(np.isfinite(y)), y
    assert np.all(np.isfinite(dx)), dx
    ref.assert_close(y, rf(x), atol=1e-6)
    ref.assert_close(dx, rg(x, np.ones(x.shape)), atol=1e-6)


def test_activation_limits():
    x = np.array([-1000, 1000], np.float32)
    assert np.array_equal(nn.sigmoid(x), [0, 1])
    assert np.array_equal(nn.tanh(x), [-1, 1])
    assert np.array_equal(nn.elu(x), [-1, 1000])
    assert np.array_equal(nn.hard_sigmoid(x), [0, 1])
    assert np.array_equal(nn.hard_swish(x), [0, 1000])
    assert np.array_equal(nn.relu6(x), [0, 6])
    assert np.array_equal(nn.sigmoid_grad(x, np.ones(2)), [0, 0])
    assert np.array_equal(nn.tanh_grad(x, np.ones(2)), [0, 0])
    assert np.array_equal(nn.relu(np.array([-0.5, 0.0, 2.5])), [0, 0, 2.5])
    # derivative at the kinks, as specified: relu'(0) = 0; clip' is 1 strictly inside only
    assert np.array_equal(nn.relu_grad(np.array([0.0]), np.array([1.0])), [0])
    assert np.array_equal(nn.relu6_grad(np.array([0.0, 3.0, 6.0]), np.ones(3)), [0, 1, 0])
    assert np.array_equal(nn.clip_grad(np.array([-1.0, 0.0, 1.0]), np.ones(3), -1.0, 1.0), [0, 1, 0])
    assert np.array_equal(nn.selu(np.array([1.0], np.float32)), np.float32([ref.SELU_SCALE]))


def test_activation_integer_and_view_inputs(rng):
    xi = np.arange(-5, 6)
    y = nn.relu(xi)
    assert y.dtype == np.float32 and np.array_equal(y, np.maximum(xi, 0))
    big = rng.standard_normal((6, 8)).astype(np.float32)
    view = big[::2, 1::3]
    assert np.array_equal(nn.tanh(view), nn.tanh(view.copy()))
    assert np.array_equal(nn.tanh_grad(view, view.T.T), nn.tanh_grad(view.copy(), view.copy()))


# ---------------------------------------------------------------------------------------------------
# softmax / log_softmax
# ---------------------------------------------------------------------------------------------------
SOFTMAX_CASES = [((1, 1), -1), ((1,), 0), ((5, 17), -1), ((2, 1031), 1), ((3, 5, 7), -1),
                 ((3, 5, 7), 0), ((3, 5, 7), 1), ((3, 5, 7), 2), ((3, 5, 7), -2), ((4, 1, 3), 1)]
SOFTMAX_IDS = ["x".join(map(str, s)) + f"-ax{a}" for s, a in SOFTMAX_CASES]


def _log_softmax_mag(x, axis):
    """|terms| of log_softmax = x - max - log(sum exp(x - max))."""
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    lse = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return np.abs(x) + np.abs(m) + lse


@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES, ids=SOFTMAX_IDS)
def test_softmax_forward(shape, axis, rng):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = nn.softmax(x, axis=axis)
    assert y.dtype == np.float32 and y.shape == shape
    # y = exp(x - max) / S: a few ulp from exp, the subtraction (|x - max| * eps) and the division
    ref.assert_close(y, ref.softmax(x, axis), mag=ref.softmax(x, axis) * _log_softmax_mag(x, axis),
                     atol=1e-7)
    ly = nn.log_softmax(x, axis=axis)
    assert ly.dtype == np.float32 and ly.shape == shape
    ref.assert_close(ly, ref.log_softmax(x, axis), mag=_log_softmax_mag(x, axis))


@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES, ids=SOFTMAX_IDS)
def test_softmax_grad_vs_twin(shape, axis, rng):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = nn.softmax_grad(x, dy, axis=axis)
    assert dx.dtype == np.float32 and dx.shape == shape
    ref.assert_close(dx, ref.softmax_grad(x, dy, axis), mag=ref.softmax_grad_mag(x, dy, axis))
    dl = nn.log_softmax_grad(x, dy, axis=axis)
    assert dl.dtype == np.float32 and dl.shape == shape
    ref.assert_close(dl, ref.log_softmax_grad(x, dy, axis),
                     mag=ref.log_softmax_grad_mag(x, dy, axis))


@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((3, 4, 2), 1), ((4, 3), 0), ((1, 1), -1)])
def test_softmax_grad_finite_differences(shape, axis, rng):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32).astype(np.float64)
    dx = nn.softmax_grad(x, r.astype(np.float32), axis=axis)
    gradcheck.check_grad(lambda t: ref.softmax(t, axis), x, r, dx, rng, count=24,
                         mag=ref.softmax_grad_mag(x, r, axis), name="softmax dx")
    dl = nn.log_softmax_grad(x, r.astype(np.float32), axis=axis)
    gradcheck.check_grad(lambda t: ref.log_softmax(t, axis), x, r, dl, rng, count=24,
                         mag=ref.log_softmax_grad_mag(x, r, axis), name="log_softmax dx")


def test_softmax_is_stable_for_huge_inputs():
    x = np.array([[1000, 1000], [-1000, -1000], [1000, -1000], [-1000, 0], [3e38, 3e38]],
                 np.float32)
    y = nn.softmax(x)
    assert np.all(np.isfinite(y))
    assert np.array_equal(y, [[0.5, 0.5], [0.5, 0.5], [1, 0], [0, 1], [0.5, 0.5]])
    ly = nn.log_softmax(x[:4])
    assert np.all(np.isfinite(ly))
    ref.assert_close(ly, ref.log_softmax(x[:4]), atol=1e-6)
    assert np.array_equal(nn.log_softmax(np.array([1000, -1000, 0], np.float32)), [0, -2000, -1000])
    for g in (nn.softmax_grad, nn.log_softmax_grad):
        d = g(x[:4], np.ones_like(x[:4]))
        assert np.all(np.isfinite(d))
    # grads at saturated rows
    ref.assert_close(nn.softmax_grad(x[:4], np.arange(8.0).reshape(4, 2)),
                     ref.softmax_grad(x[:4], np.arange(8.0).reshape(4, 2)), atol=1e-6)
    ref.assert_close(nn.log_softmax_grad(x[:4], np.arange(8.0).reshape(4, 2)),
                     ref.log_softmax_grad(x[:4], np.arange(8.0).reshape(4, 2)), atol=1e-5)


def test_softmax_sums_to_one(rng):
    x = (rng.standard_normal((13, 257)) * 10).astype(np.float32)
    y = nn.softmax(x)
    assert np.allclose(y.sum(axis=-1, dtype=np.float64), 1.0, atol=1e-5)
    assert np.allclose(np.exp(nn.log_softmax(x).astype(np.float64)).sum(axis=-1), 1.0, atol=1e-5)


# the C backward's per-kind loops against the plain formula dy * act'(x), bit for bit, on special values
_SPECIAL_X = np.array([-np.inf, -1e30, -3.0, -1.5, -1e-30, -0.0, 0.0, 1e-30, 0.5, 2.0, 3.0, 1e30, np.inf,
                       np.nan], np.float32)
_SPECIAL_DY = np.array([-np.inf, -2.5, -0.0, 0.0, 1e-38, 1.5, np.inf, np.nan], np.float32)


def _deriv_twin(kind, x, y, alpha, beta):
    """act'(x) as src_c/act.c's act_deriv defines it (y = act(x)), in float32."""
    one, zero = np.float32(1), np.float32(0)
    a = np.float32(alpha)
    if kind == "relu":
        return np.where(x > 0, one, zero)
    if kind == "leaky_relu":
        return np.where(x > 0, one, a)
    if kind == "clip":
        return np.where((x > a) & (x < np.float32(beta)), one, zero)
    if kind == "elu":
        return np.where(x > 0, one, (y + a).astype(np.float32))
    if kind == "sigmoid":
        return (y * (one - y)).astype(np.float32)
    if kind == "tanh":
        return (one - y * y).astype(np.float32)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,alpha,beta", [("relu", 0, 0), ("leaky_relu", 0.1, 0), ("clip", -1.5, 2.0),
                                             ("elu", 1.0, 0), ("elu", 0.3, 0), ("sigmoid", 0, 0),
                                             ("tanh", 0, 0)])
@pytest.mark.parametrize("with_output", [True, False])
def test_activation_backward_bitwise_on_special_values(kind, alpha, beta, with_output):
    from cnnc import _core
    k = _core.ACT_KINDS[kind]
    x = np.repeat(_SPECIAL_X, len(_SPECIAL_DY))
    dy = np.tile(_SPECIAL_DY, len(_SPECIAL_X))
    # long enough for the vector loops and their tails (several work items of the parallel loop)
    x, dy = np.tile(x, 97), np.tile(dy, 97)
    y = np.empty_like(x)
    _core.act_forward(x, y, k, alpha, beta)
    dx = np.empty_like(x)
    _core.act_backward(x, y if with_output else None, dy, dx, k, alpha, beta)
    with np.errstate(invalid="ignore", over="ignore"):
        want = (dy * _deriv_twin(kind, x, y, alpha, beta)).astype(np.float32)
    assert np.array_equal(np.isnan(dx), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.array_equal(dx[ok], want[ok])
    assert np.array_equal(np.signbit(dx[ok]), np.signbit(want[ok]))
