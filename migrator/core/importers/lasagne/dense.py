"""Dense family: Lasagne's DenseLayer."""
from __future__ import annotations

from .common import activation_of, ndim
from .registry import converter


@converter("DenseLayer", ops=("Dense",))
def dense(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """W (K, N) 'IO'; ``num_leading_axes`` gives the flattening axis."""
    a = L.get("attrs", {})
    pnames = [p["name"] for p in L["params"]]
    nd = ndim(in_shapes)
    nla = int(a.get("num_leading_axes", 1))
    axis = nla if nla >= 0 else nd + nla
    return "Dense", {"num_output": int(a["num_units"]), "axis": axis, "bias": "b" in pnames,
                     "activation": activation_of(a.get("nonlinearity"))}, \
        {"W": ("weight", None, "IO"), "b": ("bias", None, "O")}
