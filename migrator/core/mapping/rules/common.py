"""What every mapping rule shares: the layer chain, shape look-ups, unsupported/alias mappings,
layout permutations, activations, and the two generic rule bases.

Each rule turns one IR node (NCHW semantics) into channels-last Keras layers
(:class:`KerasLayerSpec`, plain data) plus :class:`ParamRow` formulas.  Rules only use
built-in Keras layers where they are *exact*, and the few layers of
``migrator.core.keras_build.custom_layers`` (or plain expressions of
``migrator.core.keras_build.constructs``) otherwise.  Never ``padding='same'``: TF's
'same' is asymmetric, the sources pad symmetrically.

Conventions
* the main layer of a node is named after the node (``conv1``); helper layers get a
  suffix (``conv1_pad``, ``conv1_act``); intermediate tensor ids are ``<node>/<step>``;
* the node's ``keras_output`` is the LAST layer of its chain (its output equals the
  source node's output, in the channels-last layout ``layout``);
* nodes that are pure renames (Split, Identity, linear) are mapped by ``aliases`` only.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...ir import Graph, Node
from ...shapes import sample_axes
from ..plan import KerasLayerSpec, NodeMapping, ParamRow
from ..registry import RULES, MapContext, Rule, keras_layout, rank_of, to_keras_axis

F32 = np.float32


def input_shape(node: Node, ctx: MapContext, i: int = 0):
    """The (source-order) shape of the node's ``i``-th input tensor; None when unknown."""
    try:
        return ctx.graph.tensor_shape(node.inputs[i])
    except (KeyError, ValueError, IndexError):
        return None


def f32(a) -> np.ndarray:
    """``a`` as a contiguous float32 array (the dtype of every Keras weight)."""
    return np.ascontiguousarray(np.asarray(a, dtype=F32))


def rule_name(ctx: MapContext, node: Node) -> str:
    """``<framework>.<op>``: the rule name a mapping reports."""
    return f"{ctx.graph.framework}.{node.op}"


def node_mapping(node: Node, ctx: MapContext, **kw) -> NodeMapping:
    """A :class:`NodeMapping` of ``node`` (source, type and rule name filled in)."""
    return NodeMapping(source=node.name, source_type=node.source_type, rule=rule_name(ctx, node), **kw)


def unsupported(node: Node, ctx: MapContext, why: str, rows=None) -> NodeMapping:
    """The mapping of a node the rule cannot convert exactly: ``why`` is the error shown."""
    return node_mapping(node, ctx, supported=False, error=why, rows=list(rows or []), keras_output=None)


#: the note of a mapping whose Keras output does not have the batch on its first axis
WHOLE_NOTE = ("the batch axis is moved or mixed: the Keras tensor's first axis is not the batch "
              "(the comparison checks it as one whole tensor)")


def where_samples(ctx: MapContext, tensor: str) -> int | None:
    """The axis of ``tensor`` that holds the samples (0 but after a Lasagne dimshuffle/reshape
    that moved the batch; None when a reshape mixed it with other axes): ``sample_axes``."""
    return sample_axes(ctx.graph).get(tensor, 0)


def axis0_refusal(node: Node, ctx: MapContext, doing: str, tensor: str | None = None) -> NodeMapping:
    """The unsupported mapping of ``doing`` (e.g. 'slicing') along axis 0 of ``tensor`` (the first
    input): 'the batch axis' only when axis 0 holds the samples, else where they are."""
    s = where_samples(ctx, tensor if tensor is not None else node.inputs[0])
    if s == 0:
        return unsupported(node, ctx, f"{doing} the batch axis")
    where = (f"the samples are on axis {s} after a dimshuffle" if s is not None else
             "a reshape mixed the samples with other axes")
    return unsupported(node, ctx, f"{doing} axis 0 of a whole tensor ({where}; axis 0 is not the "
                                  "batch axis here) is not supported")


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
                              weights=None if weights is None else [f32(w) for w in weights])
        self.layers.append(spec)
        self.cur = [out]
        return spec

    def finish(self, **kw) -> NodeMapping:
        """Make the last layer produce the node's output tensor; return the mapping."""
        if self.layers:
            last = self.layers[-1]
            last.output = self.node.outputs[0]
            kw.setdefault("keras_output", last.name)
        return node_mapping(self.node, self.ctx, layers=self.layers, **kw)


def alias_mapping(node, ctx, note: str, rows=None) -> NodeMapping:
    """A mapping without a Keras layer: every output of ``node`` is its first input."""
    m = node_mapping(node, ctx, aliases={t: node.inputs[0] for t in node.outputs}, rows=list(rows or []),
                     notes=[note])
    m.layout = keras_layout(rank_of(input_shape(node, ctx)))
    return m


def known_shape(shape) -> bool:
    """True when every axis but the batch axis has a known size."""
    return shape is not None and all(d is not None for d in shape[1:])


def chain_to_source(chain: Chain, rank: int) -> None:
    """Append a ``Permute`` taking the channels-last tensor to the source (channels-first) order."""
    if rank > 2:
        chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_src")


def chain_to_keras(chain: Chain, rank: int) -> None:
    """Append a ``Permute`` taking a source-order tensor back to channels-last."""
    if rank > 2:
        chain.add("Permute", {"dims": list(to_keras_perm(rank))}, suffix="to_keras")


