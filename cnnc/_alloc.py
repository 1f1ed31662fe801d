"""The one accounting point for cnnc's buffers.

Every array cnnc allocates for its work — op outputs and gradients, C workspaces, layer weights,
optimizer slots, the batches fit() gathers — is created (or registered) here. The tracker counts the
bytes of live buffers and the peak; a buffer leaves the count when NumPy frees it (a weakref finalizer
on the array), so the figures follow what the process really holds, not what was requested.
"""
import threading
import weakref

import numpy as np

_lock = threading.Lock()
_current = 0
_peak = 0


def _release(nbytes):
    global _current
    with _lock:
        _current -= nbytes


def track(arr):
    """Count `arr` (a freshly allocated array that owns its memory) until it is freed; returns it."""
    global _current, _peak
    n = int(arr.nbytes)
    if n == 0 or arr.base is not None:
        return arr
    with _lock:
        _current += n
        if _current > _peak:
            _peak = _current
    f = weakref.finalize(arr, _release, n)
    f.atexit = False
    return arr


def empty(shape, dtype=np.float32):
    return track(np.empty(shape, dtype=dtype))


def empty_like(a, dtype=None):
    return track(np.empty(np.shape(a), dtype=a.dtype if dtype is None else dtype))


def zeros(shape, dtype=np.float32):
    return track(np.zeros(shape, dtype=dtype))


def full(shape, value, dtype=np.float32):
    return track(np.full(shape, value, dtype=dtype))


def copy(a):
    return track(np.array(a, copy=True, order="C"))


def current_bytes():
    """Bytes of cnnc buffers alive now."""
    return _current


def peak_bytes():
    return _peak


def reset_peak():
    """Start a new peak at the current level; returns it."""
    global _peak
    with _lock:
        _peak = _current
        return _peak
