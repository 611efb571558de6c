"""Pooling family: Lasagne's 1-D, 2-D and 3-D pooling, global pooling, feature pooling /
winner-take-all and spatial pyramid pooling."""
from __future__ import annotations

from ...shapes import spp_fast_geometry
from .common import Unsupported, fn_name, input_of_rank, ndim, one_int, pair, pool_mode, triple
from .registry import converter

#: the pool functions FeaturePoolLayer / GlobalPoolLayer may name (``LasagneReduce`` modes)
REDUCE_FUNCTIONS = ("mean", "max", "min", "sum", "prod", "var", "std")


def pool_window(a: dict, parse) -> tuple:
    """(pool_size, stride, pad) of a Lasagne pooling layer's attrs ``a``, each read by ``parse``
    (``one_int``, ``pair`` or ``triple``); the stride defaults to the pool size."""
    k = parse(a.get("pool_size"), "pool_size")
    s = k if a.get("stride") is None else parse(a.get("stride"), "stride")
    return k, s, parse(a.get("pad", 0) or 0, "pad")


@converter("Pool2DLayer", "MaxPool2DLayer", "Pool2DDNNLayer", "MaxPool2DDNNLayer", "MaxPool2DCCLayer",
           ops=("Pool",))
def pool2d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """2-D pooling (plain, cuDNN, cuda-convnet): ignore_border=False is Lasagne's ceil rounding."""
    a = L.get("attrs", {})
    if len(L["output_shape"]) != 4:
        raise Unsupported("not a 2D pooling")
    kernel, stride, pad = pool_window(a, pair)
    ib = bool(a.get("ignore_border", True))
    m, div = pool_mode(a.get("mode", "max"))
    return "Pool", {"mode": m, "kernel": kernel, "stride": stride, "pad": pad,
                    "rounding": "floor" if ib else "lasagne_ceil",
                    "avg_divisor": div}, {}


@converter("GlobalPoolLayer", ops=("GlobalPool", "LasagneReduce"))
def global_pool(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """mean / max over the spatial axes of a 4-d input -> ``GlobalPool``; any other pool
    function or rank -> ``LasagneReduce`` (``pool_function(x.flatten(3), axis=2)``)."""
    a = L.get("attrs", {})
    fn = fn_name(a.get("pool_function")) or "mean"
    nd = ndim(in_shapes)
    if not (fn in ("mean", "max") and nd == 4):
        if fn not in REDUCE_FUNCTIONS:
            raise Unsupported(f"global pooling with {fn!r}")
        if nd < 3:
            raise Unsupported("global pooling of a rank-2 input")
        return "LasagneReduce", {"mode": fn, "axes": list(range(2, nd))}, {}
    fn = fn_name(a.get("pool_function"))
    mode = {"mean": "avg", "max": "max"}.get(fn or "")
    if mode is None or ndim(in_shapes) != 4:
        raise Unsupported(f"global pooling with {fn!r}")
    return "GlobalPool", {"mode": mode, "keepdims": False}, {}


@converter("FeaturePoolLayer", ops=("FeaturePool",))
def feature_pool(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Groups of ``pool_size`` consecutive features along ``axis`` -> ``FeaturePool``."""
    a = L.get("attrs", {})
    axis, p = _feature_groups(a, in_shapes)
    fn = fn_name(a.get("pool_function")) or "max"
    if fn not in REDUCE_FUNCTIONS:
        raise Unsupported(f"feature pooling with {fn!r}")
    return "FeaturePool", {"axis": axis, "pool_size": p, "mode": fn}, {}


@converter("FeatureWTALayer", ops=("FeatureWTA",))
def feature_wta(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Winner-take-all in groups of ``pool_size`` features -> ``FeatureWTA``."""
    axis, p = _feature_groups(L.get("attrs", {}), in_shapes)
    return "FeatureWTA", {"axis": axis, "pool_size": p}, {}


def _feature_groups(a: dict, in_shapes: list) -> tuple[int, int]:
    nd = ndim(in_shapes)
    axis = int(a.get("axis", 1)) % nd
    if axis == 0:
        raise Unsupported("feature pooling over the batch axis")
    return axis, int(a["pool_size"])


@converter("SpatialPyramidPoolingLayer", "SpatialPyramidPoolingDNNLayer", ops=("LasagneSPP",))
def spp(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """-> ``LasagneSPP``: the 'kaiming' regions, or the 'fast' / cuDNN pool_2d with window
    ceil(size/n) and stride floor(size/n) -- refused for input sizes where that gives other
    than n x n bins."""
    a = L.get("attrs", {})
    s = in_shapes[0] if in_shapes else None
    if s is None or len(s) != 4 or s[2] is None or s[3] is None:
        raise Unsupported("spatial pyramid pooling needs a known input height and width")
    mode = a.get("mode", "max")
    if mode not in ("max", "average_inc_pad", "average_exc_pad"):
        raise Unsupported(f"pooling mode {mode!r}")
    impl = "kaiming" if L.get("known") == "SpatialPyramidPoolingLayer" and \
        a.get("implementation", "fast") == "kaiming" else "fast"
    dims = [int(p) for p in a.get("pool_dims", [4, 2, 1])]
    if impl == "fast":
        for n in dims:
            for size in (int(s[2]), int(s[3])):
                win, st, bins = spp_fast_geometry(size, n)
                if bins != n:
                    raise Unsupported(f"the pool_2d implementation of pyramid level {n} on "
                                      f"{size} pixels (window {win}, stride {st}) gives {bins} "
                                      f"bins, not {n} as the layer's output shape says")
    return "LasagneSPP", {"pool_dims": dims, "mode": "max" if mode == "max" else "avg",
                          "implementation": impl}, {}


@converter("Pool1DLayer", "MaxPool1DLayer", ops=("Pool1D",))
def pool1d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Pool1DLayer / MaxPool1DLayer -> ``Pool1D``: the attrs of the 2-D op over (N, C, 1, L)."""
    a = L.get("attrs", {})
    input_of_rank(in_shapes, 3, "1-D layer")
    k, s, p = pool_window(a, one_int)
    m, div = pool_mode(a.get("mode", "max"))
    return "Pool1D", {"mode": m, "kernel": (1, k), "stride": (1, s), "pad": (0, p),
                      "rounding": "floor" if bool(a.get("ignore_border", True)) else "lasagne_ceil",
                      "avg_divisor": div}, {}


@converter("Pool3DLayer", "MaxPool3DLayer", "Pool3DDNNLayer", "MaxPool3DDNNLayer", ops=("Pool3D",))
def pool3d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """3-D pooling -> ``Pool3D`` (ignore_border=True only)."""
    a = L.get("attrs", {})
    input_of_rank(in_shapes, 5, "3-D layer")
    k, s, p = pool_window(a, triple)
    if not bool(a.get("ignore_border", True)):
        raise Unsupported("3-D pooling with ignore_border=False")
    m, div = pool_mode(a.get("mode", "max"))
    return "Pool3D", {"mode": m, "kernel": k, "stride": s, "pad": p, "avg_divisor": div}, {}
