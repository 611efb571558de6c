"""Shape inference over a whole graph: every node's rule from :data:`.registry.SHAPE_RULES`."""
from __future__ import annotations

from ..errors import MigratorError
from .registry import SHAPE_RULES, Shape, ShapeContext


def infer_shapes(graph, file: str | None = None) -> None:
    """Fill ``node.out_shapes`` for every node of ``graph`` (a :class:`migrator.core.ir.Graph`,
    in order; the IR is not imported here since :meth:`Graph.infer_shapes` calls this)."""
    known: dict[str, Shape | None] = {}
    for node in graph.nodes:
        ctx = ShapeContext(node, file)
        ins = []
        for t in node.inputs:
            if t not in known:
                raise ctx.error(f"input '{t}' is not produced by any earlier layer")
            ins.append(known[t])
        fn = SHAPE_RULES.get(node.op)
        if fn is None:
            raise ctx.error(f"unknown canonical op {node.op!r}")
        if node.op != "Input" and (not ins or any(s is None for s in ins)):
            if node.op != "Input" and not node.inputs:
                raise ctx.error("layer has no input")
            outs: list = [None] * node.num_outputs
        else:
            try:
                outs = fn(node, ins, ctx)
            except MigratorError:
                raise
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise ctx.error(f"invalid attributes for {node.op}: {e}") from None
        if len(outs) != node.num_outputs:
            outs = (list(outs) + [outs[-1]] * node.num_outputs)[:node.num_outputs]
        node.out_shapes = list(outs)
        for t, s in zip(node.outputs, outs):
            known[t] = s
