"""Recording implementations of ``lasagne.layers`` (Lasagne 0.2 semantics).

Layers keep what Lasagne keeps (``input_layer``/``input_layers``, ``input_shape``,
``params`` = OrderedDict parameter -> set of tags in ``add_param`` order, ``name`` and the
constructor's settings as attributes) and compute output shapes.  ``get_output_for`` is
never called by the recorder.
"""
from collections import OrderedDict, deque

import numpy as np
import theano
from theano import Sym

from .. import init, nonlinearities
from ..utils import as_tuple, create_param, int_types

__all__ = [
    "BaseConvLayer",
    "BatchNormLayer",
    "BiasLayer",
    "ConcatLayer",
    "Conv1DLayer",
    "Conv2DLayer",
    "Deconv2DLayer",
    "DenseLayer",
    "DilatedConv2DLayer",
    "DimshuffleLayer",
    "DropoutLayer",
    "ElemwiseMergeLayer",
    "ElemwiseSumLayer",
    "ExpressionLayer",
    "FeaturePoolLayer",
    "FlattenLayer",
    "GaussianNoiseLayer",
    "GlobalPoolLayer",
    "InputLayer",
    "InverseLayer",
    "Layer",
    "LocalResponseNormalization2DLayer",
    "MaxPool1DLayer",
    "MaxPool2DLayer",
    "MergeLayer",
    "NINLayer",
    "NonlinearityLayer",
    "PadLayer",
    "ParametricRectifierLayer",
    "Pool1DLayer",
    "Pool2DLayer",
    "ReshapeLayer",
    "ScaleLayer",
    "SliceLayer",
    "TransposedConv2DLayer",
    "Upscale2DLayer",
    "batch_norm",
    "concat",
    "count_params",
    "dimshuffle",
    "dropout",
    "flatten",
    "get_all_layers",
    "get_all_param_values",
    "get_all_params",
    "get_output",
    "get_output_shape",
    "pad",
    "prelu",
    "reshape",
    "set_all_param_values",
]


# ======================================================================================
# base classes
# ======================================================================================
class Layer:
    """Base class: one input layer (or a shape tuple), parameters added by ``add_param``."""

    def __init__(self, incoming, name=None):
        if isinstance(incoming, tuple):
            self.input_shape = incoming
            self.input_layer = None
        else:
            self.input_shape = incoming.output_shape
            self.input_layer = incoming
        self.name = name
        self.params = OrderedDict()
        self.get_output_kwargs = []
        if any(d is not None and d <= 0 for d in self.input_shape):
            raise ValueError("Cannot create Layer with a non-positive input_shape dimension. "
                             "input_shape=%r, self.name=%r" % (self.input_shape, self.name))

    @property
    def output_shape(self):
        shape = self.get_output_shape_for(self.input_shape)
        if any(isinstance(s, Sym) for s in shape):
            raise ValueError("%s returned a symbolic output shape from its "
                             "get_output_shape_for(input_shape) method" % self.__class__.__name__)
        return shape

    def get_params(self, unwrap_shared=True, **tags):
        result = list(self.params.keys())
        only = set(tag for tag, value in tags.items() if value)
        if only:
            result = [p for p in result if not (only - self.params[p])]
        exclude = set(tag for tag, value in tags.items() if not value)
        if exclude:
            result = [p for p in result if not (self.params[p] & exclude)]
        return result

    def get_output_shape_for(self, input_shape):
        return input_shape

    def get_output_for(self, input, **kwargs):
        raise NotImplementedError

    def add_param(self, spec, shape, name=None, **tags):
        if name is not None and self.name is not None:
            name = "%s.%s" % (self.name, name)
        param = create_param(spec, shape, name)
        if not isinstance(param, theano.SharedVariable):
            return param
        tags["trainable"] = tags.get("trainable", True)
        tags["regularizable"] = tags.get("regularizable", True)
        self.params[param] = set(tag for tag, value in tags.items() if value)
        return param


