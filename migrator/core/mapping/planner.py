"""IR graph + overrides -> :class:`~migrator.core.mapping.plan.Plan`.

Walks the nodes in order, resolves each node's options (rule defaults, then overrides
for its kind, then overrides for the layer), and asks the node's rule for a
:class:`NodeMapping`.  Per-node problems are collected (``supported=False`` with the
reason) rather than aborting, so a user sees every unsupported layer at once.
"""
from __future__ import annotations

from ..errors import MigratorError
from ..ir import Graph
from .plan import KerasLayerSpec, NodeMapping, Plan
from .registry import RULES, SEQUENCE_LAYOUT, MapContext, is_source_order


def load_rules() -> None:
    """Register every mapping rule in :data:`.registry.RULES` (importing the rules package
    does it; calling again costs nothing)."""
    from . import rules  # noqa: F401


#: the former private name, until document.py and overrides.py import :func:`load_rules`
_load_rules = load_rules


def resolve_options(node, rule, overrides) -> tuple[dict, set]:
    opts = {k: o.default for k, o in rule.options.items()}
    overridden: set[str] = set()
    if overrides is not None:
        vals = overrides.for_node(node.name, node.op, node.source_type)
        for k, v in vals.items():
            if k not in rule.options:
                raise MigratorError(f"unknown override key '{k}' for a {node.op} layer "
                                    f"(known: {', '.join(sorted(rule.options)) or 'none'})",
                                    layer=node.name, key=k)
            opts[k] = rule.options[k].validate(k, v)
            overridden.add(k)
    return opts, overridden


def _is_swap(spec: KerasLayerSpec) -> bool:
    """A rank-3 ``Permute((2, 1))``: source order <-> channels-last for (N, A, B)."""
    return spec.class_name == "Permute" and list(spec.config.get("dims") or []) == [2, 1]


#: ops whose rank-3 output keeps the meaning of a rank-3 sequence input (time on axis 1)
_SEQUENCE_KEEPING = frozenset({"Dense", "Activation", "Dropout", "Identity", "Eltwise", "PReLU",
                               "Power", "Exp", "Log", "Threshold", "Clip", "Swish", "Softmax"})


#: ops computed element by element (no axis, no per-channel parameter)
_ELEMENTWISE = frozenset({"Dropout", "Identity", "Exp", "Log", "Power", "Threshold", "Clip", "Swish"})


def is_elementwise(node) -> bool:
    """True when ``node`` computes each output element from the same element of its inputs
    (so it works on a tensor in any axis order): activations other than softmax, dropout,
    eltwise merges of same-shape inputs, ..."""
    if node.op in _ELEMENTWISE:
        return True
    if node.op == "Activation":
        return (node.attrs.get("kind") or "linear") != "softmax"
    if node.op == "Eltwise":
        return not node.attrs.get("coeff_blob")
    return False


def adapt_sequence_inputs(m: NodeMapping, node, rule, ctx: MapContext) -> None:
    """Sequences ((N, T, F), layout :data:`SEQUENCE_LAYOUT`) stay in the source order on the Keras
    side, while most rules assume Migrator's channels-last form of a rank-3 tensor ((N, F, T)).
    For a rule that is not ``sequence_aware``: a rule's own ``Permute((2, 1))`` to the source
    order on such an input is dropped (the tensor already is in that order); otherwise a
    ``Permute((2, 1))`` to channels-last is put before the rule's layers.  When the rule ends
    by permuting a source-order result back to channels-last (Dense over time steps, ...), that
    last Permute is dropped and the output stays a sequence."""
    if rule.sequence_aware or not m.supported or not m.layers:
        return
    seq_in = [t for t in dict.fromkeys(node.inputs) if is_source_order(ctx.layout_of(t))]
    if not seq_in:
        return
    if is_elementwise(node) and len(seq_in) == len(set(node.inputs)) \
            and len({ctx.layout_of(t) for t in seq_in}) == 1:
        m.layout = ctx.layout_of(seq_in[0])     # element by element: any axis order will do
        return
    for t in seq_in:
        users = [s for s in m.layers if t in s.inputs]
        if users and all(_is_swap(s) and s is not m.layers[-1] for s in users):
            for u in users:
                for s in m.layers:
                    s.inputs = [t if i == u.output else i for i in s.inputs]
                m.layers.remove(u)
            continue
        spec = KerasLayerSpec(name=ctx.unique_name(f"{node.name}_seq_to_ch_last"), class_name="Permute",
                              config={"dims": [2, 1]}, inputs=[t], output=f"{node.name}/seq_to_ch_last/{t}")
        for s in m.layers:
            s.inputs = [spec.output if i == t else i for i in s.inputs]
        m.layers.insert(0, spec)
        m.notes.append("its sequence input (N, T, F) is permuted to (N, F, T) for this rule")
    last = m.layers[-1]
    if node.op in _SEQUENCE_KEEPING and len(m.layers) >= 2 and _is_swap(last) and len(node.outputs) == 1:
        prev = next((s for s in m.layers[:-1] if s.output == last.inputs[0]), None)
        used = sum(last.inputs[0] in s.inputs for s in m.layers)
        if prev is not None and used == 1:
            prev.output = last.output
            m.layers.pop()
            m.keras_output = prev.name if m.keras_output == last.name else m.keras_output
            m.layout = ctx.layout_of(seq_in[0]) or SEQUENCE_LAYOUT


