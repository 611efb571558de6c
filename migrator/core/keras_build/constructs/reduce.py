"""Keras constructs of the reduce family: ``CaffeArgMax`` and the Lasagne source op
LasagneReduce."""
from __future__ import annotations

import numpy as np
from keras import ops

from .registry import plain, reduce_by, source_op


@plain("CaffeArgMax")
def _caffe_argmax(xs, cfg, weights, name):
    """Caffe ArgMax on a source-order tensor: the top_k indices (as floats) or values in
    descending order along ``axis``; without an axis, per sample over the flattened rest, out
    (N, 1 | 2, top_k, 1...) = indices, then values when out_max_val."""
    x = xs[0]
    k = int(cfg.get("top_k", 1))
    out_val = bool(cfg.get("out_max_val", False))
    axis = cfg.get("axis")
    if axis is not None:
        xm = ops.moveaxis(x, int(axis), -1)
        vals, idx = ops.top_k(xm, k, sorted=True)
        res = vals if out_val else ops.cast(idx, x.dtype)
        return ops.moveaxis(res, -1, int(axis))
    rank = len(x.shape)
    flat = ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))
    vals, idx = ops.top_k(flat, k, sorted=True)
    idx = ops.cast(idx, x.dtype)
    out = ops.stack([idx, vals], axis=1) if out_val else ops.expand_dims(idx, 1)
    return ops.reshape(out, (-1, 2 if out_val else 1, k) + (1,) * max(0, rank - 3))


@source_op("LasagneReduce")
def _lasagne_reduce(xs, cfg, weights):
    """Lasagne GlobalPoolLayer with any pool function: the source axes ``axes`` reduced."""
    return reduce_by(xs[0], cfg["mode"], tuple(int(a) for a in cfg["axes"]))
