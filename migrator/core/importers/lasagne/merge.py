"""Merge family: ConcatLayer, ElemwiseSumLayer and ElemwiseMergeLayer, with or without
Lasagne's ``cropping`` (``autocrop``; cropped merges and T.minimum / T.sub -> ``CropMerge``)."""
from __future__ import annotations

from .common import Unsupported, fn_name, ndim
from .registry import converter

_MERGE = {"add": "add", "mul": "mul", "maximum": "maximum", "minimum": "minimum", "sub": "sub"}
_ELTWISE = {"add": "sum", "mul": "prod", "maximum": "max"}


def _cropping(a: dict, nd: int):
    cr = a.get("cropping")
    if cr is None:
        return None
    cr = list(cr) + [None] * (nd - len(cr))
    if len(cr) > nd:
        raise Unsupported(f"cropping {cr!r} has more entries than the input has axes")
    for c in cr:
        if c not in (None, "lower", "upper", "center"):
            raise Unsupported(f"cropping mode {c!r}")
    if cr[0] is not None:
        raise Unsupported("cropping of the batch axis")
    return cr


@converter("ConcatLayer", ops=("Concat", "CropMerge"))
def concat(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Concatenation along ``axis`` (cropped inputs: ``CropMerge`` kind 'concat')."""
    a = L.get("attrs", {})
    nd = ndim(in_shapes)
    cr = _cropping(a, nd)
    if cr is not None:
        return "CropMerge", {"kind": "concat", "axis": int(a.get("axis", 1)) % nd,
                             "cropping": cr, "coeffs": None}, {}
    return "Concat", {"axis": int(a.get("axis", 1)) % ndim(in_shapes)}, {}


@converter("ElemwiseSumLayer", ops=("Eltwise", "CropMerge"))
def elemwise_sum(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Weighted sum (``coeffs``); cropped inputs: ``CropMerge`` kind 'sum'."""
    a = L.get("attrs", {})
    cr = _cropping(a, ndim(in_shapes))
    coeffs = [float(c) for c in a.get("coeffs", [1] * len(L["inputs"]))]
    if cr is not None:
        return "CropMerge", {"kind": "sum", "coeffs": coeffs, "cropping": cr, "axis": None}, {}
    return "Eltwise", {"operation": "sum",
                       "coeffs": None if all(c == 1 for c in coeffs) else coeffs}, {}


@converter("ElemwiseMergeLayer", ops=("Eltwise", "CropMerge"))
def elemwise_merge(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """T.add / T.mul / T.maximum -> ``Eltwise``; T.minimum, T.sub or cropped inputs -> ``CropMerge``."""
    a = L.get("attrs", {})
    cr = _cropping(a, ndim(in_shapes))
    fn = fn_name(a.get("merge_function"))
    if cr is None and fn in _ELTWISE:
        return "Eltwise", {"operation": _ELTWISE[fn], "coeffs": None}, {}
    if fn not in _MERGE:
        raise Unsupported(f"merge function {fn!r}")
    return "CropMerge", {"kind": _MERGE[fn], "cropping": cr, "axis": None, "coeffs": None}, {}


