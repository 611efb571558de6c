"""Mapping rules of the dense family: ``Dense`` (Caffe InnerProduct, Lasagne DenseLayer).

``axis`` 1: a multi-dimensional input is flattened in Keras (H, W, C) order, so the kernel
rows are permuted (or a Permute put before Flatten).  ``axis`` > 1 (Caffe InnerProduct
``axis``, Lasagne ``num_leading_axes``): the leading axes are kept -- source-order Reshape,
Dense on the last axis, Permute back.
"""
from __future__ import annotations

import numpy as np

from .. import transforms as T
from ..plan import ParamRow
from ..registry import Option, Rule, keras_layout, rank_of, register
from .common import (
    Chain,
    add_activation,
    chain_to_keras,
    chain_to_source,
    f32,
    input_shape,
    known_shape,
    to_keras_perm,
    to_source_perm,
    unsupported,
)


@register("Dense")
class DenseRule(Rule):
    name = "Dense"
    description = ("Dense; a 4-D input is flattened in Keras (H, W, C) order, so the kernel rows are permuted. "
                   "InnerProduct axis > 1: source-order Reshape, Dense on the last axis.")
    options = {"permute_rows": Option(bool, True, "permute the kernel rows (C,H,W) -> (H,W,C) for a "  # noqa: RUF012
                                                  "multi-dimensional input; false = put a Permute layer "
                                                  "before Flatten and keep the rows")}

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape) if in_shape is not None else 2
        axis = int(node.attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis > 1:
            return self._map_leading_axes(node, ctx, in_shape, rank, axis)
        return self._map_flat(node, ctx)

    def _map_leading_axes(self, node, ctx, in_shape, rank: int, axis: int):
        """Caffe InnerProduct / Lasagne DenseLayer over the axes >= ``axis`` (> 1): the leading
        axes are kept."""
        if node.attrs.get("activation"):   # Lasagne DenseLayer(num_leading_axes > 1, nonlinearity)
            return dense_trailing_node(node, ctx, in_shape, rank, axis)
        W = node.p("weight")
        if W is None or W.ndim != 2 or not known_shape(in_shape):
            return unsupported(node, ctx, "dense over axes >= 2 needs 2-d weights and a known input shape")
        layout = (node.params["weight"].layout or "").upper()
        K = W.T if layout == "OI" else np.asarray(W)
        n_in = int(np.prod(in_shape[axis:]))
        if K.shape[0] != n_in:
            return unsupported(node, ctx, f"weight has {K.shape[0]} inputs, the axes >= {axis} of "
                               f"{tuple(in_shape)} hold {n_in}")
        chain = Chain(node, ctx)
        chain_to_source(chain, rank)
        lead = [int(d) for d in in_shape[1:axis]]
        chain.add("Reshape", {"target_shape": lead + [n_in]}, suffix="flat")
        has_bias = bool(node.attrs.get("bias", True)) and node.p("bias") is not None
        weights = [K] + ([node.p("bias").reshape(-1)] if has_bias else [])
        out_rank = axis + 1
        chain.add("Dense", {"units": int(K.shape[1]), "use_bias": has_bias, "activation": "linear"},
                  weights=weights, suffix=None if out_rank <= 2 else "dense")
        chain_to_keras(chain, out_rank)
        rows = [ParamRow("kernel", f"{'W.T' if layout == 'OI' else 'W'} applied to the axes >= {axis} "
                         "flattened in source (C-first) order; leading axes kept", f32(K), sources={"W": W})]
        if has_bias:
            rows.append(ParamRow("bias", "b", f32(node.p("bias")), sources={"b": node.p("bias")}))
        return chain.finish(rows=rows, layout=keras_layout(out_rank))

    def _map_flat(self, node, ctx):
        a = node.attrs
        W = node.p("weight")
        if W is None or W.ndim != 2:
            return unsupported(node, ctx, f"dense weight must be 2-D, got {None if W is None else W.shape}")
        prm = node.params["weight"]
        layout = (prm.layout or "").upper()
        if layout == "OI":
            K = T.caffe_dense_to_keras(W)
            kformula = "W.T  (Caffe (N_out, K_in) -> Keras (K_in, N_out))"
        elif layout in ("IO", ""):
            K = np.asarray(W)
            kformula = "W  (already (K_in, N_out))"
        else:
            return unsupported(node, ctx, f"unknown dense weight layout {prm.layout!r}")
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape) if in_shape is not None else 2
        axis = int(a.get("axis", 1))
        if axis < 0:
            axis += rank
        if axis != 1:
            return unsupported(node, ctx, f"dense over axes >= {axis} (only axis 1 is supported)")
        n_in = K.shape[0]
        if in_shape is not None and all(d is not None for d in in_shape[1:]):
            feat = int(np.prod(in_shape[1:]))
            if feat != n_in:
                return unsupported(node, ctx, f"weight has {n_in} inputs but the input {tuple(in_shape)} "
                                              f"has {feat} features")
        rows: list[ParamRow] = []
        chain = Chain(node, ctx)
        if rank > 2:
            if in_shape is None or any(d is None for d in in_shape[1:]):
                return unsupported(node, ctx, "dense on an input of unknown spatial size")
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
            rows.append(ParamRow("kernel", kformula, f32(K), sources={"W": W}))
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        weights = [K]
        if has_bias:
            b = node.p("bias")
            weights.append(b.reshape(-1))
            rows.append(ParamRow("bias", "b", f32(b), sources={"b": b}))
        main = chain.add("Dense", {"units": int(K.shape[1]), "use_bias": has_bias,
                                   "activation": "linear"}, weights=weights)
        add_activation(chain, main, a.get("activation"), 2, rows)
        return chain.finish(rows=rows, layout="NC")


