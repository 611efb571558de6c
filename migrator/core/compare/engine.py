"""Streaming layer-by-layer comparison of a reference runtime against the Keras model.

Both sides run once, in graph order, as generators; each source node's output is compared
with the output of its Keras counterpart (``NodeMapping.keras_output``) as soon as both are
available, then both arrays are dropped.  Only outputs still awaited by the other side are
held, so memory stays bounded on big models (never every activation of both sides).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..errors import Cancelled, MigratorError
from ..reference.runtimes import get_runtime
from ..shapes import sample_axes
from .feeds import KerasFeed, keras_feed
from .isolate import second_look
from .metrics import (
    FLOAT32_FACTOR,
    ComparisonResult,
    LayerResult,
    Tolerances,
    compare_arrays,
    inputs_to_keras,
    to_source_layout,
    topk_agreement,
)

_TF32_OFF = False


def strict_float32() -> bool:
    """Turn TensorFloat-32 off for verification (TensorFlow enables it by default on Ampere
    and newer GPUs: ~1e-3 relative error on float32 matmul/conv, which fails a correct
    model).  Returns True when it is off."""
    global _TF32_OFF
    if not _TF32_OFF:
        try:
            import tensorflow as tf
            tf.config.experimental.enable_tensor_float_32_execution(False)
            _TF32_OFF = not tf.config.experimental.tensor_float_32_execution_enabled()
        except Exception:  # noqa: BLE001 - an old TensorFlow without the switch
            _TF32_OFF = False
    return _TF32_OFF


def device_description() -> str:
    """Where Keras runs, and that TF32 is off on a GPU."""
    from ..keras_build.executor import keras_device_description
    d = keras_device_description()
    if d.startswith("GPU"):
        d += "; TF32 off" if strict_float32() else "; TF32 could not be turned off"
    return d


def _runtime(name: str, settings: dict):
    return get_runtime(name, **settings)


def run_comparison(graph, plan, model, x: np.ndarray, *, runtime: str = "builtin",
                   runtime_settings: dict | None = None, tolerances: Tolerances | None = None,
                   input_desc: dict | None = None,
                   progress: Callable[[float, str], None] | None = None,
                   cancel: Callable[[], bool] | None = None,
                   chunk_bytes: int = 64 << 20, isolate_failures: bool = True,
                   precision: str = "failing", compiled: bool = True) -> ComparisonResult:
    """Compare layer by layer; ``compiled`` runs the Keras side as one graph-mode call
    when its outputs fit COMPILED_MAX_BYTES (else eager layer by layer); ``precision`` chooses the float64 second look: 'failing'
    (default: the layers over the plain tolerance), 'all' (every compared layer: the
    budget figures for the whole table, one more reference pass) or 'off'."""
    from ..keras_build.executor import keras_device_description

    strict_float32()
    if precision not in ("failing", "all", "off"):
        raise MigratorError(f"precision must be 'failing', 'all' or 'off', not {precision!r}")
    box: dict = {}

    tolerances = tolerances or Tolerances()
    rt = _runtime(runtime, runtime_settings or {})
    why = rt.check(graph)
    if why:
        raise MigratorError(f"the '{runtime}' reference runtime cannot run this model: {why}")
    if isinstance(x, dict):       # several network inputs, keyed by source input name
        x = {k: np.asarray(v, dtype=np.float32) for k, v in x.items()}
        x_keras = inputs_to_keras(plan, x)
        shape_desc = {k: list(v.shape) for k, v in x.items()}
    else:
        x = np.asarray(x, dtype=np.float32)
        x_keras = inputs_to_keras(plan, x)
        shape_desc = list(x.shape)
    n_nodes = max(1, len(graph.nodes))

    # how many source nodes read each Keras output (Split aliases, fused pairs)
    in_model = {layer.name for layer in model.layers}
    wanted: dict[str, int] = {}
    for m in plan.mappings:
        if m.keras_output and m.keras_output in in_model:
            wanted[m.keras_output] = wanted.get(m.keras_output, 0) + 1
    # every further output of a multi-output node (Slice/Split tops, ...) is compared too
    extra = _further_outputs(graph, plan, in_model)
    for names in extra.values():
        for _i, kname in names:
            wanted[kname] = wanted.get(kname, 0) + 1

    timings = {"reference_s": 0.0, "keras_s": 0.0, "metrics_s": 0.0}
    k_feed = (keras_feed(model, plan, x_keras, cancel, wanted, timings, graph) if compiled
              else KerasFeed(model, plan, x_keras, cancel, wanted, timings))
    k_buf: dict[str, np.ndarray] = {}

    def pull_keras(name: str) -> np.ndarray | None:
        while name not in k_buf:
            item = k_feed.next()
            if item is None:
                break
            k_buf[item[0]] = item[1]
        return k_buf.get(name)

    whole = whole_tensors(graph)
    results: dict[str, LayerResult] = {}
    final_pairs: list[tuple[np.ndarray, np.ndarray]] = []
    ref_outputs: dict[str, np.ndarray] = {}
    outputs = set(graph.output_tensors)
    cancelled = False
    r_iter = rt.run(graph, x, cancel=cancel)
    steps = 0
    try:
        exhausted = False
        while not exhausted:
            # 1. run the reference over a chunk of layers (bounded by chunk_bytes) ...
            chunk: list[tuple[str, list]] = []
            held = 0
            while held < chunk_bytes:
                if cancel is not None and cancel():
                    raise Cancelled()
                t0 = time.perf_counter()
                try:
                    name, ref_outs = next(r_iter)
                except StopIteration:
                    exhausted = True
                    break
                finally:
                    timings["reference_s"] += time.perf_counter() - t0
                chunk.append((name, ref_outs))
                held += sum(getattr(a, "nbytes", 0) for a in ref_outs)
                steps += 1
                if progress:
                    progress(min(0.999, steps / (2 * n_nodes)), f"reference: {name}")
            # 2. ... then the Keras side over the same layers, comparing as outputs arrive.
            # Alternating per layer was measured slower: both sides' thread pools (OpenBLAS,
            # TensorFlow) contend for the cores and lose their caches at every switch.
            for name, ref_outs in chunk:
                if cancel is not None and cancel():
                    raise Cancelled()
                node = graph.node(name)
                m = plan.mapping(name)
                steps += 1
                if progress:
                    progress(min(0.999, steps / (2 * n_nodes)), f"comparing {name}")
                lr = LayerResult(source=name, source_type=node.source_type, keras=m.keras_output,
                                 layout=m.layout, shape=tuple(ref_outs[0].shape) if ref_outs else None,
                                 status="not-compared", whole=name in whole)
                if m.keras_output is None:
                    lr.status = "fused" if m.fused_into else "not-compared"
                    lr.note = (f"fused: computed together with '{m.fused_into}'" if m.fused_into
                               else "no Keras counterpart")
                    results[name] = lr
                    continue
                if m.keras_output not in in_model:
                    lr.note = (f"Keras layer '{m.keras_output}' is not part of the model: no model "
                               "output depends on it (e.g. a branch that only gives a Crop its shape)")
                    results[name] = lr
                    continue
                got = pull_keras(m.keras_output)
                if got is None:
                    lr.note = f"Keras layer '{m.keras_output}' produced no output"
                    lr.status = "fail"
                    results[name] = lr
                    continue
                ref = np.asarray(ref_outs[0])
                if name in outputs:       # kept for re-checking exported artifacts (export.py)
                    ref_outputs[name] = ref
                t0 = time.perf_counter()
                got_src = to_source_layout(got, ref.ndim, m.layout)
                tol = tolerances.for_layer(name)
                lr.tolerance = tol
                if got_src.shape != ref.shape:
                    lr.status = "fail"
                    lr.note = f"shape mismatch: reference {ref.shape} vs Keras {got_src.shape}"
                else:
                    met = compare_arrays(ref, got_src, tol, whole=lr.whole)
                    lr.max_abs, lr.mean_abs, lr.max_rel = met["max_abs"], met["mean_abs"], met["max_rel"]
                    lr.scale, lr.needed_rtol = met["scale"], met["needed_rtol"]
                    lr.channel_max_abs = met["channel_max_abs"]
                    lr.channel_mean_abs = met["channel_mean_abs"]
                    lr.channel_ref_absmax = met["channel_ref_absmax"]
                    lr.worst_channel, lr.worst_index = met["worst_channel"], met["worst_index"]
                    lr.status = "pass" if met["passed"] else "fail"
                    lr.samples = {"max_abs": met["sample_max_abs"], "scale": met["sample_scale"],
                                  "passed": met["sample_passed"], "max_rel": met["sample_max_rel"],
                                  "needed_rtol": met["sample_needed_rtol"]}
                    if met["nonfinite"]:
                        lr.note = "non-finite values in the Keras output"
                    if name in outputs and not lr.whole:
                        final_pairs.append((ref, got_src))
                timings["metrics_s"] += time.perf_counter() - t0
                if name in extra:
                    _compare_further_outputs(lr, extra[name], ref_outs, pull_keras, tol, graph, whole,
                                             m.layout)
                    for _i, kname in extra[name]:
                        wanted[kname] -= 1
                        if wanted[kname] <= 0:
                            k_buf.pop(kname, None)
                results[name] = lr
                wanted[m.keras_output] -= 1
                if wanted[m.keras_output] <= 0:
                    k_buf.pop(m.keras_output, None)
    except Cancelled:
        cancelled = True
    finally:
        k_feed.close()
        close = getattr(r_iter, "close", None)
        if close:
            close()

    layers = []
    for node in graph.nodes:
        if node.name in results:
            layers.append(results[node.name])
        else:
            m = plan.mapping(node.name)
            layers.append(LayerResult(source=node.name, source_type=node.source_type,
                                      keras=m.keras_output, layout=m.layout, shape=node.out_shape,
                                      status="not-compared", whole=node.name in whole,
                                      note="cancelled" if cancelled else
                                      f"not observed by the '{runtime}' runtime"))
    _apply_second_look(graph, plan, model, x, layers, rt, tolerances, precision,
                       isolate_failures and not cancelled, progress, cancel, timings, box, compiled)
    cancelled = cancelled or box.get("cancelled", False)
    topk = None
    for ref, got in final_pairs:
        if (ref.ndim == 2 or (ref.ndim == 4 and ref.shape[2:] == (1, 1))) \
                and ref.reshape(ref.shape[0], -1).shape[1] >= 2:
            topk = topk_agreement(ref, got)
    if progress:
        progress(1.0, "comparison finished" if not cancelled else "comparison cancelled")
    res = ComparisonResult(layers=layers, runtime=rt.describe(), device=keras_device_description(),
                           input=input_desc or {"shape": shape_desc}, tolerances=tolerances,
                           topk=topk, timings=timings, cancelled=cancelled,
                           float32_factor=FLOAT32_FACTOR, precision=precision,
                           budget_note=box.get("note"))
    # the comparison input and the reference's final outputs (source layout), for checking
    # each exported artifact against the reference (migrator.core.export)
    res.input_array = x
    res.reference_outputs = ref_outputs
    return res


def _further_outputs(graph, plan, in_model) -> dict[str, list[tuple[int, str]]]:
    """node -> [(output index >= 1, the Keras layer producing it)] for multi-output nodes."""
    out: dict[str, list[tuple[int, str]]] = {}
    for node in graph.nodes:
        if len(node.outputs) < 2:
            continue
        m = plan.mapping(node.name)
        if not m.keras_output:
            continue
        by_tensor = {spec.output: spec.name for spec in m.layers}
        pairs = [(i, by_tensor[t]) for i, t in enumerate(node.outputs)
                 if i > 0 and by_tensor.get(t) in in_model and by_tensor[t] != m.keras_output]
        if pairs:
            out[node.name] = pairs
    return out


def whole_tensors(graph) -> set[str]:
    """Names of the nodes whose (first) output does not have the batch on axis 0 (a Lasagne
    dimshuffle or reshape moved or mixed it): compared as one whole tensor."""
    axes = sample_axes(graph)
    return {n.name for n in graph.nodes if n.outputs and axes.get(n.outputs[0], 0) != 0}


def _compare_further_outputs(lr: LayerResult, pairs, ref_outs, pull_keras, tol, graph=None,
                             whole=frozenset(), layout=None) -> None:
    """Compare output i >= 1 of a multi-output node; the layer fails when any output does (its
    figures stay those of output 0; ``lr.outputs`` lists every output's)."""
    rows = [{"output": 0, "keras": lr.keras, "max_abs": lr.max_abs, "max_rel": lr.max_rel,
             "passed": lr.status == "pass"}]
    for i, kname in pairs:
        row = {"output": i, "keras": kname, "max_abs": float("nan"), "max_rel": float("nan"), "passed": False}
        got = pull_keras(kname)
        if got is not None and i < len(ref_outs):
            ref = np.asarray(ref_outs[i])
            got_src = to_source_layout(got, ref.ndim, layout)
            if got_src.shape == ref.shape:
                met = compare_arrays(ref, got_src, tol, whole=lr.source in whole)
                row.update(max_abs=met["max_abs"], max_rel=met["max_rel"], passed=bool(met["passed"]))
            else:
                row["note"] = f"shape mismatch: reference {ref.shape} vs Keras {got_src.shape}"
        rows.append(row)
    lr.outputs = rows
    bad = [r for r in rows[1:] if not r["passed"]]
    if bad:
        lr.status = "fail"
        lr.basis = "output"          # no float32-budget second look can pass another output's error
        b = bad[0]
        lr.note = (f"output {b['output']} (Keras '{b['keras']}') differs: max abs {b['max_abs']:.3g}, "
                   f"max rel {b['max_rel']:.3g}" + (f"; {b['note']}" if b.get("note") else ""))


def _apply_second_look(graph, plan, model, x, layers, rt, tolerances, precision, enabled,
                       progress, cancel, timings, box, compiled=True) -> None:
    """Isolated error, float64 budget and chained drift for the layers over the plain
    tolerance (or all compared layers), then the verdict of each: a layer over the
    tolerance passes when it reproduces the reference on the reference's own inputs AND
    its drift from the float64 reference is within FLOAT32_FACTOR x the float32
    reference's own drift (+ atol)."""
    for r in layers:
        if r.status == "pass":
            r.basis = "tolerance"
    failing = [r.source for r in layers if r.status == "fail"]
    if not enabled:
        return
    if precision == "all":
        looked = [r.source for r in layers if r.status in ("pass", "fail")]
    else:
        looked = failing
    if not looked:
        return
    if progress:
        progress(0.999, f"second look at {len(looked)} layer(s): isolated and float64")
    t0 = time.perf_counter()
    try:
        res, note = second_look(graph, plan, model, x, looked, runtime=rt, tolerances=tolerances,
                                cancel=cancel, float64=precision != "off", compiled=compiled,
                                whole=whole_tensors(graph))
    except Cancelled:
        res, note = {}, None
        box["cancelled"] = True
    timings["isolation_s"] = time.perf_counter() - t0
    box["note"] = note
    factor = FLOAT32_FACTOR
    for r in layers:
        e = res.get(r.source)
        if e is None:
            continue
        if "isolated" in e:
            r.isolated = e["isolated"]
        r.budget64 = float(e.get("budget64", float("nan")))
        r.drift64 = float(e.get("drift64", float("nan")))
        r.anchor64 = float(e.get("anchor64", float("nan")))
        if r.samples is not None:
            for key in ("budget64", "drift64", "anchor64"):
                if key + "_s" in e:
                    r.samples[key] = e[key + "_s"]
            if r.isolated is not None and "sample_passed" in r.isolated:
                r.samples["isolated_passed"] = np.asarray(r.isolated["sample_passed"], bool)
        if r.status != "fail" or box.get("cancelled") or r.basis == "output":
            continue
        anchor_factor = getattr(rt, "anchor_factor", factor)
        r.status, r.basis = judge(r, factor, tolerances, anchor_factor)
        if r.basis == "unconfirmed":
            r.note = (f"float32 budget not confirmed by the '{rt.name}' reference: it is "
                      f"{r.anchor64:.3g} from the float64 anchor, more than {anchor_factor:g}x float32's own "
                      f"{r.budget64:.3g}")


def judge(r, factor: float, tolerances, anchor_factor: float | None = None) -> tuple[str, str]:
    """The verdict of a layer over the plain tolerance, per sample: each sample passes on
    the plain tolerance, or (it reproduces the reference in isolation AND its drift from
    the float64 reference is <= factor x float32's own drift + atol AND the chosen reference
    runtime confirms the float64 anchor: ``anchor64 <= anchor_factor x budget64 + atol``, the
    runtime's own factor, default ``factor``).  The
    float64 anchor is Migrator's own numpy code; a pass that only it vouches for is no pass.
    Returns (status, basis); basis 'unconfirmed' when the budget would have passed the layer
    but the runtime disagrees with the anchor."""
    if r.isolated is not None and not r.isolated.get("passed", False) and \
            "sample_passed" not in r.isolated:
        return "fail", "isolated"
    if r.isolated is None or not (np.isfinite(r.budget64) and np.isfinite(r.drift64)) \
            or not np.isfinite(r.max_abs):
        return "fail", "tolerance"
    atol = (r.tolerance or tolerances.for_layer(r.source)).atol
    smp = r.samples or {}
    plain = np.asarray(smp.get("passed", [False]), bool)
    iso = np.asarray(r.isolated.get("sample_passed", [r.isolated.get("passed", False)]), bool)
    drift = np.asarray(smp.get("drift64", [r.drift64]), float)
    budget = np.asarray(smp.get("budget64", [r.budget64]), float)
    anchor = np.asarray(smp.get("anchor64", [getattr(r, "anchor64", np.nan)]), float)
    if not (len(plain) == len(iso) == len(drift) == len(budget) == len(anchor)):
        plain, iso = plain.all(keepdims=True), iso.all(keepdims=True)
        drift, budget = np.array([r.drift64]), np.array([r.budget64])
        anchor = np.array([getattr(r, "anchor64", np.nan)])
    af = factor if anchor_factor is None else anchor_factor
    confirmed = np.isfinite(anchor) & (anchor <= af * budget + atol)
    by_budget = iso & np.isfinite(drift) & (drift <= factor * budget + atol)
    ok = plain | (by_budget & confirmed)
    if ok.all():
        return "pass", "float32"
    bad = ~ok
    if (bad & ~iso).any():
        return "fail", "isolated"
    if (bad & by_budget & ~confirmed).any():
        return "fail", "unconfirmed"
    return "fail", "drift"
