"""Shape inference over the canonical IR (source semantics, NCHW).

:func:`infer_shapes` walks a :class:`~migrator.core.ir.Graph` in order and fills every
node's ``out_shapes`` (one tuple per output, batch dimension included).  Any dimension
may be ``None`` (unknown, typically the batch); arithmetic on an unknown dimension gives
an unknown dimension.  A node whose input shape is entirely unknown (after a ``Custom``
layer) gets ``None`` shapes instead of an error.

Inconsistencies that make the network impossible (Eltwise inputs that differ, a Concat
mismatch, a Dense weight that does not match the flattened input, a Conv weight whose
input channels do not match, an impossible Reshape, ...) raise
:class:`~migrator.core.errors.MigratorError` naming the file and the layer.

One module per op family (``conv.py``, ``pool.py``, ... as in :data:`migrator.core.ops.FAMILIES`)
holds the shape rules of its ops (``@shape_rule``, registered in :data:`SHAPE_RULES`) and the
output-size formulas other aspects use (``conv_out_len``, ``pool_out_len``, ``crop_bounds``,
...; see ``docs/semantics.md``); :mod:`.registry` has the registry and the shared helpers.
"""
from __future__ import annotations

from . import (  # noqa: F401  (importing a family module registers its rules)
    activation,
    dense,
    embedding,
    io,
    merge,
    norm,
    recurrent,
    reduce,
)
from .conv import conv_out_len, deconv_out_len, locally_connected_taps
from .embedding import index_inputs
from .infer import infer_shapes, sample_axes, shapes_for_batch
from .layout import crop_bounds, reshape_caffe, slice_bounds
from .merge import crop_slices
from .pool import pool_out_len, spp_fast_geometry, spp_levels, spp_regions
from .registry import SHAPE_RULES, Shape, ShapeContext, shape_rule
from .resize import interp_out_len, unpool_out_size

__all__ = [
    "SHAPE_RULES", "Shape", "ShapeContext", "conv_out_len", "crop_bounds", "crop_slices",
    "deconv_out_len", "index_inputs", "infer_shapes", "interp_out_len", "locally_connected_taps",
    "pool_out_len", "reshape_caffe", "sample_axes", "shape_rule", "shapes_for_batch", "slice_bounds",
    "spp_fast_geometry", "spp_levels", "spp_regions", "unpool_out_size",
]
