"""Shape rules of the io family: ``Input``, ``Custom``."""
from __future__ import annotations

from .registry import shape_rule


@shape_rule("Input")
def _input(node, ins, ctx):
    shape = node.attrs.get("shape")
    if shape is None:
        return [None]
    return [tuple(None if d is None or (isinstance(d, int) and d < 0) else int(d) for d in shape)]


@shape_rule("Custom")
def _custom(node, ins, ctx):
    return [None] * node.num_outputs
