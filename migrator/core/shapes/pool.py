"""Shape rules and formulas of the pool family: ``Pool``, ``GlobalPool``, ``Pool1D``,
``Pool3D``, ``SPP``, ``LasagneSPP``, ``FeaturePool``, ``FeatureWTA``.

* pooling ``floor``: ``floor((L + 2p - k) / s) + 1``
* pooling ``caffe_ceil``: ``ceil((L + 2p - k) / s) + 1``, then if ``p > 0`` and
  ``(out-1)*s >= L + p``: ``out -= 1`` (the last window must start inside the image)
* pooling ``lasagne_ceil`` (Theano ``ignore_border=False``, ``r = L + 2p``):
  ``ceil(r/s)`` if ``s >= k`` else ``max(0, ceil((r-k)/s)) + 1``
"""
from __future__ import annotations

import math

from .registry import check_rank, fmt_shape, one_d, out_lens_3d, pair, shape_rule, spatial_input


def pool_out_len(L: int | None, k: int, s: int, p: int, rounding: str = "floor") -> int | None:
    """Output length of one pooled dimension under the given rounding rule."""
    if L is None:
        return None
    if rounding == "floor":
        return (L + 2 * p - k) // s + 1
    if rounding == "caffe_ceil":
        out = -((-(L + 2 * p - k)) // s) + 1   # ceil division
        if p > 0 and (out - 1) * s >= L + p:
            out -= 1
        return out
    if rounding == "lasagne_ceil":
        r = L + 2 * p
        if s >= k:
            return -((-r) // s)
        return max(0, -((-(r - k)) // s)) + 1
    raise ValueError(f"unknown pooling rounding {rounding!r}")


def spp_levels(H: int, W: int, height: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Caffe SPP's (kernel, pad) per pyramid level (stride = kernel), spp_layer.cpp."""
    out = []
    for lvl in range(height):
        b = 2 ** lvl
        kh, kw = -(-H // b), -(-W // b)
        out.append(((kh, kw), ((kh * b - H + 1) // 2, (kw * b - W + 1) // 2)))
    return out


def spp_fast_geometry(size: int, n: int) -> tuple[int, int, int]:
    """(window, stride, bins) of the 'fast' / cuDNN SPP level ``n`` on ``size`` pixels."""
    win, st = -(-size // n), size // n
    return win, st, ((size - win) // st + 1) if st > 0 else 0


def spp_regions(h: int, w: int, attrs: dict) -> list[tuple[int, int, int, int]]:
    """(h0, h1, w0, w1) of every Lasagne SPP bin, level by level, row-major (Lasagne master)."""
    out = []
    for n in attrs["pool_dims"]:
        if attrs["implementation"] == "kaiming":   # pool_2d_nxn_regions
            for r in range(n):
                for c in range(n):
                    out.append((math.floor(r / float(n) * h), math.ceil((r + 1) / float(n) * h),
                                math.floor(c / float(n) * w), math.ceil((c + 1) / float(n) * w)))
        else:
            wh, sh, bh = spp_fast_geometry(h, n)
            ww, sw, bw = spp_fast_geometry(w, n)
            for r in range(bh):
                for c in range(bw):
                    out.append((r * sh, r * sh + wh, c * sw, c * sw + ww))
    return out


@shape_rule("Pool")
def pool_shape(node, ins, ctx):
    """The ``Pool`` rule (any number of spatial axes, NC...)."""
    x, nsp = spatial_input(ins, ctx)
    a = node.attrs
    kernel = pair(a["kernel"], nsp)
    stride = pair(a.get("stride") or kernel, nsp)
    pad = pair(a.get("pad", 0), nsp)
    rounding = a.get("rounding", "floor")
    if rounding not in ("floor", "caffe_ceil", "lasagne_ceil"):
        raise ctx.error(f"unknown pooling rounding {rounding!r}")
    sp = []
    for L, k, s, p in zip(x[2:], kernel, stride, pad):
        if int(p) >= int(k):
            raise ctx.error(f"pooling pad {tuple(pad)} must be smaller than the kernel {tuple(kernel)}")
        o = pool_out_len(L, int(k), int(s), int(p), rounding)
        if o is not None and o <= 0:
            raise ctx.error(f"input {fmt_shape(x)} is too small for pooling kernel {tuple(kernel)}")
        sp.append(o)
    if node.num_outputs == 2 and (a.get("mode", "max") != "max" or nsp != 2):
        raise ctx.error("only 2-d MAX pooling has a second output (the argmax mask)")
    return [(x[0], x[1], *sp)] * node.num_outputs


@shape_rule("GlobalPool")
def _gpool(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, min_rank=2)
    if node.attrs.get("keepdims", False):
        return [(x[0], x[1]) + (1,) * (len(x) - 2)]
    return [(x[0], x[1])]


@shape_rule("Pool1D")
def _pool1d(node, ins, ctx):
    """The ``Pool`` rule over (N, C, 1, L), the size-1 axis dropped."""
    return one_d(node, ins, ctx, pool_shape)


@shape_rule("Pool3D")
def _pool3d(node, ins, ctx):
    x = ins[0]
    return [(x[0], x[1], *out_lens_3d(ctx, x, node.attrs))]


@shape_rule("SPP")
def _spp(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, rank=4)
    if x[2] is None or x[3] is None:
        return [(x[0], x[1], 1, 1) if node.attrs["pyramid_height"] == 1 else (x[0], None)]
    total = 0
    for (kh, kw), (ph, pw) in spp_levels(x[2], x[3], int(node.attrs["pyramid_height"])):
        if ph >= kh or pw >= kw:
            raise ctx.error(f"SPP level with kernel {(kh, kw)} needs pad {(ph, pw)} >= kernel: the input "
                            f"{fmt_shape(x)} is too small for pyramid_height {node.attrs['pyramid_height']}")
        oh = pool_out_len(x[2], kh, kh, ph, "caffe_ceil")
        ow = pool_out_len(x[3], kw, kw, pw, "caffe_ceil")
        total += oh * ow
    if node.attrs["pyramid_height"] == 1:
        return [(x[0], x[1], 1, 1)]
    return [(x[0], None if x[1] is None else x[1] * total)]


@shape_rule("LasagneSPP")
def _lasagne_spp(node, ins, ctx):
    s = ins[0]
    return [(s[0], s[1], int(sum(n * n for n in node.attrs["pool_dims"])))]


@shape_rule("FeaturePool")
def _feature_pool(node, ins, ctx):
    s = list(ins[0])
    ax, p = int(node.attrs["axis"]), int(node.attrs["pool_size"])
    if s[ax] is not None:
        if s[ax] % p:
            raise ctx.error(f"{s[ax]} features along axis {ax} are not a multiple of pool_size {p}")
        s[ax] //= p
    return [tuple(s)]


@shape_rule("FeatureWTA")
def _feature_wta(node, ins, ctx):
    return [ins[0]]
