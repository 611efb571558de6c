"""Mapping rules of the conv family: ``Conv`` (tied or untied biases), ``Deconv``, ``Conv1D``,
``Conv3D``, ``LocallyConnected``, ``Im2col``.

* Conv: ZeroPadding2D (symmetric pads) + Conv2D('valid'), kernel OIHW -> HWIO (rotated for a
  true convolution); Lasagne ``untie_biases=True`` (a bias per output position ``(O, H, W)``):
  the Conv2D without bias, then the bias added as a constant ``(H, W, O)`` tensor (plain
  ``LasagneSourceOp`` 'AddUntiedBias'), then the nonlinearity.
* Conv1D: the Conv rule over ``(N, 1, L, C)``; Conv3D: ZeroPadding3D + Conv3D; Deconv3D
  (Lasagne TransposedConv3DLayer): Conv3DTranspose('valid') + Cropping3D.
* LocallyConnected: the plain expression ``LasagneSourceOp`` (keras.ops einsum per tap).
* Im2col: ZeroPadding2D + Conv2D with one-hot kernels.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ...shapes import deconv_out_len
from .. import transforms as T
from ..plan import ParamRow
from ..registry import Option, Rule, keras_layout, rank_of, register
from .common import (
    F32,
    Chain,
    OneDRule,
    add_activation,
    add_activation_layer,
    f32,
    input_shape,
    known_shape,
    unsupported,
)


def conv2d_geometry(a: dict, W) -> tuple[tuple[int, int], ...]:
    """The 2-D ``(kernel, stride, pad, dilation)`` pairs of a (de)convolution node's attributes
    ``a``; the kernel defaults to the spatial shape of the weight ``W``."""
    return (tuple(int(v) for v in a.get("kernel", W.shape[2:])),
            tuple(int(v) for v in a.get("stride", (1, 1))),
            tuple(int(v) for v in a.get("pad", (0, 0))),
            tuple(int(v) for v in a.get("dilation", (1, 1))))


@register("Conv")
class ConvRule(Rule):
    name = "Conv"
    description = ("ZeroPadding2D (symmetric pads) + Conv2D(padding='valid'); kernel OIHW -> HWIO. "
                   "Untied biases (O, H, W): added after the Conv2D.")
    options = {"flip": Option(bool, None, "rotate kernels 180deg before the transpose (true "  # noqa: RUF012
                                          "convolution); None = as the layer says (Caffe never, "
                                          "Lasagne flip_filters)")}

    def map(self, node, ctx):
        b = node.p("bias")
        if b is not None and b.ndim == 3 and bool(node.attrs.get("bias", True)):
            return self._map_untied(node, ctx, b)
        return self._map_tied(node, ctx)

    def _map_untied(self, node, ctx, b):
        """Lasagne ``untie_biases=True``: the Conv2D without bias, then the bias ``(O, H, W)``
        added as a constant ``(H, W, O)`` tensor, then the nonlinearity."""
        act = node.attrs.get("activation")
        inner = dataclasses.replace(
            node, attrs={**node.attrs, "bias": False, "activation": None, "untie_biases": False},
            params={k: v for k, v in node.params.items() if k != "bias"})
        m = self._map_tied(inner, ctx)
        if not m.supported:
            return m
        conv_out = f"{node.name}/conv_out"
        m.layers[-1].output = conv_out
        bk = np.ascontiguousarray(np.asarray(b, np.float32).transpose(1, 2, 0))
        if node.out_shape is not None and tuple(node.out_shape[1:]) != tuple(b.shape):
            return unsupported(node, ctx, f"untied bias shape {tuple(b.shape)} does not fit the "
                                          f"output {tuple(node.out_shape[1:])}")
        chain = Chain(node, ctx, inputs=[conv_out])
        chain.add("LasagneSourceOp", {"op": "AddUntiedBias"}, suffix="bias", weights=[bk])
        rows = [ParamRow("untied_bias", "b.transpose(1, 2, 0): one bias per output position "
                         "(H, W, O), added after the Conv2D", bk, sources={"b": b})]
        add_activation_layer(chain, act, 4, rows)
        tail = chain.finish(rows=rows, layout="NHWC")
        m.layers += tail.layers
        m.keras_output = tail.keras_output
        m.rows += tail.rows
        return m

    def _map_tied(self, node, ctx):
        a = node.attrs
        W = node.p("weight")
        if W is None or W.ndim != 4:
            return unsupported(node, ctx, f"convolution weight must be 4-D (O, I/g, kh, kw), got "
                                          f"{None if W is None else W.shape}")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv2d_geometry(a, W)
        groups = int(a.get("group", 1))
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        if rank != 4:
            return unsupported(node, ctx, f"only 2-D convolution is supported (input rank {rank})")
        if has_bias and node.p("bias").ndim != 1:
            return unsupported(node, ctx,
                               "untie_biases=True (a separate bias per output position, bias shape "
                               f"{tuple(node.p('bias').shape)}) has no Keras Conv2D equivalent")
        if (kh, kw) != tuple(W.shape[2:]):
            return unsupported(node, ctx, f"kernel attr {(kh, kw)} does not match weight shape {W.shape}")
        O, Ig = W.shape[0], W.shape[1]
        if in_shape is not None and in_shape[1] is not None and Ig * groups != in_shape[1]:
            return unsupported(node, ctx, f"weight expects {Ig}*{groups} input channels, input has "
                                          f"{in_shape[1]}")
        if O % groups:
            return unsupported(node, ctx, f"{O} filters are not divisible by group {groups}")

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
            rows.append(ParamRow("bias", "b", f32(b), sources={"b": b}))
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
            return unsupported(node, ctx, f"deconvolution weight must be 4-D (I, O/g, kh, kw), got "
                                          f"{None if W is None else W.shape}")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv2d_geometry(a, W)
        groups = int(a.get("group", 1) or 1)
        in_shape = input_shape(node, ctx)
        if rank_of(in_shape) != 4:
            return unsupported(node, ctx, f"only 2-D deconvolution is supported (input rank "
                                          f"{rank_of(in_shape)})")
        if (kh, kw) != tuple(W.shape[2:]):
            return unsupported(node, ctx, f"kernel attr {(kh, kw)} does not match weight shape {W.shape}")
        I, Og = int(W.shape[0]), int(W.shape[1])
        if in_shape[1] is not None and I != in_shape[1]:
            return unsupported(node, ctx, f"weight expects {I} input channels, input has {in_shape[1]}")
        if I % groups:
            return unsupported(node, ctx, f"{I} input channels are not divisible by group {groups}")
        O = Og * groups
        flip = bool(a.get("flip", False))
        K = T.caffe_deconv_to_keras(T.flip_kernel(W) if flip else W, groups, (dh, dw))
        ekh, ekw = K.shape[:2]
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        if has_bias and node.p("bias").ndim != 1:
            return unsupported(node, ctx, f"bias shape {tuple(node.p('bias').shape)} is not "
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
            rows.append(ParamRow("bias", "b", f32(b), sources={"b": b}))
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
                return unsupported(node, ctx, f"output size {out[2:]} differs from {want}")
        return chain.finish(rows=rows, layout="NHWC")


@register("Conv1D")
class Conv1DRule(OneDRule):
    name = "Conv1D"
    two_d = "Conv"
    description = "Lasagne Conv1DLayer: the Conv rule over (N, 1, L, C) (Reshape before and after)."


@register("Conv3D")
class Conv3DRule(Rule):
    name = "Conv3D"
    description = ("ZeroPadding3D (symmetric pads) + Conv3D(padding='valid'); kernel OIDHW -> "
                   "DHWIO (rotated first when the layer convolves).")

    def map(self, node, ctx):

        a = node.attrs
        W = node.p("weight")
        in_shape = input_shape(node, ctx)
        if W is None or W.ndim != 5 or in_shape is None or len(in_shape) != 5:
            return unsupported(node, ctx, "3-D convolution needs a 5-d weight and input")
        k, s, p = (tuple(int(v) for v in a[key]) for key in ("kernel", "stride", "pad"))
        K = np.asarray(W)
        flip = bool(a.get("flip"))
        if flip:
            K = K[:, :, ::-1, ::-1, ::-1]
        K = f32(K.transpose(2, 3, 4, 1, 0))
        chain = Chain(node, ctx)
        rows = [ParamRow("kernel", ("W[:, :, ::-1, ::-1, ::-1].transpose(2, 3, 4, 1, 0) (a true "
                                    "convolution: kernel rotated)" if flip else
                                    "W.transpose(2, 3, 4, 1, 0) (cross-correlation)"), K, sources={"W": W})]
        if any(p):
            chain.add("ZeroPadding3D", {"padding": [[q, q] for q in p]}, suffix="pad")
            rows.append(ParamRow("padding", f"ZeroPadding3D {p} (symmetric) + 'valid'", p))
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        weights = [K] + ([node.p("bias").reshape(-1)] if has_bias else [])
        main = chain.add("Conv3D", {"filters": int(W.shape[0]), "kernel_size": list(k), "strides": list(s),
                                    "padding": "valid", "use_bias": has_bias, "activation": "linear"},
                         weights=weights)
        add_activation(chain, main, a.get("activation"), 5, rows)
        return chain.finish(rows=rows, layout=keras_layout(5))


@register("LocallyConnected")
class LocallyConnectedRule(Rule):
    name = "LocallyConnected"
    description = ("Lasagne LocallyConnected2DLayer: a sum over the kh*kw shifted input slices times "
                   "the per-position weights (keras.ops einsum, plain LasagneSourceOp) + bias, then "
                   "the nonlinearity.")

    def map(self, node, ctx):
        shp = input_shape(node, ctx)
        if not known_shape(shp) or len(shp) != 4:
            return unsupported(node, ctx, "locally connected layer needs a known 4-d input shape")
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
        add_activation_layer(chain, act, 4, rows)
        return chain.finish(rows=rows, layout="NHWC")


@register("Im2col")
class Im2colRule(Rule):
    name = "Im2col"
    description = "Caffe Im2col: ZeroPadding2D + Conv2D with one-hot kernels (each output channel copies one (c, i, j))."

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        if rank_of(in_shape) != 4 or in_shape[1] is None:
            return unsupported(node, ctx, "Im2col needs a 4-d input with a known channel count")
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


@register("Deconv3D")
class Deconv3DRule(Rule):
    name = "Deconv3D"
    description = ("Conv3DTranspose(padding='valid') + Cropping3D(crop); kernel (I, O, kd, kh, kw) "
                   "-> (kd, kh, kw, O, I), rotated first for Lasagne's flip_filters=False.")

    def map(self, node, ctx):
        a = node.attrs
        W = node.p("weight")
        in_shape = input_shape(node, ctx)
        if W is None or W.ndim != 5 or rank_of(in_shape) != 5:
            return unsupported(node, ctx, "3-D transposed convolution needs a 5-d weight "
                                          "(I, O, kd, kh, kw) and a 5-d input")
        k, s, p = (tuple(int(v) for v in a[key]) for key in ("kernel", "stride", "pad"))
        if k != tuple(W.shape[2:]):
            return unsupported(node, ctx, f"kernel attr {k} does not match weight shape {W.shape}")
        if in_shape[1] is not None and int(W.shape[0]) != in_shape[1]:
            return unsupported(node, ctx, f"weight expects {W.shape[0]} input channels, input has "
                                          f"{in_shape[1]}")
        flip = bool(a.get("flip", False))
        K = np.asarray(W)
        if flip:
            K = K[:, :, ::-1, ::-1, ::-1]
        K = f32(K.transpose(2, 3, 4, 1, 0))
        rows = [ParamRow("kernel", ("W[:, :, ::-1, ::-1, ::-1].transpose(2, 3, 4, 1, 0)  ((I, O, kd, "
                                    "kh, kw) -> Keras (kd, kh, kw, O, I), rotated: Lasagne "
                                    "flip_filters=False)" if flip else
                                    "W.transpose(2, 3, 4, 1, 0)  ((I, O, kd, kh, kw) -> Keras "
                                    "(kd, kh, kw, O, I), no flip)"), K, sources={"W": W})]
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        weights = [K]
        if has_bias:
            weights.append(node.p("bias").reshape(-1))
            rows.append(ParamRow("bias", "b", f32(node.p("bias")), sources={"b": node.p("bias")}))
        chain = Chain(node, ctx)
        main = chain.add("Conv3DTranspose", {
            "filters": int(W.shape[1]), "kernel_size": list(k), "strides": list(s),
            "padding": "valid", "output_padding": [0, 0, 0], "dilation_rate": [1, 1, 1],
            "use_bias": has_bias, "activation": "linear"}, weights=weights)
        rows.append(ParamRow("strides", "stride; full output s*(L-1) + k (padding='valid', "
                             "output_padding=0)", list(s), sources={"stride": s, "kernel": k}))
        if any(p):
            chain.add("Cropping3D", {"cropping": [[q, q] for q in p]}, suffix="crop")
            rows.append(ParamRow("cropping", f"Cropping3D({p}): Lasagne's crop removes p planes on "
                                 "each side of the full output", list(p), sources={"crop": p}))
        add_activation(chain, main, a.get("activation"), 5, rows)
        out = node.out_shape
        if out is not None and all(d is not None for d in in_shape[2:]):
            want = tuple(deconv_out_len(L, kk, ss, q) for L, kk, ss, q in zip(in_shape[2:], k, s, p))
            if tuple(out[2:]) != want:
                return unsupported(node, ctx, f"output size {out[2:]} differs from {want}")
        return chain.finish(rows=rows, layout=keras_layout(5))
