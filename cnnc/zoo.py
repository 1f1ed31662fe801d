"""The textbook CNNs, built with cnnc's Keras-style layers.

chollet_cnn: Deep Learning with Python, ch. 5 (MNIST): 93,322 parameters for 28x28x1 inputs.
geron_cnn:   Hands-on Machine Learning, ch. 14 (Fashion-MNIST): 1,413,834 parameters.
"""
from functools import partial

from . import layers, models


def chollet_cnn(input_shape=(28, 28, 1), num_classes=10, name=None):
    """Conv 32 3x3 - MaxPool - Conv 64 3x3 - MaxPool - Conv 64 3x3 - Flatten - Dense 64 - Dense softmax."""
    model = models.Sequential(name=name)
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=input_shape))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def geron_cnn(input_shape=(28, 28, 1), num_classes=10, name=None):
    """Conv 64 7x7 - pool - 2x Conv 128 - pool - 2x Conv 256 - pool - Dense 128 - Dropout - Dense 64 -
    Dropout - Dense softmax, all 'same' padded, written as in the book with functools.partial."""
    DefaultConv2D = partial(layers.Conv2D, kernel_size=3, activation="relu", padding="SAME")
    return models.Sequential([
        DefaultConv2D(filters=64, kernel_size=7, input_shape=input_shape),
        layers.MaxPooling2D(pool_size=2),
        DefaultConv2D(filters=128),
        DefaultConv2D(filters=128),
        layers.MaxPooling2D(pool_size=2),
        DefaultConv2D(filters=256),
        DefaultConv2D(filters=256),
        layers.MaxPooling2D(pool_size=2),
        layers.Flatten(),
        layers.Dense(units=128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(units=64, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(units=num_classes, activation="softmax"),
    ], name=name)


ARCHITECTURES = {"chollet": chollet_cnn, "geron": geron_cnn}
