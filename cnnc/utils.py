"""Utilities: reproducible randomness, label encoding, byte sizes."""
import random

import numpy as np

__all__ = ["set_random_seed", "get_rng", "to_categorical", "clear_session"]

_rng = np.random.default_rng()


def set_random_seed(seed):
    """Seed everything cnnc draws from: weight initialisation, shuffling and dropout masks (and
    Python's and NumPy's global generators, as Keras does). The same seed gives bit-identical results
    for any thread count."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, received {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _rng = np.random.default_rng(seed)


def get_rng():
    """The generator cnnc draws from (reseeded by set_random_seed)."""
    return _rng


def rng_state():
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer class ids -> one-hot rows, as keras.utils.to_categorical."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"y must hold integer class ids, received dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"y must hold non-negative class ids, received {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"y holds class id {y.max()} but num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def clear_session():
    """Reset layer-name counters (so the next Conv2D is named 'conv2d' again)."""
    from .layers.base import reset_names
    reset_names()
