"""Mapping rules of the resize family: ``Upscale``, ``Interp``, ``Upscale1D``, ``MaxUnpool``.

* Upscale: UpSampling2D('nearest') for 'repeat'; a strided Conv2DTranspose with a one-hot
  kernel for 'dilate'.
* Interp (DeepLab/PSPNet, align-corners bilinear; Keras ``Resizing`` is half-pixel, so it is
  NOT used): the interpolation is separable, ``Y = A_h X A_w^T``; two bias-free ``Dense``
  layers whose kernels are the fixed interpolation matrices (:func:`align_corners_matrix`,
  float32 as the fork computes them), between ``Permute`` layers.  Needs a known input size.
* Upscale1D: the plain expression ``LasagneSourceOp``.
* Upscale3D: UpSampling3D for 'repeat'; a strided Conv3DTranspose with a one-hot kernel for
  'dilate'.
"""
from __future__ import annotations

import numpy as np

from ...shapes import interp_out_len, unpool_out_size
from ..plan import ParamRow
from ..registry import Rule, rank_of, register
from .common import F32, Chain, SourceOpRule, input_shape, unsupported


def align_corners_matrix(L_eff: int, out: int, offset: int = 0, L: int | None = None) -> np.ndarray:
    """The ``(out, L)`` float32 matrix ``A`` of DeepLab's align-corners linear interpolation of one
    axis, ``y = A @ x``, with the fork's float32 arithmetic: ``r = (L_eff-1)/(out-1)`` (0 when
    ``out == 1``), ``s = r*o``, ``i = int(s)``, ``l = s - i``; output ``o`` takes ``(1-l)`` of
    input ``offset + i`` and ``l`` of input ``offset + min(i+1, L_eff-1)``.  ``offset`` is where
    the effective extent starts in the input (``-pad_beg``), ``L`` the input length (default
    ``L_eff``)."""
    L = L_eff if L is None else L
    r = F32(L_eff - 1) / F32(out - 1) if out > 1 else F32(0)
    s = (r * np.arange(out, dtype=F32)).astype(F32)
    lo = s.astype(np.int64)
    lam = (s - lo.astype(F32)).astype(F32)
    hi = np.minimum(lo + 1, L_eff - 1)
    rows = np.arange(out)
    A = np.zeros((out, L), dtype=F32)
    np.add.at(A, (rows, offset + lo), (F32(1) - lam).astype(F32))
    np.add.at(A, (rows, offset + hi), lam)
    return A


@register("Upscale")
class UpscaleRule(Rule):
    name = "Upscale"
    description = ("repeat: UpSampling2D(interpolation='nearest'); dilate: Conv2DTranspose "
                   "(strides = scale, one-hot identity kernel at tap (0, 0), no bias).")

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        if rank_of(in_shape) != 4:
            return unsupported(node, ctx, f"only 2-D upscaling is supported (input rank "
                                          f"{rank_of(in_shape)})")
        sh, sw = (int(v) for v in node.attrs.get("scale", (2, 2)))
        mode = node.attrs.get("mode", "repeat")
        chain = Chain(node, ctx)
        if mode == "repeat":
            chain.add("UpSampling2D", {"size": [sh, sw], "interpolation": "nearest"})
            rows = [ParamRow("size", "scale_factor; mode 'repeat' = nearest neighbour (exact)",
                             [sh, sw], sources={"scale_factor": (sh, sw), "mode": mode})]
            return chain.finish(rows=rows, layout="NHWC")
        if mode != "dilate":
            return unsupported(node, ctx, f"upscale mode {mode!r}")
        C = in_shape[1]
        if C is None:
            return unsupported(node, ctx, "mode 'dilate' needs a known channel count")
        K = np.zeros((sh, sw, C, C), dtype=F32)
        K[0, 0] = np.eye(C, dtype=F32)
        chain.add("Conv2DTranspose", {"filters": int(C), "kernel_size": [sh, sw],
                                      "strides": [sh, sw], "padding": "valid",
                                      "output_padding": [0, 0], "dilation_rate": [1, 1],
                                      "use_bias": False, "activation": "linear"}, weights=[K])
        rows = [ParamRow("kernel", f"one-hot ({sh}, {sw}, C, C): identity at tap (0, 0), zeros "
                         "elsewhere -> x at (sh*i, sw*j), zeros between (exact)", K,
                         sources={"scale_factor": (sh, sw), "mode": mode})]
        return chain.finish(rows=rows, layout="NHWC")


