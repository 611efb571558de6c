"""Layout family: PadLayer, FlattenLayer, ReshapeLayer, DimshuffleLayer and SliceLayer."""
from __future__ import annotations

from .common import Unsupported, ndim
from .registry import converter


@converter("PadLayer", ops=("Pad",))
def pad(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Constant padding of the axes after ``batch_ndim``."""
    a = L.get("attrs", {})
    nd, bnd = ndim(in_shapes), int(a.get("batch_ndim", 2))
    w = a.get("width", 0)
    widths = [w] * (nd - bnd) if isinstance(w, (int, float)) else list(w)
    pads = []
    for x in widths:
        pads.append((int(x[0]), int(x[1])) if isinstance(x, list) else (int(x), int(x)))
    return "Pad", {"pad": pads, "value": float(a.get("val", 0)), "batch_ndim": bnd}, {}


@converter("FlattenLayer", ops=("Flatten",))
def flatten(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Flatten from axis ``outdim - 1``."""
    return "Flatten", {"axis": int(L.get("attrs", {}).get("outdim", 2)) - 1, "end_axis": -1}, {}


@converter("ReshapeLayer", ops=("Reshape",))
def reshape(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Integer sizes and ``[i]`` references to input dimensions (known ones); nothing symbolic."""
    a = L.get("attrs", {})
    ish = in_shapes[0] if in_shapes else None
    out = []
    for j, s in enumerate(a.get("shape", [])):
        if isinstance(s, list) and len(s) == 1 and isinstance(s[0], int):
            if s[0] == j:
                out.append(0)
            elif ish is not None and ish[s[0]] is not None:
                out.append(int(ish[s[0]]))
            else:
                raise Unsupported(f"reshape reference [{s[0]}] to an unknown dimension")
        elif isinstance(s, int):
            out.append(s)
        else:
            raise Unsupported(f"reshape entry {s!r} is symbolic")
    return "Reshape", {"shape": out, "axis": 0, "num_axes": -1}, {}


@converter("DimshuffleLayer", ops=("Transpose",))
def dimshuffle(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """The pattern, 'x' for a new broadcastable axis."""
    return "Transpose", {"pattern": [p if p == "x" else int(p) for p in L.get("attrs", {})["pattern"]]}, {}


@converter("SliceLayer", ops=("Slice",))
def slice_layer(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """A slice (start, stop, step) or an index (the axis is dropped) along ``axis``."""
    a = L.get("attrs", {})
    sl = a.get("slice")
    if isinstance(sl, int) and not isinstance(sl, bool):   # an index: the axis is dropped
        return "Slice", {"axis": int(a.get("axis", -1)) % ndim(in_shapes), "index": sl}, {}
    if not isinstance(sl, dict) or "__slice__" not in sl:
        raise Unsupported(f"SliceLayer with indices {sl!r}")
    start, stop, step = sl["__slice__"]
    return "Slice", {"axis": int(a.get("axis", -1)) % ndim(in_shapes), "start": start,
                     "stop": stop, "step": step}, {}
