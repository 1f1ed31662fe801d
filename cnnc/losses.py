"""Losses with Keras names, defaults and semantics, plus their gradients for backpropagation.

A loss object is called as ``loss(y_true, y_pred, sample_weight=None) -> float``: the per-sample
losses (one per row of the last axis, as Keras' loss functions return them) reduced by
'sum_over_batch_size' (their mean; with sample weights, sum(w * loss) / number of losses, as Keras),
accumulated in float64. ``loss.gradient(y_true, y_pred)`` is d(reduced loss)/d(y_pred) as float32 in
y_pred's shape; where Keras clips probabilities to [1e-7, 1 - 1e-7] the gradient is zero, as autodiff
gives.

For a softmax (sigmoid) output layer the model should use ``fused_softmax_gradient`` /
``fused_sigmoid_gradient``: the gradient with respect to the logits before the activation, e.g.
(probs * sum(t) - t) / N for categorical crossentropy, which stays exact when probabilities saturate.

Functions (categorical_crossentropy, binary_crossentropy, mse, ...) return per-sample losses like
Keras' functions (float64 arrays of shape y_pred.shape[:-1]).
"""
import math
import numbers

import numpy as np

from ._registry import Registry

__all__ = [
    "Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mean_squared_error", "mean_absolute_error", "mse", "mae", "MSE", "MAE",
    "get", "serialize", "deserialize", "EPSILON",
]

EPSILON = 1e-7  # Keras' backend.epsilon(): probabilities are clipped to [EPSILON, 1 - EPSILON]
_REDUCTIONS = ("sum_over_batch_size", "sum", "none")


# --------------------------------------------------------------------------------------------------
# argument helpers

def _array(x, name):
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{name} must be an array of numbers, received {type(x).__name__}: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, received an array of dtype {a.dtype.name}")
    return a


def _pred(y_pred):
    p = _array(y_pred, "y_pred")
    if p.ndim == 0:
        raise ValueError(f"y_pred must have at least 1 dimension, received a scalar (shape {p.shape})")
    if p.size == 0:
        raise ValueError(f"y_pred must not be empty, received shape {p.shape}")
    return p.astype(np.float64, copy=False)


def _match_shapes(t, p):
    """Keras' squeeze_or_expand_to_same_rank for y_true against y_pred, then an exact shape check."""
    if t.shape != p.shape:
        if t.ndim == p.ndim - 1 and p.shape[-1] == 1 and t.shape == p.shape[:-1]:
            t = t.reshape(p.shape)
        elif t.ndim == p.ndim + 1 and t.shape[-1] == 1 and t.shape[:-1] == p.shape:
            t = t.reshape(p.shape)
        else:
            raise ValueError(f"y_true shape {t.shape} does not match y_pred shape {p.shape}")
    return t


def _smoothing(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"label_smoothing must be a float in [0, 1], received {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], received label_smoothing={value}")
    return value


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, received {value!r}")
    return bool(value)


def _log_softmax(z):
    zmax = np.max(z, axis=-1, keepdims=True)
    zmax = np.where(np.isfinite(zmax), zmax, 0.0)
    shifted = z - zmax
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _inside(x):
    """Where clip(x, EPSILON, 1-EPSILON) passes its gradient (TF's clip_by_value: bounds inclusive)."""
    return (x >= EPSILON) & (x <= 1.0 - EPSILON)


# --------------------------------------------------------------------------------------------------
# base class

