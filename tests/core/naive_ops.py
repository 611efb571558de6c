"""Naive, loop-based NCHW reference implementations written from the frameworks'
definitions (Caffe's C++ loops, Theano's pool perform(), textbook convolution), in
float64.  Independent of Migrator's code: used by the Keras-side tests as ground truth.
"""
from __future__ import annotations

import math

import numpy as np


def conv2d(x, W, b=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1, true_conv=False):
    """Caffe convolution (cross-correlation); ``true_conv``: Lasagne flip_filters=True,
    ``y[o, i, j] = sum x[c, i*s + a*d - p, ...] * W[o, c, kh-1-a, kw-1-b]``."""
    x = np.asarray(x, np.float64)
    W = np.asarray(W, np.float64)
    N, C, H, Wd = x.shape
    O, Cg, kh, kw = W.shape
    sh, sw = stride
    ph, pw = pad
    dh, dw = dilation
    xp = np.zeros((N, C, H + 2 * ph, Wd + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + Wd] = x
    oh = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (Wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((N, O, oh, ow))
    og = O // group
    for o in range(O):
        g = o // og
        for i in range(oh):
            for j in range(ow):
                acc = np.zeros(N)
                for c in range(Cg):
                    for a in range(kh):
                        for bb in range(kw):
                            wa, wb = (kh - 1 - a, kw - 1 - bb) if true_conv else (a, bb)
                            acc += xp[:, g * Cg + c, i * sh + a * dh, j * sw + bb * dw] * W[o, c, wa, wb]
                out[:, o, i, j] = acc
        if b is not None:
            out[:, o] += b[o]
    return out


def caffe_pool(x, mode, kernel, stride, pad, round_mode="ceil"):
    """Caffe PoolingLayer (MAX / AVE), transcribed from its C++ loops."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = pad
    rnd = math.ceil if round_mode == "ceil" else math.floor
    oh = int(rnd((H + 2 * ph - kh) / sh)) + 1
    ow = int(rnd((W + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (oh - 1) * sh >= H + ph:
            oh -= 1
        if (ow - 1) * sw >= W + pw:
            ow -= 1
    out = np.zeros((N, C, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, H + ph), min(ws + kw, W + pw)
            size = (he - hs) * (we - ws)
            hs, ws = max(hs, 0), max(ws, 0)
            he, we = min(he, H), min(we, W)
            win = x[:, :, hs:he, ws:we]
            if mode == "max":
                # Caffe starts every max at -FLT_MAX (an empty ceil-mode window keeps it)
                out[:, :, i, j] = win.max(axis=(2, 3), initial=-np.finfo(np.float32).max)
            else:
                out[:, :, i, j] = win.sum(axis=(2, 3)) / size
    return out


def theano_pool(x, mode, ws, stride, pad=(0, 0), ignore_border=True):
    """Theano pool_2d (``Pool.perform``): modes 'max', 'average_inc_pad', 'average_exc_pad'."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    ph, pw = pad
    rows, cols = H + 2 * ph, W + 2 * pw

    def out_len(r, w, s):
        if ignore_border:
            return (r - w) // s + 1
        if s >= w:
            return (r - 1) // s + 1
        return max(0, (r - 1 - w + s) // s) + 1

    oh, ow = out_len(rows, ws[0], stride[0]), out_len(cols, ws[1], stride[1])
    y = np.zeros((N, C, rows, cols))
    y[:, :, ph:ph + H, pw:pw + W] = x
    inc_pad = mode == "average_inc_pad"
    out = np.zeros((N, C, oh, ow))
    for r in range(oh):
        rs = r * stride[0]
        re = min(rs + ws[0], rows)
        if not inc_pad:
            rs, re = max(rs, ph), min(re, H + ph)
        for c in range(ow):
            cs = c * stride[1]
            ce = min(cs + ws[1], cols)
            if not inc_pad:
                cs, ce = max(cs, pw), min(ce, W + pw)
            win = y[:, :, rs:re, cs:ce]
            out[:, :, r, c] = win.max(axis=(2, 3)) if mode == "max" else win.mean(axis=(2, 3))
    return out


def lrn_across(x, size, alpha_sum, beta, k):
    """``x / (k + alpha_sum * sum_{c' in [c-(n-1)//2, c-(n-1)//2+n)} x^2)^beta`` (NCHW)."""
    x = np.asarray(x, np.float64)
    C = x.shape[1]
    pre = (size - 1) // 2
    out = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - pre), min(C, c - pre + size)
        s = (x[:, lo:hi] ** 2).sum(axis=1)
        out[:, c] = x[:, c] / (k + alpha_sum * s) ** beta
    return out


def lrn_within(x, size, alpha_sum, beta, k):
    """``x / (k + alpha_sum * sum_{size x size window} x^2)^beta`` (zero padded, NCHW)."""
    x = np.asarray(x, np.float64)
    H, W = x.shape[2:]
    pre = (size - 1) // 2
    out = np.empty_like(x)
    for i in range(H):
        for j in range(W):
            hs, ws = max(0, i - pre), max(0, j - pre)
            he, we = min(H, i - pre + size), min(W, j - pre + size)
            s = (x[:, :, hs:he, ws:we] ** 2).sum(axis=(2, 3))
            out[:, :, i, j] = x[:, :, i, j] / (k + alpha_sum * s) ** beta
    return out


def nchw(a):
    """NHWC -> NCHW (rank 4), rank 2 unchanged."""
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


def nhwc(a):
    """NCHW -> NHWC (rank 4), rank 2 unchanged."""
    a = np.asarray(a)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


# ------------------------------------------------------------------------------------------
# Lasagne layers, written from Lasagne's definitions (see /work/shared/docs/semantics.md)
# ------------------------------------------------------------------------------------------
def lasagne_dense(x, W, b=None):
    """DenseLayer (``num_leading_axes=1``): the input flattened C-order over all trailing axes
    ((C, H, W) for a conv output), ``y = x_flat . W + b``, W ``(num_inputs, num_units)``."""
    x = np.asarray(x, np.float64)
    W = np.asarray(W, np.float64)
    flat = x.reshape(x.shape[0], -1)
    out = np.zeros((x.shape[0], W.shape[1]))
    for u in range(W.shape[1]):
        for i in range(flat.shape[1]):
            out[:, u] += flat[:, i] * W[i, u]
        if b is not None:
            out[:, u] += b[u]
    return out


def lasagne_lrn(x, alpha=1e-4, k=2.0, beta=0.75, n=5):
    """LocalResponseNormalization2DLayer: ``x / (k + alpha * sum_{n neighbouring channels} x^2)^beta``
    -- Lasagne's alpha multiplies the sum itself (Caffe's alpha is divided by n first)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    half = n // 2
    out = np.empty_like(x)
    for c in range(C):
        s = np.zeros((N, H, W))
        for c2 in range(c - half, c + half + 1):
            if 0 <= c2 < C:
                s += x[:, c2] ** 2
        out[:, c] = x[:, c] / (k + alpha * s) ** beta
    return out


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def lasagne_transposed_conv(x, W, b=None, stride=1, crop=0, flip_filters=False):
    """TransposedConv2DLayer / Deconv2DLayer: the transpose (gradient w.r.t. its input) of a
    convolution with ``subsample=stride``, ``border_mode=crop`` and ``filter_flip = not flip_filters``,
    as a scatter: every input pixel ``x[c, i, j]`` adds ``x[c, i, j] * Wk[c, f, a, b]`` to output
    pixel ``(i*s + a - crop, j*s + b - crop)`` of channel f, where ``Wk`` is W rotated by 180 degrees
    when filter_flip.  W ``(num_input_channels, num_filters, fh, fw)``; crop 'valid' = 0,
    'full' = f - 1, 'same' = f // 2; output ``(in - 1)*s - 2*crop + f``."""
    x = np.asarray(x, np.float64)
    W = np.asarray(W, np.float64)
    N, C, H, Wd = x.shape
    Ci, F, fh, fw = W.shape
    assert Ci == C
    sh, sw = _pair(stride)
    if crop == "valid":
        ch, cw = 0, 0
    elif crop == "full":
        ch, cw = fh - 1, fw - 1
    elif crop == "same":
        ch, cw = fh // 2, fw // 2
    else:
        ch, cw = _pair(crop)
    Wk = W[:, :, ::-1, ::-1] if not flip_filters else W
    oh, ow = (H - 1) * sh - 2 * ch + fh, (Wd - 1) * sw - 2 * cw + fw
    out = np.zeros((N, F, oh, ow))
    for i in range(H):
        for j in range(Wd):
            for a in range(fh):
                for bb in range(fw):
                    r, q = i * sh + a - ch, j * sw + bb - cw
                    if 0 <= r < oh and 0 <= q < ow:
                        # (N, C) x (C, F) -> (N, F)
                        out[:, :, r, q] += x[:, :, i, j] @ Wk[:, :, a, bb]
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def lasagne_dilated_conv(x, W, b=None, dilation=1):
    """DilatedConv2DLayer (pad 0, flip_filters=False only): a dilated cross-correlation,
    ``y[f, i, j] = sum_{c,a,b} x[c, i + a*dh, j + b*dw] * W[c, f, a, b]``, W
    ``(num_input_channels, num_filters, fh, fw)`` (input channels first)."""
    W = np.asarray(W, np.float64)
    return conv2d(x, W.transpose(1, 0, 2, 3), b, dilation=_pair(dilation), true_conv=False)


def lasagne_upscale(x, scale, mode="repeat"):
    """Upscale2DLayer: 'repeat' copies every pixel into a scale_h x scale_w block; 'dilate' puts it
    at the block's top-left corner and zeros elsewhere."""
    x = np.asarray(x, np.float64)
    sh, sw = _pair(scale)
    N, C, H, W = x.shape
    out = np.zeros((N, C, H * sh, W * sw))
    for i in range(H * sh):
        for j in range(W * sw):
            if mode == "repeat" or (i % sh == 0 and j % sw == 0):
                out[:, :, i, j] = x[:, :, i // sh, j // sw]
    return out


def lasagne_nonlin(x, kind):
    """rectify, tanh, sigmoid, linear (None), ('leaky', a)."""
    x = np.asarray(x, np.float64)
    if kind is None or kind == "linear":
        return x
    if kind == "rectify":
        return np.maximum(x, 0.0)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if isinstance(kind, tuple) and kind[0] == "leaky":
        return np.where(x > 0, x, kind[1] * x)
    raise ValueError(kind)
