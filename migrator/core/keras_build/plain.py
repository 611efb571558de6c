"""Materialising a spec as its Keras construct (plain Keras, in the model's own graph), and
what a model still needs.

The mapping rules name a few classes of :mod:`.custom_layers` (``ConstantPadding2D``,
``LRN``, ...) and a few expression-only names (``CaffeLog``, ``LasagneSourceOp``, ...).  A
model that contains Migrator's custom classes only loads where Migrator is installed.  The
builder therefore *materialises* each such spec as its construct (:mod:`.constructs`, one
module per op family) **directly in the model's graph** (:func:`apply_plain`): the
construct's built-in layers and Keras 3 functional ``keras.ops`` calls are called on the
outer tensors, the operations it creates are named after the spec (``norm1_square``,
``norm1_power``, ...), and a final built-in ``keras.layers.Identity`` named exactly like the
spec ends it.  The model is flat -- no nested ``keras.Model`` -- so

* ``model.get_layer(NAME).output`` is the source layer's output for every converted layer,
  and ``keras.Model(model.input, model.get_layer(NAME).output)`` (the Keras idiom for
  feature extraction) works; ``model.summary()`` lists the source layers by name;
* it saves to ``.keras`` and loads back with ``keras.saving.load_model(path,
  safe_mode=True)`` and no ``custom_objects`` -- Keras serializes ``keras.ops`` calls of a
  functional model as built-in operations (``Pad``, ``Power``, ``GetItem``, ...), numpy
  constants inline;
* it exports to SavedModel and TFLite like any other Keras model.

Whoever runs one spec on its own (the layer-by-layer executor, the isolation check, the
repro bundle) takes :func:`spec_callables`: the built-in layer itself, or for a construct a
``keras.Function`` over the model's graph from the construct's input tensors to its
``Identity`` (the same layer objects and weights, nothing rebuilt);
:func:`graph_tensor` gives the model's tensor of a plan tensor id.
:func:`build_plain_layer` builds one construct alone, as a small functional model on fresh
inputs (tests, formulas).

Legacy HDF5 (``.h5``) cannot store ``keras.ops`` nodes (its loader only knows layers); see
:func:`ops_layers`.  Classes without a construct keep the custom class (the model then needs
Migrator to load; :func:`migrator_only_layers` lists them).
"""
from __future__ import annotations

import re
import weakref

import keras

from . import constructs  # noqa: F401  (registers every construct)
from .constructs.registry import CONSTRUCTS
from .custom_layers import CUSTOM_LAYERS


def has_plain(class_name: str) -> bool:
    """True when spec class ``class_name`` has a construct (a plain-Keras expression)."""
    return class_name in CONSTRUCTS


def _unique(base: str, used: set[str]) -> str:
    name, i = base, 1
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def apply_plain(spec, input_tensors, used: set[str] | None = None):
    """``spec``'s construct called on ``input_tensors`` (the model's own tensors, spec order):
    its built-in layers and ``keras.ops`` calls join the caller's graph, each operation it
    created is renamed ``<spec.name>_<op>`` (unique against ``used``, the names taken in the
    model so far, which grows), and a final ``keras.layers.Identity`` named ``spec.name``
    gives the output tensor (returned).  Weights are set by the construct."""
    used = set() if used is None else used
    used.add(spec.name)
    fn = CONSTRUCTS[spec.class_name]
    xs = list(input_tensors)
    y = fn(xs, dict(spec.config), spec.weights, spec.name)
    if not isinstance(y, keras.KerasTensor):
        raise TypeError(f"the {spec.class_name} construct did not return a tensor of the graph")
    inner = [op for op in _ops_between(xs, y) if not isinstance(op, keras.layers.InputLayer)]
    for op in inner:     # auto names ('square_3') -> 'norm1_square'; explicit names kept if free
        if isinstance(op, keras.layers.Layer) and op.name.startswith(spec.name) and op.name not in used:
            used.add(op.name)
            continue
        base = re.sub(r"_\d+$", "", op.name)
        op.name = _unique(base if base.startswith(spec.name) else f"{spec.name}_{base}", used)
    return keras.layers.Identity(name=spec.name)(y)


def _ops_between(inputs, output) -> list:
    """The operations computing ``output`` from ``inputs`` (graph order)."""
    if any(output is x for x in inputs):
        return []
    return list(keras.Function(inputs, output).operations)


def build_plain_layer(spec, input_tensors) -> keras.Model:
    """``spec``'s construct alone: a small functional ``keras.Model`` named ``spec.name`` on
    fresh inputs shaped like ``input_tensors`` (built-in layers and ``keras.ops`` only,
    weights already set).  The builder puts constructs into the model's own graph instead
    (:func:`apply_plain`)."""
    xs = [keras.Input(shape=tuple(t.shape[1:]), dtype=getattr(t, "dtype", "float32"),
                      name=f"{spec.name}_in{i}" if len(input_tensors) > 1 else f"{spec.name}_in")
          for i, t in enumerate(input_tensors)]
    out = apply_plain(spec, xs, {x.name for x in xs})
    return keras.Model(inputs=xs if len(xs) > 1 else xs[0], outputs=out, name=spec.name)


