"""Layout family: Slice, Split, Crop, Flatten, Reshape, Tile, SSD's Permute, ShuffleNet's ShuffleChannel.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

import itertools

from ..registry import layer_handler


@layer_handler("Slice", ops=("Slice",), multi_top=True)
def slice_(b, lp):
    sp = lp.slice_param
    if not len(lp.top):
        raise b.err("Slice layer has no top", lp.name)
    axis = int(sp.slice_dim) if sp.HasField("slice_dim") else int(sp.axis)
    points = [int(p) for p in sp.slice_point]
    if points and len(points) != len(lp.top) - 1:
        raise b.err(f"Slice has {len(points)} slice points for {len(lp.top)} tops (needs "
                    f"{len(lp.top) - 1})", lp.name)
    if any(b >= e for b, e in itertools.pairwise(points)):
        raise b.err(f"slice points {points} are not strictly increasing", lp.name)
    return "Slice", {"axis": axis, "slice_points": points or None}, {}, len(lp.top)


@layer_handler("Split", ops=("Split",), multi_top=True)
def split(b, lp):
    if not len(lp.top):
        raise b.err("Split layer has no top", lp.name)
    return "Split", {}, {}, len(lp.top)


@layer_handler("Crop", ops=("Crop",), bottoms=(2, 2))
def crop(b, lp):
    cp = lp.crop_param
    return "Crop", {"axis": int(cp.axis), "offsets": [int(o) for o in cp.offset]}, {}, 1


@layer_handler("Flatten", ops=("Flatten",))
def flatten(b, lp):
    fp = lp.flatten_param
    return "Flatten", {"axis": int(fp.axis), "end_axis": int(fp.end_axis)}, {}, 1


@layer_handler("Reshape", ops=("Reshape",))
def reshape(b, lp):
    rp = lp.reshape_param
    return "Reshape", {"shape": [int(d) for d in rp.shape.dim], "axis": int(rp.axis),
                       "num_axes": int(rp.num_axes)}, {}, 1


@layer_handler("Tile", ops=("Tile",))
def tile(b, lp):
    tp = lp.tile_param
    if not tp.HasField("tiles") or tp.tiles < 1:
        raise b.err("tile_param.tiles must be given and at least 1", lp.name)
    return "Tile", {"axis": int(tp.axis), "tiles": int(tp.tiles)}, {}, 1


@layer_handler("Permute", ops=("Transpose",), fork="SSD")
def permute(b, lp):
    order = [int(o) for o in lp.permute_param.order]
    if len(set(order)) != len(order):
        raise b.err(f"Permute order {order} repeats an axis", lp.name)
    if not order:
        raise b.err("Permute has no permute_param.order", lp.name)
    # SSD appends the axes the order leaves out, in their order (inputs are 4-d in practice)
    order += [a for a in range(max(4, max(order) + 1)) if a not in order]
    return "Transpose", {"pattern": order}, {}, 1


@layer_handler("ShuffleChannel", ops=("ShuffleChannel",), fork="ShuffleNet")
def shuffle_channel(b, lp):
    g = int(lp.shuffle_channel_param.group)
    if g < 1:
        raise b.err(f"ShuffleChannel group {g} must be >= 1", lp.name)
    return "ShuffleChannel", {"group": g}, {}, 1
