"""Resize family: the forks' Upsample (YOLOv3) and Interp (DeepLab / PSPNet).

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ..registry import layer_handler


@layer_handler("Upsample", ops=("Upscale",), fork="YOLOv3 forks")
def upsample(b, lp):
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


@layer_handler("Interp", ops=("Interp",), fork="DeepLab / PSPNet")
def interp(b, lp):
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