class MergeLayer(Layer):
    """Base class for layers with several inputs (``incomings``)."""

    def __init__(self, incomings, name=None):
        self.input_shapes = [inc if isinstance(inc, tuple) else inc.output_shape
                             for inc in incomings]
        self.input_layers = [None if isinstance(inc, tuple) else inc for inc in incomings]
        self.name = name
        self.params = OrderedDict()
        self.get_output_kwargs = []

    @Layer.output_shape.getter
    def output_shape(self):
        shape = self.get_output_shape_for(self.input_shapes)
        if any(isinstance(s, Sym) for s in shape):
            raise ValueError("%s returned a symbolic output shape" % self.__class__.__name__)
        return shape

    def get_output_shape_for(self, input_shapes):
        raise NotImplementedError

    def get_output_for(self, inputs, **kwargs):
        raise NotImplementedError


class InputLayer(Layer):
    def __init__(self, shape, input_var=None, name=None, **kwargs):
        self.shape = tuple(shape)
        if any(d is not None and d <= 0 for d in self.shape):
            raise ValueError("Cannot create InputLayer with a non-positive shape "
                             "dimension. shape=%r, self.name=%r" % (self.shape, name))
        self.input_var = input_var if input_var is not None else Sym("input")
        self.name = name
        self.params = OrderedDict()
        self.input_layer = None
        self.input_shape = self.shape

    @Layer.output_shape.getter
    def output_shape(self):
        return self.shape


# ======================================================================================
# helpers (lasagne.layers.helper)
# ======================================================================================
def get_all_layers(layer, treat_as_input=None):
    """Every layer below ``layer`` (or a list of layers), inputs before the layers using
    them; a merge layer's inputs in ``incomings`` order (depth first)."""
    try:
        queue = deque(layer)
    except TypeError:
        queue = deque([layer])
    seen, done, result = set(), set(), []
    if treat_as_input is not None:
        seen.update(treat_as_input)
    while queue:
        cur = queue[0]
        if cur is None:
            queue.popleft()
        elif cur not in seen:
            seen.add(cur)
            if hasattr(cur, "input_layers"):
                queue.extendleft(reversed(cur.input_layers))
            elif hasattr(cur, "input_layer"):
                queue.appendleft(cur.input_layer)
        else:
            queue.popleft()
            if cur not in done:
                result.append(cur)
                done.add(cur)
    return result


def get_all_params(layer, unwrap_shared=True, **tags):
    out, seen = [], set()
    for lyr in get_all_layers(layer):
        for p in lyr.get_params(unwrap_shared=unwrap_shared, **tags):
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def count_params(layer, **tags):
    return int(sum(int(np.prod(p.get_value(borrow=True).shape))
                   for p in get_all_params(layer, **tags)))


def get_all_param_values(layer, **tags):
    return [p.get_value() for p in get_all_params(layer, **tags)]


def set_all_param_values(layer, values, **tags):
    params = get_all_params(layer, **tags)
    if len(params) != len(values):
        raise ValueError("mismatch: got %d values to set %d parameters" % (len(values), len(params)))
    for p, v in zip(params, values):
        v = np.asarray(v)
        if p.get_value(borrow=True).shape != v.shape:
            raise ValueError("mismatch: parameter has shape %r but value to set has shape %r"
                             % (p.get_value(borrow=True).shape, v.shape))
        p.set_value(v)


def get_output(layer_or_layers, inputs=None, **kwargs):
    return Sym("lasagne.layers.get_output()")


def get_output_shape(layer_or_layers, input_shapes=None):
    if isinstance(layer_or_layers, (list, tuple)):
        return [lyr.output_shape for lyr in layer_or_layers]
    return layer_or_layers.output_shape


# ======================================================================================
# dense
# ======================================================================================
def _nl(nonlinearity):
    return nonlinearities.identity if nonlinearity is None else nonlinearity


