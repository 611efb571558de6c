"""Mapping rules of the layout family: ``Crop``, ``Flatten``, ``Reshape``, ``Split``, ``Pad``,
``Transpose``, ``Slice``, ``ShuffleChannel``, ``Tile``.

Shape ops permute the channels-last Keras tensor to the source (channels-first) order where
the source semantics depend on it, and back afterwards.
"""
from __future__ import annotations

import numpy as np

from ...shapes import crop_bounds, sample_axes
from ...shapes.registry import prod
from ..plan import KerasLayerSpec, ParamRow
from ..registry import Rule, keras_layout, rank_of, register, to_keras_axis
from .common import (
    F32,
    WHOLE_NOTE,
    Chain,
    alias_mapping,
    axis0_refusal,
    input_shape,
    known_shape,
    node_mapping,
    to_keras_perm,
    to_source_perm,
    unsupported,
)


@register("Crop")
class CropRule(Rule):
    name = "Crop"
    description = ("Cropping2D on H, W (+ SliceAxis on other axes) of the first input; the "
                   "second input only gives the shape (static, known at conversion).")

    def map(self, node, ctx):
        x, ref = input_shape(node, ctx, 0), input_shape(node, ctx, 1)
        if not known_shape(x) or not known_shape(ref):
            return unsupported(node, ctx, f"crop needs known input shapes (got {x} and {ref})")
        rank = len(x)
        axis = int(node.attrs.get("axis", 2))
        errs: list[str] = []

        def fail(m):
            errs.append(m)
            return ValueError(m)
        try:
            bounds = crop_bounds(x, ref, axis, node.attrs.get("offsets"), fail)
        except ValueError:
            return unsupported(node, ctx, errs[0] if errs else "invalid crop")
        b0, e0 = bounds[0]
        if not (b0 == 0 and (e0 is None or x[0] is None or e0 == x[0])):
            return axis0_refusal(node, ctx, "cropping")
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




def _spec_target(in_shape, spec) -> list[int] | None:
    """The whole-tensor target of a reshape spec replacing every axis (Caffe semantics: 0 copies
    the input size at that position, -1 is inferred): the spec's own ``-1`` kept, so that the
    size that depends on the batch follows the batch (not the one the shapes were inferred
    with); None when it would need more than one ``-1``."""
    out = []
    for j, d in enumerate(int(v) for v in spec):
        if d == 0:
            if j >= len(in_shape):
                return None
            out.append(-1 if in_shape[j] is None else int(in_shape[j]))
        else:
            out.append(d)
    return out if out.count(-1) <= 1 else None


def _whole_reshape(node, ctx, out_shape, what: str, sources: dict, target: list[int] | None = None):
    """A reshape that mixes or moves the batch axis, on the whole tensor (keras.ops on the
    channels-first tensor, ``LasagneSourceOp`` 'Reshape'): the source-order ``target`` (default:
    the output shape) with ``-1`` for the one size that depends on the batch.  Unsupported when
    more than one output size is unknown (the reshape cannot be written with a single ``-1``)."""
    if out_shape is None:
        return unsupported(node, ctx, f"{what} with an unknown output shape (run shape inference)")
    if target is None or len(target) != len(out_shape):
        unknown = [i for i, d in enumerate(out_shape) if d is None]
        if len(unknown) > 1:
            return unsupported(node, ctx, f"{what} to {tuple(out_shape)} mixes the batch axis with "
                                          "other axes and has more than one unknown size: it cannot be "
                                          "written as one reshape of the whole tensor (give --input-shape)")
        target = [-1 if d is None else int(d) for d in out_shape]
    chain = Chain(node, ctx)
    chain.add("LasagneSourceOp", {"op": "Reshape", "shape": target})
    rows = [ParamRow("shape", f"{what} of the whole tensor (the batch axis included) to "
                     f"{tuple(target)} in the source (channels-first) order, then channels-last "
                     "again (keras.ops.reshape, exact); the output's first axis is not the batch",
                     tuple(target), sources=sources)]
    return chain.finish(rows=rows, layout=keras_layout(len(out_shape)),
                        notes=[WHOLE_NOTE])


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
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        axis = int(node.attrs.get("axis", 1))
        end = int(node.attrs.get("end_axis", -1))
        axis = axis + rank if axis < 0 else axis
        end = end + rank if end < 0 else end
        rows: list[ParamRow] = []
        if axis == 0 and end > 0:
            rest = list(in_shape[end + 1:]) if in_shape is not None else [None]
            return _whole_reshape(node, ctx, node.out_shape, "flatten from the batch axis",
                                  {"axis": axis, "end_axis": end},
                                  None if None in rest else [-1] + [int(d) for d in rest])
        if end <= axis or (rank <= 2 and end == rank - 1):
            return alias_mapping(node, ctx, "flatten of nothing: identity")
        chain = Chain(node, ctx)
        if axis == 1 and end == rank - 1:
            chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_chw")
            chain.add("Flatten", {})
            rows.append(ParamRow("order", f"Permute({to_source_perm(rank)}) then Flatten: features in "
                                 "the source (C, H, W) order", "(C, H, W)"))
            return chain.finish(rows=rows, layout="NC")
        out_shape = node.out_shape
        if not known_shape(out_shape):
            return unsupported(node, ctx, "flatten with unknown output shape")
        _reshape_via_source(chain, rank, out_shape, rows, "Reshape")
        return chain.finish(rows=rows, layout=keras_layout(len(out_shape)))


