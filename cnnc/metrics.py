"""Stateful metrics with Keras names and semantics.

``metric.update_state(y_true, y_pred, sample_weight=None)`` accumulates, ``metric.result()`` is the
running value (a float; 0.0 before any update), ``metric.reset_state()`` starts over. Every built-in
metric is a weighted mean of per-sample values (Keras' MeanMetricWrapper): result =
sum(w * value) / sum(w) over everything seen since the last reset, accumulated in float64.

``get(identifier, loss=None, output_shape=None)`` resolves names as Keras' compile() does, including
'accuracy' / 'acc', which picks the accuracy matching the loss (or the output shape).
"""
import numbers

import numpy as np

from ._registry import Registry

from . import losses as _losses
from .losses import _array

__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy",
    "MeanSquaredError", "MeanAbsoluteError",
    "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    "get", "serialize", "deserialize",
]


# --------------------------------------------------------------------------------------------------
# helpers

def _pred(y_pred, min_ndim=1):
    p = _array(y_pred, "y_pred")
    if p.ndim < min_ndim:
        raise ValueError(f"y_pred must have at least {min_ndim} dimension(s), received shape {p.shape}")
    return p


def _same_shape(t, p):
    """Keras' squeeze_or_expand_to_same_rank, then an exact shape check."""
    if t.shape != p.shape:
        if t.ndim == p.ndim - 1 and p.shape[-1] == 1 and t.shape == p.shape[:-1]:
            t = t.reshape(p.shape)
        elif t.ndim == p.ndim + 1 and t.shape[-1] == 1 and t.shape[:-1] == p.shape:
            t = t.reshape(p.shape)
        else:
            raise ValueError(f"y_true shape {t.shape} does not match y_pred shape {p.shape}")
    return t


def _in_top_k(labels, p, k):
    """TF/Keras in_top_k: the target's prediction is >= the k-th largest (ties straddling the
    boundary all count); out-of-range or non-integer targets and non-finite predictions count as misses."""
    num_classes = p.shape[-1]
    flat = p.reshape(-1, num_classes)
    lab = np.asarray(labels, dtype=np.float64).reshape(-1)
    valid = np.isfinite(lab) & (lab == np.floor(lab)) & (lab >= 0) & (lab < num_classes)
    idx = np.where(valid, lab, 0).astype(np.int64)
    target = flat[np.arange(flat.shape[0]), idx]
    greater = np.count_nonzero(flat > target[:, None], axis=-1)
    hit = valid & np.isfinite(target) & (greater < k)
    return hit.reshape(p.shape[:-1]).astype(np.float64)


def _check_k(k):
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, received k={k!r}")
    return int(k)


# --------------------------------------------------------------------------------------------------
# per-sample metric functions (float64 arrays, shape y_pred.shape[:-1])

