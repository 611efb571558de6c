"""Reference kernels of the norm family: ``BatchNorm``, ``Scale``, ``Bias``, ``LRN``,
``Normalize``, ``MVN``, ``Standardize``.

* LRN across: ``x * (k + coeff * sum_{c-pre..c-pre+n-1} x^2)^-beta``, ``pre = (n-1)//2``,
  zero padded; within: the same with a ``size x size`` spatial window (``pre`` each side).
* BatchNorm caffe: ``s = 0 if blob2 == 0 else 1/blob2``, ``y = (x - blob0*s) / sqrt(blob1*s + eps)``
  (``use_global_stats=False`` explicitly: batch statistics, as Caffe does);
  lasagne: ``(x - mean) * (gamma * inv_std) + beta``; gist:
  ``act((x - mean) * gamma / (std + eps) + beta)``.
"""
from __future__ import annotations

import numpy as np

from ..workers import parallel, sample_plane, tile_of, tiles
from .activation import activation
from .registry import bshape, err, kernel, norm_axis, param


@kernel("LRN")
def _lrn(node, xs):
    x = xs[0]
    a = node.attrs
    n = int(a.get("size", 5))
    coeff = float(a["coeff"])
    beta = float(a.get("beta", 0.75))
    k = float(a.get("k", 1.0))
    pre = (n - 1) // 2
    sq = np.square(x)
    if a.get("region", "across") == "across":
        C = x.shape[1]
        padded = np.zeros((x.shape[0], C + n - 1) + x.shape[2:], dtype=x.dtype)
        padded[:, pre:pre + C] = sq
        acc = padded[:, 0:C].copy()
        for i in range(1, n):
            acc += padded[:, i:i + C]
    else:
        if x.ndim != 4:
            raise err(node, f"within-channel LRN needs an NCHW input, got shape {x.shape}")
        N, C, H, W = x.shape
        padded = np.zeros((N, C, H + n - 1, W + n - 1), dtype=x.dtype)
        padded[:, :, pre:pre + H, pre:pre + W] = sq
        rows = padded[:, :, 0:H].copy()            # separable box sum: rows, then columns
        for i in range(1, n):
            rows += padded[:, :, i:i + H]
        acc = rows[:, :, :, 0:W].copy()
        for j in range(1, n):
            acc += rows[:, :, :, j:j + W]
    t = x.dtype.type
    acc *= t(coeff)
    acc += t(k)
    np.power(acc, t(-beta), out=acc)
    acc *= x
    return [acc]


@kernel("BatchNorm")
def _batchnorm(node, xs):
    x = xs[0]
    a = node.attrs
    form = a.get("form", "caffe")
    t = x.dtype
    if form == "caffe":
        axis = norm_axis(int(a.get("axis", 1)), x.ndim)
        bs = bshape(x.ndim, axis, (x.shape[axis],))
        eps = float(a.get("eps", 1e-5))
        if a.get("use_global_stats") is False:
            red = tuple(i for i in range(x.ndim) if i != axis)
            mean = np.mean(x, axis=red, keepdims=True, dtype=np.float64)
            var = np.mean(np.square(x - mean), axis=red, keepdims=True)
            mean, var = mean.astype(t), var.astype(t)
        else:
            sf = np.asarray(node.p("scale_factor"), dtype=np.float64).reshape(-1)
            s = 0.0 if sf.size == 0 or sf[0] == 0 else 1.0 / sf[0]
            mean = (np.asarray(node.p("mean"), np.float64) * s).astype(t).reshape(bs)
            var = (np.asarray(node.p("variance"), np.float64) * s).astype(t).reshape(bs)
        std = np.sqrt(var + t.type(eps))
        mean, std = sample_plane(mean, x.shape), sample_plane(std, x.shape)
        y = np.empty(x.shape, t)

        def piece(idx):                             # (x - mean) / std
            o = y[idx]
            np.subtract(x[idx], tile_of(mean, idx, x.ndim), out=o)
            o /= tile_of(std, idx, x.ndim)
        parallel(piece, tiles(x.shape, t.itemsize))
        return [y]
    if form == "lasagne":
        axes = a.get("axes", "auto")
        if axes in ("auto", None):
            axes = (0,) + tuple(range(2, x.ndim))
        axes = {norm_axis(int(i), x.ndim) for i in axes}
        kept = tuple(x.shape[i] for i in range(x.ndim) if i not in axes)
        bcast = tuple(1 if i in axes else x.shape[i] for i in range(x.ndim))

        def prm(name, default):
            v = node.p(name)
            if v is None:
                return t.type(default)
            return np.asarray(v).astype(t, copy=False).reshape(kept).reshape(bcast)

        mean, inv_std = prm("mean", 0.0), prm("inv_std", 1.0)
        gamma, beta = prm("gamma", 1.0), prm("beta", 0.0)
        g = gamma * inv_std
        y = np.empty(np.broadcast_shapes(x.shape, np.shape(mean), np.shape(g), np.shape(beta)), t)
        mean, g, beta = (sample_plane(v, y.shape) for v in (mean, g, beta))

        def piece(idx):                             # (x - mean) * (gamma * inv_std) + beta
            o = y[idx]
            np.subtract(tile_of(x, idx, y.ndim), tile_of(mean, idx, y.ndim), out=o)
            o *= tile_of(g, idx, y.ndim)
            o += tile_of(beta, idx, y.ndim)
        parallel(piece, tiles(y.shape, t.itemsize))
        return [y]
    if form == "gist":
        axis = norm_axis(int(a.get("axis", 1)), x.ndim)

        def prm(name, default):
            v = node.p(name)
            if v is None:
                return t.type(default)
            v = np.asarray(v).astype(t, copy=False)
            if v.ndim != x.ndim:   # stored without the broadcast dims
                v = v.reshape(bshape(x.ndim, axis, (v.size,)))
            return v

        eps = t.type(a.get("epsilon", 0.01))
        y = x - prm("mean", 0.0)
        y *= prm("gamma", 1.0) / (prm("std", 1.0) + eps)
        y += prm("beta", 0.0)
        return [activation(y, a.get("activation"), inplace=True)]
    raise err(node, f"unknown BatchNorm form {form!r}")


