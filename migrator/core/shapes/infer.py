"""Shape inference over a whole graph: every node's rule from :data:`.registry.SHAPE_RULES`."""
from __future__ import annotations

from ..errors import MigratorError
from .registry import SHAPE_RULES, Shape, ShapeContext


def infer_shapes(graph, file: str | None = None) -> None:
    """Fill ``node.out_shapes`` for every node of ``graph`` (a :class:`migrator.core.ir.Graph`,
    in order; the IR is not imported here since :meth:`Graph.infer_shapes` calls this)."""
    _walk(graph, file, None, True)


def shapes_for_batch(graph, batch: int) -> dict[str, Shape | None]:
    """tensor id -> its shape when every input holds ``batch`` samples (axis 0 of the inputs
    set to ``batch``), the graph left as it is.  Exact sizes for tensors whose axis 0 is not
    the batch (``sample_axes``), e.g. the ``(N*H*W, classes)`` of a Lasagne reshape.  Raises
    MigratorError when the graph cannot take that batch (a reshape to a fixed batch)."""
    return _walk(graph, None, int(batch), False)


def _walk(graph, file: str | None, batch: int | None, write: bool) -> dict[str, Shape | None]:
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
        if batch is not None and node.op == "Input":    # an input: the batch of the feed
            outs = [None if o is None or not len(o) else (batch, *tuple(o)[1:]) for o in outs]
        if write:
            node.out_shapes = list(outs)
        for t, s in zip(node.outputs, outs):
            known[t] = s
    return known


def sample_axes(graph) -> dict[str, int | None]:
    """tensor id -> the axis of the tensor that indexes the samples of the batch (0 for
    almost every tensor; another axis after a Lasagne ``DimshuffleLayer((1, 0, ...))``; None
    when the samples are mixed with another axis, e.g. the per-pixel ``(N*H*W, classes)``
    reshape).  A tensor whose axis 0 is not the sample axis is compared as one whole tensor.
    Layout ops move the axis (:func:`.layout.layout_sample_axis`); any other op keeps axis 0
    when all its inputs have it there, else None."""
    from .layout import layout_sample_axis

    axes: dict[str, int | None] = {}
    for node in graph.nodes:
        ins = [axes.get(t, 0) for t in node.inputs]
        if not node.inputs:
            s: int | None = 0
        elif node.op in ("Transpose", "Reshape", "Flatten", "Pad") and ins[0] is not None:
            x = graph.tensor_shape(node.inputs[0])
            s = None if x is None else layout_sample_axis(node, ins[0], tuple(x), node.out_shape)
        else:
            s = 0 if all(a == 0 for a in ins) else None
        for t in node.outputs:
            axes[t] = s
    return axes
