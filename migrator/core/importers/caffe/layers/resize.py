"""Resize family: the forks' Upsample (YOLOv3 nearest; SegNet max-unpooling) and Interp
(DeepLab / PSPNet).

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ..registry import layer_handler


@layer_handler("Upsample", ops=("Upscale", "MaxUnpool"), fork="YOLOv3 forks; SegNet",
               bottoms=(1, 2))
def upsample(b, lp):
    up = lp.upsample_param
    n = lp.name
    if len(lp.bottom) == 2:
        return _segnet_upsample(b, lp)
    if up.HasField("upsample_h") or up.HasField("upsample_w"):
        raise b.err("upsample_h/upsample_w belong to SegNet's Upsample, which takes the pooling "
                    "mask as a second bottom; this Upsample has one bottom", n)
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


def _segnet_upsample(b, lp):
    """SegNet's max-unpooling Upsample (bottoms: data, pooling mask), with the settings its
    fork's ``LayerSetUp`` accepts: ``upsample_h`` and ``upsample_w`` (the output size), else
    ``scale`` (default 2) or ``scale_h`` and ``scale_w``, each > 1, with ``pad_out_h/w``
    (one row/column less) only for a scale of 2."""
    up = lp.upsample_param
    n = lp.name
    has_hw = up.HasField("upsample_h") and up.HasField("upsample_w")
    if up.HasField("upsample_h") != up.HasField("upsample_w"):
        raise b.err("upsample_param needs both upsample_h and upsample_w", n)
    size = None
    sh = sw = 2
    if has_hw:
        size = (int(up.upsample_h), int(up.upsample_w))
        if min(size) <= 1:
            raise b.err(f"Upsample upsample_h/upsample_w {size} must be > 1", n)
    elif up.HasField("scale_h") or up.HasField("scale_w"):
        if up.HasField("scale") or not (up.HasField("scale_h") and up.HasField("scale_w")):
            raise b.err("upsample_param needs scale, or scale_h and scale_w (not both)", n)
        sh, sw = int(up.scale_h), int(up.scale_w)
    elif up.HasField("scale"):
        sh = sw = int(up.scale)
    if sh <= 1 or sw <= 1:
        raise b.err(f"Upsample scale {(sh, sw)} must be > 1 (SegNet's fork checks it)", n)
    pad_out = (bool(up.pad_out_h), bool(up.pad_out_w))
    if size is None and ((pad_out[0] and sh != 2) or (pad_out[1] and sw != 2)):
        raise b.err("Upsample pad_out_h/pad_out_w need a scale of 2 (SegNet's fork checks it)", n)
    return "MaxUnpool", {"scale": (sh, sw), "pad_out": pad_out if size is None else (False, False),
                         "size": size}, {}, 1


@layer_handler("Interp", ops=("Interp",), fork="DeepLab / PSPNet", bottoms=(1, 2))
def interp(b, lp):
    ip = lp.interp_param
    n = lp.name
    pb_, pe = int(ip.pad_beg), int(ip.pad_end)
    if pb_ > 0 or pe > 0:
        raise b.err(f"Interp pad_beg/pad_end must be <= 0 (cropping), got {pb_}/{pe}", n)
    if len(lp.bottom) == 2:     # the output size is the second bottom's (H, W)
        given = [f for f in ("zoom_factor", "shrink_factor", "height", "width") if ip.HasField(f)]
        if given:
            raise b.err(f"Interp with a second bottom cannot also give {', '.join(given)} (the "
                        "forks refuse it as ambiguous)", n)
        return "Interp", {"mode": "like", "zoom_factor": 1, "shrink_factor": 1, "height": 0,
                          "width": 0, "pad_beg": pb_, "pad_end": pe}, {}, 1
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