@register("Interp")
class InterpRule(Rule):
    name = "Interp"
    description = ("Align-corners bilinear as two fixed-matrix Dense layers (W then H) between "
                   "Permutes; built-in layers only (Keras Resizing is half-pixel, not used).")

    def map(self, node, ctx):
        x = input_shape(node, ctx)
        if rank_of(x) != 4:
            return unsupported(node, ctx, f"Interp needs a 4-d input (rank {rank_of(x)})")
        if x is None or x[2] is None or x[3] is None:
            return unsupported(node, ctx, "Interp needs a known input size (its interpolation "
                                          "matrices depend on it): give --input-shape")
        a = node.attrs
        H, W = int(x[2]), int(x[3])
        crop = int(a.get("pad_beg", 0)) + int(a.get("pad_end", 0))
        off = -int(a.get("pad_beg", 0))
        if a.get("mode") == "like":    # the second input only gives the output size
            ref = input_shape(node, ctx, 1)
            if ref is None or len(ref) != 4 or ref[2] is None or ref[3] is None:
                return unsupported(node, ctx, "Interp's size reference needs a known (H, W)")
            oh, ow = int(ref[2]), int(ref[3])
        else:
            oh, ow = interp_out_len(H, a, "h"), interp_out_len(W, a, "w")
        Ah = align_corners_matrix(H + crop, oh, off, H)
        Aw = align_corners_matrix(W + crop, ow, off, W)
        chain = Chain(node, ctx, inputs=[node.inputs[0]])
        chain.add("Permute", {"dims": [3, 1, 2]}, suffix="to_chw")                 # N, C, H, W
        chain.add("Dense", {"units": ow, "use_bias": False, "activation": "linear"},
                  suffix="w", weights=[Aw.T.copy()])                              # N, C, H, ow
        chain.add("Permute", {"dims": [1, 3, 2]}, suffix="to_cwh")                 # N, C, ow, H
        chain.add("Dense", {"units": oh, "use_bias": False, "activation": "linear"},
                  suffix="h", weights=[Ah.T.copy()])                              # N, C, ow, oh
        chain.add("Permute", {"dims": [3, 2, 1]})                                  # N, oh, ow, C
        src = {k: a.get(k) for k in ("mode", "zoom_factor", "shrink_factor", "height", "width",
                                     "pad_beg", "pad_end")}
        rows = [ParamRow("output size", "zoom: L + (L-1)(z-1); shrink: (L-1)//s + 1; size: "
                         "height/width; like: the second input's (H, W) (L after the "
                         "pad_beg/pad_end crop)", (oh, ow),
                         sources={"input": (H, W), **src}),
                ParamRow("kernel (W)", "align-corners weights: r = (L-1)/(out-1), src = r*o, "
                         "(1-l, l) at (floor(src), floor(src)+1), float32 as the fork", Aw.T,
                         sources={"width": W}),
                ParamRow("kernel (H)", "the same along H, applied after W (the fork's order)",
                         Ah.T, sources={"height": H})]
        return chain.finish(rows=rows, layout="NHWC")


@register("Upscale1D")
class Upscale1DRule(SourceOpRule):
    name = "Upscale1D"
    description = "Lasagne Upscale1DLayer: keras.ops repeat / interleaved zeros (plain LasagneSourceOp)."
    formula = "{mode} upscaling by {scale} along the last axis"


