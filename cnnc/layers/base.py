"""The Layer base class: Keras's API with Caffe's life cycle.

A layer is configured in __init__, creates its weights in build(input_shape) (lazily, on the first
input), computes forward(x, training) keeping what backward needs, and backward(dy) returns dx and
fills self.grads. Shapes given to build/compute_output_shape include the batch axis (None).
"""
import re
from collections import OrderedDict

import numpy as np

from .. import _alloc, utils

_NAME_COUNTS = {}


def _snake(name):
    """Keras' rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, ReLU -> re_lu."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base):
    """Keras-style names: conv2d, conv2d_1, conv2d_2, ..."""
    n = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def reset_names():
    _NAME_COUNTS.clear()


def _format_shape(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Layer:
    """Base class of every layer."""

    def __init__(self, name=None, trainable=True, input_shape=None, batch_size=None, dtype=None,
                 **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"{type(self).__name__}: only float32 is supported, received dtype={dtype!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, received {name!r}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        self.built = False
        self.params = OrderedDict()      # name -> float32 ndarray (updated in place by optimizers)
        self.grads = {}                  # name -> gradient from the last backward
        self._non_trainable = set()      # names of params that are state, not learned (BN statistics)
        self._regularizers = {}          # param name -> regularizer
        self._input_shape = None         # full input shape (batch axis None) once built
        self._batch_input_shape = None
        if input_shape is not None:
            self._batch_input_shape = (batch_size,) + tuple(int(d) if d is not None else None
                                                            for d in input_shape)

    # ---- life cycle ---------------------------------------------------------------------------
    def build(self, input_shape):
        self._input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        raise NotImplementedError

    def _keep(self, training, **values):
        """Keep what backward needs, in training only: in inference nothing is held, so each buffer is
        released as soon as the next layer has consumed it."""
        for k, v in values.items():
            setattr(self, k, v if training else None)

    _CACHE_ATTRS = ("_x", "_y", "_z", "_argmax", "_mask", "_mean", "_invstd")

    def _release_cache(self):
        """Drop what the last forward kept for backward."""
        for attr in self._CACHE_ATTRS:
            if getattr(self, attr, None) is not None:
                setattr(self, attr, None)

    def _release(self):
        """Drop the forward's cache and the last gradients."""
        self._release_cache()
        self.grads = {}

    def __call__(self, x, training=False):
        x = np.asarray(x)
        if not self.built:
            self.build((None,) + x.shape[1:])
        else:
            self.check_input_shape((None,) + x.shape[1:])
        return self.forward(np.ascontiguousarray(x, dtype=np.float32), training=training)

    def check_input_shape(self, input_shape):
        """Raise ValueError naming the layer when an input does not fit the built weights."""
        expected = self._input_shape
        if expected is None:
            return
        if len(input_shape) != len(expected):
            raise ValueError(f"{self._desc()} expects inputs of rank {len(expected)} "
                             f"(shape {_format_shape(expected)}), received shape {_format_shape(input_shape)}")
        for axis in self._fixed_axes():
            if expected[axis] != input_shape[axis]:
                raise ValueError(self._mismatch_message(axis, expected, input_shape))

    def _fixed_axes(self):
        """Axes (of the full input shape) the weights depend on."""
        return range(1, len(self._input_shape))

    def _mismatch_message(self, axis, expected, received):
        return (f"{self._desc()} expects input shape {_format_shape(expected)}, received "
                f"{_format_shape(received)}")

    def _desc(self):
        return f"{type(self).__name__} '{self.name}'"

    # ---- weights --------------------------------------------------------------------------------
    def add_weight(self, name, shape, initializer, regularizer=None, trainable=True, fan_in=None,
                   fan_out=None):
        from .. import initializers
        init = initializers.get(initializer)
        value = _alloc.copy(np.asarray(init(tuple(shape), utils.get_rng(), fan_in=fan_in, fan_out=fan_out),
                                       dtype=np.float32))
        self.params[name] = value
        if not trainable:
            self._non_trainable.add(name)
        if regularizer is not None:
            self._regularizers[name] = regularizer
        return value

    @property
    def weights(self):
        return list(self.params.values())

    def trainable_param_names(self):
        if not self.trainable:
            return []
        return [k for k in self.params if k not in self._non_trainable]

    @property
    def trainable_weights(self):
        return [self.params[k] for k in self.trainable_param_names()]

    @property
    def non_trainable_weights(self):
        t = set(self.trainable_param_names())
        return [v for k, v in self.params.items() if k not in t]

    def count_params(self):
        if not self.built:
            raise ValueError(f"{self._desc()} is not built yet: call it on data or build the model first")
        return int(sum(v.size for v in self.params.values()))

    def get_weights(self):
        return [v.copy() for v in self.params.values()]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"{self._desc()} has {len(self.params)} weight arrays, received {len(weights)}")
        for (key, cur), new in zip(self.params.items(), weights):
            new = np.asarray(new)
            if new.shape != cur.shape:
                raise ValueError(f"{self._desc()}: weight '{key}' has shape {cur.shape}, received {new.shape}")
            cur[...] = new  # in place: optimizers hold references

    def regularization_loss(self):
        return float(sum(reg(self.params[k]) for k, reg in self._regularizers.items()))

    def add_regularization_grads(self):
        for k, reg in self._regularizers.items():
            if k in self.grads:  # each backward returns fresh gradient arrays: add in place
                np.add(self.grads[k], reg.gradient(self.params[k]), out=self.grads[k])

    # ---- config ---------------------------------------------------------------------------------
    def get_config(self):
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        if self._batch_input_shape is not None:
            cfg["batch_input_shape"] = list(self._batch_input_shape)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        bis = config.pop("batch_input_shape", None)
        if bis is not None:
            config["input_shape"] = tuple(bis[1:])
            config["batch_size"] = bis[0]
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"
