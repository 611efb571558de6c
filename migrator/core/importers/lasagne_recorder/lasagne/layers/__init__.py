"""Stand-in for ``lasagne.layers`` (recording only)."""
from . import base, conv, dense, helper, input, merge, noise, normalization, pool, shape, special  # noqa
from ._impl import *
from ._impl import __all__  # noqa: F401
