"""Reference kernels of the activation family (element-wise): ``Identity``, ``Dropout``,
``Activation``, ``Softmax``, ``PReLU``, ``Power``, ``Exp``, ``Log``, ``Threshold``, ``Clip``,
``Swish``; and :func:`activation` / :func:`softmax`, which Conv / Dense / gist BatchNorm /
recurrent kernels apply through their ``activation`` attrs.

The Caffe kernels follow Caffe's own layer sources (git 2018-08), checked against the real
Caffe in tests/core/test_caffe_catalogue.py.
"""
from __future__ import annotations

import numpy as np

from ..workers import ufunc_tiles
from .registry import bshape, kernel, param


def activation(x: np.ndarray, spec: dict | None, *, inplace: bool = False) -> np.ndarray:
    """Apply an Activation-kind dict ``{'kind': ..., **attrs}``; ``inplace`` allows
    overwriting ``x`` (only for freshly computed arrays)."""
    if not spec:
        return x
    kind = spec.get("kind", "linear")
    out = x if inplace else None
    if kind == "relu":
        slope = float(spec.get("negative_slope", 0.0) or 0.0)
        if slope == 0.0:
            if not isinstance(x, np.ndarray) or x.ndim == 0:
                return np.maximum(x, 0, out=out)
            return ufunc_tiles(np.maximum, np.empty(x.shape, x.dtype) if out is None else out, x, 0)
        # Caffe: max(x, 0) + slope * min(x, 0)
        neg = np.minimum(x, 0) * x.dtype.type(slope)
        y = np.maximum(x, 0, out=out)
        y += neg
        return y
    if kind == "elu":
        alpha = x.dtype.type(spec.get("alpha", 1.0))
        neg = np.expm1(np.minimum(x, 0)) * alpha
        return np.where(x > 0, x, neg)
    if kind == "sigmoid":
        y = np.multiply(x, x.dtype.type(0.5), out=out)
        np.tanh(y, out=y)
        y *= x.dtype.type(0.5)
        y += x.dtype.type(0.5)
        return y
    if kind == "tanh":
        return np.tanh(x, out=out)
    if kind == "abs":
        return np.abs(x, out=out)
    if kind == "softplus":
        return np.logaddexp(x.dtype.type(0), x, out=out)
    if kind in ("linear", "identity", None):
        return x
    if kind == "relu6":   # Caffe forks' ReLU6: min(max(x, 0), 6)
        return np.clip(x, 0, 6, out=out)
    if kind == "scaled_tanh":
        si = x.dtype.type(spec.get("scale_in", 1.0))
        so = x.dtype.type(spec.get("scale_out", 1.0))
        y = np.multiply(x, si, out=out)
        np.tanh(y, out=y)
        y *= so
        return y
    if kind == "exp":
        # Caffe Exp: base^(shift + scale*x), base -1 = e
        base = float(spec.get("base", -1.0))
        scale = float(spec.get("scale", 1.0))
        shift = float(spec.get("shift", 0.0))
        lnb = 1.0 if base == -1.0 else float(np.log(base))
        y = np.multiply(x, x.dtype.type(scale * lnb), out=out)
        if shift:
            y += x.dtype.type(shift * lnb)
        return np.exp(y, out=y)
    if kind == "softmax":
        return softmax(x, int(spec.get("axis", 1)))
    raise ValueError(f"unknown activation kind {kind!r}")


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = x - np.max(x, axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


@kernel("Identity", "Dropout")
def _identity(node, xs):
    return [xs[0]]


@kernel("Activation")
def _activation(node, xs):
    return [activation(xs[0], node.attrs)]


@kernel("Softmax")
def _softmax(node, xs):
    return [softmax(xs[0], int(node.attrs.get("axis", 1)))]


@kernel("PReLU")
def _prelu(node, xs):
    x = xs[0]
    slope = param(node, "slope", x.dtype)
    if node.attrs.get("channel_shared") or slope.size == 1:
        slope = slope.reshape(())
    else:
        slope = slope.reshape(bshape(x.ndim, 1, (slope.size,)))
    y = np.minimum(x, 0) * slope
    y += np.maximum(x, 0)
    return [y]


@kernel("Power")
def _power(node, xs):
    x = xs[0]
    a = node.attrs
    power, scale, shift = float(a.get("power", 1.0)), float(a.get("scale", 1.0)), float(a.get("shift", 0.0))
    t = x.dtype.type
    y = _scaled_shifted(x, scale, shift)
    if power == 2.0:
        np.square(y, out=y)
    elif power != 1.0:
        np.power(y, t(power), out=y)
    return [y]


def _scaled_shifted(x, scale: float, shift: float):
    """A new array ``x * scale + shift`` in the dtype of ``x`` (a plain copy for 1, 0)."""
    t = x.dtype.type
    y = x * t(scale) if scale != 1.0 else x.copy()
    if shift != 0.0:
        y += t(shift)
    return y


def _base_scale_shift(a: dict) -> tuple[float, float, float]:
    """The (base, scale, shift) attributes of a Caffe Exp / Log layer (base -1 means e)."""
    return float(a.get("base", -1.0)), float(a.get("scale", 1.0)), float(a.get("shift", 0.0))


@kernel("Exp")
def _exp(node, xs):
    x = xs[0]
    t = x.dtype.type
    base, scale, shift = _base_scale_shift(node.attrs)
    # exp_layer.cpp: inner = log(base) * scale; outer = base^shift; y = outer * exp(inner * x)
    log_base = t(1.0) if base == -1.0 else np.log(t(base))
    inner = t(log_base * t(scale))
    outer = t(1.0) if shift == 0.0 else (np.exp(t(shift)) if base == -1.0 else np.power(t(base), t(shift)))
    y = np.exp(x * inner) if inner != 1 else np.exp(x)
    if outer != 1:
        y *= outer
    return [y]


@kernel("Log")
def _log(node, xs):
    x = xs[0]
    t = x.dtype.type
    base, scale, shift = _base_scale_shift(node.attrs)
    # log_layer.cpp: y = log(shift + scale * x) * (1 / log(base))
    y = _scaled_shifted(x, scale, shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(y, out=y)
    if base != -1.0:
        y *= t(1.0) / np.log(t(base))
    return [y]


@kernel("Threshold")
def _threshold(node, xs):
    x = xs[0]
    return [(x > x.dtype.type(node.attrs.get("threshold", 0.0))).astype(x.dtype)]


@kernel("Clip")
def _clip(node, xs):
    x = xs[0]
    t = x.dtype.type
    return [np.maximum(t(node.attrs["min"]), np.minimum(x, t(node.attrs["max"])))]


@kernel("Swish")
def _swish(node, xs):
    x = xs[0]
    t = x.dtype.type
    beta = t(node.attrs.get("beta", 1.0))
    # swish_layer.cpp: sigmoid(beta * x) through Caffe's sigmoid (0.5 * tanh(0.5 z) + 0.5)
    s = activation(x * beta, {"kind": "sigmoid"}, inplace=True)
    return [x * s]
