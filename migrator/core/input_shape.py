"""Input sizes given by the user (``--input-shape``) and open sizes kept in the Keras model.

Models may leave spatial sizes open (Lasagne ``InputLayer((None, 3, None, None))``), and
some layers need a known size to be converted (ceil-mode pooling, a Dense after a
Flatten, Interp, ...).  The user gives the size (``--input-shape 1,3,224,224``, or
``data=1,3,224,224`` per input; the mapping file's ``input_shapes``); the graph is then
planned and verified at that size, and the exported Keras model keeps ``None`` for every
dimension the source left open **when no layer's conversion depends on it** (checked by
planning the graph a second time with the open dimensions: same Keras layers, same
configurations and weights, nothing unsupported, no Dense on an open feature axis).

API for the CLI and the GUI:

* :func:`parse_input_shapes` -- ``['1,3,224,224']`` / ``['data=1,3,224,224']`` -> dict;
* :func:`open_inputs` -- the inputs whose declared shape has open (None) non-batch dims;
* :func:`input_shape_need` -- whether a graph needs a size before it can be converted
  (the layers that need it, and a suggestion when the parameters imply one);
* :func:`apply_input_shapes` -- set the sizes on the graph (records declared and given
  shapes in ``graph.meta['input_shapes']``);
* :func:`finish_plan` -- called by :func:`migrator.core.flow.plan_model`: opens the Keras Input
  dimensions where allowed and marks layers with unaccepted unknown source fields.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from .errors import MigratorError
from .importers.caffe.fields import unverified_layers
from .ir import Graph
from .mapping.planner import make_plan
from .mapping.registry import is_source_order

#: sizes tried first when looking for an input size the parameters imply
COMMON_SIZES = (224, 227, 299, 256, 231, 192, 160, 128, 112, 96, 64, 32, 28, 320, 331, 384,
                448, 512, 600)


# ------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------
def parse_input_shapes(specs, *, option: str = "--input-shape") -> dict[str, tuple[int, ...]]:
    """``['1,3,224,224']`` -> ``{'': (1, 3, 224, 224)}`` (the only input);
    ``['data=1,3,224,224', 'im_info=1,3']`` -> one entry per input name."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs or ():
        name, _, dims = str(spec).rpartition("=")
        name = name.strip()
        parts = re.split(r"\s*[,x×]\s*", dims.strip())
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise MigratorError(f"{option} expects positive integers such as 1,3,224,224 (or "
                                f"NAME=1,3,224,224), got {spec!r}")
        if name in out:
            raise MigratorError(f"{option} gives input {name or '(the only input)'} twice")
        out[name] = shape
    if "" in out and len(out) > 1:
        raise MigratorError(f"{option}: name every input (NAME=1,3,224,224) when giving several")
    return out


def format_shape(shape) -> str:
    """A shape as the options write it: 1,3,?,? (open dimensions as ?)."""
    return ",".join("?" if d is None else str(d) for d in shape)


# ------------------------------------------------------------------------------------
# queries
# ------------------------------------------------------------------------------------
def declared_shape(node) -> tuple:
    """The shape the source declared for an Input node (before any --input-shape)."""
    return tuple(node.attrs.get("declared_shape") or node.attrs.get("shape") or ())


def open_inputs(graph: Graph) -> list[str]:
    """Input nodes whose *current* shape leaves a non-batch dimension open."""
    return [n.name for n in graph.input_nodes
            if any(d is None or (isinstance(d, int) and d < 0)
                   for d in tuple(n.attrs.get("shape") or (None, None))[1:])]


def input_shape_need(graph: Graph, plan=None) -> dict[str, Any] | None:
    """None when every input size is known; else ``{'inputs': [names], 'layers': [(layer,
    why)], 'suggestion': {name: shape} | None, 'why_suggested': str | None}``.  ``layers``
    lists the layers that cannot be converted without a size (from ``plan`` when given)."""
    names = open_inputs(graph)
    if not names:
        return None
    layers = []
    if plan is not None:
        layers = [(m.source, m.error) for m in plan.unsupported
                  if m.error and ("size" in m.error or "unknown" in m.error)]
    sugg, why = suggest_input_shape(graph)
    return {"inputs": names, "layers": layers, "suggestion": sugg, "why_suggested": why}


