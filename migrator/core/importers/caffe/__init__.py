"""Caffe importer: ``.prototxt`` (text) + ``.caffemodel`` (binary) -> IR :class:`Graph`.

* :mod:`.reader` parses the files (Migrator's own protobuf schema, V1 and new formats);
* :mod:`.fields` is the policy for prototxt fields Migrator does not know;
* :mod:`.registry` holds :data:`LAYER_HANDLERS` (Caffe layer type -> handler, BVLC and fork
  types alike, fork provenance as data) and the tables of types that are not converted;
* :mod:`.layers` holds the handlers, one module per op family;
* :mod:`.builder` runs the import (:func:`load_caffe`).

:data:`SUPPORTED_TYPES` and :data:`FORK_TYPES` are derived from the registry.
"""
from __future__ import annotations

from . import layers  # noqa: F401  (registers the layer handlers)
from .builder import CaffeBuilder, load_caffe
from .reader import V1_TYPE_NAMES, CaffeWeights, parse_caffemodel, parse_prototxt
from .registry import (
    DATA_TYPES,
    LAYER_HANDLERS,
    REFUSED_TYPES,
    SHAPED_DATA_TYPES,
    SINK_TYPES,
    STOCHASTIC_REFUSAL,
    LayerHandler,
    is_loss,
)

#: Layer types converted to canonical ops (every other type becomes Custom): the registry's
#: types, plus ``Input`` (read by the builder itself: it may give several inputs).
SUPPORTED_TYPES: frozenset[str] = frozenset(LAYER_HANDLERS) | {"Input"}
#: Layer types of Caffe forks (not in BVLC Caffe) that are converted.
FORK_TYPES: frozenset[str] = frozenset(t for t, h in LAYER_HANDLERS.items() if h.fork)


def source_type_ops() -> dict[str, str]:
    """Caffe layer type -> the op it usually imports as (the first op its handler declares)."""
    out = {"Input": "Input"}
    out.update({t: h.ops[0] for t, h in LAYER_HANDLERS.items() if h.ops})
    return out


__all__ = ["DATA_TYPES", "FORK_TYPES", "LAYER_HANDLERS", "REFUSED_TYPES", "SHAPED_DATA_TYPES",
           "SINK_TYPES", "STOCHASTIC_REFUSAL", "SUPPORTED_TYPES", "V1_TYPE_NAMES", "CaffeBuilder",
           "CaffeWeights", "LayerHandler", "is_loss", "load_caffe", "parse_caffemodel", "parse_prototxt",
           "source_type_ops"]
