"""Mapping rules for every op but BatchNorm / Scale / Bias (see ``batchnorm.py``).

Each rule turns one IR node (NCHW semantics) into channels-last Keras layers
(:class:`KerasLayerSpec`, plain data) plus :class:`ParamRow` formulas.  Rules only use
built-in Keras layers where they are *exact*, and the few layers of
``migrator.core.keras_build.custom_layers`` otherwise.  Never ``padding='same'``: TF's
'same' is asymmetric, the sources pad symmetrically.

Conventions
* the main layer of a node is named after the node (``conv1``); helper layers get a
  suffix (``conv1_pad``, ``conv1_act``); intermediate tensor ids are ``<node>/<step>``;
* the node's ``keras_output`` is the LAST layer of its chain (its output equals the
  source node's output, in the channels-last layout ``layout``);
* nodes that are pure renames (Split, Identity, linear) are mapped by ``aliases`` only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from ...shapes import crop_bounds, deconv_out_len, pool_out_len
from .. import transforms as T
from ..plan import KerasLayerSpec, NodeMapping, ParamRow
from ..registry import MapContext, Option, Rule, keras_layout, rank_of, register, to_keras_axis

F32 = np.float32
#: the most negative float32 (Caffe's initial value of a max): padded cells never win
LOWEST_F32 = float(np.finfo(np.float32).min)


# ======================================================================================
# helpers
# ======================================================================================
def _in_shape(node: Node, ctx: MapContext, i: int = 0):
    try:
        return ctx.graph.tensor_shape(node.inputs[i])
    except (KeyError, ValueError, IndexError):
        return None


def _out_shape(node: Node):
    return node.out_shape


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=F32))


def _rule_name(ctx: MapContext, node: Node) -> str:
    return f"{ctx.graph.framework}.{node.op}"


def _mapping(node: Node, ctx: MapContext, **kw) -> NodeMapping:
    return NodeMapping(source=node.name, source_type=node.source_type, rule=_rule_name(ctx, node), **kw)


def _unsupported(node: Node, ctx: MapContext, why: str, rows=None) -> NodeMapping:
    return _mapping(node, ctx, supported=False, error=why, rows=list(rows or []), keras_output=None)


def to_source_perm(rank: int) -> tuple[int, ...]:
    """Keras ``Permute`` dims taking a channels-last tensor to the source (channels-first)
    order: rank 4 ``(3, 1, 2)``, rank 3 ``(2, 1)``."""
    return (rank - 1,) + tuple(range(1, rank - 1))


def to_keras_perm(rank: int) -> tuple[int, ...]:
    """Keras ``Permute`` dims taking a source-order (channels-first) tensor to
    channels-last: rank 4 ``(2, 3, 1)``."""
    return tuple(range(2, rank)) + (1,)


class Chain:
    """Builds the chain of Keras layers of one node."""

    def __init__(self, node: Node, ctx: MapContext, inputs: list[str] | None = None):
        self.node, self.ctx = node, ctx
        self.cur: list[str] = list(node.inputs if inputs is None else inputs)
        self.layers: list[KerasLayerSpec] = []

    def add(self, class_name: str, config: dict[str, Any], *, suffix: str | None = None,
            weights: list[np.ndarray] | None = None, inputs: list[str] | None = None) -> KerasLayerSpec:
        base = self.node.name if suffix is None else f"{self.node.name}_{suffix}"
        name = self.ctx.unique_name(base)
        out = f"{self.node.name}/{suffix or 'main'}/{len(self.layers)}"
        spec = KerasLayerSpec(name=name, class_name=class_name, config=dict(config),
                              inputs=list(self.cur if inputs is None else inputs), output=out,
                              weights=None if weights is None else [_f32(w) for w in weights])
        self.layers.append(spec)
        self.cur = [out]
        return spec

    def finish(self, **kw) -> NodeMapping:
        """Make the last layer produce the node's output tensor; return the mapping."""
        if self.layers:
            last = self.layers[-1]
            last.output = self.node.outputs[0]
            kw.setdefault("keras_output", last.name)
        return _mapping(self.node, self.ctx, layers=self.layers, **kw)


# ---- activations ---------------------------------------------------------------------
_INLINE = {"sigmoid": "sigmoid", "tanh": "tanh", "softplus": "softplus", "linear": "linear",
           "exp": "exponential"}


def inline_activation(act: dict | None, rank: int) -> str | None:
    """The Keras ``activation=`` string computing ``act`` exactly, or None."""
    if not act:
        return "linear"
    kind = act.get("kind")
    if kind == "relu" and float(act.get("negative_slope", 0.0) or 0.0) == 0.0:
        return "relu"
    if kind == "elu" and float(act.get("alpha", 1.0)) == 1.0:
        return "elu"
    if kind == "softmax" and rank == 2 and to_keras_axis(int(act.get("axis", 1)), rank) == 1:
        return "softmax"
    return _INLINE.get(kind)


