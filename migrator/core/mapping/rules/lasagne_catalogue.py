"""Mapping rules for the rest of Lasagne master's ``lasagne.layers`` (issue 14).

* Standardize (StandardizationLayer): ``LayerNormalization(axis=<the axes, channels last>,
  epsilon, center=False, scale=False)`` -- Keras computes ``(x - mean) / sqrt(var + eps)``
  over the given axes, Lasagne's formula exactly.
* FeaturePool, FeatureWTA, LasagneReduce (GlobalPoolLayer with any pool function) and
  CropMerge (merges with ``cropping``, T.minimum / T.sub merges): the plain expression
  ``LasagneSourceOp`` / ``LasagneMergeOp`` (:mod:`..keras_build.lasagne_catalogue_plain`):
  keras.ops on the channels-first tensor with static shapes, loadable without Migrator.
* Conv with untied biases (Lasagne ``untie_biases=True``: Conv2D*/NINLayer, a bias per output
  position ``(O, H, W)``): the Conv rule of ``layers.py`` without the bias, then the bias
  added as a constant ``(H, W, O)`` tensor (plain ``LasagneSourceOp`` 'AddUntiedBias'), then
  the nonlinearity.  Tied biases are delegated to the ``layers.py`` rule unchanged.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..plan import ParamRow
from ..registry import Rule, keras_layout, register, to_keras_axis
from .layers import (
    Chain,
    ConvRule,
    _act_weights,
    _describe_act,
    _in_shape,
    _known,
    _unsupported,
    activation_layer,
)

_FORMULA = {
    "FeaturePool": "{mode} over groups of {pool_size} consecutive features along source axis {axis}",
    "FeatureWTA": "in groups of {pool_size} consecutive features along source axis {axis}: the "
                  "first maximum kept, the rest 0",
    "LasagneReduce": "{mode} over source axes {axes}",
    "Upscale1D": "{mode} upscaling by {scale} along the last axis",
    "LasagneSPP": "{mode} pyramid pooling, levels {pool_dims} ({implementation} bins)",
}


@register("Standardize")
class StandardizeRule(Rule):
    name = "Standardize"
    description = ("Lasagne StandardizationLayer: LayerNormalization(axes, epsilon, no center/scale) "
                   "= (x - mean) / sqrt(var + epsilon).")

    def map(self, node, ctx):
        shp = _in_shape(node, ctx)
        if shp is None:
            return _unsupported(node, ctx, "standardization needs a known input rank")
        rank = len(shp)
        eps = float(node.attrs.get("epsilon", 1e-4))
        axes = sorted(to_keras_axis(int(a), rank) for a in node.attrs["axes"])
        chain = Chain(node, ctx)
        chain.add("LayerNormalization", {"axis": axes, "epsilon": eps, "center": False,
                                         "scale": False})
        rows = [ParamRow("epsilon", "(x - mean) / sqrt(var + epsilon) over source axes "
                         f"{list(node.attrs['axes'])} (Keras axes {axes})", eps,
                         sources={"epsilon": eps, "axes": list(node.attrs["axes"])})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


class _SourceOpRule(Rule):
    op = ""

    def map(self, node, ctx):
        shapes = [ctx.graph.tensor_shape(i) for i in node.inputs]
        if not all(_known(s) for s in shapes) or not _known(node.out_shape):
            return _unsupported(node, ctx, f"{node.op} needs known input shapes")
        cfg = {"op": node.op}
        for k, v in node.attrs.items():
            cfg[k] = list(v) if isinstance(v, tuple) else v
        chain = Chain(node, ctx)
        chain.add("LasagneMergeOp" if len(node.inputs) > 1 else "LasagneSourceOp", cfg)
        if node.op == "CropMerge":
            formula = (f"{node.attrs['kind']} of the inputs cropped with {node.attrs.get('cropping')}"
                       + (f" along source axis {node.attrs['axis']}" if node.attrs["kind"] == "concat"
                          else ""))
        else:
            formula = _FORMULA[node.op].format(**node.attrs)
        rows = [ParamRow("op", formula + " (keras.ops on the channels-first tensor)", node.op,
                         sources=dict(node.attrs))]
        return chain.finish(rows=rows, layout=keras_layout(len(node.out_shape)))


@register("FeaturePool")
class FeaturePoolRule(_SourceOpRule):
    name = "FeaturePool"
    description = "Lasagne FeaturePoolLayer: keras.ops reshape + reduction (plain LasagneSourceOp)."


@register("FeatureWTA")
class FeatureWTARule(_SourceOpRule):
    name = "FeatureWTA"
    description = "Lasagne FeatureWTALayer: keras.ops argmax mask (plain LasagneSourceOp)."


@register("LasagneReduce")
class LasagneReduceRule(_SourceOpRule):
    name = "LasagneReduce"
    description = "Lasagne GlobalPoolLayer with any pool function: keras.ops reduction (plain LasagneSourceOp)."


@register("LasagneSPP")
class LasagneSPPRule(_SourceOpRule):
    name = "LasagneSPP"
    description = "Lasagne spatial pyramid pooling: keras.ops slicing + max/mean per bin (plain LasagneSourceOp)."


@register("LocallyConnected")
class LocallyConnectedRule(Rule):
    name = "LocallyConnected"
    description = ("Lasagne LocallyConnected2DLayer: a sum over the kh*kw shifted input slices times "
                   "the per-position weights (keras.ops einsum, plain LasagneSourceOp) + bias, then "
                   "the nonlinearity.")

    def map(self, node, ctx):
        shp = _in_shape(node, ctx)
        if not _known(shp) or len(shp) != 4:
            return _unsupported(node, ctx, "locally connected layer needs a known 4-d input shape")
        a = node.attrs
        W = node.p("weight")
        weights = [W]
        b = node.p("bias")
        if b is not None and a.get("bias", True):
            weights.append(b)
        cfg = {"op": "LocallyConnected", "kernel": [int(k) for k in a["kernel"]],
               "flip": bool(a["flip"]), "channelwise": bool(a["channelwise"])}
        chain = Chain(node, ctx)
        chain.add("LasagneSourceOp", cfg, weights=weights)
        rows = [ParamRow("weight", "y[o,h,w] = sum over c, taps of x[c, h+dy, w+dx] * W[o, c, i', j', h, w]"
                         + (" (filters flipped)" if cfg["flip"] else ""), W, sources={"W": W}),
                ParamRow("bias", "tied (O,)" if b is not None and b.ndim == 1 else
                         "untied (O, H, W)" if b is not None else "none", b)]
        act = a.get("activation")
        if act and act.get("kind") != "linear":
            cls, acfg, formula = activation_layer(act, 4)
            chain.add(cls, acfg, suffix="act", weights=_act_weights(cls, acfg, act, 4))
            rows.append(ParamRow("activation", f"separate {cls} layer: {formula}", cls,
                                 sources={"nonlinearity": _describe_act(act)}))
        return chain.finish(rows=rows, layout="NHWC")


@register("Upscale1D")
class Upscale1DRule(_SourceOpRule):
    name = "Upscale1D"
    description = "Lasagne Upscale1DLayer: keras.ops repeat / interleaved zeros (plain LasagneSourceOp)."


@register("CropMerge")
class CropMergeRule(_SourceOpRule):
    name = "CropMerge"
    description = ("Lasagne Concat/ElemwiseSum/ElemwiseMerge with autocrop (or T.minimum / T.sub): "
                   "keras.ops slicing + merge (plain LasagneMergeOp).")


@register("Conv")
class ConvUntiedBiasRule(ConvRule):
    description = ConvRule.description + " Untied biases (O, H, W): added after the Conv2D."

    def map(self, node, ctx):
        b = node.p("bias")
        if b is None or b.ndim != 3 or not bool(node.attrs.get("bias", True)):
            return super().map(node, ctx)
        act = node.attrs.get("activation")
        inner = dataclasses.replace(
            node, attrs={**node.attrs, "bias": False, "activation": None, "untie_biases": False},
            params={k: v for k, v in node.params.items() if k != "bias"})
        m = super().map(inner, ctx)
        if not m.supported:
            return m
        conv_out = f"{node.name}/conv_out"
        m.layers[-1].output = conv_out
        bk = np.ascontiguousarray(np.asarray(b, np.float32).transpose(1, 2, 0))
        if node.out_shape is not None and tuple(node.out_shape[1:]) != tuple(b.shape):
            return _unsupported(node, ctx, f"untied bias shape {tuple(b.shape)} does not fit the "
                                           f"output {tuple(node.out_shape[1:])}")
        chain = Chain(node, ctx, inputs=[conv_out])
        chain.add("LasagneSourceOp", {"op": "AddUntiedBias"}, suffix="bias", weights=[bk])
        rows = [ParamRow("untied_bias", "b.transpose(1, 2, 0): one bias per output position "
                         "(H, W, O), added after the Conv2D", bk, sources={"b": b})]
        if act and act.get("kind") != "linear":
            cls, cfg, formula = activation_layer(act, 4)
            chain.add(cls, cfg, suffix="act", weights=_act_weights(cls, cfg, act, 4))
            rows.append(ParamRow("activation", f"separate {cls} layer: {formula}", cls,
                                 sources={"nonlinearity": _describe_act(act)}))
        tail = chain.finish(rows=rows, layout="NHWC")
        m.layers += tail.layers
        m.keras_output = tail.keras_output
        m.rows += tail.rows
        return m
