"""Keras constructs of the pool family: ``ExactAveragePooling2D`` and the Lasagne source ops
FeaturePool, FeatureWTA, LasagneSPP."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ...shapes import spp_regions
from ..custom_layers import avg_pool_divisor, pad_pairs, pair
from .registry import plain, reduce_by, source_op


@plain("ExactAveragePooling2D")
def _exact_avg_pool(xs, cfg, weights, name):
    """``y[i, j] = sum(window) / (rows_counted(i) * cols_counted(j))``: zero ``padding``,
    built-in ``AveragePooling2D`` ('valid', divides by ``kh*kw``), times the constant
    ``kh*kw / count`` (a numpy constant when H, W are known; else computed from a padded
    mask of ones)."""
    x = xs[0]
    pool = pair(cfg.get("pool_size", (2, 2)), "pool_size")
    strides = pool if cfg.get("strides") is None else pair(cfg["strides"], "strides")
    (t, b), (l, r) = padding = pad_pairs(cfg.get("padding", ((0, 0), (0, 0))))
    (ct, cb), (cl, cr) = counted = pad_pairs(cfg.get("counted_padding", ((0, 0), (0, 0))),
                                              "counted_padding")
    for (p0, p1), (c0, c1) in zip(padding, counted):
        if c0 > p0 or c1 > p1:
            raise ValueError("counted_padding cannot exceed padding")
    xp = ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]]) if (t or b or l or r) else x
    avg = keras.layers.AveragePooling2D(pool, strides=strides, padding="valid", name=f"{name}_avg")(xp)
    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None:
        dh = avg_pool_divisor(int(h), pool[0], strides[0], padding[0], counted[0])
        dw = avg_pool_divisor(int(w), pool[1], strides[1], padding[1], counted[1])
        with np.errstate(divide="ignore"):
            f = ((pool[0] * pool[1]) / np.outer(dh, dw)).astype(np.float32)
        if np.all(f == 1.0):
            return avg
        return ops.multiply(avg, f[None, :, :, None])
    ones = ops.ones_like(x[..., 0:1])
    m = ops.pad(ones, [[0, 0], [ct, cb], [cl, cr], [0, 0]], constant_values=1.0)
    m = ops.pad(m, [[0, 0], [t - ct, b - cb], [l - cl, r - cr], [0, 0]])
    cnt = ops.average_pool(m, pool, strides=strides, padding="valid")
    return ops.multiply(avg, ops.divide(1.0, cnt))


def _grouped(x, axis, p):
    """``x`` with source ``axis`` split into (size / p, p): groups of p consecutive features."""
    s = tuple(int(d) for d in x.shape[1:])
    a = axis - 1
    return ops.reshape(x, (-1,) + s[:a] + (s[a] // p, p) + s[a + 1:])


@source_op("FeaturePool")
def _feature_pool(xs, cfg, weights):
    """Lasagne FeaturePoolLayer: groups of pool_size consecutive features along axis reduced
    with the pool function."""
    ax, p = int(cfg["axis"]), int(cfg["pool_size"])
    return reduce_by(_grouped(xs[0], ax, p), cfg["mode"], ax + 1)


@source_op("FeatureWTA")
def _feature_wta(xs, cfg, weights):
    """Lasagne FeatureWTALayer: in each group of pool_size consecutive features the first
    maximum is kept, the others set to 0."""
    x = xs[0]
    ax, p = int(cfg["axis"]), int(cfg["pool_size"])
    g = _grouped(x, ax, p)
    idx = ops.expand_dims(ops.argmax(g, axis=ax + 1), ax + 1)
    shape = [1] * len(g.shape)
    shape[ax + 1] = p
    ar = np.arange(p, dtype=np.int32).reshape(shape)
    mask = ops.cast(ops.equal(ops.cast(idx, "int32"), ar), x.dtype)
    return ops.reshape(ops.multiply(g, mask), (-1,) + tuple(int(d) for d in x.shape[1:]))


@source_op("LasagneSPP")
def _lasagne_spp(xs, cfg, weights):
    """Lasagne SpatialPyramidPooling(DNN)Layer: max / mean over every bin, levels in order,
    bins row-major: (N, C, sum n*n)."""
    x = xs[0]
    f = ops.max if cfg["mode"] == "max" else ops.mean
    bins = [f(x[:, :, h0:h1, w0:w1], axis=(2, 3))
            for h0, h1, w0, w1 in spp_regions(int(x.shape[2]), int(x.shape[3]), cfg)]
    return ops.stack(bins, axis=2)


@plain("MaxPoolMask")
def _max_pool_mask(xs, cfg, weights, name):
    """Caffe MAX pooling's argmax mask (its second top), channels-last: for each window
    (``padding`` ((top, bottom), (left, right)) cells that never win), visited in row-major
    order, a cell replaces the running maximum (starting at -FLT_MAX) only when strictly
    greater; the output is the flat index ``h * W + w`` of the input plane (float), -1 when no
    cell beats -FLT_MAX.  One strided slice, ``greater`` and two ``where`` per window tap."""
    x = xs[0]
    kh, kw = pair(cfg.get("pool_size", (2, 2)), "pool_size")
    sh, sw = pair(cfg.get("strides") or (kh, kw), "strides")
    (t, b), (l, r) = pad_pairs(cfg.get("padding", ((0, 0), (0, 0))))
    H, W = x.shape[1], x.shape[2]
    if H is None or W is None:
        raise ValueError("MaxPoolMask needs a known input size (the indices are constants)")
    H, W = int(H), int(W)
    Ho, Wo = (H + t + b - kh) // sh + 1, (W + l + r - kw) // sw + 1
    xp = ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float("-inf")) \
        if (t or b or l or r) else x
    lowest = float(np.finfo(np.float32).min)
    best = arg = None
    for i in range(kh):
        rows = np.arange(Ho) * sh - t + i
        for j in range(kw):
            cols = np.arange(Wo) * sw - l + j
            v = xp[:, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw, :]
            if best is None:
                best = ops.full_like(v, lowest)
                arg = ops.full_like(v, -1.0)
            idx = (rows[:, None] * W + cols[None, :]).astype(np.float32)[None, :, :, None]
            upd = ops.greater(v, best)
            best = ops.where(upd, v, best)
            arg = ops.where(upd, idx, arg)
    return arg
