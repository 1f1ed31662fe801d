"""BatchNormalization."""
import numpy as np

from .. import _alloc, nn
from .base import Layer, _format_shape


class BatchNormalization(Layer):
    """Keras' BatchNormalization: batch statistics in training (moving averages updated as
    moving = momentum * moving + (1 - momentum) * batch), moving statistics in inference."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        from .. import initializers, regularizers
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise ValueError(f"BatchNormalization: only one axis is supported, received {axis!r}")
            axis = axis[0]
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], received {momentum}")
        if not self.epsilon > 0:
            raise ValueError(f"BatchNormalization: epsilon must be > 0, received {epsilon}")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def _resolve(self, input_shape):
        rank = len(input_shape)
        axis = self.axis % rank if -rank <= self.axis < rank else None
        if rank == 2 and axis == 1:
            return 1, "NHWC"
        if rank == 4 and axis == 3:
            return 3, "NHWC"
        if rank == 4 and axis == 1:
            return 1, "NCHW"
        raise ValueError(f"{self._desc()} supports 2-D inputs with axis -1 and 4-D inputs with axis -1 or 1, "
                         f"received axis={self.axis} for input {_format_shape(input_shape)}")

    def build(self, input_shape):
        axis, self._format = self._resolve(input_shape)
        c = input_shape[axis]
        if c is None:
            raise ValueError(f"{self._desc()} needs a known size on axis {self.axis}")
        self._axis = axis
        if self.scale:
            self.add_weight("gamma", (c,), self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", (c,), self.beta_initializer, self.beta_regularizer)
        self.add_weight("moving_mean", (c,), self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", (c,), self.moving_variance_initializer, trainable=False)
        self._ones = np.ones(c, np.float32)
        self._zeros = np.zeros(c, np.float32)
        super().build(input_shape)

    def _fixed_axes(self):
        return [self._axis]

    def _mismatch_message(self, axis, expected, received):
        return (f"{self._desc()} expects {expected[axis]} channels on axis {self.axis}, received {received[axis]} "
                f"(input shape {_format_shape(received)})")

    def _gamma_beta(self):
        return self.params.get("gamma", self._ones), self.params.get("beta", self._zeros)

    def forward(self, x, training=False):
        gamma, beta = self._gamma_beta()
        # A frozen BatchNormalization (trainable=False) runs in inference mode, as in Keras.
        self._training_mode = bool(training) and self.trainable
        if not self._training_mode:
            return nn.batch_norm(x, gamma, beta, self.params["moving_mean"], self.params["moving_variance"],
                                 epsilon=self.epsilon, data_format=self._format)
        y, self._mean, self._invstd = nn.batch_norm_train(
            x, gamma, beta, self.params["moving_mean"], self.params["moving_variance"], momentum=self.momentum,
            epsilon=self.epsilon, data_format=self._format)
        self._keep(True, _x=x)
        return y

    def backward(self, dy, need_dx=True):
        gamma, _ = self._gamma_beta()
        if not self._training_mode:  # y = x * scale + shift with the moving statistics
            scale = gamma / np.sqrt(self.params["moving_variance"] + np.float32(self.epsilon))
            shape = [1] * dy.ndim
            shape[self._axis] = -1
            self.grads = {}
            return _alloc.track((dy * scale.reshape(shape)).astype(np.float32, copy=False))
        dx, dgamma, dbeta = nn.batch_norm_grad(self._x, dy, gamma, self._mean, self._invstd,
                                               data_format=self._format)
        self.grads = {}
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx

    def get_config(self):
        from .. import initializers, regularizers
        cfg = super().get_config()
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                   scale=self.scale, beta_initializer=initializers.serialize(self.beta_initializer),
                   gamma_initializer=initializers.serialize(self.gamma_initializer),
                   moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
                   moving_variance_initializer=initializers.serialize(self.moving_variance_initializer),
                   beta_regularizer=regularizers.serialize(self.beta_regularizer),
                   gamma_regularizer=regularizers.serialize(self.gamma_regularizer))
        return cfg
