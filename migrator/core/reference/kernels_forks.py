"""Reference kernels of the Caffe fork ops (``Interp``, ``Normalize``, ``ShuffleChannel``),
written from the forks' definitions (see :data:`migrator.core.ir.OPS`)."""
from __future__ import annotations

import numpy as np

from ..shapes_forks import interp_out_len
from .kernels import _err, _param, kernel


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
    x = xs[0]
    if x.ndim != 4:
        raise _err(node, f"Interp supports 4-d (NCHW) inputs, got shape {x.shape}")
    a = node.attrs
    H, W = x.shape[2:]
    off = -int(a.get("pad_beg", 0))
    crop = int(a.get("pad_beg", 0)) + int(a.get("pad_end", 0))
    oh, ow = interp_out_len(H, a, "h"), interp_out_len(W, a, "w")
    Ah = interp_matrix(H + crop, oh, off, H).astype(x.dtype)
    Aw = interp_matrix(W + crop, ow, off, W).astype(x.dtype)
    # along W first, then H (the order interp2 combines the four neighbours in)
    y = np.matmul(x, Aw.T)
    y = np.matmul(Ah, y)
    return [np.ascontiguousarray(y)]


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
    s = _param(node, "scale", x.dtype)
    if s is not None:
        y *= s.reshape(1, -1, *([1] * (x.ndim - 2))) if s.size > 1 else s.reshape(())
    return [y]


@kernel("ShuffleChannel")
def _shuffle(node, xs):
    x = xs[0]
    g = int(node.attrs.get("group", 1))
    N, C = x.shape[:2]
    if C % g:
        raise _err(node, f"{C} channels cannot be split into {g} groups")
    y = x.reshape((N, g, C // g) + x.shape[2:]).swapaxes(1, 2).reshape(x.shape)
    return [np.ascontiguousarray(y)]
