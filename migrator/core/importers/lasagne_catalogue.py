"""Canonical forms of the rest of Lasagne master's ``lasagne.layers`` (issue 14), called by
:func:`.lasagne._canonical` before its own cases.  Returns ``None`` for a layer it does not
handle (the importer's own cases then apply).

* RandomizedRectifierLayer: at inference (``deterministic=True``) a leaky rectifier with the
  mean slope ``(lower + upper) / 2`` -> ``Activation(relu, negative_slope)``.
* StandardizationLayer: ``(x - mean) / sqrt(var + epsilon)`` over ``axes`` -> ``Standardize``.
* FeaturePoolLayer / FeatureWTALayer: groups of ``pool_size`` consecutive features along
  ``axis`` -> ``FeaturePool`` (pool_function mean/max/min/sum/prod/var/std) / ``FeatureWTA``.
* GlobalPoolLayer with a pool function other than mean/max, or on a non-4-d input ->
  ``LasagneReduce`` (``pool_function(x.flatten(3), axis=2)``).
* ConcatLayer / ElemwiseSumLayer / ElemwiseMergeLayer with ``cropping`` (Lasagne's
  ``autocrop``), and ElemwiseMergeLayer with T.minimum / T.sub -> ``CropMerge``.
* SpatialPyramidPoolingLayer / SpatialPyramidPoolingDNNLayer -> ``LasagneSPP`` (the 'kaiming'
  regions, or the 'fast' / cuDNN pool_2d with window ceil(size/n) and stride floor(size/n) --
  refused for input sizes where that gives other than n x n bins).
* Upscale1DLayer -> ``Upscale1D`` (repeat / dilate along the last axis).
* LocallyConnected2DLayer -> ``LocallyConnected`` (master's convolve: stride 1, 'same').
* Refused by name with the reason (:data:`REFUSED_CLASSES`).
"""
from __future__ import annotations

from ..shapes import (  # noqa: F401  (crop_slices, spp_regions, locally_connected_taps re-exported)
    crop_slices,
    locally_connected_taps,
    spp_fast_geometry,
    spp_regions,
)

#: Lasagne class -> why Migrator does not convert it (the Custom node's ``refused`` reason).
REFUSED_CLASSES: dict[str, str] = {
    "ExpressionLayer": "ExpressionLayer runs an arbitrary Python/Theano function (user code) "
                       "that the builder description cannot capture",
    "TransformerLayer": "spatial transformer (bilinear resampling on a grid predicted by a "
                        "localization network) has no exact Keras equivalent in Migrator",
    "TPSTransformerLayer": "thin-plate-spline spatial transformer (grid from a localization "
                           "network, bilinear resampling) has no exact Keras equivalent in Migrator",
    "InverseLayer": "InverseLayer is the gradient of its target layer with respect to that "
                    "layer's input; Migrator does not derive gradients of converted layers",
}

_REDUCE = ("mean", "max", "min", "sum", "prod", "var", "std")
_MERGE = {"add": "add", "mul": "mul", "maximum": "maximum", "minimum": "minimum", "sub": "sub"}


def _nd(in_shapes, unsupported, i=0) -> int:
    s = in_shapes[i] if in_shapes and len(in_shapes) > i else None
    if s is None:
        raise unsupported("input shape unknown")
    return len(s)


def _cropping(a, nd, unsupported):
    cr = a.get("cropping")
    if cr is None:
        return None
    cr = list(cr) + [None] * (nd - len(cr))
    if len(cr) > nd:
        raise unsupported(f"cropping {cr!r} has more entries than the input has axes")
    for c in cr:
        if c not in (None, "lower", "upper", "center"):
            raise unsupported(f"cropping mode {c!r}")
    if cr[0] is not None:
        raise unsupported("cropping of the batch axis")
    return cr


