"""Reference kernels of the conv family: ``Conv``, ``Deconv``, ``Conv1D``, ``Conv3D``, ``Im2col``,
``LocallyConnected``.

* Conv: cross-correlation (``flip=True``: kernel rotated 180deg first = true convolution),
  symmetric zero padding, stride, dilation, groups; im2col built with one strided copy per
  kernel offset, then one BLAS GEMM per group: block by block of images on the worker threads
  (columns, product and output of a block while they are in that core's cache), or for one
  image over the whole image with BLAS's own threads.
"""
from __future__ import annotations

import numpy as np

from ...shapes import deconv_out_len, locally_connected_taps
from ..workers import blas_own_threads, gemm_pieces, parallel, pieces_for, split, ufunc_tiles
from .activation import activation
from .registry import kernel, nchw_input, one_d, pair, param, scratch, windows3d

#: the im2col matrix of a block of images holds at most this many elements
IM2COL_MAX_ELEMENTS = 64 * 1024 * 1024
#: a 1x1 stride-1 convolution multiplies each image's (C, H*W) matrix in place (no copies) from
#: this many output positions per image; smaller images are gathered into one whole-batch GEMM
PER_IMAGE_MIN_POSITIONS = 128
#: after im2col, images with at least this many output positions get one GEMM each, written
#: straight into the NCHW output; smaller ones share one GEMM and a pass back to NCHW
PER_IMAGE_GATHERED_MIN_POSITIONS = 2048
#: OpenBLAS multiplies matrices with M*N*K up to about 1e6 with a separate "small matrix" kernel
#: that rounds differently: a GEMM is cut into blocks (or images joined into one) only where
#: every product stays above this size, so the sums are the ones one GEMM per image gives
SMALL_GEMM_MNK = 1_100_000


def conv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group: int = 1,
           flip: bool = False, bias: np.ndarray | None = None) -> np.ndarray:
    """NCHW cross-correlation (``flip=True``: true convolution) of ``x`` with OIHW ``w``, plus
    ``bias`` (``(O,)`` or untied ``(O, Ho, Wo)``) when given: ``conv(x, w) + bias``.

    Several images: :func:`_im2col_blocks` (each worker thread builds the im2col matrix of its
    block of images, multiplies and writes it out while they are in its core's cache; measured
    on open-nsfw at batch 16: 15 % less CPU time than building the whole batch's columns
    first).  One image: its im2col matrix ``(C*kh*kw, Ho*Wo)`` built with one strided copy
    per kernel offset (channels shared out to the worker threads, into a reused work buffer),
    then ``(group, O/group, K) @ (group, K, Ho*Wo)`` threaded by BLAS itself.  A 1x1 unpadded
    stride-1 kernel skips im2col (each image is its own column matrix).  The bias is added to
    the finished product (the same float operations as ``y += b``)."""
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
    P = Ho * Wo
    wm = np.ascontiguousarray(w, dtype=x.dtype).reshape(group, Og, K)
    out = np.empty((N, O, Ho, Wo), dtype=x.dtype)
    b = None
    if bias is not None:
        b = bias.reshape(1, O, 1, 1) if bias.ndim == 1 else bias.reshape((1,) + bias.shape)
    bg = None if b is None else b.reshape((O, -1)).reshape(group, Og, -1)   # (group, Og, 1 or P)
    og = out.reshape(N, group, Og, P)
    if kh == kw == 1 and ph == pw == 0 and (sh, sw) == (1, 1) and (N == 1 or P >= PER_IMAGE_MIN_POSITIONS):
        xg = x.reshape(N, group, K, P)          # image n's (C, H*W) is its column matrix
        if N == 1:
            _gemm_rows(wm, xg[0], og[0], bg)
        else:
            parallel(lambda ns: _gemm_images(wm, lambda k: xg[k], og, bg, ns), split(N, gemm_pieces(N)))
        return out
    if N > 1:
        _im2col_blocks(x, wm, out, og, b, bg, (kh, kw), stride, pad, dilation)
        return out
    x0 = x[0]
    if ph or pw:
        xp = scratch("conv_pad", (C, H + 2 * ph, W + 2 * pw), x.dtype)

        def pad_part(cs):
            p = xp[cs]
            _zero_border(p, ph, pw)
            p[:, ph:ph + H, pw:pw + W] = x0[cs]
        parallel(pad_part, split(C, pieces_for(xp.nbytes)))
    else:
        xp = x0
    cols = scratch("conv_cols", (C, kh, kw, Ho, Wo), x.dtype)

    def gather(cs):
        v = xp[cs]
        for i in range(kh):
            r0 = i * dh
            for j in range(kw):
                c0 = j * dw
                cols[cs, i, j] = v[:, r0:r0 + sh * (Ho - 1) + 1:sh, c0:c0 + sw * (Wo - 1) + 1:sw]
    parallel(gather, split(C, pieces_for(cols.nbytes)))
    _gemm_rows(wm, cols.reshape(group, K, P), og[0], bg)       # (O, 1, P) is already NCHW
    return out


