"""Layer types of popular Caffe forks, and the unknown-field policy of the Caffe importer.

Each handler reads one fork layer into canonical ops (``fn(builder, lp) -> (op, attrs,
params, num_outputs)``, like the ``_l_<Type>`` methods of :class:`.caffe._Builder`):

* ``ReLU6`` (MobileNet-v2 forks): ``Activation`` kind ``relu6``: ``min(max(x, 0), 6)``;
* ``Upsample`` with one bottom (YOLOv3 forks): nearest neighbour, ``upsample_param.scale``
  (or ``scale_h``/``scale_w``) -> ``Upscale`` mode ``repeat``.  SegNet's two-bottom
  max-unpooling ``Upsample`` is refused with a clear message;
* ``Interp`` (DeepLab / PSPNet): bilinear, align-corners style -> ``Interp``;
* ``Permute`` (SSD): ``permute_param.order`` -> ``Transpose`` (the missing axes follow in
  their order, as SSD does);
* ``Normalize`` (SSD): L2 normalisation -> ``Normalize`` (learned scale blob);
* ``ConvolutionDepthwise`` / ``DepthwiseConvolution``: a Convolution whose group is the
  number of input channels -> ``Conv``;
* ``ShuffleChannel`` (ShuffleNet): ``shuffle_channel_param.group`` -> ``ShuffleChannel``.

The formulas are in ``docs/semantics.md`` ("Caffe forks") and :data:`migrator.core.ir.OPS`.
"""
from __future__ import annotations

from typing import Any

from ..errors import MigratorError

#: Fork layer types the Caffe importer converts (importers/caffe.py adds them to its
#: SUPPORTED_TYPES).
FORK_TYPES = frozenset({"ReLU6", "Upsample", "Interp", "Permute", "Normalize",
                        "ConvolutionDepthwise", "DepthwiseConvolution", "ShuffleChannel"})


def _relu6(b, lp):
    return "Activation", {"kind": "relu6"}, {}, 1


def _upsample(b, lp):
    up = lp.upsample_param
    n = lp.name
    if len(lp.bottom) != 1 or up.HasField("upsample_h") or up.HasField("upsample_w"):
        raise b.err("SegNet-style Upsample (max-unpooling with the pooling mask as a second "
                    "bottom) is not supported; only the one-bottom nearest-neighbour Upsample is", n)
    if up.HasField("scale_h") or up.HasField("scale_w"):
        if not (up.HasField("scale_h") and up.HasField("scale_w")):
            raise b.err("upsample_param needs both scale_h and scale_w", n)
        sh, sw = int(up.scale_h), int(up.scale_w)
    elif up.HasField("scale"):
        sh = sw = int(up.scale)
    else:   # the forks disagree on the default (1 in YOLOv3 forks, 2 in SegNet)
        raise b.err("Upsample has no upsample_param.scale (the forks' defaults differ; give it)", n)
    if sh < 1 or sw < 1:
        raise b.err(f"Upsample scale {(sh, sw)} must be >= 1", n)
    return "Upscale", {"scale": (sh, sw), "mode": "repeat"}, {}, 1


def _interp(b, lp):
    ip = lp.interp_param
    n = lp.name
    if len(lp.bottom) != 1:
        raise b.err("Interp with a second bottom (size taken from another blob) is not supported", n)
    pb_, pe = int(ip.pad_beg), int(ip.pad_end)
    if pb_ > 0 or pe > 0:
        raise b.err(f"Interp pad_beg/pad_end must be <= 0 (cropping), got {pb_}/{pe}", n)
    has_z, has_s = ip.HasField("zoom_factor"), ip.HasField("shrink_factor")
    has_hw = ip.HasField("height") and ip.HasField("width")
    if has_s and not has_z:
        mode = "shrink"
    elif has_z and not has_s:
        mode = "zoom"
    elif has_hw:
        mode = "size"
    elif has_s and has_z:
        mode = "shrink_zoom"
    else:
        raise b.err("Interp needs zoom_factor, shrink_factor or height and width", n)
    z, s = int(ip.zoom_factor), int(ip.shrink_factor)
    if z < 1 or s < 1:
        raise b.err(f"Interp zoom_factor {z} / shrink_factor {s} must be >= 1", n)
    if mode == "size" and (ip.height < 1 or ip.width < 1):
        raise b.err(f"Interp height/width {ip.height}x{ip.width} must be >= 1", n)
    return "Interp", {"mode": mode, "zoom_factor": z, "shrink_factor": s,
                      "height": int(ip.height), "width": int(ip.width),
                      "pad_beg": pb_, "pad_end": pe}, {}, 1


