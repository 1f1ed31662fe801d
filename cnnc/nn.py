"""cnnc.nn - the functional ops, modelled on tf.nn and torch.nn.functional.

Convolution, pooling, dense layers, activations, batch normalization and dropout, forward and
backward (the `*_grad` functions), computed in float32 by cnnc's C core.
"""
from . import _nn_core, _nn_norm, _nn_pool
from ._nn_core import *  # noqa: F401,F403
from ._nn_norm import *  # noqa: F401,F403
from ._nn_pool import *  # noqa: F401,F403

__all__ = list(_nn_core.__all__) + list(_nn_pool.__all__) + list(_nn_norm.__all__)
