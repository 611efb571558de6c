"""Mapping rules for the later BVLC Caffe layers (issue 14: the whole catalogue).

Only built-in Keras layers, each exact up to float32 rounding (the formulas are in the
ParamRows):

* Exp (base/scale/shift): Rescaling -> Activation('exponential') -> Rescaling;
* Clip: ReLU(max_value) between two offsets; Swish: Rescaling -> silu -> Rescaling;
* Threshold: Discretization at the next float32 above the threshold (x > t exactly),
  Rescaling(1) to float;
* Reduction: the reduced axes flattened in source order, Dense(1) with a constant kernel
  (abs = relu(x) + relu(-x), square = Multiply(x, x));
* MVN: mean subtraction = x - GlobalAveragePooling(keepdims); variance normalisation =
  LayerNormalization(epsilon = eps^2) (Caffe divides by sqrt(var) + eps: the two agree to
  eps / std relative, exactly at var = 0);
* Tile: Concatenate of the input with itself; Embed: Embedding (+ identity Dense for the bias);
* InnerProduct with ``axis`` > 1: source-order Reshape, Dense on the last axis;
* Bias / Scale with two bottoms: the second bottom reshaped to broadcast, Add / Multiply.

The Dense, Bias and Scale rules here extend the ones of ``layers.py`` / ``batchnorm.py``
(imported first, then re-registered): the cases those handle are delegated unchanged.
"""
from __future__ import annotations

import numpy as np

from ..plan import ParamRow
from ..registry import Rule, keras_layout, rank_of, register, to_keras_axis
from .batchnorm import BiasRule, ScaleRule
from .layers import (
    Chain,
    DenseRule,
    _alias,
    _f32,
    _in_shape,
    _known,
    _unsupported,
    to_keras_perm,
    to_source_perm,
)

F32 = np.float32


def _to_source(chain: Chain, rank: int) -> None:
    if rank > 2:
        chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_src")


def _to_keras(chain: Chain, rank: int) -> None:
    if rank > 2:
        chain.add("Permute", {"dims": list(to_keras_perm(rank))}, suffix="to_keras")


# ======================================================================================
# element-wise
# ======================================================================================
@register("Exp")
class ExpRule(Rule):
    name = "Exp"
    description = "Caffe Exp: Rescaling(ln(base)*scale) -> exponential -> Rescaling(base^shift)."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
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


@register("Clip")
class ClipRule(Rule):
    name = "Clip"
    description = "Caffe Clip: ReLU(max_value = max - min) between offsets -min and +min."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
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
        rank = rank_of(_in_shape(node, ctx))
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


@register("Threshold")
class ThresholdRule(Rule):
    name = "Threshold"
    description = "Caffe Threshold: Discretization at the next float32 above t (x > t), cast to float."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
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


@register("Log")
class LogRule(Rule):
    name = "Log"
    description = "Caffe Log: keras.ops log(shift + scale*x) / ln(base) (plain expression CaffeLog)."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
        a = node.attrs
        cfg = {"base": float(a.get("base", -1.0)), "scale": float(a.get("scale", 1.0)),
               "shift": float(a.get("shift", 0.0))}
        chain = Chain(node, ctx)
        chain.add("CaffeLog", cfg)
        rows = [ParamRow("log", f"log({cfg['shift']!r} + {cfg['scale']!r} * x)"
                         + ("" if cfg["base"] == -1.0 else f" / ln({cfg['base']!r})"), cfg["base"],
                         sources=cfg)]
        return chain.finish(rows=rows, layout=keras_layout(rank))


_TIES = "ties: Caffe returns the larger index first, TensorFlow's top_k the smaller"


@register("ArgMax")
class ArgMaxRule(Rule):
    name = "ArgMax"
    description = "Caffe ArgMax: keras.ops top_k on the source-order tensor (plain expression CaffeArgMax)."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        out_shape = node.out_shape
        if not _known(in_shape) or not _known(out_shape):
            return _unsupported(node, ctx, "ArgMax needs known shapes")
        rank, out_rank = len(in_shape), len(out_shape)
        a = node.attrs
        axis = a.get("axis")
        if axis is not None:
            axis = int(axis) + rank if int(axis) < 0 else int(axis)
            if axis == 0:
                return _unsupported(node, ctx, "ArgMax over the batch axis")
        chain = Chain(node, ctx)
        _to_source(chain, rank)
        chain.add("CaffeArgMax", {"top_k": int(a.get("top_k", 1)), "axis": axis,
                                  "out_max_val": bool(a.get("out_max_val", False))},
                  suffix=None if out_rank <= 2 else "argmax")
        _to_keras(chain, out_rank)
        rows = [ParamRow("top_k", f"top {a.get('top_k', 1)} {'values' if a.get('out_max_val') else 'indices'}"
                         + (f" along source axis {axis}" if axis is not None else
                            " per sample over the flattened C*H*W"), int(a.get("top_k", 1)),
                         sources=dict(a), caveats=[_TIES])]
        return chain.finish(rows=rows, layout=keras_layout(out_rank))


