"""Core layers: Input, Dense, Flatten, Reshape, Dropout, Activation, ZeroPadding2D and the
activation layers ReLU, LeakyReLU, ELU and Softmax."""
import numpy as np

from .. import _alloc, activations, nn, utils
from .._checks import as_int
from .base import Layer, _format_shape


def _data_format(value, cls):
    if value is None:
        return "channels_last"
    v = str(value).lower()
    if v not in ("channels_last", "channels_first"):
        raise ValueError(f"{cls}: data_format must be 'channels_last' or 'channels_first', received {value!r}")
    return v


class InputLayer(Layer):
    """Declares the input shape of a model (per sample, without the batch axis)."""

    def __init__(self, input_shape=None, batch_size=None, name=None, dtype=None, shape=None, batch_shape=None,
                 **kwargs):
        if batch_shape is not None:
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("Input needs shape=, the shape of one sample, e.g. Input(shape=(28, 28, 1))")
        shape = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
        shape = tuple(None if d is None else as_int(d, "shape", 1) for d in shape)
        super().__init__(name=name, input_shape=shape, batch_size=batch_size, dtype=dtype, **kwargs)

    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_dx=True):
        return dy

    def get_config(self):
        cfg = super().get_config()
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        bis = config.pop("batch_input_shape")
        return cls(batch_shape=bis, **config)


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None):
    """The input of a model, as keras.Input: Sequential([Input(shape=(28, 28, 1)), ...])."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype, batch_shape=batch_shape)


class Dense(Layer):
    """act(x @ kernel + bias) on the last axis; kernel [in, units] as in Keras."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        from .. import initializers, regularizers
        self.units = as_int(units, "units", 1)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"{self._desc()} needs inputs with a known last dimension, received "
                             f"{_format_shape(input_shape)}")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                        self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)
        super().build(input_shape)

    def _fixed_axes(self):
        return [len(self._input_shape) - 1]

    def _mismatch_message(self, axis, expected, received):
        return (f"{self._desc()} expects {expected[-1]} input features, received {received[-1]} "
                f"(input shape {_format_shape(received)})")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        act = self.activation
        fused = act.fused_name if act.from_output else None
        y = nn.dense(x, self.params["kernel"], self.params.get("bias"), activation=fused)
        z = None
        if fused is None and not act.is_linear:
            z, y = y, act.forward(y)
        self._keep(training, _x=x, _y=y, _z=z)
        return y

    def backward(self, dy, need_dx=True, preactivation=False):
        dz = dy if preactivation else self.activation.backward(dy, z=self._z, y=self._y)
        dx, dw, db = nn.dense_grad(self._x, self.params["kernel"], dz, need_dx=need_dx)
        self.grads = {"kernel": dw}
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        from .. import initializers, regularizers
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation.name, use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer),
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return cfg