def activation_layer(act: dict, rank: int) -> tuple[str, dict, str] | None:
    """(class_name, config, formula) of a layer computing ``act``; None for linear."""
    kind = act.get("kind")
    if kind == "relu":
        a = float(act.get("negative_slope", 0.0) or 0.0)
        if a == 0.0:
            return "ReLU", {}, "max(x, 0)"
        if a > 0.0:
            return "LeakyReLU", {"negative_slope": a}, f"x if x > 0 else {a!r} * x"
        # Keras LeakyReLU refuses negative slopes: a PReLU with one fixed shared slope
        return ("PReLU", {"shared_axes": list(range(1, rank)), "trainable": False},
                f"x if x > 0 else {a!r} * x (fixed PReLU)")
    if kind == "elu":
        a = float(act.get("alpha", 1.0))
        return "ELU", {"alpha": a}, f"x if x > 0 else {a!r} * (exp(x) - 1)"
    if kind in ("sigmoid", "tanh", "softplus", "exp"):
        name = _INLINE[kind]
        return "Activation", {"activation": name}, f"{name}(x)"
    if kind == "linear":
        return None
    if kind == "relu6":
        return "ReLU", {"max_value": 6.0}, "min(max(x, 0), 6)"
    if kind == "abs":
        return "UnaryOp", {"kind": "abs"}, "|x|"
    if kind == "scaled_tanh":
        si, so = float(act.get("scale_in", 1.0)), float(act.get("scale_out", 1.0))
        return ("UnaryOp", {"kind": "scaled_tanh", "scale_in": si, "scale_out": so},
                f"{so!r} * tanh({si!r} * x)")
    if kind == "softmax":
        ax = to_keras_axis(int(act.get("axis", 1)), rank)
        return "Softmax", {"axis": ax}, f"softmax over Keras axis {ax}"
    raise ValueError(f"unknown activation kind {kind!r}")


def _act_weights(cls: str, cfg: dict, act: dict, rank: int):
    if cls == "PReLU":   # fixed negative slope
        return [np.full((1,) * (rank - 1), float(act.get("negative_slope", 0.0)), dtype=F32)]
    return None


def _describe_act(act: dict | None) -> str:
    if not act:
        return "linear"
    extra = ", ".join(f"{k}={v!r}" for k, v in act.items() if k != "kind")
    return f"{act.get('kind')}({extra})" if extra else str(act.get("kind"))


def add_activation(chain: Chain, main: KerasLayerSpec, act: dict | None, rank: int,
                   rows: list[ParamRow]) -> None:
    """Put a folded activation into ``main`` (Keras ``activation=``) when exact, else
    append a layer after it."""
    if not act or act.get("kind") == "linear":
        return
    inline = inline_activation(act, rank)
    if inline is not None:
        main.config["activation"] = inline
        rows.append(ParamRow("activation", f"activation='{inline}' (exact)", inline,
                             sources={"nonlinearity": _describe_act(act)}))
        return
    cls, cfg, formula = activation_layer(act, rank)
    chain.add(cls, cfg, suffix="act", weights=_act_weights(cls, cfg, act, rank))
    rows.append(ParamRow("activation", f"separate {cls} layer: {formula}", cls,
                         sources={"nonlinearity": _describe_act(act)}))


# ======================================================================================
# Input
# ======================================================================================
@register("Input")
class InputRule(Rule):
    name = "Input"
    description = "One keras.Input per source input; NCHW -> channels-last shape."

    def map(self, node, ctx):
        shape = tuple(node.attrs.get("shape") or node.out_shape or ())
        if len(shape) < 2:
            return _unsupported(node, ctx, f"input shape {shape} has no channel axis")
        rank = len(shape)
        src = list(shape[1:])
        kshape = src if rank <= 2 else src[1:] + src[:1]
        chain = Chain(node, ctx, inputs=[])
        chain.add("Input", {"shape": kshape})
        rows = [ParamRow("shape", "source (C, H, W) -> Keras (H, W, C)" if rank == 4 else
                         "source (C, ...) -> Keras (..., C)" if rank > 2 else "unchanged",
                         tuple(kshape), sources={"shape": tuple(shape)})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


# ======================================================================================
# Conv
# ======================================================================================
@register("Conv")
class ConvRule(Rule):
    name = "Conv"
    description = "ZeroPadding2D (symmetric pads) + Conv2D(padding='valid'); kernel OIHW -> HWIO."
    options = {"flip": Option(bool, None, "rotate kernels 180deg before the transpose (true "  # noqa: RUF012
                                          "convolution); None = as the layer says (Caffe never, "
                                          "Lasagne flip_filters)")}

    def map(self, node, ctx):
        a = node.attrs
        W = node.p("weight")
        if W is None or W.ndim != 4:
            return _unsupported(node, ctx, f"convolution weight must be 4-D (O, I/g, kh, kw), got "
                                           f"{None if W is None else W.shape}")
        kh, kw = (int(v) for v in a.get("kernel", W.shape[2:]))
        sh, sw = (int(v) for v in a.get("stride", (1, 1)))
        ph, pw = (int(v) for v in a.get("pad", (0, 0)))
        dh, dw = (int(v) for v in a.get("dilation", (1, 1)))
        groups = int(a.get("group", 1))
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape)
        if rank != 4:
            return _unsupported(node, ctx, f"only 2-D convolution is supported (input rank {rank})")
        if has_bias and node.p("bias").ndim != 1:
            return _unsupported(node, ctx,
                                "untie_biases=True (a separate bias per output position, bias shape "
                                f"{tuple(node.p('bias').shape)}) has no Keras Conv2D equivalent")
        if (kh, kw) != tuple(W.shape[2:]):
            return _unsupported(node, ctx, f"kernel attr {(kh, kw)} does not match weight shape {W.shape}")
        O, Ig = W.shape[0], W.shape[1]
        if in_shape is not None and in_shape[1] is not None and Ig * groups != in_shape[1]:
            return _unsupported(node, ctx, f"weight expects {Ig}*{groups} input channels, input has "
                                           f"{in_shape[1]}")
        if O % groups:
            return _unsupported(node, ctx, f"{O} filters are not divisible by group {groups}")

        layer_flip = bool(a.get("flip", False))
        opt_flip = ctx.options.get("flip")
        flip = layer_flip if opt_flip is None else bool(opt_flip)
        K = T.lasagne_conv_to_keras(W, flip)
        formula = ("W[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)  (true convolution: kernel rotated 180deg)"
                   if flip else "W.transpose(2, 3, 1, 0)  (cross-correlation)")
        rows = [ParamRow("kernel", formula, K, sources={"W": W}),
                ParamRow("flip", "from the layer" if opt_flip is None else "overridden",
                         flip, sources={"flip (layer)": layer_flip}, option="flip", default=None)]
        chain = Chain(node, ctx)
        if ph or pw:
            chain.add("ZeroPadding2D", {"padding": [[ph, ph], [pw, pw]]}, suffix="pad")
            rows.append(ParamRow("padding", f"ZeroPadding2D((({ph}, {ph}), ({pw}, {pw}))) + "
                                 "padding='valid' (symmetric, exact)", "valid",
                                 sources={"pad": (ph, pw)}))
        else:
            rows.append(ParamRow("padding", "padding='valid' (no pad)", "valid", sources={"pad": (0, 0)}))
        subsample = (sh, sw) != (1, 1) and (dh, dw) != (1, 1)
        cfg = {"filters": int(O), "kernel_size": [kh, kw],
               "strides": [1, 1] if subsample else [sh, sw], "padding": "valid",
               "dilation_rate": [dh, dw], "groups": groups, "use_bias": has_bias,
               "activation": "linear"}
        weights = [K]
        if has_bias:
            b = node.p("bias")
            weights.append(b)
            rows.append(ParamRow("bias", "b", _f32(b), sources={"b": b}))
        main = chain.add("Conv2D", cfg, weights=weights)
        if (sh, sw) != (1, 1):
            rows.append(ParamRow("strides", "stride" if not subsample else
                                 "Keras refuses strides > 1 with dilation: stride-1 conv, then "
                                 "MaxPooling2D(1, strides) subsamples exactly", [sh, sw],
                                 sources={"stride": (sh, sw), "dilation": (dh, dw)}))
        if groups != 1:
            rows.append(ParamRow("groups", "group", groups, sources={"group": groups}))
        add_activation(chain, main, a.get("activation"), 4, rows)
        if subsample:
            chain.add("MaxPooling2D", {"pool_size": [1, 1], "strides": [sh, sw], "padding": "valid"},
                      suffix="stride")
        return chain.finish(rows=rows, layout="NHWC")