# ======================================================================================
# Reduction, MVN, Tile
# ======================================================================================
@register("Reduction")
class ReductionRule(Rule):
    name = "Reduction"
    description = "Caffe Reduction: axes >= axis flattened in source order, Dense(1) with a constant kernel."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        a = node.attrs
        op = a.get("operation", "sum")
        if not _known(in_shape):
            return _unsupported(node, ctx, "reduction needs a known input shape")
        rank = len(in_shape)
        axis = int(a.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            return _unsupported(node, ctx, "reduction over the batch axis (axis 0) gives one value "
                                "for the whole batch; Keras keeps the batch axis")
        K = int(np.prod(in_shape[axis:]))
        coeff = float(a.get("coeff", 1.0))
        w = coeff / K if op == "mean" else coeff
        chain = Chain(node, ctx)
        rows: list[ParamRow] = []
        if op == "asum":
            pos = chain.add("ReLU", {}, suffix="pos")
            chain.add("Rescaling", {"scale": -1.0, "offset": 0.0}, suffix="neg", inputs=list(node.inputs))
            neg = chain.add("ReLU", {}, suffix="negrelu")
            chain.add("Add", {}, suffix="abs", inputs=[pos.output, neg.output])
            rows.append(ParamRow("abs", "|x| = relu(x) + relu(-x) (exact)", "abs"))
        elif op == "sumsq":
            chain.add("Multiply", {}, suffix="sq", inputs=[node.inputs[0], node.inputs[0]])
            rows.append(ParamRow("square", "x * x", "square"))
        elif op not in ("sum", "mean"):
            return _unsupported(node, ctx, f"unknown reduction operation {op!r}")
        _to_source(chain, rank)
        chain.add("Reshape", {"target_shape": [int(d) for d in in_shape[1:axis]] + [K]}, suffix="flat")
        chain.add("Dense", {"units": 1, "use_bias": False}, suffix="sum",
                  weights=[np.full((K, 1), w, F32)])
        out_rank = axis
        chain.add("Reshape", {"target_shape": [int(d) for d in in_shape[1:axis]]},
                  suffix=None if out_rank <= 2 else "out")
        _to_keras(chain, out_rank)
        rows.append(ParamRow("kernel", f"Dense(1) over the {K} values of axes {axis}.. (source order), "
                             f"kernel = {'coeff / count' if op == 'mean' else 'coeff'}", w,
                             sources={"operation": op, "coeff": coeff, "axis": axis}))
        return chain.finish(rows=rows, layout=keras_layout(out_rank))


@register("MVN")
class MVNRule(Rule):
    name = "MVN"
    description = ("Caffe MVN: x - GlobalAveragePooling(keepdims); LayerNormalization(epsilon=eps^2) "
                   "when normalize_variance.")

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape)
        a = node.attrs
        across = bool(a.get("across_channels", False))
        eps = float(a.get("eps", 1e-9))
        if rank not in (3, 4):
            return _unsupported(node, ctx, f"MVN on a rank-{rank} input (only 3-d and 4-d)")
        spatial = list(range(1, rank - 1))
        axes = spatial + ([rank - 1] if across else [])
        chain = Chain(node, ctx)
        rows: list[ParamRow] = []
        if a.get("normalize_variance", True):
            chain.add("LayerNormalization", {"axis": axes, "epsilon": eps * eps, "center": False,
                                             "scale": False})
            rows.append(ParamRow("epsilon", "eps^2: Keras divides by sqrt(var + eps^2), Caffe by "
                                 "sqrt(var) + eps (equal at var = 0; relative difference <= eps/std)",
                                 eps * eps, sources={"eps": eps},
                                 caveats=[f"exact up to {eps:g} / std relative"]))
        else:
            if across:
                if rank == 4:
                    chain.add("GlobalAveragePooling2D", {"keepdims": True}, suffix="hw")
                else:
                    chain.add("GlobalAveragePooling1D", {"keepdims": True}, suffix="w")
                # mean over channels of the spatial means (equal counts per channel)
                chain.add("Dense", {"units": 1, "use_bias": False}, suffix="mean",
                          weights=[np.full((int(in_shape[1]), 1), 1.0 / int(in_shape[1]), F32)])
            else:
                chain.add("GlobalAveragePooling2D" if rank == 4 else "GlobalAveragePooling1D",
                          {"keepdims": True}, suffix="mean")
            mean = chain.cur[0]
            chain.add("Subtract", {}, inputs=[node.inputs[0], mean])
            rows.append(ParamRow("mean", f"x - mean over {'C, ' if across else ''}the spatial axes "
                                 "(broadcast)", "subtract", sources={"across_channels": across}))
        if rank == 3:   # Caffe's top is (num, channels, height, 1)
            chain.add("Reshape", {"target_shape": [int(in_shape[2]), 1, int(in_shape[1])]},
                      suffix="to4d")
            rows.append(ParamRow("shape", "Caffe's MVN top is 4-d: (N, C, L) -> (N, C, L, 1)",
                                 (in_shape[0], in_shape[1], in_shape[2], 1)))
        return chain.finish(rows=rows, layout=keras_layout(4))


