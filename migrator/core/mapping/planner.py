"""IR graph + overrides -> :class:`~migrator.core.mapping.plan.Plan`.

Walks the nodes in order, resolves each node's options (rule defaults, then overrides
for its kind, then overrides for the layer), and asks the node's rule for a
:class:`NodeMapping`.  Per-node problems are collected (``supported=False`` with the
reason) rather than aborting, so a user sees every unsupported layer at once.
"""
from __future__ import annotations

from ..errors import MigratorError
from ..ir import Graph
from .plan import NodeMapping, Plan
from .registry import RULES, MapContext


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


def _record_tensor_layers(m: NodeMapping, node, ctx: MapContext) -> None:
    """Remember which Keras layer produces each tensor; a node mapped only by aliases
    (Split, Identity, ...) gets the Keras layer of its aliased tensor as keras_output."""
    for spec in m.layers:
        ctx.tensor_layer[spec.output] = spec.name
    for out, src in m.aliases.items():
        if src in ctx.tensor_layer:
            ctx.tensor_layer[out] = ctx.tensor_layer[src]
    if m.keras_output is None and m.supported and not m.fused_into and node.outputs:
        m.keras_output = ctx.tensor_layer.get(node.outputs[0])


def make_plan(graph: Graph, overrides=None) -> Plan:
    load_rules()
    if overrides is not None:
        overrides.check_against(graph)
    plan = Plan(graph=graph, overrides=overrides)
    ctx = MapContext(graph=graph, options={})
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
        _record_tensor_layers(m, node, ctx)
        plan.mappings.append(m)
    return plan