def mapping_from_layers(node, ctx, layers, rows, layout) -> NodeMapping:
    """The mapping of ``node`` computed by ``layers`` (the last one produces its output)."""
    layers[-1].output = node.outputs[0]
    return node_mapping(node, ctx, layers=layers, rows=rows, keras_output=layers[-1].name, layout=layout)


#: activation kinds that are a Keras ``activation=`` string as they are
INLINE_ACTIVATIONS = {"sigmoid": "sigmoid", "tanh": "tanh", "softplus": "softplus", "linear": "linear",
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
    return INLINE_ACTIVATIONS.get(kind)


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
        name = INLINE_ACTIVATIONS[kind]
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


def act_weights(cls: str, cfg: dict, act: dict, rank: int):
    """The weights of the layer :func:`activation_layer` chose (a fixed PReLU's slope), or None."""
    if cls == "PReLU":   # fixed negative slope
        return [np.full((1,) * (rank - 1), float(act.get("negative_slope", 0.0)), dtype=F32)]
    return None


def describe_act(act: dict | None) -> str:
    """An activation dict as text for a row's sources (``relu(negative_slope=0.1)``)."""
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
                             sources={"nonlinearity": describe_act(act)}))
        return
    add_activation_layer(chain, act, rank, rows)


def add_activation_layer(chain: Chain, act: dict | None, rank: int, rows: list[ParamRow]) -> None:
    """Append a separate layer computing the folded activation ``act`` (nothing for linear)."""
    if not act or act.get("kind") == "linear":
        return
    cls, cfg, formula = activation_layer(act, rank)
    chain.add(cls, cfg, suffix="act", weights=act_weights(cls, cfg, act, rank))
    rows.append(ParamRow("activation", f"separate {cls} layer: {formula}", cls,
                         sources={"nonlinearity": describe_act(act)}))


class OneDRule(Rule):
    """A 1-D layer on ``(N, C, L)`` mapped by the 2-D rule of ``two_d`` over ``(N, C, 1, L)``
    (Lasagne Conv1DLayer / Pool1DLayer): Reshape before and after."""

    two_d = ""

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        out_shape = node.out_shape
        if in_shape is None or len(in_shape) != 3 or in_shape[1] is None:
            return unsupported(node, ctx, f"1-D layer on an input of shape {in_shape}")
        N, C, L = in_shape
        chain = Chain(node, ctx)
        # Keras keeps (N, C, L) as (N, L, C): (N, 1, L, C) is the NHWC form of (N, C, 1, L)
        chain.add("Reshape", {"target_shape": [1, -1 if L is None else int(L), int(C)]},
                  suffix="to2d", inputs=[node.inputs[0]])
        t2d = chain.cur[0]
        inp = Node(name=t2d, op="Input", attrs={"shape": (N, C, 1, L)})
        inp.out_shapes = [(N, C, 1, L)]
        sub = Node(name=node.name, op=self.two_d, inputs=[t2d], attrs=dict(node.attrs),
                   params=node.params, provenance=node.provenance)
        sub.out_shapes = [None if out_shape is None else (out_shape[0], out_shape[1], 1, out_shape[2])]
        rule = RULES[self.two_d]
        sub_ctx = MapContext(graph=Graph(framework=ctx.graph.framework, nodes=[inp, sub]),
                             options={k: o.default for k, o in rule.options.items()},
                             keras_names=ctx.keras_names)
        m = rule.map(sub, sub_ctx)
        if not m.supported:
            return unsupported(node, ctx, m.error or "not supported", rows=m.rows)
        m.layers[-1].output = f"{node.name}/2d"
        chain.layers += m.layers
        chain.cur = [m.layers[-1].output]
        O = out_shape[1] if out_shape is not None and out_shape[1] is not None else None
        if O is None:
            return unsupported(node, ctx, "1-D layer with an unknown number of output channels")
        chain.add("Reshape", {"target_shape": [-1, int(O)]}, suffix="to1d")
        rows = [ParamRow("layout", f"(N, L, C) reshaped to (N, 1, L, C), the 2-D {self.two_d} rule "
                         "(exact: the (N, C, 1, L) form of the layer), reshaped back", self.two_d)]
        return chain.finish(rows=rows + list(m.rows), layout=keras_layout(3), notes=list(m.notes))


class SourceOpRule(Rule):
    """An op computed by the plain expression ``LasagneSourceOp`` (one input) or ``LasagneMergeOp``
    (several): keras.ops on the channels-first tensor with static shapes.  ``formula`` is the
    text of its row, formatted with the node's attributes."""

    formula: ClassVar[str] = ""

    def describe(self, node) -> str:
        """The formula row's text for ``node``."""
        return self.formula.format(**node.attrs)

    def map(self, node, ctx):
        shapes = [ctx.graph.tensor_shape(i) for i in node.inputs]
        if not all(known_shape(s) for s in shapes) or not known_shape(node.out_shape):
            return unsupported(node, ctx, f"{node.op} needs known input shapes")
        cfg = {"op": node.op}
        for k, v in node.attrs.items():
            cfg[k] = list(v) if isinstance(v, tuple) else v
        chain = Chain(node, ctx)
        chain.add("LasagneMergeOp" if len(node.inputs) > 1 else "LasagneSourceOp", cfg)
        rows = [ParamRow("op", self.describe(node) + " (keras.ops on the channels-first tensor)", node.op,
                         sources=dict(node.attrs))]
        return chain.finish(rows=rows, layout=keras_layout(len(node.out_shape)))
