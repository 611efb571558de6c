"""Shape rule of the dense family: ``Dense``."""
from __future__ import annotations

from .registry import fmt_shape, norm_axis, prod, shape_rule


@shape_rule("Dense")
def _dense(node, ins, ctx):
    x = ins[0]
    axis = norm_axis(node.attrs.get("axis", 1), len(x), ctx)
    flat = prod(x[axis:])
    w = node.p("weight")
    n_out = node.attrs.get("num_output")
    if w is not None:
        layout = (node.params["weight"].layout or "OI").upper()
        if w.ndim != 2:
            raise ctx.error(f"weight must be 2-d, got shape {tuple(w.shape)}")
        k_in, n = (w.shape[1], w.shape[0]) if layout == "OI" else (w.shape[0], w.shape[1])
        if flat is not None and k_in != flat:
            raise ctx.error(f"weight shape {tuple(w.shape)} ({layout}) expects {k_in} inputs but "
                            f"the input {fmt_shape(x)} flattened from axis {axis} has {flat}")
        if n_out is not None and int(n_out) != n:
            raise ctx.error(f"num_output {n_out} does not match weight shape {tuple(w.shape)} ({layout})")
        n_out = n
    return [tuple(x[:axis]) + (None if n_out is None else int(n_out),)]
