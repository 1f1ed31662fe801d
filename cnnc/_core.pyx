# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Thin bindings to the C core.

Callers (cnnc.nn and friends) validate shapes and convert arrays first; the functions here take
C-contiguous float32 (int64 for argmax, uint8 for masks) ndarrays that already have the right sizes,
allocate the workspace each C call asks for, release the GIL around the call and turn an error code
into a ValueError. Pointers come from the array interface, so no NumPy headers are needed to build.
"""
import os
import threading
import warnings

import numpy as np

from cnnc import _alloc

from libc.stdint cimport int64_t, uint64_t, uint8_t, uintptr_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE
from cnnc._core cimport *

__c_version__ = CNNC_VERSION.decode()

_ARCH_BY_NAME = {"generic": CNNC_ARCH_GENERIC, "avx2": CNNC_ARCH_AVX2, "avx512": CNNC_ARCH_AVX512}

cdef cnnc_ctx _base


def _init_arch(requested=None):
    """(Re)select the ISA path: CNNC_ARCH=generic|avx2|avx512, or the best this CPU supports."""
    global _base
    cdef int want = CNNC_ARCH_AUTO
    if requested is None:
        requested = os.environ.get("CNNC_ARCH", "")
    requested = requested.strip().lower()
    if requested and requested != "auto":
        if requested not in _ARCH_BY_NAME:
            warnings.warn(f"CNNC_ARCH={requested!r} is not one of generic, avx2, avx512; using the best "
                          f"path this CPU supports", RuntimeWarning, stacklevel=2)
        else:
            want = _ARCH_BY_NAME[requested]
            if not cnnc_cpu_supports(want):
                warnings.warn(f"CNNC_ARCH={requested!r}: this CPU or build cannot run that path; using the "
                              f"best supported one", RuntimeWarning, stacklevel=2)
    cnnc_ctx_init(&_base, want, 1)
    return arch_name()


def arch_name():
    return cnnc_arch_name(_base.k.arch).decode()


def cpu_supports(name):
    return bool(cnnc_cpu_supports(_ARCH_BY_NAME[name]))


def avx512_emulated():
    return bool(cnnc_avx512_emulated())


def has_threads():
    return bool(cnnc_has_threads())


def default_threads():
    return cnnc_default_threads()


def gemm_blocking():
    return dict(mr=_base.k.mr, nr=_base.k.nr, mc=_base.k.mc, kc=_base.k.kc, nc=_base.k.nc)


# The thread count is Python-level state, copied into the context of each call; a Python thread may
# override it for its own calls (thread_limit), e.g. an ONNX session with intra_op_num_threads.
_nthreads = 1
_local = threading.local()


def set_num_threads(int n):
    global _nthreads
    _nthreads = n


def get_num_threads():
    return _nthreads


def set_thread_override(n):
    """This Python thread's calls use n threads (None: the global count again); returns the
    previous override."""
    prev = getattr(_local, "nthreads", None)
    _local.nthreads = n
    return prev


def effective_threads():
    """The thread count this Python thread's calls use now."""
    return _ctx().nthreads


# The thread pool the calls run their parallel loops on, created at the first call that wants more
# than one thread and replaced by a larger one when a call wants more threads than it has. A replaced
# pool is kept (a call on another thread may still be using it). A forked child starts without one:
# the parent's worker threads do not exist there.
cdef class _Pool:
    cdef cnnc_pool *p
    cdef object pid

    def __dealloc__(self):
        if self.p != NULL and self.pid == os.getpid():
            cnnc_pool_free(self.p)


cdef cnnc_pool *_pool = NULL
cdef int _pool_threads = 1
_pools = []


cdef cnnc_pool *_pool_for(int n):
    global _pool, _pool_threads
    if n <= 1:
        return NULL
    if n > _pool_threads:
        want = min(n, 255)
        holder = _Pool()
        holder.p = cnnc_pool_create(want)
        holder.pid = os.getpid()
        if holder.p != NULL:
            _pools.append(holder)
            _pool = holder.p
        _pool_threads = want  # on failure (no thread support, out of resources), do not retry
    return _pool


