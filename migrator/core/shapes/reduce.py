"""Shape rules of the reduce family: ``Reduction``, ``ArgMax``, ``LasagneReduce``."""
from __future__ import annotations

from .registry import norm_axis, prod, shape_rule


@shape_rule("Reduction")
def _reduction(node, ins, ctx):
    x = ins[0]
    axis = norm_axis(node.attrs.get("axis", 0), len(x), ctx)
    return [tuple(x[:axis])]


@shape_rule("ArgMax")
def _argmax(node, ins, ctx):
    x = ins[0]
    k = int(node.attrs.get("top_k", 1))
    axis = node.attrs.get("axis")
    if axis is not None:
        a = norm_axis(axis, len(x), ctx)
        if x[a] is not None and k > x[a]:
            raise ctx.error(f"top_k {k} is larger than the axis size {x[a]}")
        out = list(x)
        out[a] = k
        return [tuple(out)]
    flat = prod(x[1:])
    if flat is not None and k > flat:
        raise ctx.error(f"top_k {k} is larger than the {flat} values per sample")
    return [(x[0], 2 if node.attrs.get("out_max_val") else 1, k) + (1,) * max(0, len(x) - 3)]


@shape_rule("LasagneReduce")
def _lasagne_reduce(node, ins, ctx):
    axes = {int(a) for a in node.attrs["axes"]}
    return [tuple(d for i, d in enumerate(ins[0]) if i not in axes)]