def _scale_like(node, x, v):
    a = node.attrs
    axis = norm_axis(int(a.get("axis", 1)), x.ndim)
    if v.size == 1 and (a.get("num_axes", 1) == 0 or v.ndim == 0):
        return v.reshape(())
    num_axes = int(a.get("num_axes", 1))
    if num_axes == -1:
        num_axes = x.ndim - axis
    shape = v.shape
    if v.ndim != num_axes and v.size == int(np.prod(x.shape[axis:axis + num_axes])):
        shape = x.shape[axis:axis + num_axes]
    return v.reshape(bshape(x.ndim, axis, shape))


@kernel("Scale")
def _scale(node, xs):
    x = xs[0]
    if node.attrs.get("two_input"):
        s = xs[1].astype(x.dtype, copy=False)
        axis = norm_axis(int(node.attrs.get("axis", 1)), x.ndim)
        s = s.reshape(bshape(x.ndim, axis, s.shape))
    else:
        s = _scale_like(node, x, param(node, "scale", x.dtype))
    b = param(node, "bias", x.dtype)
    if b is not None:
        b = _scale_like(node, x, b)
    y = np.empty(np.broadcast_shapes(x.shape, np.shape(s), np.shape(b) if b is not None else ()), x.dtype)
    s = sample_plane(s, y.shape)
    if b is not None:
        b = sample_plane(b, y.shape)

    def piece(idx):                                  # x * scale + bias
        o = y[idx]
        np.multiply(tile_of(x, idx, y.ndim), tile_of(s, idx, y.ndim), out=o)
        if b is not None:
            o += tile_of(b, idx, y.ndim)
    parallel(piece, tiles(y.shape, x.dtype.itemsize))
    return [y]


@kernel("Bias")
def _bias(node, xs):
    x = xs[0]
    if len(xs) > 1:
        b = xs[1].astype(x.dtype, copy=False)
        axis = norm_axis(int(node.attrs.get("axis", 1)), x.ndim)
        return [x + b.reshape(bshape(x.ndim, axis, b.shape))]
    return [x + _scale_like(node, x, param(node, "bias", x.dtype))]


@kernel("MVN")
def _mvn(node, xs):
    x = xs[0]
    a = node.attrs
    first = 1 if a.get("across_channels", False) else 2
    axes = tuple(range(first, x.ndim))
    y = x - np.mean(x, axis=axes, keepdims=True, dtype=x.dtype)
    if a.get("normalize_variance", True):
        std = np.sqrt(np.mean(y * y, axis=axes, keepdims=True, dtype=x.dtype))
        y /= std + x.dtype.type(a.get("eps", 1e-9))
    return [y.reshape(x.shape + (1,) * (4 - x.ndim))]   # Caffe's top is (num, channels, h, w)


@kernel("Normalize")
def _normalize(node, xs):
    x = xs[0]
    a = node.attrs
    eps = x.dtype.type(a.get("eps", 1e-10))
    sq = np.square(x)
    if a.get("across_spatial", True):
        ss = sq.reshape(x.shape[0], -1).sum(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    else:
        ss = sq.sum(axis=1, keepdims=True)
    y = x / np.sqrt(ss + eps)
    s = param(node, "scale", x.dtype)
    if s is not None:
        y *= s.reshape(1, -1, *([1] * (x.ndim - 2))) if s.size > 1 else s.reshape(())
    return [y]


@kernel("Standardize")
def _standardize(node, xs):
    x = xs[0]
    axes = tuple(int(a) for a in node.attrs["axes"])
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return [((x - mean) / np.sqrt(var + x.dtype.type(node.attrs["epsilon"]))).astype(x.dtype)]
