"""Mapping rules of the io family: ``Input`` (``Custom`` has no rule: it is always reported
unsupported by the planner)."""
from __future__ import annotations

from ..plan import ParamRow
from ..registry import Rule, keras_layout, register
from .common import Chain, unsupported


@register("Input")
class InputRule(Rule):
    name = "Input"
    description = "One keras.Input per source input; NCHW -> channels-last shape."

    def map(self, node, ctx):
        shape = tuple(node.attrs.get("shape") or node.out_shape or ())
        if len(shape) < 2:
            return unsupported(node, ctx, f"input shape {shape} has no channel axis")
        rank = len(shape)
        src = list(shape[1:])
        kshape = src if rank <= 2 else src[1:] + src[:1]
        chain = Chain(node, ctx, inputs=[])
        chain.add("Input", {"shape": kshape})
        rows = [ParamRow("shape", "source (C, H, W) -> Keras (H, W, C)" if rank == 4 else
                         "source (C, ...) -> Keras (..., C)" if rank > 2 else "unchanged",
                         tuple(kshape), sources={"shape": tuple(shape)})]
        return chain.finish(rows=rows, layout=keras_layout(rank))
