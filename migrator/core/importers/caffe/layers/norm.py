"""Normalisation family: BatchNorm, Scale, Bias, LRN, MVN and SSD's Normalize.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ....errors import MigratorError
from ....ir import Param
from ..common import f32, strip_leading_ones, vector
from ..registry import layer_handler


@layer_handler("BatchNorm", ops=("BatchNorm",))
def batch_norm(b, lp):
    bp = lp.batch_norm_param
    n = lp.name
    attrs = {"form": "caffe", "axis": 1, "eps": f32(bp.eps),
             "moving_average_fraction": f32(bp.moving_average_fraction),
             "use_global_stats": bool(bp.use_global_stats) if bp.HasField("use_global_stats")
             else None}
    if attrs["use_global_stats"] is False:
        b.warnings.append(f"layer '{n}': BatchNorm use_global_stats is false (batch "
                             "statistics); the stored moving averages are used for inference")
    params = {}
    blobs = b.need_blobs(lp, 3, 3, "mean, variance, moving-average factor")
    if blobs is not None:
        mean = vector(blobs[0], "mean", b.blob_file, n)
        var = vector(blobs[1], "variance", b.blob_file, n, mean.size)
        sf = vector(blobs[2], "scale factor", b.blob_file, n, 1)
        if (var < 0).any():
            raise MigratorError(f"variance blob has negative values (min {float(var.min()):g})",
                                file=b.blob_file, layer=n)
        params["mean"] = Param("mean", mean, "C", "blobs[0]")
        params["variance"] = Param("variance", var, "C", "blobs[1]")
        params["scale_factor"] = Param("scale_factor", sf.reshape(1), "SCALAR", "blobs[2]")
    return "BatchNorm", attrs, params, 1


def scale_shaped(b, arr, num_axes, what, n):
    """A Scale/Bias blob and its layout for ``num_axes`` (1: 'C', 0: 'SCALAR', more: as stored)."""
    if num_axes == 1:
        return vector(arr, what, b.blob_file, n), "C"
    if num_axes == 0:
        return vector(arr, what, b.blob_file, n, 1), "SCALAR"
    if num_axes > 1:   # legacy 4-d blobs carry leading 1s
        arr = strip_leading_ones(arr, num_axes)
    return arr, ""


@layer_handler("Scale", ops=("Scale",), bottoms=(1, 2))
def scale(b, lp):
    sp = lp.scale_param
    n = lp.name
    two = len(lp.bottom) == 2
    bias = bool(sp.bias_term)
    attrs = {"axis": int(sp.axis), "num_axes": int(sp.num_axes), "bias": bias, "two_input": two}
    params = {}
    need = (0 if two else 1) + bias
    if need == 0:
        return "Scale", attrs, params, 1
    what = ", ".join((["scale"] if not two else []) + (["bias"] if bias else []))
    blobs = b.need_blobs(lp, need, need, what)
    if blobs is not None:
        k = 0
        if not two:
            v, lay = scale_shaped(b, blobs[0], sp.num_axes, "scale", n)
            params["scale"] = Param("scale", v, lay, "blobs[0]")
            k = 1
        if bias:
            v, lay = scale_shaped(b, blobs[k], sp.num_axes, "bias", n)
            params["bias"] = Param("bias", v, lay, f"blobs[{k}]")
    return "Scale", attrs, params, 1


@layer_handler("Bias", ops=("Bias",), bottoms=(1, 2))
def bias(b, lp):
    bp = lp.bias_param
    attrs = {"axis": int(bp.axis), "num_axes": int(bp.num_axes)}
    params = {}
    if len(lp.bottom) == 2:   # the bias is the second bottom (no blob)
        attrs["two_input"] = True
        return "Bias", attrs, params, 1
    blobs = b.need_blobs(lp, 1, 1, "bias")
    if blobs is not None:
        v, lay = scale_shaped(b, blobs[0], bp.num_axes, "bias", lp.name)
        params["bias"] = Param("bias", v, lay, "blobs[0]")
    return "Bias", attrs, params, 1


@layer_handler("LRN", ops=("LRN",))
def lrn(b, lp):
    p = lp.lrn_param
    size = int(p.local_size)
    if size < 1 or size % 2 == 0:
        raise b.err(f"LRN local_size must be odd, got {size}", lp.name)
    region = "within" if p.norm_region == 1 else "across"
    alpha = f32(p.alpha)
    coeff = alpha / size if region == "across" else alpha / (size * size)
    # Caffe's WITHIN_CHANNEL ignores k: its power layer computes (1 + alpha/n^2 * sum)^-beta
    # (measured against the real Caffe 1.0; helper B, numpy reference work)
    k = f32(p.k) if region == "across" else 1.0
    return "LRN", {"region": region, "size": size, "coeff": coeff, "beta": f32(p.beta),
                   "k": k, "source_alpha": alpha}, {}, 1


@layer_handler("MVN", ops=("MVN",))
def mvn(b, lp):
    mp = lp.mvn_param
    return "MVN", {"normalize_variance": bool(mp.normalize_variance),
                   "across_channels": bool(mp.across_channels), "eps": f32(mp.eps)}, {}, 1


@layer_handler("Normalize", ops=("Normalize",), fork="SSD")
def normalize(b, lp):
    npm = lp.norm_param
    shared = bool(npm.channel_shared)
    attrs = {"across_spatial": bool(npm.across_spatial), "channel_shared": shared,
             "eps": f32(npm.eps)}
    params = {}
    blobs = b.need_blobs(lp, 1, 1, "scale")
    if blobs is not None:
        v = vector(blobs[0], "scale", b.blob_file, lp.name, 1 if shared else None)
        params["scale"] = Param("scale", v, "C", "blobs[0]")
    return "Normalize", attrs, params, 1
