"""Weight initializers with Keras names, defaults and fan conventions.

An initializer is called as ``init(shape, rng, fan_in=None, fan_out=None)`` and returns a new
float32 ndarray of that shape. All randomness comes from ``rng`` (a ``numpy.random.Generator``);
nothing global is touched, so the same seed gives the same weights.

Fans default to Keras' conventions (see :func:`compute_fans`); layers whose kernel layout differs
from Keras' (channels_first convolutions) pass explicit ``fan_in`` / ``fan_out``.
"""
import math
import numbers
import re

import numpy as np

from ._registry import Configurable, Registry

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "Orthogonal", "compute_fans", "get", "serialize", "deserialize",
]

# stddev of a standard normal truncated to [-2, 2]; dividing by it restores the requested variance.
_TRUNC_STD = 0.87962566103423978


def _snake(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _as_float(value, name, minimum=None, strict_min=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, received {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, received {name}={value}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        rel = ">" if strict_min else ">="
        raise ValueError(f"{name} must be {rel} {minimum}, received {name}={value}")
    return value


def _check_shape(shape):
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of non-negative ints, received {shape!r}") from None
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"shape must be a tuple of non-negative ints, received {shape!r}")
        out.append(int(d))
    return tuple(out)


def _check_rng(rng, who):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who} needs rng, a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
                        f"received {type(rng).__name__}")
    return rng


def compute_fans(shape):
    """(fan_in, fan_out) of a kernel shape, as Keras computes them.

    0-D: (1, 1); 1-D: (n, n); 2-D (dense kernel, (in, out)): (shape[0], shape[1]);
    >=3-D (channels_last conv kernel, (*spatial, in, out)): receptive = prod(shape[:-2]),
    fan_in = shape[-2] * receptive, fan_out = shape[-1] * receptive.
    """
    shape = _check_shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _fans(shape, fan_in, fan_out):
    d_in, d_out = compute_fans(shape)
    fan_in = d_in if fan_in is None else fan_in
    fan_out = d_out if fan_out is None else fan_out
    for name, v in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or v < 0:
            raise ValueError(f"{name} must be a non-negative number, received {name}={v!r}")
    return fan_in, fan_out


def _truncated_normal(rng, shape, mean, stddev):
    """Normal(mean, stddev) re-drawn wherever it falls beyond 2 stddev (as tf.random.truncated_normal)."""
    z = rng.standard_normal(shape, dtype=np.float32)
    bad = np.flatnonzero(np.abs(z) > 2.0)
    flat = z.reshape(-1)
    while bad.size:
        redraw = rng.standard_normal(bad.size, dtype=np.float32)
        flat[bad] = redraw
        bad = bad[np.abs(redraw) > 2.0]
    z *= np.float32(stddev)
    z += np.float32(mean)
    return z


class Initializer(Configurable):
    """Base class: subclasses implement ``__call__(shape, rng, fan_in=None, fan_out=None)``."""

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Keras configs carry a seed; randomness here comes from the rng passed at call time.
        if config.get("seed", None) is None:
            config.pop("seed", None)
        return cls(**config)


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        return np.zeros(_check_shape(shape), dtype=np.float32)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        return np.ones(_check_shape(shape), dtype=np.float32)


