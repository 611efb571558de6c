"""Shape rules of the activation family: element-wise ops keep the input shape
(``Identity``, ``Dropout``, ``Activation``, ``PReLU``, ``Power``, ``Softmax``, ``Exp``,
``Log``, ``Threshold``, ``Clip``, ``Swish``)."""
from __future__ import annotations

from .registry import norm_axis, same_dim, shape_rule


@shape_rule("Identity", "Dropout", "Activation", "PReLU", "Power", "Softmax",
            "Exp", "Log", "Threshold", "Clip", "Swish")
def _same_shape(node, ins, ctx):
    x = ins[0]
    if node.op == "Softmax":
        norm_axis(node.attrs.get("axis", 1), len(x), ctx)
    if node.op == "PReLU":
        slope = node.p("slope")
        if (slope is not None and not node.attrs.get("channel_shared", False) and len(x) >= 2
                and slope.size != 1 and not same_dim(x[1], slope.size)):
            raise ctx.error(f"PReLU has {slope.size} slopes but the input has {x[1]} channels")
    return [tuple(x)]