class Flatten(Layer):
    """[N, ...] -> [N, prod(...)]; channels_first inputs are moved to channels last first (Keras)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, "Flatten")

    def _fixed_axes(self):
        return []

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        total = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], total)

    def forward(self, x, training=False):
        self._shape = x.shape
        if self.data_format == "channels_first" and x.ndim > 2:
            x = _alloc.copy(np.moveaxis(x, 1, -1))
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        if self.data_format == "channels_first" and len(self._shape) > 2:
            s = self._shape
            return _alloc.copy(np.moveaxis(dy.reshape((s[0],) + s[2:] + (s[1],)), -1, 1))
        return dy.reshape(self._shape)

    def get_config(self):
        cfg = super().get_config()
        cfg["data_format"] = self.data_format
        return cfg


class Reshape(Layer):
    """Reshape each sample to target_shape (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        ts = tuple(target_shape)
        if sum(1 for d in ts if d == -1) > 1 or any(d != -1 and as_int(d, "target_shape", 1) < 1 for d in ts):
            raise ValueError(f"Reshape: target_shape must hold positive ints and at most one -1, received {target_shape!r}")
        self.target_shape = ts

    def _fixed_axes(self):
        return []

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return (input_shape[0],) + tuple(None if d == -1 else d for d in self.target_shape)
        total = int(np.prod(rest, dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(f"{self._desc()} cannot reshape {_format_shape(input_shape)} to "
                                 f"{self.target_shape}")
            return (input_shape[0],) + tuple(total // known if d == -1 else d for d in self.target_shape)
        if known != total:
            raise ValueError(f"{self._desc()} cannot reshape {_format_shape(input_shape)} ({total} values per "
                             f"sample) to {self.target_shape} ({known})")
        return (input_shape[0],) + self.target_shape

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def forward(self, x, training=False):
        self._shape = x.shape
        out = self.compute_output_shape((None,) + x.shape[1:])
        return x.reshape((x.shape[0],) + out[1:])

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._shape)

    def get_config(self):
        cfg = super().get_config()
        cfg["target_shape"] = list(self.target_shape)
        return cfg


class Dropout(Layer):
    """Inverted dropout in training; identity in inference. Masks come from cnnc's seeded generator
    (cnnc.utils.set_random_seed) or from `seed`."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise TypeError(f"Dropout: rate must be a number, received {rate!r}") from None
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), received {rate}")
        if noise_shape is not None:
            raise ValueError("Dropout: noise_shape is not supported")
        self.rate = rate
        self.seed = seed
        self._seed_rng = np.random.default_rng(seed) if seed is not None else None

    def _fixed_axes(self):
        return []

    def forward(self, x, training=False):
        self._mask = None
        if not training or self.rate == 0.0:
            return x
        rng = self._seed_rng if self._seed_rng is not None else utils.get_rng()
        y, self._mask = nn.dropout(x, self.rate, int(rng.integers(0, 2**63 - 1)))
        return y

    def backward(self, dy, need_dx=True):
        if self._mask is None:
            return dy
        return nn.dropout_grad(dy, self._mask, self.rate)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg


class _ActivationLayer(Layer):
    """Applies self.act; keeps the output (or the input when the derivative needs it)."""

    def _fixed_axes(self):
        return []

    def forward(self, x, training=False):
        y = self.act.forward(x)
        self._keep(training, _z=None if self.act.from_output else x, _y=y)
        return y

    def backward(self, dy, need_dx=True, preactivation=False):
        if preactivation:
            return dy
        return self.act.backward(dy, z=self._z, y=self._y)


class Activation(_ActivationLayer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.act = activations.get(activation)

    @property
    def activation(self):
        return self.act

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = self.act.name
        return cfg


class ReLU(_ActivationLayer):
    """min(max(x, 0), max_value), with negative_slope below threshold (Keras' ReLU layer)."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and float(max_value) < 0:
            raise ValueError(f"ReLU: max_value must be >= 0, received {max_value}")
        if float(negative_slope) < 0:
            raise ValueError(f"ReLU: negative_slope must be >= 0, received {negative_slope}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)
        if self.threshold != 0.0 or (self.negative_slope != 0.0 and self.max_value is not None):
            self.act = None  # general case in NumPy
        elif self.negative_slope != 0.0:
            self.act = activations.leaky_relu_activation(self.negative_slope)
        elif self.max_value is not None:
            self.act = activations.clip_activation(0.0, self.max_value)
        else:
            self.act = activations.get("relu")

    def forward(self, x, training=False):
        if self.act is not None:
            return super().forward(x, training)
        self._keep(training, _x=x)
        y = np.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        if self.max_value is not None:
            y = np.minimum(y, self.max_value)
        return _alloc.track(y.astype(np.float32, copy=False))

    def backward(self, dy, need_dx=True, preactivation=False):
        if self.act is not None:
            return super().backward(dy, need_dx, preactivation)
        x = self._x
        g = np.where(x >= self.threshold, 1.0, self.negative_slope)
        if self.max_value is not None:
            g = np.where(x >= self.threshold, np.where(x < self.max_value, 1.0, 0.0), g)
        return _alloc.track((dy * g).astype(np.float32, copy=False))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(max_value=self.max_value, negative_slope=self.negative_slope, threshold=self.threshold)
        return cfg


class LeakyReLU(_ActivationLayer):
    """x if x > 0 else negative_slope * x (Keras 3 default 0.3; `alpha` accepted as in Keras 2)."""

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(alpha if alpha is not None else negative_slope)
        self.act = activations.leaky_relu_activation(self.negative_slope)

    def get_config(self):
        cfg = super().get_config()
        cfg["negative_slope"] = self.negative_slope
        return cfg


class ELU(_ActivationLayer):
    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.act = activations.elu_activation(self.alpha)

    def get_config(self):
        cfg = super().get_config()
        cfg["alpha"] = self.alpha
        return cfg


class Softmax(_ActivationLayer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.act = activations.get("softmax")

    def forward(self, x, training=False):
        if self.axis in (-1, x.ndim - 1):
            return super().forward(x, training)
        y = nn.softmax(x, axis=self.axis)
        self._keep(training, _y=y)
        return y

    def backward(self, dy, need_dx=True, preactivation=False):
        if preactivation:
            return dy
        if self.axis in (-1, dy.ndim - 1):
            return super().backward(dy, need_dx)
        y = self._y
        return (y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))).astype(np.float32)

    def get_config(self):
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg


class ZeroPadding2D(Layer):
    """Zero rows/columns around the image: padding int, (ph, pw) or ((top, bottom), (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        from .._checks import resolve_padding
        if isinstance(padding, str):
            raise ValueError(f"ZeroPadding2D: padding must be an int or pairs of ints, received {padding!r}")
        self.padding = resolve_padding(padding, (1, 1), (1, 1), (1, 1), name="padding")
        self.data_format = _data_format(data_format, "ZeroPadding2D")

    def _fixed_axes(self):
        return []

    def _spatial(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self._desc()} expects 4-D inputs, received {_format_shape(input_shape)}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        t, b, l, r = self.padding
        out = list(input_shape)
        ah, aw = self._spatial()
        out[ah] = None if out[ah] is None else out[ah] + t + b
        out[aw] = None if out[aw] is None else out[aw] + l + r
        return tuple(out)

    def forward(self, x, training=False):
        t, b, l, r = self.padding
        pads = [(0, 0)] * 4
        ah, aw = self._spatial()
        pads[ah], pads[aw] = (t, b), (l, r)
        return _alloc.track(np.pad(x, pads))

    def backward(self, dy, need_dx=True):
        t, b, l, r = self.padding
        sl = [slice(None)] * 4
        ah, aw = self._spatial()
        sl[ah] = slice(t, dy.shape[ah] - b)
        sl[aw] = slice(l, dy.shape[aw] - r)
        return _alloc.copy(dy[tuple(sl)])

    def get_config(self):
        cfg = super().get_config()
        t, b, l, r = self.padding
        cfg.update(padding=[[t, b], [l, r]], data_format=self.data_format)
        return cfg
