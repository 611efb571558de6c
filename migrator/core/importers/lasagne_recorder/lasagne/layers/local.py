"""Stand-in sub-module: re-exports the recording layers."""
from ._impl import *  # noqa: F401,F403
from ._impl import conv_output_length, conv_input_length, pool_output_length  # noqa: F401
