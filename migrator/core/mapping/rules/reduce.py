"""Mapping rules of the reduce family: ``Reduction``, ``ArgMax``, ``LasagneReduce``.

* Reduction: the reduced axes flattened in source order, Dense(1) with a constant kernel
  (abs = relu(x) + relu(-x), square = Multiply(x, x));
* ArgMax: the plain expression ``CaffeArgMax`` on the source-order tensor;
* LasagneReduce: the plain expression ``LasagneSourceOp``.
"""
from __future__ import annotations

import numpy as np

from ..plan import ParamRow
from ..registry import Rule, keras_layout, register
from .common import (
    F32,
    Chain,
    SourceOpRule,
    chain_to_keras,
    chain_to_source,
    input_shape,
    known_shape,
    unsupported,
)


@register("Reduction")
class ReductionRule(Rule):
    name = "Reduction"
    description = "Caffe Reduction: axes >= axis flattened in source order, Dense(1) with a constant kernel."

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        a = node.attrs
        op = a.get("operation", "sum")
        if not known_shape(in_shape):
            return unsupported(node, ctx, "reduction needs a known input shape")
        rank = len(in_shape)
        axis = int(a.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            return unsupported(node, ctx, "reduction over the batch axis (axis 0) gives one value "
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
            return unsupported(node, ctx, f"unknown reduction operation {op!r}")
        chain_to_source(chain, rank)
        chain.add("Reshape", {"target_shape": [int(d) for d in in_shape[1:axis]] + [K]}, suffix="flat")
        chain.add("Dense", {"units": 1, "use_bias": False}, suffix="sum",
                  weights=[np.full((K, 1), w, F32)])
        out_rank = axis
        chain.add("Reshape", {"target_shape": [int(d) for d in in_shape[1:axis]]},
                  suffix=None if out_rank <= 2 else "out")
        chain_to_keras(chain, out_rank)
        rows.append(ParamRow("kernel", f"Dense(1) over the {K} values of axes {axis}.. (source order), "
                             f"kernel = {'coeff / count' if op == 'mean' else 'coeff'}", w,
                             sources={"operation": op, "coeff": coeff, "axis": axis}))
        return chain.finish(rows=rows, layout=keras_layout(out_rank))


_TIES = "ties: Caffe returns the larger index first, TensorFlow's top_k the smaller"


@register("ArgMax")
class ArgMaxRule(Rule):
    name = "ArgMax"
    description = "Caffe ArgMax: keras.ops top_k on the source-order tensor (plain expression CaffeArgMax)."

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        out_shape = node.out_shape
        if not known_shape(in_shape) or not known_shape(out_shape):
            return unsupported(node, ctx, "ArgMax needs known shapes")
        rank, out_rank = len(in_shape), len(out_shape)
        a = node.attrs
        axis = a.get("axis")
        if axis is not None:
            axis = int(axis) + rank if int(axis) < 0 else int(axis)
            if axis == 0:
                return unsupported(node, ctx, "ArgMax over the batch axis")
        chain = Chain(node, ctx)
        chain_to_source(chain, rank)
        chain.add("CaffeArgMax", {"top_k": int(a.get("top_k", 1)), "axis": axis,
                                  "out_max_val": bool(a.get("out_max_val", False))},
                  suffix=None if out_rank <= 2 else "argmax")
        chain_to_keras(chain, out_rank)
        rows = [ParamRow("top_k", f"top {a.get('top_k', 1)} {'values' if a.get('out_max_val') else 'indices'}"
                         + (f" along source axis {axis}" if axis is not None else
                            " per sample over the flattened C*H*W"), int(a.get("top_k", 1)),
                         sources=dict(a), caveats=[_TIES])]
        return chain.finish(rows=rows, layout=keras_layout(out_rank))


@register("LasagneReduce")
class LasagneReduceRule(SourceOpRule):
    name = "LasagneReduce"
    description = "Lasagne GlobalPoolLayer with any pool function: keras.ops reduction (plain LasagneSourceOp)."
    formula = "{mode} over source axes {axes}"
