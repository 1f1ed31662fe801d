"""Weight regularizers with Keras names and defaults.

``reg(w)`` is the penalty added to the loss (Keras: ``l1 * sum(|w|) + l2 * sum(w**2)``), a Python
float summed in float64; ``reg.gradient(w)`` is its derivative with respect to ``w``
(``l1 * sign(w) + 2 * l2 * w``, float32, sign(0) = 0 as autodiff gives).
"""
import math
import numbers

import numpy as np

from ._registry import Configurable, Registry

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize", "deserialize"]

_CHUNK = 1 << 16


def _factor(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a non-negative float, received {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative float, received {name}={value}")
    return value


def _weights(w):
    w = np.asarray(w)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"regularizer weights must be a real array, received dtype {w.dtype.name}")
    return w


class Regularizer(Configurable):
    """Base class: subclasses implement ``__call__(w) -> float`` and ``gradient(w) -> ndarray``."""

    def __call__(self, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient(self, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, w):
        if not (self.l1 or self.l2):
            return 0.0
        flat = _weights(w).reshape(-1)
        abs_sum = sq_sum = 0.0
        # float64 in chunks: exact squares and float64 sums without a full-size float64 copy
        for start in range(0, flat.size, _CHUNK):
            c = flat[start:start + _CHUNK].astype(np.float64)
            if self.l1:
                abs_sum += float(np.sum(np.abs(c)))
            if self.l2:
                sq_sum += float(np.dot(c, c))
        return self.l1 * abs_sum + self.l2 * sq_sum

    def gradient(self, w):
        w = _weights(w)
        g = np.zeros(w.shape, dtype=np.float32)
        if self.l1:
            np.sign(w, out=g, casting="unsafe")
            g *= np.float32(self.l1)
        if self.l2:
            if self.l1:
                g += np.float32(2.0 * self.l2) * w.astype(np.float32, copy=False)
            else:
                np.multiply(w, np.float32(2.0 * self.l2), out=g, casting="unsafe")
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|w|)``."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(w**2)``."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)

    def get_config(self):
        return {"l2": self.l2}


# Strings: 'l1' and 'l2' use the class defaults (0.01); 'l1_l2' is (l1=0.01, l2=0.01) as in Keras'
# special case (the L1L2 class itself defaults to zeros).
_REGISTRY = Registry("regularizer", Regularizer, [L1, L2, L1L2],
                     {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(l1=0.01, l2=0.01),
                      "l1l2": lambda: L1L2(l1=0.01, l2=0.01)},
                     aliases={"l1_l2": L1L2}, choices="l1, l2, l1_l2 (or L1, L2, L1L2 configs)",
                     allow_none=True, allow_callable=True)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """Resolve a regularizer: None (-> None), 'l1' / 'l2' / 'l1_l2' (any case, or the class names),
    a Regularizer instance or subclass, a config dict, or a callable ``f(w) -> float`` (as is; it
    then has no gradient method unless it provides one)."""
    return _REGISTRY.get(identifier)
