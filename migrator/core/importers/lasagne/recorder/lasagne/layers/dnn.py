"""Stand-in for ``lasagne.layers.dnn`` (cuDNN layers; flip_filters defaults to False)."""
from .. import init, nonlinearities
from . import _impl
from ._impl import BatchNormLayer, batch_norm  # noqa: F401


class Conv2DDNNLayer(_impl.Conv2DLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad,
                                             untie_biases, W, b, nonlinearity, flip_filters,
                                             **kwargs)


class Pool2DDNNLayer(_impl.Pool2DLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border=True,
                 mode="max", **kwargs):
        if not ignore_border:
            raise NotImplementedError("Pool2DDNNLayer does not support ignore_border=False.")
        super().__init__(incoming, pool_size, stride, pad, True, mode,
                                             **kwargs)


class MaxPool2DDNNLayer(Pool2DDNNLayer):
    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border,
                                                "max", **kwargs)



from .master_layers import (  # noqa: F401
    BatchNormDNNLayer,
    SpatialPyramidPoolingDNNLayer,
    batch_norm_dnn,
)
from .volumetric import Conv3DDNNLayer, MaxPool3DDNNLayer, Pool3DDNNLayer  # noqa: F401