def need_error(graph: Graph, need: dict[str, Any]) -> MigratorError:
    """The one-line error telling the user to give --input-shape (with a suggestion)."""
    name = need["inputs"][0]
    shape = graph.node(name).attrs.get("shape")
    several = len(graph.input_nodes) > 1
    if need.get("suggestion"):
        example = f"{name + '=' if several else ''}{format_shape(need['suggestion'][name])}"
        hint = f" ({need['why_suggested']})"
    else:
        letters = {2: "H", 3: "W"} if len(shape) == 4 else {len(shape) - 1: "L"}
        dims = ["1" if i == 0 and d is None else letters.get(i, "N") if d is None else str(d)
                for i, d in enumerate(shape)]
        example = f"{name + '=' if several else ''}{','.join(dims)}"
        hint = ""
    lay = need.get("layers") or []
    what = (f"layer '{lay[0][0]}' needs a known input size ({lay[0][1]})" if lay
            else "the comparison needs a known input size")
    return MigratorError(f"input '{name}' has open dimensions ({format_shape(shape)}) and {what}: give "
                         f"--input-shape {example}{hint}",
                         file=graph.files[0] if graph.files else None)


def _try_shapes(graph: Graph, shapes: dict[str, tuple]) -> bool:
    """Whether shape inference accepts these input shapes (the graph is left unchanged)."""
    saved = {n.name: (n.attrs.get("shape"), list(n.out_shapes)) for n in graph.input_nodes}
    outs = {n.name: list(n.out_shapes) for n in graph.nodes}
    try:
        for n in graph.input_nodes:
            if n.name in shapes:
                n.attrs["shape"] = tuple(shapes[n.name])
        graph.infer_shapes()
        return True
    except MigratorError:
        return False
    finally:
        for n in graph.input_nodes:
            n.attrs["shape"] = saved[n.name][0]
        for n in graph.nodes:
            n.out_shapes = outs[n.name]


def suggest_input_shape(graph: Graph, max_size: int = 2048) -> tuple[dict | None, str | None]:
    """A square spatial size the parameters imply (e.g. a Dense after a Flatten fixes H x W),
    or (None, None) when any size fits.  Only for one input with open H and W."""
    names = open_inputs(graph)
    if len(names) != 1:
        return None, None
    node = graph.node(names[0])
    shape = list(node.attrs.get("shape"))
    if len(shape) != 4 or shape[1] is None or shape[2] is not None or shape[3] is not None:
        return None, None

    def cand(s):
        return {node.name: (1, int(shape[1]), s, s)}
    # only a layer whose weights fix a size that depends on H x W implies one: a Dense (with
    # its weight) on an input whose features are open
    dense = None
    for n in graph.nodes:
        if n.op == "Dense" and n.p("weight") is not None and n.inputs:
            x = graph.tensor_shape(n.inputs[0])
            if x is None or any(d is None for d in x[int(n.attrs.get("axis", 1)):]):
                dense = n.name
                break
    if dense is None:
        return None, None
    for s in list(COMMON_SIZES) + [s for s in range(1, max_size + 1) if s not in COMMON_SIZES]:
        if _try_shapes(graph, cand(s)):
            return cand(s), f"the parameters imply it: the weights of '{dense}' fix the flattened size"
    return None, None


# ------------------------------------------------------------------------------------
# applying
# ------------------------------------------------------------------------------------
def apply_input_shapes(graph: Graph, shapes: dict[str, tuple[int, ...]] | None,
                       *, option: str = "--input-shape") -> None:
    """Set user-given input shapes (source layout, batch included) on the graph's Input
    nodes and re-run shape inference.  ``''`` names the only input.  The declared shape is
    kept in ``node.attrs['declared_shape']`` and both in ``graph.meta['input_shapes']``."""
    if not shapes:
        return
    ins = graph.input_nodes
    file = graph.files[0] if graph.files else None
    names = [n.name for n in ins]
    shapes = dict(shapes)
    if "" in shapes:
        if len(ins) != 1:
            raise MigratorError(f"the model has {len(ins)} inputs ({', '.join(names)}): give "
                                f"{option} NAME=1,3,H,W for each", file=file)
        shapes = {ins[0].name: shapes[""]}
    unknown = [k for k in shapes if k not in names]
    if unknown:
        raise MigratorError(f"{option} names input '{unknown[0]}', which the model does not have "
                            f"(inputs: {', '.join(names)})", file=file)
    record = {}
    for n in ins:
        if n.name not in shapes:
            continue
        decl = declared_shape(n)
        given = tuple(int(d) for d in shapes[n.name])
        if decl and len(decl) != len(given):
            raise MigratorError(f"{option} gives {len(given)} dimensions {format_shape(given)} but input "
                                f"'{n.name}' has {len(decl)} ({format_shape(decl)})", file=file, layer=n.name)
        for i, (d, g) in enumerate(zip(decl, given)):
            if i == 1 and d is not None and d != g:
                raise MigratorError(f"{option} gives {g} channels but input '{n.name}' declares "
                                    f"{d} ({format_shape(decl)})", file=file, layer=n.name)
        n.attrs["declared_shape"] = tuple(decl)
        n.attrs["shape"] = given
        record[n.name] = {"declared": [d for d in decl], "given": list(given)}
    graph.meta["input_shapes"] = record
    try:
        graph.infer_shapes(file)
    except MigratorError as e:
        raise MigratorError(f"with {option} {', '.join(f'{k}={format_shape(v)}' for k, v in shapes.items())}: "
                            f"{e.message}", file=e.file, layer=e.layer) from None