def _im2col_blocks(x, wm, out, og, b, bg, kernel, stride, pad, dilation) -> None:
    """The im2col convolution of a batch, block by block of images, each block on one worker
    thread from its columns to its output: the block's im2col matrix is built, multiplied and
    written out while it is still in that core's cache, instead of the whole batch's columns
    going to memory and back.  A block is one image when it has
    :data:`PER_IMAGE_GATHERED_MIN_POSITIONS` output positions (one GEMM straight into the NCHW
    output), else enough images to reach that many columns (one GEMM, or one per image where
    the product is smaller than :data:`SMALL_GEMM_MNK`, then a pass back to NCHW with the bias),
    and at least one block per worker piece; an image's sums do not depend on its block."""
    N, C, H, W = x.shape
    O = out.shape[1]
    kh, kw = kernel
    sh, sw = stride
    ph, pw = pad
    dh, dw = dilation
    Ho, Wo = out.shape[2:]
    P = Ho * Wo
    group, Og, K = wm.shape
    if ph or pw:                                       # padded NCHW copy, images shared out
        xp = scratch("conv_pad", (N, C, H + 2 * ph, W + 2 * pw), x.dtype)

        def pad_images(ns):
            p = xp[ns]
            _zero_border(p, ph, pw)
            p[:, :, ph:ph + H, pw:pw + W] = x[ns]
        parallel(pad_images, split(N, pieces_for(xp.nbytes)))
    else:
        xp = x
    per = 1 if P >= PER_IMAGE_GATHERED_MIN_POSITIONS else -(-PER_IMAGE_GATHERED_MIN_POSITIONS // P)
    # at least gemm_pieces() blocks, so that every thread has work (small images: a 7x7 map
    # would otherwise put a whole batch of 16 into one block, on one thread)
    per = max(1, min(per, N // gemm_pieces(N) or 1, IM2COL_MAX_ELEMENTS // max(C * kh * kw * P, 1)))

    def block(ns: slice) -> None:
        n = ns.stop - ns.start
        cols = np.empty((C, kh, kw, n, Ho, Wo), x.dtype)
        src = xp[ns].transpose(1, 0, 2, 3)              # (C, n, Hp, Wp) view
        for i in range(kh):
            r0 = i * dh
            for j in range(kw):
                c0 = j * dw
                cols[:, i, j] = src[:, :, r0:r0 + sh * (Ho - 1) + 1:sh, c0:c0 + sw * (Wo - 1) + 1:sw]
        cm = cols.reshape(group, K, n * P)
        if n == 1:
            np.matmul(wm, cm, out=og[ns.start])
            if bg is not None:
                og[ns.start] += bg
            return
        y = np.empty((group, Og, n * P), x.dtype)
        if Og * P * K > SMALL_GEMM_MNK:
            np.matmul(wm, cm, out=y)
        else:
            for k in range(n):
                np.matmul(wm, cm[:, :, k * P:(k + 1) * P], out=y[:, :, k * P:(k + 1) * P])
        yt = y.reshape(O, n, Ho, Wo).transpose(1, 0, 2, 3)
        if b is None:
            np.copyto(out[ns], yt)
        else:
            np.add(yt, b, out=out[ns])
    parallel(block, [slice(a, min(N, a + per)) for a in range(0, N, per)])


def _gemm_images(wm: np.ndarray, cols_of, og: np.ndarray, bg, ns: slice) -> None:
    """``og[k, g] = wm[g] @ cols_of(k)[g] (+ bg[g])`` for the images ``k`` in ``ns``: one GEMM
    per image straight into the output, the bias added while it is still in cache."""
    for k in range(ns.start, ns.stop):
        np.matmul(wm, cols_of(k), out=og[k])
        if bg is not None:
            og[k] += bg


def _gemm_rows(wm: np.ndarray, cols: np.ndarray, out: np.ndarray, bg) -> None:
    """``out[g] = wm[g] @ cols[g] (+ bg[g])`` for one image ((group, Og, K) weights, (group, K, P)
    columns): one GEMM, threaded by BLAS itself (its threads share the packed columns)."""
    with blas_own_threads():
        np.matmul(wm, cols, out=out)
    if bg is not None:
        ufunc_tiles(np.add, out, out, bg)


def _zero_border(xp: np.ndarray, ph: int, pw: int) -> None:
    """Zero the ``ph`` top/bottom rows and ``pw`` left/right columns of ``xp`` (..., Hp, Wp)."""
    if ph:
        xp[..., :ph, :] = 0
        xp[..., -ph:, :] = 0
    if pw:
        xp[..., :, :pw] = 0
        xp[..., :, -pw:] = 0


@kernel("Conv")
def _conv(node, xs):
    x = nchw_input(node, xs, "the reference convolution supports 2-d")
    a = node.attrs
    w = param(node, "weight", x.dtype)
    y = conv2d(x, w, pair(a.get("stride", 1)), pair(a.get("pad", 0)), pair(a.get("dilation", 1)),
               int(a.get("group", 1) or 1), bool(a.get("flip", False)),
               bias=param(node, "bias", x.dtype))      # (O,) or untied (O, H, W)
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