def accuracy(y_true, y_pred):
    """Per-sample fraction of exactly equal entries over the last axis."""
    p = _pred(y_pred)
    t = _same_shape(_array(y_true, "y_true"), p)
    return np.mean(t == p, axis=-1, dtype=np.float64)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per-sample fraction of entries where (y_pred > threshold) equals y_true, over the last axis."""
    p = _pred(y_pred)
    t = _same_shape(_array(y_true, "y_true"), p)
    return np.mean(t == (p > threshold), axis=-1, dtype=np.float64)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_true) == argmax(y_pred) over the last axis (first maximum on ties)."""
    p = _pred(y_pred)
    t = _array(y_true, "y_true")
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} does not match y_pred shape {p.shape} (integer class "
                         f"labels need sparse_categorical_accuracy)")
    return (np.argmax(t, axis=-1) == np.argmax(p, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label y_true equals argmax(y_pred) (first maximum on ties)."""
    p = _pred(y_pred)
    y = _losses._sparse_label_shape(y_true, p)
    return (y == np.argmax(p, axis=-1)).astype(np.float64)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where argmax(y_true) is among the top k predictions (Keras in_top_k)."""
    k = _check_k(k)
    p = _pred(y_pred)
    t = _array(y_true, "y_true")
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} does not match y_pred shape {p.shape}")
    return _in_top_k(np.argmax(t, axis=-1), p, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the integer label y_true is among the top k predictions (Keras in_top_k)."""
    k = _check_k(k)
    p = _pred(y_pred)
    return _in_top_k(_losses._sparse_label_shape(y_true, p), p, k)


# --------------------------------------------------------------------------------------------------
# metric classes

class Metric:
    """Base class: ``update_state(...)``, ``result() -> float``, ``reset_state()``, ``name``."""

    _default_name = "metric"

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, received {name!r}")
        if dtype not in (None, "float32", "float64", np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, received dtype={dtype!r}")
        self.name = name if name is not None else self._default_name
        self.reset_state()

    def update_state(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_state(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """update_state(...) then result()."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result()!r}>"


class Mean(Metric):
    """Weighted running mean of values: ``update_state(values, sample_weight=None)``.

    As Keras: values with more than one dimension are first averaged per sample (over all axes but
    the first); each sample then counts with its weight (weights broadcast like the values)."""

    _default_name = "mean"

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        v = _array(values, "values").astype(np.float64, copy=False)
        if sample_weight is None:
            if v.ndim > 1:
                v = v.reshape(v.shape[0], -1).mean(axis=1)
            self.total += float(np.sum(v))
            self.count += float(v.shape[0]) if v.ndim else 1.0
            return
        w = _array(sample_weight, "sample_weight").astype(np.float64, copy=False)
        if w.ndim == v.ndim + 1 and w.shape[-1] == 1:
            w = w[..., 0]
        elif v.ndim == w.ndim + 1 and v.shape[-1] == 1 and v.shape[:-1] == w.shape:
            v = v[..., 0]
        if w.ndim < v.ndim and w.shape == v.shape[:w.ndim]:
            w = w.reshape(w.shape + (1,) * (v.ndim - w.ndim))
        try:
            w = np.broadcast_to(w, v.shape)
        except ValueError:
            raise ValueError(f"sample_weight shape {np.shape(sample_weight)} cannot be broadcast to the "
                             f"values' shape {v.shape}") from None
        vw = v * w
        if v.ndim > 1:
            vw = vw.reshape(v.shape[0], -1).mean(axis=1)
            w = w.reshape(v.shape[0], -1).mean(axis=1)
        self.total += float(np.sum(vw))
        self.count += float(np.sum(w))

    def result(self):
        return self.total / self.count if self.count else 0.0


_FUNCTIONS = {}  # name -> per-sample function, for serialization of MeanMetricWrapper


class MeanMetricWrapper(Mean):
    """Weighted mean of ``fn(y_true, y_pred, **kwargs)`` (per-sample values):
    ``update_state(y_true, y_pred, sample_weight=None)``."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        if isinstance(fn, str):
            if fn not in _FUNCTIONS:
                raise ValueError(f"unknown metric function {fn!r}; choose one of {', '.join(sorted(_FUNCTIONS))}")
            fn = _FUNCTIONS[fn]
        if not callable(fn):
            raise TypeError(f"fn must be callable, received {fn!r}")
        self._fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name=name if name is not None else getattr(fn, "__name__", "mean_metric_wrapper"),
                         dtype=dtype)

    # elementwise metrics (mean over the last axis) treat a 1-D y_pred as one value per sample
    _one_d_is_batch = False

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._one_d_is_batch:
            p = _pred(y_pred)
            if p.ndim == 1:
                t = _array(y_true, "y_true")
                y_true = t[:, None] if t.shape == p.shape else t
                y_pred = p[:, None]
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight=sample_weight)

    def get_config(self):
        cfg = super().get_config()
        name = getattr(self._fn, "__name__", None)
        if type(self) is MeanMetricWrapper:
            if _FUNCTIONS.get(name) is not self._fn:
                raise ValueError(f"metric {self.name!r} wraps {self._fn!r}, which cannot be serialized")
            cfg["fn"] = name
            cfg.update(self._fn_kwargs)
        return cfg


class Accuracy(MeanMetricWrapper):
    """Fraction of entries where y_pred equals y_true exactly. A 1-D y_pred is one value per sample."""
    _default_name = "accuracy"
    _one_d_is_batch = True

    def __init__(self, name=None, dtype=None):
        super().__init__(accuracy, name=name or self._default_name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """Fraction of entries where (y_pred > threshold) equals y_true. A 1-D y_pred is one value per
    sample."""
    _default_name = "binary_accuracy"
    _one_d_is_batch = True

    def __init__(self, name=None, dtype=None, threshold=0.5):
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"threshold must be a float, received {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(binary_accuracy, name=name or self._default_name, dtype=dtype, threshold=self.threshold)

    def get_config(self):
        cfg = super().get_config()
        cfg["threshold"] = self.threshold
        return cfg


class CategoricalAccuracy(MeanMetricWrapper):
    """Fraction of samples where argmax(y_pred) == argmax(y_true) (one-hot y_true)."""
    _default_name = "categorical_accuracy"

    def __init__(self, name=None, dtype=None):
        super().__init__(categorical_accuracy, name=name or self._default_name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """Fraction of samples where argmax(y_pred) equals the integer label y_true."""
    _default_name = "sparse_categorical_accuracy"

    def __init__(self, name=None, dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name or self._default_name, dtype=dtype)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """Fraction of samples whose one-hot target class is among the top k predictions."""
    _default_name = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None, dtype=None):
        self.k = _check_k(k)
        super().__init__(top_k_categorical_accuracy, name=name or self._default_name, dtype=dtype, k=self.k)

    def get_config(self):
        cfg = super().get_config()
        cfg["k"] = self.k
        return cfg


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """Fraction of samples whose integer label is among the top k predictions."""
    _default_name = "sparse_top_k_categorical_accuracy"

    def __init__(self, k=5, name=None, dtype=None):
        self.k = _check_k(k)
        super().__init__(sparse_top_k_categorical_accuracy, name=name or self._default_name, dtype=dtype, k=self.k)

    def get_config(self):
        cfg = super().get_config()
        cfg["k"] = self.k
        return cfg


class _LossMetric(MeanMetricWrapper):
    _loss_cls = None

    def __init__(self, name=None, dtype=None):
        super().__init__(self._loss_cls().call, name=name or self._default_name, dtype=dtype)


class MeanSquaredError(_LossMetric):
    """Mean of the per-sample mean squared error."""
    _default_name = "mean_squared_error"
    _loss_cls = _losses.MeanSquaredError


class MeanAbsoluteError(_LossMetric):
    """Mean of the per-sample mean absolute error."""
    _default_name = "mean_absolute_error"
    _loss_cls = _losses.MeanAbsoluteError


_FUNCTIONS.update({f.__name__: f for f in (
    accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy,
    _losses.mean_squared_error, _losses.mean_absolute_error, _losses.categorical_crossentropy,
    _losses.sparse_categorical_crossentropy, _losses.binary_crossentropy)})


# --------------------------------------------------------------------------------------------------
# lookup and serialization

_CLASSES = {c.__name__: c for c in (Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy,
                                    SparseCategoricalAccuracy, TopKCategoricalAccuracy,
                                    SparseTopKCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
                                    MeanMetricWrapper)}

# lowercase names -> factory(name)
_BY_NAME = {
    "binary_accuracy": lambda n: BinaryAccuracy(name=n),
    "categorical_accuracy": lambda n: CategoricalAccuracy(name=n),
    "sparse_categorical_accuracy": lambda n: SparseCategoricalAccuracy(name=n),
    "top_k_categorical_accuracy": lambda n: TopKCategoricalAccuracy(name=n),
    "sparse_top_k_categorical_accuracy": lambda n: SparseTopKCategoricalAccuracy(name=n),
    "mse": lambda n: MeanSquaredError(name=n),
    "mean_squared_error": lambda n: MeanSquaredError(name=n),
    "mae": lambda n: MeanAbsoluteError(name=n),
    "mean_absolute_error": lambda n: MeanAbsoluteError(name=n),
    "categorical_crossentropy": lambda n: MeanMetricWrapper(_losses.categorical_crossentropy, name=n),
    "sparse_categorical_crossentropy":
        lambda n: MeanMetricWrapper(_losses.sparse_categorical_crossentropy, name=n),
    "binary_crossentropy": lambda n: MeanMetricWrapper(_losses.binary_crossentropy, name=n),
}


def _choices():
    return ", ".join(["accuracy", "acc"] + sorted(_BY_NAME) + sorted(_CLASSES))


def _resolve_loss(loss):
    if loss is None or isinstance(loss, _losses.Loss):
        return loss
    try:
        return _losses.get(loss)
    except (ValueError, TypeError):
        return None


def _accuracy_for(loss, output_shape, name):
    loss = _resolve_loss(loss)
    # SparseCategoricalCrossentropy subclasses CategoricalCrossentropy: test it first
    if isinstance(loss, _losses.SparseCategoricalCrossentropy):
        return SparseCategoricalAccuracy(name=name)
    if isinstance(loss, _losses.CategoricalCrossentropy):
        return CategoricalAccuracy(name=name)
    if isinstance(loss, _losses.BinaryCrossentropy):
        return BinaryAccuracy(name=name)
    if output_shape is not None:
        shape = tuple(output_shape)
        if len(shape) == 0 or shape[-1] == 1:
            return BinaryAccuracy(name=name)
    return CategoricalAccuracy(name=name)


_REGISTRY = Registry("metric", Metric, list(_CLASSES.values()), {}, choices=_choices())
serialize = _REGISTRY.serialize


def deserialize(config):
    """A Metric from serialize()'s dict (or a name string, resolved like get())."""
    if isinstance(config, str):
        return get(config)
    return _REGISTRY.deserialize(config)


def get(identifier, loss=None, output_shape=None):
    """Resolve a metric as Keras' compile() does.

    'accuracy' / 'acc' (any case) -> a metric named 'accuracy': SparseCategoricalAccuracy for a
    SparseCategoricalCrossentropy loss, CategoricalAccuracy for CategoricalCrossentropy, BinaryAccuracy
    for BinaryCrossentropy; for other losses by ``output_shape`` (last dimension 1 -> binary, else
    categorical). Other names ('categorical_accuracy', 'top_k_categorical_accuracy', 'mse', 'mae',
    'binary_crossentropy', ...) give that metric named by the string; class names give the class with
    its default name. Metric instances are returned as is; Metric subclasses are instantiated; config
    dicts are deserialized; a Loss instance or a function ``f(y_true, y_pred) -> per-sample values``
    is wrapped in a MeanMetricWrapper.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        low = identifier.lower()
        if low in ("accuracy", "acc"):
            return _accuracy_for(loss, output_shape, "accuracy")
        if low in _BY_NAME:
            return _BY_NAME[low](identifier)
        cls = _CLASSES.get(identifier)
        if cls is not None and cls is not MeanMetricWrapper:
            return cls()
        raise ValueError(f"unknown metric {identifier!r}; choose one of {_choices()}")
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        if identifier in (Metric, MeanMetricWrapper, _LossMetric):
            raise ValueError(f"{identifier.__name__} cannot be instantiated without arguments")
        return identifier()
    if isinstance(identifier, _losses.Loss):
        return MeanMetricWrapper(identifier.call, name=identifier.name)
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(f"unknown metric {identifier!r}; choose one of {_choices()}")