# ======================================================================================
# Deconv (Caffe Deconvolution)
# ======================================================================================
@register("Deconv")
class DeconvRule(Rule):
    name = "Deconv"
    description = ("Conv2DTranspose(padding='valid', output_padding=0) + Cropping2D(pad); kernel "
                   "(I, O/g, kh, kw) -> (kh, kw, O, I), block-diagonal for groups, zero-spread "
                   "for dilation.")

    def map(self, node, ctx):
        a = node.attrs
        W = node.p("weight")
        if W is None or W.ndim != 4:
            return _unsupported(node, ctx, f"deconvolution weight must be 4-D (I, O/g, kh, kw), got "
                                           f"{None if W is None else W.shape}")
        kh, kw = (int(v) for v in a.get("kernel", W.shape[2:]))
        sh, sw = (int(v) for v in a.get("stride", (1, 1)))
        ph, pw = (int(v) for v in a.get("pad", (0, 0)))
        dh, dw = (int(v) for v in a.get("dilation", (1, 1)))
        groups = int(a.get("group", 1) or 1)
        in_shape = _in_shape(node, ctx)
        if rank_of(in_shape) != 4:
            return _unsupported(node, ctx, f"only 2-D deconvolution is supported (input rank "
                                           f"{rank_of(in_shape)})")
        if (kh, kw) != tuple(W.shape[2:]):
            return _unsupported(node, ctx, f"kernel attr {(kh, kw)} does not match weight shape {W.shape}")
        I, Og = int(W.shape[0]), int(W.shape[1])
        if in_shape[1] is not None and I != in_shape[1]:
            return _unsupported(node, ctx, f"weight expects {I} input channels, input has {in_shape[1]}")
        if I % groups:
            return _unsupported(node, ctx, f"{I} input channels are not divisible by group {groups}")
        O = Og * groups
        flip = bool(a.get("flip", False))
        K = T.caffe_deconv_to_keras(T.flip_kernel(W) if flip else W, groups, (dh, dw))
        ekh, ekw = K.shape[:2]
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        if has_bias and node.p("bias").ndim != 1:
            return _unsupported(node, ctx, f"bias shape {tuple(node.p('bias').shape)} is not "
                                           "per channel (untied biases)")
        formula = ("W[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)  ((I, O/g, kh, kw) -> Keras "
                   "(kh, kw, O, I), kernel rotated 180deg: Lasagne flip_filters=False)" if flip else
                   "W.transpose(2, 3, 1, 0)  (Caffe (I, O/g, kh, kw) -> Keras (kh, kw, O, I), no flip)")
        if groups > 1:
            formula += f"; group {groups}: block-diagonal (zeros between groups, exact)"
        if (dh, dw) != (1, 1):
            formula += (f"; dilation {(dh, dw)}: taps spread to a {ekh}x{ekw} kernel with zeros "
                        "(Keras refuses dilation with strides)")
        rows = [ParamRow("kernel", formula, K, sources={"W": W})]
        cfg = {"filters": O, "kernel_size": [ekh, ekw], "strides": [sh, sw], "padding": "valid",
               "output_padding": [0, 0], "dilation_rate": [1, 1], "use_bias": has_bias,
               "activation": "linear"}
        weights = [K]
        if has_bias:
            b = node.p("bias")
            weights.append(b)
            rows.append(ParamRow("bias", "b", _f32(b), sources={"b": b}))
        rows.append(ParamRow("strides", "stride; full output s*(L-1) + d*(k-1) + 1 "
                             "(padding='valid', output_padding=0)", [sh, sw],
                             sources={"stride": (sh, sw), "kernel": (kh, kw), "dilation": (dh, dw)}))
        chain = Chain(node, ctx)
        main = chain.add("Conv2DTranspose", cfg, weights=weights)
        if ph or pw:
            chain.add("Cropping2D", {"cropping": [[ph, ph], [pw, pw]]}, suffix="crop")
            rows.append(ParamRow("padding", f"Cropping2D((({ph}, {ph}), ({pw}, {pw}))): the pad "
                                 "(Lasagne crop) removes p rows/cols on each side of the full output",
                                 [ph, pw], sources={"pad": (ph, pw)}))
        else:
            rows.append(ParamRow("padding", "padding='valid' (no pad)", "valid", sources={"pad": (0, 0)}))
        # activations are per position (softmax per channel vector): they commute with the crop
        add_activation(chain, main, a.get("activation"), 4, rows)
        out = node.out_shape
        if out is not None and in_shape[2] is not None:
            want = (deconv_out_len(in_shape[2], kh, sh, ph, dh), deconv_out_len(in_shape[3], kw, sw, pw, dw))
            if tuple(out[2:]) != want:
                return _unsupported(node, ctx, f"output size {out[2:]} differs from {want}")
        return chain.finish(rows=rows, layout="NHWC")


