"""Materialising a spec as its Keras construct (plain Keras), and what a model still needs.

The mapping rules name a few classes of :mod:`.custom_layers` (``ConstantPadding2D``,
``LRN``, ...) and a few expression-only names (``CaffeLog``, ``LasagneSourceOp``, ...).  A
model that contains Migrator's custom classes only loads where Migrator is installed.  The
builder therefore *materialises* each such spec as its construct
(:mod:`.constructs`, one module per op family): a small nested functional ``keras.Model``
named after the spec, whose body uses only Keras built-in layers and Keras 3 functional
``keras.ops`` calls.  Such a model

* saves to ``.keras`` and loads back with ``keras.saving.load_model(path, safe_mode=True)``
  and no ``custom_objects`` -- Keras serializes ``keras.ops`` calls of a functional model
  as built-in operations (``Pad``, ``Power``, ``GetItem``, ...), numpy constants inline;
* keeps its name in ``model.layers`` (the layer-by-layer comparison, the isolation check
  and the trees find the Keras output by the spec's name and call it on its inputs);
* exports to SavedModel and TFLite like any other Keras model.

Legacy HDF5 (``.h5``) cannot store ``keras.ops`` nodes (its loader only knows layers); see
:func:`ops_layers`.  Classes without a construct keep the custom class (the model then needs
Migrator to load; :func:`migrator_only_layers` lists them).
"""
from __future__ import annotations

import keras

from . import constructs  # noqa: F401  (registers every construct)
from .constructs.registry import CONSTRUCTS
from .custom_layers import CUSTOM_LAYERS


def has_plain(class_name: str) -> bool:
    """True when spec class ``class_name`` has a construct (a plain-Keras expression)."""
    return class_name in CONSTRUCTS


def build_plain_layer(spec, input_tensors) -> keras.Model:
    """A nested functional ``keras.Model`` named ``spec.name`` computing ``spec``'s custom
    class with built-in layers and ``keras.ops`` only (weights already set)."""
    fn = CONSTRUCTS[spec.class_name]
    xs = [keras.Input(shape=tuple(t.shape[1:]), dtype=getattr(t, "dtype", "float32"),
                      name=f"{spec.name}_in{i}" if len(input_tensors) > 1 else f"{spec.name}_in")
          for i, t in enumerate(input_tensors)]
    out = fn(xs, dict(spec.config), spec.weights, spec.name)
    return keras.Model(inputs=xs if len(xs) > 1 else xs[0], outputs=out, name=spec.name)


def migrator_only_layers(plan) -> list[dict]:
    """Keras layers of ``plan`` that still need a Migrator class (no construct):
    ``[{'source', 'keras', 'class_name'}]`` -- empty when the model is plain Keras."""
    out = []
    for m in plan.mappings:
        for s in m.layers:
            if s.class_name in CUSTOM_LAYERS and s.class_name not in CONSTRUCTS:
                out.append({"source": m.source, "keras": s.name, "class_name": s.class_name})
    return out


def ops_layers(model) -> list[str]:
    """Names of the model's (nested) layers whose body has ``keras.ops`` nodes -- which legacy
    HDF5 ``.h5`` cannot store (its loader knows layers only)."""
    out = []
    for layer in model.layers:
        sub = getattr(layer, "operations", None)
        if isinstance(layer, keras.Model) and sub and any(
                not isinstance(op, keras.layers.Layer) for op in sub):
            out.append(layer.name)
    return out
