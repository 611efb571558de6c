"""Mapping rules of the pool family: ``Pool``, ``GlobalPool``, ``Pool1D``, ``Pool3D``, ``SPP``,
``FeaturePool``, ``FeatureWTA``, ``LasagneSPP``."""
from __future__ import annotations

import numpy as np

from ...ir import Node
from ...shapes import pool_out_len, spp_levels
from ..plan import KerasLayerSpec, ParamRow
from ..registry import RULES, Rule, keras_layout, rank_of, register
from .common import Chain, OneDRule, SourceOpRule, input_shape, known_shape, mapping_from_layers, unsupported

#: the most negative float32 (Caffe's initial value of a max): padded cells never win
LOWEST_F32 = float(np.finfo(np.float32).min)


@register("Pool")
class PoolRule(Rule):
    name = "Pool"
    description = ("MaxPooling2D / AveragePooling2D ('valid'); pads and ceil mode's extra cells are "
                   "explicit: -inf for max, the exact divisor for average.")

    def map(self, node, ctx):
        a = node.attrs
        mode = a.get("mode", "max")
        kh, kw = (int(v) for v in a["kernel"])
        sh, sw = (int(v) for v in a.get("stride", (kh, kw)))
        ph, pw = (int(v) for v in a.get("pad", (0, 0)))
        rounding = a.get("rounding", "floor")
        divisor = a.get("avg_divisor", "caffe")
        in_shape = input_shape(node, ctx)
        if rank_of(in_shape) != 4:
            return unsupported(node, ctx, f"only 2-D pooling is supported (input rank {rank_of(in_shape)})")
        if in_shape is None or in_shape[2] is None or in_shape[3] is None:
            if rounding != "floor":   # floor: no overhang; the divisor map is computed at run time
                return unsupported(node, ctx, "ceil-mode pooling needs a known input size")
            H = W = None
        else:
            H, W = int(in_shape[2]), int(in_shape[3])
        rows: list[ParamRow] = []
        eh = ew = 0
        if H is not None:
            try:
                oh, ow = pool_out_len(H, kh, sh, ph, rounding), pool_out_len(W, kw, sw, pw, rounding)
            except ValueError as e:
                return unsupported(node, ctx, str(e))
            eh = max(0, (oh - 1) * sh + kh - (H + 2 * ph))
            ew = max(0, (ow - 1) * sw + kw - (W + 2 * pw))
            kh_out = (H + 2 * ph + eh - kh) // sh + 1
            kw_out = (W + 2 * pw + ew - kw) // sw + 1
            if (kh_out, kw_out) != (oh, ow):
                return unsupported(node, ctx, f"cannot reproduce the pooled size {(oh, ow)} "
                                              f"(Keras would give {(kh_out, kw_out)})")
            src_out = node.out_shape
            warn = []
            if src_out is not None and len(src_out) == 4 and tuple(src_out[2:]) != (oh, ow):
                warn.append(f"shape inference says {tuple(src_out[2:])}, the rounding rule gives {(oh, ow)}")
            rows.append(ParamRow("output size", {
                "floor": "floor((L + 2p - k) / s) + 1",
                "caffe_ceil": "ceil((L + 2p - k) / s) + 1; minus 1 if p > 0 and (out-1)*s >= L + p",
                "lasagne_ceil": "ignore_border=False: ceil(L/s) if s >= k else max(0, ceil((L-k)/s)) + 1",
            }[rounding], (oh, ow), sources={"input": (H, W), "kernel": (kh, kw), "stride": (sh, sw),
                                            "pad": (ph, pw), "rounding": rounding}, warnings=warn))
        chain = Chain(node, ctx)
        pad = [[ph, ph + eh], [pw, pw + ew]]
        pool_cfg = {"pool_size": [kh, kw], "strides": [sh, sw], "padding": "valid"}
        if eh or ew:
            rows.append(ParamRow("ceil mode", "extra bottom/right cells so the last window fits: "
                                 "(out-1)*s + k - (L + 2p)", (eh, ew), sources={"rounding": rounding}))
        if mode == "max":
            if ph or pw or eh or ew:
                chain.add("ConstantPadding2D", {"padding": pad, "value": LOWEST_F32}, suffix="pad")
                rows.append(ParamRow("padding", f"ConstantPadding2D({pad}, -FLT_MAX): padded cells never "
                                     "win the max (a window of padding only gives -FLT_MAX, as Caffe)",
                                     pad, sources={"pad": (ph, pw)}))
            chain.add("MaxPooling2D", pool_cfg)
        elif mode == "avg":
            counted = [[ph, ph], [pw, pw]] if divisor in ("caffe", "inc_pad") else [[0, 0], [0, 0]]
            exact_builtin = (eh == 0 and ew == 0) and (divisor != "exc_pad" or (ph == 0 and pw == 0))
            if exact_builtin:
                if ph or pw:
                    chain.add("ZeroPadding2D", {"padding": pad}, suffix="pad")
                chain.add("AveragePooling2D", pool_cfg)
                rows.append(ParamRow("divisor", f"every window covers {kh}x{kw} counted cells: "
                                     + ("ZeroPadding2D + " if (ph or pw) else "")
                                     + "AveragePooling2D('valid') is exact", kh * kw,
                                     sources={"avg_divisor": divisor}))
            else:
                chain.add("ExactAveragePooling2D", {**{k: v for k, v in pool_cfg.items() if k != "padding"},
                                                    "padding": pad, "counted_padding": counted})
                what = {"caffe": "window clipped to L + pad (pad zeros counted, ceil overhang not)",
                        "inc_pad": "window clipped to the padded input (pad zeros counted)",
                        "exc_pad": "only the cells inside the input"}.get(divisor, divisor)
                rows.append(ParamRow("divisor", f"ExactAveragePooling2D: sum / ({what})",
                                     divisor, sources={"avg_divisor": divisor, "pad": (ph, pw),
                                                       "extra": (eh, ew)}))
        else:
            return unsupported(node, ctx, f"unknown pooling mode {mode!r}")
        if node.num_outputs == 2 and (mode != "max" or H is None):
            return unsupported(node, ctx, "the argmax mask (second output) needs MAX pooling and a "
                                          "known input size")
        m = chain.finish(rows=rows, layout="NHWC")
        if node.num_outputs == 2:
            m.layers.append(KerasLayerSpec(
                name=ctx.unique_name(f"{node.name}_mask"), class_name="MaxPoolMask",
                config={"pool_size": [kh, kw], "strides": [sh, sw], "padding": pad},
                inputs=[node.inputs[0]], output=node.outputs[1]))
            m.rows.append(ParamRow("mask", "output 1: flat index h*W + w (W = the input width) of "
                                   "the first strict maximum of each window, row-major, padding "
                                   "never wins (-1 if nothing beats -FLT_MAX); MaxPoolMask of "
                                   "strided slices, Greater and Where", (H, W),
                                   sources={"tops": 2}))
            m.notes.append(f"2 outputs; output 1 (the mask) is Keras layer '{m.layers[-1].name}'")
        return m