@register("Tile")
class TileRule(Rule):
    name = "Tile"
    description = "Caffe Tile: Concatenate of the input with itself along the axis."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
        axis = int(node.attrs.get("axis", 1))
        tiles = int(node.attrs["tiles"])
        kax = to_keras_axis(axis, rank)
        if kax == 0:
            return _unsupported(node, ctx, "tiling the batch axis")
        if tiles == 1:
            return _alias(node, ctx, "one tile: identity")
        chain = Chain(node, ctx)
        chain.add("Concatenate", {"axis": kax}, inputs=[node.inputs[0]] * tiles)
        rows = [ParamRow("axis", f"source axis {axis} -> Keras axis {kax}, {tiles} copies", kax,
                         sources={"axis": axis, "tiles": tiles})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("SPP")
class SPPRule(Rule):
    name = "SPP"
    description = ("Caffe SPP: one Caffe pooling per pyramid level (the Pool rule), each flattened in "
                   "(C, H, W) order, concatenated.")

    def map(self, node, ctx):
        from ...ir import Node as _Node
        from ...shapes import spp_levels
        from ..registry import RULES
        in_shape = _in_shape(node, ctx)
        if rank_of(in_shape) != 4 or not _known(in_shape):
            return _unsupported(node, ctx, "SPP needs a 4-d input of known size")
        height = int(node.attrs["pyramid_height"])
        levels = spp_levels(int(in_shape[2]), int(in_shape[3]), height)
        layers, rows, outs = [], [], []
        for lvl, (k, p) in enumerate(levels):
            sub = _Node(name=node.name if height == 1 else f"{node.name}_l{lvl}", op="Pool",
                        inputs=list(node.inputs),
                        attrs={"mode": node.attrs.get("mode", "max"), "kernel": k, "stride": k, "pad": p,
                               "rounding": "caffe_ceil", "avg_divisor": "caffe"},
                        provenance=node.provenance)
            m = RULES["Pool"].map(sub, ctx)
            if not m.supported:
                return _unsupported(node, ctx, f"pyramid level {lvl}: {m.error}")
            layers += m.layers
            rows.append(ParamRow(f"level {lvl}", f"{2 ** lvl}x{2 ** lvl} bins: kernel = stride = ceil(L/b), "
                                 "pad = (k*b - L + 1) // 2", {"kernel": k, "pad": p},
                                 sources={"pyramid_height": height}))
            if height == 1:
                return _mapping_from(node, ctx, layers, rows, "NHWC")
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


def _mapping_from(node, ctx, layers, rows, layout):
    from .layers import _mapping
    layers[-1].output = node.outputs[0]
    return _mapping(node, ctx, layers=layers, rows=rows, keras_output=layers[-1].name, layout=layout)


@register("CaffeRecurrent")
class CaffeRecurrentRule(Rule):
    name = "CaffeRecurrent"
    description = ("Caffe LSTM / RNN: unrolled over the known number of time steps with keras.ops "
                   "(plain expression CaffeRecurrent); time is the model's leading (batch) axis.")

    def map(self, node, ctx):
        x_shape, _c_shape = _in_shape(node, ctx, 0), _in_shape(node, ctx, 1)
        if not _known(x_shape) or x_shape[0] is None:
            return _unsupported(node, ctx, "a Caffe recurrent layer needs a known (T, N, ...) input shape")
        rank = len(x_shape)
        names = ("W_xc", "b_c", "W_hc") if node.attrs["cell"] == "lstm" else ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
        if any(node.p(k) is None for k in names):
            return _unsupported(node, ctx, "recurrent layer without weights")
        N, feat = int(x_shape[1]), int(np.prod(x_shape[2:]))
        # one input for the expression: [x_t features | cont_t] per (t, n)
        chain = Chain(node, ctx, inputs=[node.inputs[0]])
        _to_source(chain, rank)
        chain.add("Reshape", {"target_shape": [N, feat]}, suffix="x_flat")
        x_flat = chain.cur[0]
        chain.add("Reshape", {"target_shape": [N, 1]}, suffix="cont", inputs=[node.inputs[1]])
        chain.add("Concatenate", {"axis": -1}, suffix="x_cont", inputs=[x_flat, chain.cur[0]])
        cfg = {"cell": node.attrs["cell"], "num_output": int(node.attrs["num_output"]),
               "steps": int(x_shape[0]), "batch": N, "features": feat}
        chain.add("CaffeRecurrent", cfg, suffix="unrolled", weights=[node.p(k) for k in names])
        _to_keras(chain, 3)
        rows = [ParamRow("cell", f"{cfg['cell']} unrolled over {cfg['steps']} steps (the leading axis); "
                         "h' = cont_t * h_{t-1}" + ("; gates i, f, o, g" if cfg["cell"] == "lstm" else ""),
                         cfg["cell"], sources={k: node.p(k) for k in names},
                         caveats=[("the Keras model's leading (batch) axis is Caffe's time axis, of "
                                  f"fixed length {cfg['steps']}")])]
        return chain.finish(rows=rows, layout=keras_layout(3))


@register("Im2col")
class Im2colRule(Rule):
    name = "Im2col"
    description = "Caffe Im2col: ZeroPadding2D + Conv2D with one-hot kernels (each output channel copies one (c, i, j))."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        if rank_of(in_shape) != 4 or in_shape[1] is None:
            return _unsupported(node, ctx, "Im2col needs a 4-d input with a known channel count")
        a = node.attrs
        (kh, kw), (ph, pw) = a["kernel"], a["pad"]
        C = int(in_shape[1])
        K = np.zeros((kh, kw, C, C * kh * kw), F32)
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    K[i, j, c, (c * kh + i) * kw + j] = 1.0
        chain = Chain(node, ctx)
        if ph or pw:
            chain.add("ZeroPadding2D", {"padding": [[ph, ph], [pw, pw]]}, suffix="pad")
        chain.add("Conv2D", {"filters": C * kh * kw, "kernel_size": [kh, kw], "strides": list(a["stride"]),
                             "dilation_rate": list(a["dilation"]), "padding": "valid", "use_bias": False},
                  weights=[K])
        rows = [ParamRow("kernel", "one-hot: output channel (c*kh + i)*kw + j copies x[c] at offset (i, j) "
                         "(a product with 1, sums of zeros: exact)", (kh, kw), sources=dict(a))]
        return chain.finish(rows=rows, layout="NHWC")


# ======================================================================================
# Embed
# ======================================================================================
@register("Embed")
class EmbedRule(Rule):
    name = "Embed"
    description = "Caffe Embed: keras Embedding (indices cast to int), identity Dense for the bias."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape)
        W = node.p("weight")
        if W is None:
            return _unsupported(node, ctx, "Embed without weights")
        K, N = (int(d) for d in W.shape)
        chain = Chain(node, ctx)
        _to_source(chain, rank)
        chain.add("Embedding", {"input_dim": K, "output_dim": N}, suffix="embed", weights=[W])
        rows = [ParamRow("embeddings", "blob0 (input_dim, num_output)", _f32(W), sources={"W": W})]
        b = node.p("bias")
        if b is not None and node.attrs.get("bias", True):
            chain.add("Dense", {"units": N, "use_bias": True}, suffix="bias",
                      weights=[np.eye(N, dtype=F32), b.reshape(-1)])
            rows.append(ParamRow("bias", "identity kernel + blob1 (exact)", _f32(b), sources={"b": b}))
        _to_keras(chain, rank + 1)
        return chain.finish(rows=rows, layout=keras_layout(rank + 1))


