"""Reference kernels of the conv family: ``Conv``, ``Deconv``, ``Conv1D``, ``Conv3D``, ``Im2col``,
``LocallyConnected``.

* Conv: cross-correlation (``flip=True``: kernel rotated 180deg first = true convolution),
  symmetric zero padding, stride, dilation, groups; im2col built with one strided copy per
  kernel offset, then one batched float BLAS matmul over the groups.
"""
from __future__ import annotations

import numpy as np

from ...shapes import deconv_out_len, locally_connected_taps
from .activation import activation
from .registry import kernel, nchw_input, one_d, pair, param, windows3d

IM2COL_MAX_ELEMENTS = 64 * 1024 * 1024


def conv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group: int = 1,
           flip: bool = False) -> np.ndarray:
    """NCHW cross-correlation (``flip=True``: true convolution) of ``x`` with OIHW ``w``."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    sh, sw = stride
    ph, pw = pad
    dh, dw = dilation
    if flip:
        w = w[:, :, ::-1, ::-1]
    if Cg * group != C or O % group:
        raise ValueError(f"weight {w.shape} with group {group} does not fit {C} input channels")
    Ho = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    Wo = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"input {x.shape} too small for kernel {(kh, kw)}")
    K = Cg * kh * kw
    Og = O // group
    wm = np.ascontiguousarray(w).reshape(group, Og, K)
    out = np.empty((N, O, Ho * Wo), dtype=x.dtype)
    if kh == kw == 1 and ph == pw == 0:
        xs = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x
        xs = xs[:, :, :Ho, :Wo]
        cols = xs.reshape(N, group, K, Ho * Wo)
        np.matmul(wm, cols, out=out.reshape(N, group, Og, Ho * Wo))
        return out.reshape(N, O, Ho, Wo)
    if ph or pw:
        xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
        xp[:, :, ph:ph + H, pw:pw + W] = x
    else:
        xp = x
    per_sample = C * kh * kw * Ho * Wo
    chunk = max(1, min(N, IM2COL_MAX_ELEMENTS // max(per_sample, 1)))
    cols = np.empty((chunk, C, kh, kw, Ho, Wo), dtype=x.dtype)
    for n0 in range(0, N, chunk):
        n1 = min(N, n0 + chunk)
        c = cols[: n1 - n0]
        for i in range(kh):
            r0 = i * dh
            for j in range(kw):
                c0 = j * dw
                c[:, :, i, j] = xp[n0:n1, :, r0:r0 + sh * (Ho - 1) + 1:sh, c0:c0 + sw * (Wo - 1) + 1:sw]
        np.matmul(wm, c.reshape(n1 - n0, group, K, Ho * Wo),
                  out=out[n0:n1].reshape(n1 - n0, group, Og, Ho * Wo))
    return out.reshape(N, O, Ho, Wo)


@kernel("Conv")
def _conv(node, xs):
    x = nchw_input(node, xs, "the reference convolution supports 2-d")
    a = node.attrs
    w = param(node, "weight", x.dtype)
    y = conv2d(x, w, pair(a.get("stride", 1)), pair(a.get("pad", 0)), pair(a.get("dilation", 1)),
               int(a.get("group", 1) or 1), bool(a.get("flip", False)))
    b = param(node, "bias", x.dtype)
    if b is not None:
        if b.ndim == 1:
            y += b.reshape(1, -1, 1, 1)
        else:   # untied biases (O, H, W)
            y += b.reshape((1,) + b.shape)
    return [activation(y, a.get("activation"), inplace=True)]


def deconv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), pad=(0, 0), dilation=(1, 1),
             group: int = 1) -> np.ndarray:
    """Caffe Deconvolution (NCHW) of ``x`` with the ``(I, O/group, kh, kw)`` weight ``w``:
    ``y[n, o, s*i + d*a - p, s*j + d*b - p] += x[n, c, i, j] * w[c, o, a, b]`` (per group).

    One matmul gives every (output channel, kernel offset, input position) product; a
    col2im scatter-add over the kh*kw kernel offsets (strided slices) places them."""
    N, C, H, W = x.shape
    Cw, Og, kh, kw = w.shape
    sh, sw = stride
    ph, pw = pad
    dh, dw = dilation
    if Cw != C or C % group:
        raise ValueError(f"weight {w.shape} with group {group} does not fit {C} input channels")
    Cg = C // group
    Ho = deconv_out_len(H, kh, sh, ph, dh)
    Wo = deconv_out_len(W, kw, sw, pw, dw)
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"deconvolution of {x.shape} with kernel {(kh, kw)} gives an empty output")
    # full (uncropped) output
    Hf = sh * (H - 1) + dh * (kh - 1) + 1
    Wf = sw * (W - 1) + dw * (kw - 1) + 1
    # (group, Og*kh*kw, Cg) @ (N, group, Cg, H*W) -> (N, group, Og*kh*kw, H*W)
    wm = np.ascontiguousarray(w.reshape(group, Cg, Og * kh * kw).transpose(0, 2, 1))
    cols = np.matmul(wm, x.reshape(N, group, Cg, H * W))
    cols = cols.reshape(N, group * Og, kh, kw, H, W)
    full = np.zeros((N, group * Og, Hf, Wf), dtype=x.dtype)
    for a in range(kh):
        r0 = a * dh
        for b in range(kw):
            c0 = b * dw
            full[:, :, r0:r0 + sh * (H - 1) + 1:sh, c0:c0 + sw * (W - 1) + 1:sw] += cols[:, :, a, b]
    return np.ascontiguousarray(full[:, :, ph:ph + Ho, pw:pw + Wo])


@kernel("Deconv")
def _deconv(node, xs):
    x = nchw_input(node, xs, "the reference deconvolution supports 2-d")
    a = node.attrs
    w = param(node, "weight", x.dtype)
    if a.get("flip", False):
        w = np.ascontiguousarray(w[:, :, ::-1, ::-1])
    y = deconv2d(x, w, pair(a.get("stride", 1)), pair(a.get("pad", 0)), pair(a.get("dilation", 1)),
                 int(a.get("group", 1) or 1))
    b = param(node, "bias", x.dtype)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return [activation(y, a.get("activation"), inplace=True)]


@kernel("Im2col")
def _im2col(node, xs):
    x = xs[0]
    a = node.attrs
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = a["kernel"], a["pad"], a["stride"], a["dilation"]
    N, C, H, W = x.shape
    Ho = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    Wo = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    y = np.empty((N, C, kh, kw, Ho, Wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            y[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]
    return [y.reshape(N, C * kh * kw, Ho, Wo)]


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


@kernel("Conv3D")
def _conv3d(node, xs):
    """y[n, o] = sum_{c, a, b, e} xpad[n, c, s*z + a, ...] * w[o, c, a, b, e] (``flip``: w
    rotated over its three spatial axes first: a true convolution)."""
    a = node.attrs
    x = np.asarray(xs[0])
    w = np.asarray(node.p("weight"), dtype=x.dtype)
    if a.get("flip"):
        w = w[:, :, ::-1, ::-1, ::-1]
    k, s, p = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"])
    xp = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in p])
    out = [(L + 2 * q - kk) // ss + 1 for L, kk, ss, q in zip(x.shape[2:], k, s, p)]
    y = np.zeros((x.shape[0], w.shape[0], *out), x.dtype)
    for (i, j, m), v in windows3d(xp, k, s, out):
        y += np.einsum("ncdhw,oc->nodhw", v, w[:, :, i, j, m], optimize=True)
    b = node.p("bias")
    if b is not None and a.get("bias", True):
        y += np.asarray(b, x.dtype).reshape(1, -1, 1, 1, 1)
    return [activation(y, a.get("activation"))]


@kernel("Conv1D")
def _conv1d(node, xs):
    """The ``Conv`` kernel over (N, C, 1, L) (see ``OPS['Conv1D']``), size-1 axis dropped."""
    return one_d(node, xs, _conv)


@kernel("Deconv3D")
def _deconv3d(node, xs):
    """Lasagne TransposedConv3DLayer: ``full[n, o, s*z + a, s*y + b, s*x + e] += x[n, c, z, y, x]
    * w[c, o, a, b, e]`` (``flip``: w rotated over its three spatial axes first), the crop
    ``p`` cut from both ends of each axis, then the bias and the nonlinearity."""
    a = node.attrs
    x = np.asarray(xs[0])
    w = np.asarray(node.p("weight"), dtype=x.dtype)
    if a.get("flip"):
        w = w[:, :, ::-1, ::-1, ::-1]
    k, s, p = (tuple(int(v) for v in a[key]) for key in ("kernel", "stride", "pad"))
    N, _, D, H, W = x.shape
    full = np.zeros((N, w.shape[1]) + tuple(st * (L - 1) + kk for L, kk, st in zip((D, H, W), k, s)),
                    dtype=x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            for m in range(k[2]):
                full[:, :, i:i + s[0] * (D - 1) + 1:s[0], j:j + s[1] * (H - 1) + 1:s[1],
                     m:m + s[2] * (W - 1) + 1:s[2]] += np.einsum("ncdhw,co->nodhw", x, w[:, :, i, j, m],
                                                                 optimize=True)
    y = np.ascontiguousarray(full[:, :, p[0]:full.shape[2] - p[0], p[1]:full.shape[3] - p[1],
                                  p[2]:full.shape[4] - p[2]])
    b = node.p("bias")
    if b is not None and a.get("bias", True):
        y += np.asarray(b, x.dtype).reshape(1, -1, 1, 1, 1)
    return [activation(y, a.get("activation"))]
