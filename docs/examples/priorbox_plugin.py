"""A Migrator plugin: SSD's PriorBox layer (weiliu89/caffe, ssd branch).

    migrator convert ssd_deploy.prototxt ssd.caffemodel -o ssd.keras --plugin priorbox_plugin.py

PriorBox computes, for every position (h, w) of its first bottom (a feature map) and every
prior size, a box in coordinates relative to the image (its second bottom, or img_size /
img_h / img_w), then the 4 variances of each box:

    top shape (1, 2, H * W * num_priors * 4); channel 0 the boxes (xmin, ymin, xmax, ymax),
    channel 1 the variances.

    aspect ratios: 1, then each aspect_ratio not already in the list, and 1/ar when flip;
    num_priors = len(ratios) * len(min_size) + len(max_size);
    step_w = step_w or step or img_w / W (the same for h); centre
    cx = (w + offset) * step_w, cy = (h + offset) * step_h;
    per min_size s (k-th): a box s x s; if max_size: sqrt(s * max_size[k]) squared;
    then per ratio ar != 1: s * sqrt(ar) wide, s / sqrt(ar) high;
    box = ((cx - bw/2) / img_w, (cy - bh/2) / img_h, (cx + bw/2) / img_w, (cy + bh/2) / img_h),
    clipped to [0, 1] when clip; variance: one value for all four coordinates, or four values
    (default 0.1).

The output depends only on the input SHAPES and the parameters: the Keras construct computes the
boxes with numpy while the model is built (from the static shapes) and stores them as a constant.
"""
import math

import numpy as np


def _ratios(attrs):
    out = [1.0]
    for ar in attrs["aspect_ratio"]:
        if any(abs(ar - r) < 1e-6 for r in out):
            continue
        out.append(float(ar))
        if attrs["flip"]:
            out.append(1.0 / ar)
    return out


def num_priors(attrs):
    return len(_ratios(attrs)) * len(attrs["min_size"]) + len(attrs["max_size"])


def prior_boxes(attrs, layer_hw, image_hw):
    """The (1, 2, H * W * num_priors * 4) float32 output for a feature map of layer_hw."""
    lh, lw = layer_hw
    ih = attrs["img_h"] or image_hw[0]
    iw = attrs["img_w"] or image_hw[1]
    sh = attrs["step_h"] or ih / lh
    sw = attrs["step_w"] or iw / lw
    ratios = _ratios(attrs)
    boxes = []
    for h in range(lh):
        for w in range(lw):
            cx, cy = (w + attrs["offset"]) * sw, (h + attrs["offset"]) * sh
            for k, s in enumerate(attrs["min_size"]):
                sizes = [(s, s)]
                if attrs["max_size"]:
                    m = math.sqrt(s * attrs["max_size"][k])
                    sizes.append((m, m))
                sizes += [(s * math.sqrt(ar), s / math.sqrt(ar)) for ar in ratios
                          if abs(ar - 1.0) >= 1e-6]
                for bw, bh in sizes:
                    boxes.append(((cx - bw / 2) / iw, (cy - bh / 2) / ih,
                                  (cx + bw / 2) / iw, (cy + bh / 2) / ih))
    b = np.asarray(boxes, dtype=np.float64).reshape(-1)
    if attrs["clip"]:
        b = np.clip(b, 0.0, 1.0)
    var = attrs["variance"]
    v = np.tile(np.asarray(var if len(var) == 4 else var[:1] * 4, dtype=np.float64), len(b) // 4)
    return np.stack([b, v])[None].astype(np.float32)


# ---- the four pieces ------------------------------------------------------------------
def attrs_from_caffe(p, layer):
    """prior_box_param (as {field: [values]}) -> the node's canonical attrs."""
    def one(key, default):
        return p.get(key, [default])[-1]
    size = one("img_size", 0)
    step = one("step", 0.0)
    a = {"min_size": [float(x) for x in p.get("min_size", [])],
         "max_size": [float(x) for x in p.get("max_size", [])],
         "aspect_ratio": [float(x) for x in p.get("aspect_ratio", [])],
         "flip": bool(one("flip", True)), "clip": bool(one("clip", False)),
         "variance": [float(x) for x in p.get("variance", [0.1])],
         "img_h": int(one("img_h", size)), "img_w": int(one("img_w", size)),
         "step_h": float(one("step_h", step)), "step_w": float(one("step_w", step)),
         "offset": float(one("offset", 0.5))}
    if not a["min_size"]:
        raise ValueError("PriorBox needs min_size")
    if a["max_size"] and len(a["max_size"]) != len(a["min_size"]):
        raise ValueError("max_size must have as many values as min_size")
    if len(a["variance"]) not in (1, 4):
        raise ValueError("variance must have 1 or 4 values")
    return a


def shape(node, in_shapes, ctx):
    x = in_shapes[0]
    if len(x) != 4 or x[2] is None or x[3] is None:
        raise ctx.error(f"PriorBox needs a feature map of known size (N, C, H, W), got {x}")
    return [(1, 2, x[2] * x[3] * num_priors(node.attrs) * 4)]


def kernel(node, xs):
    return [prior_boxes(node.attrs, xs[0].shape[2:], xs[1].shape[2:] if len(xs) > 1 else (0, 0))]


def keras(xs, attrs, name):
    from keras import ops
    x = xs[0]
    image_hw = tuple(xs[1].shape[2:]) if len(xs) > 1 else (0, 0)
    boxes = prior_boxes(attrs, tuple(x.shape[2:]), image_hw)     # (1, 2, K)
    # the same boxes for every batch item: (N, 1, 1) zeros + (1, 2, K)
    zero = ops.reshape(ops.zeros_like(x[:, :1, 0, 0]), (-1, 1, 1))
    return ops.add(zero, ops.convert_to_tensor(boxes))


def register(api):
    api.add_layer_type(
        "PriorBox", family="layout",
        doc=("SSD PriorBox. inputs: [feature map (N, C, H, W), image (N, C', IH, IW)]. attrs: "
             "min_size, max_size, aspect_ratio (lists), flip, clip, variance (1 or 4), img_h, "
             "img_w, step_h, step_w (0: from the shapes), offset. out (1, 2, H*W*num_priors*4): "
             "boxes relative to the image, then their variances."),
        shape=shape, kernel=kernel, keras=keras,
        caffe_type="PriorBox", caffe_params="prior_box_param", caffe_bottoms=(1, 2),
        caffe_attrs=attrs_from_caffe)
