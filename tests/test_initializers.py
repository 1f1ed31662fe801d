"""cnnc.initializers: shapes, dtype, statistics, determinism, fans, orthogonality, lookup, configs."""
import math

import numpy as np
import pytest

from cnnc import initializers
from cnnc.initializers import (Constant, GlorotNormal, GlorotUniform, HeNormal, HeUniform, LecunNormal,
                               LecunUniform, Ones, Orthogonal, RandomNormal, RandomUniform, TruncatedNormal,
                               VarianceScaling, Zeros, compute_fans)

ALL = [Zeros(), Ones(), Constant(0.5), RandomNormal(), RandomUniform(), TruncatedNormal(), GlorotUniform(),
       GlorotNormal(), HeNormal(), HeUniform(), LecunNormal(), LecunUniform(), Orthogonal(),
       VarianceScaling(2.0, "fan_out", "untruncated_normal")]
TRUNC = 0.87962566103423978


@pytest.mark.parametrize("init", ALL, ids=lambda i: type(i).__name__)
@pytest.mark.parametrize("shape", [(7, 5), (3, 3, 4, 6), (2, 2, 2, 3, 4)])
def test_shape_dtype_and_determinism(init, shape):
    a = init(shape, np.random.default_rng(42))
    b = init(shape, np.random.default_rng(42))
    assert a.shape == shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(a))


@pytest.mark.parametrize("init", [i for i in ALL if not isinstance(i, (Zeros, Ones, Constant))],
                         ids=lambda i: type(i).__name__)
def test_randomness_comes_only_from_rng(init):
    state = np.random.get_state()
    a = init((20, 10), np.random.default_rng(1))
    c = init((20, 10), np.random.default_rng(2))
    assert not np.array_equal(a, c)
    rng = np.random.default_rng(1)
    first = init((20, 10), rng)
    second = init((20, 10), rng)                 # the generator advances
    assert not np.array_equal(first, second)
    assert np.all(np.random.get_state()[1] == state[1])   # global NumPy state untouched
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init((3, 3), None)


def test_one_d_shapes():
    assert Zeros()((4,)).shape == (4,) and Ones()(3).tolist() == [1, 1, 1]
    assert GlorotUniform()((5,), np.random.default_rng(0)).shape == (5,)
    np.testing.assert_array_equal(Constant(-2)((2, 2)), np.full((2, 2), -2.0, np.float32))


def test_compute_fans():
    assert compute_fans(()) == (1, 1)
    assert compute_fans((7,)) == (7, 7)
    assert compute_fans((20, 30)) == (20, 30)
    assert compute_fans((3, 3, 16, 32)) == (144, 288)     # channels_last conv kernel (kh, kw, in, out)
    assert compute_fans((5, 4, 8)) == (20, 40)


def _stats(x):
    x = x.astype(np.float64)
    return x.mean(), x.std(), np.abs(x).max()


@pytest.mark.parametrize("cls, scale, mode", [(GlorotUniform, 1.0, "avg"), (HeUniform, 2.0, "in"),
                                              (LecunUniform, 1.0, "in")])
def test_uniform_variance_scaling_statistics(cls, scale, mode):
    shape = (3, 3, 40, 60)
    fan_in, fan_out = 360, 540
    fan = (fan_in + fan_out) / 2 if mode == "avg" else fan_in
    limit = math.sqrt(3 * scale / fan)
    mean, std, amax = _stats(cls()(shape, np.random.default_rng(0)))
    assert amax <= limit
    assert amax > 0.99 * limit
    assert abs(mean) < 0.01 * limit
    assert std == pytest.approx(limit / math.sqrt(3), rel=0.01)


def test_glorot_uniform_limit_formula():
    x = GlorotUniform()((100, 300), np.random.default_rng(5))
    limit = math.sqrt(6 / (100 + 300))
    assert np.abs(x).max() <= limit and np.abs(x).max() > 0.99 * limit


@pytest.mark.parametrize("cls, scale, mode", [(GlorotNormal, 1.0, "avg"), (HeNormal, 2.0, "in"),
                                              (LecunNormal, 1.0, "in")])
def test_truncated_variance_scaling_statistics(cls, scale, mode):
    shape = (300, 200)
    fan = 250 if mode == "avg" else 300
    target_std = math.sqrt(scale / fan)            # truncation at 2 sigma after dividing by .8796
    mean, std, amax = _stats(cls()(shape, np.random.default_rng(1)))
    sigma = target_std / TRUNC
    assert amax <= 2 * sigma * (1 + 1e-6)
    assert amax > 1.98 * sigma
    assert abs(mean) < 0.01 * target_std
    assert std == pytest.approx(target_std, rel=0.01)


def test_glorot_normal_stddev_constant():
    assert GlorotNormal().get_config() == {}
    x = GlorotNormal()((200, 600), np.random.default_rng(2))
    sigma = math.sqrt(2 / 800) / .87962566103423978
    assert np.abs(x).max() <= 2 * sigma * (1 + 1e-6)


def test_explicit_fans_for_channels_first():
    rng = np.random.default_rng(3)
    x = HeUniform()((32, 16, 3, 3), rng, fan_in=144, fan_out=288)      # (out, in, kh, kw) kernel
    limit = math.sqrt(6 / 144)
    assert np.abs(x).max() <= limit and np.abs(x).max() > 0.98 * limit
    # without the explicit fans the Keras rule would use fan_in = 16 * 3 * 32 ... a different limit
    y = GlorotUniform()((4, 10), rng, fan_in=1000, fan_out=1000)
    assert np.abs(y).max() <= math.sqrt(6 / 2000)
    z = VarianceScaling(1.0, "fan_out", "uniform")((4, 10), rng, fan_out=3)
    assert np.abs(z).max() <= 1.0 and np.abs(z).max() > 0.5


