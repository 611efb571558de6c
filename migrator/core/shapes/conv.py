"""Shape rules and formulas of the conv family: ``Conv``, ``Deconv``, ``Conv1D``, ``Conv3D``,
``Im2col``, ``LocallyConnected``.

* convolution: ``floor((L + 2p - (d(k-1)+1)) / s) + 1``
* Caffe Deconvolution: ``s*(L-1) + d*(k-1) + 1 - 2p``
"""
from __future__ import annotations

from .registry import check_rank, fmt_shape, one_d, out_lens_3d, pair, shape_rule, spatial_input


def conv_out_len(L: int | None, k: int, s: int, p: int, d: int = 1) -> int | None:
    """Output length of one convolved dimension: ``(L + 2p - (d(k-1)+1)) // s + 1``."""
    if L is None:
        return None
    ek = d * (k - 1) + 1
    return (L + 2 * p - ek) // s + 1


def deconv_out_len(L: int | None, k: int, s: int, p: int, d: int = 1) -> int | None:
    """Caffe Deconvolution: ``s*(L-1) + d*(k-1) + 1 - 2p``."""
    if L is None:
        return None
    return s * (L - 1) + d * (k - 1) + 1 - 2 * p


def locally_connected_taps(kh: int, kw: int, flip: bool):
    """(dy, dx, fi, fj) of every filter tap of Lasagne's LocallyConnected2DLayer.convolve:
    output (h, w) reads input (h + dy, w + dx) with W[..., fi, fj, h, w]."""
    out = []
    for i in range(kh):
        for j in range(kw):
            out.append((i - kh // 2, j - kw // 2, kh - 1 - i if flip else i, kw - 1 - j if flip else j))
    return out


@shape_rule("Conv")
def conv_shape(node, ins, ctx):
    """The ``Conv`` rule (any number of spatial axes, NC...)."""
    x, nsp = spatial_input(ins, ctx)
    a = node.attrs
    w = node.p("weight")
    kernel = pair(a.get("kernel"), nsp) if a.get("kernel") is not None else (
        tuple(w.shape[2:]) if w is not None else None)
    if kernel is None:
        raise ctx.error("convolution has neither a kernel size nor a weight")
    stride = pair(a.get("stride", 1), nsp)
    pad = pair(a.get("pad", 0), nsp)
    dil = pair(a.get("dilation", 1), nsp)
    group = int(a.get("group", 1) or 1)
    if w is not None:
        if w.ndim != nsp + 2:
            raise ctx.error(f"weight shape {tuple(w.shape)} does not fit a {nsp}-d convolution")
        if tuple(w.shape[2:]) != tuple(kernel):
            raise ctx.error(f"weight shape {tuple(w.shape)} does not match kernel size {tuple(kernel)}")
        if x[1] is not None and w.shape[1] * group != x[1]:
            raise ctx.error(f"weight shape {tuple(w.shape)} expects {w.shape[1] * group} input "
                            f"channels (group {group}) but the input has {x[1]} ({fmt_shape(x)})")
        if w.shape[0] % group:
            raise ctx.error(f"{w.shape[0]} output channels are not divisible by group {group}")
        out_c = int(w.shape[0])
    else:
        out_c = a.get("num_output")
    b = node.p("bias")
    if b is not None and out_c is not None and b.shape[0] != out_c:
        raise ctx.error(f"bias shape {tuple(b.shape)} does not match {out_c} output channels")
    sp = []
    for L, k, s, p, d in zip(x[2:], kernel, stride, pad, dil):
        o = conv_out_len(L, int(k), int(s), int(p), int(d))
        if o is not None and o <= 0:
            raise ctx.error(f"input {fmt_shape(x)} is too small for kernel {tuple(kernel)} "
                            f"(pad {tuple(pad)}, dilation {tuple(dil)})")
        sp.append(o)
    return [(x[0], out_c, *sp)]


@shape_rule("Deconv")
def _deconv(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=4)
    a = node.attrs
    w = node.p("weight")
    kernel = pair(a["kernel"])
    stride = pair(a.get("stride", 1))
    pad = pair(a.get("pad", 0))
    dil = pair(a.get("dilation", 1))
    group = int(a.get("group", 1) or 1)
    out_c = a.get("num_output")
    if w is not None:
        if w.ndim != 4 or tuple(w.shape[2:]) != tuple(kernel):
            raise ctx.error(f"weight shape {tuple(w.shape)} does not match kernel size {tuple(kernel)} "
                            "(expected (in, out/group, kh, kw))")
        if x[1] is not None and w.shape[0] != x[1]:
            raise ctx.error(f"weight shape {tuple(w.shape)} expects {w.shape[0]} input channels "
                            f"but the input has {x[1]} ({fmt_shape(x)})")
        if w.shape[0] % group:
            raise ctx.error(f"{w.shape[0]} input channels are not divisible by group {group}")
        if out_c is not None and w.shape[1] * group != int(out_c):
            raise ctx.error(f"weight shape {tuple(w.shape)} gives {w.shape[1] * group} outputs "
                            f"(group {group}) but num_output is {out_c}")
        out_c = int(w.shape[1]) * group
    b = node.p("bias")
    if b is not None and out_c is not None and b.shape[0] != out_c:
        raise ctx.error(f"bias shape {tuple(b.shape)} does not match {out_c} output channels")
    sp = []
    for L, k, s_, p, d in zip(x[2:], kernel, stride, pad, dil):
        o = deconv_out_len(L, int(k), int(s_), int(p), int(d))
        if o is not None and o <= 0:
            raise ctx.error(f"deconvolution output would be empty for input {fmt_shape(x)} (kernel "
                            f"{tuple(kernel)}, stride {tuple(stride)}, pad {tuple(pad)})")
        sp.append(o)
    return [(x[0], out_c, *sp)]


@shape_rule("Conv1D")
def _conv1d(node, ins, ctx):
    """The ``Conv`` rule over (N, C, 1, L), the size-1 axis dropped."""
    return one_d(node, ins, ctx, conv_shape)


@shape_rule("Conv3D")
def _conv3d(node, ins, ctx):
    x = ins[0]
    sp = out_lens_3d(ctx, x, node.attrs)
    w = node.p("weight")
    c = None if w is None else int(w.shape[0])
    return [(x[0], c, *sp)]


@shape_rule("Im2col")
def _im2col(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=4)
    a = node.attrs
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = a["kernel"], a["pad"], a["stride"], a["dilation"]
    sp = []
    for L, k, p, s, d in ((x[2], kh, ph, sh, dh), (x[3], kw, pw, sw, dw)):
        o = conv_out_len(L, k, s, p, d)
        if o is not None and o <= 0:
            raise ctx.error(f"input {fmt_shape(x)} is too small for the Im2col kernel {(kh, kw)}")
        sp.append(o)
    return [(x[0], None if x[1] is None else x[1] * kh * kw, *sp)]


@shape_rule("LocallyConnected")
def _locally_connected(node, ins, ctx):
    s = ins[0]
    w = node.params.get("weight")
    return [(s[0], int(w.value.shape[0]) if w is not None else None) + tuple(s[2:])]


@shape_rule("Deconv3D")
def _deconv3d(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=5)
    a = node.attrs
    w = node.p("weight")
    k = tuple(int(v) for v in a["kernel"])
    out_c = a.get("num_output")
    if w is not None:
        if w.ndim != 5 or tuple(w.shape[2:]) != k:
            raise ctx.error(f"weight shape {tuple(w.shape)} does not match kernel size {k} "
                            "(expected (in, out, kd, kh, kw))")
        if x[1] is not None and w.shape[0] != x[1]:
            raise ctx.error(f"weight shape {tuple(w.shape)} expects {w.shape[0]} input channels "
                            f"but the input has {x[1]} ({fmt_shape(x)})")
        out_c = int(w.shape[1])
    sp = []
    for L, kk, s_, p in zip(x[2:], k, a["stride"], a["pad"]):
        o = deconv_out_len(L, kk, int(s_), int(p))
        if o is not None and o <= 0:
            raise ctx.error(f"transposed convolution output would be empty for input {fmt_shape(x)} "
                            f"(kernel {k}, stride {tuple(a['stride'])}, crop {tuple(a['pad'])})")
        sp.append(o)
    return [(x[0], out_c, *sp)]
