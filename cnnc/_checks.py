"""Argument validation and conversion shared by the functional ops.

Every public op converts its inputs here before anything reaches the C core, so bad input becomes a
clear Python exception that names the argument and what was received.
"""
import numbers
import operator

import numpy as np

INT64_MAX = 2**63 - 1
# Sizes handed to C stay well inside int64 even after the products the kernels form.
SIZE_LIMIT = 2**62

_LAYOUTS = {"NHWC": "NHWC", "CHANNELS_LAST": "NHWC", "NCHW": "NCHW", "CHANNELS_FIRST": "NCHW"}


def as_float32(x, name, ndim=None, min_ndim=None):
    """Return x as a C-contiguous float32 ndarray (copying only when needed).

    Accepts any real (bool, int, float) array-like; rejects complex, object and string data.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of numbers, received {type(x).__name__}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, received an array of dtype {arr.dtype.name}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, received shape {arr.shape} ({arr.ndim}-D)")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, received shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if out is not arr and out.base is None:
        from . import _alloc
        _alloc.track(out)  # a converted copy is one of cnnc's buffers
    return out


def check_nonempty(arr, name):
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, received shape {arr.shape}")


def as_int(v, name, minimum=None):
    """An integral Python/NumPy scalar as int (bools rejected)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        try:
            if isinstance(v, (bool, np.bool_)):
                raise TypeError
            v = operator.index(v)
        except TypeError:
            raise TypeError(f"{name} must be an integer, received {v!r}") from None
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, received {v}")
    if v > SIZE_LIMIT:
        raise ValueError(f"{name} is too large, received {v}")
    return v


def as_pair(v, name, minimum=1):
    """An int or a pair of ints -> (a, b), each >= minimum."""
    if isinstance(v, (list, tuple, np.ndarray)):
        seq = list(v)
        if len(seq) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, received {v!r}")
        return (as_int(seq[0], name, minimum), as_int(seq[1], name, minimum))
    x = as_int(v, name, minimum)
    return (x, x)


def as_layout(data_format, name="data_format"):
    if not isinstance(data_format, str) or data_format.upper() not in _LAYOUTS:
        raise ValueError(f"{name} must be 'NHWC' or 'NCHW' (or 'channels_last'/'channels_first'), "
                         f"received {data_format!r}")
    return _LAYOUTS[data_format.upper()]


def same_padding(size, k_eff, stride):
    """TensorFlow/Keras 'same': output = ceil(size / stride); the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, in_hw, k_eff_hw, strides, name="padding"):
    """padding -> (top, bottom, left, right).

    'valid' | 'same' (any case) | int | (ph, pw) | ((top, bottom), (left, right)).
    k_eff_hw is the dilated kernel size (d * (k - 1) + 1) per axis.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            t, b = same_padding(in_hw[0], k_eff_hw[0], strides[0])
            l, r = same_padding(in_hw[1], k_eff_hw[1], strides[1])
            return (t, b, l, r)
        raise ValueError(f"{name} must be 'valid', 'same', an int or ((top, bottom), (left, right)), "
                         f"received {padding!r}")
    if isinstance(padding, (list, tuple)):
        if len(padding) == 2 and all(isinstance(p, (list, tuple)) for p in padding):
            (t, b), (l, r) = padding
            return tuple(as_int(v, name, 0) for v in (t, b, l, r))
        if len(padding) == 4:
            return tuple(as_int(v, name, 0) for v in padding)
        ph, pw = as_pair(padding, name, 0)
        return (ph, ph, pw, pw)
    p = as_int(padding, name, 0)
    return (p, p, p, p)


def window_output(size, k, stride, dilation, pad_lo, pad_hi, what, ceil_mode=False, kname="kernel size"):
    """Output length of a sliding window; raises ValueError when the window does not fit.

    kname names the argument that gave k (e.g. 'kernel_size', 'pool_size', 'w') in the messages.
    """
    k_eff = dilation * (k - 1) + 1
    padded = size + pad_lo + pad_hi
    if padded > SIZE_LIMIT:
        raise ValueError(f"{what}: padding {pad_lo} + {pad_hi} on an input of {size} is too large "
                         f"(padded size {padded})")
    if k_eff > SIZE_LIMIT:
        raise ValueError(f"{what}: {kname} {k} with dilations {dilation} gives a kernel extent {k_eff}, "
                         f"too large")
    if k_eff > padded:
        raise ValueError(f"{what}: the kernel extent {k_eff} ({kname} {k}, dilations {dilation}) is larger "
                         f"than the padded input {padded} (input {size} + padding {pad_lo} + {pad_hi})")
    if ceil_mode:
        out = -(-(padded - k_eff) // stride) + 1
        if (out - 1) * stride >= size + pad_lo:
            out -= 1
    else:
        out = (padded - k_eff) // stride + 1
    return out


def check_total(shape, what):
    """Raise ValueError if a tensor of this shape has more elements than the C core can index."""
    total = 1
    for s in shape:
        total *= int(s)
    if total > SIZE_LIMIT // 8:
        raise ValueError(f"{what} would have shape {tuple(shape)} ({total} elements), beyond what can be "
                         f"indexed")
    return total


def check_shape(arr, expected, name):
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, received {tuple(arr.shape)}")