# ------------------------------------------------------------------------------------
# after planning
# ------------------------------------------------------------------------------------
def _spec_sig(spec) -> tuple:
    cfg = json.dumps(spec.config, sort_keys=True, default=str)
    ws = tuple((tuple(w.shape), np.asarray(w).tobytes()) for w in (spec.weights or []))
    return spec.class_name, cfg, ws, tuple(spec.inputs), spec.output


def open_size_check(graph: Graph, plan, overrides=None) -> list[str]:
    """Reasons the exported model cannot keep the source's open input dimensions ([] when
    it can).  Plans the graph once more with the declared (open) input shapes."""
    opened = {n.name: declared_shape(n) for n in graph.input_nodes
              if "declared_shape" in n.attrs and declared_shape(n) != tuple(n.attrs["shape"])
              and any(d is None for d in declared_shape(n)[1:])}
    if not opened:
        return ["no input was declared with open dimensions"]
    given = {n.name: n.attrs["shape"] for n in graph.input_nodes}
    outs = {n.name: list(n.out_shapes) for n in graph.nodes}
    reasons: list[str] = []
    try:
        for n in graph.input_nodes:
            if n.name in opened:
                n.attrs["shape"] = tuple(None if i > 0 and d is None else g
                                         for i, (d, g) in enumerate(zip(opened[n.name], given[n.name])))
        try:
            graph.infer_shapes()
        except MigratorError as e:
            return [f"shape inference needs the size ({e.message})"]
        for node in graph.nodes:
            if node.op == "Dense" and node.inputs:
                x = graph.tensor_shape(node.inputs[0])
                if x is None or any(d is None for d in x[1:]):
                    reasons.append(f"'{node.name}' (Dense) needs a fixed number of input features")
        open_plan = make_plan(graph, overrides)
        for a, b in zip(plan.mappings, open_plan.mappings):
            if a.supported and not b.supported:
                reasons.append(f"'{a.source}': {b.error}")
                continue
            sa = [_spec_sig(s) for s in a.layers if s.class_name != "Input"]
            sb = [_spec_sig(s) for s in b.layers if s.class_name != "Input"]
            if sa != sb:
                reasons.append(f"'{a.source}' ({a.source_type}) is converted differently at "
                               "another size")
    finally:
        for n in graph.input_nodes:
            n.attrs["shape"] = given[n.name]
        for n in graph.nodes:
            n.out_shapes = outs[n.name]
    return reasons


def finish_plan(graph: Graph, plan, overrides=None) -> None:
    """Post-planning steps shared by the CLI and the GUI (migrator.core.flow.plan_model):

    * layers with unknown source fields that were not accepted (import mode 'collect')
      become unsupported (the GUI marks them, export is blocked); accepted ones get a note
      'semantics unverified';
    * inputs the user sized (--input-shape) over open declared dimensions: the Keras
      Input keeps ``None`` there when :func:`open_size_check` finds no reason against it;
      the outcome is recorded in ``graph.meta['input_shapes']`` (the report shows it)."""
    for layer, items in unverified_layers(graph).items():
        if layer not in graph:
            continue
        m = plan.mapping(layer)
        acc = [i for i in items if i.get("accepted")]
        bad = [i for i in items if not i.get("accepted")]
        if bad:
            m.supported = False
            m.error = (f"unknown field '{bad[0]['field']}' (accept it with --accept-unknown "
                       f"{layer}.{bad[0]['field']})")
        for i in acc:
            m.notes.append(f"semantics unverified: unknown field '{i['field']}' = {i['value']} "
                           f"accepted by the user ({i['accepted_by']})")
    rec = graph.meta.get("input_shapes")
    if not rec:
        return
    reasons = open_size_check(graph, plan, overrides)
    opened = not reasons
    for name, r in rec.items():
        r["keras_open"] = opened
        r["fixed_because"] = reasons[:5]
        if not opened or name not in graph:
            continue
        decl = r["declared"]
        m = plan.mapping(name)
        for spec in m.layers:
            if spec.class_name == "Input":
                src = [None if d is None else g for d, g in zip(decl, r["given"])]
                rank = len(src)
                keep = rank <= 2 or is_source_order(m.layout)    # a sequence keeps (N, T, F)
                body = src[1:] if keep else src[2:] + src[1:2]
                spec.config["shape"] = body
                m.notes.append(f"Keras input keeps the open dimensions {format_shape(decl)} (verified at "
                               f"{format_shape(r['given'])})")


__all__ = ["apply_input_shapes", "finish_plan", "input_shape_need", "need_error", "open_inputs",
           "open_size_check", "parse_input_shapes", "suggest_input_shape"]