# ======================================================================================
# Upscale (Lasagne Upscale2DLayer)
# ======================================================================================
@register("Upscale")
class UpscaleRule(Rule):
    name = "Upscale"
    description = ("repeat: UpSampling2D(interpolation='nearest'); dilate: Conv2DTranspose "
                   "(strides = scale, one-hot identity kernel at tap (0, 0), no bias).")

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        if rank_of(in_shape) != 4:
            return _unsupported(node, ctx, f"only 2-D upscaling is supported (input rank "
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
            return _unsupported(node, ctx, f"upscale mode {mode!r}")
        C = in_shape[1]
        if C is None:
            return _unsupported(node, ctx, "mode 'dilate' needs a known channel count")
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


# ======================================================================================
# Crop (Caffe Crop: the second input gives only the shape)
# ======================================================================================
@register("Crop")
class CropRule(Rule):
    name = "Crop"
    description = ("Cropping2D on H, W (+ SliceAxis on other axes) of the first input; the "
                   "second input only gives the shape (static, known at conversion).")

    def map(self, node, ctx):
        x, ref = _in_shape(node, ctx, 0), _in_shape(node, ctx, 1)
        if not _known(x) or not _known(ref):
            return _unsupported(node, ctx, f"crop needs known input shapes (got {x} and {ref})")
        rank = len(x)
        axis = int(node.attrs.get("axis", 2))
        errs: list[str] = []

        def fail(m):
            errs.append(m)
            return ValueError(m)
        try:
            bounds = crop_bounds(x, ref, axis, node.attrs.get("offsets"), fail)
        except ValueError:
            return _unsupported(node, ctx, errs[0] if errs else "invalid crop")
        b0, e0 = bounds[0]
        if not (b0 == 0 and (e0 is None or x[0] is None or e0 == x[0])):
            return _unsupported(node, ctx, "cropping the batch axis")
        chain = Chain(node, ctx, inputs=[node.inputs[0]])
        rows: list[ParamRow] = []
        spatial_done: set[int] = set()
        if rank == 4 and any(e is not None for _, e in bounds[2:]):
            crops = []
            for i in (2, 3):
                b, e = bounds[i]
                crops.append([b, (x[i] - e) if e is not None else 0])
            chain.add("Cropping2D", {"cropping": crops})
            spatial_done = {2, 3}
            rows.append(ParamRow("cropping", f"Cropping2D(({tuple(crops[0])}, {tuple(crops[1])})): "
                                 f"H {x[2]} -> {x[2] - sum(crops[0])} at offset {crops[0][0]}, "
                                 f"W {x[3]} -> {x[3] - sum(crops[1])} at offset {crops[1][0]}",
                                 crops, sources={"axis": axis, "offset": node.attrs.get("offsets"),
                                                 "reference shape": tuple(ref)}))
        for i in range(1, rank):
            b, e = bounds[i]
            if i in spatial_done or e is None or (b == 0 and e == x[i]):
                continue
            kax = to_keras_axis(i, rank)
            chain.add("SliceAxis", {"axis": kax, "start": b, "stop": e, "step": None}, suffix=f"crop{i}")
            rows.append(ParamRow(f"axis {i}", f"x[{b}:{e}] on source axis {i} (Keras axis {kax})",
                                 (b, e), sources={"axis": axis, "offset": node.attrs.get("offsets")}))
        if not chain.layers:
            chain.add("Identity", {})
            rows.append(ParamRow("crop", "nothing to crop (shapes equal, offsets 0)", None))
        return chain.finish(rows=rows, layout=keras_layout(rank))


# ======================================================================================
# Dense
# ======================================================================================
@register("Dense")
class DenseRule(Rule):
    name = "Dense"
    description = "Dense; a 4-D input is flattened in Keras (H, W, C) order, so the kernel rows are permuted."
    options = {"permute_rows": Option(bool, True, "permute the kernel rows (C,H,W) -> (H,W,C) for a "  # noqa: RUF012
                                                  "multi-dimensional input; false = put a Permute layer "
                                                  "before Flatten and keep the rows")}

    def map(self, node, ctx):
        a = node.attrs
        W = node.p("weight")
        if W is None or W.ndim != 2:
            return _unsupported(node, ctx, f"dense weight must be 2-D, got {None if W is None else W.shape}")
        prm = node.params["weight"]
        layout = (prm.layout or "").upper()
        if layout == "OI":
            K = T.caffe_dense_to_keras(W)
            kformula = "W.T  (Caffe (N_out, K_in) -> Keras (K_in, N_out))"
        elif layout in ("IO", ""):
            K = np.asarray(W)
            kformula = "W  (already (K_in, N_out))"
        else:
            return _unsupported(node, ctx, f"unknown dense weight layout {prm.layout!r}")
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape) if in_shape is not None else 2
        axis = int(a.get("axis", 1))
        if axis < 0:
            axis += rank
        if axis != 1:
            return _unsupported(node, ctx, f"dense over axes >= {axis} (only axis 1 is supported)")
        n_in = K.shape[0]
        if in_shape is not None and all(d is not None for d in in_shape[1:]):
            feat = int(np.prod(in_shape[1:]))
            if feat != n_in:
                return _unsupported(node, ctx, f"weight has {n_in} inputs but the input {tuple(in_shape)} "
                                               f"has {feat} features")
        rows: list[ParamRow] = []
        chain = Chain(node, ctx)
        if rank > 2:
            if in_shape is None or any(d is None for d in in_shape[1:]):
                return _unsupported(node, ctx, "dense on an input of unknown spatial size")
            c = int(in_shape[1])
            h = int(in_shape[2])
            w = int(in_shape[3]) if rank == 4 else 1
            if ctx.options.get("permute_rows", True) and rank <= 4:   # rank 5 (C3D): Permute
                K2 = T.dense_rows_chw_to_hwc(K, c, h, w)
                order = "(C, H, W) -> (H, W, C)" if rank == 4 else "(C, L) -> (L, C)"
                chain.add("Flatten", {}, suffix="flatten")
                rows.append(ParamRow("kernel", f"{kformula}, then rows permuted {order} because Keras "
                                     "Flatten orders channels last", K2, sources={"W": W},
                                     option="permute_rows", default=True))
                K = K2
            else:
                chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_chw")
                chain.add("Flatten", {}, suffix="flatten")
                rows.append(ParamRow("kernel", f"{kformula}; rows kept: Permute({to_source_perm(rank)}) "
                                     "+ Flatten gives the source (C, H, W) order", K, sources={"W": W},
                                     option="permute_rows", default=True))
        else:
            rows.append(ParamRow("kernel", kformula, _f32(K), sources={"W": W}))
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        weights = [K]
        if has_bias:
            b = node.p("bias")
            weights.append(b.reshape(-1))
            rows.append(ParamRow("bias", "b", _f32(b), sources={"b": b}))
        main = chain.add("Dense", {"units": int(K.shape[1]), "use_bias": has_bias,
                                   "activation": "linear"}, weights=weights)
        add_activation(chain, main, a.get("activation"), 2, rows)
        return chain.finish(rows=rows, layout="NC")


