"""The rule registry: ONE rule per canonical op, each carrying its options as data.

A rule is a class registered with :func:`register`::

    @register("Conv")
    class ConvRule(Rule):
        name = "Conv"
        options = {"flip": Option(bool, None, "rotate kernels 180deg (None = from the layer)")}

        def map(self, node, ctx) -> NodeMapping: ...

``ctx`` is a :class:`MapContext`: it gives the graph, the resolved options for this node
(defaults <- overrides for the kind <- overrides for the layer), helpers for layouts,
and lets a rule *absorb* a later node (BatchNorm fusing its Scale).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import MigratorError
from ..ir import Graph, Node
from ..registry import Registry
from .plan import NodeMapping


@dataclass
class Option:
    """An overridable rule parameter."""

    type: type | tuple            # bool, float, int, str
    default: Any
    help: str = ""
    choices: tuple | None = None  # allowed values for str options
    check: Callable[[Any], str | None] | None = None   # returns an error text or None

    def validate(self, key: str, value: Any) -> Any:
        """Return the value coerced to the option type, or raise MigratorError naming key."""
        t = self.type
        if value is None and self.default is None:
            return None
        if t is bool:
            if not isinstance(value, bool):
                raise MigratorError(f"option '{key}' must be true or false, got {value!r}", key=key)
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MigratorError(f"option '{key}' must be a number, got {value!r}", key=key)
            value = float(value)
        elif t is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise MigratorError(f"option '{key}' must be an integer, got {value!r}", key=key)
        elif t is str:  # noqa: SIM102 - one branch per option type
            if not isinstance(value, str):
                raise MigratorError(f"option '{key}' must be a string, got {value!r}", key=key)
        if self.choices is not None and value not in self.choices:
            raise MigratorError(f"option '{key}' must be one of {', '.join(map(str, self.choices))}, "
                                f"got {value!r}", key=key)
        if self.check is not None:
            err = self.check(value)
            if err:
                raise MigratorError(f"option '{key}': {err}", key=key)
        return value


class Rule:
    name: str = ""
    options: ClassVar[dict[str, Option]] = {}
    description: str = ""
    #: True when the rule reads the Keras layout of its inputs itself (``ctx.layout_of``) and
    #: takes a sequence in :data:`SEQUENCE_LAYOUT`; the planner adapts the inputs of every other
    #: rule to Migrator's channels-last convention (see ``planner.adapt_sequence_inputs``)
    sequence_aware: ClassVar[bool] = False

    def map(self, node: Node, ctx: MapContext) -> NodeMapping:  # pragma: no cover - abstract
        raise NotImplementedError


#: op -> its one rule (an instance); registering an op twice raises RegistrationError
RULES: Registry[Rule] = Registry("mapping rules")


def register(op: str):
    """Class decorator: register an instance of the rule class as THE rule of ``op`` (a
    variant of an op is a branch of its one rule, never a second registration)."""
    def deco(cls):
        inst = cls()
        if not inst.name:
            inst.name = op
        RULES.add(op, inst)
        return cls
    return deco


@dataclass
class MapContext:
    graph: Graph
    options: dict[str, Any]                      # resolved options for the node being mapped
    absorbed: dict[str, str] = field(default_factory=dict)   # node name -> absorbing node name
    extra_rows: dict[str, list] = field(default_factory=dict)  # rows to attach to absorbed nodes
    keras_names: set[str] = field(default_factory=set)
    # tensor id -> name of the Keras layer producing it (filled by the planner after each
    # mapping, aliases followed); lets a rule name the Keras layer of an upstream tensor
    tensor_layer: dict[str, str] = field(default_factory=dict)
    # tensor id -> the Keras layout tag of that tensor (the producing mapping's ``layout``)
    tensor_layout: dict[str, str] = field(default_factory=dict)
    # tensor ids whose Keras time axis is open (None): sequences of an input whose source
    # declares no length (see rules/recurrent.py ``open_time_axis``)
    open_time: set[str] = field(default_factory=set)
    overrides: Any = None          # the user's overrides (a rule may look at another node's)

    def layout_of(self, tensor_id: str) -> str | None:
        """The Keras layout tag of a source tensor already mapped (None when unknown)."""
        return self.tensor_layout.get(tensor_id)

    def consumers(self, tensor_id: str) -> list[Node]:
        return self.graph.consumers(tensor_id)

    def producer(self, tensor_id: str) -> Node:
        return self.graph.producer(tensor_id)

    def absorb(self, node: Node, into: Node) -> None:
        """Declare that ``node`` is computed by the Keras layers of ``into``."""
        self.absorbed[node.name] = into.name

    def unique_name(self, base: str) -> str:
        """A Keras-legal unique layer name derived from a source name."""
        import re
        safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", base) or "layer"
        if safe[0] in ".-":
            safe = "l" + safe
        name, i = safe, 1
        while name in self.keras_names:
            i += 1
            name = f"{safe}_{i}"
        self.keras_names.add(name)
        return name


def rank_of(shape) -> int:
    return len(shape) if shape is not None else 4


#: the Keras layout of a sequence: (batch, time, features) -- Keras RNNs' order and Lasagne's;
#: such a tensor is kept in the SOURCE order (no channels-last transposition)
SEQUENCE_LAYOUT = "NTF"
#: Caffe's LSTM / RNN blobs (time, batch, features), kept as Caffe has them: the Keras
#: model's leading axis is Caffe's time axis
TIME_MAJOR_LAYOUT = "TNF"


def is_source_order(layout: str | None) -> bool:
    """True when a tensor of this Keras layout tag is in the source's own axis order."""
    return layout in (SEQUENCE_LAYOUT, TIME_MAJOR_LAYOUT)


def keras_layout(rank: int) -> str:
    """The channels-last layout tag of a source tensor of this rank."""
    return {1: "N", 2: "NC", 3: "NWC", 4: "NHWC", 5: "NDHWC"}.get(rank, f"rank{rank}")


def to_keras_axis(axis: int, rank: int) -> int:
    """Map an NCHW-semantics axis to the channels-last Keras tensor axis."""
    if axis < 0:
        axis += rank
    if rank <= 2:
        return axis
    if axis == 0:
        return 0
    if axis == 1:
        return rank - 1
    return axis - 1
