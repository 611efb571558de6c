"""The mapping plan: what each source node becomes on the Keras side, and why.

The planner (``migrator.core.mapping.planner.make_plan``) walks the IR graph in order and
asks the rule registered for each node's op (``registry.RULES[op]``) for a
:class:`NodeMapping`.  A mapping carries

* ``layers``: the Keras layers to create (:class:`KerasLayerSpec`, plain data: class name,
  config, weights), wired by tensor ids;
* ``rows``: the parameter formulas as data (:class:`ParamRow`) -- shown by the GUI's
  mapping inspector and written into the report;
* ``keras_output``: the name of the Keras layer whose output equals this source node's
  output (``None`` when the node was fused into another, see ``fused_into``);
* ``layout``: the Keras-side layout of that output ('NHWC', 'NC', ...).

Tensor ids on the Keras side are the IR tensor ids (the node name for one-output nodes);
a rule registers its final Keras output under the node's output tensor id via
``KerasLayerSpec.output`` and may use private ids (``<node>/<step>``) for intermediate
tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class KerasLayerSpec:
    name: str                      # Keras layer name (unique in the model)
    class_name: str                # keras.layers class name, or a name registered in custom_layers
    config: dict[str, Any]         # constructor kwargs (JSON-able), name excluded
    inputs: list[str]              # tensor ids consumed
    output: str                    # tensor id produced
    weights: list[np.ndarray] | None = None   # in layer.get_weights() order; None = none
    released: bool = False         # weights handed to a built model and dropped (memory)


@dataclass
class ParamRow:
    """One row of the mapping inspector / one formula in the report."""

    key: str                       # Keras-side name: 'epsilon', 'moving_variance', 'fuse_scale', ...
    formula: str                   # human-readable formula, e.g. 'blob1 * s, s = 1/blob2'
    value: Any                     # resulting Keras value (scalar, str, bool or np.ndarray)
    sources: dict[str, Any] = field(default_factory=dict)   # source values read (name -> value)
    option: str | None = None      # override key when editable (e.g. 'epsilon')
    default: Any = None            # the rule's default for that option
    overridden: bool = False
    caveats: list[str] = field(default_factory=list)        # always-true remarks
    warnings: list[str] = field(default_factory=list)       # problems found in *these* values


@dataclass
class NodeMapping:
    source: str                    # IR node name (= source layer name)
    source_type: str
    rule: str                      # rule name, e.g. 'caffe.BatchNorm'
    layers: list[KerasLayerSpec] = field(default_factory=list)
    rows: list[ParamRow] = field(default_factory=list)
    keras_output: str | None = None
    layout: str = "NHWC"
    fused_into: str | None = None  # name of the source node whose Keras layer also computes this one
    aliases: dict[str, str] = field(default_factory=dict)   # out tensor id -> tensor id (no layer)
    options: dict[str, Any] = field(default_factory=dict)   # the resolved options of the rule
    notes: list[str] = field(default_factory=list)
    supported: bool = True
    error: str | None = None       # why it could not be mapped (unsupported / bad params)

    @property
    def warnings(self) -> list[str]:
        return [w for r in self.rows for w in r.warnings]

    @property
    def overridden(self) -> bool:
        return any(r.overridden for r in self.rows)


@dataclass
class Plan:
    graph: Any                                   # migrator.core.ir.Graph
    mappings: list[NodeMapping] = field(default_factory=list)
    overrides: Any = None                        # migrator.core.mapping.overrides.Overrides
    input_layout: str = "NHWC"
    #: source tensor id -> the Keras layout tag of its Keras tensor (filled by the planner)
    tensor_layouts: dict[str, str] = field(default_factory=dict)
    #: source tensor ids whose Keras time axis is open (sequences of any length)
    open_time: set[str] = field(default_factory=set)

    def layout_of(self, source: str) -> str | None:
        """The Keras layout tag of source node ``source``'s output (None when not mapped)."""
        try:
            return self.mapping(source).layout
        except KeyError:
            return None

    def mapping(self, source: str) -> NodeMapping:
        idx = self.__dict__.get("_by_source")
        if idx is None or len(idx) != len(self.mappings):
            idx = {m.source: m for m in self.mappings}
            self.__dict__["_by_source"] = idx
        m = idx.get(source)
        if m is None or m.source != source:
            # the list was edited in place: rebuild once
            self.__dict__["_by_source"] = idx = {m.source: m for m in self.mappings}
            m = idx.get(source)
        if m is None:
            raise KeyError(source)
        return m

    @property
    def unsupported(self) -> list[NodeMapping]:
        return [m for m in self.mappings if not m.supported]

    @property
    def keras_layers(self) -> list[KerasLayerSpec]:
        return [spec for m in self.mappings for spec in m.layers]

    def keras_to_sources(self) -> dict[str, list[str]]:
        """Keras layer name -> the source nodes it computes (fused pairs give two)."""
        out: dict[str, list[str]] = {}
        for m in self.mappings:
            for spec in m.layers:
                out.setdefault(spec.name, [])
                if m.source not in out[spec.name]:
                    out[spec.name].append(m.source)
            if m.keras_output:
                out.setdefault(m.keras_output, [])
                if m.source not in out[m.keras_output]:
                    out[m.keras_output].append(m.source)
        return out


def external_inputs(specs) -> list[str]:
    """The tensors a run of Keras layer specs consumes but does not produce, in first-use order
    (what a standalone model of those layers takes as inputs)."""
    produced: set[str] = set()
    ext: list[str] = []
    for s in specs:
        for t in s.inputs:
            if t not in produced and t not in ext:
                ext.append(t)
        produced.add(s.output)
    return ext