# ======================================================================================
# element-wise
# ======================================================================================
def _alias(node, ctx, note: str, rows=None) -> NodeMapping:
    m = _mapping(node, ctx, aliases={t: node.inputs[0] for t in node.outputs}, rows=list(rows or []),
                 notes=[note])
    m.layout = keras_layout(rank_of(_in_shape(node, ctx)))
    return m


@register("Activation")
class ActivationRule(Rule):
    name = "Activation"
    description = "Built-in activation layers (ReLU, LeakyReLU, ELU, Activation, Softmax); custom UnaryOp for abs and scaled tanh."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
        act = {"kind": node.attrs.get("kind", "linear"),
               **{k: v for k, v in node.attrs.items() if k != "kind"}}
        try:
            spec = activation_layer(act, rank)
        except ValueError as e:
            return _unsupported(node, ctx, str(e))
        if spec is None:
            return _alias(node, ctx, "linear: identity, no Keras layer",
                          rows=[ParamRow("activation", "identity", "linear")])
        cls, cfg, formula = spec
        chain = Chain(node, ctx)
        chain.add(cls, cfg, weights=_act_weights(cls, cfg, act, rank))
        rows = [ParamRow("activation", formula, cls, sources={k: v for k, v in act.items()})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("PReLU")
class PReLURule(Rule):
    name = "PReLU"
    description = "keras.layers.PReLU sharing the slope over the spatial axes."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
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
        rows = [ParamRow("alpha", f"{formula}: y = x if x > 0 else alpha * x", _f32(alpha),
                         sources={"slope": node.p("slope")})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Power")
class PowerRule(Rule):
    name = "Power"
    description = "UnaryOp(kind='power'): y = (shift + scale*x)^power."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
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
        rank = rank_of(_in_shape(node, ctx))
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
        rank = rank_of(_in_shape(node, ctx))
        r = float(node.attrs.get("ratio", 0.5))
        chain = Chain(node, ctx)
        chain.add("Dropout", {"rate": r})
        rows = [ParamRow("rate", "dropout ratio (identity at inference)", r, sources={"ratio": r})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Identity")
class IdentityRule(Rule):
    name = "Identity"
    description = "No Keras layer: the output is the input."

    def map(self, node, ctx):
        return _alias(node, ctx, "identity: no Keras layer")


@register("Split")
class SplitRule(Rule):
    name = "Split"
    description = "No Keras layer: every output is the input."

    def map(self, node, ctx):
        return _alias(node, ctx, f"split into {node.num_outputs} copies: no Keras layer")


# ======================================================================================
# pooling
# ======================================================================================
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
        in_shape = _in_shape(node, ctx)
        if rank_of(in_shape) != 4:
            return _unsupported(node, ctx, f"only 2-D pooling is supported (input rank {rank_of(in_shape)})")
        if in_shape is None or in_shape[2] is None or in_shape[3] is None:
            if rounding != "floor":   # floor: no overhang; the divisor map is computed at run time
                return _unsupported(node, ctx, "ceil-mode pooling needs a known input size")
            H = W = None
        else:
            H, W = int(in_shape[2]), int(in_shape[3])
        rows: list[ParamRow] = []
        eh = ew = 0
        if H is not None:
            try:
                oh, ow = pool_out_len(H, kh, sh, ph, rounding), pool_out_len(W, kw, sw, pw, rounding)
            except ValueError as e:
                return _unsupported(node, ctx, str(e))
            eh = max(0, (oh - 1) * sh + kh - (H + 2 * ph))
            ew = max(0, (ow - 1) * sw + kw - (W + 2 * pw))
            kh_out = (H + 2 * ph + eh - kh) // sh + 1
            kw_out = (W + 2 * pw + ew - kw) // sw + 1
            if (kh_out, kw_out) != (oh, ow):
                return _unsupported(node, ctx, f"cannot reproduce the pooled size {(oh, ow)} "
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
            return _unsupported(node, ctx, f"unknown pooling mode {mode!r}")
        return chain.finish(rows=rows, layout="NHWC")


@register("GlobalPool")
class GlobalPoolRule(Rule):
    name = "GlobalPool"
    description = "GlobalAveragePooling2D / GlobalMaxPooling2D (keepdims for Caffe global_pooling)."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
        mode = node.attrs.get("mode", "avg")
        keep = bool(node.attrs.get("keepdims", False))
        dims = {3: "1D", 4: "2D", 5: "3D"}.get(rank)
        if dims is None or mode not in ("avg", "max"):
            return _unsupported(node, ctx, f"global {mode} pooling of a rank-{rank} input")
        cls = f"Global{'Average' if mode == 'avg' else 'Max'}Pooling{dims}"
        chain = Chain(node, ctx)
        chain.add(cls, {"keepdims": keep})
        rows = [ParamRow("keepdims", "Caffe global_pooling keeps 1x1 spatial dims" if keep else
                         "output (N, C)", keep, sources={"mode": mode})]
        return chain.finish(rows=rows, layout=keras_layout(rank if keep else 2))


@register("LRN")
class LRNRule(Rule):
    name = "LRN"
    description = "Custom LRN layer: y = x / (k + coeff * sum x^2)^beta."

    def map(self, node, ctx):
        a = node.attrs
        rank = rank_of(_in_shape(node, ctx))
        if rank != 4:
            return _unsupported(node, ctx, f"LRN on a rank-{rank} input")
        region = a.get("region", "across")
        cfg = {"region": region, "size": int(a.get("size", 5)), "coeff": float(a["coeff"]),
               "beta": float(a.get("beta", 0.75)), "k": float(a.get("k", 1.0))}
        chain = Chain(node, ctx)
        chain.add("LRN", cfg)
        n = cfg["size"]
        src_alpha = a.get("source_alpha")
        rows = [ParamRow("coeff", "factor on the sum of squares (Caffe across: alpha/n, within: alpha/n^2; "
                         "Lasagne: alpha)", cfg["coeff"], sources={"alpha": src_alpha, "local_size": n,
                                                                    "region": region}),
                ParamRow("beta", "beta", cfg["beta"], sources={"beta": a.get("beta")}),
                ParamRow("k", "k", cfg["k"], sources={"k": a.get("k")})]
        return chain.finish(rows=rows, layout="NHWC")


# ======================================================================================
# merges
# ======================================================================================
@register("Eltwise")
class EltwiseRule(Rule):
    name = "Eltwise"
    description = "Add / Multiply / Maximum; WeightedSum for sums with coefficients."

    def map(self, node, ctx):
        op = node.attrs.get("operation", "sum")
        coeffs = node.attrs.get("coeffs")
        n = len(node.inputs)
        rank = rank_of(_in_shape(node, ctx))
        chain = Chain(node, ctx)
        if coeffs is not None and len(coeffs) not in (1, n):
            return _unsupported(node, ctx, f"{len(coeffs)} coefficients for {n} inputs")
        if op == "sum":
            cs = [1.0] * n if coeffs is None else [float(c) for c in
                                                     (coeffs * n if len(coeffs) == 1 else coeffs)]
            if all(c == 1.0 for c in cs) and n >= 2:
                chain.add("Add", {})
                rows = [ParamRow("operation", "sum", "Add")]
            else:
                chain.add("WeightedSum", {"coeffs": cs})
                rows = [ParamRow("coeffs", "y = sum(c_i * x_i)", cs, sources={"coeffs": coeffs})]
        elif op in ("prod", "max"):
            if coeffs is not None and any(float(c) != 1.0 for c in coeffs):
                return _unsupported(node, ctx, f"coefficients are only allowed for sum, not {op}")
            if n == 1:
                return _alias(node, ctx, f"{op} of one input: identity")
            cls = "Multiply" if op == "prod" else "Maximum"
            chain.add(cls, {})
            rows = [ParamRow("operation", op, cls)]
        else:
            return _unsupported(node, ctx, f"unknown eltwise operation {op!r}")
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Concat")
class ConcatRule(Rule):
    name = "Concat"
    description = "Concatenate on the channels-last axis of the source axis."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
        axis = int(node.attrs.get("axis", 1))
        kax = to_keras_axis(axis, rank)
        if kax == 0:
            return _unsupported(node, ctx, "concatenation along the batch axis")
        if len(node.inputs) == 1:
            return _alias(node, ctx, "concatenation of one input: identity")
        chain = Chain(node, ctx)
        chain.add("Concatenate", {"axis": kax})
        rows = [ParamRow("axis", "source axis -> channels-last axis", kax, sources={"axis": axis})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


# ======================================================================================
# shape ops
# ======================================================================================
def _known(shape) -> bool:
    return shape is not None and all(d is not None for d in shape[1:])


def _reshape_via_source(chain: Chain, in_rank: int, out_shape, rows: list[ParamRow], what: str) -> None:
    """Permute to source order, Reshape to ``out_shape[1:]`` (source order), Permute back."""
    if in_rank > 2:
        chain.add("Permute", {"dims": list(to_source_perm(in_rank))}, suffix="to_src")
    chain.add("Reshape", {"target_shape": [int(d) for d in out_shape[1:]]}, suffix=None)
    out_rank = len(out_shape)
    if out_rank > 2:
        chain.add("Permute", {"dims": list(to_keras_perm(out_rank))}, suffix="to_keras")
    rows.append(ParamRow("layout", f"{'Permute to source (C-first) order, ' if in_rank > 2 else ''}"
                         f"{what} to {tuple(out_shape[1:])}"
                         f"{', Permute back to channels-last' if out_rank > 2 else ''} (exact)",
                         tuple(out_shape[1:])))


@register("Flatten")
class FlattenRule(Rule):
    name = "Flatten"
    description = "Permute to (C, H, W) order, then Flatten: the features come out in the source order."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape)
        axis = int(node.attrs.get("axis", 1))
        end = int(node.attrs.get("end_axis", -1))
        axis = axis + rank if axis < 0 else axis
        end = end + rank if end < 0 else end
        rows: list[ParamRow] = []
        if axis == 0:
            return _unsupported(node, ctx, "flattening the batch axis")
        if end <= axis or (rank <= 2 and end == rank - 1):
            return _alias(node, ctx, "flatten of nothing: identity")
        chain = Chain(node, ctx)
        if axis == 1 and end == rank - 1:
            chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_chw")
            chain.add("Flatten", {})
            rows.append(ParamRow("order", f"Permute({to_source_perm(rank)}) then Flatten: features in "
                                 "the source (C, H, W) order", "(C, H, W)"))
            return chain.finish(rows=rows, layout="NC")
        out_shape = node.out_shape
        if not _known(out_shape):
            return _unsupported(node, ctx, "flatten with unknown output shape")
        _reshape_via_source(chain, rank, out_shape, rows, "Reshape")
        return chain.finish(rows=rows, layout=keras_layout(len(out_shape)))


@register("Reshape")
class ReshapeRule(Rule):
    name = "Reshape"
    description = "Permute to source order, Reshape, Permute back to channels-last."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        out_shape = node.out_shape
        rank = rank_of(in_shape)
        if not _known(out_shape):
            return _unsupported(node, ctx, "reshape with unknown output shape (run shape inference)")
        if in_shape is not None and out_shape[0] != in_shape[0]:
            return _unsupported(node, ctx, f"reshape changes the batch size ({in_shape[0]} -> {out_shape[0]})")
        chain = Chain(node, ctx)
        rows = [ParamRow("shape", "source reshape spec", tuple(out_shape),
                         sources={"shape": node.attrs.get("shape")})]
        _reshape_via_source(chain, rank, out_shape, rows, "Reshape")
        return chain.finish(rows=rows, layout=keras_layout(len(out_shape)))


@register("Transpose")
class TransposeRule(Rule):
    name = "Transpose"
    description = "Lasagne DimshuffleLayer: Permute to source order, Permute/Reshape, Permute back."

    def map(self, node, ctx):
        pattern = list(node.attrs.get("pattern", ()))
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape)
        if not pattern or pattern[0] != 0:
            return _unsupported(node, ctx, f"dimshuffle pattern {pattern} moves the batch axis")
        kept = [p for p in pattern if p != "x"]
        if len(set(kept)) != len(kept) or any(not isinstance(p, int) or p < 0 or p >= rank for p in kept):
            return _unsupported(node, ctx, f"invalid dimshuffle pattern {pattern}")
        dropped = [d for d in range(rank) if d not in kept]
        if dropped and (in_shape is None or any(in_shape[d] != 1 for d in dropped)):
            return _unsupported(node, ctx, f"dimshuffle drops non-broadcastable axes {dropped}")
        out_rank = len(pattern)
        if (in_shape is None or any(d is None for d in in_shape[1:])) and (dropped or "x" in pattern):
                return _unsupported(node, ctx, "dimshuffle with 'x' on an input of unknown shape")
        perm = kept[1:] + dropped
        if perm == list(range(1, rank)) and not dropped and "x" not in pattern:
            return _alias(node, ctx, "identity dimshuffle: no Keras layer")
        chain = Chain(node, ctx)
        if rank > 2:
            chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_src")
        if perm != list(range(1, rank)):
            chain.add("Permute", {"dims": perm})
        if dropped or "x" in pattern:
            tgt = [1 if p == "x" else int(in_shape[p]) for p in pattern[1:]]
            chain.add("Reshape", {"target_shape": tgt}, suffix="reshape")
        if out_rank > 2:
            chain.add("Permute", {"dims": list(to_keras_perm(out_rank))}, suffix="to_keras")
        rows = [ParamRow("pattern", "Permute to source order, apply the pattern, Permute back "
                         "to channels-last (exact)", tuple(pattern), sources={"pattern": tuple(pattern)})]
        return chain.finish(rows=rows, layout=keras_layout(out_rank))


@register("Slice")
class SliceRule(Rule):
    name = "Slice"
    description = ("SliceAxis on the channels-last axis of the source axis (one per output for "
                   "Caffe's multi-output Slice); an integer index also drops the axis.")

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        rank = rank_of(in_shape)
        a = node.attrs
        axis = int(a.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        kax = to_keras_axis(axis, rank)
        if axis == 0:
            return _unsupported(node, ctx, "slicing the batch axis")
        points = a.get("slice_points")
        if points is not None or node.num_outputs > 1:
            return self._multi(node, ctx, in_shape, axis, kax, points)
        chain = Chain(node, ctx)
        if a.get("index") is not None:
            idx = int(a["index"])
            out_shape = node.out_shape
            if not _known(out_shape):
                return _unsupported(node, ctx, "indexing with an unknown output shape")
            stop = idx + 1 if idx != -1 else None
            rows: list[ParamRow] = []
            chain.add("SliceAxis", {"axis": kax, "start": idx, "stop": stop, "step": None}, suffix="slice")
            _reshape_via_source(chain, rank, out_shape, rows, "Reshape (drop the indexed axis)")
            rows.insert(0, ParamRow("index", f"x[{idx}] on source axis {axis} (Keras axis {kax})", idx,
                                    sources={"axis": axis, "index": idx}))
            return chain.finish(rows=rows, layout=keras_layout(len(out_shape)))
        cfg = {"axis": kax, "start": a.get("start"), "stop": a.get("stop"), "step": a.get("step")}
        chain.add("SliceAxis", cfg)
        rows = [ParamRow("slice", f"x[{cfg['start']}:{cfg['stop']}:{cfg['step']}] on Keras axis {kax}",
                         (cfg["start"], cfg["stop"], cfg["step"]), sources={"axis": axis})]
        return chain.finish(rows=rows, layout=keras_layout(rank))

    def _multi(self, node, ctx, in_shape, axis, kax, points):
        n = node.num_outputs
        L = None if in_shape is None else in_shape[axis]
        if points:
            edges = [0] + [int(p) for p in points] + [L]
            if len(edges) != n + 1:
                return _unsupported(node, ctx, f"{len(points)} slice points for {n} outputs")
        else:
            if L is None or L % n:
                return _unsupported(node, ctx, f"axis of size {L} cannot be split into {n} equal parts")
            edges = [i * (L // n) for i in range(n + 1)]
        layers, rows = [], []
        for i, out in enumerate(node.outputs):
            b, e = edges[i], edges[i + 1]
            name = ctx.unique_name(f"{node.name}_{i}")
            layers.append(KerasLayerSpec(name=name, class_name="SliceAxis",
                                         config={"axis": kax, "start": b, "stop": e, "step": None},
                                         inputs=[node.inputs[0]], output=out))
            rows.append(ParamRow(f"output {i}", f"x[{b}:{e}] on source axis {axis} (Keras axis {kax})",
                                 (b, e), sources={"slice_points": points}))
        rank = rank_of(in_shape)
        note = f"{n} outputs; keras_output is output 0, output i is Keras layer '{node.name}_<i>'"
        return _mapping(node, ctx, layers=layers, rows=rows, keras_output=layers[0].name,
                        layout=keras_layout(rank), notes=[note])


@register("Pad")
class PadRule(Rule):
    name = "Pad"
    description = "ZeroPadding2D (value 0) or ConstantPadding2D(value) on the spatial axes."

    def map(self, node, ctx):
        rank = rank_of(_in_shape(node, ctx))
        a = node.attrs
        bnd = int(a.get("batch_ndim", 2))
        pads = [tuple(int(v) for v in (p if isinstance(p, (list, tuple)) else (p, p))) for p in a["pad"]]
        value = float(a.get("value", 0.0) or 0.0)
        if rank != 4 or bnd != 2 or len(pads) != 2:
            return _unsupported(node, ctx, f"padding of {len(pads)} axes after {bnd} leading axes of a "
                                           f"rank-{rank} tensor (only spatial 2-D padding is supported)")
        cfg = {"padding": [list(pads[0]), list(pads[1])]}
        chain = Chain(node, ctx)
        if value == 0.0:
            chain.add("ZeroPadding2D", cfg)
        else:
            chain.add("ConstantPadding2D", {**cfg, "value": value})
        rows = [ParamRow("padding", f"pad (H, W) by {pads} with {value!r}", cfg["padding"],
                         sources={"pad": a["pad"], "value": value})]
        return chain.finish(rows=rows, layout="NHWC")
