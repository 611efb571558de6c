"""Mapping rules of the activation family: ``Activation``, ``PReLU``, ``Power``, ``Softmax``,
``Dropout``, ``Identity``, ``Exp``, ``Log``, ``Threshold``, ``Clip``, ``Swish``.

Built-in Keras layers where they are exact (formulas in the rows):

* Exp (base/scale/shift): Rescaling -> Activation('exponential') -> Rescaling;
* Clip: ReLU(max_value) between two offsets; Swish: Rescaling -> silu -> Rescaling;
* Threshold: Discretization at the next float32 above the threshold (x > t exactly),
  Rescaling(1) to float;
* Log: the plain expression ``CaffeLog``; Power, abs, scaled tanh: ``UnaryOp``.
"""
from __future__ import annotations

import numpy as np

from ..plan import ParamRow
from ..registry import Rule, keras_layout, rank_of, register, to_keras_axis
from .common import F32, Chain, act_weights, activation_layer, alias_mapping, f32, input_shape, unsupported


@register("Activation")
class ActivationRule(Rule):
    name = "Activation"
    description = "Built-in activation layers (ReLU, LeakyReLU, ELU, Activation, Softmax); custom UnaryOp for abs and scaled tanh."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        act = {"kind": node.attrs.get("kind", "linear"),
               **{k: v for k, v in node.attrs.items() if k != "kind"}}
        try:
            spec = activation_layer(act, rank)
        except ValueError as e:
            return unsupported(node, ctx, str(e))
        if spec is None:
            return alias_mapping(node, ctx, "linear: identity, no Keras layer",
                          rows=[ParamRow("activation", "identity", "linear")])
        cls, cfg, formula = spec
        chain = Chain(node, ctx)
        chain.add(cls, cfg, weights=act_weights(cls, cfg, act, rank))
        rows = [ParamRow("activation", formula, cls, sources={k: v for k, v in act.items()})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("PReLU")
class PReLURule(Rule):
    name = "PReLU"
    description = "keras.layers.PReLU sharing the slope over the spatial axes."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        slope = np.asarray(node.p("slope")).reshape(-1)
        shared = bool(node.attrs.get("channel_shared", slope.size == 1))
        chain = Chain(node, ctx)
        if shared:
            axes = list(range(1, rank))
            alpha = np.full((1,) * (rank - 1), slope[0])
            formula = "one slope shared by all channels"
        else:
            axes = list(range(1, rank - 1)) or None
            alpha = slope.reshape((1,) * (rank - 2) + (-1,))
            formula = "slope per channel, shared over the spatial axes"
        cfg = {"shared_axes": axes} if axes else {}
        chain.add("PReLU", cfg, weights=[alpha])
        rows = [ParamRow("alpha", f"{formula}: y = x if x > 0 else alpha * x", f32(alpha),
                         sources={"slope": node.p("slope")})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Power")
class PowerRule(Rule):
    name = "Power"
    description = "UnaryOp(kind='power'): y = (shift + scale*x)^power."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        p = float(node.attrs.get("power", 1.0))
        s = float(node.attrs.get("scale", 1.0))
        sh = float(node.attrs.get("shift", 0.0))
        chain = Chain(node, ctx)
        chain.add("UnaryOp", {"kind": "power", "power": p, "scale": s, "shift": sh})
        rows = [ParamRow("power", f"y = ({sh!r} + {s!r} * x) ** {p!r}", p,
                         sources={"power": p, "scale": s, "shift": sh})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Softmax")
class SoftmaxRule(Rule):
    name = "Softmax"
    description = "keras.layers.Softmax over the channels-last axis of the source axis."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        axis = int(node.attrs.get("axis", 1))
        kax = to_keras_axis(axis, rank)
        chain = Chain(node, ctx)
        chain.add("Softmax", {"axis": kax})
        rows = [ParamRow("axis", "source axis -> channels-last axis", kax, sources={"axis": axis})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Dropout")
class DropoutRule(Rule):
    name = "Dropout"
    description = "keras.layers.Dropout (identity at inference)."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        r = float(node.attrs.get("ratio", 0.5))
        chain = Chain(node, ctx)
        chain.add("Dropout", {"rate": r})
        rows = [ParamRow("rate", "dropout ratio (identity at inference)", r, sources={"ratio": r})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Identity")
class IdentityRule(Rule):
    name = "Identity"
    description = ("No Keras layer: the output is the input; a noise layer (noise_stddev) -> "
                   "keras.layers.GaussianNoise (identity at inference, noise in training).")

    def map(self, node, ctx):
        sd = node.attrs.get("noise_stddev")
        if not sd:
            return alias_mapping(node, ctx, "identity: no Keras layer")
        chain = Chain(node, ctx)
        chain.add("GaussianNoise", {"stddev": float(sd)})
        rows = [ParamRow("stddev", "sigma: x + N(0, sigma^2) in training (identity at inference)",
                         float(sd), sources={"sigma": float(sd)})]
        return chain.finish(rows=rows, layout=keras_layout(rank_of(input_shape(node, ctx))))


@register("Exp")
class ExpRule(Rule):
    name = "Exp"
    description = "Caffe Exp: Rescaling(ln(base)*scale) -> exponential -> Rescaling(base^shift)."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        a = node.attrs
        base, scale, shift = float(a.get("base", -1.0)), float(a.get("scale", 1.0)), float(a.get("shift", 0.0))
        lnb = 1.0 if base == -1.0 else float(np.log(F32(base)))
        inner = float(F32(lnb) * F32(scale))
        outer = 1.0 if shift == 0.0 else float(np.exp(F32(shift)) if base == -1.0 else
                                               np.power(F32(base), F32(shift)))
        chain = Chain(node, ctx)
        if inner != 1.0:
            chain.add("Rescaling", {"scale": inner, "offset": 0.0}, suffix="in")
        chain.add("Activation", {"activation": "exponential"}, suffix=None if outer == 1.0 else "exp")
        if outer != 1.0:
            chain.add("Rescaling", {"scale": outer, "offset": 0.0})
        rows = [ParamRow("inner_scale", "ln(base) * scale", inner, sources={"base": base, "scale": scale}),
                ParamRow("outer_scale", "base^shift", outer, sources={"base": base, "shift": shift})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Log")
class LogRule(Rule):
    name = "Log"
    description = "Caffe Log: keras.ops log(shift + scale*x) / ln(base) (plain expression CaffeLog)."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        a = node.attrs
        cfg = {"base": float(a.get("base", -1.0)), "scale": float(a.get("scale", 1.0)),
               "shift": float(a.get("shift", 0.0))}
        chain = Chain(node, ctx)
        chain.add("CaffeLog", cfg)
        rows = [ParamRow("log", f"log({cfg['shift']!r} + {cfg['scale']!r} * x)"
                         + ("" if cfg["base"] == -1.0 else f" / ln({cfg['base']!r})"), cfg["base"],
                         sources=cfg)]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Threshold")
class ThresholdRule(Rule):
    name = "Threshold"
    description = "Caffe Threshold: Discretization at the next float32 above t (x > t), cast to float."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        t = float(node.attrs.get("threshold", 0.0))
        edge = float(np.nextafter(F32(t), F32(np.inf)))
        tiny = float(np.finfo(F32).tiny)
        caveats = []
        if abs(edge) < tiny:
            # TF flushes subnormals to zero: the first normal float above t (0 below)
            edge = tiny if t >= 0 else 0.0
            caveats.append("subnormal inputs (|x| < 1.2e-38) count as 0 (TensorFlow flushes them)")
        chain = Chain(node, ctx)
        chain.add("Discretization", {"bin_boundaries": [edge], "output_mode": "int"}, suffix="bins")
        chain.add("Rescaling", {"scale": 1.0, "offset": 0.0})
        rows = [ParamRow("bin_boundaries", f"[nextafter({t!r})]: bucket 1 iff x >= {edge!r} iff "
                         f"x > {t!r} (float32), then cast to float", [edge], sources={"threshold": t},
                         caveats=caveats)]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Clip")
class ClipRule(Rule):
    name = "Clip"
    description = "Caffe Clip: ReLU(max_value = max - min) between offsets -min and +min."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        lo, hi = float(node.attrs["min"]), float(node.attrs["max"])
        chain = Chain(node, ctx)
        if lo == 0.0:
            chain.add("ReLU", {"max_value": hi})
            formula = f"ReLU(max_value={hi!r}) = min(max(x, 0), {hi!r}) (exact)"
        else:
            chain.add("Rescaling", {"scale": 1.0, "offset": -lo}, suffix="shift")
            chain.add("ReLU", {"max_value": float(F32(hi) - F32(lo))}, suffix="relu")
            chain.add("Rescaling", {"scale": 1.0, "offset": lo})
            formula = f"min(max(x - {lo!r}, 0), {hi!r} - {lo!r}) + {lo!r} (exact up to rounding)"
        rows = [ParamRow("clip", formula, (lo, hi), sources={"min": lo, "max": hi})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Swish")
class SwishRule(Rule):
    name = "Swish"
    description = "Caffe Swish: silu(beta*x)/beta = x * sigmoid(beta*x)."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        beta = float(node.attrs.get("beta", 1.0))
        chain = Chain(node, ctx)
        if beta == 1.0:
            chain.add("Activation", {"activation": "silu"})
        elif beta == 0.0:
            chain.add("Rescaling", {"scale": 0.5, "offset": 0.0})
        else:
            chain.add("Rescaling", {"scale": beta, "offset": 0.0}, suffix="in")
            chain.add("Activation", {"activation": "silu"}, suffix="silu")
            chain.add("Rescaling", {"scale": float(1.0 / beta), "offset": 0.0})
        rows = [ParamRow("beta", "x * sigmoid(beta * x) = silu(beta * x) / beta", beta,
                         sources={"beta": beta})]
        return chain.finish(rows=rows, layout=keras_layout(rank))