class Constant(Initializer):
    """Every element equal to ``value`` (a scalar)."""

    def __init__(self, value=0.0):
        self.value = _as_float(value, "value")

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        return np.full(_check_shape(shape), self.value, dtype=np.float32)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """Normal(mean, stddev)."""

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean = _as_float(mean, "mean")
        self.stddev = _as_float(stddev, "stddev", minimum=0.0)

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        shape = _check_shape(shape)
        z = _check_rng(rng, type(self).__name__).standard_normal(shape, dtype=np.float32)
        z *= np.float32(self.stddev)
        z += np.float32(self.mean)
        return z

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """Uniform on [minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval = _as_float(minval, "minval")
        self.maxval = _as_float(maxval, "maxval")
        if self.maxval < self.minval:
            raise ValueError(f"maxval must be >= minval, received minval={self.minval}, maxval={self.maxval}")

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        shape = _check_shape(shape)
        u = _check_rng(rng, type(self).__name__).random(shape, dtype=np.float32)
        u *= np.float32(self.maxval - self.minval)
        u += np.float32(self.minval)
        return u

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class TruncatedNormal(Initializer):
    """Normal(mean, stddev) with values beyond 2 stddev re-drawn."""

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean = _as_float(mean, "mean")
        self.stddev = _as_float(stddev, "stddev", minimum=0.0)

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        shape = _check_shape(shape)
        return _truncated_normal(_check_rng(rng, type(self).__name__), shape, self.mean, self.stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class VarianceScaling(Initializer):
    """Keras' VarianceScaling: variance scale / fan, fan chosen by ``mode``.

    distribution 'truncated_normal': stddev = sqrt(scale/fan) / .8796... (truncated at 2 stddev);
    'untruncated_normal': stddev = sqrt(scale/fan); 'uniform': limit = sqrt(3 scale/fan).
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal"):
        self.scale = _as_float(scale, "scale", minimum=0.0, strict_min=True)
        if mode not in self._MODES:
            raise ValueError(f"mode must be one of {', '.join(self._MODES)}, received mode={mode!r}")
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(self._DISTRIBUTIONS)}, "
                             f"received distribution={distribution!r}")
        self.mode = mode
        self.distribution = distribution

    def _scale_for(self, shape, fan_in, fan_out):
        fan_in, fan_out = _fans(shape, fan_in, fan_out)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale / max(1.0, float(fan))

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        shape = _check_shape(shape)
        scale = self._scale_for(shape, fan_in, fan_out)
        rng = _check_rng(rng, type(self).__name__)
        if self.distribution == "truncated_normal":
            return _truncated_normal(rng, shape, 0.0, math.sqrt(scale) / _TRUNC_STD)
        if self.distribution == "untruncated_normal":
            z = rng.standard_normal(shape, dtype=np.float32)
            z *= np.float32(math.sqrt(scale))
            return z
        limit = math.sqrt(3.0 * scale)
        u = rng.random(shape, dtype=np.float32)
        u *= np.float32(2.0 * limit)
        u -= np.float32(limit)
        return u

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling preset (Glorot/He/Lecun): no constructor arguments."""
    _PRESET = (1.0, "fan_in", "truncated_normal")

    def __init__(self):
        super().__init__(*self._PRESET)

    def get_config(self):
        return {}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform on [-limit, limit], limit = sqrt(6 / (fan_in + fan_out))."""
    _PRESET = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal, stddev = sqrt(2 / (fan_in + fan_out)) / .87962566103423978."""
    _PRESET = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_FixedVarianceScaling):
    """Truncated normal, stddev = sqrt(2 / fan_in) / .87962566103423978."""
    _PRESET = (2.0, "fan_in", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """Uniform on [-limit, limit], limit = sqrt(6 / fan_in)."""
    _PRESET = (2.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal, stddev = sqrt(1 / fan_in) / .87962566103423978."""
    _PRESET = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """Uniform on [-limit, limit], limit = sqrt(3 / fan_in)."""
    _PRESET = (1.0, "fan_in", "uniform")


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``, reshaped to ``shape`` (at least 2-D).

    The shape is flattened to (prod(shape[:-1]), shape[-1]); a Gaussian matrix of that shape (taller
    side first) is QR-factorised and Q, sign-corrected by diag(R), is used (as Keras does).
    """

    def __init__(self, gain=1.0):
        self.gain = _as_float(gain, "gain")

    def __call__(self, shape, rng=None, fan_in=None, fan_out=None):
        shape = _check_shape(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape with at least 2 dimensions, received shape {shape}")
        rng = _check_rng(rng, "Orthogonal")
        rows = math.prod(shape[:-1])
        cols = shape[-1]
        if rows == 0 or cols == 0:
            return np.zeros(shape, dtype=np.float32)
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(np.float32)

    def get_config(self):
        return {"gain": self.gain}


_CLASSES = [Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling,
            GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform, Orthogonal]
_BY_NAME = {}
for _cls in _CLASSES:
    _BY_NAME[_cls.__name__] = _cls
    _BY_NAME[_snake(_cls.__name__)] = _cls
_BY_NAME.update({"zero": Zeros, "one": Ones, "normal": RandomNormal, "uniform": RandomUniform})
del _cls


_REGISTRY = Registry("initializer", Initializer, _CLASSES,
                     {k.lower(): v for k, v in _BY_NAME.items()},
                     choices=", ".join(sorted({k for k in _BY_NAME if k == k.lower()})), allow_callable=True)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """Resolve an initializer: a name ('glorot_uniform', 'GlorotUniform', 'zeros', ...), an
    Initializer instance or subclass, a config dict, or a callable ``f(shape, rng, fan_in=None,
    fan_out=None)`` (returned as is)."""
    return _REGISTRY.get(identifier)