# ---- running one spec of a built model on its own ----------------------------------------
def _producers(plan) -> dict[str, str]:
    """Plan tensor id (aliases followed) -> name of the spec producing it."""
    alias: dict[str, str] = {}
    for m in plan.mappings:
        for out, src in m.aliases.items():
            alias[out] = alias.get(src, src)
    prod = {s.output: s.name for s in plan.keras_layers}
    for out, src in alias.items():
        if src in prod:
            prod[out] = prod[src]
    return prod


def graph_tensor(model, plan, tensor_id: str, _prod: dict | None = None):
    """The model's symbolic tensor for plan tensor ``tensor_id``: the output of the layer
    named like its producing spec (an ``Input``, a built-in layer, a construct's final
    ``Identity``)."""
    prod = _producers(plan) if _prod is None else _prod
    return model.get_layer(prod[tensor_id]).output


class _ConstructCall:
    """One construct of a built (flat) model run on its own: ``call(arg, training=False)``
    with ``arg`` one tensor or the list of the spec's input tensors."""

    def __init__(self, fn: keras.Function):
        self.fn = fn

    def __call__(self, arg, training=False):
        xs = list(arg) if isinstance(arg, (list, tuple)) else [arg]
        return self.fn(xs)


class _GraphLayerCall:
    """A grouped convolution run eagerly: Keras's TensorFlow backend computes it (on the CPU)
    through a ``tf.function`` it creates at *every* call, so each eager call traces and
    compiles again (and TensorFlow warns about retracing after five).  Here the layer runs
    in one ``tf.function`` per layer with a batch-open signature: traced once, then reused."""

    def __init__(self, layer):
        import tensorflow as tf
        t = layer.input
        sig = [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype)]
        self.fn = tf.function(lambda x: layer(x, training=False), input_signature=sig)

    def __call__(self, arg, training=False):
        return self.fn(arg)


def _traces_each_call(layer) -> bool:
    """True for a layer whose eager call makes Keras trace a new ``tf.function`` (grouped
    convolutions on the TensorFlow backend)."""
    return (keras.backend.backend() == "tensorflow" and isinstance(layer, keras.layers.Layer)
            and int(getattr(layer, "groups", 1) or 1) > 1 and hasattr(layer, "kernel")
            and len(getattr(layer, "_inbound_nodes", ())) > 0)


_CALLABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_construct(model_layer, spec) -> bool:
    """True when the model's layer named ``spec.name`` is the final ``Identity`` of
    ``spec``'s construct (not the spec's own layer class)."""
    return (spec.class_name in CONSTRUCTS and isinstance(model_layer, keras.layers.Identity)
            and spec.class_name != "Identity")


def spec_callables(model, plan) -> dict:
    """Name -> a callable ``f(arg, training=False)`` computing that spec of ``model`` from
    its input tensors (``arg``: one tensor, or the list): the layer itself for a built-in
    or custom layer (a grouped convolution inside a ``tf.function`` traced once), a
    ``keras.Function`` over the model's graph for a construct (the model's own layer
    objects and weights).  Specs pruned from the model are absent.  Cached per model."""
    cache = _CALLABLES.get(model)
    if cache is None:
        cache = _CALLABLES[model] = {}
    layers = {layer.name: layer for layer in model.layers}
    prod = None
    out = {}
    for spec in plan.keras_layers:
        layer = layers.get(spec.name)
        if layer is None:
            continue
        f = cache.get(spec.name)
        if not is_construct(layer, spec):
            if f is None and _traces_each_call(layer):
                f = cache[spec.name] = _GraphLayerCall(layer)
            out[spec.name] = f if f is not None else layer
            continue
        if f is None:
            prod = _producers(plan) if prod is None else prod
            ins = [graph_tensor(model, plan, t, prod) for t in spec.inputs]
            f = cache[spec.name] = _ConstructCall(keras.Function(ins, layer.output))
        out[spec.name] = f
    return out


def migrator_only_layers(plan) -> list[dict]:
    """Keras layers of ``plan`` that still need a Migrator class (no construct):
    ``[{'source', 'keras', 'class_name'}]`` -- empty when the model is plain Keras."""
    out = []
    for m in plan.mappings:
        for s in m.layers:
            if s.class_name in CUSTOM_LAYERS and s.class_name not in CONSTRUCTS:
                out.append({"source": m.source, "keras": s.name, "class_name": s.class_name})
    return out


def ops_layers(model, plan=None) -> list[str]:
    """The layers whose computation has ``keras.ops`` nodes -- which legacy HDF5 ``.h5``
    cannot store (its loader knows layers only).  With ``plan``: the names of the specs
    whose construct has such a node; without: the names of the ``keras.ops`` operations
    themselves (and of nested models holding some)."""
    if plan is None:
        out = []
        for op in model.operations:
            sub = getattr(op, "operations", None)
            if isinstance(op, keras.Model) and sub:
                if any(not isinstance(o, keras.layers.Layer) for o in sub):
                    out.append(op.name)
            elif not isinstance(op, keras.layers.Layer):
                out.append(op.name)
        return out
    names = []
    calls = spec_callables(model, plan)
    for spec in plan.keras_layers:
        f = calls.get(spec.name)
        ops = f.fn.operations if isinstance(f, _ConstructCall) else (
            f.operations if isinstance(f, keras.Model) else [])
        if any(not isinstance(o, keras.layers.Layer) for o in ops):
            names.append(spec.name)
    return names
