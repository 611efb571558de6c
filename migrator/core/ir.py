"""Framework-neutral intermediate representation.

A :class:`Graph` is an ordered list of :class:`Node` objects (topological order, inputs
before consumers).  Every node has a *canonical op kind* (``Node.op``, one of
:data:`OPS`), attributes in canonical form (documented in :data:`OPS`), named
parameters (:class:`Param`, each with a layout tag) and provenance (source file, source
layer name and type, source top/blob names).

Tensors are named by the node that produces them: a single-output node's output tensor
id is the node name; a node with several outputs (Split) produces ``name:0``,
``name:1``, ...  Because ids are per *node*, Caffe's in-place layers (``top ==
bottom``) are unambiguous: ``relu1`` writing into blob ``conv1`` produces tensor
``relu1``.

All source semantics are NCHW (``N, C, spatial...``); the Keras side is channels-last.
Shapes include the batch dimension as given by the source (Caffe ``input_dim`` often 1
or 10; Lasagne ``None`` is stored as ``None``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import MigratorError
from .ops import OPS  # noqa: F401  (the catalogue lives in ops.py; re-exported for readers of the IR)

ACTIVATION_KINDS = ("relu", "elu", "sigmoid", "tanh", "abs", "softplus", "linear",
                    "scaled_tanh", "exp", "softmax", "relu6")


@dataclass
class Param:
    """A named parameter array with a layout tag ('OIHW', 'OI', 'IO', 'O', 'C', 'SCALAR', ...)."""

    name: str
    value: np.ndarray
    layout: str = ""
    source_name: str | None = None   # the name in the source file (e.g. 'blobs[1]', 'W')

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


@dataclass
class Provenance:
    file: str | None = None          # the file that defined the layer (prototxt / builder script)
    layer: str | None = None         # source layer name
    type: str | None = None          # source layer type/class ('Convolution', 'Conv2DLayer')
    tops: list[str] = field(default_factory=list)      # Caffe top blob names
    bottoms: list[str] = field(default_factory=list)   # Caffe bottom blob names
    weights_file: str | None = None  # caffemodel / params file the weights came from


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)    # tensor ids
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)
    num_outputs: int = 1
    out_shapes: list[tuple | None] = field(default_factory=list)   # filled by shape inference

    @property
    def outputs(self) -> list[str]:
        if self.num_outputs == 1:
            return [self.name]
        return [f"{self.name}:{i}" for i in range(self.num_outputs)]

    @property
    def out_shape(self) -> tuple | None:
        return self.out_shapes[0] if self.out_shapes else None

    @property
    def source_type(self) -> str:
        return self.provenance.type or self.op

    def param_count(self) -> int:
        return int(sum(p.value.size for p in self.params.values()))

    def p(self, name: str) -> np.ndarray | None:
        prm = self.params.get(name)
        return None if prm is None else prm.value


@dataclass
class Graph:
    framework: str                      # 'caffe' | 'lasagne'
    nodes: list[Node] = field(default_factory=list)
    name: str = ""
    files: list[str] = field(default_factory=list)   # source files (architecture first)
    meta: dict[str, Any] = field(default_factory=dict)  # mean values, synset words, warnings, ...
    warnings: list[str] = field(default_factory=list)

    # ---- lookup -------------------------------------------------------------------
    def __post_init__(self):
        self._index: dict[str, Node] | None = None

    def _idx(self) -> dict[str, Node]:
        if self._index is None or len(self._index) != len(self.nodes):
            self._index = {n.name: n for n in self.nodes}
        return self._index

    def node(self, name: str) -> Node:
        try:
            return self._idx()[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._idx()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def producer(self, tensor_id: str) -> Node:
        return self.node(tensor_id.split(":")[0] if tensor_id not in self._idx() else tensor_id)

    def consumers(self, tensor_id: str) -> list[Node]:
        return [n for n in self.nodes if tensor_id in n.inputs]

    @property
    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "Input"]

    @property
    def output_tensors(self) -> list[str]:
        """Tensors nobody consumes (the network outputs), in node order."""
        used = {t for n in self.nodes for t in n.inputs}
        return [t for n in self.nodes for t in n.outputs if t not in used]

    def tensor_shape(self, tensor_id: str) -> tuple | None:
        node = self.producer(tensor_id)
        i = node.outputs.index(tensor_id)
        return node.out_shapes[i] if i < len(node.out_shapes) else None

    def last_use(self) -> dict[str, int]:
        """tensor id -> index of the last node consuming it (for freeing memory early)."""
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for t in n.inputs:
                last[t] = i
        return last

    # ---- validation ---------------------------------------------------------------
    def validate(self, file: str | None = None) -> None:
        """Check the structure: unique names, known inputs, topological order, no cycle."""
        seen: set[str] = set()
        produced: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise MigratorError("duplicate layer name", file=file, layer=n.name)
            seen.add(n.name)
            for t in n.inputs:
                if t not in produced:
                    raise MigratorError(f"input '{t}' is not produced by any earlier layer "
                                        "(undefined bottom or cycle)", file=file, layer=n.name)
            produced.update(n.outputs)

    def infer_shapes(self, file: str | None = None) -> None:
        from .shapes import infer_shapes
        infer_shapes(self, file=file)

    def summary_rows(self) -> Iterable[dict[str, Any]]:
        for n in self.nodes:
            yield {"name": n.name, "type": n.source_type, "op": n.op,
                   "inputs": list(n.inputs), "shape": n.out_shape,
                   "params": {k: list(p.shape) for k, p in n.params.items()},
                   "param_count": n.param_count()}


def topological_sort(nodes: list[Node], file: str | None = None) -> list[Node]:
    """Stable topological order (keeps the given order where possible); raises on a cycle
    or an undefined input, naming the layer."""
    producer: dict[str, Node] = {}
    for n in nodes:
        for t in n.outputs:
            producer[t] = n
    for n in nodes:
        for t in n.inputs:
            if t not in producer:
                raise MigratorError(f"input '{t}' is not produced by any layer (undefined bottom)",
                                    file=file, layer=n.name)
    order: list[Node] = []
    state: dict[str, int] = {}   # 0 unvisited, 1 visiting, 2 done

    def visit(n: Node, stack: list[str]):
        st = state.get(n.name, 0)
        if st == 2:
            return
        if st == 1:
            cyc = " -> ".join(stack[stack.index(n.name):] + [n.name])
            raise MigratorError(f"cyclic graph: {cyc}", file=file, layer=n.name)
        state[n.name] = 1
        stack.append(n.name)
        for t in n.inputs:
            visit(producer[t], stack)
        stack.pop()
        state[n.name] = 2
        order.append(n)

    import sys
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * len(nodes) + 1000))
    try:
        for n in nodes:
            visit(n, [])
    finally:
        sys.setrecursionlimit(old)
    return order
