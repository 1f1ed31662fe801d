"""Build and run-time configuration: thread count and the SIMD path in use."""
import contextlib
import os
import warnings

from . import _core

_core.set_num_threads(_core.default_threads())  # OMP_NUM_THREADS, else the CPUs this process may use
_core._init_arch(os.environ.get("CNNC_ARCH"))


def set_num_threads(n):
    """Set how many threads cnnc's kernels use (results are identical for any count)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, received {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, received {n}")
    if n > 1 and not _core.has_threads():
        warnings.warn(f"set_num_threads({n}): this build of cnnc has no thread support and runs single-threaded",
                      RuntimeWarning, stacklevel=2)
    _core.set_num_threads(n)


@contextlib.contextmanager
def thread_limit(n):
    """Within the block, cnnc calls made by this Python thread use n threads; other threads keep
    the global count (set_num_threads)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread_limit: n must be an int >= 1, received {n!r}")
    prev = _core.set_thread_override(n)
    try:
        yield
    finally:
        _core.set_thread_override(prev)


def get_num_threads():
    """The thread count set for cnnc's kernels (a build without threads uses 1 whatever it is)."""
    return _core.get_num_threads()


def show_config(print_=True):
    """Describe this build and machine: version, thread support, threads, SIMD path. Returns a dict."""
    from . import __version__
    cfg = {
        "version": __version__,
        "c_core_version": _core.__c_version__,
        "thread_pool": _core.has_threads(),
        "threads": get_num_threads() if _core.has_threads() else 1,  # threads the kernels use
        "simd": _core.arch_name(),
        "simd_supported": [a for a in ("generic", "avx2", "avx512") if _core.cpu_supports(a)],
        "avx512_emulated": _core.avx512_emulated(),  # a test build's AVX-512 path, run on AVX2
        "gemm_blocking": _core.gemm_blocking(),
        "cpu_count": os.cpu_count(),
    }
    if print_:
        width = max(len(k) for k in cfg)
        for k, v in cfg.items():
            print(f"{k:<{width}} : {v}")
    return cfg
