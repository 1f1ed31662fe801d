"""cnnc - convolutional neural networks on the CPU.

A C core (a thread pool, SIMD micro-kernels chosen at run time) for convolution, pooling, dense layers,
activations and batch normalization, forward and backward, with a NumPy-facing functional API in
cnnc.nn.
"""
__version__ = "0.1.0"

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError(
        "cnnc's C extension (cnnc._core) is not built or cannot be loaded: install cnnc with "
        "`pip install .` from a checkout, or build it in place with "
        "`python setup.py build_ext --inplace`. Original error: " + str(exc)) from exc

from . import nn
from ._config import get_num_threads, set_num_threads, show_config

# The Keras-style front end is imported on first use, so `import cnnc` stays fast.
_LAZY = ("activations", "callbacks", "datasets", "initializers", "layers", "losses", "metrics", "models",
         "optimizers", "regularizers", "utils")

__all__ = ["nn", "show_config", "set_num_threads", "get_num_threads", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'cnnc' has no attribute {name!r}")
