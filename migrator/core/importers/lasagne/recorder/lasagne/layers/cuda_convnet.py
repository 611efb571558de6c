"""Stand-in for ``lasagne.layers.cuda_convnet`` (bc01 mode only: dimshuffle=True)."""
from .. import init, nonlinearities
from . import _impl


class Conv2DCCLayer(_impl.Conv2DLayer):
    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=None, b=init.Constant(0.),
                 nonlinearity=nonlinearities.rectify, dimshuffle=True, flip_filters=False,
                 partial_sum=1, **kwargs):
        if not dimshuffle:
            raise NotImplementedError("Migrator records Conv2DCCLayer only with dimshuffle=True "
                                      "(bc01 layout)")
        self.dimshuffle = dimshuffle
        super().__init__(incoming, num_filters, filter_size, stride, pad,
                                            untie_biases, W or init.GlorotUniform(), b,
                                            nonlinearity, flip_filters, **kwargs)


class MaxPool2DCCLayer(_impl.Pool2DLayer):
    def __init__(self, incoming, pool_size, stride=None, ignore_border=False, dimshuffle=True,
                 **kwargs):
        if not dimshuffle:
            raise NotImplementedError("Migrator records MaxPool2DCCLayer only with "
                                      "dimshuffle=True")
        self.dimshuffle = dimshuffle
        super().__init__(incoming, pool_size, stride, (0, 0),
                                               ignore_border, "max", **kwargs)
