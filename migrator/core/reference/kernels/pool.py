"""Reference kernels of the pool family: ``Pool``, ``GlobalPool``, ``Pool1D``, ``Pool3D``,
``SPP``, ``LasagneSPP``, ``FeaturePool``, ``FeatureWTA``.

* Pool: ``floor`` / ``caffe_ceil`` / ``lasagne_ceil`` output sizes (see shapes/pool.py); MAX
  ignores padding and the part of a window hanging past the input; AVE divisors
  ``caffe`` = ``inc_pad`` = window clipped to the padded extent ``L + 2p`` (pad zeros
  counted, overhang past the pad not; for Theano this is ``ws0*ws1`` whenever
  ignore_border=True and the clipped window when ignore_border=False), ``exc_pad`` = the
  elements inside the input only.
"""
from __future__ import annotations

import numpy as np

from ...shapes import pool_out_len, spp_levels, spp_regions
from ..workers import parallel, tiles
from .reduce import REDUCERS
from .registry import kernel, nchw_input, one_d, pair, windows3d


def _avg_counts(L: int, out: int, k: int, s: int, p: int, divisor: str) -> np.ndarray:
    start = np.arange(out) * s          # in padded coordinates
    if divisor in ("caffe", "inc_pad"):
        return np.minimum(start + k, L + 2 * p) - start
    if divisor == "exc_pad":
        return np.minimum(start + k, L + p) - np.maximum(start, p)
    raise ValueError(f"unknown average-pooling divisor {divisor!r}")


def pool2d(x: np.ndarray, mode: str, kernel, stride, pad, rounding: str = "floor",
           avg_divisor: str = "caffe") -> np.ndarray:
    """2-D pooling of NCHW ``x``.  Padding and overhang are never materialised: each kernel
    offset updates the output positions whose window cell lies inside the input (a strided
    view of ``x``).  MAX: cells outside the input count as -FLT_MAX (Caffe's empty window);
    AVE: as zeros, summed in kernel-offset order, then divided by the divisor."""
    N, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = pad
    Ho = pool_out_len(H, kh, sh, ph, rounding)
    Wo = pool_out_len(W, kw, sw, pw, rounding)
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"input {x.shape} too small for pooling kernel {(kh, kw)}")
    is_max = mode == "max"
    rows = [_taps(i, H, Ho, sh, ph) for i in range(kh)]
    cols = [_taps(j, W, Wo, sw, pw) for j in range(kw)]
    # output rows / columns whose window reaches past the input (padding or overhang)
    out_r = [o for o in range(Ho) if o * sh - ph < 0 or o * sh - ph + kh > H]
    out_c = [o for o in range(Wo) if o * sw - pw < 0 or o * sw - pw + kw > W]
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    if not is_max:
        ch = _avg_counts(H, Ho, kh, sh, ph, avg_divisor)
        cw = _avg_counts(W, Wo, kw, sw, pw, avg_divisor)
        div = np.maximum(np.outer(ch, cw), 1).astype(x.dtype)

    def piece(idx):
        xi, o = x[idx], y[idx]
        if is_max:
            _max_separable(xi, o, rows, cols, out_r, out_c, sh, sw)
            return
        o.fill(0)
        for r0, r1, a in rows:
            if r1 <= r0:
                continue
            for c0, c1, b in cols:
                if c1 <= c0:
                    continue
                v = xi[..., a:a + sh * (r1 - r0 - 1) + 1:sh, b:b + sw * (c1 - c0 - 1) + 1:sw]
                t = o[..., r0:r1, c0:c1]
                t += v
        o /= div
    parallel(piece, tiles(x.shape, x.dtype.itemsize))
    return y


def _max_separable(xi, o, rows, cols, out_r, out_c, sh: int, sw: int) -> None:
    """Max pooling of ``xi`` (..., H, W) into ``o`` (..., Ho, Wo) as a max over the window's
    columns (..., H, Wo), then over its rows (max is exact, so the order does not matter);
    a window reaching outside the input also gets -FLT_MAX, as Caffe's padded max pooling."""
    lo = np.finfo(o.dtype).min
    m = np.full(xi.shape[:-1] + (o.shape[-1],), -np.inf, o.dtype)
    if out_c:
        m[..., out_c] = lo
    for c0, c1, b in cols:
        if c1 > c0:
            t = m[..., c0:c1]
            np.maximum(t, xi[..., b:b + sw * (c1 - c0 - 1) + 1:sw], out=t)
    o.fill(-np.inf)
    if out_r:
        o[..., out_r, :] = lo
    for r0, r1, a in rows:
        if r1 > r0:
            t = o[..., r0:r1, :]
            np.maximum(t, m[..., a:a + sh * (r1 - r0 - 1) + 1:sh, :], out=t)


