"""Resize family: Lasagne's Upscale2DLayer, Upscale1DLayer and Upscale3DLayer."""
from __future__ import annotations

from .common import Unsupported, input_of_rank, pair, triple
from .registry import converter


@converter("Upscale2DLayer", ops=("Upscale",))
def upscale2d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """repeat / dilate by ``scale_factor``."""
    a = L.get("attrs", {})
    if len(L["output_shape"]) != 4:
        raise Unsupported("not a 2D upscaling")
    mode = a.get("mode", "repeat")
    if mode not in ("repeat", "dilate"):
        raise Unsupported(f"upscale mode {mode!r}")
    return "Upscale", {"scale": pair(a.get("scale_factor"), "scale_factor"), "mode": mode}, {}


@converter("Upscale1DLayer", ops=("Upscale1D",))
def upscale1d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """repeat / dilate along the last axis."""
    a = L.get("attrs", {})
    sf = a.get("scale_factor", 1)
    return "Upscale1D", {"scale": int(sf[0] if isinstance(sf, list) else sf),
                         "mode": a.get("mode", "repeat")}, {}


@converter("Upscale3DLayer", ops=("Upscale3D",))
def upscale3d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """repeat / dilate by ``scale_factor`` over the three trailing axes."""
    a = L.get("attrs", {})
    input_of_rank(in_shapes, 5, "3-D layer")
    mode = a.get("mode", "repeat")
    if mode not in ("repeat", "dilate"):
        raise Unsupported(f"upscale mode {mode!r}")
    return "Upscale3D", {"scale": triple(a.get("scale_factor"), "scale_factor"), "mode": mode}, {}