@register("GlobalPool")
class GlobalPoolRule(Rule):
    name = "GlobalPool"
    description = "GlobalAveragePooling2D / GlobalMaxPooling2D (keepdims for Caffe global_pooling)."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        mode = node.attrs.get("mode", "avg")
        keep = bool(node.attrs.get("keepdims", False))
        dims = {3: "1D", 4: "2D", 5: "3D"}.get(rank)
        if dims is None or mode not in ("avg", "max"):
            return unsupported(node, ctx, f"global {mode} pooling of a rank-{rank} input")
        cls = f"Global{'Average' if mode == 'avg' else 'Max'}Pooling{dims}"
        chain = Chain(node, ctx)
        chain.add(cls, {"keepdims": keep})
        rows = [ParamRow("keepdims", "Caffe global_pooling keeps 1x1 spatial dims" if keep else
                         "output (N, C)", keep, sources={"mode": mode})]
        return chain.finish(rows=rows, layout=keras_layout(rank if keep else 2))


@register("Pool1D")
class Pool1DRule(OneDRule):
    name = "Pool1D"
    two_d = "Pool"
    description = "Lasagne Pool1DLayer/MaxPool1DLayer: the Pool rule over (N, 1, L, C)."


@register("Pool3D")
class Pool3DRule(Rule):
    name = "Pool3D"
    description = "MaxPooling3D / AveragePooling3D ('valid', ignore_border=True); zero padding " \
                  "only where it is exact (average including the pad)."

    def map(self, node, ctx):
        a = node.attrs
        k, s, p = (tuple(int(v) for v in a[key]) for key in ("kernel", "stride", "pad"))
        mode = a.get("mode", "max")
        chain = Chain(node, ctx)
        rows = []
        if any(p):
            if mode == "max" or a.get("avg_divisor") == "exc_pad":
                return unsupported(node, ctx, f"3-D {mode} pooling with pad {p} "
                                   f"({'padded cells must never win' if mode == 'max' else 'divisor excludes the pad'})")
            chain.add("ZeroPadding3D", {"padding": [[q, q] for q in p]}, suffix="pad")
            rows.append(ParamRow("padding", f"ZeroPadding3D {p}: the pad's zeros are averaged "
                                 "(average_inc_pad)", p))
        cls = "MaxPooling3D" if mode == "max" else "AveragePooling3D"
        chain.add(cls, {"pool_size": list(k), "strides": list(s), "padding": "valid"})
        rows.insert(0, ParamRow("pool", f"{cls}(pool_size={k}, strides={s}, 'valid') (floor, as "
                                "ignore_border=True)", cls))
        return chain.finish(rows=rows, layout=keras_layout(5))


