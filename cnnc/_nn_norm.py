"""Batch normalization and dropout (re-exported by cnnc.nn).

Batch norm takes x of shape [N, C] (channels last) or 4-D with the channel axis given by data_format
('NHWC'/'channels_last' or 'NCHW'/'channels_first'); statistics are per channel over every other axis.
"""
import math
import numbers

import numpy as np

from . import _alloc, _core
from ._checks import as_float32, as_layout, check_nonempty, check_shape

__all__ = ["batch_norm", "batch_norm_train", "batch_norm_grad", "dropout", "dropout_grad"]


def _real(v, name, lo=None, hi=None, lo_open=False, hi_open=False):
    """A finite real scalar (bools rejected) within the given bounds, as float."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, received {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, received {v!r}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, received {v!r}")
    if hi is not None and (f > hi or (hi_open and f == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, received {v!r}")
    return f


def _bn_view(x, data_format, what):
    """x (2-D or 4-D) -> (x float32, outer, c, inner)."""
    x = as_float32(x, "x")
    if x.ndim not in (2, 4):
        raise ValueError(f"{what}: x must be 2-D [N, C] or 4-D, received shape {x.shape} "
                         f"({x.ndim}-D)")
    check_nonempty(x, "x")
    layout = as_layout(data_format)
    if x.ndim == 2:
        n, c = x.shape
        return x, n, c, 1
    if layout == "NHWC":
        n, h, w, c = x.shape
        return x, n * h * w, c, 1
    n, c, h, w = x.shape
    return x, n, c, h * w


def _param(v, name, c):
    arr = as_float32(v, name)
    if arr.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},) (one value per channel), received {arr.shape}")
    return arr


def _moving(v, name, c):
    """A moving statistic updated in place: must be a writable C-contiguous float32 ndarray [C]."""
    if v is None:
        return None
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name} is updated in place, so it must be a NumPy ndarray (float32, "
                        f"shape ({c},)), received {type(v).__name__}")
    if v.dtype != np.float32:
        raise TypeError(f"{name} is updated in place, so it must have dtype float32, received {v.dtype}")
    if not v.flags.c_contiguous:
        raise TypeError(f"{name} is updated in place, so it must be C-contiguous")
    if not v.flags.writeable:
        raise TypeError(f"{name} is updated in place, so it must be writable")
    check_shape(v, (c,), name)
    return v


def batch_norm(x, gamma, beta, mean, variance, epsilon=1e-3, data_format="NHWC"):
    """Inference: y = gamma * (x - mean) / sqrt(variance + epsilon) + beta, per channel."""
    x, outer, c, inner = _bn_view(x, data_format, "batch_norm")
    gamma = _param(gamma, "gamma", c)
    beta = _param(beta, "beta", c)
    mean = _param(mean, "mean", c)
    variance = _param(variance, "variance", c)
    eps = _real(epsilon, "epsilon", lo=0.0)
    y = _alloc.empty(x.shape, dtype=np.float32)
    _core.batch_norm_inference(outer, c, inner, x, gamma, beta, mean, variance, eps, y)
    return y


def batch_norm_train(x, gamma, beta, moving_mean=None, moving_variance=None, momentum=0.99,
                     epsilon=1e-3, data_format="NHWC"):
    """Training: normalise with the batch mean and biased variance -> (y, batch_mean, batch_invstd),
    batch_invstd = 1 / sqrt(batch_var + epsilon). moving_mean / moving_variance, when given, are
    updated in place: moving = momentum * moving + (1 - momentum) * batch."""
    x, outer, c, inner = _bn_view(x, data_format, "batch_norm_train")
    gamma = _param(gamma, "gamma", c)
    beta = _param(beta, "beta", c)
    moving_mean = _moving(moving_mean, "moving_mean", c)
    moving_variance = _moving(moving_variance, "moving_variance", c)
    if (moving_mean is not None and moving_variance is not None
            and np.shares_memory(moving_mean, moving_variance)):
        raise ValueError("moving_mean and moving_variance must not share memory")
    mom = _real(momentum, "momentum", lo=0.0, hi=1.0)
    eps = _real(epsilon, "epsilon", lo=0.0)
    y = _alloc.empty(x.shape, dtype=np.float32)
    batch_mean = _alloc.empty(c, dtype=np.float32)
    batch_invstd = _alloc.empty(c, dtype=np.float32)
    _core.batch_norm_training(outer, c, inner, x, gamma, beta, eps, mom, moving_mean,
                              moving_variance, y, batch_mean, batch_invstd)
    return y, batch_mean, batch_invstd


def batch_norm_grad(x, dy, gamma, batch_mean, batch_invstd, data_format="NHWC"):
    """Gradients of batch_norm_train's y with respect to x, gamma and beta -> (dx, dgamma, dbeta)."""
    x, outer, c, inner = _bn_view(x, data_format, "batch_norm_grad")
    dy = as_float32(dy, "dy")
    if dy.shape != x.shape:
        raise ValueError(f"batch_norm_grad: dy must have x's shape {x.shape}, received {dy.shape}")
    gamma = _param(gamma, "gamma", c)
    batch_mean = _param(batch_mean, "batch_mean", c)
    batch_invstd = _param(batch_invstd, "batch_invstd", c)
    dx = _alloc.empty(x.shape, dtype=np.float32)
    dgamma = _alloc.empty(c, dtype=np.float32)
    dbeta = _alloc.empty(c, dtype=np.float32)
    _core.batch_norm_backward(outer, c, inner, x, dy, gamma, batch_mean, batch_invstd, dx, dgamma,
                              dbeta)
    return dx, dgamma, dbeta


