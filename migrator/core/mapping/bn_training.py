"""Batch-norm fine-tuning: each source's training-mode update of the moving statistics next
to Keras's, and how far the two drift apart over N steps.

In training mode every form normalises with the batch's own mean and *biased* variance
(Keras: ``ops.moments``; Lasagne: ``T.var``; Caffe: ``E[(x - mean)^2]``) and then updates its
stored statistics.  The updates differ:

=========  ==================================================================================
Keras      ``moving_mean <- m*moving_mean + (1-m)*mean_b``;
           ``moving_variance <- m*moving_variance + (1-m)*var_b``   (``m`` = momentum)
Lasagne    ``mean <- (1-alpha)*mean + alpha*mean_b``;
           ``inv_std <- (1-alpha)*inv_std + alpha/sqrt(var_b + epsilon)``
Caffe      ``sf <- maf*sf + 1``; ``blob0 <- maf*blob0 + mean_b``;
           ``blob1 <- maf*blob1 + M/(M-1)*var_b`` (M values per channel); used: ``blob/sf``
gist       ``mean <- (1-alpha)*mean + alpha*mean_b``; ``std <- (1-alpha)*std + alpha*std_b``
=========  ==================================================================================

With ``m = 1 - alpha`` the means follow the same recursion; the denominators do not:
Lasagne averages ``1/sqrt(var + eps)`` (the gist ``sqrt(var)``), Keras the variance
(Jensen: a spread of batch variances leaves them apart).  Caffe's effective weight of a
batch is ``1/(maf*sf + 1)`` (``1 - maf`` once ``sf`` has converged to ``1/(1-maf)``) and
it stores the unbiased variance (a relative ``1/(M-1)`` more).

:func:`update_drift` replays a sequence of batch statistics through both updates, starting
from the converted statistics, and measures after each chosen step how far apart the
normalisation they imply is (:class:`DriftPoint`).  :func:`scenario_batches` is the stated
scenario the mapping inspector and the report use when no data is given.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "KERAS_UPDATE",
    "SCENARIO_BATCH",
    "SCENARIO_SPREAD",
    "SCENARIO_STEPS",
    "SOURCE_UPDATE",
    "BatchStats",
    "DriftPoint",
    "SourceState",
    "drift_summary",
    "scenario_batches",
    "update_drift",
]

KERAS_UPDATE = ("moving_mean <- momentum*moving_mean + (1-momentum)*mean_b; moving_variance <- "
                "momentum*moving_variance + (1-momentum)*var_b (biased)")

SOURCE_UPDATE = {
    "lasagne": ("mean <- (1-alpha)*mean + alpha*mean_b; inv_std <- (1-alpha)*inv_std + "
                "alpha/sqrt(var_b + epsilon) (var_b biased)"),
    "caffe": ("sf <- maf*sf + 1; blob0 <- maf*blob0 + mean_b; blob1 <- maf*blob1 + "
              "M/(M-1)*var_b (unbiased, M values per channel); used: blob0/sf, blob1/sf"),
    "gist": "mean <- (1-alpha)*mean + alpha*mean_b; std <- (1-alpha)*std + alpha*std_b",
}

#: the scenario shown when no data is given (:func:`scenario_batches`): batches whose mean is
#: shifted by SPREAD of the denominator and whose variance is alternately x (1 +- SPREAD);
#: BATCH samples per batch (Caffe's M = BATCH * spatial size)
SCENARIO_SPREAD = 0.2
SCENARIO_BATCH = 32
SCENARIO_STEPS = (1, 10, 100)


@dataclass
class BatchStats:
    """Per-channel statistics of one training batch: mean, biased variance, values per channel."""

    mean: np.ndarray
    var: np.ndarray
    count: int


@dataclass
class SourceState:
    """The source layer's stored statistics, as its framework keeps them.

    ``form`` lasagne: ``a`` = mean, ``b`` = inv_std; caffe: ``a`` = blob0, ``b`` = blob1,
    ``sf`` = blob2; gist: ``a`` = mean, ``b`` = std.  ``rate``: alpha (Lasagne, gist) or
    moving_average_fraction (Caffe); ``eps``: the source's epsilon."""

    form: str
    a: np.ndarray
    b: np.ndarray
    rate: float
    eps: float
    sf: float = 1.0

    def copy(self) -> SourceState:
        return SourceState(self.form, np.array(self.a, np.float64), np.array(self.b, np.float64),
                           self.rate, self.eps, float(self.sf))

    # ---- what the source normalises with at inference
    def mean(self) -> np.ndarray:
        if self.form == "caffe":
            return self.a * (0.0 if self.sf == 0 else 1.0 / self.sf)
        return self.a

    def denominator(self) -> np.ndarray:
        """``x - mean`` is divided by this at inference."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.form == "lasagne":
                return 1.0 / np.abs(self.b)
            if self.form == "caffe":
                s = 0.0 if self.sf == 0 else 1.0 / self.sf
                return np.sqrt(self.b * s + self.eps)
            return np.abs(self.b + self.eps)

    def variance(self) -> np.ndarray:
        """The variance these statistics stand for (``denominator^2 - eps``; gist ``std^2``)."""
        if self.form == "gist":
            return self.b * self.b
        return np.maximum(self.denominator() ** 2 - self.eps, 0.0)

    def step(self, bs: BatchStats) -> None:
        r = self.rate
        bm, bv = np.asarray(bs.mean, np.float64), np.asarray(bs.var, np.float64)
        if self.form == "lasagne":
            self.a = (1 - r) * self.a + r * bm
            self.b = (1 - r) * self.b + r / np.sqrt(bv + self.eps)
        elif self.form == "caffe":
            m = int(bs.count)
            corr = m / (m - 1.0) if m > 1 else 1.0
            self.sf = r * self.sf + 1.0
            self.a = r * self.a + bm
            self.b = r * self.b + corr * bv
        else:
            self.a = (1 - r) * self.a + r * bm
            self.b = (1 - r) * self.b + r * np.sqrt(bv)


@dataclass
class DriftPoint:
    """After ``step`` updates: ``mean_gap`` = max over channels of |Keras mean - source mean|
    in units of the source's denominator; ``denominator_gap`` = max over channels of
    |Keras sqrt(moving_variance + epsilon) / source denominator - 1| (relative)."""

    step: int
    mean_gap: float
    denominator_gap: float


def update_drift(source: SourceState, moving_mean, moving_variance, momentum: float,
                 epsilon: float, batches: Iterable[BatchStats],
                 steps: Sequence[int] = SCENARIO_STEPS) -> list[DriftPoint]:
    """Replay ``batches`` (cycled when shorter than the largest step) through the source's
    update and Keras's, from ``source`` and the converted ``moving_mean`` /
    ``moving_variance``; one :class:`DriftPoint` per entry of ``steps``."""
    src = source.copy()
    km = np.array(moving_mean, np.float64).reshape(-1)
    kv = np.array(moving_variance, np.float64).reshape(-1)
    mom = float(momentum)
    bl = list(batches)
    out: list[DriftPoint] = []
    if not bl:
        return out
    want = sorted({int(s) for s in steps if int(s) >= 0})
    if want and want[0] == 0:
        out.append(_gap(0, src, km, kv, epsilon))
    n = 0
    for target in (s for s in want if s > 0):
        while n < target:
            bs = bl[n % len(bl)]
            src.step(bs)
            km = mom * km + (1 - mom) * np.asarray(bs.mean, np.float64)
            kv = mom * kv + (1 - mom) * np.asarray(bs.var, np.float64)
            n += 1
        out.append(_gap(n, src, km, kv, epsilon))
    return out


def _gap(n: int, src: SourceState, km, kv, epsilon: float) -> DriftPoint:
    d = src.denominator()
    with np.errstate(divide="ignore", invalid="ignore"):
        mg = np.abs(km - src.mean()) / d
        dg = np.abs(np.sqrt(kv + epsilon) / d - 1.0)
    return DriftPoint(n, _finite_max(mg), _finite_max(dg))


def _finite_max(a) -> float:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else 0.0


def scenario_batches(source: SourceState, count: int,
                     spread: float = SCENARIO_SPREAD) -> list[BatchStats]:
    """Fine-tuning data that differ from the stored statistics: every batch's mean is the
    stored mean + spread * denominator (a persistent shift, which shows the effect of the
    momentum), its variance alternately variance * (1 + spread) and * (1 - spread) (a
    batch-to-batch spread, which shows what averaging 1/sqrt(var) or the variance costs)."""
    mean, d, var = source.mean(), source.denominator(), source.variance()
    ok = np.isfinite(d) & np.isfinite(var)
    d, var = np.where(ok, d, 1.0), np.where(ok, var, 1.0)
    return [BatchStats(mean + spread * d, var * (1 + sgn * spread), int(count))
            for sgn in (1.0, -1.0)]


def drift_summary(points: Sequence[DriftPoint]) -> str:
    """``N=1: mean 0, denominator 0.012 %; N=10: ...`` (one line)."""
    return "; ".join(f"N={p.step}: mean {_pct(p.mean_gap)}, denominator {_pct(p.denominator_gap)}"
                     for p in points)


def _pct(v: float) -> str:
    if v < 1e-12:        # float64 rounding of equal recursions
        return "0"
    return f"{100 * v:.2g} %"
