"""Run a built Keras model layer by layer, in plan order, yielding the outputs that
correspond to source nodes.

``iter_keras_outputs`` calls each Keras layer eagerly on its input tensors (the wiring
comes from the plan, not from the model graph; a construct runs as the part of the model's
graph between its inputs and its final layer, :func:`.plain.spec_callables`), yields
``(keras_layer_name, array)`` for every layer that is some node's ``keras_output`` and
frees every tensor right after its last consumer ran, so memory stays bounded on big models.  It runs wherever TensorFlow
places the ops: on the GPU when TensorFlow sees one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from ..errors import Cancelled, MigratorError
from .builder import MERGE_LAYERS
from .plain import spec_callables

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


def keras_device_description() -> str:
    """Where TensorFlow runs the Keras model: ``'GPU: <name>'`` or ``'CPU (no GPU found by
    TensorFlow)'``."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU (no GPU found by TensorFlow)"
    try:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name") or gpus[0].name
    except Exception:  # noqa: BLE001 - details are optional
        name = gpus[0].name
    more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
    return f"GPU: {name}{more}"


def _resolve_aliases(plan) -> dict[str, str]:
    alias: dict[str, str] = {}
    for m in plan.mappings:
        for out, src in m.aliases.items():
            alias[out] = alias.get(src, src)
    return alias


def _inputs_by_layer(plan, x) -> dict[str, np.ndarray]:
    """Map each Input spec name to its array (``x`` an array, or a dict keyed by source
    input node name or Keras input layer name)."""
    in_specs = [(m.source, s) for m in plan.mappings for s in m.layers if s.class_name == "Input"]
    if not in_specs:
        raise MigratorError("the plan has no input layer")
    out = {}
    if isinstance(x, dict):
        for src, spec in in_specs:
            if src in x:
                out[spec.name] = x[src]
            elif spec.name in x:
                out[spec.name] = x[spec.name]
            else:
                raise MigratorError(f"no input array given for input '{src}'", layer=src)
    else:
        if len(in_specs) != 1:
            raise MigratorError(f"the model has {len(in_specs)} inputs: give a dict of arrays")
        out[in_specs[0][1].name] = x
    return out


def iter_keras_outputs(model, plan, x_channels_last, *, want: Iterable[str] | None = None,
                       progress: Progress = None, cancel: Cancel = None,
                       stats: dict | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(keras_layer_name, output array)`` in plan order for every Keras layer
    that is some source node's ``keras_output`` (restricted to ``want`` when given;
    stops as soon as all wanted outputs were yielded).

    ``x_channels_last``: the input in the Keras layout (an array, or a dict keyed by
    source input name / Keras input name).  Raises :class:`Cancelled` when ``cancel()``
    turns true between layers.  ``stats`` (a dict, optional) receives ``max_live``: the
    most intermediate tensors held at once (memory stays bounded).
    """
    from keras import ops

    specs = list(plan.keras_layers)
    alias = _resolve_aliases(plan)
    model_layers = {layer.name for layer in model.layers}
    targets = {m.keras_output for m in plan.mappings if m.keras_output and m.keras_output in model_layers}
    if want is not None:   # any named layer: also the further outputs of multi-output nodes
        targets = set(want) & model_layers
    # tensor id -> index of the last spec consuming it
    last_use: dict[str, int] = {}
    for i, spec in enumerate(specs):
        for t in spec.inputs:
            last_use[alias.get(t, t)] = i
    # stop after the last wanted layer
    stop = max((i for i, s in enumerate(specs) if s.name in targets), default=-1)
    arrays = _inputs_by_layer(plan, x_channels_last)
    tensors: dict[str, object] = {}
    # each spec's layer, or its construct's Function over the model's graph
    layers = spec_callables(model, plan)
    n = max(1, stop + 1)
    for i, spec in enumerate(specs[:stop + 1]):
        if cancel is not None and cancel():
            raise Cancelled()
        if spec.class_name == "Input":
            a = np.asarray(arrays[spec.name], dtype=np.float32)
            want_shape = tuple(spec.config.get("shape", ()))
            if a.ndim != len(want_shape) + 1 or any(
                    w is not None and w != d for w, d in zip(want_shape, a.shape[1:])):
                raise MigratorError(f"input array of shape {a.shape} does not fit the Keras input "
                                    f"(None, {', '.join(map(str, want_shape))}) (channels-last)",
                                    layer=spec.name)
            out = ops.convert_to_tensor(a)
        else:
            layer = layers.get(spec.name)
            if layer is None:
                # pruned by Keras: no model output depends on it (e.g. the branch that only
                # gives a Caffe Crop its reference shape); nothing live consumes it either
                continue
            ins = [tensors[alias.get(t, t)] for t in spec.inputs]
            arg = ins if spec.class_name in MERGE_LAYERS or len(ins) > 1 else ins[0]
            out = layer(arg, training=False)
        tensors[spec.output] = out
        # free what is not needed any more
        for t in spec.inputs:
            t = alias.get(t, t)
            if last_use.get(t) == i:
                tensors.pop(t, None)
        if progress is not None:
            progress((i + 1) / n, f"Keras: {spec.name}")
        if spec.name in targets:
            yield spec.name, np.asarray(ops.convert_to_numpy(out))
        if stats is not None:
            stats["max_live"] = max(stats.get("max_live", 0), len(tensors))
        if spec.output not in last_use:
            tensors.pop(spec.output, None)
