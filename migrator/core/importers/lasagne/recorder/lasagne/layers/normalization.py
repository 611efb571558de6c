"""Stand-in sub-module: re-exports the recording layers."""
from ._impl import *
from ._impl import conv_input_length, conv_output_length, pool_output_length  # noqa: F401
from .master_layers import StandardizationLayer, instance_norm, layer_norm  # noqa: F401,E402
