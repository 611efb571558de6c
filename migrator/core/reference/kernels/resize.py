"""Reference kernels of the resize family: ``Upscale``, ``Upscale1D``, ``Upscale3D``, ``Interp`` (DeepLab /
PSPNet, from the forks' definitions), ``MaxUnpool`` (SegNet's Upsample with the pooling mask).
"""
from __future__ import annotations

import numpy as np

from ...shapes import interp_out_len, unpool_out_size
from .registry import err, kernel, nchw_input, pair


@kernel("Upscale")
def _upscale(node, xs):
    x = nchw_input(node, xs, "upscaling supports 2-d")
    sh, sw = pair(node.attrs.get("scale", 2))
    mode = node.attrs.get("mode", "repeat")
    if mode == "repeat":
        return [np.ascontiguousarray(np.repeat(np.repeat(x, sh, axis=2), sw, axis=3))]
    if mode == "dilate":
        y = np.zeros(x.shape[:2] + (x.shape[2] * sh, x.shape[3] * sw), dtype=x.dtype)
        y[:, :, ::sh, ::sw] = x
        return [y]
    raise err(node, f"unknown upscale mode {mode!r}")


def interp_matrix(L_eff: int, out: int, offset: int = 0, L: int | None = None) -> np.ndarray:
    """(out, L) float32 matrix of the align-corners linear interpolation of one axis, as the
    DeepLab ``interp2`` computes its weights in float: ``r = (L_eff-1)/(out-1)``, ``src =
    r*o``, ``i = int(src)``, ``l = src - i``; row o has ``1-l`` at ``offset+i`` and ``l`` at
    ``offset+i+1`` (``i+1`` clamped to the last row).  ``offset``: the crop start
    (``-pad_beg``); ``L``: the full input length (default ``L_eff``)."""
    L = L_eff if L is None else L
    A = np.zeros((out, L), dtype=np.float32)
    if L_eff == out:            # interp2's special case: a plain copy
        A[np.arange(out), offset + np.arange(out)] = 1
        return A
    f32 = np.float32
    r = f32(L_eff - 1) / f32(out - 1) if out > 1 else f32(0)
    for o in range(out):
        src = f32(r * f32(o))
        i = int(src)
        lam = f32(src - f32(i))
        ip = 1 if i < L_eff - 1 else 0
        A[o, offset + i] += f32(1) - lam
        A[o, offset + i + ip] += lam
    return A


@kernel("Interp")
def _interp(node, xs):
    x = nchw_input(node, xs, "Interp supports 4-d")
    a = node.attrs
    H, W = x.shape[2:]
    off = -int(a.get("pad_beg", 0))
    crop = int(a.get("pad_beg", 0)) + int(a.get("pad_end", 0))
    if a.get("mode") == "like":    # the second input only gives the output size
        oh, ow = xs[1].shape[2], xs[1].shape[3]
    else:
        oh, ow = interp_out_len(H, a, "h"), interp_out_len(W, a, "w")
    Ah = interp_matrix(H + crop, oh, off, H).astype(x.dtype)
    Aw = interp_matrix(W + crop, ow, off, W).astype(x.dtype)
    # along W first, then H (the order interp2 combines the four neighbours in)
    y = np.matmul(x, Aw.T)
    y = np.matmul(Ah, y)
    return [np.ascontiguousarray(y)]


@kernel("Upscale1D")
def _upscale1d(node, xs):
    x = xs[0]
    a = int(node.attrs["scale"])
    if node.attrs["mode"] == "repeat":
        return [np.repeat(x, a, axis=2)]
    y = np.zeros(x.shape[:2] + (x.shape[2] * a,), dtype=x.dtype)
    y[:, :, ::a] = x
    return [y]


@kernel("Upscale3D")
def _upscale3d(node, xs):
    """Lasagne Upscale3DLayer: 'repeat' each value along D, H, W (``T.extra_ops.repeat``), or
    'dilate': ``y[:, :, ::sd, ::sh, ::sw] = x``, zeros elsewhere."""
    x = xs[0]
    sc = tuple(int(v) for v in node.attrs["scale"])
    if node.attrs.get("mode", "repeat") == "repeat":
        y = x
        for ax, f in zip((2, 3, 4), sc):
            y = np.repeat(y, f, axis=ax)
        return [np.ascontiguousarray(y)]
    y = np.zeros(x.shape[:2] + tuple(L * f for L, f in zip(x.shape[2:], sc)), dtype=x.dtype)
    y[:, :, ::sc[0], ::sc[1], ::sc[2]] = x
    return [y]


@kernel("MaxUnpool")
def _max_unpool(node, xs):
    """SegNet's Upsample: every input value written at the flat output index its mask gives,
    per (n, c) plane, in row-major input order (a later write wins); zeros elsewhere."""
    x = nchw_input(node, xs, "the unpooling supports 4-d")
    mask = np.asarray(xs[1])
    if mask.shape != x.shape:
        raise err(node, f"the mask {mask.shape} must have the shape of the data {x.shape}")
    N, C, h, w = x.shape
    H, W = unpool_out_size(h, w, node.attrs)
    idx = mask.reshape(N * C, h * w).astype(np.int64)   # the fork's static_cast<int>: truncation
    bad = (idx < 0) | (idx >= H * W)
    if bad.any():
        v = int(idx[bad][0])
        raise err(node, f"mask index {v} is outside the {H}x{W} output (the pooling that made the "
                        "mask had another input size); SegNet's Caffe aborts here")
    y = np.zeros((N * C, H * W), dtype=x.dtype)
    rows = np.broadcast_to(np.arange(N * C)[:, None], idx.shape)
    # numpy fancy assignment keeps the last of repeated indices, as the fork's loop does
    y[rows.ravel(), idx.ravel()] = x.reshape(N * C, h * w).ravel()
    return [y.reshape(N, C, H, W)]
