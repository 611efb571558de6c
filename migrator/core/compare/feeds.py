"""Keras-side output streams for the comparison: the eager layer-by-layer feed (bounded
memory) and the compiled feed (one functional call for models whose wanted outputs fit
:data:`COMPILED_MAX_BYTES`); :func:`keras_feed` picks one.  Used by the comparison engine
and by the float64 second look (:mod:`migrator.core.compare.isolate`)."""
from __future__ import annotations

import time

import numpy as np


class KerasFeed:
    """The Keras side as a pull-based feed of ``(keras_layer_name, array)`` restricted to the
    layers some source node reads.

    It runs in the calling thread: overlapping it with the reference in a second thread was
    measured slower on small machines (OpenBLAS and TensorFlow thread pools oversubscribe
    the cores), so both passes run one after the other, each with all cores."""

    def __init__(self, model, plan, x_keras, cancel, wanted, timings):
        from ..keras_build.executor import iter_keras_outputs
        self._it = iter_keras_outputs(model, plan, x_keras, want=set(wanted), cancel=cancel)
        self._wanted = wanted
        self._timings = timings
        self._done = False

    def next(self):
        while not self._done:
            t0 = time.perf_counter()
            try:
                name, arr = next(self._it)
            except StopIteration:
                self._done = True
                return None
            finally:
                self._timings["keras_s"] += time.perf_counter() - t0
            if name in self._wanted:
                return name, arr
        return None

    def close(self):
        close = getattr(self._it, "close", None)
        if close:
            close()


# The Keras side as one compiled call (tf.function over a multi-output model) when all the
# outputs it must return fit in this many bytes (open-nsfw: 74 MiB per 224x224 sample, so a
# batch of 16-27); eager layer-by-layer calls otherwise.
COMPILED_MAX_BYTES = 2 << 30
# Tracing costs time per layer (about 25 s for 1,000 small layers on 2 cores, far more than
# their eager forward); graph form pays off for models of heavy layers, not for very deep ones.
COMPILED_MAX_LAYERS = 400
_COMPILED: dict = {}     # id(model) -> (model, tuple of output names, compiled fn)


def _compiled_outputs(model, names: tuple[str, ...]):
    """A tf.function returning the outputs of the Keras layers ``names`` (cached per model).
    Returns (fn, names the fn returns): a cached function whose outputs include every
    requested name is reused (the second look asks for a subset), not traced again."""
    hit = _COMPILED.get(id(model))
    if hit is not None and hit[0] is model and set(names) <= set(hit[1]):
        return hit[2], hit[1]
    import keras
    import tensorflow as tf
    sub = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    # one trace for every batch size (an input set's last, smaller batch included)
    shape = [None] + [d if d is None else int(d) for d in model.inputs[0].shape[1:]]
    fn = tf.function(lambda x: sub(x, training=False), jit_compile=False, reduce_retracing=True,
                     input_signature=[tf.TensorSpec(shape, tf.float32)])
    _COMPILED.clear()
    _COMPILED[id(model)] = (model, names, fn)
    return fn, names


def compiled_trace_count(model) -> int | None:
    """How many times the cached compiled Keras call of ``model`` was traced (None: none
    cached)."""
    hit = _COMPILED.get(id(model))
    if hit is None or hit[0] is not model:
        return None
    return int(hit[2].experimental_get_tracing_count())


class CompiledKerasFeed:
    """The Keras side in graph form: one compiled call computes every wanted output of the
    batch (same layers and weights as the eager feed); arrays are handed out in plan order
    and converted to numpy one at a time."""

    def __init__(self, model, plan, x_keras, cancel, wanted, timings, names):
        self._timings = timings
        t0 = time.perf_counter()
        fn, returned = _compiled_outputs(model, names)
        outs = fn(np.asarray(x_keras, dtype=np.float32))
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        by_name = dict(zip(returned, outs))
        self._items = [(n, by_name[n]) for n in names]
        self._i = 0
        timings["keras_s"] += time.perf_counter() - t0

    def next(self):
        if self._i >= len(self._items):
            return None
        t0 = time.perf_counter()
        name, t = self._items[self._i]
        self._items[self._i] = (name, None)
        self._i += 1
        arr = np.asarray(t)
        self._timings["keras_s"] += time.perf_counter() - t0
        return name, arr

    def close(self):
        self._items = []


def outputs_bytes(graph, plan, wanted, batch: int) -> int | None:
    """The float32 bytes of the Keras outputs ``wanted`` for a batch of ``batch`` samples (None
    when a size is unknown): ``batch`` times the per-sample size for tensors with the batch on
    axis 0; the whole tensor's actual size for those whose axis 0 is not the batch (a Lasagne
    dimshuffle / reshape moved or mixed it: ``(N*H*W, classes)`` holds H*W rows per sample)."""
    from ..shapes import sample_axes, shapes_for_batch

    axes = sample_axes(graph)
    concrete = None
    total = 0
    for m in plan.mappings:
        if m.keras_output not in wanted:
            continue
        node = graph.node(m.source)
        if node.outputs and axes.get(node.outputs[0], 0) != 0:     # a whole tensor
            if concrete is None:
                try:
                    concrete = shapes_for_batch(graph, batch)
                except Exception:  # noqa: BLE001 - a graph that cannot take this batch: unknown
                    return None
            shp = concrete.get(node.outputs[0])
            if not shp or any(d is None for d in shp):
                return None
            total += 4 * int(np.prod([int(d) for d in shp]))
            continue
        shp = node.out_shape
        if not shp or any(d is None for d in shp[1:]):
            return None
        total += 4 * batch * int(np.prod([int(d) for d in shp[1:]]))
    return total


def keras_feed(model, plan, x_keras, cancel, wanted, timings, graph):
    """The compiled feed when every wanted output is known and fits COMPILED_MAX_BYTES
    (:func:`outputs_bytes`), else the eager layer-by-layer feed (bounded memory on big models)."""
    order = [s.name for s in plan.keras_layers if s.name in wanted]
    first = next(iter(x_keras.values())) if isinstance(x_keras, dict) else x_keras
    batch = int(first.shape[0])
    total = outputs_bytes(graph, plan, wanted, batch)
    if total is not None and total <= COMPILED_MAX_BYTES and len(order) == len(wanted) \
            and len(plan.keras_layers) <= COMPILED_MAX_LAYERS \
            and not isinstance(x_keras, dict) and len(model.inputs) == 1:
        try:
            return CompiledKerasFeed(model, plan, x_keras, cancel, wanted, timings, tuple(order))
        except Exception:  # noqa: BLE001 - a model the functional API cannot cut: the eager feed
            _COMPILED.clear()
    return KerasFeed(model, plan, x_keras, cancel, wanted, timings)