# ======================================================================================
# extensions of existing rules
# ======================================================================================
@register("Dense")
class DenseAxisRule(DenseRule):
    """Dense plus Caffe InnerProduct with ``axis`` > 1 (the leading axes are kept)."""

    description = DenseRule.description + " InnerProduct axis > 1: source-order Reshape, Dense on the last axis."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape) if in_shape is not None else 2
        axis = int(node.attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis <= 1:
            return super().map(node, ctx)
        if node.attrs.get("activation"):   # Lasagne DenseLayer(num_leading_axes > 1, nonlinearity)
            from .recurrent import dense_trailing_node
            return dense_trailing_node(node, ctx, in_shape, rank, axis)
        W = node.p("weight")
        if W is None or W.ndim != 2 or not _known(in_shape):
            return _unsupported(node, ctx, "dense over axes >= 2 needs 2-d weights and a known input shape")
        layout = (node.params["weight"].layout or "").upper()
        K = W.T if layout == "OI" else np.asarray(W)
        n_in = int(np.prod(in_shape[axis:]))
        if K.shape[0] != n_in:
            return _unsupported(node, ctx, f"weight has {K.shape[0]} inputs, the axes >= {axis} of "
                                f"{tuple(in_shape)} hold {n_in}")
        chain = Chain(node, ctx)
        _to_source(chain, rank)
        lead = [int(d) for d in in_shape[1:axis]]
        chain.add("Reshape", {"target_shape": lead + [n_in]}, suffix="flat")
        has_bias = bool(node.attrs.get("bias", True)) and node.p("bias") is not None
        weights = [K] + ([node.p("bias").reshape(-1)] if has_bias else [])
        out_rank = axis + 1
        chain.add("Dense", {"units": int(K.shape[1]), "use_bias": has_bias, "activation": "linear"},
                  weights=weights, suffix=None if out_rank <= 2 else "dense")
        _to_keras(chain, out_rank)
        rows = [ParamRow("kernel", f"{'W.T' if layout == 'OI' else 'W'} applied to the axes >= {axis} "
                         "flattened in source (C-first) order; leading axes kept", _f32(K), sources={"W": W})]
        if has_bias:
            rows.append(ParamRow("bias", "b", _f32(node.p("bias")), sources={"b": node.p("bias")}))
        return chain.finish(rows=rows, layout=keras_layout(out_rank))


def _broadcast_second(node, ctx, merge: str, what: str):
    """Bias / Scale whose second bottom (shape x.shape[axis:axis+k], axis 0: batch included)
    is broadcast over the input: the operand is brought to a rank-r broadcastable shape."""
    x_shape = _in_shape(node, ctx, 0)
    s_shape = _in_shape(node, ctx, 1)
    if not _known(x_shape) or not _known(s_shape):
        return _unsupported(node, ctx, f"a two-input {what} needs known input shapes")
    rank, k = len(x_shape), len(s_shape)
    axis = int(node.attrs.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis != 0:
        return _unsupported(node, ctx, f"a two-input {what} at axis {axis}: its second bottom "
                            f"{tuple(s_shape)} has no batch axis, which a Keras tensor always has")
    if tuple(x_shape[1:k]) != tuple(s_shape[1:k]) or k > rank:
        return _unsupported(node, ctx, f"second bottom {tuple(s_shape)} does not match input "
                            f"{tuple(x_shape)} at axis 0")
    chain = Chain(node, ctx, inputs=[node.inputs[1]])
    if k < rank:
        _to_source(chain, k)
        chain.add("Reshape", {"target_shape": [int(d) for d in s_shape[1:]] + [1] * (rank - k)},
                  suffix="bcast")
        _to_keras(chain, rank)
        operand = chain.cur[0]
    else:
        operand = node.inputs[1]
    chain.add(merge, {}, inputs=[node.inputs[0], operand])
    rows = [ParamRow("broadcast", f"second bottom {tuple(s_shape)} reshaped to broadcast over "
                     f"{tuple(x_shape)} (source order), then {merge}", list(s_shape),
                     sources={"axis": axis})]
    return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Bias")
class BiasTwoInputRule(BiasRule):
    """Bias plus Caffe's two-bottom Bias (the bias is the second bottom)."""

    description = BiasRule.description + "; two bottoms -> broadcast + Add"

    def map(self, node, ctx):
        if len(node.inputs) == 2:
            return _broadcast_second(node, ctx, "Add", "Bias")
        return super().map(node, ctx)


@register("Scale")
class ScaleTwoInputRule(ScaleRule):
    """Scale plus the two-bottom cases ScaleRule refuses (a rank-k scale at axis 0)."""

    description = ScaleRule.description + "; any axis-0 scale shape -> broadcast + Multiply"

    def map(self, node, ctx):
        m = super().map(node, ctx)
        if m.supported or len(node.inputs) != 2 or node.attrs.get("bias"):
            return m
        return _broadcast_second(node, ctx, "Multiply", "Scale")


__all__ = ["ClipRule", "DenseAxisRule", "EmbedRule", "ExpRule", "MVNRule", "ReductionRule",
           "SwishRule", "ThresholdRule", "TileRule"]