def dense_trailing_node(node, ctx, in_shape, rank: int, axis: int):
    """:func:`dense_trailing` for a Dense node with a Lasagne-layout ('IO') weight."""
    W = node.p("weight")
    if W is None or W.ndim != 2:
        return unsupported(node, ctx, "dense weight must be 2-D")
    if (node.params["weight"].layout or "").upper() == "OI":
        return dense_trailing(node, ctx, np.asarray(W).T, "W.T", in_shape, rank, axis)
    return dense_trailing(node, ctx, np.asarray(W), "W", in_shape, rank, axis)


def dense_trailing(node, ctx, K: np.ndarray, kformula: str, in_shape, rank: int, axis: int):
    """Dense over the source axes >= ``axis`` (> 1; Lasagne ``num_leading_axes = axis``):
    Permute the Keras tensor to the source order, Reshape the trailing axes into one,
    Dense (acts on the last axis), Permute the result back to Migrator's layout."""
    if in_shape is None or any(d is None for d in in_shape[axis:]):
        return unsupported(node, ctx, "dense over trailing axes of unknown size")
    if any(d is None for d in in_shape[1:axis]) and rank - axis > 1:
        return unsupported(node, ctx, "dense over several trailing axes with unknown leading axes")
    feat = int(np.prod(in_shape[axis:]))
    if feat != K.shape[0]:
        return unsupported(node, ctx, f"weight has {K.shape[0]} inputs but the input "
                                      f"{tuple(in_shape)} has {feat} features from axis {axis}")
    chain = Chain(node, ctx)
    rows = [ParamRow("kernel", f"{kformula}; applied to the last axis of the source-order tensor "
                     f"(num_leading_axes={axis})", f32(K))]
    if rank > 2:
        chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_src")
    if rank - axis > 1:
        chain.add("Reshape", {"target_shape": [int(d) for d in in_shape[1:axis]] + [feat]},
                  suffix="flatten")
    has_bias = bool(node.attrs.get("bias", True)) and node.p("bias") is not None
    weights = [K] + ([node.p("bias").reshape(-1)] if has_bias else [])
    main = chain.add("Dense", {"units": int(K.shape[1]), "use_bias": has_bias, "activation": "linear"},
                     weights=weights)
    out_rank = axis + 1
    if has_bias:
        rows.append(ParamRow("bias", "b", f32(node.p("bias"))))
    act = node.attrs.get("activation")
    if act and act.get("kind") == "softmax":
        return unsupported(node, ctx, "softmax on a dense layer with several leading axes")
    add_activation(chain, main, act, out_rank, rows)
    if out_rank > 2:
        chain.add("Permute", {"dims": list(to_keras_perm(out_rank))}, suffix="to_keras")
    return chain.finish(rows=rows, layout=keras_layout(out_rank))
