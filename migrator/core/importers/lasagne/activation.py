"""Activation family: NonlinearityLayer, the parametric and randomized rectifiers, and the
layers that are the identity at inference (dropout, Gaussian noise)."""
from __future__ import annotations

import numpy as np

from .common import activation_of, kept_axis, ndim
from .registry import converter


@converter("NonlinearityLayer", ops=("Activation", "Identity", "Softmax"))
def nonlinearity(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """The layer's nonlinearity: linear -> Identity, softmax -> Softmax, else Activation."""
    act = activation_of(L.get("attrs", {}).get("nonlinearity"))
    if act is None:
        return "Identity", {}, {}
    if act["kind"] == "softmax":
        return "Softmax", {"axis": 1}, {}
    return "Activation", act, {}


@converter("ParametricRectifierLayer", ops=("PReLU",))
def prelu(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Learned slopes per channel, or one shared by all axes."""
    a = L.get("attrs", {})
    nd = ndim(in_shapes)
    sa = a.get("shared_axes")
    sa = [int(x) % nd for x in (sa if isinstance(sa, list) else [sa])]
    if sorted(sa) == list(range(nd)):
        return "PReLU", {"channel_shared": True}, \
            {"alpha": ("slope", lambda v: np.reshape(v, (1,)), "C")}
    kept_axis(sa, nd, "PReLU slopes")
    return "PReLU", {"channel_shared": False}, {"alpha": ("slope", None, "C")}


@converter("RandomizedRectifierLayer", ops=("Activation",))
def randomized_rectifier(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """At inference (``deterministic=True``) a leaky rectifier with the mean slope
    ``(lower + upper) / 2``."""
    a = L.get("attrs", {})
    lo, hi = float(a.get("lower", 0.3)), float(a.get("upper", 0.8))
    return "Activation", {"kind": "relu", "negative_slope": (lo + hi) / 2.0}, {}


@converter("DropoutLayer", ops=("Dropout",))
def dropout(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Dropout (the identity at inference; the ratio is kept)."""
    return "Dropout", {"ratio": float(L.get("attrs", {}).get("p", 0.5))}, {}


@converter("GaussianNoiseLayer", ops=("Identity",))
def gaussian_noise(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """The identity at inference; ``noise_stddev`` (sigma) keeps the noise for training."""
    sigma = float(L.get("attrs", {}).get("sigma", 0.1))
    return "Identity", ({"noise_stddev": sigma} if sigma > 0 else {}), {}
