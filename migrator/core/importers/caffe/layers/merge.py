"""Merge family: Eltwise, Concat and the SENet / MobileNet forks' Axpy.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ..common import f32
from ..registry import ANY_NUMBER, layer_handler


@layer_handler("Eltwise", ops=("Eltwise",), bottoms=(2, ANY_NUMBER))
def eltwise(b, lp):
    ep = lp.eltwise_param
    op = {0: "prod", 1: "sum", 2: "max"}[int(ep.operation)]
    coeffs = [f32(c) for c in ep.coeff] or None
    if coeffs is not None:
        if op != "sum":
            raise b.err("Eltwise coefficients are only allowed with operation SUM", lp.name)
        if len(coeffs) != len(lp.bottom):
            raise b.err(f"Eltwise has {len(coeffs)} coefficients for {len(lp.bottom)} bottoms",
                        lp.name)
    return "Eltwise", {"operation": op, "coeffs": coeffs}, {}, 1


@layer_handler("Concat", ops=("Concat",), bottoms=(1, ANY_NUMBER))
def concat(b, lp):
    cp = lp.concat_param
    if cp.HasField("concat_dim") and cp.HasField("axis"):
        raise b.err("concat_param gives both axis and the legacy concat_dim", lp.name)
    axis = int(cp.concat_dim) if cp.HasField("concat_dim") else int(cp.axis)
    return "Concat", {"axis": axis}, {}, 1


@layer_handler("Axpy", ops=("Axpy",), fork="SENet / MobileNet forks", bottoms=(3, 3))
def axpy(b, lp):
    """``top = a * x + y`` (bottoms a, x, y); the layer has no parameter message and no blobs."""
    return "Axpy", {}, {}, 1
