"""Comparison on an input set: batch by batch, folded into set-level results.

Each batch is compared with :func:`.engine.run_comparison` (the verdict is per sample, see
:func:`.metrics.compare_arrays`), then folded into running per-layer figures: the worst
``max_abs`` over the set and which sample, per-channel worst, mean over all samples, the
top-1 agreement / top-k overlap over all N samples and the samples whose top-1 class
differs.  Only the current batch's arrays and the small per-layer figures are held, so
memory is bounded by the batch, not by the set.  Folding N single-sample comparisons gives
the same result as comparing the set (tests/core/test_inputs_sets.py).
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import Cancelled
from ..reference.runtimes import get_runtime
from .engine import run_comparison
from .metrics import ComparisonResult, LayerResult

_FIELDS_MAX = ("max_abs", "max_rel", "scale", "needed_rtol")


class SetFolder:
    """Accumulates per-batch :class:`ComparisonResult` s into one set-level result."""

    def __init__(self, names: list[str] | None = None):
        self.names = names
        self.layers: dict[str, LayerResult] = {}
        self.order: list[str] = []
        self.n = 0
        self.first: ComparisonResult | None = None
        self.timings: dict[str, float] = {}
        self.topk_k: int | None = None
        self.top1: list[bool] = []
        self.overlap: list[float] = []
        self.ref_top1: list[int] = []
        self.keras_top1: list[int] = []
        self.topk_first: dict | None = None
        self.cancelled = False
        self.budget_note: str | None = None

    def add(self, res: ComparisonResult, start: int, n: int) -> None:
        if self.first is None:
            self.first = res
        for k, v in res.timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.cancelled = self.cancelled or res.cancelled
        self.budget_note = self.budget_note or res.budget_note
        for r in res.layers:
            self._fold_layer(r, start, n)
        if res.topk:
            t = res.topk
            ps = t.get("per_sample") or {}
            self.topk_k = t["k"]
            if self.topk_first is None:
                self.topk_first = {"reference_top": t.get("reference_top"), "keras_top": t.get("keras_top")}
            self.top1 += list(ps.get("top1_match", []))
            self.overlap += list(ps.get("topk_overlap", []))
            self.ref_top1 += list(ps.get("reference_top1", []))
            self.keras_top1 += list(ps.get("keras_top1", []))
        self.n += n

    def _fold_layer(self, r: LayerResult, start: int, n: int) -> None:
        cur = self.layers.get(r.source)
        has = np.isfinite(r.max_abs)
        if cur is None:
            new = LayerResult(source=r.source, source_type=r.source_type, keras=r.keras, layout=r.layout,
                              shape=r.shape, status=r.status, note=r.note, tolerance=r.tolerance,
                              whole=r.whole)
            self.layers[r.source] = new
            self.order.append(r.source)
            cur = new
            cur._mean_sum = 0.0                      # type: ignore[attr-defined]
            cur._mean_n = 0                          # type: ignore[attr-defined]
            cur._ch_sum = None                       # type: ignore[attr-defined]
            cur._iso_pass = True                     # type: ignore[attr-defined]
        # status: one failing sample fails the layer; compared beats not-compared
        if r.status == "fail":
            if cur.status != "fail":
                cur.basis, cur.note = r.basis, r.note
            cur.status = "fail"
        elif r.status == "pass" and cur.status not in ("fail",):
            cur.status = "pass"
            if r.basis == "float32" or cur.basis != "float32":
                cur.basis = r.basis
        if cur.shape is not None and r.shape is not None and len(r.shape) >= 1 and not r.whole:
            cur.shape = (self.n + n,) + tuple(r.shape[1:])
        if not has:
            return
        if not np.isfinite(cur.max_abs) or r.max_abs > cur.max_abs:
            cur.max_abs = r.max_abs
            cur.worst_channel = r.worst_channel
            wi = r.worst_index
            if r.whole:     # axis 0 is not the batch: the index is within the batch's tensor
                cur.worst_index, cur.worst_sample = (tuple(wi) if wi else None), start
            else:
                cur.worst_index = ((start + int(wi[0]),) + tuple(wi[1:])) if wi else None
                cur.worst_sample = start + (int(wi[0]) if wi else 0)
            if self.names is not None and cur.worst_sample < len(self.names):
                cur.sample_name = self.names[cur.worst_sample]
        for f in _FIELDS_MAX[1:]:
            v = getattr(r, f)
            if np.isfinite(v):
                c = getattr(cur, f)
                setattr(cur, f, v if not np.isfinite(c) else max(c, v))
        cur._mean_sum += r.mean_abs * n                  # type: ignore[attr-defined]
        cur._mean_n += n                                 # type: ignore[attr-defined]
        cur.mean_abs = cur._mean_sum / cur._mean_n       # type: ignore[attr-defined]
        if r.channel_max_abs is not None:
            if cur.channel_max_abs is None or len(cur.channel_max_abs) != len(r.channel_max_abs):
                cur.channel_max_abs = np.array(r.channel_max_abs, dtype=np.float64)
                cur.channel_ref_absmax = np.array(r.channel_ref_absmax, dtype=np.float64)
                cur._ch_sum = np.array(r.channel_mean_abs, dtype=np.float64) * n  # type: ignore[attr-defined]
            else:
                np.maximum(cur.channel_max_abs, r.channel_max_abs, out=cur.channel_max_abs)
                np.maximum(cur.channel_ref_absmax, r.channel_ref_absmax, out=cur.channel_ref_absmax)
                cur._ch_sum += np.asarray(r.channel_mean_abs) * n                  # type: ignore[attr-defined]
            cur.channel_mean_abs = cur._ch_sum / cur._mean_n                      # type: ignore[attr-defined]
        for f in ("drift64", "budget64"):
            v = getattr(r, f)
            if np.isfinite(v):
                c = getattr(cur, f)
                setattr(cur, f, v if not np.isfinite(c) else max(c, v))
        if r.isolated is not None:
            iso = dict(cur.isolated or {})
            cur._iso_pass = cur._iso_pass and bool(r.isolated.get("passed", True))  # type: ignore[attr-defined]
            for k in ("max_abs", "max_rel", "needed_rtol"):
                v = r.isolated.get(k)
                if v is not None and (iso.get(k) is None or v > iso[k]):
                    iso[k] = v
                    if k == "max_abs":
                        iso["worst_channel"] = r.isolated.get("worst_channel")
            iso["passed"] = cur._iso_pass                                         # type: ignore[attr-defined]
            cur.isolated = iso

    def result(self) -> ComparisonResult:
        first = self.first
        layers = []
        for name in self.order:
            r = self.layers[name]
            for a in ("_mean_sum", "_mean_n", "_ch_sum", "_iso_pass"):
                r.__dict__.pop(a, None)
            layers.append(r)
        topk = None
        if self.top1:
            n = len(self.top1)
            topk = {"k": self.topk_k, "n": n, "top1_agreement": float(np.mean(self.top1)),
                    "topk_overlap": float(np.mean(self.overlap)), **(self.topk_first or {})}
        mism = None
        if self.top1:
            mism = [{"index": i, "name": self.names[i] if self.names and i < len(self.names) else None,
                     "reference_top1": self.ref_top1[i], "keras_top1": self.keras_top1[i]}
                    for i, ok in enumerate(self.top1) if not ok]
        return ComparisonResult(
            layers=layers, runtime=first.runtime, device=first.device, input={}, tolerances=first.tolerances,
            topk=topk, timings=self.timings, cancelled=self.cancelled, float32_factor=first.float32_factor,
            precision=first.precision, budget_note=self.budget_note, n_samples=self.n,
            sample_names=list(self.names[:self.n]) if self.names else None, top1_mismatches=mism)


class Prefetcher:
    """Iterates ``batches`` on a background thread, at most ``depth`` batches ahead: the next
    batch is decoded and preprocessed while the current one is compared (image decoding
    and numpy release the GIL).  An error raised while reading a batch is raised where that
    batch is taken, after the batches before it; :meth:`close` stops the thread."""

    def __init__(self, batches, depth: int = 1):
        self._it = iter(batches)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.wait_s = 0.0
        self._t = threading.Thread(target=self._run, name="migrator-decode", daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for b in self._it:
                if not self._put(("batch", b)):
                    return
            self._put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(("error", e))
        finally:
            close = getattr(self._it, "close", None)
            if close:
                close()

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        kind, val = self._q.get()
        self.wait_s += time.perf_counter() - t0
        if kind == "end":
            self._q.put(("end", None))
            raise StopIteration
        if kind == "error":
            self._q.put(("end", None))
            raise val
        return val

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._t.join(timeout=5.0)


class Rate:
    """Samples per second over the set so far and the time left at that rate."""

    def __init__(self, total: int, unit: str = "samples", clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.unit = unit
        self.clock = clock
        self.t0 = clock()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done

    @property
    def rate(self) -> float:
        dt = self.clock() - self.t0
        return self.done / dt if dt > 0 and self.done else 0.0

    @property
    def eta_s(self) -> float | None:
        r = self.rate
        return (self.total - self.done) / r if r > 0 else None

    def text(self) -> str:
        """'3.20 images/s, about 25 s left' ('' before the first batch is done)."""
        r = self.rate
        if r <= 0:
            return ""
        eta = self.eta_s or 0.0
        left = (f"about {eta:.0f} s left" if eta < 120 else f"about {eta / 60:.0f} min left")
        return f"{r:.2f} {self.unit}/s, {left}" if self.done < self.total else f"{r:.2f} {self.unit}/s"


#: separates a set comparison's progress message from its rate and time-left text
RATE_SEP = " · "


def split_rate(msg: str) -> tuple[str, str]:
    """(message, 'N images/s, about T s left') of a set comparison's progress message."""
    head, _sep, rate = msg.partition(RATE_SEP)
    return head, rate


