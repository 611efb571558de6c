"""Stand-in for ``lasagne.layers`` (recording only)."""
from . import base, conv, dense, helper, input, merge, noise, normalization, pool, shape, special  # noqa
from . import embedding, recurrent, volumetric  # noqa
from ._impl import *
from ._impl import __all__ as _impl_all
from .recurrent import *
from .recurrent import __all__ as _recurrent_all
from .volumetric import *
from .volumetric import __all__ as _volumetric_all
from .master_layers import *  # noqa: E402
from .master_layers import __all__ as _master_all

__all__ = list(_impl_all) + list(_recurrent_all) + list(_volumetric_all) + list(_master_all)
