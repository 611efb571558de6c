"""Reference kernels of the merge family: ``Eltwise``, ``Concat``, ``CropMerge``, ``Axpy``.
"""
from __future__ import annotations

import numpy as np

from ...shapes import crop_slices
from ..workers import ufunc_tiles
from .registry import err, kernel


@kernel("Eltwise")
def _eltwise(node, xs):
    op = node.attrs.get("operation", "sum")
    coeffs = node.attrs.get("coeffs")
    if op == "sum":
        if coeffs and len(coeffs) == 1:
            coeffs = list(coeffs) * len(xs)
        t = xs[0].dtype.type
        if coeffs and any(float(c) != 1.0 for c in coeffs):
            y = xs[0] * t(coeffs[0])
            for c, v in zip(coeffs[1:], xs[1:]):
                y += v * t(c)
        elif len(xs) > 1:
            y = np.empty(np.broadcast_shapes(*(np.shape(v) for v in xs)), np.result_type(xs[0], xs[1]))
            ufunc_tiles(np.add, y, xs[0], xs[1])
            for v in xs[2:]:
                ufunc_tiles(np.add, y, y, v)
        else:
            y = xs[0].copy()
        return [y]
    if op == "prod":
        y = xs[0].copy()
        for v in xs[1:]:
            y *= v
        return [y]
    if op == "max":
        y = xs[0].copy()
        for v in xs[1:]:
            np.maximum(y, v, out=y)
        return [y]
    raise err(node, f"unknown Eltwise operation {op!r}")


@kernel("Concat")
def _concat(node, xs):
    return [np.concatenate(xs, axis=int(node.attrs.get("axis", 1)))]


@kernel("CropMerge")
def _crop_merge(node, xs):
    a = node.attrs
    sl = crop_slices([x.shape for x in xs], a.get("cropping"))
    ys = [x[tuple(s)] for x, s in zip(xs, sl)]
    kind = a["kind"]
    if kind == "concat":
        return [np.concatenate(ys, axis=int(a["axis"]))]
    if kind == "sum":
        y = None
        for c, v in zip(a.get("coeffs") or [1.0] * len(ys), ys):
            t = v if c == 1 else v * v.dtype.type(c)
            y = t if y is None else y + t
        return [y]
    fn = {"add": np.add, "mul": np.multiply, "maximum": np.maximum, "minimum": np.minimum,
          "sub": np.subtract}[kind]
    y = ys[0]
    for v in ys[1:]:
        y = fn(y, v)
    return [y]


@kernel("Axpy")
def _axpy(node, xs):
    a, x, y = xs
    # the fork's axpy_layer: top[n, c, s] = a[n, c] * x[n, c, s] + y[n, c, s] over the spatial s
    scale = a.reshape(a.shape[:2] + (1,) * (x.ndim - 2)).astype(x.dtype, copy=False)
    return [scale * x + y]