def _forget_pools():
    global _pool, _pool_threads
    _pool = NULL
    _pool_threads = 1
    _pools.clear()  # __dealloc__ sees another pid: the threads are not freed, they do not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def pool_threads():
    """Threads of the pool calls use now (1 before any call wanted more)."""
    return cnnc_pool_threads(_pool)


cdef inline cnnc_ctx _ctx():
    cdef cnnc_ctx c = _base
    n = getattr(_local, "nthreads", None)
    c.nthreads = _nthreads if n is None else n
    c.pool = _pool_for(c.nthreads)
    return c


_F32, _I64, _U8 = np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.uint8)


cdef int _addr_error(object dtype, bint writable, str name) except -1:
    raise TypeError(f"internal: {name} must be a C-contiguous {'writable ' if writable else ''}"
                    f"{np.dtype(dtype).name} ndarray")


cdef inline uintptr_t _addr(object a, object dtype, bint writable, str name) except 0:
    # Internal contract check: the Python layer must hand over exactly this. The data pointer, the
    # contiguity and the writability come from the buffer protocol (a fraction of a microsecond, where
    # __array_interface__ builds a dict: this runs for every array of every call).
    cdef Py_buffer view
    cdef uintptr_t ptr
    cdef Py_ssize_t nbytes
    if type(a) is not np.ndarray or (a.dtype is not dtype and a.dtype != dtype):
        _addr_error(dtype, writable, name)
    try:
        PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0))
    except (BufferError, ValueError):
        _addr_error(dtype, writable, name)
    ptr, nbytes = <uintptr_t>view.buf, view.len
    PyBuffer_Release(&view)
    if nbytes == 0:
        raise ValueError(f"{name} must not be empty, received shape {a.shape}")
    return ptr


cdef inline const float *_cf(object a, str name) except NULL:
    return <const float *>_addr(a, _F32, False, name)


cdef inline float *_wf(object a, str name) except NULL:
    return <float *>_addr(a, _F32, True, name)


cdef inline float *_wf_opt(object a, str name) except? NULL:
    if a is None:
        return NULL
    return <float *>_addr(a, _F32, True, name)


cdef inline const float *_cf_opt(object a, str name) except? NULL:
    if a is None:
        return NULL
    return <const float *>_addr(a, _F32, False, name)


cdef inline int64_t *_wi64(object a, str name) except NULL:
    return <int64_t *>_addr(a, _I64, True, name)


cdef inline int64_t *_wi64_opt(object a, str name) except? NULL:
    if a is None:
        return NULL
    return <int64_t *>_addr(a, _I64, True, name)


cdef inline const int64_t *_ci64(object a, str name) except NULL:
    return <const int64_t *>_addr(a, _I64, False, name)


cdef inline object _workspace(int64_t nbytes):
    if nbytes < 0:
        raise MemoryError("the requested operation needs a workspace larger than int64 bytes")
    return _alloc.empty(max(nbytes, 1), dtype=np.uint8)


cdef inline void *_wsptr(object ws):
    return <void *><uintptr_t>ws.__array_interface__["data"][0]


cdef inline int _check(int rc, str what) except -1:
    if rc != CNNC_OK:
        raise ValueError(f"{what}: {cnnc_strerror(rc).decode()}")
    return 0


cdef cnnc_act _make_act(int kind, float alpha, float beta):
    cdef cnnc_act a
    a.kind = kind
    a.alpha = alpha
    a.beta = beta
    return a


include "_gemm.pxi"
include "_conv.pxi"
include "_act.pxi"
include "_pool.pxi"
include "_norm.pxi"
include "_optim.pxi"
include "_deploy.pxi"
