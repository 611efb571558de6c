"""Plain Keras expressions (``keras.ops`` nodes, no class of ours) for the BVLC Caffe layers
that no built-in Keras layer computes: Log and ArgMax (issue 14).

The rules in :mod:`migrator.core.mapping.rules.caffe_catalogue` name these expressions as
the spec's class (``CaffeLog``, ``CaffeArgMax``); the builder materialises them through
:func:`.plain.build_plain_layer` (a nested functional model named like the spec), so the
saved model loads with plain Keras.  Both work on source-order (channels-first) tensors:
the rule puts Permute layers around them.
"""
from __future__ import annotations

import numpy as np
from keras import ops

from .plain import plain


@plain("CaffeLog")
def _caffe_log(xs, cfg, weights, name):
    """y = log(shift + scale * x) / ln(base)   (Caffe log_layer.cpp; base -1 = e)"""
    x = xs[0]
    scale, shift, base = float(cfg.get("scale", 1.0)), float(cfg.get("shift", 0.0)), float(cfg.get("base", -1.0))
    if scale != 1.0:
        x = ops.multiply(x, np.float32(scale))
    if shift != 0.0:
        x = ops.add(x, np.float32(shift))
    y = ops.log(x)
    if base != -1.0:
        y = ops.multiply(y, np.float32(1.0) / np.log(np.float32(base)))
    return y


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


@plain("CaffeRecurrent")
def _caffe_recurrent(xs, cfg, weights, name):
    """Caffe's LSTM / RNN unrolled over its ``steps`` time steps (the leading axis, which the
    Keras model sees as its batch axis); one input (T, N, I + 1): x_t's I features, then cont_t;
    h' = cont_t * h_{t-1}; lstm: gates i, f, o, g = W_xc x_t + b_c + W_hc h', c_t = cont_t * f *
    c_{t-1} + i * g, h_t = o * tanh(c_t); rnn: h_t = tanh(W_xh x_t + b_h + W_hh h'),
    o_t = tanh(W_ho h_t + b_o)."""
    z = xs[0]                                             # (T, N, I + 1): x_t | cont_t
    T, N, H, F = int(cfg["steps"]), int(cfg["batch"]), int(cfg["num_output"]), int(cfg["features"])
    w = [np.asarray(a, np.float32) for a in weights]
    x, cont = z[:, :, :F], z[:, :, F]
    xw = ops.add(ops.matmul(x, w[0].T), w[1])             # (T, N, G)
    h = ops.zeros((N, H), dtype=z.dtype)
    c = h
    outs = []
    for t in range(T):
        ct = ops.expand_dims(ops.take(cont, t, axis=0), -1)  # (N, 1)
        hc = ops.multiply(ct, h)
        if cfg["cell"] == "lstm":
            g = ops.add(ops.take(xw, t, axis=0), ops.matmul(hc, w[2].T))
            i, f = ops.sigmoid(g[:, :H]), ops.sigmoid(g[:, H:2 * H])
            o, gg = ops.sigmoid(g[:, 2 * H:3 * H]), ops.tanh(g[:, 3 * H:])
            c = ops.add(ops.multiply(ops.multiply(ct, f), c), ops.multiply(i, gg))
            h = ops.multiply(o, ops.tanh(c))
            outs.append(h)
        else:
            h = ops.tanh(ops.add(ops.take(xw, t, axis=0), ops.matmul(hc, w[2].T)))
            outs.append(ops.tanh(ops.add(ops.matmul(h, w[3].T), w[4])))
    return ops.stack(outs, axis=0)
