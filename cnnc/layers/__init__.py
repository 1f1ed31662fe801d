"""Keras-style layers."""
from .base import Layer
from .conv import Conv2D, DepthwiseConv2D
from .core import (ELU, Activation, Dense, Dropout, Flatten, Input, InputLayer, LeakyReLU, ReLU, Reshape,
                   Softmax, ZeroPadding2D)
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D

# Keras' aliases
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
Convolution2D = Conv2D

__all__ = [
    "Layer", "Input", "InputLayer", "Conv2D", "Convolution2D", "DepthwiseConv2D", "MaxPooling2D", "MaxPool2D",
    "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D",
    "GlobalMaxPool2D", "Dense", "Flatten", "Dropout", "BatchNormalization", "Activation", "ReLU",
    "LeakyReLU", "ELU", "Softmax", "ZeroPadding2D", "Reshape",
]

_REGISTRY = {name: obj for name, obj in globals().items()
             if isinstance(obj, type) and issubclass(obj, Layer)}


def get_class(class_name):
    """Layer class by name (used when loading a saved model; no code is executed)."""
    try:
        return _REGISTRY[class_name]
    except KeyError:
        raise ValueError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def serialize(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(d):
    if not isinstance(d, dict) or "class_name" not in d or "config" not in d:
        raise ValueError(f"a layer is described by {{'class_name': ..., 'config': {{...}}}}, received {d!r}")
    return get_class(d["class_name"]).from_config(d["config"])
