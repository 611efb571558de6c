"""Stand-in for ``lasagne.layers`` (recording only)."""
from ._impl import *  # noqa: F401,F403
from ._impl import __all__  # noqa: F401
from . import base, helper, input, dense, conv, pool, normalization, merge, shape, noise, special  # noqa
