"""Plain Keras expressions for Migrator's custom layer classes.

The mapping rules name a few classes of :mod:`.custom_layers` (``ConstantPadding2D``,
``LRN``, ...).  A model that contains them only loads where Migrator is installed.  The
builder therefore *materialises* each such spec as a plain expression: a small nested
functional ``keras.Model`` named after the spec, whose body uses only Keras built-in layers
and Keras 3 functional ``keras.ops`` calls.  Such a model

* saves to ``.keras`` and loads back with ``keras.saving.load_model(path, safe_mode=True)``
  and no ``custom_objects`` -- Keras serializes ``keras.ops`` calls of a functional model
  as built-in operations (``Pad``, ``Power``, ``GetItem``, ...), numpy constants inline;
* keeps its name in ``model.layers`` (the layer-by-layer comparison, the isolation check
  and the trees find the Keras output by the spec's name and call it on its inputs);
* exports to SavedModel and TFLite like any other Keras model.

Legacy HDF5 (``.h5``) cannot store ``keras.ops`` nodes (its loader only knows layers); see
:func:`ops_layers`.

Adding a plain expression for a new custom class is one function::

    @plain("MyLayer")
    def _my_layer(xs, cfg, weights, name):
        \"\"\"y = <the formula>\"\"\"
        x = xs[0]                       # symbolic inputs (KerasTensors), spec order
        return ops.something(x, cfg["k"])   # built-in layers / keras.ops only

``xs`` are the nested model's inputs, ``cfg`` the spec's config, ``weights`` the spec's
weight arrays in the custom class's ``get_weights()`` order (or ``None``), ``name`` the
spec's name (prefix the names of built-in layers you create with it).  The function
returns the output tensor; weights go into built-in layers (set them inside the function)
or into numpy constants.  Classes without a plain expression keep the custom class (the
model then needs Migrator to load; :func:`migrator_only_layers` lists them).
"""
from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from .custom_layers import CUSTOM_LAYERS, _pad_pairs, _pair, avg_pool_divisor

PlainFn = Callable[[list, dict, list | None, str], object]

#: custom class name -> plain expression function
PLAIN: dict[str, PlainFn] = {}


def plain(class_name: str):
    """Register the plain expression of custom class ``class_name``."""
    def deco(fn: PlainFn) -> PlainFn:
        PLAIN[class_name] = fn
        return fn
    return deco


def has_plain(class_name: str) -> bool:
    return class_name in PLAIN


def build_plain_layer(spec, input_tensors) -> keras.Model:
    """A nested functional ``keras.Model`` named ``spec.name`` computing ``spec``'s custom
    class with built-in layers and ``keras.ops`` only (weights already set)."""
    fn = PLAIN[spec.class_name]
    xs = [keras.Input(shape=tuple(t.shape[1:]), dtype=getattr(t, "dtype", "float32"),
                      name=f"{spec.name}_in{i}" if len(input_tensors) > 1 else f"{spec.name}_in")
          for i, t in enumerate(input_tensors)]
    out = fn(xs, dict(spec.config), spec.weights, spec.name)
    return keras.Model(inputs=xs if len(xs) > 1 else xs[0], outputs=out, name=spec.name)


def migrator_only_layers(plan) -> list[dict]:
    """Keras layers of ``plan`` that still need a Migrator class (no plain expression):
    ``[{'source', 'keras', 'class_name'}]`` -- empty when the model is plain Keras."""
    out = []
    for m in plan.mappings:
        for s in m.layers:
            if s.class_name in CUSTOM_LAYERS and s.class_name not in PLAIN:
                out.append({"source": m.source, "keras": s.name, "class_name": s.class_name})
    return out


def ops_layers(model) -> list[str]:
    """Names of the model's (nested) layers whose body has ``keras.ops`` nodes -- which legacy
    HDF5 ``.h5`` cannot store (its loader knows layers only)."""
    out = []
    for layer in model.layers:
        sub = getattr(layer, "operations", None)
        if isinstance(layer, keras.Model) and sub and any(
                not isinstance(op, keras.layers.Layer) for op in sub):
            out.append(layer.name)
    return out


# --------------------------------------------------------------------------------------
@plain("ConstantPadding2D")
def _constant_padding(xs, cfg, weights, name):
    """``y = pad(x, ((0,0), (top,bottom), (left,right), (0,0)), value)`` -- ``keras.ops.pad``
    with ``constant_values=value``."""
    (t, b), (l, r) = _pad_pairs(cfg.get("padding", ((0, 0), (0, 0))))
    return ops.pad(xs[0], [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float(cfg.get("value", 0.0)))


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
    before = (n - 1) // 2
    after = n - 1 - before
    sq = ops.square(x)
    if region == "across":
        c = x.shape[-1]
        if c is None:
            raise ValueError("LRN across channels needs a known channel count")
        padded = ops.pad(sq, [[0, 0], [0, 0], [0, 0], [before, after]]) if n > 1 else sq
        s = padded[..., 0:c]
        for i in range(1, n):
            s = s + padded[..., i:i + c]
    else:
        padded = ops.pad(sq, [[0, 0], [before, after], [before, after], [0, 0]])
        s = ops.average_pool(padded, (n, n), strides=(1, 1), padding="valid") * float(n * n)
    return ops.divide(x, ops.power(k + coeff * s, beta))


@plain("ExactAveragePooling2D")
def _exact_avg_pool(xs, cfg, weights, name):
    """``y[i, j] = sum(window) / (rows_counted(i) * cols_counted(j))``: zero ``padding``,
    built-in ``AveragePooling2D`` ('valid', divides by ``kh*kw``), times the constant
    ``kh*kw / count`` (a numpy constant when H, W are known; else computed from a padded
    mask of ones)."""
    x = xs[0]
    pool = _pair(cfg.get("pool_size", (2, 2)), "pool_size")
    strides = pool if cfg.get("strides") is None else _pair(cfg["strides"], "strides")
    (t, b), (l, r) = padding = _pad_pairs(cfg.get("padding", ((0, 0), (0, 0))))
    (ct, cb), (cl, cr) = counted = _pad_pairs(cfg.get("counted_padding", ((0, 0), (0, 0))),
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


@plain("WeightedSum")
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
