"""Recording stand-ins for the layers that only Lasagne master has in ``lasagne.layers``:
FeatureWTALayer, RandomizedRectifierLayer (``rrelu``), StandardizationLayer
(``instance_norm``, ``layer_norm``), LocallyConnected2DLayer, SpatialPyramidPoolingLayer and
the spatial transformers (recorded so that Migrator can name them when it refuses them).
Constructor arguments and output shapes as in Lasagne master."""
from .. import init, nonlinearities
from ..utils import as_tuple
from ._impl import (
    BatchNormLayer,
    BiasLayer,
    Conv2DLayer,
    Layer,
    MergeLayer,
    NonlinearityLayer,
    ScaleLayer,
)

__all__ = [
    "FeatureWTALayer",
    "LocallyConnected2DLayer",
    "RandomizedRectifierLayer",
    "SpatialPyramidPoolingLayer",
    "StandardizationLayer",
    "TPSTransformerLayer",
    "TransformerLayer",
    "Upscale1DLayer",
    "instance_norm",
    "layer_norm",
    "rrelu",
]


class FeatureWTALayer(Layer):
    def __init__(self, incoming, pool_size, axis=1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_size, self.axis = pool_size, axis
        n = self.input_shape[self.axis]
        if n is not None and n % self.pool_size != 0:
            raise ValueError(f"Number of input feature maps ({n}) is not a multiple of the "
                             f"region size (pool_size={self.pool_size})")


class RandomizedRectifierLayer(Layer):
    def __init__(self, incoming, lower=0.3, upper=0.8, shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.lower, self.upper = lower, upper
        if not isinstance(lower > upper, bool):
            raise TypeError("Upper and lower must be numbers")
        if lower > upper:
            raise ValueError("Upper bound for RandomizedRectifierLayer needs to be higher "
                             "than lower bound.")
        nd = len(self.input_shape)
        if shared_axes == "auto":
            self.shared_axes = (0,) + tuple(range(2, nd))
        elif shared_axes == "all":
            self.shared_axes = tuple(range(nd))
        elif isinstance(shared_axes, int):
            self.shared_axes = (shared_axes,)
        else:
            self.shared_axes = tuple(shared_axes)


def rrelu(layer, **kwargs):
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    return RandomizedRectifierLayer(layer, **kwargs)


class StandardizationLayer(Layer):
    def __init__(self, incoming, axes="spatial", epsilon=1e-4, **kwargs):
        super().__init__(incoming, **kwargs)
        nd = len(self.input_shape)
        if axes == "spatial":
            axes = tuple(range(2, nd))
        elif axes == "features":
            axes = tuple(range(1, nd))
        elif isinstance(axes, int):
            axes = (axes,)
        self.axes = tuple(axes)
        self.epsilon = epsilon


def _norm(layer, axes, suffix, learn_scale, learn_bias, kwargs):
    """instance_norm / layer_norm of lasagne/layers/normalization.py (master), layer names
    included: ``<layer>_in`` / ``<layer>_ln``, then ``_scale``, ``_bias``, ``_nonlin``."""
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    if getattr(layer, "b", None) is not None:
        del layer.params[layer.b]
        layer.b = None
    in_name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + suffix)
    layer = StandardizationLayer(layer, axes=axes, name=in_name, **kwargs)
    if learn_scale:
        layer = ScaleLayer(layer, shared_axes="auto", name=in_name and in_name + "_scale")
    if learn_bias:
        layer = BiasLayer(layer, shared_axes="auto", name=in_name and in_name + "_bias")
    if nonlinearity is not None:
        layer = NonlinearityLayer(layer, nonlinearity, name=in_name and in_name + "_nonlin")
    return layer


def instance_norm(layer, learn_scale=True, learn_bias=True, **kwargs):
    return _norm(layer, "spatial", "_in", learn_scale, learn_bias, kwargs)


def layer_norm(layer, **kwargs):
    return _norm(layer, "features", "_ln", True, True, kwargs)


class LocallyConnected2DLayer(Conv2DLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad="same",
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),  # noqa: B008
                 nonlinearity=nonlinearities.rectify, flip_filters=True, channelwise=False,
                 **kwargs):
        self.channelwise = channelwise
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, **kwargs)
        if self.stride != (1, 1):
            raise NotImplementedError("LocallyConnected2DLayer requires stride=1 / (1, 1), but "
                                      f"got {stride!r}.")
        if self.pad != "same":
            raise NotImplementedError(f"LocallyConnected2DLayer requires pad='same', but got {pad!r}.")

    def get_W_shape(self):
        if any(s is None for s in self.input_shape[1:]):
            raise ValueError("A LocallyConnected2DLayer requires a fixed input shape (except "
                             f"for the batch size). Got {self.input_shape!r}.")
        c = self.input_shape[1]
        out = self.get_output_shape_for(self.input_shape)
        if self.channelwise:
            if self.num_filters != c:
                raise ValueError("num_filters and the number of input channels should match "
                                 f"when channelwise is true, but got num_filters={self.num_filters!r} "
                                 f"and {c} input channels")
            return (self.num_filters,) + tuple(self.filter_size) + tuple(out[-2:])
        return (self.num_filters, c) + tuple(self.filter_size) + tuple(out[-2:])


