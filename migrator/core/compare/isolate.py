"""Isolated checks: is a failing layer *itself* wrong, or does it only inherit error?

The chained comparison feeds Keras its own outputs, so float32 rounding can grow along a
deep or badly conditioned network until a layer fails although every mapping is exact.
For the layers that failed, we run each layer's Keras counterpart once more on the
*reference's* inputs (converted to the Keras layout) and compare with the reference
output.  A layer that also fails in isolation is a mapping error (the root cause); one that
passes in isolation only inherited error from upstream.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import Cancelled
from .metrics import Tolerances, compare_arrays, to_keras_layout, to_source_layout


def _chains(plan) -> dict[str, tuple[object, list]]:
    """keras layer name -> (host mapping, the host's specs up to and including that layer)."""
    out = {}
    for m in plan.mappings:
        for i, spec in enumerate(m.layers):
            out[spec.name] = (m, m.layers[: i + 1])
    return out


def _external_inputs(specs) -> list[str]:
    produced: set[str] = set()
    ext: list[str] = []
    for s in specs:
        for t in s.inputs:
            if t not in produced and t not in ext:
                ext.append(t)
        produced.add(s.output)
    return ext


def isolate_layers(graph, plan, model, x: np.ndarray, names: Iterable[str], *, runtime,
                   tolerances: Tolerances, cancel: Callable[[], bool] | None = None) -> dict[str, dict]:
    """For each source node in ``names`` (with a Keras counterpart), the metrics of its Keras
    layers run on the reference's inputs.  ``runtime`` is a Runtime object (run again once)."""
    from ..keras_build.builder import MERGE_LAYERS

    chains = _chains(plan)
    model_layers = {layer.name for layer in model.layers}
    targets: dict[str, tuple[list, list[str]]] = {}
    for name in names:
        m = plan.mapping(name)
        if not m.keras_output or m.keras_output not in chains:
            continue
        _host, specs = chains[m.keras_output]
        if any(s.class_name == "Input" for s in specs):
            continue
        if any(s.name not in model_layers for s in specs):
            continue                      # pruned from the model: nothing depends on it
        targets[name] = (specs, _external_inputs(specs))
    if not targets:
        return {}
    uses: dict[str, int] = {}
    for _, ext in targets.values():
        for t in ext:
            uses[t] = uses.get(t, 0) + 1
    layers = {layer.name: layer for layer in model.layers}
    held: dict[str, np.ndarray] = {}
    results: dict[str, dict] = {}
    it = runtime.run(graph, x, cancel=cancel)
    try:
        for name, outs in it:
            if cancel is not None and cancel():
                raise Cancelled()
            node = graph.node(name)
            for tid, arr in zip(node.outputs, outs):
                if tid in uses:
                    held[tid] = np.asarray(arr)
            if name not in targets:
                continue
            specs, ext = targets[name]
            if any(t not in held for t in ext):
                continue            # an input the runtime did not expose
            tensors = {t: to_keras_layout(held[t]) for t in ext}
            out = None
            for s in specs:
                ins = [tensors[t] for t in s.inputs]
                arg = ins if s.class_name in MERGE_LAYERS else ins[0]
                out = layers[s.name](arg, training=False)
                tensors[s.output] = out
            got = np.asarray(out)
            ref = np.asarray(outs[0])
            got_src = to_source_layout(got, ref.ndim)
            if got_src.shape == ref.shape:
                met = compare_arrays(ref, got_src, tolerances.for_layer(name))
                results[name] = {"max_abs": met["max_abs"], "max_rel": met["max_rel"],
                                 "needed_rtol": met["needed_rtol"], "passed": bool(met["passed"]),
                                 "worst_channel": met["worst_channel"]}
            for t in ext:
                uses[t] -= 1
                if uses[t] <= 0:
                    held.pop(t, None)
            if len(results) == len(targets):
                break
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
    return results
