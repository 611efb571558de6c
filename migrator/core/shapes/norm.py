"""Shape rules of the norm family: ``BatchNorm``, ``Scale``, ``Bias``, ``LRN``, ``Normalize``,
``MVN``, ``Standardize``."""
from __future__ import annotations

from .registry import check_rank, fmt_shape, norm_axis, prod, same_dim, shape_rule


@shape_rule("BatchNorm")
def _batchnorm(node, ins, ctx):
    x = ins[0]
    form = node.attrs.get("form", "caffe")
    if form in ("caffe", "lasagne"):
        axis = norm_axis(node.attrs.get("axis", 1), len(x), ctx) if len(x) > 1 else 0
        if form == "lasagne":
            axes = node.attrs.get("axes", "auto")
            if axes == "auto" or axes is None:
                axes = (0,) + tuple(range(2, len(x)))
            kept = [x[i] for i in range(len(x)) if i not in {a % len(x) for a in axes}]
        else:
            kept = [x[axis]]
        want = prod(kept)
        for pname in ("mean", "variance", "inv_std", "beta", "gamma"):
            v = node.p(pname)
            if v is not None and want is not None and v.size != want:
                raise ctx.error(f"BatchNorm param '{pname}' has {v.size} values but the input "
                                f"{fmt_shape(x)} needs {want}")
    return [tuple(x)]


@shape_rule("Scale", "Bias")
def _scale(node, ins, ctx):
    x = ins[0]
    axis = norm_axis(node.attrs.get("axis", 1), len(x), ctx) if len(x) else 0
    if node.op == "Scale" and node.attrs.get("two_input") and len(ins) > 1 and ins[1] is not None:
        s = tuple(ins[1])
    else:
        v = node.p("scale" if node.op == "Scale" else "bias")
        if v is None:
            return [tuple(x)]
        num_axes = node.attrs.get("num_axes", 1)
        if num_axes == -1:
            num_axes = len(x) - axis
        s = tuple(v.shape)
        if v.size == 1 and num_axes == 0:
            return [tuple(x)]
        if len(s) != num_axes and prod(s) == prod(x[axis:axis + num_axes]):
            s = tuple(x[axis:axis + num_axes])
    target = x[axis:axis + len(s)]
    if len(target) != len(s) or not all(same_dim(a, b) for a, b in zip(target, s)):
        raise ctx.error(f"{node.op} of shape {fmt_shape(s)} does not match input {fmt_shape(x)} "
                        f"at axis {axis}")
    return [tuple(x)]


@shape_rule("LRN")
def _lrn(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, min_rank=3)
    return [tuple(x)]


@shape_rule("Normalize")
def _normalize(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, min_rank=2)
    s = node.p("scale")
    if s is not None and s.size != 1 and x[1] is not None and s.size != x[1]:
        raise ctx.error(f"Normalize has {s.size} scales but the input {fmt_shape(x)} has {x[1]} channels")
    return [tuple(x)]


@shape_rule("MVN")
def _mvn(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, min_rank=2)
    if len(x) > 4:
        raise ctx.error(f"MVN uses Caffe's 4-d (num, channels, height, width) view; got {fmt_shape(x)}")
    # Caffe reshapes the top to (num, channels, height, width): missing axes become 1
    return [tuple(x) + (1,) * (4 - len(x))]


@shape_rule("Standardize")
def _standardize(node, ins, ctx):
    return [ins[0]]
