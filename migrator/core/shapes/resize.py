"""Shape rules and formulas of the resize family: ``Upscale``, ``Upscale1D``, ``Upscale3D``,
``Interp``, ``MaxUnpool``."""
from __future__ import annotations

from .registry import check_rank, fmt_shape, pair, same_dim, shape_rule


def interp_out_len(L: int | None, attrs: dict, axis: str, like: int | None = None) -> int | None:
    """Output length of one axis of a DeepLab/PSPNet Interp (``axis`` 'h' or 'w'); ``like``:
    the reference's length on that axis (mode 'like', two bottoms)."""
    mode = attrs.get("mode", "zoom")
    if mode == "like":
        return like
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


@shape_rule("Upscale")
def _upscale(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=4)
    sh, sw = pair(node.attrs.get("scale", 2))
    if sh < 1 or sw < 1:
        raise ctx.error(f"scale factor {(sh, sw)} must be >= 1")
    if node.attrs.get("mode", "repeat") not in ("repeat", "dilate"):
        raise ctx.error(f"unknown upscale mode {node.attrs.get('mode')!r}")
    return [(x[0], x[1], None if x[2] is None else x[2] * sh, None if x[3] is None else x[3] * sw)]


@shape_rule("Upscale1D")
def _upscale1d(node, ins, ctx):
    s = ins[0]
    if len(s) != 3:
        raise ctx.error(f"Upscale1D needs a rank-3 input, got {s}")
    return [(s[0], s[1], None if s[2] is None else s[2] * int(node.attrs["scale"]))]


@shape_rule("Interp")
def _interp(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=4)
    a = node.attrs
    crop = int(a.get("pad_beg", 0)) + int(a.get("pad_end", 0))
    for L in x[2:]:
        if L is not None and L + crop < 1:
            raise ctx.error(f"input {fmt_shape(x)} is smaller than the Interp cropping "
                            f"(pad_beg {a.get('pad_beg')}, pad_end {a.get('pad_end')})")
    if a.get("mode") == "like":
        if len(ins) != 2:
            raise ctx.error("Interp mode 'like' needs a second input (the size reference)")
        ref = ins[1]
        if len(ref) != 4:
            raise ctx.error(f"the Interp size reference {fmt_shape(ref)} must be 4-d")
        return [(x[0], x[1], ref[2], ref[3])]
    return [(x[0], x[1], interp_out_len(x[2], a, "h"), interp_out_len(x[3], a, "w"))]


@shape_rule("Upscale3D")
def _upscale3d(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=5)
    sc = tuple(int(v) for v in node.attrs["scale"])
    if len(sc) != 3 or min(sc) < 1:
        raise ctx.error(f"scale factor {sc} must be three integers >= 1")
    if node.attrs.get("mode", "repeat") not in ("repeat", "dilate"):
        raise ctx.error(f"unknown upscale mode {node.attrs.get('mode')!r}")
    return [(x[0], x[1], *(None if L is None else L * s for L, s in zip(x[2:], sc)))]


def unpool_out_size(h: int | None, w: int | None, attrs: dict) -> tuple[int | None, int | None]:
    """(H, W) of SegNet's max-unpooling Upsample for an (h, w) input: ``size`` when given, else
    ``(h*sh - pad_out_h, w*sw - pad_out_w)``."""
    if attrs.get("size"):
        H, W = attrs["size"]
        return int(H), int(W)
    sh, sw = pair(attrs.get("scale", 2))
    ph, pw = (int(bool(v)) for v in attrs.get("pad_out", (False, False)))
    return (None if h is None else h * sh - ph, None if w is None else w * sw - pw)


@shape_rule("MaxUnpool")
def _max_unpool(node, ins, ctx):
    x, m = ins
    check_rank(ctx, x, rank=4)
    if len(m) != 4 or not all(same_dim(p, q) for p, q in zip(x, m)):
        raise ctx.error(f"the mask {fmt_shape(m)} must have the shape of the data {fmt_shape(x)}")
    H, W = unpool_out_size(x[2] if x[2] is not None else m[2], x[3] if x[3] is not None else m[3],
                           node.attrs)
    if (H is not None and H < 1) or (W is not None and W < 1):
        raise ctx.error(f"Upsample output size {(H, W)} must be positive")
    return [(x[0], x[1], H, W)]
