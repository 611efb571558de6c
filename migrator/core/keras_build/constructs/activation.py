"""Keras constructs of the activation family: ``UnaryOp`` (abs, power, scaled tanh) and
``CaffeLog``."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .registry import plain


@plain("UnaryOp")
def _unary(xs, cfg, weights, name):
    """``abs``: ``|x|``; ``power``: ``(shift + scale*x)^power`` (no pow when ``power == 1``,
    a square when 2); ``scaled_tanh``: ``scale_out * tanh(scale_in * x)``."""
    x = xs[0]
    kind = cfg.get("kind", "abs")
    if kind == "abs":
        return ops.abs(x)
    if kind == "scaled_tanh":
        return ops.multiply(float(cfg.get("scale_out", 1.0)),
                            ops.tanh(ops.multiply(float(cfg.get("scale_in", 1.0)), x)))
    if kind != "power":
        raise ValueError(f"UnaryOp kind must be one of ('abs', 'power', 'scaled_tanh'), got {kind!r}")
    p, scale, shift = float(cfg.get("power", 1.0)), float(cfg.get("scale", 1.0)), float(cfg.get("shift", 0.0))
    y = x
    if scale != 1.0:
        y = ops.multiply(y, scale)
    if shift != 0.0:
        y = ops.add(y, shift)
    if p == 1.0:
        # a nested model must compute something: identity as a built-in layer
        return keras.layers.Identity(name=f"{name}_id")(y) if y is x else y
    if p == 2.0:
        return ops.square(y)
    return ops.power(y, p)


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