def canonical(L: dict, in_shapes: list, unsupported, activation_of, fn_name):
    known, a = L.get("known"), L.get("attrs", {})
    if known in REFUSED_CLASSES:
        reason = REFUSED_CLASSES[known]
        return "Custom", {"class_name": L["class"], "reason": f"refused: {reason}",
                          "refused": reason}, {}
    if known == "RandomizedRectifierLayer":
        lo, hi = float(a.get("lower", 0.3)), float(a.get("upper", 0.8))
        return "Activation", {"kind": "relu", "negative_slope": (lo + hi) / 2.0}, {}
    if known in ("SpatialPyramidPoolingLayer", "SpatialPyramidPoolingDNNLayer"):
        return _spp(L, in_shapes, unsupported)
    if known == "LocallyConnected2DLayer" and known not in REFUSED_CLASSES:
        pn = [p["name"] for p in L["params"]]
        untie = bool(a.get("untie_biases", False))
        ks = a.get("filter_size")
        return "LocallyConnected", {
            "kernel": [int(k) for k in (ks if isinstance(ks, list) else [ks, ks])],
            "flip": bool(a.get("flip_filters", True)), "channelwise": bool(a.get("channelwise", False)),
            "bias": "b" in pn, "activation": activation_of(a.get("nonlinearity"))}, \
            {"W": ("weight", None, "LC"), "b": ("bias", None, "OHW" if untie else "O")}
    if known == "Upscale1DLayer":
        sf = a.get("scale_factor", 1)
        return "Upscale1D", {"scale": int(sf[0] if isinstance(sf, list) else sf),
                             "mode": a.get("mode", "repeat")}, {}
    if known == "StandardizationLayer":
        nd = _nd(in_shapes, unsupported)
        axes = sorted({int(x) % nd for x in a.get("axes", list(range(2, nd)))})
        if 0 in axes:
            raise unsupported("standardization over the batch axis")
        return "Standardize", {"axes": axes, "epsilon": float(a.get("epsilon", 1e-4))}, {}
    if known in ("FeaturePoolLayer", "FeatureWTALayer"):
        nd = _nd(in_shapes, unsupported)
        axis = int(a.get("axis", 1)) % nd
        if axis == 0:
            raise unsupported("feature pooling over the batch axis")
        p = int(a["pool_size"])
        if known == "FeatureWTALayer":
            return "FeatureWTA", {"axis": axis, "pool_size": p}, {}
        fn = fn_name(a.get("pool_function")) or "max"
        if fn not in _REDUCE:
            raise unsupported(f"feature pooling with {fn!r}")
        return "FeaturePool", {"axis": axis, "pool_size": p, "mode": fn}, {}
    if known == "GlobalPoolLayer":
        fn = fn_name(a.get("pool_function")) or "mean"
        nd = _nd(in_shapes, unsupported)
        if fn in ("mean", "max") and nd == 4:
            return None                       # the importer's GlobalPool
        if fn not in _REDUCE:
            raise unsupported(f"global pooling with {fn!r}")
        if nd < 3:
            raise unsupported("global pooling of a rank-2 input")
        return "LasagneReduce", {"mode": fn, "axes": list(range(2, nd))}, {}
    if known in ("ConcatLayer", "ElemwiseSumLayer", "ElemwiseMergeLayer"):
        nd = _nd(in_shapes, unsupported)
        cr = _cropping(a, nd, unsupported)
        if known == "ElemwiseSumLayer":
            if cr is None:
                return None
            coeffs = [float(c) for c in a.get("coeffs", [1] * len(L["inputs"]))]
            return "CropMerge", {"kind": "sum", "coeffs": coeffs, "cropping": cr, "axis": None}, {}
        if known == "ConcatLayer":
            if cr is None:
                return None
            return "CropMerge", {"kind": "concat", "axis": int(a.get("axis", 1)) % nd,
                                 "cropping": cr, "coeffs": None}, {}
        fn = fn_name(a.get("merge_function"))
        if cr is None and fn in ("add", "mul", "maximum"):
            return None
        if fn not in _MERGE:
            raise unsupported(f"merge function {fn!r}")
        return "CropMerge", {"kind": _MERGE[fn], "cropping": cr, "axis": None, "coeffs": None}, {}
    return None


def _spp(L, in_shapes, unsupported):
    a = L.get("attrs", {})
    s = in_shapes[0] if in_shapes else None
    if s is None or len(s) != 4 or s[2] is None or s[3] is None:
        raise unsupported("spatial pyramid pooling needs a known input height and width")
    mode = a.get("mode", "max")
    if mode not in ("max", "average_inc_pad", "average_exc_pad"):
        raise unsupported(f"pooling mode {mode!r}")
    impl = "kaiming" if L.get("known") == "SpatialPyramidPoolingLayer" and \
        a.get("implementation", "fast") == "kaiming" else "fast"
    dims = [int(p) for p in a.get("pool_dims", [4, 2, 1])]
    if impl == "fast":
        for n in dims:
            for size in (int(s[2]), int(s[3])):
                win, st, bins = spp_fast_geometry(size, n)
                if bins != n:
                    raise unsupported(f"the pool_2d implementation of pyramid level {n} on "
                                      f"{size} pixels (window {win}, stride {st}) gives {bins} "
                                      f"bins, not {n} as the layer's output shape says")
    return "LasagneSPP", {"pool_dims": dims, "mode": "max" if mode == "max" else "avg",
                          "implementation": impl}, {}
