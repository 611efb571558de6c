"""Stand-in sub-module: re-exports the recording layers."""
from ._impl import *
from ._impl import conv_input_length, conv_output_length, pool_output_length  # noqa: F401
from .master_layers import FeatureWTALayer, SpatialPyramidPoolingLayer, Upscale1DLayer  # noqa: F401,E402
from .volumetric import Upscale3DLayer  # noqa: F401,E402
