"""Stand-in for ``lasagne.nonlinearities``: named functions (never called while recording)."""
from theano import Sym


def sigmoid(x):
    return Sym("sigmoid")


def softmax(x):
    return Sym("softmax")


def tanh(x):
    return Sym("tanh")


class ScaledTanH:
    def __init__(self, scale_in=1, scale_out=1):
        self.scale_in = scale_in
        self.scale_out = scale_out

    def __call__(self, x):
        return Sym("scaled_tanh")


ScaledTanh = ScaledTanH


def rectify(x):
    return Sym("rectify")


class LeakyRectify:
    def __init__(self, leakiness=0.01):
        self.leakiness = leakiness

    def __call__(self, x):
        return Sym("leaky_rectify")


leaky_rectify = LeakyRectify()
very_leaky_rectify = LeakyRectify(1. / 3)


def elu(x):
    return Sym("elu")


class SELU:
    def __init__(self, scale=1, scale_neg=1):
        self.scale, self.scale_neg = scale, scale_neg

    def __call__(self, x):
        return Sym("selu")


selu = SELU(scale=1.0507009873554804934193349852946,
            scale_neg=1.6732632423543772848170429916717)


def softplus(x):
    return Sym("softplus")


def linear(x):
    return x


identity = linear
