"""Stand-in for ``lasagne.layers.corrmm`` (flip_filters defaults to False)."""
from .. import init, nonlinearities
from . import _impl


class Conv2DMMLayer(_impl.Conv2DLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad,
                                            untie_biases, W, b, nonlinearity, flip_filters,
                                            **kwargs)