def run_set_comparison(graph, plan, model, iset, *, runtime: str = "builtin",
                       runtime_settings: dict | None = None, tolerances=None,
                       batch_size: int | None = None,
                       progress: Callable[[float, str], None] | None = None,
                       cancel: Callable[[], bool] | None = None,
                       precision: str = "failing", prefetch: int = 1) -> ComparisonResult:
    """Compare on the :class:`~migrator.core.inputs.InputSet` ``iset`` batch by batch, the
    next batch read on a background thread (``prefetch`` batches ahead; 0: in line) while
    the current one is compared.  ``progress(fraction, message)`` names the images being
    compared, with the rate and the time left after :data:`RATE_SEP` (from the second
    batch on), and says ``'K of N samples compared'`` after each batch; ``cancel()`` stops
    between layers: the batch under way is dropped and the result (``cancelled``) covers
    the batches compared before it (``n_samples`` of ``set_size``); cancelled before the
    first batch is done raises :class:`Cancelled`."""

    rt = get_runtime(runtime, **(runtime_settings or {}))
    names = iset.names()
    total = max(1, len(iset))
    folder = SetFolder(names)
    single = None
    rate = Rate(len(iset), "images" if getattr(iset.spec, "kind", None) == "images" else "samples")
    batches = iset.batches(batch_size)
    if prefetch and len(iset) > 1:
        batches = Prefetcher(batches, prefetch)
    try:
        for batch in batches:
            if cancel is not None and cancel():
                folder.cancelled = True
                break
            n = len(batch)
            lo, hi = batch.start, batch.start + n
            label = (names[lo] if n == 1 else f"{names[lo]} … {names[hi - 1]}") if names else ""
            what = f"samples {lo + 1}-{hi} of {total}" if n > 1 else f"sample {lo + 1} of {total}"

            def p(f, msg="", lo=lo, n=n, what=what, label=label):
                if progress:
                    rt_text = rate.text()
                    progress(min(0.999, (lo + f * n) / total), f"{what} ({label}): {msg}"
                             + (RATE_SEP + rt_text if rt_text else ""))

            try:
                res = run_comparison(graph, plan, model, batch.x, runtime=rt, tolerances=tolerances,
                                     input_desc=None, progress=p if progress else None, cancel=cancel,
                                     precision=precision)
            except Cancelled:
                folder.cancelled = True
                break
            if res.cancelled:          # stopped inside the batch: its figures are partial, dropped
                folder.cancelled = True
                break
            if len(iset) == n and single is None:
                single = res
            folder.add(res, lo, n)
            rate.update(hi)
            if progress:
                try:
                    progress(min(0.999, hi / total), f"{hi} of {total} samples compared")
                except Cancelled:          # a progress callback that stops the run (GUI worker)
                    folder.cancelled = True
                    break
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()
    if folder.first is None:
        raise Cancelled("cancelled before the first batch")
    out = folder.result()
    if isinstance(batches, Prefetcher):
        out.timings["decode_wait_s"] = batches.wait_s
    out.input = iset.describe()
    out.set_size = len(iset)
    if single is not None and out.n_samples == 1:
        out.sample_names = None
    if progress:
        try:
            progress(1.0, "comparison cancelled" if out.cancelled else "comparison finished")
        except Cancelled:
            out.cancelled = True
    return out
