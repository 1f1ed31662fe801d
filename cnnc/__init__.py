"""cnnc - convolutional neural networks on the CPU.

A C core (OpenMP, SIMD micro-kernels chosen at run time) for convolution, pooling, dense layers,
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

__all__ = ["nn", "show_config", "set_num_threads", "get_num_threads", "__version__"]