@register("Upscale3D")
class Upscale3DRule(Rule):
    name = "Upscale3D"
    description = ("repeat: UpSampling3D (nearest neighbour); dilate: Conv3DTranspose (strides = "
                   "scale, one-hot identity kernel at tap (0, 0, 0), no bias).")

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        if rank_of(in_shape) != 5:
            return unsupported(node, ctx, f"3-D upscaling needs a 5-d input (rank {rank_of(in_shape)})")
        sc = [int(v) for v in node.attrs["scale"]]
        mode = node.attrs.get("mode", "repeat")
        chain = Chain(node, ctx)
        if mode == "repeat":
            chain.add("UpSampling3D", {"size": sc})
            rows = [ParamRow("size", "scale_factor; mode 'repeat' = each value repeated (exact)", sc,
                             sources={"scale_factor": tuple(sc), "mode": mode})]
            return chain.finish(rows=rows, layout="NDHWC")
        if mode != "dilate":
            return unsupported(node, ctx, f"upscale mode {mode!r}")
        C = in_shape[1]
        if C is None:
            return unsupported(node, ctx, "mode 'dilate' needs a known channel count")
        K = np.zeros((*sc, C, C), dtype=F32)
        K[0, 0, 0] = np.eye(C, dtype=F32)
        chain.add("Conv3DTranspose", {"filters": int(C), "kernel_size": sc, "strides": sc,
                                      "padding": "valid", "output_padding": [0, 0, 0],
                                      "dilation_rate": [1, 1, 1], "use_bias": False,
                                      "activation": "linear"}, weights=[K])
        rows = [ParamRow("kernel", f"one-hot ({sc[0]}, {sc[1]}, {sc[2]}, C, C): identity at tap "
                         "(0, 0, 0), zeros elsewhere -> x at (sd*i, sh*j, sw*k), zeros between (exact)",
                         K, sources={"scale_factor": tuple(sc), "mode": mode})]
        return chain.finish(rows=rows, layout="NDHWC")


@register("MaxUnpool")
class MaxUnpoolRule(Rule):
    name = "MaxUnpool"
    description = ("SegNet max-unpooling: MaxUnpool2D (gather the data and the mask at the pooled "
                   "cells whose window covers each output pixel, keep the value where the mask "
                   "names that pixel; zeros elsewhere), from the geometry of the pooling that "
                   "made the mask.")

    def map(self, node, ctx):
        x = input_shape(node, ctx)
        if rank_of(x) != 4 or x is None or x[2] is None or x[3] is None:
            return unsupported(node, ctx, "max-unpooling needs a 4-d input of known size")
        pool = ctx.producer(node.inputs[1])
        if pool is None or pool.op != "Pool" or pool.num_outputs != 2 \
                or node.inputs[1] != pool.outputs[1]:
            return unsupported(node, ctx, "the mask must be the second output of a MAX Pooling "
                                          "(its window geometry places the values)")
        pin = input_shape(pool, ctx)
        if pin is None or pin[2] is None or pin[3] is None:
            return unsupported(node, ctx, f"the pooling '{pool.name}' needs a known input size")
        Hi, Wi = int(pin[2]), int(pin[3])
        h, w = int(x[2]), int(x[3])
        H, W = unpool_out_size(h, w, node.attrs)
        pa = pool.attrs
        kh, kw = (int(v) for v in pa["kernel"])
        sh, sw = (int(v) for v in pa.get("stride", (kh, kw)))
        ph, pw = (int(v) for v in pa.get("pad", (0, 0)))
        if W != Wi or H < Hi:
            return unsupported(node, ctx, f"output {H}x{W} vs the pooling input {Hi}x{Wi}: the mask "
                                          "indices are positions in a plane of width "
                                          f"{Wi}; the fork reads them in one of width {W}"
                               if W != Wi else f"output {H}x{W} is smaller than the pooling input "
                                               f"{Hi}x{Wi} (the fork aborts on such indices)")
        cfg = {"pool_size": [kh, kw], "strides": [sh, sw], "padding": [ph, pw],
               "pool_input": [Hi, Wi], "size": [H, W]}
        chain = Chain(node, ctx)
        chain.add("MaxUnpool2D", cfg)
        rows = [ParamRow("output size", "upsample_h/upsample_w, else (h*scale_h - pad_out_h, "
                         "w*scale_w - pad_out_w)", (H, W),
                         sources={k: node.attrs.get(k) for k in ("scale", "pad_out", "size")}),
                ParamRow("placement", f"y[r, c] = x[i] for the last pooled cell i (row-major) of "
                         f"'{pool.name}' whose window covers (r, c) and whose mask is r*{Wi} + c; "
                         "0 where none is", cfg, sources={"pooling": pool.name})]
        return chain.finish(rows=rows, layout="NHWC")