@register("SPP")
class SPPRule(Rule):
    name = "SPP"
    description = ("Caffe SPP: one Caffe pooling per pyramid level (the Pool rule), each flattened in "
                   "(C, H, W) order, concatenated.")

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        if rank_of(in_shape) != 4 or not known_shape(in_shape):
            return unsupported(node, ctx, "SPP needs a 4-d input of known size")
        height = int(node.attrs["pyramid_height"])
        levels = spp_levels(int(in_shape[2]), int(in_shape[3]), height)
        layers, rows, outs = [], [], []
        for lvl, (k, p) in enumerate(levels):
            sub = Node(name=node.name if height == 1 else f"{node.name}_l{lvl}", op="Pool",
                        inputs=list(node.inputs),
                        attrs={"mode": node.attrs.get("mode", "max"), "kernel": k, "stride": k, "pad": p,
                               "rounding": "caffe_ceil", "avg_divisor": "caffe"},
                        provenance=node.provenance)
            m = RULES["Pool"].map(sub, ctx)
            if not m.supported:
                return unsupported(node, ctx, f"pyramid level {lvl}: {m.error}")
            layers += m.layers
            rows.append(ParamRow(f"level {lvl}", f"{2 ** lvl}x{2 ** lvl} bins: kernel = stride = ceil(L/b), "
                                 "pad = (k*b - L + 1) // 2", {"kernel": k, "pad": p},
                                 sources={"pyramid_height": height}))
            if height == 1:
                return mapping_from_layers(node, ctx, layers, rows, "NHWC")
            chain = Chain(node, ctx, inputs=[sub.outputs[0]])
            chain.add("Permute", {"dims": [3, 1, 2]}, suffix=f"l{lvl}_chw")
            chain.add("Flatten", {}, suffix=f"l{lvl}_flat")
            layers += chain.layers
            outs.append(chain.cur[0])
        chain = Chain(node, ctx, inputs=outs)
        chain.add("Concatenate", {"axis": -1})
        m = chain.finish(rows=rows, layout="NC")
        m.layers = layers + m.layers
        return m


@register("FeaturePool")
class FeaturePoolRule(SourceOpRule):
    name = "FeaturePool"
    description = "Lasagne FeaturePoolLayer: keras.ops reshape + reduction (plain LasagneSourceOp)."
    formula = "{mode} over groups of {pool_size} consecutive features along source axis {axis}"


@register("FeatureWTA")
class FeatureWTARule(SourceOpRule):
    name = "FeatureWTA"
    description = "Lasagne FeatureWTALayer: keras.ops argmax mask (plain LasagneSourceOp)."
    formula = ("in groups of {pool_size} consecutive features along source axis {axis}"
               ": the first maximum kept, the rest 0")


@register("LasagneSPP")
class LasagneSPPRule(SourceOpRule):
    name = "LasagneSPP"
    description = "Lasagne spatial pyramid pooling: keras.ops slicing + max/mean per bin (plain LasagneSourceOp)."
    formula = "{mode} pyramid pooling, levels {pool_dims} ({implementation} bins)"
