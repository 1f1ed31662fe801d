"""Pooling layers: MaxPooling2D, AveragePooling2D (thin subclasses of one base) and global pooling."""
import numpy as np

from .. import _core, nn
from .._checks import as_pair
from .base import Layer, _format_shape
from .conv import _Conv2DBase, _padding_mode, window_length
from .core import _data_format


class _PoolBase(Layer):
    """4-D inputs in either data format; shape checks at build; no weights."""

    def _fixed_axes(self):
        return []

    @property
    def _nn_format(self):
        return "NHWC" if self.data_format == "channels_last" else "NCHW"

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def _check_rank(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self._desc()} expects 4-D inputs, received {_format_shape(input_shape)}")


class _Pooling2D(_PoolBase):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = as_pair(pool_size, "pool_size", 1)
        self.strides = self.pool_size if strides is None else as_pair(strides, "strides", 1)
        self.padding = _padding_mode(padding, cls)
        self.data_format = _data_format(data_format, cls)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        sp = (1, 2) if self.data_format == "channels_last" else (2, 3)
        out = list(input_shape)
        for i, axis in enumerate(sp):
            d = window_length(input_shape[axis], self.pool_size[i], self.strides[i], 1, self.padding)
            if d == 0:
                raise ValueError(f"{self._desc()} with pool_size {self.pool_size} and padding "
                                 f"'{self.padding}' does not fit input {_format_shape(input_shape)}")
            out[axis] = d
        return tuple(out)

    def _kw(self):
        return dict(pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                    data_format=self._nn_format)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding,
                   data_format=self.data_format)
        return cfg


class MaxPooling2D(_Pooling2D):
    """Max pooling. Training keeps, for each output, the position of the chosen element in its
    window (one byte; an int64 argmax and the input for windows of more than 255 taps).

    After a convolution whose activation's derivative follows from its output (relu, linear, tanh,
    ...), a Sequential model's training runs the two layers as one op (_Conv2DBase.forward_max_pool):
    the convolution's output is never kept, and this layer's backward returns the gradient of the
    convolution's pre-activation, the activation's derivative taken at the pooled values (each chosen
    element's)."""

    _CACHE_ATTRS = _Pooling2D._CACHE_ATTRS + ("_taps", "_xshape", "_act")

    def forward(self, x, training=False):
        if not training:
            self._keep(False, _x=None, _argmax=None, _taps=None, _act=None)
            return nn.max_pool2d(x, **self._kw())
        kh, kw = self.pool_size
        if kh * kw <= _core.POOL_MAX_TAPS:
            y, taps = nn.max_pool2d_with_taps(x, **self._kw())
            self._keep(True, _x=None, _argmax=None, _taps=taps, _xshape=x.shape, _act=None)
        else:
            y, argmax = nn.max_pool2d_with_argmax(x, **self._kw())
            self._keep(True, _x=x, _argmax=argmax, _taps=None, _act=None)
        return y

    def _follows_conv(self, conv):
        """Whether training may run conv (the layer before) and this pool as one op."""
        if not isinstance(conv, _Conv2DBase):
            return False
        act = conv.activation
        kh, kw = self.pool_size
        return (self.padding == "valid" and self.strides == self.pool_size and self.data_format == conv.data_format
                and kh * kw <= _core.POOL_MAX_TAPS
                and (act.is_linear or (act.from_output and not act.softmax and act.fused_name is not None)))

    def _backward_fused(self, dy):
        """The backward of a pool fused with the convolution before it, up to the pooled outputs: (g,
        taps, the pool's arguments, the convolution's output shape), g the gradient of the
        convolution's pre-activation at the chosen elements (the activation's derivative at the pooled
        values, each the activated value of its chosen element, times dy). The convolution takes it
        (_Conv2DBase.backward's pooled) and scatters it only if a dense path needs it."""
        g = self._act.backward(dy, y=self._y)
        return g, self._taps, self._kw(), self._xshape

    def _keep_fused(self, conv_shape, y, taps, act):
        """What backward needs after the fused op: the taps, and the pooled values for the activation."""
        self._keep(True, _x=None, _argmax=None, _taps=taps, _xshape=conv_shape,
                   _y=None if act.is_linear else y, _act=act)

    def backward(self, dy, need_dx=True):
        if self._act is not None:  # fused: the gradient of the convolution's pre-activation
            g, taps, kw, shape = self._backward_fused(dy)
            return nn.max_pool2d_grad(shape, g, taps=taps, **kw)
        if self._taps is not None:
            return nn.max_pool2d_grad(self._xshape, dy, taps=self._taps, **self._kw())
        return nn.max_pool2d_grad(self._x, dy, argmax=self._argmax, **self._kw())


def conv_max_pool_pairs(layers):
    """The indices i at which training runs layers[i] (a convolution) and layers[i + 1] (a max pool)
    as one op (see MaxPooling2D)."""
    return frozenset(i for i in range(len(layers) - 1)
                     if isinstance(layers[i + 1], MaxPooling2D) and layers[i + 1]._follows_conv(layers[i]))


class AveragePooling2D(_Pooling2D):
    """Average pooling; 'same' padding is left out of the averages, as in Keras."""

    def forward(self, x, training=False):
        self._keep(training, _x=x)
        return nn.avg_pool2d(x, **self._kw())

    def backward(self, dy, need_dx=True):
        return nn.avg_pool2d_grad(self._x, dy, **self._kw())


class _GlobalPooling2D(_PoolBase):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        c = input_shape[3] if self.data_format == "channels_last" else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], c)
        return (input_shape[0], 1, 1, c) if self.data_format == "channels_last" else (input_shape[0], c, 1, 1)

    def forward(self, x, training=False):
        self._keep(training, _x=x)
        return self._pool(x, data_format=self._nn_format, keepdims=self.keepdims)

    def backward(self, dy, need_dx=True):
        return self._pool_grad(self._x, dy, data_format=self._nn_format)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(data_format=self.data_format, keepdims=self.keepdims)
        return cfg


class GlobalAveragePooling2D(_GlobalPooling2D):
    _pool = staticmethod(nn.global_avg_pool2d)
    _pool_grad = staticmethod(nn.global_avg_pool2d_grad)


class GlobalMaxPooling2D(_GlobalPooling2D):
    _pool = staticmethod(nn.global_max_pool2d)
    _pool_grad = staticmethod(nn.global_max_pool2d_grad)
