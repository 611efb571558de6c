"""Reference kernels of the reduce family: ``Reduction``, ``ArgMax``, ``LasagneReduce``.
"""
from __future__ import annotations

import numpy as np

from .registry import err, kernel, norm_axis


@kernel("Reduction")
def _reduction(node, xs):
    x = xs[0]
    a = node.attrs
    axis = norm_axis(int(a.get("axis", 0)), x.ndim)
    op = a.get("operation", "sum")
    flat = x.reshape(x.shape[:axis] + (-1,))
    if op == "asum":
        flat = np.abs(flat)
    elif op == "sumsq":
        flat = flat * flat
    elif op not in ("sum", "mean"):
        raise err(node, f"unknown reduction operation {op!r}")
    y = np.sum(flat, axis=-1, dtype=x.dtype)
    coeff = float(a.get("coeff", 1.0))
    if op == "mean":
        coeff /= max(flat.shape[-1], 1)
    if coeff != 1.0:
        y = y * x.dtype.type(coeff)
    return [np.asarray(y, dtype=x.dtype).reshape(x.shape[:axis])]


@kernel("ArgMax")
def _argmax(node, xs):
    x = xs[0]
    a = node.attrs
    k = int(a.get("top_k", 1))
    out_val = bool(a.get("out_max_val", False))
    axis = a.get("axis")
    # argmax_layer.cpp sorts (value, index) pairs with std::greater: ties -> the larger index
    if axis is not None:
        axis = norm_axis(int(axis), x.ndim)
        xm = np.moveaxis(x, axis, -1)
        L = xm.shape[-1]
        order = np.lexsort((-np.arange(L)[None, :].repeat(xm[..., 0].size, 0),
                            -xm.reshape(-1, L)), axis=-1)[:, :k]
        vals = np.take_along_axis(xm.reshape(-1, L), order, axis=-1)
        res = vals if out_val else order.astype(x.dtype)
        return [np.moveaxis(res.reshape(xm.shape[:-1] + (k,)).astype(x.dtype), -1, axis)]
    N = x.shape[0]
    flat = x.reshape(N, -1)
    L = flat.shape[1]
    order = np.lexsort((-np.arange(L)[None, :].repeat(N, 0), -flat), axis=-1)[:, :k]
    idx = order.astype(x.dtype)
    shape = [N, 2 if out_val else 1, k] + [1] * max(0, x.ndim - 3)
    if out_val:
        vals = np.take_along_axis(flat, order, axis=-1)
        return [np.stack([idx, vals], axis=1).reshape(shape)]
    return [idx.reshape(shape)]


REDUCERS = {"mean": np.mean, "max": np.max, "min": np.min, "sum": np.sum, "prod": np.prod,
           "var": np.var, "std": np.std}


@kernel("LasagneReduce")
def _lasagne_reduce(node, xs):
    x = xs[0]
    axes = tuple(int(a) for a in node.attrs["axes"])
    return [np.asarray(REDUCERS[node.attrs["mode"]](x, axis=axes), dtype=x.dtype)]
