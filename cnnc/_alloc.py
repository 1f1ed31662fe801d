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


_held = weakref.WeakKeyDictionary()  # owner -> [bytes C code holds for it]


def hold(owner, nbytes):
    """Count `nbytes` that the C core allocated for `owner` (a runner's packed weights) in place of
    what it held before; they leave the count when the owner is freed."""
    global _current, _peak
    nbytes = int(nbytes)
    with _lock:
        cell = _held.get(owner)
        if cell is None:
            cell = _held[owner] = [0]
            f = weakref.finalize(owner, lambda c: _release(c[0]), cell)
            f.atexit = False
        _current += nbytes - cell[0]
        cell[0] = nbytes
        if _current > _peak:
            _peak = _current


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
