"""Isolated checks: is a failing layer *itself* wrong, or does it only inherit error?

The chained comparison feeds Keras its own outputs, so float32 rounding can grow along a
deep or badly conditioned network until a layer fails although every mapping is exact.
For the layers that failed, we run each layer's Keras counterpart once more on the
*reference's* inputs (converted to the Keras layout) and compare with the reference
output.  A layer that also fails in isolation is a mapping error (the root cause); one that
passes in isolation only inherited error from upstream.

The same pass (:func:`second_look`) also measures what float32 itself costs: the
built-in numpy reference runs once more in float64 and, per looked-at layer,
``budget64 = max |numpy32 - numpy64|`` (what float32 arithmetic itself costs there),
``drift64 = max |keras - numpy64|`` (the chained Keras drift, Keras run again up to the
last looked-at layer) and ``anchor64 = max |runtime - numpy64|``: how far the *chosen*
reference runtime is from that float64 anchor.  The float64 anchor is Migrator's own numpy
code, so it vouches for nothing by itself: the budget may only be used where the chosen
runtime confirms it (``anchor64 <= factor * budget64 + atol``, see
:func:`migrator.core.compare.engine.judge`).  For the built-in runtime numpy32 *is* the
runtime (``anchor64 == budget64``); for OpenCV or a real framework a separate numpy float32
stream runs too.  The streams advance in graph order; only the arrays of the looked-at
layers and the inputs they need are held.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import Cancelled
from ..mapping.plan import external_inputs
from ..reference import numpy_ref
from ..reference.runtimes import BuiltinRuntime, input_dict
from .feeds import keras_feed
from .metrics import Tolerances, compare_arrays, inputs_to_keras, to_keras_layout, to_source_layout


def _chains(plan) -> dict[str, tuple[object, list]]:
    """keras layer name -> (host mapping, the host's specs up to and including that layer)."""
    out = {}
    for m in plan.mappings:
        for i, spec in enumerate(m.layers):
            out[spec.name] = (m, m.layers[: i + 1])
    return out


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64 (NaN/inf propagate as inf)."""
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    if d.size == 0:
        return 0.0
    m = float(d.max())
    return m if np.isfinite(m) else float("inf")


def _max_abs_diff_per_sample(a: np.ndarray, b: np.ndarray, whole: bool = False) -> np.ndarray:
    """(N,) max |a - b| per sample (axis 0), in float64; inf where non-finite.  ``whole``:
    axis 0 is not the batch: one value for the whole tensor."""
    a = np.asarray(a)
    if a.ndim < 2 or whole:
        return np.array([_max_abs_diff(a, b)])
    d = np.abs(a.astype(np.float64) - np.asarray(b, dtype=np.float64)).reshape(a.shape[0], -1)
    if d.shape[1] == 0:
        return np.zeros(a.shape[0])
    m = d.max(axis=1)
    m[~np.isfinite(m)] = np.inf
    return m


def numpy_stream(graph, x, cancel=None, dtype=np.float64):
    """The built-in numpy reference as a stream in ``dtype`` (``None`` and the reason when it
    cannot run): float64 is the anchor, float32 measures what float32 itself costs."""
    why = BuiltinRuntime().check(graph)
    if why:
        return None, f"the float64 reference cannot run this model: {why}"
    return numpy_ref.run(graph, input_dict(graph, x), cancel=cancel, dtype=dtype), None


def second_look(graph, plan, model, x, names: Iterable[str], *, runtime, tolerances: Tolerances,
                cancel: Callable[[], bool] | None = None, float64: bool = True,
                isolate: Iterable[str] | None = None,
                compiled: bool = True, whole: Iterable[str] = ()) -> tuple[dict[str, dict], str | None]:
    """For each source node in ``names``: ``{'isolated': {...} | absent, 'budget64': float,
    'drift64': float}`` (keys only when measurable) and a note when no float64 budget could
    be measured.  ``isolate`` restricts the isolated re-runs (default: all of ``names``);
    ``whole``: nodes whose output's axis 0 is not the batch (figures of the whole tensor).
    ``runtime`` is a Runtime object (run again once); ``x`` the source-layout input."""
    from ..keras_build.builder import MERGE_LAYERS
    from ..keras_build.plain import spec_callables

    names = [n for n in names]
    looked = set(names)
    whole = set(whole)
    iso_names = looked if isolate is None else set(isolate) & looked
    chains = _chains(plan)
    model_layers = {layer.name for layer in model.layers}
    targets: dict[str, tuple[list, list[str]]] = {}
    for name in iso_names:
        m = plan.mapping(name)
        if not m.keras_output or m.keras_output not in chains:
            continue
        _host, specs = chains[m.keras_output]
        if any(s.class_name == "Input" for s in specs):
            continue
        if any(s.name not in model_layers for s in specs):
            continue                      # pruned from the model: nothing depends on it
        targets[name] = (specs, external_inputs(specs))
    results: dict[str, dict] = {n: {} for n in names}
    if not looked:
        return results, None
    uses: dict[str, int] = {}
    for _, ext in targets.values():
        for t in ext:
            uses[t] = uses.get(t, 0) + 1
    layers = spec_callables(model, plan)      # a construct: its part of the model's graph

    # float64 reference and chained Keras (only for the float64 budget)
    it64, note = (None, None)
    k_it = None
    k_uses: dict[str, int] = {}
    it32 = None
    builtin = getattr(runtime, "name", "") == "builtin"
    if float64:
        it64, note = numpy_stream(graph, x, cancel)
        if it64 is not None and not builtin:
            it32, _ = numpy_stream(graph, x, cancel, dtype=np.float32)
        for n in names:
            ko = plan.mapping(n).keras_output
            if ko and ko in model_layers:
                k_uses[ko] = k_uses.get(ko, 0) + 1
        if it64 is not None and k_uses:
            # the same Keras feed as the chained comparison (compiled when it fits)
            xk = inputs_to_keras(plan, {k: np.asarray(v, np.float32) for k, v in x.items()}
                                 if isinstance(x, dict) else np.asarray(x, np.float32))
            k_it = keras_feed(model, plan, xk, cancel, dict(k_uses),
                               {"keras_s": 0.0}, graph) if compiled else None
            if k_it is None:
                from ..keras_build.executor import iter_keras_outputs
                k_it = iter_keras_outputs(model, plan, xk, want=set(k_uses), cancel=cancel)
    kbuf: dict[str, np.ndarray] = {}
    state = {"donek": k_it is None}

    def puller(stream):
        buf: dict[str, np.ndarray] = {}
        done = [stream is None]

        def pull(name):
            while name not in buf and not done[0]:
                try:
                    n, outs = next(stream)
                except StopIteration:
                    done[0] = True
                    break
                if n in looked and outs:
                    buf[n] = outs[0]
            return buf.pop(name, None)
        return pull

    pull64, pull32 = puller(it64), puller(it32)

    def pullk(kname):
        while kname not in kbuf and not state["donek"]:
            try:
                item = k_it.next() if hasattr(k_it, "next") else next(k_it)
            except StopIteration:
                item = None
            if item is None:
                state["donek"] = True
                break
            kbuf[item[0]] = item[1]
        return kbuf.get(kname)

    held: dict[str, np.ndarray] = {}
    remaining = set(looked)
    it = runtime.run(graph, x, cancel=cancel)
    try:
        for name, outs in it:
            if cancel is not None and cancel():
                raise Cancelled()
            node = graph.node(name)
            for tid, arr in zip(node.outputs, outs):
                if tid in uses:
                    held[tid] = np.asarray(arr)
            if name not in looked:
                continue
            remaining.discard(name)
            ref = np.asarray(outs[0]) if outs else None
            entry = results[name]
            if ref is not None and it64 is not None:
                r64 = pull64(name)
                n32 = ref if builtin else pull32(name)
                if r64 is not None and r64.shape == ref.shape and n32 is not None and n32.shape == r64.shape:
                    for key, a in (("budget64", n32), ("anchor64", ref)):
                        entry[key + "_s"] = _max_abs_diff_per_sample(a, r64, name in whole)
                        entry[key] = float(entry[key + "_s"].max()) if entry[key + "_s"].size else 0.0
                    ko = plan.mapping(name).keras_output
                    if ko in k_uses:
                        got = pullk(ko)
                        if got is not None:
                            got_src = to_source_layout(got, ref.ndim, plan.layout_of(name))
                            if got_src.shape == r64.shape:
                                entry["drift64_s"] = _max_abs_diff_per_sample(got_src, r64,
                                                                              name in whole)
                                entry["drift64"] = (float(entry["drift64_s"].max())
                                                    if entry["drift64_s"].size else 0.0)
                        k_uses[ko] -= 1
                        if k_uses[ko] <= 0:
                            kbuf.pop(ko, None)
                    # keras outputs of layers before this one are never asked for again
                del r64, n32
            if name in targets and ref is not None:
                specs, ext = targets[name]
                if all(t in held for t in ext):
                    tensors = {t: to_keras_layout(held[t], plan.tensor_layouts.get(t)) for t in ext}
                    out = None
                    for s in specs:
                        ins = [tensors[t] for t in s.inputs]
                        arg = ins if s.class_name in MERGE_LAYERS or len(ins) > 1 else ins[0]
                        out = layers[s.name](arg, training=False)
                        tensors[s.output] = out
                    got_src = to_source_layout(np.asarray(out), ref.ndim, plan.layout_of(name))
                    if got_src.shape == ref.shape:
                        met = compare_arrays(ref, got_src, tolerances.for_layer(name),
                                             whole=name in whole)
                        entry["isolated"] = {"max_abs": met["max_abs"], "max_rel": met["max_rel"],
                                             "needed_rtol": met["needed_rtol"],
                                             "passed": bool(met["passed"]),
                                             "worst_channel": met["worst_channel"],
                                             "sample_passed": [bool(v) for v in met["sample_passed"]]}
                for t in ext:
                    uses[t] -= 1
                    if uses[t] <= 0:
                        held.pop(t, None)
            if not remaining:
                break
    finally:
        for g in (it, it64, it32, k_it):
            close = getattr(g, "close", None)
            if close:
                close()
    return results, note
