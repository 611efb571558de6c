"""Keras constructs of the resize family: ``MaxUnpool2D`` (SegNet's Upsample with the pooling
mask) and the Lasagne source op Upscale1D."""
from __future__ import annotations

import numpy as np
from keras import ops

from .registry import plain, source_op


def _candidates(L: int, k: int, s: int, p: int, n: int) -> tuple[int, int, list[np.ndarray]]:
    """For every position ``y < L`` of a pooling input (kernel k, stride s, pad p, n pooled
    cells): the pooled cells whose window can cover it are ``c = (y + p) // s - a`` for
    ``a < A``; returns (A - 1 cells of padding before, cells of padding after, the gather index of
    each ``a`` into the padded pooled axis)."""
    A = -(-k // s)
    top = (np.arange(L) + p) // s
    after = max(0, int(top.max()) + 1 - n)
    return A - 1, after, [top - a + (A - 1) for a in range(A)]


@plain("MaxUnpool2D", inputs="merge")
def _max_unpool(xs, cfg, weights, name):
    """SegNet's Upsample, channels-last: ``y[r, c] = x[i]`` for the last pooled cell ``i`` (in
    row-major order, as the fork writes) whose window covers ``(r, c)`` and whose mask value is
    ``r * W + c`` (``W``: the pooling input width); 0 elsewhere.  The data and the mask are
    gathered (``take``) at each candidate cell and kept where ``mask == r * W + c`` (``where``),
    then padded with zero rows/columns up to ``size``."""
    x, m = xs
    kh, kw = (int(v) for v in cfg["pool_size"])
    sh, sw = (int(v) for v in cfg["strides"])
    ph, pw = (int(v) for v in cfg["padding"])
    Hi, Wi = (int(v) for v in cfg["pool_input"])
    H = int(cfg["size"][0])      # the width is the pooling input's (the rule checks it)
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:
        raise ValueError("MaxUnpool2D needs a known input size")
    bh, ah, rows = _candidates(Hi, kh, sh, ph, int(h))
    bw, aw, cols = _candidates(Wi, kw, sw, pw, int(w))
    if bh or ah or bw or aw:
        pads = [[0, 0], [bh, ah], [bw, aw], [0, 0]]
        x = ops.pad(x, pads)
        m = ops.pad(m, pads, constant_values=-1.0)
    target = (np.arange(Hi)[:, None] * Wi + np.arange(Wi)[None, :]).astype(np.float32)
    target = target[None, :, :, None]
    y = None
    for ri in reversed(rows):          # later (larger) pooled rows overwrite earlier ones
        xr, mr = ops.take(x, ri.astype(np.int32), axis=1), ops.take(m, ri.astype(np.int32), axis=1)
        for ci in reversed(cols):
            ci32 = ci.astype(np.int32)
            v, k = ops.take(xr, ci32, axis=2), ops.take(mr, ci32, axis=2)
            hit = ops.equal(k, target)
            y = ops.where(hit, v, 0.0) if y is None else ops.where(hit, v, y)
    if H > Hi:
        y = ops.pad(y, [[0, 0], [0, H - Hi], [0, 0], [0, 0]])
    return y


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