def _taps(i: int, L: int, out: int, s: int, p: int) -> tuple[int, int, int]:
    """``(o0, o1, first)``: the output positions ``o0 <= o < o1`` whose window cell at kernel
    offset ``i`` (input index ``o*s - p + i``) lies inside ``[0, L)``, and that input index
    for ``o0``."""
    o0 = max(0, -((i - p) // s)) if i < p else 0
    o1 = min(out, (L - 1 - i + p) // s + 1) if L - 1 - i + p >= 0 else 0
    return o0, max(o0, o1), o0 * s - p + i


def max_pool_mask(x: np.ndarray, kernel, stride, pad, rounding: str = "caffe_ceil") -> np.ndarray:
    """Caffe's MAX-pooling argmax mask (the layer's second top): per output cell, the window
    clipped to the input, visited in row-major order; an element replaces the running maximum
    (starting at -FLT_MAX) only when strictly greater; the mask holds the flat index
    ``h * W + w`` of the last replacement, or -1 (float, like Caffe's top blob)."""
    N, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = pad
    Ho = pool_out_len(H, kh, sh, ph, rounding)
    Wo = pool_out_len(W, kw, sw, pw, rounding)
    best = np.full((N, C, Ho, Wo), np.finfo(x.dtype).min, dtype=x.dtype)
    arg = np.full((N, C, Ho, Wo), -1, dtype=np.int64)
    hs = np.arange(Ho) * sh - ph
    ws = np.arange(Wo) * sw - pw
    for i in range(kh):
        rows = hs + i
        rok = (rows >= 0) & (rows < H)
        for j in range(kw):
            cols = ws + j
            cok = (cols >= 0) & (cols < W)
            v = x[:, :, np.clip(rows, 0, H - 1)][:, :, :, np.clip(cols, 0, W - 1)]
            upd = (v > best) & (rok[:, None] & cok[None, :])
            best = np.where(upd, v, best)
            arg = np.where(upd, (rows[:, None] * W + cols[None, :]), arg)
    return arg.astype(x.dtype)


@kernel("Pool")
def _pool(node, xs):
    x = nchw_input(node, xs, "the reference pooling supports 2-d")
    a = node.attrs
    k = pair(a["kernel"])
    s = pair(a.get("stride") or k)
    y = pool2d(x, a.get("mode", "max"), k, s, pair(a.get("pad", 0)), a.get("rounding", "floor"),
               a.get("avg_divisor", "caffe"))
    if node.num_outputs == 2:      # Caffe MAX pooling's second top
        return [y, max_pool_mask(x, k, s, pair(a.get("pad", 0)), a.get("rounding", "floor"))]
    return [y]


@kernel("GlobalPool")
def _gpool(node, xs):
    x = xs[0]
    axes = tuple(range(2, x.ndim))
    keep = bool(node.attrs.get("keepdims", False))
    if node.attrs.get("mode", "avg") == "max":
        return [np.max(x, axis=axes, keepdims=keep)]
    return [np.mean(x, axis=axes, keepdims=keep, dtype=x.dtype)]


@kernel("SPP")
def _spp(node, xs):
    x = xs[0]
    N, _C, H, W = x.shape
    mode = node.attrs.get("mode", "max")
    outs = [pool2d(x, mode, k, k, p, "caffe_ceil", "caffe")
            for k, p in spp_levels(H, W, int(node.attrs["pyramid_height"]))]
    if len(outs) == 1:
        return [outs[0]]
    return [np.concatenate([o.reshape(N, -1) for o in outs], axis=1)]


def _grouped(x, axis, p):
    return x.reshape(x.shape[:axis] + (x.shape[axis] // p, p) + x.shape[axis + 1:])


@kernel("FeaturePool")
def _feature_pool(node, xs):
    x = xs[0]
    ax, p = int(node.attrs["axis"]), int(node.attrs["pool_size"])
    y = REDUCERS[node.attrs["mode"]](_grouped(x, ax, p), axis=ax + 1)
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


@kernel("LasagneSPP")
def _lasagne_spp(node, xs):
    x = xs[0]
    f = np.max if node.attrs["mode"] == "max" else np.mean
    bins = [f(x[:, :, h0:h1, w0:w1], axis=(2, 3))
            for h0, h1, w0, w1 in spp_regions(x.shape[2], x.shape[3], node.attrs)]
    return [np.stack(bins, axis=2).astype(x.dtype)]


@kernel("Pool3D")
def _pool3d(node, xs):
    a = node.attrs
    x = np.asarray(xs[0])
    k, s, p = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"])
    out = [(L + 2 * q - kk) // ss + 1 for L, kk, ss, q in zip(x.shape[2:], k, s, p)]
    pads = [(0, 0), (0, 0)] + [(q, q) for q in p]
    if a.get("mode", "max") == "max":
        xp = np.pad(x, pads, constant_values=-np.inf)
        y = np.full((*x.shape[:2], *out), -np.inf, x.dtype)
        for _, v in windows3d(xp, k, s, out):
            np.maximum(y, v, out=y)
        return [y]
    xp = np.pad(x, pads)
    y = np.zeros((*x.shape[:2], *out), x.dtype)
    for _, v in windows3d(xp, k, s, out):
        y += v
    if a.get("avg_divisor") == "exc_pad":
        cnt = np.zeros(out, x.dtype)
        ones = np.pad(np.ones(x.shape[2:], x.dtype), [(q, q) for q in p])[None, None]
        for _, v in windows3d(ones, k, s, out):
            cnt += v[0, 0]
        return [y / cnt]
    return [y / x.dtype.type(k[0] * k[1] * k[2])]


@kernel("Pool1D")
def _pool1d(node, xs):
    """The ``Pool`` kernel over (N, C, 1, L) (see ``OPS['Pool1D']``), size-1 axis dropped."""
    return one_d(node, xs, _pool)