def _record_tensor_layers(m: NodeMapping, node, ctx: MapContext) -> None:
    """Remember which Keras layer produces each tensor (and its layout); a node mapped only by
    aliases (Split, Identity, ...) gets the Keras layer and layout of its aliased tensor."""
    for spec in m.layers:
        ctx.tensor_layer[spec.output] = spec.name
    for out in node.outputs:
        ctx.tensor_layout[out] = m.layout
        if m.layout == SEQUENCE_LAYOUT and any(t in ctx.open_time for t in node.inputs):
            ctx.open_time.add(out)
    for out, src in m.aliases.items():
        if src in ctx.open_time:
            ctx.open_time.add(out)
        if src in ctx.tensor_layer:
            ctx.tensor_layer[out] = ctx.tensor_layer[src]
        if src in ctx.tensor_layout:
            ctx.tensor_layout[out] = ctx.tensor_layout[src]
            if not m.layers:
                m.layout = ctx.tensor_layout[src]
    if m.keras_output is None and m.supported and not m.fused_into and node.outputs:
        m.keras_output = ctx.tensor_layer.get(node.outputs[0])


def make_plan(graph: Graph, overrides=None) -> Plan:
    load_rules()
    if overrides is not None:
        overrides.check_against(graph)
    plan = Plan(graph=graph, overrides=overrides)
    ctx = MapContext(graph=graph, options={}, overrides=overrides)
    fused_holder: dict[str, str] = {}   # host node -> node whose output its Keras layer gives
    for node in graph.nodes:
        if node.name in ctx.absorbed:
            into = ctx.absorbed[node.name]
            host = plan.mapping(into)
            # a chain (BN + Scale + Bias) may be absorbed: the Keras output moves from the
            # previous holder (host or an earlier absorbed node) to this node
            holder = plan.mapping(fused_holder.get(into, into))
            m = NodeMapping(source=node.name, source_type=node.source_type, rule=host.rule,
                            keras_output=holder.keras_output, layout=host.layout,
                            rows=ctx.extra_rows.get(node.name, []),
                            notes=[f"computed by the Keras layer of '{into}' (fused)"])
            # the host's Keras layer outputs *this* node's value (e.g. BN+Scale fused: the
            # Scale node's output); the host itself then has no Keras output of its own.
            host.fused_into = node.name
            holder.fused_into = node.name
            holder.keras_output = None
            fused_holder[into] = node.name
            for out in node.outputs:
                ctx.tensor_layout[out] = m.layout
            plan.mappings.append(m)
            continue
        rule = RULES.get(node.op)
        if rule is None or node.op == "Custom":
            plan.mappings.append(NodeMapping(
                source=node.name, source_type=node.source_type, rule="unsupported",
                supported=False,
                error=(f"refused: {node.attrs['refused']}" if node.attrs.get("refused") else
                       f"unsupported layer type {node.source_type!r}")
                      + (f" (params: {', '.join(f'{k}{list(p.shape)}' for k, p in node.params.items())})"
                         if node.params else "")))
            continue
        opts, overridden = resolve_options(node, rule, overrides)
        ctx.options = opts
        try:
            m = rule.map(node, ctx)
        except MigratorError as e:
            if e.layer is None:
                e.layer = node.name
            raise
        m.options = dict(opts)
        for r in m.rows:
            if r.option and r.option in overridden:
                r.overridden = True
        adapt_sequence_inputs(m, node, rule, ctx)
        _record_tensor_layers(m, node, ctx)
        plan.mappings.append(m)
    plan.tensor_layouts = dict(ctx.tensor_layout)
    plan.open_time = set(ctx.open_time)
    return plan
