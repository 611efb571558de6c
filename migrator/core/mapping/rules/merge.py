"""Mapping rules of the merge family: ``Eltwise``, ``Concat``, ``CropMerge``, ``Axpy``."""
from __future__ import annotations

from ..plan import ParamRow
from ..registry import Rule, keras_layout, rank_of, register, to_keras_axis
from .common import WHOLE_NOTE, Chain, SourceOpRule, alias_mapping, input_shape, unsupported, where_samples


@register("Eltwise")
class EltwiseRule(Rule):
    name = "Eltwise"
    description = "Add / Multiply / Maximum; WeightedSum for sums with coefficients."

    def map(self, node, ctx):
        op = node.attrs.get("operation", "sum")
        coeffs = node.attrs.get("coeffs")
        n = len(node.inputs)
        rank = rank_of(input_shape(node, ctx))
        chain = Chain(node, ctx)
        if coeffs is not None and len(coeffs) not in (1, n):
            return unsupported(node, ctx, f"{len(coeffs)} coefficients for {n} inputs")
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
                return unsupported(node, ctx, f"coefficients are only allowed for sum, not {op}")
            if n == 1:
                return alias_mapping(node, ctx, f"{op} of one input: identity")
            cls = "Multiply" if op == "prod" else "Maximum"
            chain.add(cls, {})
            rows = [ParamRow("operation", op, cls)]
        else:
            return unsupported(node, ctx, f"unknown eltwise operation {op!r}")
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("Concat")
class ConcatRule(Rule):
    name = "Concat"
    description = ("Concatenate on the channels-last axis of the source axis; along axis 0 of "
                   "whole tensors (the batch moved off axis 0), keras.ops.concatenate.")

    def map(self, node, ctx):
        rank = rank_of(input_shape(node, ctx))
        axis = int(node.attrs.get("axis", 1))
        kax = to_keras_axis(axis, rank)
        if kax == 0:
            held = [where_samples(ctx, t) for t in node.inputs]
            if all(s == 0 for s in held):
                return unsupported(node, ctx, "concatenation along the batch axis")
            if len(node.inputs) == 1:
                return alias_mapping(node, ctx, "concatenation of one input: identity")
            # axis 0 is not the batch of (some of) the inputs: the whole tensors, one after the other
            chain = Chain(node, ctx)
            chain.add("LasagneMergeOp", {"op": "Concat", "axis": 0})
            rows = [ParamRow("axis", "concatenation along axis 0 of the whole tensors (axis 0 is not "
                             "the batch axis here): keras.ops.concatenate(xs, axis=0), exact; the "
                             "output's first axis is not the batch", 0, sources={"axis": axis})]
            return chain.finish(rows=rows, layout=keras_layout(rank), notes=[WHOLE_NOTE])
        if len(node.inputs) == 1:
            return alias_mapping(node, ctx, "concatenation of one input: identity")
        chain = Chain(node, ctx)
        chain.add("Concatenate", {"axis": kax})
        rows = [ParamRow("axis", "source axis -> channels-last axis", kax, sources={"axis": axis})]
        return chain.finish(rows=rows, layout=keras_layout(rank))


@register("CropMerge")
class CropMergeRule(SourceOpRule):
    name = "CropMerge"
    description = ("Lasagne Concat/ElemwiseSum/ElemwiseMerge with autocrop (or T.minimum / T.sub): "
                   "keras.ops slicing + merge (plain LasagneMergeOp).")

    def describe(self, node) -> str:
        a = node.attrs
        return (f"{a['kind']} of the inputs cropped with {a.get('cropping')}"
                + (f" along source axis {a['axis']}" if a["kind"] == "concat" else ""))


@register("Axpy")
class AxpyRule(Rule):
    name = "Axpy"
    description = "Multiply (a broadcast over the spatial axes) then Add: a * x + y."

    def map(self, node, ctx):
        a_shape, x_shape = input_shape(node, ctx, 0), input_shape(node, ctx, 1)
        if a_shape is None or x_shape is None:
            return unsupported(node, ctx, "Axpy needs the shapes of a and x")
        rank = rank_of(x_shape)
        a, x, y = node.inputs
        chain = Chain(node, ctx)
        if len(a_shape) != rank:   # a (N, C): the channels-last (N, 1, ..., 1, C) Multiply broadcasts
            chain.add("Reshape", {"target_shape": [1] * (rank - 2) + [a_shape[1]]}, suffix="a",
                      inputs=[a])
            a = chain.cur[0]
        chain.add("Multiply", {}, suffix="ax", inputs=[a, x])
        chain.add("Add", {}, inputs=[chain.cur[0], y])
        rows = [ParamRow("operation", "y_out = a * x + y (a broadcast over the spatial axes)",
                         "Multiply + Add")]
        return chain.finish(rows=rows, layout=keras_layout(rank))