# ---- dropout ---------------------------------------------------------------------------------------

def _rate(rate):
    r = _real(rate, "rate", lo=0.0, hi=1.0, hi_open=True)
    if np.float32(r) >= 1.0:  # the C core takes rate as float32
        raise ValueError(f"rate must be < 1 (also after rounding to float32), received {rate!r}")
    return r


def _seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, received {seed!r}")
    s = int(seed)
    if not 0 <= s < 2**64:
        raise ValueError(f"seed must be a non-negative integer < 2**64, received {s}")
    return s


def dropout(x, rate, seed):
    """Inverted dropout -> (y, mask): element i is kept (mask 1) with probability 1 - rate, and
    y = x * mask / (1 - rate). The mask depends only on (seed, position), not on the thread count."""
    r = _rate(rate)
    s = _seed(seed)
    x_in = x
    x = as_float32(x, "x")
    shape = np.shape(x_in)  # as_float32 turns a 0-d input into shape (1,)
    y = _alloc.empty(x.shape, dtype=np.float32)
    mask = _alloc.empty(x.shape, dtype=np.uint8)
    if x.size:
        _core.dropout_forward(r, s, x, y, mask)
    return y.reshape(shape), mask.reshape(shape)


def dropout_grad(dy, mask, rate):
    """dx = dy * mask / (1 - rate), mask from dropout (any nonzero entry counts as kept)."""
    r = _rate(rate)
    dy_in = dy
    dy = as_float32(dy, "dy").reshape(np.shape(dy_in))
    m = np.asarray(mask)
    if m.dtype.kind not in "biu":
        raise TypeError(f"mask must be a boolean or integer array, received dtype {m.dtype}")
    if m.shape != dy.shape:
        raise ValueError(f"mask must have dy's shape {dy.shape}, received {m.shape}")
    m = np.ascontiguousarray(m if m.dtype == np.uint8 and m.max(initial=0) <= 1 else (m != 0),
                             dtype=np.uint8)
    dx = _alloc.empty(dy.shape, dtype=np.float32)
    if dy.size:
        _core.dropout_backward(r, m, dy, dx)
    return dx
