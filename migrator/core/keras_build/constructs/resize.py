"""Keras constructs of the resize family: the Lasagne source op Upscale1D."""
from __future__ import annotations

from keras import ops

from .registry import source_op


@source_op("Upscale1D")
def _upscale_1d(xs, cfg, weights):
    """Lasagne Upscale1DLayer on (N, C, L): 'repeat' each value ``scale`` times, or 'dilate'
    (the value, then scale-1 zeros)."""
    x = xs[0]
    a = int(cfg["scale"])
    if cfg["mode"] == "repeat":
        return ops.repeat(x, a, axis=2)
    z = ops.zeros_like(x)
    return ops.reshape(ops.stack([x] + [z] * (a - 1), axis=-1), (-1, int(x.shape[1]), int(x.shape[2]) * a))