@register("Reshape")
class ReshapeRule(Rule):
    name = "Reshape"
    description = "Permute to source order, Reshape, Permute back to channels-last."

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        out_shape = node.out_shape
        rank = rank_of(in_shape)
        if out_shape is None:
            return unsupported(node, ctx, "reshape with unknown output shape (run shape inference)")
        rest_in = None if in_shape is None else prod(in_shape[1:])
        keeps_first = in_shape is not None and out_shape[0] == in_shape[0] and (
            rest_in is None or rest_in == prod(out_shape[1:]))
        if keeps_first and not known_shape(out_shape):
            axes = sample_axes(ctx.graph)
            if axes.get(node.inputs[0]) == 0 and axes.get(node.outputs[0]) == 0:
                return unsupported(node, ctx, "reshape with unknown output shape (run shape inference)")
        if not keeps_first or not known_shape(out_shape):
            # the reshape moves the batch axis or mixes it with others: on the whole tensor
            a = node.attrs
            spec = list(a.get("shape", []))
            target = (_spec_target(in_shape, spec) if in_shape is not None and int(a.get("axis", 0)) == 0
                      and int(a.get("num_axes", -1)) == -1 else None)
            return _whole_reshape(node, ctx, out_shape, "reshape", {"shape": spec}, target)
        chain = Chain(node, ctx)
        rows = [ParamRow("shape", "source reshape spec", tuple(out_shape),
                         sources={"shape": node.attrs.get("shape")})]
        _reshape_via_source(chain, rank, out_shape, rows, "Reshape")
        return chain.finish(rows=rows, layout=keras_layout(len(out_shape)))


@register("Split")
class SplitRule(Rule):
    name = "Split"
    description = "No Keras layer: every output is the input."

    def map(self, node, ctx):
        return alias_mapping(node, ctx, f"split into {node.num_outputs} copies: no Keras layer")


#: the built-in zero padding of the spatial axes of a rank-3/4/5 tensor
_ZERO_PADDING = {3: "ZeroPadding1D", 4: "ZeroPadding2D", 5: "ZeroPadding3D"}


@register("Pad")
class PadRule(Rule):
    name = "Pad"
    description = ("ZeroPadding1D/2D/3D when only spatial axes get zeros, ConstantPadding2D(value) "
                   "on (H, W), else keras.ops.pad on the whole channels-first tensor (any rank, any "
                   "batch_ndim, any value).")

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        a = node.attrs
        bnd = int(a.get("batch_ndim", 2))
        pads = [tuple(int(v) for v in (p if isinstance(p, (list, tuple)) else (p, p))) for p in a["pad"]]
        value = float(a.get("value", 0.0) or 0.0)
        if in_shape is None or bnd < 0 or bnd + len(pads) > rank:
            return unsupported(node, ctx, f"{len(pads)} pad widths after {bnd} leading axes do not fit "
                                          f"a rank-{rank} input")
        width = [(0, 0)] * bnd + pads + [(0, 0)] * (rank - bnd - len(pads))   # source order
        padded = [i for i, w in enumerate(width) if w != (0, 0)]
        rows = [ParamRow("padding", f"pad source axes {padded} by {[width[i] for i in padded]} with "
                         f"{value!r} (axes before batch_ndim={bnd} untouched)", width,
                         sources={"pad": a["pad"], "value": value, "batch_ndim": bnd})]
        if not padded:
            return alias_mapping(node, ctx, "nothing to pad: identity", rows=rows)
        chain = Chain(node, ctx)
        spatial = all(i >= 2 for i in padded)
        if spatial and rank == 4:
            cfg = {"padding": [list(width[2]), list(width[3])]}
            if value == 0.0:
                chain.add("ZeroPadding2D", cfg)
            else:
                chain.add("ConstantPadding2D", {**cfg, "value": value})
        elif spatial and value == 0.0 and rank in _ZERO_PADDING:
            sp = [list(w) for w in width[2:]]
            chain.add(_ZERO_PADDING[rank], {"padding": sp[0] if rank == 3 else sp})
        else:
            chain.add("LasagneSourceOp", {"op": "Pad", "pad_width": [list(w) for w in width],
                                          "value": value})
            rows.append(ParamRow("implementation", "keras.ops.pad(x, pad_width, constant_values="
                                 "value) on the channels-first tensor (exact)", "ops.pad"))
        kw = {}
        if 0 in padded:
            kw["notes"] = [WHOLE_NOTE]
        return chain.finish(rows=rows, layout=keras_layout(rank), **kw)


