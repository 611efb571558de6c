"""Keras constructs of the conv family: the Lasagne source ops LocallyConnected and
AddUntiedBias (Conv with untied biases)."""
from __future__ import annotations

import numpy as np
from keras import ops

from ...shapes import locally_connected_taps
from .registry import source_op


@source_op("AddUntiedBias", channels_first=False)
def _add_untied_bias(xs, cfg, weights):
    """Conv with untied biases: ``weights[0]``, the bias in Keras layout (H, W, O), added to the
    Conv2D's output."""
    return ops.add(xs[0], np.asarray(weights[0], np.float32))


@source_op("LocallyConnected")
def _locally_connected(xs, cfg, weights):
    """Lasagne LocallyConnected2DLayer (stride 1, 'same'): the sum over the kh*kw filter taps of
    the shifted input slice times that tap's per-position weights (an einsum over channels, or
    a product when channelwise), plus the tied (O,) or untied (O, H, W) bias."""
    x = xs[0]
    kh, kw = (int(k) for k in cfg["kernel"])
    H, Wd = int(x.shape[2]), int(x.shape[3])
    W = np.asarray(weights[0], np.float32)
    xp = ops.pad(x, [[0, 0], [0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2]])
    y = None
    for dy, dx, fi, fj in locally_connected_taps(kh, kw, bool(cfg["flip"])):
        patch = xp[:, :, kh // 2 + dy:kh // 2 + dy + H, kw // 2 + dx:kw // 2 + dx + Wd]
        if cfg["channelwise"]:
            t = ops.multiply(patch, W[None, :, fi, fj])
        else:
            t = ops.einsum("nchw,ochw->nohw", patch, np.ascontiguousarray(W[:, :, fi, fj]))
        y = t if y is None else ops.add(y, t)
    if len(weights) > 1:
        b = np.asarray(weights[1], np.float32)
        y = ops.add(y, b[None, :, None, None] if b.ndim == 1 else b[None])
    return y
