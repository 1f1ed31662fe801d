"""Convolution layers: Conv2D and DepthwiseConv2D, thin subclasses of one base.

Kernels keep the Keras layout [KH, KW, Cin/groups, Cout] whatever the data format; channels_first
layers hand the C core the NCHW layout [Cout, Cin/groups, KH, KW]."""
import numpy as np

from .. import _alloc, _nn_core, activations, nn
from .._checks import as_int, as_pair
from .base import Layer, _format_shape
from .core import _data_format


def _padding_mode(padding, cls):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{cls}: padding must be 'valid' or 'same', received {padding!r}")
    return padding.lower()


def window_length(size, k, stride, dilation, padding):
    """Output length along one axis (None stays None); None when the window does not fit."""
    if size is None:
        return None
    k_eff = dilation * (k - 1) + 1
    if padding == "same":
        return -(-size // stride)
    if k_eff > size:
        return 0
    return (size - k_eff) // stride + 1


class _Conv2DBase(Layer):
    def __init__(self, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1),
                 activation=None, use_bias=True, bias_initializer="zeros", bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        from .. import initializers, regularizers
        cls = type(self).__name__
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.strides = as_pair(strides, "strides", 1)
        self.padding = _padding_mode(padding, cls)
        self.data_format = _data_format(data_format, cls)
        self.dilation_rate = as_pair(dilation_rate, "dilation_rate", 1)
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError(f"{cls}: strides > 1 together with dilation_rate > 1 is not supported "
                             f"(as in Keras), received strides={self.strides}, dilation_rate={self.dilation_rate}")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    # subclass hooks
    def _out_channels(self, cin):
        raise NotImplementedError

    def _groups(self, cin):
        raise NotImplementedError

    def _conv_kernel(self):
        """The kernel as [KH, KW, Cin/groups, Cout]."""
        raise NotImplementedError

    def _kernel_grad(self, dw):
        """dw [KH, KW, Cin/groups, Cout] -> gradient of the stored kernel."""
        raise NotImplementedError

    @property
    def _channel_axis(self):
        return 3 if self.data_format == "channels_last" else 1

    def _fixed_axes(self):
        return [self._channel_axis]

    def _mismatch_message(self, axis, expected, received):
        n = expected[axis]
        return (f"{self._desc()} expects {n} input channel{'s' if n != 1 else ''}, received "
                f"{received[axis]} (input shape {_format_shape(received)}, data_format={self.data_format})")

    def _check_build_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self._desc()} expects 4-D inputs (batch, height, width, channels) or "
                             f"(batch, channels, height, width), received {_format_shape(input_shape)}")
        cin = input_shape[self._channel_axis]
        if cin is None:
            raise ValueError(f"{self._desc()} needs a known channel count, received {_format_shape(input_shape)}")
        return cin

    def compute_output_shape(self, input_shape):
        cin = self._check_build_shape(input_shape)
        sp = (1, 2) if self.data_format == "channels_last" else (2, 3)
        dims = []
        for i, axis in enumerate(sp):
            d = window_length(input_shape[axis], self.kernel_size[i], self.strides[i], self.dilation_rate[i],
                              self.padding)
            if d == 0:
                raise ValueError(f"{self._desc()} with kernel_size {self.kernel_size}, dilation_rate "
                                 f"{self.dilation_rate} and padding '{self.padding}' does not fit input "
                                 f"{_format_shape(input_shape)}")
            dims.append(d)
        cout = self._out_channels(cin)
        if self.data_format == "channels_last":
            return (input_shape[0], dims[0], dims[1], cout)
        return (input_shape[0], cout, dims[0], dims[1])

    def build(self, input_shape):
        cin = self._check_build_shape(input_shape)
        self.compute_output_shape(input_shape)
        self._build_kernel(cin)
        if self.use_bias:
            self.add_weight("bias", (self._out_channels(cin),), self.bias_initializer, self.bias_regularizer)
        super().build(input_shape)

    def _op_kwargs(self):
        return dict(strides=self.strides, padding=self.padding, dilations=self.dilation_rate,
                    groups=self._groups(self._input_shape[self._channel_axis]),
                    data_format="NHWC" if self.data_format == "channels_last" else "NCHW")

    def _c_kernel(self):
        w = self._conv_kernel()
        return w if self.data_format == "channels_last" else _alloc.copy(w.transpose(3, 2, 0, 1))

    def forward(self, x, training=False):
        act = self.activation
        fused = act.fused_name if act.from_output and not act.softmax else None
        y = nn.conv2d(x, self._c_kernel(), self.params.get("bias"), activation=fused, **self._op_kwargs())
        z = None
        if fused is None and not act.is_linear:
            if act.softmax and self.data_format == "channels_first":
                z, y = y, nn.softmax(y, axis=1)
            else:
                z, y = y, act.forward(y)
        self._keep(training, _x=x, _y=y, _z=z)
        return y

    def forward_max_pool(self, pool, x):
        """Training forward of this layer and the MaxPooling2D after it as one op (pool._follows_conv):
        the pooled output, the convolution's never kept; pool keeps its taps."""
        act = self.activation
        y, taps = nn.conv2d_max_pool(x, self._c_kernel(), self.params.get("bias"), pool.pool_size,
                                     activation=act.fused_name, return_taps=True, **self._op_kwargs())
        self._keep(True, _x=x, _y=None, _z=None)
        pool._keep_fused(self.compute_output_shape(x.shape), y, taps, act)
        return y

    def backward(self, dy, need_dx=True, preactivation=False, pooled=None):
        """pooled: what the max pool this layer ran fused with hands back instead of dy
        (MaxPooling2D._backward_fused): then dx and dw come from the chosen elements where those paths
        apply, the dense paths taking the pool's scattered gradient otherwise."""
        if pooled is not None:
            return self._backward_pooled(need_dx, *pooled)
        act = self.activation
        if preactivation or act.is_linear:
            dz = dy
        elif act.softmax and self.data_format == "channels_first":
            dz = nn.softmax_grad(self._z, dy, axis=1)
        else:
            dz = act.backward(dy, z=self._z, y=self._y)
        dx, dw, db = nn.conv2d_grad(self._x, self._c_kernel(), dz, need_dx=need_dx, **self._op_kwargs())
        return self._set_grads(dx, dw, db)

    def _backward_pooled(self, need_dx, g, taps, pool_kw, conv_shape):
        """g: the gradient of the pre-activation at the pooled outputs' chosen elements (taps)."""
        kw, w = self._op_kwargs(), self._c_kernel()
        size = pool_kw["pool_size"]
        dx = _nn_core.conv2d_max_pool_dx(self._x, w, g, taps, size, **kw) if need_dx else None
        pooled_dw = _nn_core.conv2d_max_pool_dw(self._x, w, g, taps, size, **kw)
        dw, db = pooled_dw if pooled_dw is not None else (None, None)
        if pooled_dw is None or (need_dx and dx is None):  # the dense paths, from the scattered gradient
            dz = nn.max_pool2d_grad(conv_shape, g, taps=taps, **pool_kw)
            dense_dx, dense_dw, dense_db = nn.conv2d_grad(self._x, w, dz, need_dx=need_dx and dx is None,
                                                          need_dw=pooled_dw is None, **kw)
            del dz
            dx = dense_dx if dx is None else dx
            if pooled_dw is None:
                dw, db = dense_dw, dense_db
        return self._set_grads(dx, dw, db)

    def _set_grads(self, dx, dw, db):
        if self.data_format == "channels_first":
            dw = _alloc.copy(dw.transpose(2, 3, 1, 0))
        self.grads = {self._kernel_name: self._kernel_grad(dw)}
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def get_config(self):
        from .. import initializers, regularizers
        cfg = super().get_config()
        cfg.update(kernel_size=list(self.kernel_size), strides=list(self.strides), padding=self.padding,
                   data_format=self.data_format, dilation_rate=list(self.dilation_rate),
                   activation=self.activation.name, use_bias=self.use_bias,
                   bias_initializer=initializers.serialize(self.bias_initializer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return cfg


class Conv2D(_Conv2DBase):
    """2-D convolution layer (Keras' Conv2D)."""

    _kernel_name = "kernel"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         bias_initializer, bias_regularizer, **kwargs)
        from .. import initializers, regularizers
        self.filters = as_int(filters, "filters", 1)
        self.groups = as_int(groups, "groups", 1)
        if self.filters % self.groups:
            raise ValueError(f"Conv2D: groups={self.groups} must divide filters={self.filters}")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def _out_channels(self, cin):
        return self.filters

    def _groups(self, cin):
        return self.groups

    def _build_kernel(self, cin):
        if cin % self.groups:
            raise ValueError(f"{self._desc()}: groups={self.groups} must divide the {cin} input channels")
        self.add_weight("kernel", self.kernel_size + (cin // self.groups, self.filters), self.kernel_initializer,
                        self.kernel_regularizer)

    def _conv_kernel(self):
        return self.params["kernel"]

    def _kernel_grad(self, dw):
        return dw

    def get_config(self):
        from .. import initializers, regularizers
        cfg = super().get_config()
        cfg.update(filters=self.filters, groups=self.groups,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer))
        return cfg


class DepthwiseConv2D(_Conv2DBase):
    """Depthwise convolution: each input channel convolved with depth_multiplier filters of its own.
    depthwise_kernel is [KH, KW, Cin, depth_multiplier] as in Keras; output channel c*m + j."""

    _kernel_name = "depthwise_kernel"

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         bias_initializer, bias_regularizer, **kwargs)
        from .. import initializers, regularizers
        self.depth_multiplier = as_int(depth_multiplier, "depth_multiplier", 1)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)

    def _out_channels(self, cin):
        return cin * self.depth_multiplier

    def _groups(self, cin):
        return cin

    def _build_kernel(self, cin):
        kh, kw = self.kernel_size
        # Keras' fans for a depthwise kernel: receptive field x 1 input, x depth_multiplier outputs
        self.add_weight("depthwise_kernel", (kh, kw, cin, self.depth_multiplier), self.depthwise_initializer,
                        self.depthwise_regularizer, fan_in=kh * kw * cin, fan_out=kh * kw * self.depth_multiplier)

    def _conv_kernel(self):
        k = self.params["depthwise_kernel"]
        return k.reshape(k.shape[0], k.shape[1], 1, k.shape[2] * k.shape[3])

    def _kernel_grad(self, dw):
        return dw.reshape(self.params["depthwise_kernel"].shape)

    def get_config(self):
        from .. import initializers, regularizers
        cfg = super().get_config()
        cfg.update(depth_multiplier=self.depth_multiplier,
                   depthwise_initializer=initializers.serialize(self.depthwise_initializer),
                   depthwise_regularizer=regularizers.serialize(self.depthwise_regularizer))
        return cfg
