"""Per-layer comparison metrics (:func:`migrator.core.compare.metrics.compare_arrays`) on
open-nsfw ResNet-50's layer shapes at batch 16: today's tiled version against the version
before it (whole-array passes, kept here verbatim as ``compare_arrays_before``), on the same
arrays, interleaved; medians per shape and the whole batch's sum (each shape weighted by how
many layer outputs of that shape one open-nsfw batch compares).

`python -m benchmarks.bench_metrics` (part of `make bench`)."""
from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np

#: (shape, how many layer outputs of that shape one open-nsfw batch of 16 compares)
SHAPES = [((16, 128, 56, 56), 14), ((16, 64, 112, 112), 3), ((16, 256, 28, 28), 18),
          ((16, 512, 14, 14), 26), ((16, 32, 56, 56), 18), ((16, 64, 28, 28), 24),
          ((16, 128, 14, 14), 36), ((16, 1024, 7, 7), 14), ((16, 256, 7, 7), 18),
          ((16, 64, 56, 56), 1), ((16, 3, 224, 224), 1), ((16, 1024, 1, 1), 1), ((16, 2), 2)]
REPEAT = 9
_TINY = 1e-30


def compare_arrays_before(ref: np.ndarray, got_source_layout: np.ndarray, tol,
                   whole: bool = False) -> dict[str, Any]:
    """Metrics of ``got`` against ``ref``, both in source layout (channel axis 1).
    ``whole``: axis 0 is not the batch (a reshape moved or mixed it): the per-sample figures
    are those of the whole tensor, one "sample".

    Differences are taken in float32 (the difference of two nearby float32 values is exact,
    Sterbenz); sums for the means are accumulated in float64.  One pass per statistic, the
    per-channel reductions on an (N, C, -1) view -- or (N, -1, C) when ``got`` is the
    channels-first view of a channels-last Keras array -- without copies."""
    if ref.shape != got_source_layout.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs Keras {got_source_layout.shape}")
    ref32 = np.asarray(ref, dtype=np.float32)
    got32 = np.asarray(got_source_layout, dtype=np.float32)
    # The Keras output is channels-last; given as its channels-first view, the difference is
    # taken in the Keras layout (reading the reference strided costs a third of reading the
    # Keras array strided) and reduced per (sample, channel) there.
    # Few channels (an image input's 3) reduce slowly along a strided axis: those stay
    # channels-first (measured: the Keras layout pays from about 64 channels on).
    last = ref.ndim >= 3 and ref.shape[1] >= 64 and np.moveaxis(got32, 1, -1).flags.c_contiguous \
        and not got32.flags.c_contiguous
    if last:
        diff = np.subtract(np.moveaxis(got32, 1, -1), np.moveaxis(ref32, 1, -1))
    else:
        diff = np.subtract(got32, ref32)
    np.abs(diff, out=diff)
    if diff.size == 0:
        c = ref.shape[1] if ref.ndim >= 2 else 1
        z = np.zeros(c)
        return {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "scale": 0.0, "channel_max_abs": z,
                "channel_mean_abs": z, "channel_ref_absmax": z, "worst_index": None,
                "worst_channel": None, "passed": True, "needed_rtol": 0.0, "nonfinite": False}
    if ref.ndim >= 2:
        n, c = ref.shape[0], ref.shape[1]
        d3 = diff.reshape(n, -1, c) if last else diff.reshape(n, c, -1)
        ax = 1 if last else 2
        nc_max = d3.max(axis=ax)                      # (N, C); NaN propagates through max
        nonfinite = not bool(np.isfinite(nc_max).all())
        if nonfinite:
            diff[~np.isfinite(diff)] = np.inf
            nc_max = d3.max(axis=ax)
        nc_max = nc_max.astype(np.float64)
        ch_max = nc_max.max(axis=0)
        s_max = nc_max.max(axis=1)
        ch_mean = d3.sum(axis=ax, dtype=np.float64).sum(axis=0) / (n * d3.shape[ax])
        r3 = ref32.reshape(n, c, -1)       # max |ref| = max(max ref, -min ref): no temporary
        nc_ref = np.maximum(r3.max(axis=2), -r3.min(axis=2)).astype(np.float64)
        ch_ref = nc_ref.max(axis=0)
        s_scale = nc_ref.max(axis=1)
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
        s_max, s_scale = np.array([max_abs]), np.array([scale])
    if ref.ndim >= 2:   # argmax only inside the worst channel
        worst_channel = int(np.argmax(ch_max))
        sub = diff[..., worst_channel] if last else diff[:, worst_channel]
        rest = np.unravel_index(int(np.argmax(sub)), sub.shape)
        worst_index = (int(rest[0]), worst_channel) + tuple(int(i) for i in rest[1:])
    else:
        worst_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        worst_channel = 0
    # the verdict is per sample (each judged against its own scale): a batch or an input set
    # gives the same verdict as comparing its samples one by one
    if whole:
        s_max, s_scale = np.array([max_abs]), np.array([scale])
    s_denom = np.maximum(s_scale, _TINY)
    s_rel = s_max / s_denom
    s_passed = np.isfinite(s_max) & (s_max <= tol.atol + tol.rtol * s_scale)
    s_needed = np.maximum(0.0, (s_max - tol.atol) / s_denom)
    max_rel = float(s_rel.max())
    passed = (not nonfinite) and bool(s_passed.all())
    needed = float(s_needed.max())
    return {"max_abs": max_abs, "mean_abs": mean_abs, "max_rel": max_rel, "scale": scale,
            "channel_max_abs": ch_max, "channel_mean_abs": ch_mean, "channel_ref_absmax": ch_ref,
            "worst_index": worst_index, "worst_channel": worst_channel, "passed": passed,
            "needed_rtol": needed, "nonfinite": nonfinite,
            "sample_max_abs": s_max, "sample_scale": s_scale, "sample_passed": s_passed,
            "sample_max_rel": s_rel, "sample_needed_rtol": s_needed}