class Loss:
    """Base class. Subclasses implement ``_prepare(y_true, y_pred) -> (t, p)`` (float64 arrays of
    equal shape, at least 1-D), ``_per_sample(t, p)`` (losses, shape p.shape[:-1]) and
    ``_per_sample_grad(t, p)`` (each sample's loss differentiated w.r.t. p, shape p.shape).

    A custom loss subclasses Loss and overrides ``call(y_true, y_pred)`` (per-sample losses) and
    ``gradient(y_true, y_pred, sample_weight=None)``.
    """

    _default_name = "loss"
    # elementwise losses (mean over the last axis) treat a 1-D y_pred as one value per sample
    _one_d_is_batch = False

    def __init__(self, reduction="sum_over_batch_size", name=None):
        if reduction is None:
            reduction = "none"
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(_REDUCTIONS)}, received reduction={reduction!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, received {name!r}")
        self.reduction = reduction
        self.name = name if name is not None else self._default_name

    # ---- hooks ---------------------------------------------------------------------------------
    def _prepare(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def _per_sample(self, t, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def _per_sample_grad(self, t, p):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- helpers -------------------------------------------------------------------------------
    def _prep(self, y_true, y_pred):
        p = _pred(y_pred)
        shape = p.shape
        if self._one_d_is_batch and p.ndim == 1:
            p = p[:, None]
            y_true = _array(y_true, "y_true")
            if y_true.shape == shape:
                y_true = y_true[:, None]
        t, p = self._prepare(y_true, p)
        return t, p, shape

    def _weights(self, sample_weight, loss_shape):
        """Per-sample weights broadcast to loss_shape (float64), or None."""
        if sample_weight is None:
            return None
        w = _array(sample_weight, "sample_weight").astype(np.float64, copy=False)
        if w.ndim == len(loss_shape) + 1 and w.shape[-1] == 1:
            w = w[..., 0]
        if w.ndim < len(loss_shape) and w.shape == loss_shape[:w.ndim]:
            w = w.reshape(w.shape + (1,) * (len(loss_shape) - w.ndim))
        try:
            return np.broadcast_to(w, loss_shape)
        except ValueError:
            raise ValueError(f"sample_weight shape {np.shape(sample_weight)} cannot be broadcast to the "
                             f"per-sample losses' shape {loss_shape}") from None

    def _scale(self, loss_shape):
        if self.reduction == "sum":
            return 1.0
        if self.reduction == "sum_over_batch_size":
            return 1.0 / max(1, math.prod(loss_shape))
        raise ValueError(f"{type(self).__name__}.gradient needs a reduced loss; reduction='none' has no gradient")

    def _finish_grad(self, g, w, loss_shape, shape):
        g *= self._scale(loss_shape)
        if w is not None:
            g *= w[..., None]
        return g.reshape(shape).astype(np.float32)

    # ---- public API ----------------------------------------------------------------------------
    def call(self, y_true, y_pred):
        """Per-sample losses (float64, shape y_pred.shape[:-1]; (N,) for a 1-D y_pred of an
        elementwise loss)."""
        t, p, _ = self._prep(y_true, y_pred)
        return self._per_sample(t, p)

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self.call(y_true, y_pred), dtype=np.float64)
        w = self._weights(sample_weight, values.shape)
        if w is not None:
            values = values * w
        if self.reduction == "none":
            return values
        total = float(np.sum(values))
        if self.reduction == "sum":
            return total
        return total / max(1, values.size)

    def gradient(self, y_true, y_pred, sample_weight=None):
        """d(reduced loss)/d(y_pred), float32, y_pred's shape."""
        t, p, shape = self._prep(y_true, y_pred)
        loss_shape = p.shape[:-1]
        w = self._weights(sample_weight, loss_shape)
        return self._finish_grad(self._per_sample_grad(t, p), w, loss_shape, shape)

    def fused_softmax_gradient(self, y_true, probs, sample_weight=None):
        """Gradient w.r.t. the logits of a softmax producing ``probs``; None when not applicable."""
        return None

    def fused_sigmoid_gradient(self, y_true, probs, sample_weight=None):
        """Gradient w.r.t. the logits of a sigmoid producing ``probs``; None when not applicable."""
        return None

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        axis = config.pop("axis", -1)
        if axis not in (-1, None):
            raise ValueError(f"{cls.__name__}: only axis=-1 (classes on the last axis) is supported, received axis={axis}")
        if config.pop("dtype", None) not in (None, "float32"):
            raise ValueError(f"{cls.__name__}: only float32 losses are supported")
        if config.get("reduction") == "auto":
            config["reduction"] = "sum_over_batch_size"
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------------------------------
# crossentropies

class CategoricalCrossentropy(Loss):
    """-sum(t * log(p)) over the last axis, t one-hot (optionally smoothed: t*(1-s) + s/C).

    from_logits=False: y_pred rows are normalised by their sum and clipped to [1e-7, 1-1e-7] (Keras);
    from_logits=True: computed with a stable log-softmax, gradient w.r.t. the logits.
    """

    _default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = _flag(from_logits, "from_logits")
        self.label_smoothing = _smoothing(label_smoothing)

    def _targets(self, y_true, p):
        t = _array(y_true, "y_true")
        if t.shape != p.shape:
            hint = ""
            if t.shape in (p.shape[:-1], p.shape[:-1] + (1,)):
                hint = " (integer class labels need SparseCategoricalCrossentropy)"
            raise ValueError(f"y_true shape {t.shape} does not match y_pred shape {p.shape}{hint}")
        return t.astype(np.float64, copy=False)

    def _prepare(self, y_true, p):
        t = self._targets(y_true, p)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / p.shape[-1]
        return t, p

    def _per_sample(self, t, p):
        if self.from_logits:
            logp = _log_softmax(p)
        else:
            q = p / np.sum(p, axis=-1, keepdims=True)
            logp = np.log(np.clip(q, EPSILON, 1.0 - EPSILON))
        # 0 * log(...) terms are exactly zero even where log(...) is -inf (infinite logits)
        with np.errstate(invalid="ignore"):
            return -np.sum(np.where(t != 0, t * logp, 0.0), axis=-1)

    def _per_sample_grad(self, t, p):
        tsum = np.sum(t, axis=-1, keepdims=True)
        if self.from_logits:
            return np.exp(_log_softmax(p)) * tsum - t
        s = np.sum(p, axis=-1, keepdims=True)
        q = p / s
        c = np.clip(q, EPSILON, 1.0 - EPSILON)
        gq = np.where(_inside(q), -t / c, 0.0)                   # d loss / d q
        return (gq - np.sum(gq * q, axis=-1, keepdims=True)) / s  # through q = p / sum(p)

    def fused_softmax_gradient(self, y_true, probs, sample_weight=None):
        """(probs * sum(t) - t) * scale: the gradient w.r.t. the logits z of probs = softmax(z),
        i.e. (probs - t) / N for one-hot (or smoothed) targets. None when from_logits=True."""
        if self.from_logits:
            return None
        t, p, shape = self._prep(y_true, probs)
        loss_shape = p.shape[:-1]
        w = self._weights(sample_weight, loss_shape)
        g = p * np.sum(t, axis=-1, keepdims=True) - t
        return self._finish_grad(g, w, loss_shape, shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing)
        return cfg


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical crossentropy with integer class ids as y_true: shape y_pred.shape[:-1] (e.g. (N,))
    or that plus a trailing 1 (e.g. (N, 1)); any integer or float dtype holding integers."""

    _default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(from_logits=from_logits, label_smoothing=0.0, reduction=reduction, name=name)

    def _targets(self, y_true, p):
        return _one_hot(y_true, p)

    def get_config(self):
        cfg = super().get_config()
        del cfg["label_smoothing"]
        return cfg


def _sparse_label_shape(y_true, p):
    """y_true as an array of shape p.shape[:-1] (a trailing axis of 1 is dropped)."""
    y = _array(y_true, "y_true")
    want = p.shape[:-1]
    if y.shape != want:
        if y.shape == want + (1,):
            y = y.reshape(want)
        else:
            raise ValueError(f"y_true shape {y.shape} does not match y_pred shape {p.shape}: sparse labels "
                             f"need shape {want} or {want + (1,)}")
    return y


def _labels(y_true, p):
    """Validated integer class ids of shape p.shape[:-1] (int64)."""
    y = _sparse_label_shape(y_true, p)
    num_classes = p.shape[-1]
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.floor(y)):
            raise ValueError("y_true must hold integer class ids, received non-integer values")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = (y.min() if y.min() < 0 else y.max()).item()
        if isinstance(bad, float) and bad.is_integer():
            bad = int(bad)
        raise ValueError(f"y_true holds class id {bad!r} outside the range [0, {num_classes - 1}] of y_pred's "
                         f"{num_classes} classes")
    return y.astype(np.int64)


def _one_hot(y_true, p):
    labels = _labels(y_true, p)
    t = np.zeros(p.shape, dtype=np.float64)
    np.put_along_axis(t, labels[..., None], 1.0, axis=-1)
    return t


class BinaryCrossentropy(Loss):
    """-(t log p + (1-t) log(1-p)) averaged over the last axis; t optionally smoothed towards 0.5
    (t*(1-s) + s/2). from_logits=False clips p to [1e-7, 1-1e-7]; from_logits=True uses the stable
    max(z,0) - z*t + log(1+exp(-|z|)). A 1-D y_pred is one value per sample."""

    _default_name = "binary_crossentropy"
    _one_d_is_batch = True

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = _flag(from_logits, "from_logits")
        self.label_smoothing = _smoothing(label_smoothing)

    def _prepare(self, y_true, p):
        t = _match_shapes(_array(y_true, "y_true"), p).astype(np.float64, copy=False)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return t, p

    def _per_sample(self, t, p):
        if self.from_logits:
            e = np.maximum(p, 0.0) - p * t + np.log1p(np.exp(-np.abs(p)))
        else:
            c = np.clip(p, EPSILON, 1.0 - EPSILON)
            e = -(t * np.log(c) + (1.0 - t) * np.log(1.0 - c))
        return np.mean(e, axis=-1)

    def _per_sample_grad(self, t, p):
        d = p.shape[-1]
        if self.from_logits:
            return (_sigmoid(p) - t) / d
        c = np.clip(p, EPSILON, 1.0 - EPSILON)
        return np.where(_inside(p), (1.0 - t) / (1.0 - c) - t / c, 0.0) / d

    def fused_sigmoid_gradient(self, y_true, probs, sample_weight=None):
        """(probs - t) / (D * N): the gradient w.r.t. the logits z of probs = sigmoid(z) (D = size of
        the last axis, N = number of per-sample losses). None when from_logits=True."""
        if self.from_logits:
            return None
        t, p, shape = self._prep(y_true, probs)
        loss_shape = p.shape[:-1]
        w = self._weights(sample_weight, loss_shape)
        return self._finish_grad((p - t) / p.shape[-1], w, loss_shape, shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing)
        return cfg


# --------------------------------------------------------------------------------------------------
# regression losses

class _Elementwise(Loss):
    _one_d_is_batch = True

    def _prepare(self, y_true, p):
        return _match_shapes(_array(y_true, "y_true"), p).astype(np.float64, copy=False), p


class MeanSquaredError(_Elementwise):
    """mean((y_pred - y_true)^2) over the last axis. A 1-D y_pred is one value per sample."""

    _default_name = "mean_squared_error"

    def _per_sample(self, t, p):
        return np.mean(np.square(p - t), axis=-1)

    def _per_sample_grad(self, t, p):
        return (2.0 / p.shape[-1]) * (p - t)


class MeanAbsoluteError(_Elementwise):
    """mean(|y_pred - y_true|) over the last axis (gradient sign(y_pred - y_true), 0 at ties)."""

    _default_name = "mean_absolute_error"

    def _per_sample(self, t, p):
        return np.mean(np.abs(p - t), axis=-1)

    def _per_sample_grad(self, t, p):
        return np.sign(p - t) / p.shape[-1]


# --------------------------------------------------------------------------------------------------
# Keras-style functions: per-sample losses (float64, shape y_pred.shape[:-1])

def _function_values(loss, y_true, y_pred):
    p = _pred(y_pred)
    t, p = loss._prepare(y_true, p)
    return loss._per_sample(t, p)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample categorical crossentropy (see CategoricalCrossentropy)."""
    return _function_values(CategoricalCrossentropy(from_logits, label_smoothing), y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample sparse categorical crossentropy (see SparseCategoricalCrossentropy)."""
    return _function_values(SparseCategoricalCrossentropy(from_logits), y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample binary crossentropy, averaged over the last axis (see BinaryCrossentropy)."""
    return _function_values(BinaryCrossentropy(from_logits, label_smoothing), y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error over the last axis."""
    return _function_values(MeanSquaredError(), y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean absolute error over the last axis."""
    return _function_values(MeanAbsoluteError(), y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


# --------------------------------------------------------------------------------------------------
# lookup and serialization

_REGISTRY = Registry("loss", Loss, [CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                     MeanSquaredError, MeanAbsoluteError], {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}, abstract=(_Elementwise,))
_BY_FUNCTION = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
}
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """Resolve a loss: a name ('categorical_crossentropy', 'sparse_categorical_crossentropy',
    'binary_crossentropy', 'mse', 'mae', 'mean_squared_error', 'mean_absolute_error', or a class
    name), a Loss instance (as is) or subclass, one of this module's loss functions, or a config dict.
    Other callables are rejected: a custom loss must subclass Loss to provide its gradient."""
    if callable(identifier) and not isinstance(identifier, (type, Loss)):
        if identifier in _BY_FUNCTION:
            return _BY_FUNCTION[identifier]()
        raise _REGISTRY.error(identifier, " (a custom loss must subclass cnnc.losses.Loss and implement "
                                          "call() and gradient())")
    return _REGISTRY.get(identifier)
