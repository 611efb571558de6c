"""Mapping rules of the Caffe fork ops: ``Interp``, ``Normalize``, ``ShuffleChannel``.

Built-in Keras layers only, so the saved model loads without Migrator:

* Interp (align-corners bilinear; Keras ``Resizing`` is half-pixel, so it is NOT used):
  the interpolation is separable, ``Y = A_h X A_w^T``; two bias-free ``Dense`` layers whose
  kernels are the fixed interpolation matrices (float32 weights computed as the fork does),
  between ``Permute`` layers.  Needs a known input size (the matrices depend on it).
* Normalize: ``UnitNormalization`` over the channel axis (or over H, W, C when
  ``across_spatial``), then a 1x1 ``DepthwiseConv2D`` without bias holding the scale (one
  product per value: exact).  Keras computes ``x * min(rsqrt(sum x^2), 1e12)`` where the
  fork computes ``x / sqrt(sum x^2 + eps)``: the same up to a relative ``eps / (2 sum x^2)``
  (below float32 resolution for eps <= 1e-6 and sum x^2 >= 1e-2); a larger eps is refused.
* ShuffleChannel: known spatial size: ``Reshape (H, W, g, C/g)`` -> ``Permute`` ->
  ``Reshape (H, W, C)``; open size: a bias-free ``Dense`` with a 0/1 permutation matrix
  (one 1 per column: exact for finite values).
"""
from __future__ import annotations

import numpy as np

from ...reference.kernels import interp_matrix
from ...shapes import interp_out_len
from ..plan import ParamRow
from ..registry import Rule, rank_of, register
from .layers import Chain, _in_shape, _unsupported

F32 = np.float32


@register("Interp")
class InterpRule(Rule):
    name = "Interp"
    description = ("Align-corners bilinear as two fixed-matrix Dense layers (W then H) between "
                   "Permutes; built-in layers only (Keras Resizing is half-pixel, not used).")

    def map(self, node, ctx):
        x = _in_shape(node, ctx)
        if rank_of(x) != 4:
            return _unsupported(node, ctx, f"Interp needs a 4-d input (rank {rank_of(x)})")
        if x is None or x[2] is None or x[3] is None:
            return _unsupported(node, ctx, "Interp needs a known input size (its interpolation "
                                           "matrices depend on it): give --input-shape")
        a = node.attrs
        H, W = int(x[2]), int(x[3])
        crop = int(a.get("pad_beg", 0)) + int(a.get("pad_end", 0))
        off = -int(a.get("pad_beg", 0))
        oh, ow = interp_out_len(H, a, "h"), interp_out_len(W, a, "w")
        Ah = interp_matrix(H + crop, oh, off, H)
        Aw = interp_matrix(W + crop, ow, off, W)
        chain = Chain(node, ctx)
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
                         "height/width (L after the pad_beg/pad_end crop)", (oh, ow),
                         sources={"input": (H, W), **src}),
                ParamRow("kernel (W)", "align-corners weights: r = (L-1)/(out-1), src = r*o, "
                         "(1-l, l) at (floor(src), floor(src)+1), float32 as the fork", Aw.T,
                         sources={"width": W}),
                ParamRow("kernel (H)", "the same along H, applied after W (the fork's order)",
                         Ah.T, sources={"height": H})]
        return chain.finish(rows=rows, layout="NHWC")


@register("Normalize")
class NormalizeRule(Rule):
    name = "Normalize"
    description = ("UnitNormalization over C (or H, W, C when across_spatial) and a 1x1 "
                   "DepthwiseConv2D holding the scale.")

    def map(self, node, ctx):
        x = _in_shape(node, ctx)
        if rank_of(x) != 4:
            return _unsupported(node, ctx, f"Normalize needs a 4-d input (rank {rank_of(x)})")
        a = node.attrs
        eps = float(a.get("eps", 1e-10))
        if eps > 1e-6:
            return _unsupported(node, ctx, f"Normalize eps {eps:g} is too large for Keras "
                                           "UnitNormalization (which has no eps term) to be exact")
        across = bool(a.get("across_spatial", True))
        chain = Chain(node, ctx)
        chain.add("UnitNormalization", {"axis": [1, 2, 3] if across else -1}, suffix="l2")
        rows = [ParamRow("norm", "x * rsqrt(sum x^2) over " + ("H, W, C" if across else "C")
                         + f" (the fork: x / sqrt(sum x^2 + {eps:g}); equal up to a relative "
                         "eps / (2 sum x^2))", "UnitNormalization",
                         sources={"across_spatial": across, "eps": eps})]
        s = node.p("scale")
        C = x[1]
        if s is not None:
            if s.size > 1:
                k = np.asarray(s, F32).reshape(1, 1, -1, 1)
            else:
                if C is None:
                    return _unsupported(node, ctx, "a shared Normalize scale needs a known "
                                                   "channel count")
                k = np.full((1, 1, int(C), 1), float(np.asarray(s).reshape(-1)[0]), F32)
            chain.add("DepthwiseConv2D", {"kernel_size": [1, 1], "strides": [1, 1],
                                          "padding": "valid", "depth_multiplier": 1,
                                          "use_bias": False, "activation": "linear"},
                      weights=[k])
            rows.append(ParamRow("scale", "1x1 DepthwiseConv2D kernel (1, 1, C, 1) = scale"
                                 + (" (shared value repeated)" if s.size == 1 else ""), k,
                                 sources={"blobs[0]": np.asarray(s),
                                          "channel_shared": a.get("channel_shared")}))
        return chain.finish(rows=rows, layout="NHWC")


@register("ShuffleChannel")
class ShuffleChannelRule(Rule):
    name = "ShuffleChannel"
    description = ("Reshape (H, W, g, C/g) -> Permute -> Reshape (H, W, C); with an open spatial "
                   "size a bias-free Dense holding the 0/1 permutation.")

    def map(self, node, ctx):
        x = _in_shape(node, ctx)
        rank = rank_of(x)
        g = int(node.attrs.get("group", 1))
        if x is None or x[1] is None:
            return _unsupported(node, ctx, "ShuffleChannel needs a known channel count")
        C = int(x[1])
        if C % g:
            return _unsupported(node, ctx, f"{C} channels cannot be split into {g} groups")
        chain = Chain(node, ctx)
        perm = np.arange(C).reshape(g, C // g).T.reshape(-1)     # y[:, i] = x[:, perm[i]]
        sp = list(x[2:])
        if rank == 4 and all(d is not None for d in sp):
            chain.add("Reshape", {"target_shape": [int(sp[0]), int(sp[1]), g, C // g]},
                      suffix="split")
            chain.add("Permute", {"dims": [1, 2, 4, 3]}, suffix="swap")
            chain.add("Reshape", {"target_shape": [int(sp[0]), int(sp[1]), C]})
            how = "Reshape (H, W, g, C/g), Permute (swap the group axes), Reshape (H, W, C)"
        else:
            P = np.zeros((C, C), F32)
            P[perm, np.arange(C)] = 1
            chain.add("Dense", {"units": C, "use_bias": False, "activation": "linear"},
                      weights=[P])
            how = "Dense with a 0/1 permutation kernel (open spatial size)"
        rows = [ParamRow("order", f"{how}: y[c] = x[perm[c]]", perm,
                         sources={"group": g, "channels": C})]
        return chain.finish(rows=rows, layout="NHWC" if rank == 4 else f"rank{rank}")
