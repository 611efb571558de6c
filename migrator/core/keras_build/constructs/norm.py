"""Keras constructs of the norm family: ``LRN``, ``ChannelAffine`` (Scale / Bias not fused
into a BatchNormalization), ``EpsL2Normalization`` (SSD's Normalize with a large eps)."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ..custom_layers import lrn_window_sum
from .registry import plain


@plain("LRN")
def _lrn(xs, cfg, weights, name):
    """``y = x / (k + coeff * S)^beta``; ``S`` the zero-padded sum of squares over ``size``
    channels starting ``(size-1)//2`` before ``c`` (``region='across'``: a sum of shifted
    channel slices) or over a ``size x size`` window (``'within'``: average pooling of the
    padded squares times ``size**2``)."""
    x = xs[0]
    region = cfg.get("region", "across")
    if region not in ("across", "within"):
        raise ValueError(f"LRN region must be 'across' or 'within', got {region!r}")
    n = int(cfg.get("size", 5))
    if n < 1:
        raise ValueError(f"LRN size must be >= 1, got {n}")
    coeff, beta, k = float(cfg.get("coeff", 1e-4)), float(cfg.get("beta", 0.75)), float(cfg.get("k", 1.0))
    c = x.shape[-1]
    if region == "across" and c is None:
        raise ValueError("LRN across channels needs a known channel count")
    s = lrn_window_sum(ops.square(x), n, region, c)
    return ops.divide(x, ops.power(k + coeff * s, beta))


@plain("ChannelAffine")
def _channel_affine(xs, cfg, weights, name):
    """``y = x * scale + bias`` per channel.  Channels-last ``axis`` (the usual case): a 1x1
    built-in ``DepthwiseConv2D`` holding ``scale`` as its kernel and ``bias`` as its bias
    (rank 4 directly; other ranks reshaped to ``(P, 1, C)`` and back).  Any other axes: the
    parameters become numpy constants broadcast over the other axes."""
    x = xs[0]
    rank = len(x.shape)
    axis = cfg.get("axis", -1)
    use_scale, use_bias = bool(cfg.get("use_scale", True)), bool(cfg.get("use_bias", True))
    if not (use_scale or use_bias):
        raise ValueError("ChannelAffine needs use_scale or use_bias")
    axes = sorted((a + rank if a < 0 else a) for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    if any(a <= 0 or a >= rank for a in axes):
        raise ValueError(f"ChannelAffine axis {axis} is invalid for rank {rank}")
    pshape = tuple(x.shape[a] for a in axes)
    if any(d is None for d in pshape):
        raise ValueError(f"ChannelAffine needs a known size on axis {axis}, got {tuple(x.shape)}")
    ws = list(weights) if weights is not None else []
    want = int(use_scale) + int(use_bias)
    if ws and len(ws) != want:
        raise ValueError(f"ChannelAffine expects {want} weight arrays, got {len(ws)}")
    scale = np.asarray(ws[0], np.float32).reshape(pshape) if (ws and use_scale) else np.ones(pshape, np.float32)
    bias = (np.asarray(ws[-1], np.float32).reshape(pshape) if (ws and use_bias)
            else np.zeros(pshape, np.float32))
    middle = tuple(x.shape[1:rank - 1])
    if axes == [rank - 1] and (rank == 4 or all(d is not None for d in middle)):
        c = int(pshape[0])
        dw = keras.layers.DepthwiseConv2D(1, use_bias=use_bias, name=f"{name}_affine")
        h = x
        if rank != 4:
            p = int(np.prod(middle)) if middle else 1
            h = keras.layers.Reshape((p, 1, c), name=f"{name}_to4d")(x)
        y = dw(h)
        dw.set_weights([scale.reshape(1, 1, c, 1)] + ([bias] if use_bias else []))
        if rank != 4:
            y = keras.layers.Reshape(tuple(x.shape[1:]), name=f"{name}_back")(y)
        return y
    bshape = (1,) + tuple(x.shape[a] if a in axes else 1 for a in range(1, rank))
    y = x
    if use_scale:
        y = ops.multiply(y, scale.reshape(bshape))
    if use_bias:
        y = ops.add(y, bias.reshape(bshape))
    return y


@plain("EpsL2Normalization")
def _eps_l2_normalization(xs, cfg, weights, name):
    """``y = x / sqrt(sum(x^2, axis) + epsilon)`` (SSD's Normalize: ``across_spatial`` sums over
    H, W, C; else over C per position)."""
    x = xs[0]
    axis = cfg.get("axis", [-1])
    axis = tuple(int(a) for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    eps = float(cfg.get("epsilon", 1e-10))
    ss = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return ops.divide(x, ops.sqrt(ops.add(ss, eps)))
