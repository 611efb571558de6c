"""Shape rules of the recurrent family: ``Recurrent`` (Lasagne), ``CaffeRecurrent``."""
from __future__ import annotations

from .registry import check_rank, fmt_shape, prod, same_dim, shape_rule


@shape_rule("Recurrent")
def _recurrent(node, ins, ctx):
    x = ins[0]
    if len(x) < 3:
        raise ctx.error(f"recurrent input {tuple(x)} is not (batch, time, features...)")
    units = int(node.attrs["units"])
    if node.attrs.get("only_return_final"):
        return [(x[0], units)]
    return [(x[0], x[1], units)]


@shape_rule("CaffeRecurrent")
def _caffe_recurrent(node, ins, ctx):
    x, cont = ins[0], ins[1]
    check_rank(ctx, x, min_rank=3)
    if len(cont) != 2 or not all(same_dim(a, b) for a, b in zip(cont, x[:2])):
        raise ctx.error(f"the 'cont' bottom must have shape (T, N) = {fmt_shape(x[:2])}, "
                        f"got {fmt_shape(cont)}")
    w = node.p("W_xc") if node.p("W_xc") is not None else node.p("W_xh")
    feat = prod(x[2:])
    if w is not None and feat is not None and w.shape[1] != feat:
        raise ctx.error(f"input weight expects {w.shape[1]} features per step, the input {fmt_shape(x)} "
                        f"has {feat}")
    return [(x[0], x[1], int(node.attrs["num_output"]))]
