"""Per-layer, per-channel comparison metrics and tolerances.

For every source layer that has a Keras counterpart we compare the reference output
(source layout, NCHW) with the Keras output (channels-last), after transposing the
reference into the Keras layout.  Figures, per layer and per channel:

* ``max_abs``  = max |keras - ref|
* ``mean_abs`` = mean |keras - ref|
* ``max_rel``  = max_abs / scale, where scale = max |ref| of the *layer* (the
  reference's scale; a tiny floor avoids dividing by zero)

A layer passes when ``max_abs <= atol + rtol * scale`` (defaults below; per-layer
overridable).  ``needed_rtol`` is the smallest rtol that would pass with the given atol
(Polygraphy's "minimum required tolerance").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
_TINY = 1e-30


@dataclass
class Tolerance:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def to_dict(self):
        return {"atol": self.atol, "rtol": self.rtol}


@dataclass
class Tolerances:
    default: Tolerance = field(default_factory=Tolerance)
    per_layer: dict[str, Tolerance] = field(default_factory=dict)

    def for_layer(self, name: str) -> Tolerance:
        return self.per_layer.get(name, self.default)

    def to_dict(self):
        return {"default": self.default.to_dict(),
                "per_layer": {k: v.to_dict() for k, v in self.per_layer.items()}}


@dataclass
class LayerResult:
    source: str
    source_type: str
    keras: str | None
    layout: str
    shape: tuple | None                  # source-layout shape of the compared tensor
    status: str                          # 'pass' | 'fail' | 'fused' | 'not-compared'
    max_abs: float = float("nan")
    mean_abs: float = float("nan")
    max_rel: float = float("nan")
    scale: float = float("nan")
    tolerance: Tolerance | None = None
    needed_rtol: float = float("nan")
    channel_max_abs: np.ndarray | None = None    # (C,)
    channel_mean_abs: np.ndarray | None = None   # (C,)
    channel_ref_absmax: np.ndarray | None = None  # (C,)
    worst_channel: int | None = None
    worst_index: tuple | None = None     # NCHW index of the worst element
    note: str = ""
    isolated: dict | None = None         # failing layers: metrics on the reference's own inputs

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "fused", "not-compared")

    def to_dict(self) -> dict[str, Any]:
        def f(v):
            return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)
        d = {"source": self.source, "source_type": self.source_type, "keras": self.keras,
             "layout": self.layout, "shape": list(self.shape) if self.shape else None,
             "status": self.status, "max_abs": f(self.max_abs), "mean_abs": f(self.mean_abs),
             "max_rel": f(self.max_rel), "scale": f(self.scale),
             "tolerance": self.tolerance.to_dict() if self.tolerance else None,
             "needed_rtol": f(self.needed_rtol),
             "worst_channel": self.worst_channel,
             "worst_index": list(self.worst_index) if self.worst_index else None,
             "note": self.note}
        if self.isolated is not None:
            d["isolated"] = {k: (f(v) if isinstance(v, float) else v) for k, v in self.isolated.items()}
        if self.channel_max_abs is not None:
            d["channels"] = {"max_abs": [float(x) for x in self.channel_max_abs],
                             "mean_abs": [float(x) for x in self.channel_mean_abs],
                             "ref_absmax": [float(x) for x in self.channel_ref_absmax]}
        return d


def to_source_layout(keras_out: np.ndarray, source_rank: int) -> np.ndarray:
    """Channels-last Keras array -> NCHW source layout (rank >= 3 moves the last axis to 1)."""
    if keras_out.ndim != source_rank or source_rank <= 2:
        return keras_out
    perm = (0, source_rank - 1) + tuple(range(1, source_rank - 1))
    return np.transpose(keras_out, perm)


def to_keras_layout(src: np.ndarray) -> np.ndarray:
    """NCHW source array -> channels-last."""
    if src.ndim <= 2:
        return src
    perm = (0,) + tuple(range(2, src.ndim)) + (1,)
    return np.ascontiguousarray(np.transpose(src, perm))


def compare_arrays(ref: np.ndarray, got_source_layout: np.ndarray, tol: Tolerance) -> dict[str, Any]:
    """Metrics of ``got`` against ``ref``, both in source layout (channel axis 1).

    Differences are taken in float32 (the difference of two nearby float32 values is exact,
    Sterbenz); sums for the means are accumulated in float64.  One pass per statistic, the
    per-channel reductions on an (N, C, -1) view without copies."""
    if ref.shape != got_source_layout.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs Keras {got_source_layout.shape}")
    ref32 = np.asarray(ref, dtype=np.float32)
    diff = np.subtract(np.asarray(got_source_layout, dtype=np.float32), ref32)
    np.abs(diff, out=diff)
    if diff.size == 0:
        c = ref.shape[1] if ref.ndim >= 2 else 1
        z = np.zeros(c)
        return dict(max_abs=0.0, mean_abs=0.0, max_rel=0.0, scale=0.0, channel_max_abs=z,
                    channel_mean_abs=z, channel_ref_absmax=z, worst_index=None, worst_channel=None,
                    passed=True, needed_rtol=0.0, nonfinite=False)
    if ref.ndim >= 2:
        n, c = ref.shape[0], ref.shape[1]
        d3 = diff.reshape(n, c, -1)
        ch_max = d3.max(axis=2).max(axis=0).astype(np.float64)    # NaN propagates through max
        nonfinite = not bool(np.isfinite(ch_max).all())
        if nonfinite:
            diff[~np.isfinite(diff)] = np.inf
            ch_max = d3.max(axis=2).max(axis=0).astype(np.float64)
        ch_mean = d3.sum(axis=2).sum(axis=0).astype(np.float64) / (n * d3.shape[2])
        r3 = ref32.reshape(n, c, -1)       # max |ref| = max(max ref, -min ref): no temporary
        ch_ref = np.maximum(r3.max(axis=2).max(axis=0), -r3.min(axis=2).min(axis=0)).astype(np.float64)
        max_abs = float(ch_max.max())
        mean_abs = float(ch_mean.mean())
        scale = float(ch_ref.max())
    else:
        nonfinite = not bool(np.isfinite(diff).all())
        if nonfinite:
            diff[~np.isfinite(diff)] = np.inf
        max_abs = float(diff.max())
        mean_abs = float(diff.mean(dtype=np.float64))
        scale = float(np.abs(ref32).max())
        ch_max, ch_mean, ch_ref = np.array([max_abs]), np.array([mean_abs]), np.array([scale])
    if ref.ndim >= 2:   # argmax only inside the worst channel
        worst_channel = int(np.argmax(ch_max))
        sub = diff[:, worst_channel]
        rest = np.unravel_index(int(np.argmax(sub)), sub.shape)
        worst_index = (int(rest[0]), worst_channel) + tuple(int(i) for i in rest[1:])
    else:
        worst_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        worst_channel = 0
    denom = max(scale, _TINY)
    max_rel = max_abs / denom
    passed = (not nonfinite) and max_abs <= tol.atol + tol.rtol * scale
    needed = max(0.0, (max_abs - tol.atol) / denom)
    return dict(max_abs=max_abs, mean_abs=mean_abs, max_rel=max_rel, scale=scale,
                channel_max_abs=ch_max, channel_mean_abs=ch_mean, channel_ref_absmax=ch_ref,
                worst_index=worst_index, worst_channel=worst_channel, passed=passed,
                needed_rtol=needed, nonfinite=nonfinite)


def topk_agreement(ref: np.ndarray, got: np.ndarray, k: int = 5) -> dict[str, Any]:
    """For classifier outputs (N, classes): do the top-k class sets / top-1 agree?"""
    ref2 = ref.reshape(ref.shape[0], -1)
    got2 = got.reshape(got.shape[0], -1)
    k = min(k, ref2.shape[1])
    r = np.argsort(-ref2, axis=1)[:, :k]
    g = np.argsort(-got2, axis=1)[:, :k]
    top1 = float(np.mean(r[:, 0] == g[:, 0]))
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(r, g)]))
    return {"k": k, "top1_agreement": top1, "topk_overlap": overlap,
            "reference_top": r[0].tolist(), "keras_top": g[0].tolist()}


@dataclass
class ComparisonResult:
    layers: list[LayerResult]
    runtime: dict[str, Any]                 # {'name':..., 'framework':..., 'versions': {...}}
    device: str                             # where Keras ran
    input: dict[str, Any]                   # description of the input used
    tolerances: Tolerances
    topk: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def compared(self) -> list[LayerResult]:
        return [r for r in self.layers if r.status in ("pass", "fail")]

    @property
    def first_divergent(self) -> LayerResult | None:
        for r in self.layers:
            if r.status == "fail":
                return r
        return None

    @property
    def passed(self) -> bool:
        return (not self.cancelled) and bool(self.compared) and all(r.passed for r in self.layers)

    @property
    def root_cause(self) -> LayerResult | None:
        """The first failing layer that also fails when fed the reference's own inputs: a
        layer whose mapping is wrong (not one that only inherited error from upstream)."""
        for r in self.layers:
            if r.status == "fail" and r.isolated is not None and not r.isolated.get("passed", True):
                return r
        return None

    @property
    def divergence(self) -> str | None:
        """None when passed; 'mapping' when some layer is wrong in isolation; 'accumulated'
        when every failing layer passes in isolation (float32 error grown along the chain);
        'unknown' when isolation could not run."""
        fails = [r for r in self.layers if r.status == "fail"]
        if not fails:
            return None
        if self.root_cause is not None:
            return "mapping"
        if all(r.isolated is not None for r in fails):
            return "accumulated"
        return "unknown"

    def layer(self, source: str) -> LayerResult:
        for r in self.layers:
            if r.source == source:
                return r
        raise KeyError(source)

    @property
    def needed_rtol(self) -> float:
        vals = [r.needed_rtol for r in self.compared if np.isfinite(r.needed_rtol)]
        return max(vals) if vals else 0.0

    def to_dict(self) -> dict[str, Any]:
        fd = self.first_divergent
        rc = self.root_cause
        return {"passed": self.passed, "cancelled": self.cancelled,
                "first_divergent": fd.source if fd else None,
                "root_cause": rc.source if rc else None, "divergence": self.divergence,
                "needed_rtol": self.needed_rtol,
                "runtime": self.runtime, "device": self.device, "input": self.input,
                "tolerances": self.tolerances.to_dict(), "topk": self.topk,
                "timings": self.timings,
                "counts": {s: sum(1 for r in self.layers if r.status == s)
                           for s in ("pass", "fail", "fused", "not-compared")}}
