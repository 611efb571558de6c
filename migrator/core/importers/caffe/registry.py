"""The Caffe importer's one registry: layer type -> :class:`LayerHandler`, and the type tables.

Every Caffe layer type Migrator converts (BVLC and fork types alike) has exactly one entry
in :data:`LAYER_HANDLERS`, registered by the op-family module that holds its handler
(``importers/caffe/layers/<family>.py``) with :func:`layer_handler`.  A fork type carries
its provenance as data (``fork="SSD"``), never as a module.  The other tables of this
module say what happens to the types that are *not* converted (dropped, made inputs,
refused by name).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...registry import Registry

#: ``fn(builder, layer_parameter) -> (op, attrs, params, num_outputs)``
HandlerFn = Callable[[Any, Any], tuple[str, dict, dict, int]]

#: bottoms a layer takes when its entry does not say: exactly one
ONE_BOTTOM = (1, 1)
ANY_NUMBER = 1 << 30


@dataclass(frozen=True)
class LayerHandler:
    """How one Caffe layer type is imported.

    ``ops``: the canonical ops the handler produces, the usual one first (a refused variant
    becomes ``Custom`` and is not listed); ``fork``: the Caffe fork(s) the type comes from
    (None for BVLC Caffe); ``bottoms``: (min, max) number of bottoms; ``multi_top``: the
    layer may have several tops (else exactly one); ``claims``: parameter messages the schema
    does not know that the handler reads itself from the prototxt text (a plugin's layer type,
    migrator/core/plugins.py: ``builder.claimed_fields``)."""

    type: str
    fn: HandlerFn
    ops: tuple[str, ...]
    fork: str | None = None
    bottoms: tuple[int, int] = ONE_BOTTOM
    multi_top: bool = False
    claims: tuple[str, ...] = ()


LAYER_HANDLERS: Registry[LayerHandler] = Registry("caffe layer types")


def layer_handler(*types: str, ops: tuple[str, ...], fork: str | None = None,
                  bottoms: tuple[int, int] = ONE_BOTTOM, multi_top: bool = False
                  ) -> Callable[[HandlerFn], HandlerFn]:
    """Register the decorated ``fn(builder, lp)`` as the handler of each Caffe type in ``types``."""
    def deco(fn: HandlerFn) -> HandlerFn:
        for t in types:
            LAYER_HANDLERS.add(t, LayerHandler(t, fn, tuple(ops), fork, bottoms, multi_top))
        return fn
    return deco


# ------------------------------------------------------------------------------------
# Types that are not converted
# ------------------------------------------------------------------------------------
#: Layers that only feed training data; dropped from the deploy graph.
DATA_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "WindowData", "VideoData", "AnnotatedData"})
#: Data layers whose output shape is known: they become Input nodes.
SHAPED_DATA_TYPES = frozenset({"MemoryData", "DummyData"})
#: Training-only sinks; dropped from the deploy graph.
SINK_TYPES = frozenset({"Accuracy", "Silence", "HDF5Output"})
#: BVLC layer types refused by name (imported as Custom nodes carrying the reason).
REFUSED_TYPES: dict[str, str] = {
    "Python": "a Python layer runs user code (python_param module/layer), which Migrator neither "
              "executes nor converts; to convert it, write a plugin for its type and give it "
              "with --plugin FILE.py (docs/plugins.md)",
    "LSTMUnit": "LSTMUnit is the internal step of Caffe's LSTM (gate and 'cont' inputs); not converted",
    "Parameter": "a Parameter layer outputs a learned blob without a batch axis, which a Keras "
                 "tensor always has",
    "BatchReindex": "BatchReindex reorders the batch by indices from a second input (a training "
                    "tool); not converted",
    "Filter": "Filter drops batch items by a selector input, so the output batch size depends on "
              "the data; a static Keras graph cannot express it",
}
STOCHASTIC_REFUSAL = ("Pooling STOCHASTIC: Caffe implements it only on the GPU (the CPU build aborts "
                      "'Not Implemented Yet'), so it cannot be checked against the real framework")


def is_loss(type_: str) -> bool:
    """A loss layer (training only): every Caffe type whose name ends in ``Loss``."""
    return type_.endswith("Loss")


__all__ = ["DATA_TYPES", "LAYER_HANDLERS", "REFUSED_TYPES", "SHAPED_DATA_TYPES", "SINK_TYPES",
           "STOCHASTIC_REFUSAL", "LayerHandler", "is_loss", "layer_handler"]
