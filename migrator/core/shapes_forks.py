"""Shape rules of the Caffe fork ops (``Interp``, ``Normalize``, ``ShuffleChannel``);
formulas in :data:`migrator.core.ir.OPS`."""
from __future__ import annotations

from .shapes import _check_rank, _fmt, shape_rule


def interp_out_len(L: int | None, attrs: dict, axis: str) -> int | None:
    """Output length of one axis of a DeepLab/PSPNet Interp (``axis`` 'h' or 'w')."""
    mode = attrs.get("mode", "zoom")
    if mode == "size":
        return int(attrs["height"] if axis == "h" else attrs["width"])
    if L is None:
        return None
    eff = L + int(attrs.get("pad_beg", 0)) + int(attrs.get("pad_end", 0))
    z, s = int(attrs.get("zoom_factor", 1)), int(attrs.get("shrink_factor", 1))
    if mode == "shrink":
        return (eff - 1) // s + 1
    if mode == "zoom":
        return eff + (eff - 1) * (z - 1)
    if mode == "shrink_zoom":
        o = (eff - 1) // s + 1
        return o + (o - 1) * (z - 1)
    raise ValueError(f"unknown Interp mode {mode!r}")


@shape_rule("Interp")
def _interp(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, rank=4)
    a = node.attrs
    crop = int(a.get("pad_beg", 0)) + int(a.get("pad_end", 0))
    for L in x[2:]:
        if L is not None and L + crop < 1:
            raise ctx.error(f"input {_fmt(x)} is smaller than the Interp cropping "
                            f"(pad_beg {a.get('pad_beg')}, pad_end {a.get('pad_end')})")
    return [(x[0], x[1], interp_out_len(x[2], a, "h"), interp_out_len(x[3], a, "w"))]


@shape_rule("Normalize")
def _normalize(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, min_rank=2)
    s = node.p("scale")
    if s is not None and s.size != 1 and x[1] is not None and s.size != x[1]:
        raise ctx.error(f"Normalize has {s.size} scales but the input {_fmt(x)} has {x[1]} channels")
    return [tuple(x)]


@shape_rule("ShuffleChannel")
def _shuffle(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, min_rank=2)
    g = int(node.attrs.get("group", 1))
    if x[1] is not None and x[1] % g:
        raise ctx.error(f"{x[1]} channels cannot be split into {g} groups")
    return [tuple(x)]
