"""Streaming layer-by-layer comparison of a reference runtime against the Keras model.

Both sides run once, in graph order, as generators; each source node's output is compared
with the output of its Keras counterpart (``NodeMapping.keras_output``) as soon as both are
available, then both arrays are dropped.  Only outputs still awaited by the other side are
held, so memory stays bounded on big models (never every activation of both sides).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..errors import Cancelled, MigratorError
from .metrics import (ComparisonResult, LayerResult, Tolerances, compare_arrays, to_source_layout,
                      to_keras_layout, topk_agreement)


def _runtime(name: str, settings: dict):
    from ..reference.runtimes import get_runtime
    return get_runtime(name, **settings)


class _KerasFeed:
    """Runs the Keras side in a worker thread, one layer ahead of the reference side, through
    a small bounded queue: the two forward passes overlap (numpy and TensorFlow both release
    the GIL) while at most ``depth`` Keras outputs wait in memory."""

    _END = object()

    def __init__(self, model, plan, x_keras, cancel, wanted, timings, depth: int = 4):
        import queue
        import threading

        from ..keras_build.executor import iter_keras_outputs
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._timings = timings
        user_cancel = cancel

        def stop():
            return self._stop.is_set() or (user_cancel is not None and user_cancel())

        def work():
            t0 = time.perf_counter()
            try:
                for name, arr in iter_keras_outputs(model, plan, x_keras, cancel=stop):
                    if name in wanted and not self._put((name, np.asarray(arr))):
                        return
            except Cancelled:
                pass
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
                self._put(("__error__", e))
            finally:
                timings["keras_s"] = time.perf_counter() - t0
                self._put(self._END)

        self._thread = threading.Thread(target=work, name="migrator-keras-feed", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self):
        item = self._q.get()
        if item is self._END:
            self._q.put(self._END)   # stay at the end for later calls
            return None
        if item[0] == "__error__":
            raise item[1]
        return item

    def close(self):
        import queue
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


def run_comparison(graph, plan, model, x: np.ndarray, *, runtime: str = "builtin",
                   runtime_settings: dict | None = None, tolerances: Tolerances | None = None,
                   input_desc: dict | None = None,
                   progress: Callable[[float, str], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> ComparisonResult:
    from ..keras_build.executor import keras_device_description

    tolerances = tolerances or Tolerances()
    rt = _runtime(runtime, runtime_settings or {})
    why = rt.check(graph)
    if why:
        raise MigratorError(f"the '{runtime}' reference runtime cannot run this model: {why}")
    x = np.asarray(x, dtype=np.float32)
    n_nodes = max(1, len(graph.nodes))

    # how many source nodes read each Keras output (Split aliases, fused pairs)
    wanted: dict[str, int] = {}
    for m in plan.mappings:
        if m.keras_output:
            wanted[m.keras_output] = wanted.get(m.keras_output, 0) + 1

    timings = {"reference_s": 0.0, "keras_s": 0.0, "metrics_s": 0.0}
    k_feed = _KerasFeed(model, plan, to_keras_layout(x), cancel, wanted, timings)
    k_buf: dict[str, np.ndarray] = {}

    def pull_keras(name: str) -> np.ndarray | None:
        while name not in k_buf:
            item = k_feed.next()
            if item is None:
                break
            k_buf[item[0]] = item[1]
        return k_buf.get(name)

    results: dict[str, LayerResult] = {}
    final_pairs: list[tuple[np.ndarray, np.ndarray]] = []
    outputs = set(graph.output_tensors)
    cancelled = False
    r_iter = rt.run(graph, x, cancel=cancel)
    i = 0
    try:
        while True:
            if cancel is not None and cancel():
                raise Cancelled()
            t0 = time.perf_counter()
            try:
                name, ref_outs = next(r_iter)
            except StopIteration:
                break
            finally:
                timings["reference_s"] += time.perf_counter() - t0
            i += 1
            node = graph.node(name)
            m = plan.mapping(name)
            if progress:
                progress(min(0.999, graph.nodes.index(node) / n_nodes) if n_nodes < 2000 else i / n_nodes,
                         f"comparing {name}")
            lr = LayerResult(source=name, source_type=node.source_type, keras=m.keras_output,
                             layout=m.layout, shape=tuple(ref_outs[0].shape) if ref_outs else None,
                             status="not-compared")
            if m.keras_output is None:
                lr.status = "fused" if m.fused_into else "not-compared"
                lr.note = (f"fused: computed together with '{m.fused_into}'" if m.fused_into
                           else "no Keras counterpart")
                results[name] = lr
                continue
            got = pull_keras(m.keras_output)
            if got is None:
                lr.note = f"Keras layer '{m.keras_output}' produced no output"
                lr.status = "fail"
                results[name] = lr
                continue
            ref = np.asarray(ref_outs[0])
            t0 = time.perf_counter()
            got_src = to_source_layout(got, ref.ndim)
            tol = tolerances.for_layer(name)
            lr.tolerance = tol
            if got_src.shape != ref.shape:
                lr.status = "fail"
                lr.note = f"shape mismatch: reference {ref.shape} vs Keras {got_src.shape}"
            else:
                met = compare_arrays(ref, got_src, tol)
                lr.max_abs, lr.mean_abs, lr.max_rel = met["max_abs"], met["mean_abs"], met["max_rel"]
                lr.scale, lr.needed_rtol = met["scale"], met["needed_rtol"]
                lr.channel_max_abs = met["channel_max_abs"]
                lr.channel_mean_abs = met["channel_mean_abs"]
                lr.channel_ref_absmax = met["channel_ref_absmax"]
                lr.worst_channel, lr.worst_index = met["worst_channel"], met["worst_index"]
                lr.status = "pass" if met["passed"] else "fail"
                if met["nonfinite"]:
                    lr.note = "non-finite values in the Keras output"
                if name in outputs:
                    final_pairs.append((ref, got_src))
            timings["metrics_s"] += time.perf_counter() - t0
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
                                      status="not-compared",
                                      note="cancelled" if cancelled else
                                      f"not observed by the '{runtime}' runtime"))
    topk = None
    for ref, got in final_pairs:
        if ref.ndim == 2 or (ref.ndim == 4 and ref.shape[2:] == (1, 1)):
            if ref.reshape(ref.shape[0], -1).shape[1] >= 2:
                topk = topk_agreement(ref, got)
    if progress:
        progress(1.0, "comparison finished" if not cancelled else "comparison cancelled")
    return ComparisonResult(layers=layers, runtime=rt.describe(), device=keras_device_description(),
                            input=input_desc or {"shape": list(x.shape)}, tolerances=tolerances,
                            topk=topk, timings=timings, cancelled=cancelled)