class SpatialPyramidPoolingLayer(Layer):
    def __init__(self, incoming, pool_dims=None, mode="max", implementation="fast",
                 **kwargs):
        if pool_dims is None:
            pool_dims = [4, 2, 1]
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) != 4:
            raise ValueError(f"Tried to create a SPP layer with input shape {self.input_shape!r}. Expected 4 input "
                             "dimensions (batchsize, channels, 2 spatial dimensions).")
        if implementation not in ("fast", "kaiming"):
            raise ValueError("implementation must be 'fast' or 'kaiming'")
        self.mode = mode
        self.implementation = implementation
        self.pool_dims = list(pool_dims)

    def get_output_shape_for(self, input_shape):
        return (input_shape[0], input_shape[1], int(sum(p * p for p in self.pool_dims)))


class TransformerLayer(MergeLayer):
    def __init__(self, incoming, localization_network, downsample_factor=1, border_mode="nearest",
                 **kwargs):
        super().__init__([incoming, localization_network], **kwargs)
        self.downsample_factor = as_tuple(downsample_factor, 2)
        self.border_mode = border_mode

    def get_output_shape_for(self, input_shapes):
        shape = input_shapes[0]
        factors = self.downsample_factor
        return (shape[:2] + tuple(None if s is None else int(s // f)
                                  for s, f in zip(shape[2:], factors)))


class TPSTransformerLayer(TransformerLayer):
    def __init__(self, incoming, localization_network, downsample_factor=1, control_points=16,
                 precompute_grid="auto", border_mode="nearest", **kwargs):
        super().__init__(incoming, localization_network, downsample_factor, border_mode,
                         **kwargs)
        self.control_points = control_points


class SpatialPyramidPoolingDNNLayer(SpatialPyramidPoolingLayer):
    def __init__(self, incoming, pool_dims=None, mode="max", **kwargs):
        if pool_dims is None:
            pool_dims = [4, 2, 1]
        super().__init__(incoming, pool_dims, mode, "kaiming", **kwargs)


class BatchNormDNNLayer(BatchNormLayer):
    """lasagne.layers.dnn.BatchNormDNNLayer: BatchNormLayer's parameters and inference formula,
    axes limited to (0,) or all but the second."""

    def __init__(self, incoming, axes="auto", epsilon=1e-4, alpha=0.1, **kwargs):
        super().__init__(incoming, axes, epsilon, alpha, **kwargs)
        all_but_second = (0,) + tuple(range(2, len(self.input_shape)))
        if tuple(self.axes) not in ((0,), all_but_second):
            raise ValueError("BatchNormDNNLayer only supports normalization across the first "
                             f"axis, or across all but the second axis, got axes={axes!r}")


def batch_norm_dnn(layer, **kwargs):
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    if getattr(layer, "b", None) is not None:
        del layer.params[layer.b]
        layer.b = None
    bn_name = kwargs.pop("name", None) or (getattr(layer, "name", None) and layer.name + "_bn")
    layer = BatchNormDNNLayer(layer, name=bn_name, **kwargs)
    if nonlinearity is not None:
        layer = NonlinearityLayer(layer, nonlinearity, name=bn_name and bn_name + "_nonlin")
    return layer


class Upscale1DLayer(Layer):
    def __init__(self, incoming, scale_factor, mode="repeat", **kwargs):
        super().__init__(incoming, **kwargs)
        self.scale_factor = as_tuple(scale_factor, 1)
        if self.scale_factor[0] < 1:
            raise ValueError(f"Scale factor must be >= 1, not {scale_factor}")
        if mode not in {"repeat", "dilate"}:
            raise ValueError(f"Invalid upsampling mode: {mode}")
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        out = list(input_shape)
        if out[2] is not None:
            out[2] *= self.scale_factor[0]
        return tuple(out)
