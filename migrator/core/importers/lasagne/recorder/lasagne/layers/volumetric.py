# ruff: noqa: B008  (Lasagne's API: initializer instances as argument defaults)
"""Recording stand-ins for Lasagne 0.2's 3-D layers (``Conv3DLayer``, ``Pool3DLayer``,
``MaxPool3DLayer``, ``TransposedConv3DLayer`` / ``Deconv3DLayer``, ``Upscale3DLayer``) and
their cuDNN variants in ``lasagne.layers.dnn`` (``Conv3DDNNLayer``: flip_filters=False by default; ``Pool3DDNNLayer``/``MaxPool3DDNNLayer``: ignore_border only)
-- what the Lasagne Recipes C3D model uses."""
from .. import init, nonlinearities
from ..utils import as_tuple, int_types
from ._impl import BaseConvLayer, Layer, conv_input_length, pool_output_length

__all__ = ["Conv3DLayer", "Deconv3DLayer", "MaxPool3DLayer", "Pool3DLayer", "TransposedConv3DLayer",
           "Upscale3DLayer"]


class Conv3DLayer(BaseConvLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=True, convolution=None,
                 **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=3, **kwargs)
        self.convolution = convolution


class Pool3DLayer(Layer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 mode="max", **kwargs):
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) != 5:
            raise ValueError(f"Tried to create a 3D pooling layer with input shape "
                             f"{self.input_shape!r}. Expected 5 input dimensions (batchsize, "
                             "channels, 3 spatial dimensions).")
        self.pool_size = as_tuple(pool_size, 3)
        self.stride = self.pool_size if stride is None else as_tuple(stride, 3)
        self.pad = as_tuple(pad, 3)
        self.ignore_border = ignore_border
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        for i in range(3):
            out[2 + i] = pool_output_length(input_shape[2 + i], self.pool_size[i],
                                            self.stride[i], self.pad[i], self.ignore_border)
        return tuple(out)


class MaxPool3DLayer(Pool3DLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode="max", **kwargs)


class Conv3DDNNLayer(Conv3DLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, **kwargs)


class Pool3DDNNLayer(Pool3DLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 mode="max", **kwargs):
        if not ignore_border:
            raise NotImplementedError("Pool3DDNNLayer does not support ignore_border=False.")
        super().__init__(incoming, pool_size, stride, pad, True, mode, **kwargs)


class MaxPool3DDNNLayer(Pool3DDNNLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, "max", **kwargs)


class TransposedConv3DLayer(BaseConvLayer):
    """Master's TransposedConv3DLayer: W (in, out, kd, kh, kw), crop = the forward conv's pad."""

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1, 1), crop=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, output_size=None,
                 **kwargs):
        self.output_size = None if output_size is None else as_tuple(output_size, 3, int_types)
        super().__init__(incoming, num_filters, filter_size, stride, crop, untie_biases, W, b,
                         nonlinearity, flip_filters, n=3, **kwargs)
        self.crop = self.pad
        del self.pad

    def get_W_shape(self):
        return (self.input_shape[1], self.num_filters) + self.filter_size

    def get_output_shape_for(self, input_shape):
        if self.output_size is not None:
            return (input_shape[0], self.num_filters) + self.output_size
        crop = getattr(self, "crop", getattr(self, "pad", 0))
        crop = crop if isinstance(crop, tuple) else (crop,) * self.n
        return ((input_shape[0], self.num_filters) +
                tuple(conv_input_length(inp, f, s, p) for inp, f, s, p
                      in zip(input_shape[2:], self.filter_size, self.stride, crop)))


Deconv3DLayer = TransposedConv3DLayer


class Upscale3DLayer(Layer):
    """Master's Upscale3DLayer: 'repeat' or 'dilate' over the three trailing axes."""

    def __init__(self, incoming, scale_factor, mode="repeat", **kwargs):
        super().__init__(incoming, **kwargs)
        self.scale_factor = as_tuple(scale_factor, 3)
        if min(self.scale_factor) < 1:
            raise ValueError(f"Scale factor must be >= 1, not {self.scale_factor}")
        if mode not in {"repeat", "dilate"}:
            raise ValueError(f"Mode must be either 'repeat' or 'dilate', not {mode}")
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        for i in range(3):
            if out[2 + i] is not None:
                out[2 + i] *= self.scale_factor[i]
        return tuple(out)
