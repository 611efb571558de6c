"""Reference kernels (Lasagne master's definitions, numpy, NCHW) of the Lasagne catalogue ops
(issue 14): Standardize, FeaturePool, FeatureWTA, LasagneReduce, CropMerge."""
from __future__ import annotations

import numpy as np

from ..importers.lasagne.conv import locally_connected_taps
from ..importers.lasagne.merge import crop_slices
from ..importers.lasagne.pool import spp_regions
from .kernels import activation, kernel

_REDUCE = {"mean": np.mean, "max": np.max, "min": np.min, "sum": np.sum, "prod": np.prod,
           "var": np.var, "std": np.std}


@kernel("Standardize")
def _standardize(node, xs):
    x = xs[0]
    axes = tuple(int(a) for a in node.attrs["axes"])
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return [((x - mean) / np.sqrt(var + x.dtype.type(node.attrs["epsilon"]))).astype(x.dtype)]


def _grouped(x, axis, p):
    return x.reshape(x.shape[:axis] + (x.shape[axis] // p, p) + x.shape[axis + 1:])


@kernel("FeaturePool")
def _feature_pool(node, xs):
    x = xs[0]
    ax, p = int(node.attrs["axis"]), int(node.attrs["pool_size"])
    y = _REDUCE[node.attrs["mode"]](_grouped(x, ax, p), axis=ax + 1)
    return [np.asarray(y, dtype=x.dtype)]


@kernel("FeatureWTA")
def _feature_wta(node, xs):
    x = xs[0]
    ax, p = int(node.attrs["axis"]), int(node.attrs["pool_size"])
    g = _grouped(x, ax, p)
    idx = np.expand_dims(np.argmax(g, axis=ax + 1), ax + 1)
    shape = [1] * g.ndim
    shape[ax + 1] = p
    mask = (idx == np.arange(p).reshape(shape)).astype(x.dtype)
    return [(g * mask).reshape(x.shape)]


@kernel("LasagneReduce")
def _lasagne_reduce(node, xs):
    x = xs[0]
    axes = tuple(int(a) for a in node.attrs["axes"])
    return [np.asarray(_REDUCE[node.attrs["mode"]](x, axis=axes), dtype=x.dtype)]


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


@kernel("LasagneSPP")
def _lasagne_spp(node, xs):
    x = xs[0]
    f = np.max if node.attrs["mode"] == "max" else np.mean
    bins = [f(x[:, :, h0:h1, w0:w1], axis=(2, 3))
            for h0, h1, w0, w1 in spp_regions(x.shape[2], x.shape[3], node.attrs)]
    return [np.stack(bins, axis=2).astype(x.dtype)]


@kernel("LocallyConnected")
def _locally_connected(node, xs):
    x = xs[0]
    a = node.attrs
    W = node.params["weight"].value.astype(x.dtype)
    kh, kw = (int(k) for k in a["kernel"])
    N, _, H, Wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    y = np.zeros((N, W.shape[0], H, Wd), dtype=x.dtype)
    for dy, dx, fi, fj in locally_connected_taps(kh, kw, bool(a["flip"])):
        patch = xp[:, :, kh // 2 + dy:kh // 2 + dy + H, kw // 2 + dx:kw // 2 + dx + Wd]
        if a["channelwise"]:
            y += patch * W[None, :, fi, fj]
        else:
            y += np.einsum("nchw,ochw->nohw", patch, W[:, :, fi, fj])
    b = node.params.get("bias")
    if b is not None and a.get("bias", True):
        bv = b.value.astype(x.dtype)
        y = y + (bv[None, :, None, None] if bv.ndim == 1 else bv[None])
    return [activation(y, a.get("activation"))]


@kernel("Upscale1D")
def _upscale1d(node, xs):
    x = xs[0]
    a = int(node.attrs["scale"])
    if node.attrs["mode"] == "repeat":
        return [np.repeat(x, a, axis=2)]
    y = np.zeros(x.shape[:2] + (x.shape[2] * a,), dtype=x.dtype)
    y[:, :, ::a] = x
    return [y]
