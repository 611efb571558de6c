"""Shape rules and formulas of the merge family: ``Eltwise``, ``Concat``, ``CropMerge``, ``Axpy``."""
from __future__ import annotations

from .registry import fmt_shape, norm_axis, same_dim, shape_rule


def crop_slices(shapes: list, cropping) -> list[list[slice]]:
    """Lasagne's ``autocrop``: per input, one slice per axis (static shapes); a cropped axis
    takes the smallest size of the inputs ('lower', 'upper' or 'center' aligned)."""
    nd = len(shapes[0])
    out: list[list[slice]] = [[] for _ in shapes]
    cr = list(cropping or []) + [None] * (nd - len(cropping or []))
    for d in range(nd):
        c = cr[d]
        if c is None:
            for s in out:
                s.append(slice(None))
            continue
        sz = min(int(sh[d]) for sh in shapes)
        for sh, s in zip(shapes, out):
            if c == "lower":
                s.append(slice(0, sz))
            elif c == "upper":
                s.append(slice(int(sh[d]) - sz, int(sh[d])))
            else:
                off = (int(sh[d]) - sz) // 2
                s.append(slice(off, off + sz))
    return out


@shape_rule("Eltwise")
def _eltwise(node, ins, ctx):
    first = ins[0]
    coeffs = node.attrs.get("coeffs")
    if coeffs is not None and len(coeffs) not in (1, len(ins)):
        raise ctx.error(f"{len(coeffs)} coefficients for {len(ins)} inputs")
    out = list(first)
    for s in ins[1:]:
        if len(s) != len(first) or not all(same_dim(a, b) for a, b in zip(s, first)):
            raise ctx.error("inputs have different shapes: " + ", ".join(fmt_shape(t) for t in ins))
        out = [a if a is not None else b for a, b in zip(out, s)]
    return [tuple(out)]


@shape_rule("Concat")
def _concat(node, ins, ctx):
    first = ins[0]
    axis = norm_axis(node.attrs.get("axis", 1), len(first), ctx)
    total: int | None = 0
    out = list(first)
    for s in ins:
        if len(s) != len(first) or not all(same_dim(a, b) for i, (a, b) in enumerate(zip(s, first))
                                           if i != axis):
            raise ctx.error(f"inputs do not match outside axis {axis}: "
                            + ", ".join(fmt_shape(t) for t in ins))
        total = None if (total is None or s[axis] is None) else total + s[axis]
        out = [a if a is not None else b for a, b in zip(out, s)]
    out[axis] = total
    return [tuple(out)]


@shape_rule("CropMerge")
def _crop_merge(node, ins, ctx):
    a = node.attrs
    nd = len(ins[0])
    if any(s is None or len(s) != nd for s in ins):
        raise ctx.error("merge inputs of different ranks")
    cr = list(a.get("cropping") or []) + [None] * nd
    out = []
    for d in range(nd):
        sizes = [s[d] for s in ins]
        if cr[d] is not None and None not in sizes:
            sizes = [min(sizes)] * len(sizes)
        if a["kind"] == "concat" and d == int(a["axis"]):
            out.append(None if None in sizes else sum(sizes))
            continue
        known = {x for x in sizes if x is not None}
        if len(known) > 1:
            raise ctx.error(f"merge inputs differ on axis {d}: {sizes}")
        out.append(known.pop() if known else None)
    return [tuple(out)]


@shape_rule("Axpy")
def _axpy(node, ins, ctx):
    a, x, y = ins
    if len(x) < 2 or len(y) != len(x) or not all(same_dim(p, q) for p, q in zip(x, y)):
        raise ctx.error(f"x {fmt_shape(x)} and y {fmt_shape(y)} must have the same shape (N, C, ...)")
    if not (len(a) == 2 or (len(a) == len(x) and all(d == 1 for d in a[2:]))) \
            or not all(same_dim(p, q) for p, q in zip(a[:2], x[:2])):
        raise ctx.error(f"a {fmt_shape(a)} must be (N, C) or (N, C, 1, ...) for x {fmt_shape(x)}")
    return [tuple(p if p is not None else q for p, q in zip(x, y))]