class DenseLayer(Layer):
    def __init__(self, incoming, num_units, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, num_leading_axes=1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = _nl(nonlinearity)
        self.num_units = num_units
        if num_leading_axes >= len(self.input_shape):
            raise ValueError("Got num_leading_axes=%d for a %d-dimensional input, leaving no "
                             "trailing axes for the dot product." % (num_leading_axes,
                                                                     len(self.input_shape)))
        elif num_leading_axes < -len(self.input_shape):
            raise ValueError("Got num_leading_axes=%d for a %d-dimensional input, requesting "
                             "more trailing axes than there are input dimensions."
                             % (num_leading_axes, len(self.input_shape)))
        self.num_leading_axes = num_leading_axes
        if any(s is None for s in self.input_shape[num_leading_axes:]):
            raise ValueError("A DenseLayer requires a fixed input shape (except for the leading "
                             "axes). Got %r for num_leading_axes=%d." % (self.input_shape,
                                                                        self.num_leading_axes))
        num_inputs = int(np.prod(self.input_shape[num_leading_axes:]))
        self.W = self.add_param(W, (num_inputs, num_units), name="W")
        self.b = None if b is None else self.add_param(b, (num_units,), name="b",
                                                        regularizable=False)

    def get_output_shape_for(self, input_shape):
        return tuple(input_shape[:self.num_leading_axes]) + (self.num_units,)


class NINLayer(Layer):
    def __init__(self, incoming, num_units, untie_biases=False, W=init.GlorotUniform(),
                 b=init.Constant(0.), nonlinearity=nonlinearities.rectify, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = _nl(nonlinearity)
        self.num_units = num_units
        self.untie_biases = untie_biases
        num_input_channels = self.input_shape[1]
        self.W = self.add_param(W, (num_input_channels, num_units), name="W")
        if b is None:
            self.b = None
        else:
            bshape = (num_units,) + tuple(self.output_shape[2:]) if untie_biases else (num_units,)
            self.b = self.add_param(b, bshape, name="b", regularizable=False)

    def get_output_shape_for(self, input_shape):
        return (input_shape[0], self.num_units) + tuple(input_shape[2:])


# ======================================================================================
# convolution
# ======================================================================================
def conv_output_length(input_length, filter_size, stride, pad=0):
    if input_length is None:
        return None
    if pad == "valid":
        out = input_length - filter_size + 1
    elif pad == "full":
        out = input_length + filter_size - 1
    elif pad == "same":
        out = input_length
    elif isinstance(pad, int_types):
        out = input_length + 2 * pad - filter_size + 1
    else:
        raise ValueError(f"Invalid pad: {pad}")
    return (out + stride - 1) // stride


def conv_input_length(output_length, filter_size, stride, pad=0):
    if output_length is None:
        return None
    if pad == "valid":
        pad = 0
    elif pad == "full":
        pad = filter_size - 1
    elif pad == "same":
        pad = filter_size // 2
    if not isinstance(pad, int_types):
        raise ValueError(f"Invalid pad: {pad}")
    return (output_length - 1) * stride - 2 * pad + filter_size


class BaseConvLayer(Layer):
    def __init__(self, incoming, num_filters, filter_size, stride=1, pad=0, untie_biases=False,
                 W=init.GlorotUniform(), b=init.Constant(0.), nonlinearity=nonlinearities.rectify,
                 flip_filters=True, n=None, num_groups=1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = _nl(nonlinearity)
        if n is None:
            n = len(self.input_shape) - 2
        elif n != len(self.input_shape) - 2:
            raise ValueError("Tried to create a %dD convolution layer with input shape %r. "
                             "Expected %d input dimensions (batchsize, channels, %d spatial "
                             "dimensions)." % (n, self.input_shape, n + 2, n))
        self.n = n
        self.num_filters = num_filters
        self.filter_size = as_tuple(filter_size, n, int_types)
        self.flip_filters = flip_filters
        self.stride = as_tuple(stride, n, int_types)
        self.untie_biases = untie_biases
        if pad == "same":
            if any(s % 2 == 0 for s in self.filter_size):
                raise NotImplementedError("`same` padding requires odd filter size.")
        if pad == "valid":
            self.pad = as_tuple(0, n)
        elif pad in ("full", "same"):
            self.pad = pad
        else:
            self.pad = as_tuple(pad, n, int_types)
        if (num_groups <= 0 or self.num_filters % num_groups != 0
                or self.input_shape[1] % num_groups != 0):
            raise ValueError("num_groups (here: %d) must be positive and evenly divide the "
                             "number of input and output channels (here: %d and %d)"
                             % (num_groups, self.input_shape[1], self.num_filters))
        self.num_groups = num_groups
        self.W = self.add_param(W, self.get_W_shape(), name="W")
        if b is None:
            self.b = None
        else:
            bshape = ((num_filters,) + tuple(self.output_shape[2:]) if untie_biases
                      else (num_filters,))
            self.b = self.add_param(b, bshape, name="b", regularizable=False)

    def get_W_shape(self):
        num_input_channels = self.input_shape[1]
        return (self.num_filters, num_input_channels // self.num_groups) + self.filter_size

    def get_output_shape_for(self, input_shape):
        pad = self.pad if isinstance(self.pad, tuple) else (self.pad,) * self.n
        batchsize = input_shape[0]
        return ((batchsize, self.num_filters) +
                tuple(conv_output_length(inp, flt, s, p) for inp, flt, s, p
                      in zip(input_shape[2:], self.filter_size, self.stride, pad)))


class Conv1DLayer(BaseConvLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=1, pad=0, untie_biases=False,
                 W=init.GlorotUniform(), b=init.Constant(0.), nonlinearity=nonlinearities.rectify,
                 flip_filters=True, convolution=None, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad,
                                          untie_biases, W, b, nonlinearity, flip_filters, n=1,
                                          **kwargs)
        self.convolution = convolution


class Conv2DLayer(BaseConvLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=True, convolution=None,
                 **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad,
                                          untie_biases, W, b, nonlinearity, flip_filters, n=2,
                                          **kwargs)
        self.convolution = convolution


class TransposedConv2DLayer(BaseConvLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), crop=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, output_size=None,
                 **kwargs):
        self.output_size = None if output_size is None else as_tuple(output_size, 2, int_types)
        super().__init__(incoming, num_filters, filter_size, stride,
                                                    crop, untie_biases, W, b, nonlinearity,
                                                    flip_filters, n=2, **kwargs)
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


Deconv2DLayer = TransposedConv2DLayer


class DilatedConv2DLayer(BaseConvLayer):
    def __init__(self, incoming, num_filters, filter_size, dilation=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        self.dilation = as_tuple(dilation, 2, int_types)
        super().__init__(incoming, num_filters, filter_size, 1, pad,
                                                 untie_biases, W, b, nonlinearity, flip_filters,
                                                 n=2, **kwargs)

    def get_W_shape(self):
        return (self.input_shape[1], self.num_filters) + self.filter_size

    def get_output_shape_for(self, input_shape):
        pad = self.pad if isinstance(self.pad, tuple) else (self.pad,) * self.n
        return ((input_shape[0], self.num_filters) +
                tuple(conv_output_length(inp, (f - 1) * d + 1, 1, p) for inp, f, d, p
                      in zip(input_shape[2:], self.filter_size, self.dilation, pad)))


# ======================================================================================
# normalization, nonlinearity, scale/bias, special
# ======================================================================================
class BatchNormLayer(Layer):
    def __init__(self, incoming, axes="auto", epsilon=1e-4, alpha=0.1, beta=init.Constant(0),
                 gamma=init.Constant(1), mean=init.Constant(0), inv_std=init.Constant(1),
                 **kwargs):
        super().__init__(incoming, **kwargs)
        if axes == "auto":
            axes = (0,) + tuple(range(2, len(self.input_shape)))
        elif isinstance(axes, int_types):
            axes = (axes,)
        self.axes = axes
        self.epsilon = epsilon
        self.alpha = alpha
        shape = [size for axis, size in enumerate(self.input_shape) if axis not in self.axes]
        if any(size is None for size in shape):
            raise ValueError("BatchNormLayer needs specified input sizes for all axes not "
                             "normalized over.")
        self.beta = None if beta is None else self.add_param(beta, shape, "beta", trainable=True,
                                                             regularizable=False)
        self.gamma = None if gamma is None else self.add_param(gamma, shape, "gamma",
                                                               trainable=True,
                                                               regularizable=True)
        self.mean = self.add_param(mean, shape, "mean", trainable=False, regularizable=False)
        self.inv_std = self.add_param(inv_std, shape, "inv_std", trainable=False,
                                      regularizable=False)


def batch_norm(layer, **kwargs):
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    if hasattr(layer, "b") and layer.b is not None:
        del layer.params[layer.b]
        layer.b = None
    bn_name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + "_bn")
    layer = BatchNormLayer(layer, name=bn_name, **kwargs)
    if nonlinearity is not None:
        nonlin_name = bn_name and bn_name + "_nonlin"
        layer = NonlinearityLayer(layer, nonlinearity, name=nonlin_name)
    return layer


class LocalResponseNormalization2DLayer(Layer):
    def __init__(self, incoming, alpha=1e-4, k=2, beta=0.75, n=5, **kwargs):
        super().__init__(incoming, **kwargs)
        self.alpha, self.k, self.beta, self.n = alpha, k, beta, n
        if n % 2 == 0:
            raise NotImplementedError("Only works with odd n")


class NonlinearityLayer(Layer):
    def __init__(self, incoming, nonlinearity=nonlinearities.rectify, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = _nl(nonlinearity)


def _shared_axes(shared_axes, ndim):
    if shared_axes == "auto":
        return (0,) + tuple(range(2, ndim))
    if shared_axes == "all":
        return tuple(range(ndim))
    if isinstance(shared_axes, int_types):
        return (shared_axes,)
    return tuple(shared_axes)


class BiasLayer(Layer):
    def __init__(self, incoming, b=init.Constant(0), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes = _shared_axes(shared_axes, len(self.input_shape))
        if b is None:
            self.b = None
        else:
            shape = [size for axis, size in enumerate(self.input_shape)
                     if axis not in self.shared_axes]
            if any(size is None for size in shape):
                raise ValueError("BiasLayer needs specified input sizes for all axes that biases "
                                 "are not shared over.")
            self.b = self.add_param(b, shape, "b", regularizable=False)


class ScaleLayer(Layer):
    def __init__(self, incoming, scales=init.Constant(1), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes = _shared_axes(shared_axes, len(self.input_shape))
        shape = [size for axis, size in enumerate(self.input_shape)
                 if axis not in self.shared_axes]
        if any(size is None for size in shape):
            raise ValueError("ScaleLayer needs specified input sizes for all axes that scales "
                             "are not shared over.")
        self.scales = self.add_param(scales, shape, "scales", regularizable=False)


class ParametricRectifierLayer(Layer):
    def __init__(self, incoming, alpha=init.Constant(0.25), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes = _shared_axes(shared_axes, len(self.input_shape))
        shape = [size for axis, size in enumerate(self.input_shape)
                 if axis not in self.shared_axes]
        if any(size is None for size in shape):
            raise ValueError("ParametricRectifierLayer needs input sizes for all axes that "
                             "alpha's are not shared over.")
        self.alpha = self.add_param(alpha, shape, name="alpha", regularizable=False)


def prelu(layer, **kwargs):
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + "_prelu")
    return ParametricRectifierLayer(layer, name=name, **kwargs)


class ExpressionLayer(Layer):
    def __init__(self, incoming, function, output_shape=None, **kwargs):
        super().__init__(incoming, **kwargs)
        if output_shape is None:
            self._output_shape = None
        elif output_shape == "auto":
            self._output_shape = "auto"
        elif hasattr(output_shape, "__call__"):
            self.get_output_shape_for = output_shape
        else:
            self._output_shape = tuple(output_shape)
        self.function = function

    def get_output_shape_for(self, input_shape):
        if self._output_shape is None or self._output_shape == "auto":
            return input_shape
        return self._output_shape


class InverseLayer(MergeLayer):
    def __init__(self, incoming, layer, **kwargs):
        super().__init__([incoming, layer, layer.input_layer], **kwargs)

    def get_output_shape_for(self, input_shapes):
        return input_shapes[2]


# ======================================================================================
# pooling
# ======================================================================================
def pool_output_length(input_length, pool_size, stride, pad, ignore_border):
    if input_length is None or pool_size is None:
        return None
    if ignore_border:
        output_length = input_length + 2 * pad - pool_size + 1
        output_length = (output_length + stride - 1) // stride
    else:
        assert pad == 0
        if stride >= pool_size:
            output_length = (input_length + stride - 1) // stride
        else:
            output_length = max(0, (input_length - pool_size + stride - 1) // stride) + 1
    return output_length


class Pool1DLayer(Layer):
    def __init__(self, incoming, pool_size, stride=None, pad=0, ignore_border=True, mode="max",
                 **kwargs):
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) != 3:
            raise ValueError("Tried to create a 1D pooling layer with input shape %r. Expected "
                             "3 input dimensions (batchsize, channels, 1 spatial dimensions)."
                             % (self.input_shape,))
        self.pool_size = as_tuple(pool_size, 1)
        self.stride = self.pool_size if stride is None else as_tuple(stride, 1)
        self.pad = as_tuple(pad, 1)
        self.ignore_border = ignore_border
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        out[-1] = pool_output_length(input_shape[-1], self.pool_size[0], self.stride[0],
                                     self.pad[0], self.ignore_border)
        return tuple(out)


class Pool2DLayer(Layer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border=True,
                 mode="max", **kwargs):
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) != 4:
            raise ValueError("Tried to create a 2D pooling layer with input shape %r. Expected "
                             "4 input dimensions (batchsize, channels, 2 spatial dimensions)."
                             % (self.input_shape,))
        self.pool_size = as_tuple(pool_size, 2)
        self.stride = self.pool_size if stride is None else as_tuple(stride, 2)
        self.pad = as_tuple(pad, 2)
        self.ignore_border = ignore_border
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        for i in (0, 1):
            out[2 + i] = pool_output_length(input_shape[2 + i], self.pool_size[i],
                                            self.stride[i], self.pad[i], self.ignore_border)
        return tuple(out)


class MaxPool1DLayer(Pool1DLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=0, ignore_border=True, **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border,
                                             mode="max", **kwargs)


class MaxPool2DLayer(Pool2DLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border,
                                             mode="max", **kwargs)


class GlobalPoolLayer(Layer):
    def __init__(self, incoming, pool_function=None, **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_function = theano.tensor.mean if pool_function is None else pool_function

    def get_output_shape_for(self, input_shape):
        return tuple(input_shape[:2])


class FeaturePoolLayer(Layer):
    def __init__(self, incoming, pool_size, axis=1, pool_function=None, **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_size, self.axis = pool_size, axis
        self.pool_function = theano.tensor.max if pool_function is None else pool_function
        num_feature_maps = self.input_shape[self.axis]
        if num_feature_maps % self.pool_size != 0:
            raise ValueError("Number of input feature maps (%d) is not a multiple of the pool "
                             "size (pool_size=%d)" % (num_feature_maps, self.pool_size))

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        out[self.axis] = input_shape[self.axis] // self.pool_size
        return tuple(out)


class Upscale2DLayer(Layer):
    def __init__(self, incoming, scale_factor, mode="repeat", **kwargs):
        super().__init__(incoming, **kwargs)
        self.scale_factor = as_tuple(scale_factor, 2)
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        for i in (0, 1):
            if out[2 + i] is not None:
                out[2 + i] *= self.scale_factor[i]
        return tuple(out)


# ======================================================================================
# merge
# ======================================================================================
def _merge_shapes(input_shapes, axis_skip=None):
    ndim = len(input_shapes[0])
    if any(len(s) != ndim for s in input_shapes):
        raise ValueError("Mismatch: input shapes must have the same number of dimensions: %r"
                         % (input_shapes,))
    out = []
    for ax in range(ndim):
        sizes = [s[ax] for s in input_shapes]
        known = [x for x in sizes if x is not None]
        if ax == axis_skip:
            out.append(None if len(known) < len(sizes) else sum(known))
            continue
        if known and any(k != known[0] for k in known):
            raise ValueError("Mismatch: input shapes must be the same except in the "
                             "concatenation axis: %r" % (input_shapes,))
        out.append(known[0] if known else None)
    return tuple(out)


def autocrop_array_shapes(input_shapes, cropping):
    """Lasagne master's merge.autocrop_array_shapes: cropped axes take the smallest size."""
    if cropping is None:
        return input_shapes
    ndim = len(input_shapes[0])
    if not all(len(sh) == ndim for sh in input_shapes):
        raise ValueError(f"Not all inputs are of the same dimensionality. Got {len(input_shapes)} inputs of "
                         f"dimensionalities {[len(sh) for sh in input_shapes]}.")
    cropping = list(cropping) + [None] * (ndim - len(cropping))
    result = []
    for sh, cr in zip(zip(*input_shapes), cropping):
        if cr is None:
            result.append(sh)
        elif cr in ("lower", "center", "upper"):
            m = None if any(x is None for x in sh) else min(sh)
            result.append([m] * len(sh))
        else:
            raise ValueError(f"Unknown crop mode '{cr}'")
    return [tuple(sh) for sh in zip(*result)]


class ElemwiseMergeLayer(MergeLayer):
    def __init__(self, incomings, merge_function, cropping=None, **kwargs):
        super().__init__(incomings, **kwargs)
        self.merge_function = merge_function
        self.cropping = cropping

    def get_output_shape_for(self, input_shapes):
        return _merge_shapes(autocrop_array_shapes(input_shapes, self.cropping))


class ElemwiseSumLayer(ElemwiseMergeLayer):
    def __init__(self, incomings, coeffs=1, cropping=None, **kwargs):
        super().__init__(incomings, theano.tensor.add, cropping=cropping,
                                               **kwargs)
        if isinstance(coeffs, list):
            if len(coeffs) != len(incomings):
                raise ValueError("Mismatch: got %d coeffs for %d incomings"
                                 % (len(coeffs), len(incomings)))
        else:
            coeffs = [coeffs] * len(incomings)
        self.coeffs = coeffs


class ConcatLayer(MergeLayer):
    def __init__(self, incomings, axis=1, cropping=None, **kwargs):
        super().__init__(incomings, **kwargs)
        self.axis = axis
        self.cropping = cropping

    def get_output_shape_for(self, input_shapes):
        ax = self.axis % len(input_shapes[0])
        return _merge_shapes(autocrop_array_shapes(input_shapes, self.cropping), axis_skip=ax)


concat = ConcatLayer


# ======================================================================================
# noise, shape
# ======================================================================================
class DropoutLayer(Layer):
    def __init__(self, incoming, p=0.5, rescale=True, shared_axes=(), **kwargs):
        super().__init__(incoming, **kwargs)
        self.p = p
        self.rescale = rescale
        self.shared_axes = tuple(shared_axes)


dropout = DropoutLayer


class GaussianNoiseLayer(Layer):
    def __init__(self, incoming, sigma=0.1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.sigma = sigma


class FlattenLayer(Layer):
    def __init__(self, incoming, outdim=2, **kwargs):
        super().__init__(incoming, **kwargs)
        self.outdim = outdim
        if outdim < 1:
            raise ValueError("Dim must be >0, was %i" % outdim)

    def get_output_shape_for(self, input_shape):
        to_flatten = input_shape[self.outdim - 1:]
        if any(s is None for s in to_flatten):
            flattened = None
        else:
            flattened = int(np.prod(to_flatten))
        return tuple(input_shape[:self.outdim - 1]) + (flattened,)


flatten = FlattenLayer


class ReshapeLayer(Layer):
    def __init__(self, incoming, shape, **kwargs):
        super().__init__(incoming, **kwargs)
        shape = tuple(shape)
        for s in shape:
            if isinstance(s, int_types):
                if s == 0 or s < -1:
                    raise ValueError("`shape` integers must be positive or -1")
            elif isinstance(s, list):
                if len(s) != 1 or not isinstance(s[0], int_types) or s[0] < 0:
                    raise ValueError("`shape` input references must be single-element lists "
                                     "of int >= 0")
            elif isinstance(s, Sym):
                pass
            else:
                raise ValueError("`shape` must be a tuple of int and/or [int]")
        if sum(s == -1 for s in shape) > 1:
            raise ValueError("`shape` cannot contain multiple -1")
        self.shape = shape
        self.get_output_shape_for(self.input_shape)

    def get_output_shape_for(self, input_shape, **kwargs):
        out, refs = [], set()
        for s in self.shape:
            if isinstance(s, list):
                if s[0] >= len(input_shape):
                    raise ValueError("specification contains [%d], but input shape has %d "
                                     "dimensions only" % (s[0], len(input_shape)))
                refs.add(s[0])
                out.append(input_shape[s[0]])
            elif isinstance(s, Sym):
                out.append(None)
            else:
                out.append(int(s))
        # dimensions copied by reference cancel out of the size balance
        rest_in = [d for i, d in enumerate(input_shape) if i not in refs]
        rest_out = [d for d, s in zip(out, self.shape) if not isinstance(s, list) and d != -1]
        in_size = None if None in rest_in else int(np.prod(rest_in))
        out_size = None if None in rest_out else int(np.prod(rest_out))
        if -1 in out:
            k = out.index(-1)
            out[k] = None if in_size is None or out_size is None else in_size // out_size
            out_size = None if out[k] is None else out_size * out[k]
        if in_size is not None and out_size is not None and in_size != out_size:
            raise ValueError("%s cannot be reshaped to specification %s. The total size "
                             "mismatches." % (input_shape, self.shape))
        return tuple(out)


reshape = ReshapeLayer


class DimshuffleLayer(Layer):
    def __init__(self, incoming, pattern, **kwargs):
        super().__init__(incoming, **kwargs)
        used = set()
        for p in pattern:
            if isinstance(p, int_types):
                if p in used:
                    raise ValueError(f"pattern contains dimension {p} more than once")
                used.add(p)
            elif p != "x":
                raise ValueError("pattern should only contain dimension indices or 'x', not "
                                 f"{p}")
        self.pattern = pattern
        self.get_output_shape_for(self.input_shape)

    def get_output_shape_for(self, input_shape):
        output_shape = []
        dims_used = [False] * len(input_shape)
        for p in self.pattern:
            if isinstance(p, int_types):
                if p < 0 or p >= len(input_shape):
                    raise ValueError(f"pattern contains {p}, but input shape has {len(input_shape)} dimensions "
                                     "only")
                output_shape.append(input_shape[p])
                dims_used[p] = True
            else:
                output_shape.append(1)
        for i, (d, used) in enumerate(zip(input_shape, dims_used)):
            if not used and d != 1 and d is not None:
                raise ValueError(f"pattern attempted to collapse dimension {i} of size {d}; "
                                 "dimensions with size != 1/None are not broadcastable and "
                                 "cannot be collapsed")
        return tuple(output_shape)


dimshuffle = DimshuffleLayer


class PadLayer(Layer):
    def __init__(self, incoming, width, val=0, batch_ndim=2, **kwargs):
        super().__init__(incoming, **kwargs)
        self.width = width
        self.val = val
        self.batch_ndim = batch_ndim

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        if isinstance(self.width, int_types):
            widths = [self.width] * (len(input_shape) - self.batch_ndim)
        else:
            widths = self.width
        for k, w in enumerate(widths):
            if output_shape[k + self.batch_ndim] is None:
                continue
            try:
                l, r = w
            except TypeError:
                l = r = w
            output_shape[k + self.batch_ndim] += l + r
        return tuple(output_shape)


pad = PadLayer


class SliceLayer(Layer):
    def __init__(self, incoming, indices, axis=-1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.slice = indices
        self.axis = axis

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        if isinstance(self.slice, int_types):
            del output_shape[self.axis]
        elif input_shape[self.axis] is not None:
            output_shape[self.axis] = len(range(*self.slice.indices(input_shape[self.axis])))
        else:
            output_shape[self.axis] = None
        return tuple(output_shape)
