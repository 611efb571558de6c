"""Keras constructs of the layout family: ``ConstantPadding2D``, ``SliceAxis``."""
from __future__ import annotations

from keras import ops

from ..custom_layers import pad_pairs
from .registry import plain


@plain("ConstantPadding2D")
def _constant_padding(xs, cfg, weights, name):
    """``y = pad(x, ((0,0), (top,bottom), (left,right), (0,0)), value)`` -- ``keras.ops.pad``
    with ``constant_values=value``."""
    (t, b), (l, r) = pad_pairs(cfg.get("padding", ((0, 0), (0, 0))))
    return ops.pad(xs[0], [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float(cfg.get("value", 0.0)))


@plain("SliceAxis")
def _slice_axis(xs, cfg, weights, name):
    """``y = x[..., start:stop:step, ...]`` on ``axis`` (batch axis 0 excluded)."""
    x = xs[0]
    rank = len(x.shape)
    a = int(cfg.get("axis", -1))
    a = a + rank if a < 0 else a
    if a <= 0 or a >= rank:
        raise ValueError(f"SliceAxis axis {cfg.get('axis')} is invalid for rank {rank}")
    step = cfg.get("step")
    if step is not None and int(step) == 0:
        raise ValueError("SliceAxis step cannot be 0")
    idx = [slice(None)] * rank
    idx[a] = slice(cfg.get("start"), cfg.get("stop"), step)
    return x[tuple(idx)]
