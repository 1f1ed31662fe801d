"""cnnc - convolutional neural networks on the CPU.

A C core (OpenMP, SIMD micro-kernels chosen at run time) for convolution, pooling, dense layers,
activations and batch normalization, forward and backward, with a NumPy-facing functional API in
cnnc.nn.
"""
__version__ = "0.1.0"

import os as _os

# OpenMP workers must not keep spinning on the cores after a kernel returns: on a shared or busy
# machine spinning threads starve everyone (including the next kernel). Unless the user chose a policy,
# GNU OpenMP spins briefly (about 10-30 us) and then sleeps; LLVM's runtime sleeps after 1 ms.
# These are read when the OpenMP runtime loads, i.e. with cnnc._core just below.
if not any(k in _os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
    _os.environ["GOMP_SPINCOUNT"] = "10000"
    _os.environ["KMP_BLOCKTIME"] = "1"

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