def test_random_normal_uniform_truncated():
    rng = np.random.default_rng(4)
    mean, std, _ = _stats(RandomNormal(mean=1.0, stddev=2.0)((500, 400), rng))
    assert mean == pytest.approx(1.0, abs=0.02) and std == pytest.approx(2.0, rel=0.01)
    u = RandomUniform(minval=-1.0, maxval=3.0)((500, 400), rng).astype(np.float64)
    assert u.min() >= -1.0 and u.max() < 3.0 and u.mean() == pytest.approx(1.0, abs=0.02)
    assert u.std() == pytest.approx(4 / math.sqrt(12), rel=0.01)
    t = TruncatedNormal(mean=-1.0, stddev=0.5)((500, 400), rng).astype(np.float64)
    assert t.min() >= -2.0 and t.max() <= 0.0 and t.mean() == pytest.approx(-1.0, abs=0.01)
    assert t.std() == pytest.approx(0.5 * TRUNC, rel=0.01)
    defaults = RandomNormal(), RandomUniform(), TruncatedNormal()
    assert [d.get_config() for d in defaults] == [{"mean": 0.0, "stddev": 0.05},
                                                  {"minval": -0.05, "maxval": 0.05},
                                                  {"mean": 0.0, "stddev": 0.05}]


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (16, 16), (3, 3, 4, 8), (2, 2, 4, 40)])
def test_orthogonal(shape):
    q = Orthogonal(gain=1.0)(shape, np.random.default_rng(5)).astype(np.float64)
    flat = q.reshape(-1, shape[-1])
    rows, cols = flat.shape
    gram = flat.T @ flat if rows >= cols else flat @ flat.T
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)
    g = Orthogonal(gain=2.5)(shape, np.random.default_rng(5)).astype(np.float64)
    np.testing.assert_allclose(g, 2.5 * q, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Orthogonal()((5,), np.random.default_rng(0))


def test_get_names():
    cases = {"glorot_uniform": GlorotUniform, "GlorotUniform": GlorotUniform, "glorot_normal": GlorotNormal,
             "he_normal": HeNormal, "HeNormal": HeNormal, "he_uniform": HeUniform, "lecun_normal": LecunNormal,
             "lecun_uniform": LecunUniform, "zeros": Zeros, "Zeros": Zeros, "ones": Ones, "zero": Zeros,
             "one": Ones, "constant": Constant, "random_normal": RandomNormal, "normal": RandomNormal,
             "random_uniform": RandomUniform, "uniform": RandomUniform, "truncated_normal": TruncatedNormal,
             "TruncatedNormal": TruncatedNormal, "orthogonal": Orthogonal, "Orthogonal": Orthogonal,
             "variance_scaling": VarianceScaling}
    for name, cls in cases.items():
        assert type(initializers.get(name)) is cls, name
    init = HeNormal()
    assert initializers.get(init) is init
    assert type(initializers.get(Ones)) is Ones

    def custom(shape, rng, fan_in=None, fan_out=None):
        return np.zeros(shape, np.float32)
    assert initializers.get(custom) is custom


def test_get_errors():
    with pytest.raises(ValueError) as err:
        initializers.get("xavier")
    msg = str(err.value)
    assert msg.startswith("unknown initializer 'xavier'; choose one of ")
    for choice in ("glorot_uniform", "he_normal", "zeros", "orthogonal"):
        assert choice in msg
    with pytest.raises(ValueError, match="must not be None"):
        initializers.get(None)
    with pytest.raises(ValueError, match="unknown initializer"):
        initializers.get(3)
    with pytest.raises(ValueError, match="unknown initializer"):
        initializers.deserialize({"class_name": "Nope", "config": {}})


@pytest.mark.parametrize("init", ALL + [VarianceScaling(0.5, "fan_avg", "uniform"), RandomUniform(-1, 2)],
                         ids=lambda i: type(i).__name__)
def test_config_round_trip(init):
    ser = initializers.serialize(init)
    assert ser == {"class_name": type(init).__name__, "config": init.get_config()}
    again = initializers.deserialize(ser)
    assert type(again) is type(init) and again.get_config() == init.get_config() and again == init
    assert type(init).from_config(init.get_config()) == init
    assert initializers.get(ser) == init
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_array_equal(init((6, 4), rng_a), again((6, 4), rng_b))


def test_keras_config_with_seed():
    init = initializers.get({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.1, "seed": None},
                             "module": "keras.initializers", "registered_name": None})
    assert init.get_config() == {"mean": 0.0, "stddev": 0.1}
    assert type(initializers.deserialize({"class_name": "GlorotUniform", "config": {"seed": None}})) is GlorotUniform


def test_argument_errors():
    with pytest.raises(ValueError, match="stddev"):
        RandomNormal(stddev=-1)
    with pytest.raises(ValueError, match="maxval"):
        RandomUniform(minval=1, maxval=0)
    with pytest.raises(ValueError, match="mode"):
        VarianceScaling(mode="fan_sum")
    with pytest.raises(ValueError, match="distribution"):
        VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="scale"):
        VarianceScaling(scale=0)
    with pytest.raises(TypeError, match="value"):
        Constant("one")
    with pytest.raises(ValueError, match="shape"):
        Zeros()((2, -1))
    with pytest.raises(ValueError, match="fan_in"):
        HeNormal()((2, 2), np.random.default_rng(0), fan_in=-3)
