"""Activation functions by name, for layers' `activation=` arguments.

Each activation knows whether its derivative can be computed from its output alone (relu, elu,
sigmoid, tanh, softmax, ...): layers then keep only the output for the backward pass and let the C
core fuse the activation into the producing op. hard_sigmoid and hard_swish need their input.
"""
import numpy as np

from . import _alloc, _core
from . import nn

__all__ = ["get", "serialize", "deserialize", "Activation", "names"]

_K = _core.ACT_KINDS


class Activation:
    """A named elementwise (or softmax) activation with its backward pass."""

    def __init__(self, name, kind, alpha=0.0, beta=0.0, from_output=True, softmax=False):
        self.name = name
        self.kind = kind
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.from_output = from_output  # derivative computable from the output alone
        self.softmax = softmax

    @property
    def is_linear(self):
        return self.kind == _K["none"] and not self.softmax

    @property
    def fused_name(self):
        """The name to pass as `activation=` to cnnc.nn ops (None for linear)."""
        return None if self.is_linear else self._nn_name

    def __call__(self, z):
        return self.forward(z)

    def forward(self, z):
        z = np.ascontiguousarray(z, dtype=np.float32)
        if self.is_linear:
            return z
        if self.softmax:
            return nn.softmax(z, axis=-1)
        y = _alloc.empty_like(z)
        if z.size:
            _core.act_forward(z, y, self.kind, self.alpha, self.beta)
        return y

    def backward(self, dy, z=None, y=None):
        """dz from dy, given the input z (needed when not from_output) and/or the output y."""
        if self.is_linear:
            return dy
        dy = np.ascontiguousarray(dy, dtype=np.float32)
        dz = _alloc.empty_like(dy)
        if dy.size == 0:
            return dz
        if self.softmax:
            if y is None:
                y = self.forward(z)
            cols = y.shape[-1]
            _core.softmax_backward(y, dy, dz, y.size // cols, cols, False)
        elif self.from_output and y is not None:
            # For these kinds the derivative at z equals the one the C core computes at y.
            _core.act_backward(y, y, dy, dz, self.kind, self.alpha, self.beta)
        else:
            if z is None:
                raise RuntimeError(f"activation '{self.name}' needs its input for the backward pass")
            _core.act_backward(z, y, dy, dz, self.kind, self.alpha, self.beta)
        return dz

    def get_config(self):
        return self.name


def _table():
    t = {
        "linear": Activation("linear", _K["none"]),
        "relu": Activation("relu", _K["relu"]),
        "relu6": Activation("relu6", _K["clip"], 0.0, 6.0),
        "leaky_relu": Activation("leaky_relu", _K["leaky_relu"], 0.2),
        "elu": Activation("elu", _K["elu"], 1.0),
        "selu": Activation("selu", _K["selu"]),
        "sigmoid": Activation("sigmoid", _K["sigmoid"]),
        "tanh": Activation("tanh", _K["tanh"]),
        "hard_sigmoid": Activation("hard_sigmoid", _K["hard_sigmoid"], 0.2, 0.5, from_output=False),
        "hard_swish": Activation("hard_swish", _K["hard_swish"], from_output=False),
        "softmax": Activation("softmax", _K["none"], softmax=True),
    }
    for name, act in t.items():
        act._nn_name = name
    return t


_TABLE = _table()


def names():
    return sorted(_TABLE)


def get(identifier):
    """None / a name / an Activation -> Activation."""
    if identifier is None:
        return _TABLE["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _TABLE:
            return _TABLE[key]
    raise ValueError(f"unknown activation {identifier!r}; choose one of {', '.join(names())} or None")


def serialize(act):
    return get(act).name


def deserialize(name):
    return get(name)


def leaky_relu_activation(negative_slope):
    """A leaky ReLU with a given slope (derivable from the output only for slopes > 0)."""
    act = Activation("leaky_relu", _K["leaky_relu"], negative_slope, from_output=negative_slope > 0)
    act._nn_name = None
    return act


def elu_activation(alpha):
    act = Activation("elu", _K["elu"], alpha, from_output=alpha > 0)
    act._nn_name = None
    return act


def clip_activation(lo, hi):
    act = Activation("clip", _K["clip"], lo, hi)
    act._nn_name = None
    return act
