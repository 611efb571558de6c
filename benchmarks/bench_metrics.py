"""Per-layer comparison metrics (:func:`migrator.core.compare.metrics.compare_arrays`) on
open-nsfw ResNet-50's layer shapes at batch 16, next to a floor measured on the same arrays,
interleaved: one read of each input (``np.max`` of the reference and of the channels-last Keras
array -- the least any metric must do); medians per shape and the whole batch's sum (each shape
weighted by how many layer outputs of that shape one open-nsfw batch compares).  The numpy
kernel (no OpenCV) is timed too.

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


def _pair(shape, rng):
    """A reference (NCHW, C-contiguous) and the channels-first view of a channels-last
    Keras-like array near it, as the engine hands them over."""
    ref = rng.standard_normal(shape).astype(np.float32)
    got = ref + rng.normal(0, 1e-4, shape).astype(np.float32)
    if len(shape) <= 2:
        return ref, got, got
    keras = np.ascontiguousarray(np.moveaxis(got, 1, -1))
    return ref, np.moveaxis(keras, -1, 1), keras


def metrics_speed(repeat: int = REPEAT) -> dict[str, Any]:
    from migrator.core.compare import metrics
    from migrator.core.reference.workers import threads
    tol = metrics.Tolerance()
    rng = np.random.default_rng(0)
    cv = metrics.opencv_module() is not None
    print(f"compare_arrays per layer output, open-nsfw shapes, batch 16; median of {repeat}; "
          f"{threads()} threads; OpenCV transpose/sums: {'yes' if cv else 'no (numpy)'}", flush=True)
    print(f"{'shape':<22} {'count':>5} {'floor ms':>9} {'now ms':>9} {'now/floor':>10} {'numpy-only ms':>14}",
          flush=True)
    rows, tot_f, tot_n, tot_p = [], 0.0, 0.0, 0.0
    for shape, count in SHAPES:
        ref, got, keras = _pair(shape, rng)
        tf, tn, tp = [], [], []
        use = metrics.USE_OPENCV
        try:
            for _ in range(repeat):                 # interleaved: all see the same machine
                t = time.perf_counter()
                float(np.max(ref))
                float(np.max(keras))
                tf.append(time.perf_counter() - t)
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
        mf, mn, mp = (statistics.median(x) * 1e3 for x in (tf, tn, tp))
        tot_f += mf * count
        tot_n += mn * count
        tot_p += mp * count
        rows.append({"shape": list(shape), "count": count, "floor_ms": mf, "now_ms": mn, "numpy_only_ms": mp})
        print(f"{shape!s:<22} {count:>5} {mf:>9.2f} {mn:>9.2f} {mn / mf:>9.2f}x {mp:>14.2f}", flush=True)
    print(f"{'one batch (weighted)':<22} {'':>5} {tot_f:>9.1f} {tot_n:>9.1f} {tot_n / tot_f:>9.2f}x "
          f"{tot_p:>14.1f}", flush=True)
    return {"rows": rows, "batch_floor_ms": tot_f, "batch_now_ms": tot_n, "ratio_to_floor": tot_n / tot_f,
            "batch_numpy_only_ms": tot_p, "opencv": cv, "threads": threads()}


def main() -> dict:
    return metrics_speed()


if __name__ == "__main__":
    main()
    sys.exit(0)
