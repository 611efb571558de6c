"""Mapping rules of the embedding family: Lasagne ``Embedding`` and Caffe ``Embed``
(``keras.layers.Embedding``; Caffe's bias as an identity Dense)."""
from __future__ import annotations

import numpy as np

from ..plan import ParamRow
from ..registry import SEQUENCE_LAYOUT, Rule, keras_layout, rank_of, register
from .common import F32, Chain, chain_to_keras, chain_to_source, f32, input_shape, unsupported


@register("Embedding")
class EmbeddingRule(Rule):
    name = "Embedding"
    description = "keras.layers.Embedding (weights W as stored); a (N, T) input gives the " \
                  "sequence (N, T, E) in Keras's (and Lasagne's) order."
    sequence_aware = True

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        W = node.p("weight")
        if W is None or W.ndim != 2:
            return unsupported(node, ctx, "embedding weight must be 2-D")
        if in_shape is None or len(in_shape) > 2:
            return unsupported(node, ctx, f"embedding of an input of shape {in_shape} (only (N,) "
                                          "or (N, T) is supported)")
        chain = Chain(node, ctx)
        chain.add("Embedding", {"input_dim": int(W.shape[0]), "output_dim": int(W.shape[1])},
                  weights=[W])
        rows = [ParamRow("embeddings", "W (input_size, output_size) as stored; y = W[int(x)]",
                         f32(W), sources={"W": W})]
        if len(in_shape) == 2:
            rows.append(ParamRow("layout", "sequence (N, T, E): Keras order = Lasagne's", SEQUENCE_LAYOUT))
            return chain.finish(rows=rows, layout=SEQUENCE_LAYOUT)
        return chain.finish(rows=rows, layout="NC")


@register("Embed")
class EmbedRule(Rule):
    name = "Embed"
    description = "Caffe Embed: keras Embedding (indices cast to int), identity Dense for the bias."

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        W = node.p("weight")
        if W is None:
            return unsupported(node, ctx, "Embed without weights")
        K, N = (int(d) for d in W.shape)
        chain = Chain(node, ctx)
        chain_to_source(chain, rank)
        chain.add("Embedding", {"input_dim": K, "output_dim": N}, suffix="embed", weights=[W])
        rows = [ParamRow("embeddings", "blob0 (input_dim, num_output)", f32(W), sources={"W": W})]
        b = node.p("bias")
        if b is not None and node.attrs.get("bias", True):
            chain.add("Dense", {"units": N, "use_bias": True}, suffix="bias",
                      weights=[np.eye(N, dtype=F32), b.reshape(-1)])
            rows.append(ParamRow("bias", "identity kernel + blob1 (exact)", f32(b), sources={"b": b}))
        chain_to_keras(chain, rank + 1)
        return chain.finish(rows=rows, layout=keras_layout(rank + 1))
