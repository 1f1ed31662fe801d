"""Memory of cnnc's buffers: measurement now; the per-layer estimator builds on the same accounting.

All buffers cnnc allocates go through one accounting point (cnnc._alloc), so the bytes alive at any
moment and the peak during a call are known exactly.
"""
import gc

from . import _alloc

__all__ = ["measure", "current_bytes"]


def current_bytes():
    """Bytes of cnnc's buffers alive now (weights, optimizer state, activations, workspaces...)."""
    return _alloc.current_bytes()


def measure(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) and return the peak bytes of cnnc's buffers alive during the call
    (buffers alive before the call included). The result of fn is discarded; use
    measure_call to get both."""
    return measure_call(fn, *args, **kwargs)[0]


def measure_call(fn, *args, **kwargs):
    """(peak bytes during the call, fn's result)."""
    gc.collect()
    _alloc.reset_peak()
    result = fn(*args, **kwargs)
    return _alloc.peak_bytes(), result
