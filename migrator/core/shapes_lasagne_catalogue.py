"""Shape functions of the Lasagne catalogue ops (issue 14): Standardize, FeaturePool,
FeatureWTA, LasagneReduce, CropMerge (see ``ir.OPS``)."""
from __future__ import annotations

from .shapes import shape_rule


@shape_rule("Standardize", "FeatureWTA")
def _lasagne_same(node, ins, ctx):
    return [ins[0]]


@shape_rule("FeaturePool")
def _feature_pool(node, ins, ctx):
    s = list(ins[0])
    ax, p = int(node.attrs["axis"]), int(node.attrs["pool_size"])
    if s[ax] is not None:
        if s[ax] % p:
            raise ctx.error(f"{s[ax]} features along axis {ax} are not a multiple of pool_size {p}")
        s[ax] //= p
    return [tuple(s)]


@shape_rule("LasagneReduce")
def _lasagne_reduce(node, ins, ctx):
    axes = {int(a) for a in node.attrs["axes"]}
    return [tuple(d for i, d in enumerate(ins[0]) if i not in axes)]


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


@shape_rule("LasagneSPP")
def _lasagne_spp(node, ins, ctx):
    s = ins[0]
    return [(s[0], s[1], int(sum(n * n for n in node.attrs["pool_dims"])))]


@shape_rule("LocallyConnected")
def _locally_connected(node, ins, ctx):
    s = ins[0]
    w = node.params.get("weight")
    return [(s[0], int(w.value.shape[0]) if w is not None else None) + tuple(s[2:])]


@shape_rule("Upscale1D")
def _upscale1d(node, ins, ctx):
    s = ins[0]
    if len(s) != 3:
        raise ctx.error(f"Upscale1D needs a rank-3 input, got {s}")
    return [(s[0], s[1], None if s[2] is None else s[2] * int(node.attrs["scale"]))]