def _pair(shape, rng):
    """A reference (NCHW, C-contiguous) and the channels-first view of a channels-last
    Keras-like array near it, as the engine hands them over."""
    ref = rng.standard_normal(shape).astype(np.float32)
    got = ref + rng.normal(0, 1e-4, shape).astype(np.float32)
    if len(shape) <= 2:
        return ref, got
    keras = np.ascontiguousarray(np.moveaxis(got, 1, -1))
    return ref, np.moveaxis(keras, -1, 1)


def metrics_speed(repeat: int = REPEAT) -> dict[str, Any]:
    from migrator.core.compare import metrics
    from migrator.core.reference.workers import threads
    tol = metrics.Tolerance()
    rng = np.random.default_rng(0)
    cv = metrics.opencv_module() is not None
    print(f"compare_arrays per layer output, open-nsfw shapes, batch 16; median of {repeat}; "
          f"{threads()} threads; OpenCV transpose/sums: {'yes' if cv else 'no (numpy)'}", flush=True)
    print(f"{'shape':<22} {'count':>5} {'before ms':>10} {'now ms':>9} {'ratio':>7} {'numpy-only ms':>14}",
          flush=True)
    rows, tot_b, tot_n, tot_p = [], 0.0, 0.0, 0.0
    for shape, count in SHAPES:
        ref, got = _pair(shape, rng)
        a = compare_arrays_before(ref, got, tol)
        b = metrics.compare_arrays(ref, got, tol)
        same = (a["max_abs"] == b["max_abs"] and a["worst_index"] == b["worst_index"]
                and np.array_equal(a["channel_max_abs"], b["channel_max_abs"])
                and a["passed"] == b["passed"])
        tb, tn, tp = [], [], []
        use = metrics.USE_OPENCV
        try:
            for _ in range(repeat):                 # interleaved: all see the same machine
                t = time.perf_counter()
                compare_arrays_before(ref, got, tol)
                tb.append(time.perf_counter() - t)
                t = time.perf_counter()
                metrics.compare_arrays(ref, got, tol)
                tn.append(time.perf_counter() - t)
                metrics.USE_OPENCV = False          # the numpy kernel (cv2 not installed)
                t = time.perf_counter()
                metrics.compare_arrays(ref, got, tol)
                tp.append(time.perf_counter() - t)
                metrics.USE_OPENCV = use
        finally:
            metrics.USE_OPENCV = use
        mb, mn, mp = (statistics.median(x) * 1e3 for x in (tb, tn, tp))
        tot_b += mb * count
        tot_n += mn * count
        tot_p += mp * count
        rows.append({"shape": list(shape), "count": count, "before_ms": mb, "now_ms": mn,
                     "numpy_only_ms": mp, "same": same})
        print(f"{shape!s:<22} {count:>5} {mb:>10.2f} {mn:>9.2f} {mb / mn:>6.2f}x {mp:>14.2f}"
              f"{'' if same else '  FIGURES DIFFER'}", flush=True)
    print(f"{'one batch (weighted)':<22} {'':>5} {tot_b:>10.1f} {tot_n:>9.1f} {tot_b / tot_n:>6.2f}x "
          f"{tot_p:>14.1f}", flush=True)
    return {"rows": rows, "batch_before_ms": tot_b, "batch_now_ms": tot_n, "ratio": tot_b / tot_n,
            "batch_numpy_only_ms": tot_p, "opencv": cv, "threads": threads()}


def main() -> dict:
    return metrics_speed()


if __name__ == "__main__":
    main()
    sys.exit(0)
