"""Normalisation family: Lasagne's batch normalisation (and the 2015 gist's), local response
normalisation, ScaleLayer, BiasLayer and StandardizationLayer."""
from __future__ import annotations

from .common import Unsupported, activation_of, kept_axis, ndim
from .registry import converter


@converter("BatchNormLayer", "BatchNormDNNLayer", ops=("BatchNorm",))
def batch_norm(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """BatchNormLayer (form 'lasagne'): per-channel only."""
    a = L.get("attrs", {})
    nd = ndim(in_shapes)
    axes = a.get("axes", "auto")
    if axes == "auto":
        axes = [0] + list(range(2, nd))
    axis = kept_axis(axes, nd, "batch normalisation")
    return "BatchNorm", {"form": "lasagne", "axis": axis,
                         "epsilon": float(a.get("epsilon", 1e-4)),
                         "alpha": float(a.get("alpha", 0.1)),
                         "axes": tuple(int(x) % nd for x in axes)}, \
        {n: (n, None, "C") for n in ("beta", "gamma", "mean", "inv_std")}


def is_gist_batch_norm(L: dict) -> bool:
    """A user class named like BatchNorm with the params of the preliminary (2015 gist) batch
    normalisation: mean, std, beta, gamma."""
    return "BatchNorm" in L["class"] and sorted(p["name"] for p in L["params"]) == \
        ["beta", "gamma", "mean", "std"]


def gist_batch_norm(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """The 2015 gist's batch normalisation (a user class): ``(x - mean) * gamma / (std +
    epsilon) + beta`` (form 'gist')."""
    a = L.get("attrs", {})
    nd = ndim(in_shapes)
    axes = a.get("axes")
    if axes is None:
        axes = [0] + list(range(2, nd))
    kept_axis(axes, nd, "gist batch normalisation")
    for p in L["params"]:
        shp = p["shape"] or []
        if len(shp) == nd and any(s != 1 for i, s in enumerate(shp) if i != 1):
            raise Unsupported("gist batch normalisation params are not per channel")
    act = activation_of(a.get("nonlinearity"))
    return "BatchNorm", {"form": "gist", "axis": 1, "epsilon": float(a.get("epsilon", 0.01)),
                         "alpha": float(a.get("alpha", 0.5)), "activation": act,
                         "axes": tuple(int(x) % nd for x in axes)}, \
        {n: (n, None, "") for n in ("mean", "std", "beta", "gamma")}


@converter("LocalResponseNormalization2DLayer", ops=("LRN",))
def lrn(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Across-channel LRN; Lasagne's alpha is the coefficient itself (not divided by n)."""
    a = L.get("attrs", {})
    alpha = float(a.get("alpha", 1e-4))
    return "LRN", {"region": "across", "size": int(a.get("n", 5)), "coeff": alpha,
                   "beta": float(a.get("beta", 0.75)), "k": float(a.get("k", 2)),
                   "source_alpha": alpha}, {}


@converter("ScaleLayer", ops=("Scale",))
def scale(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Per-channel scales."""
    kept_axis(L.get("attrs", {}).get("shared_axes"), ndim(in_shapes), "scaling")
    return "Scale", {"axis": 1, "num_axes": 1, "bias": False, "two_input": False}, \
        {"scales": ("scale", None, "C")}


@converter("BiasLayer", ops=("Bias", "Identity"))
def bias(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Per-channel biases (b=None: Identity)."""
    if "b" not in [p["name"] for p in L["params"]]:
        return "Identity", {}, {}
    kept_axis(L.get("attrs", {}).get("shared_axes"), ndim(in_shapes), "bias")
    return "Bias", {"axis": 1, "num_axes": 1}, {"b": ("bias", None, "C")}


@converter("StandardizationLayer", ops=("Standardize",))
def standardization(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes`` -> ``Standardize``."""
    a = L.get("attrs", {})
    nd = ndim(in_shapes)
    axes = sorted({int(x) % nd for x in a.get("axes", list(range(2, nd)))})
    if 0 in axes:
        raise Unsupported("standardization over the batch axis")
    return "Standardize", {"axes": axes, "epsilon": float(a.get("epsilon", 1e-4))}, {}