@register("Transpose")
class TransposeRule(Rule):
    name = "Transpose"
    description = "Lasagne DimshuffleLayer: Permute to source order, Permute/Reshape, Permute back."

    def map(self, node, ctx):
        pattern = list(node.attrs.get("pattern", ()))
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        if not pattern:
            return unsupported(node, ctx, "empty dimshuffle pattern")
        kept = [p for p in pattern if p != "x"]
        if len(set(kept)) != len(kept) or any(not isinstance(p, int) or p < 0 or p >= rank for p in kept):
            return unsupported(node, ctx, f"invalid dimshuffle pattern {pattern}")
        dropped = [d for d in range(rank) if d not in kept]
        if dropped and (in_shape is None or any(in_shape[d] != 1 for d in dropped)):
            return unsupported(node, ctx, f"dimshuffle drops non-broadcastable axes {dropped}")
        out_rank = len(pattern)
        if pattern[0] != 0:
            # the batch axis moves: keras.ops on the whole channels-first tensor
            chain = Chain(node, ctx)
            chain.add("LasagneSourceOp", {"op": "Dimshuffle", "pattern": pattern})
            rows = [ParamRow("pattern", "x.dimshuffle(pattern) on the whole tensor (the batch axis "
                             "included) in the source (channels-first) order, then channels-last "
                             "again (keras.ops transpose / squeeze / expand_dims, exact); the "
                             "output's first axis is not the batch", tuple(pattern),
                             sources={"pattern": tuple(pattern)})]
            return chain.finish(rows=rows, layout=keras_layout(out_rank),
                                notes=[WHOLE_NOTE])
        if (in_shape is None or any(d is None for d in in_shape[1:])) and (dropped or "x" in pattern):
                return unsupported(node, ctx, "dimshuffle with 'x' on an input of unknown shape")
        perm = kept[1:] + dropped
        if perm == list(range(1, rank)) and not dropped and "x" not in pattern:
            return alias_mapping(node, ctx, "identity dimshuffle: no Keras layer")
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
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        a = node.attrs
        axis = int(a.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        kax = to_keras_axis(axis, rank)
        if axis == 0:
            return axis0_refusal(node, ctx, "slicing")
        points = a.get("slice_points")
        if points is not None or node.num_outputs > 1:
            return self._multi(node, ctx, in_shape, axis, kax, points)
        chain = Chain(node, ctx)
        if a.get("index") is not None:
            idx = int(a["index"])
            out_shape = node.out_shape
            if not known_shape(out_shape):
                return unsupported(node, ctx, "indexing with an unknown output shape")
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
                return unsupported(node, ctx, f"{len(points)} slice points for {n} outputs")
        else:
            if L is None or L % n:
                return unsupported(node, ctx, f"axis of size {L} cannot be split into {n} equal parts")
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
        return node_mapping(node, ctx, layers=layers, rows=rows, keras_output=layers[0].name,
                        layout=keras_layout(rank), notes=[note])


@register("ShuffleChannel")
class ShuffleChannelRule(Rule):
    name = "ShuffleChannel"
    description = ("Reshape (H, W, g, C/g) -> Permute -> Reshape (H, W, C); with an open spatial "
                   "size a bias-free Dense holding the 0/1 permutation.")

    def map(self, node, ctx):
        x = input_shape(node, ctx)
        rank = rank_of(x)
        g = int(node.attrs.get("group", 1))
        if x is None or x[1] is None:
            return unsupported(node, ctx, "ShuffleChannel needs a known channel count")
        C = int(x[1])
        if C % g:
            return unsupported(node, ctx, f"{C} channels cannot be split into {g} groups")
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


@register("Tile")
class TileRule(Rule):
    name = "Tile"
    description = "Caffe Tile: Concatenate of the input with itself along the axis."

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        axis = int(node.attrs.get("axis", 1))
        tiles = int(node.attrs["tiles"])
        kax = to_keras_axis(axis, rank)
        if kax == 0:
            return axis0_refusal(node, ctx, "tiling")
        if tiles == 1:
            return alias_mapping(node, ctx, "one tile: identity")
        chain = Chain(node, ctx)
        chain.add("Concatenate", {"axis": kax}, inputs=[node.inputs[0]] * tiles)
        rows = [ParamRow("axis", f"source axis {axis} -> Keras axis {kax}, {tiles} copies", kax,
                         sources={"axis": axis, "tiles": tiles})]
        return chain.finish(rows=rows, layout=keras_layout(rank))
