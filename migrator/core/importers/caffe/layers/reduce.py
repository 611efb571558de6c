"""Reduce family: Reduction and ArgMax.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ..common import f32
from ..registry import layer_handler


@layer_handler("Reduction", ops=("Reduction",))
def reduction(b, lp):
    rp = lp.reduction_param
    op = {1: "sum", 2: "asum", 3: "sumsq", 4: "mean"}.get(int(rp.operation))
    if op is None:
        raise b.err(f"unknown reduction operation {int(rp.operation)}", lp.name)
    return "Reduction", {"operation": op, "axis": int(rp.axis), "coeff": f32(rp.coeff)}, {}, 1


@layer_handler("ArgMax", ops=("ArgMax",))
def argmax(b, lp):
    ap = lp.argmax_param
    if ap.top_k < 1:
        raise b.err("argmax_param.top_k must be at least 1", lp.name)
    return "ArgMax", {"out_max_val": bool(ap.out_max_val), "top_k": int(ap.top_k),
                      "axis": int(ap.axis) if ap.HasField("axis") else None}, {}, 1