def _permute(b, lp):
    order = [int(o) for o in lp.permute_param.order]
    if len(set(order)) != len(order):
        raise b.err(f"Permute order {order} repeats an axis", lp.name)
    if not order:
        raise b.err("Permute has no permute_param.order", lp.name)
    # SSD appends the axes the order leaves out, in their order (inputs are 4-d in practice)
    order += [a for a in range(max(4, max(order) + 1)) if a not in order]
    return "Transpose", {"pattern": order}, {}, 1


def _normalize(b, lp):
    from ..ir import Param
    from .caffe import _f32, _vector
    npm = lp.norm_param
    shared = bool(npm.channel_shared)
    attrs = {"across_spatial": bool(npm.across_spatial), "channel_shared": shared,
             "eps": _f32(npm.eps)}
    params = {}
    blobs = b._need_blobs(lp, 1, 1, "scale")
    if blobs is not None:
        v = _vector(blobs[0], "scale", b._wfile, lp.name, 1 if shared else None)
        params["scale"] = Param("scale", v, "C", "blobs[0]")
    return "Normalize", attrs, params, 1


def _depthwise(b, lp):
    """Convolution with group = input channels.  The forks' layers compute one filter per
    input channel whatever ``group`` says; the weight blob is (C*m, 1, kh, kw)."""
    O, kernel, pad, stride, dilation, group, bias = b._conv_geometry(lp, "convolution")
    n = lp.name
    if group == 1:
        # group from the weight blob (in/group = 1) or, without weights, from num_output
        got = b._blobs(lp)
        if got is not None and got[0][0].ndim >= 2 and got[0][0].shape[-3] != 1:
            raise MigratorError(f"{lp.type} weight blob of shape {tuple(got[0][0].shape)} is not "
                                "depthwise (expected (C, 1, kh, kw))", file=b._wfile, layer=n)
        group = O
    attrs = {"num_output": O, "kernel": kernel, "stride": stride, "pad": pad,
             "dilation": dilation, "group": group, "bias": bias, "flip": False,
             "activation": None, "depthwise_type": lp.type}
    params = b._conv_params(lp, O, kernel, group, bias, transposed=False)
    return "Conv", attrs, params, 1


def _shuffle(b, lp):
    g = int(lp.shuffle_channel_param.group)
    if g < 1:
        raise b.err(f"ShuffleChannel group {g} must be >= 1", lp.name)
    return "ShuffleChannel", {"group": g}, {}, 1


FORK_HANDLERS = {
    "ReLU6": _relu6, "Upsample": _upsample, "Interp": _interp, "Permute": _permute,
    "Normalize": _normalize, "ConvolutionDepthwise": _depthwise,
    "DepthwiseConvolution": _depthwise, "ShuffleChannel": _shuffle,
}
assert set(FORK_HANDLERS) == FORK_TYPES


# ------------------------------------------------------------------------------------
# unknown fields (called by the importer)
# ------------------------------------------------------------------------------------
def collect_layer_unknowns(b, lp) -> None:
    """Record the unknown fields of the layer entry being imported (it stays in the deploy
    graph: dropped data/loss layers never get here)."""
    items = b.unknown_scan.layers.get(b._cur_entry, [])
    for it in items:
        it.layer, it.type = lp.name, lp.type
        b.unknown_items.append(it)


def check_unknown_fields(b) -> list[dict[str, Any]]:
    """Apply the accept specs; raise for the first field that is neither training-only nor
    accepted (mode 'error'); return the records for ``graph.meta['caffe']``."""
    from .caffe_fields import apply_accepts, unknown_error
    if b.unknown_scan is None:
        return []
    items = list(b.unknown_scan.net) + list(b.unknown_items)
    left = apply_accepts(items, b.accept_unknown)
    if left and b.unknown_mode != "collect":
        raise unknown_error(left, b.file)
    net_level = [it for it in left if it.layer is None]
    if net_level:   # no layer to mark: even 'collect' cannot carry on
        raise unknown_error(net_level, b.file)
    records = [it.to_dict() for it in items if not it.training_only()]
    skipped = [it for it in items if it.training_only()]
    if skipped:
        b.warnings.append(f"{len(skipped)} training-only field(s) unknown to Migrator were read "
                          f"past: {', '.join(sorted({it.path for it in skipped})[:6])}")
    for it in items:
        if it.accepted:
            b.warnings.append(f"layer '{it.layer}': unknown field '{it.path}' accepted by the "
                              f"user ({it.accepted_by}); its semantics are unverified")
    return records


__all__ = ["FORK_HANDLERS", "FORK_TYPES", "check_unknown_fields", "collect_layer_unknowns"]
