"""Stand-in for ``lasagne.init``: initializers only fix shapes while recording.

``sample(shape)`` returns small random values (never used to describe the network); the
parameter created from an initializer holds no data (see ``theano.SharedVariable``).
"""
import numpy as np


class Initializer:
    _migrator_initializer = True

    def __call__(self, shape):
        return self.sample(shape)

    def sample(self, shape):
        return np.random.RandomState(0).normal(0, 0.01, size=shape).astype("float32")


class Normal(Initializer):
    def __init__(self, std=0.01, mean=0.0):
        self.std, self.mean = std, mean


class Uniform(Initializer):
    def __init__(self, range=0.01, std=None, mean=0.0):
        self.range, self.std, self.mean = range, std, mean


class Glorot(Initializer):
    def __init__(self, initializer=None, gain=1.0, c01b=False):
        self.initializer, self.gain, self.c01b = initializer, gain, c01b


class GlorotNormal(Glorot):
    def __init__(self, gain=1.0, c01b=False):
        Glorot.__init__(self, Normal, gain, c01b)


class GlorotUniform(Glorot):
    def __init__(self, gain=1.0, c01b=False):
        Glorot.__init__(self, Uniform, gain, c01b)


class He(Initializer):
    def __init__(self, initializer=None, gain=1.0, c01b=False):
        self.initializer, self.gain, self.c01b = initializer, gain, c01b


class HeNormal(He):
    def __init__(self, gain=1.0, c01b=False):
        He.__init__(self, Normal, gain, c01b)


class HeUniform(He):
    def __init__(self, gain=1.0, c01b=False):
        He.__init__(self, Uniform, gain, c01b)


class Constant(Initializer):
    def __init__(self, val=0.0):
        self.val = val

    def sample(self, shape):
        return np.full(shape, self.val, dtype="float32")


class Sparse(Initializer):
    def __init__(self, sparsity=0.1, std=0.01):
        self.sparsity, self.std = sparsity, std


class Orthogonal(Initializer):
    def __init__(self, gain=1.0):
        self.gain = gain
