"""Keras constructs of the merge family: ``WeightedSum`` and the Lasagne source ops CropMerge and
Concat (axis 0 of whole tensors)."""
from __future__ import annotations

import numpy as np
from keras import ops

from ...shapes import crop_slices
from .registry import plain, source_op


@plain("WeightedSum", inputs="merge")
def _weighted_sum(xs, cfg, weights, name):
    """``y = sum_i coeffs[i] * x_i`` (a coefficient 1 adds without a product)."""
    coeffs = [float(c) for c in cfg.get("coeffs", (1.0, 1.0))]
    if len(coeffs) != len(xs):
        raise ValueError(f"WeightedSum has {len(coeffs)} coefficients but got {len(xs)} inputs")
    y = None
    for c, x in zip(coeffs, xs):
        t = x if c == 1.0 else ops.multiply(x, c)
        y = t if y is None else ops.add(y, t)
    return y


@source_op("Concat", channels_first=False)
def _concat_whole(xs, cfg, weights):
    """``keras.ops.concatenate`` of the Keras tensors along Keras axis ``cfg['axis']``: the
    concatenation along axis 0 of whole tensors (a Lasagne dimshuffle / reshape moved the batch
    off axis 0), which a Concatenate layer, built per sample, does not compute."""
    return ops.concatenate(list(xs), axis=int(cfg["axis"]))


@source_op("CropMerge")
def _crop_merge(xs, cfg, weights):
    """Lasagne merges with ``cropping`` (autocrop) and the merge functions of ElemwiseMergeLayer:
    every input cropped to the smallest size on each cropped axis, then concatenated / summed
    with coefficients / folded left to right."""
    shapes = [(1,) + tuple(int(d) for d in s.shape[1:]) for s in xs]
    sl = crop_slices(shapes, cfg.get("cropping"))
    ys = []
    for s, cut in zip(xs, sl):
        if any(c != slice(None) for c in cut[1:]):
            s = s[(slice(None),) + tuple(cut[1:])]
        ys.append(s)
    kind = cfg["kind"]
    if kind == "concat":
        return ops.concatenate(ys, axis=int(cfg["axis"]))
    if kind == "sum":
        y = None
        for c, v in zip(cfg.get("coeffs") or [1.0] * len(ys), ys):
            t = v if float(c) == 1.0 else ops.multiply(v, np.float32(c))
            y = t if y is None else ops.add(y, t)
        return y
    fn = {"add": ops.add, "mul": ops.multiply, "maximum": ops.maximum,
          "minimum": ops.minimum, "sub": ops.subtract}[kind]
    y = ys[0]
    for v in ys[1:]:
        y = fn(y, v)
    return y
