"""Export a verified Keras model as portable artifacts, each re-checked in a fresh process.

One place for every format the CLI (``migrator convert``) and the GUI (via
:func:`migrator.core.document.export_model`) write:

===============  ======================  ==================================================
format           file                    loaded back (fresh process, Migrator un-importable)
===============  ======================  ==================================================
``keras``        ``model.keras``         ``keras.saving.load_model(p, safe_mode=True)``
``h5``           ``model.h5``            same (legacy HDF5: only models without ``keras.ops``)
``weights``      ``model.weights.h5``    ``keras.models.model_from_json(cfg).load_weights(p)``
``saved_model``  ``DIR/``                ``tf.saved_model.load(p).signatures['serving_default']``
``tflite``       ``model.tflite``        ``tf.lite.Interpreter(p).get_signature_runner()``
===============  ======================  ==================================================

Flow (:func:`export`): refuse unless the comparison passed (or the user accepted); check every
target path first (nothing is overwritten without ``force``); write each artifact under a
hidden temporary name next to its target; load every temporary artifact in ONE subprocess in
which ``import migrator`` fails (``sys.modules['migrator'] = None``; started ahead by
:func:`start_check_process` while the comparison runs, so its TensorFlow start-up is not
waited for), run the comparison input
through it and compare its outputs with the reference's (and with the in-memory Keras model);
only when every artifact passes are they renamed into place and the report written.  A failure
leaves no file behind.

The SavedModel has a ``serving_default`` signature taking each network input (float32,
channels-last NHWC) under the source input's name and returning a dict keyed by the source
output names; the TFLite model (float32, no quantization) keeps the same signature.
"""
from __future__ import annotations

import atexit
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .compare.metrics import Tolerance, to_keras_layout, to_source_layout
from .errors import MigratorError, VerificationFailed
from .filesets import commit, journal_path, recover
from .report import build_report, figure_links, figure_paths, render_html, render_markdown
from .saving import check_writable
from .tempfiles import temp_path

#: export formats, in the order the GUI offers them
FORMATS = ("keras", "h5", "weights", "saved_model", "tflite")
#: file name suffix of each format (a SavedModel is a directory)
SUFFIXES = {"keras": ".keras", "h5": ".h5", "weights": ".weights.h5", "saved_model": "_saved_model",
            "tflite": ".tflite"}
DESCRIPTIONS = {
    "keras": "Keras 3 model (.keras): loads with plain keras.saving.load_model",
    "h5": "legacy Keras HDF5 (.h5): only for models without keras.ops nodes",
    "weights": "weights only (.weights.h5)",
    "saved_model": "TensorFlow SavedModel directory (serving_default signature)",
    "tflite": "TensorFlow Lite flatbuffer (.tflite, float32)",
}
_EXT_FORMAT = ((".weights.h5", "weights"), (".keras", "keras"), (".h5", "h5"), (".hdf5", "h5"),
               (".tflite", "tflite"))

Progress = Callable[[float, str], None] | None


# --------------------------------------------------------------------------------------
# formats and paths
# --------------------------------------------------------------------------------------
def format_of(path: str, fmt: str | None = None) -> str:
    """The export format of ``path``: ``fmt`` when given (checked against the extension),
    else from the extension (a SavedModel directory needs ``fmt='saved_model'``)."""
    p = str(path).lower().rstrip("/\\")
    by_ext = next((f for ext, f in _EXT_FORMAT if p.endswith(ext)), None)
    if fmt is not None:
        if fmt not in FORMATS:
            raise MigratorError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})", file=path)
        if fmt == "saved_model":
            if by_ext is not None:
                raise MigratorError("a SavedModel is a directory: give a path without a model "
                                    "file extension", file=path)
        elif by_ext is not None and by_ext != fmt:
            raise MigratorError(f"the file name says {by_ext!r} but the format is {fmt!r}", file=path)
        elif by_ext is None:
            raise MigratorError(f"a {fmt} file must end in {SUFFIXES[fmt]}", file=path)
        return fmt
    if by_ext is None:
        raise MigratorError("output must end in .keras, .h5, .weights.h5 or .tflite "
                            "(a SavedModel directory: --format saved_model)", file=path)
    return by_ext


def _stem(path: str, fmt: str) -> str:
    p = str(path).rstrip("/\\")
    if fmt == "saved_model":
        return p.removesuffix("_saved_model")
    low = p.lower()
    for ext, _ in _EXT_FORMAT:
        if low.endswith(ext):
            return p[: -len(ext)]
    return p


def artifact_paths(out_path: str, fmt: str | None = None, also: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``[(path, format)]``: ``out_path`` first, then one companion per ``also`` format
    next to it (``stem + SUFFIXES[format]``)."""
    fmt = format_of(out_path, fmt)
    out = [(str(out_path).rstrip("/\\") if fmt == "saved_model" else str(out_path), fmt)]
    stem = _stem(out_path, fmt)
    for f in also:
        if f not in FORMATS:
            raise MigratorError(f"unknown format {f!r} (choose from {', '.join(FORMATS)})", file=out_path)
        if any(f == g for _, g in out):
            continue
        out.append((stem + SUFFIXES[f], f))
    return out


def default_report_path(out_path: str, fmt: str | None = None) -> str:
    fmt = format_of(out_path, fmt)
    return _stem(out_path, fmt) + ".report.json"


def check_target(path: str, fmt: str, force: bool) -> None:
    """Refuse before any work: existing target without ``force``, missing or read-only directory."""
    if fmt == "saved_model":
        d = os.path.dirname(os.path.abspath(path)) or "."
        if os.path.exists(path) and not force:
            raise MigratorError("already exists (use --force to overwrite)", file=path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise MigratorError("exists and is not a directory", file=path)
        if not os.path.isdir(d):
            raise MigratorError("the output directory does not exist", file=path)
        if not os.access(d, os.W_OK):
            raise MigratorError("the output directory is not writable", file=path)
        return
    check_writable(path, force)


# --------------------------------------------------------------------------------------
# names of the serving signature
# --------------------------------------------------------------------------------------
def _sig_name(name: str, taken: set[str]) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", str(name)) or "x"
    if not (s[0].isalpha() or s[0] == "_"):
        s = "t_" + s
    if keyword.iskeyword(s):          # 'in', 'def', ...: not a parameter name of the signature
        s += "_"
    base, i = s, 1
    while s in taken:
        i += 1
        s = f"{base}_{i}"
    taken.add(s)
    return s


def signature_names(plan, graph=None) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """``([(source input, keras input layer, signature name)], [(source output, signature name)])``
    in the model's input / output order."""
    graph = graph or plan.graph
    taken: set[str] = set()
    ins = []
    for m in plan.mappings:
        for s in m.layers:
            if s.class_name == "Input":
                ins.append((m.source, s.name, _sig_name(m.source, taken)))
    taken_out: set[str] = set()
    outs = [(t, _sig_name(t, taken_out)) for t in graph.output_tensors]
    return ins, outs


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------
def migrator_only_layers(plan) -> list[dict]:
    """Layers that need a Migrator class to load from ``.keras``/``.h5`` (none normally)."""
    from .keras_build.plain import migrator_only_layers as _m
    return _m(plan)


def h5_problem(model, plan) -> str | None:
    """Why this model cannot be written as legacy HDF5 (``None`` when it can)."""
    from .keras_build.plain import ops_layers
    names = ops_layers(model, plan)
    if not names:
        return None
    by_keras = {s.name: (m.source, s.class_name) for m in plan.mappings for s in m.layers}
    items = [f"'{by_keras[n][0]}' ({by_keras[n][1]})" if n in by_keras else f"'{n}'" for n in names]
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return ("legacy HDF5 (.h5) cannot store the Keras operations used by layer(s) "
            + ", ".join(items[:5]) + more + "; write .keras, SavedModel or TFLite instead")


def _write_saved_model(model, plan, graph, path: str) -> None:
    import tensorflow as tf
    from keras.export import ExportArchive

    ins, outs = signature_names(plan, graph)
    specs = []
    by_name = {t.name.split(":")[0]: t for t in model.inputs}
    for _src, kname, sig in ins:
        kt = by_name.get(kname)
        shape = (None,) + tuple(kt.shape[1:]) if kt is not None else None
        specs.append(tf.TensorSpec(shape, tf.float32, name=sig))
    out_names = [sig for _, sig in outs]

    def serve(*args):
        y = model(list(args) if len(args) > 1 else args[0], training=False)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        return {n: v for n, v in zip(out_names, ys)}

    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", tf.function(serve), input_signature=specs)
    archive.write_out(path, verbose=False)


def _write_tflite(model, plan, graph, path: str, saved_model: str | None = None) -> dict:
    """TFLite (float32) converted from a SavedModel: ``saved_model`` when one was just written
    for the same model, else a temporary one."""
    import tensorflow as tf
    info: dict[str, Any] = {"quantization": "none (float32)"}
    tmp = saved_model or tempfile.mkdtemp(prefix="migrator-tflite-")
    try:
        if saved_model is None:
            _write_saved_model(model, plan, graph, tmp)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        try:
            data = conv.convert()
            info["ops"] = "TFLite built-ins"
        except Exception:  # noqa: BLE001 - retry with TensorFlow ops where TFLite has none
            conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
            data = conv.convert()
            info["ops"] = "TFLite built-ins + TensorFlow select ops (needs the Flex delegate)"
    finally:
        if saved_model is None:
            shutil.rmtree(tmp, ignore_errors=True)
    with open(path, "wb") as f:
        f.write(data)
    return info


def _write(model, plan, graph, fmt: str, tmp: str, saved_model: str | None = None) -> dict:
    if fmt == "keras" or fmt == "h5":
        model.save(tmp)
    elif fmt == "weights":
        model.save_weights(tmp)
        with open(tmp + ".json", "w", encoding="utf-8") as f:
            f.write(model.to_json())
    elif fmt == "saved_model":
        _write_saved_model(model, plan, graph, tmp)
    elif fmt == "tflite":
        return _write_tflite(model, plan, graph, tmp, saved_model)
    else:
        raise MigratorError(f"unknown format {fmt!r}")
    return {}


def _tmp_name(path: str, fmt: str) -> str:
    d = os.path.dirname(os.path.abspath(path)) or "."
    base = os.path.basename(str(path).rstrip("/\\"))
    if fmt != "saved_model":
        # pid-stamped: the next save into this folder sweeps it once this process is gone
        return temp_path(d, base, ".weights.h5" if fmt == "weights" else os.path.splitext(base)[1])
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=d)
    os.close(fd)
    os.unlink(tmp)
    return tmp


def _remove(p: str) -> None:
    try:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.unlink(p)
    except OSError:
        pass


# --------------------------------------------------------------------------------------
# the fresh-process check
# --------------------------------------------------------------------------------------
#: run as ``python -c VERIFY_SCRIPT job.json``: Migrator cannot be imported in there
VERIFY_SCRIPT = r'''
import json, os, sys, time
SERVE = len(sys.argv) > 2 and sys.argv[1] == "--serve"    # started early: the job comes on stdin
BLOCK = (sys.argv[2] == "block") if SERVE else json.load(open(sys.argv[1]))["block_migrator"]
if BLOCK:
    sys.modules["migrator"] = None          # the artifact must not need Migrator
else:
    import migrator.core.keras_build        # registers Migrator's custom layer classes
try:                                        # recorded by this process, not assumed by the parent
    import migrator  # noqa: F401
    MIGRATOR_IMPORTABLE = True
except ImportError:
    MIGRATOR_IMPORTABLE = False
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import warnings
warnings.filterwarnings("ignore")
import numpy as np
if SERVE:
    import tensorflow, keras  # noqa: F401 - loaded while the parent still verifies
    JOB = sys.stdin.readline().strip()
    if not JOB:
        sys.exit(0)
else:
    JOB = sys.argv[1]
job = json.load(open(JOB))
if job["block_migrator"] != BLOCK:
    raise SystemExit("check process started for the other Migrator mode")
xs = np.load(job["inputs"])
arrays = [np.asarray(xs[f"in{i}"], dtype=np.float32) for i in range(len(job["sig_inputs"]))]
res, outs = [], {}
for k, a in enumerate(job["artifacts"]):
    rec = {"ok": False, "migrator_importable": MIGRATOR_IMPORTABLE}
    try:
        t0 = time.perf_counter()
        fmt, path = a["format"], a["path"]
        if fmt in ("keras", "h5", "weights"):
            import keras
            if fmt == "weights":
                m = keras.models.model_from_json(open(a["arch"]).read())
                m.load_weights(path)
            else:
                m = keras.saving.load_model(path, safe_mode=True, compile=False)
            rec["load_s"] = time.perf_counter() - t0
            rec["classes"] = sorted({type(l).__name__ for l in m.layers})
            t1 = time.perf_counter()
            y = m(arrays if len(arrays) > 1 else arrays[0], training=False)
            ys = list(y) if isinstance(y, (list, tuple)) else [y]
            ys = [np.asarray(v) for v in ys]
        elif fmt == "saved_model":
            import tensorflow as tf
            obj = tf.saved_model.load(path)
            fn = obj.signatures["serving_default"]
            rec["load_s"] = time.perf_counter() - t0
            rec["signature_inputs"] = sorted(fn.structured_input_signature[1])
            rec["signature_outputs"] = sorted(fn.structured_outputs)
            t1 = time.perf_counter()
            r = fn(**{n: tf.constant(v) for n, v in zip(job["sig_inputs"], arrays)})
            ys = [np.asarray(r[n]) for n in job["sig_outputs"]]
        elif fmt == "tflite":
            import tensorflow as tf
            it = tf.lite.Interpreter(model_path=path)
            runner = it.get_signature_runner("serving_default")
            rec["load_s"] = time.perf_counter() - t0
            sl = it.get_signature_list()["serving_default"]
            rec["signature_inputs"], rec["signature_outputs"] = sorted(sl["inputs"]), sorted(sl["outputs"])
            t1 = time.perf_counter()
            r = runner(**{n: v for n, v in zip(job["sig_inputs"], arrays)})
            ys = [np.asarray(r[n]) for n in job["sig_outputs"]]
        else:
            raise ValueError("unknown format " + fmt)
        rec["run_s"] = time.perf_counter() - t1
        for j, v in enumerate(ys):
            outs[f"a{k}_o{j}"] = v
        rec["n_outputs"] = len(ys)
        rec["ok"] = True
    except Exception as e:
        rec["error"] = (type(e).__name__ + ": " + " ".join(str(e).split()))[:600]
    res.append(rec)
np.savez(job["outputs"], **outs)
with open(job["result"], "w") as f:
    json.dump(res, f)
'''


def _keras_inputs(plan, x) -> list[np.ndarray]:
    """The comparison input (source layout; an array or a dict keyed by source input name)
    as the list of channels-last arrays in the model's input order."""
    ins, _ = signature_names(plan)
    out = []
    for src, kname, _sig in ins:
        if isinstance(x, dict):
            a = x.get(src, x.get(kname))
            if a is None:
                raise MigratorError(f"no input array for input '{src}'", layer=src)
        else:
            a = x
        out.append(np.ascontiguousarray(to_keras_layout(np.asarray(a, dtype=np.float32),
                                                        plan.layout_of(src))))
    return out


# --------------------------------------------------------------------------------------
# image preprocessing baked into the exported model (--bake-preprocessing)
# --------------------------------------------------------------------------------------
def baked_steps(plan, graph, pp) -> dict[str, Any]:
    """What a model with ``pp`` baked in does before the network, for its (only) image input:
    ``{'input', 'shape' (H, W, C), 'channel_swap', 'mean' ((1, H, W, C) or (1, 1, 1, C) float32
    in the network's channel order, or None), 'scale'}``; MigratorError when it cannot."""
    from .inputs import default_mean, input_mean
    ins, _ = signature_names(plan, graph)
    if len(ins) != 1:
        raise MigratorError(f"--bake-preprocessing needs a model with one image input; this one has "
                            f"{len(ins)}")
    src = ins[0][0]
    shp = graph.node(src).attrs.get("shape")
    if shp is None or len(shp) != 4 or any(d is None for d in shp[1:]) or shp[1] not in (1, 3):
        raise MigratorError(f"--bake-preprocessing needs a 1- or 3-channel NCHW image input of known "
                            f"size; input '{src}' is {tuple(shp) if shp else None}", layer=src)
    C, H, W = (int(d) for d in shp[1:])
    scale = float(pp.scale)
    if not np.isfinite(scale) or scale == 0:
        raise MigratorError(f"--bake-preprocessing needs a finite non-zero --scale, got {pp.scale}")
    mean = pp.mean if pp.mean is not None else default_mean(graph)
    m = input_mean(mean, H, W, pp.mean_file)
    if m is not None:
        if m.shape[0] not in (1, C):
            raise MigratorError(f"the mean has {m.shape[0]} channels, the network input {C}",
                                file=pp.mean_file)
        m = np.ascontiguousarray(np.transpose(m, (1, 2, 0))[None], dtype=np.float32)
    return {"input": src, "shape": (H, W, C), "scale": scale, "mean": m,
            "channel_swap": C == 3 and str(pp.channel_order).upper() == "BGR"}


def bake_model(model, steps: dict[str, Any]):
    """``model`` with the preprocessing in front, built-in Keras + ``keras.ops`` only: it takes
    RGB pixel values in [0, 255], channels last, and computes ``(swap(x) - mean) * scale`` before
    the network (``swap``: RGB -> BGR when the network wants BGR)."""
    import keras
    from keras import ops
    inp = keras.Input(shape=steps["shape"], name=model.inputs[0].name.split(":")[0])
    y = inp
    if steps["channel_swap"]:
        y = ops.flip(y, axis=-1)
    if steps["mean"] is not None:
        y = ops.subtract(y, steps["mean"])
    if steps["scale"] != 1.0:
        y = ops.multiply(y, np.float32(steps["scale"]))
    return keras.Model(inp, model(y), name=f"{model.name}_with_preprocessing")


def unbake_inputs(x, steps: dict[str, Any]) -> np.ndarray:
    """The raw pixels (channels last) a baked model turns into the network input ``x`` (NCHW):
    ``swap(x / scale + mean)``, computed in float64 (float32 rounding aside, the inverse)."""
    a = np.asarray(x, np.float64)
    a = np.transpose(a, (0, 2, 3, 1)) / steps["scale"]
    if steps["mean"] is not None:
        a = a + steps["mean"]
    if steps["channel_swap"]:
        a = a[..., ::-1]
    return np.ascontiguousarray(a, dtype=np.float32)


def baked_description(steps: dict[str, Any], pp) -> dict[str, Any]:
    """The report's record of the baked preprocessing."""
    m = steps["mean"]
    return {"baked": True, "input": steps["input"],
            "takes": "RGB pixel values in [0, 255], channels last, already resized and cropped to "
                     f"{steps['shape'][0]}x{steps['shape'][1]}",
            "channel_swap": "RGB -> BGR" if steps["channel_swap"] else None,
            "mean": None if m is None else ("per channel " + ", ".join(f"{v:g}" for v in m.reshape(-1))
                                            if m.shape[1:3] == (1, 1) else f"mean image {m.shape[1]}x"
                                            f"{m.shape[2]} (centre-cropped)"),
            "mean_file": os.path.abspath(pp.mean_file) if getattr(pp, "mean_file", None) else None,
            "scale": steps["scale"],
            "formula": "network_input = (" + ("swap(x)" if steps["channel_swap"] else "x")
                       + (" - mean" if m is not None else "") + ")"
                       + (f" * {steps['scale']:g}" if steps["scale"] != 1.0 else "")}


def _random_inputs(model, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shp = tuple(t.shape[1:])
        if any(d is None for d in shp):
            raise MigratorError("cannot check the exported model: the input size is unknown and no "
                                "comparison input was kept")
        out.append(rng.standard_normal((1,) + shp).astype(np.float32))
    return out


class CheckProcess:
    """A fresh Python process for the export check, started ahead of the job: it imports
    TensorFlow and Keras (Migrator blocked when ``block_migrator``) while the parent still
    verifies and writes, then checks every artifact of ONE job it is given on stdin."""

    def __init__(self, block_migrator: bool = True):
        self.block_migrator = bool(block_migrator)
        self.work = tempfile.mkdtemp(prefix="migrator-verify-")
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # a neutral working directory: a checkout's migrator/ must not be importable by accident
        self.proc = subprocess.Popen(
            [sys.executable, "-c", VERIFY_SCRIPT, "--serve", "block" if block_migrator else "load"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=self.work, env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job_path: str, timeout: float) -> tuple[int, str, str]:
        """Hand over the job and wait: (exit status, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(job_path + "\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        except (BrokenPipeError, OSError):      # it died while starting
            out, err = self.proc.communicate()
        return self.proc.returncode, out or "", err or ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass
        shutil.rmtree(self.work, ignore_errors=True)


_EARLY: CheckProcess | None = None


def start_check_process() -> None:
    """Start the (Migrator-free) check process now, ahead of :func:`export`, so that its
    start-up runs while the comparison does; the next export takes it (idempotent)."""
    global _EARLY
    if _EARLY is None or not _EARLY.alive():
        _EARLY = CheckProcess(block_migrator=True)


def stop_check_process() -> None:
    """Stop a check process started ahead and not taken (no export follows)."""
    global _EARLY
    p, _EARLY = _EARLY, None
    if p is not None:
        p.stop()


def _take_check_process(block_migrator: bool) -> CheckProcess | None:
    global _EARLY
    p = _EARLY
    if p is not None and p.block_migrator == block_migrator and p.alive():
        _EARLY = None
        return p
    return None


atexit.register(stop_check_process)


def run_fresh(artifacts: list[dict], sig_inputs: list[str], sig_outputs: list[str],
              inputs: list[np.ndarray], *, block_migrator: bool = True,
              timeout: float = 1800) -> tuple[list[dict], list[list[np.ndarray]]]:
    """Load and run each artifact (``{'path', 'format', 'arch'?}``) in one fresh Python
    process (Migrator un-importable when ``block_migrator``): the one started ahead by
    :func:`start_check_process` when there is one, else a new one.  Returns one record per
    artifact (``ok``, ``error``, ``load_s``, ``run_s``, ``classes``/``signature_*``) and its
    outputs."""
    proc = _take_check_process(block_migrator) or CheckProcess(block_migrator)
    work = proc.work
    try:
        np.savez(os.path.join(work, "x.npz"), **{f"in{i}": a for i, a in enumerate(inputs)})
        job = {"artifacts": artifacts, "sig_inputs": sig_inputs, "sig_outputs": sig_outputs,
               "inputs": os.path.join(work, "x.npz"), "outputs": os.path.join(work, "y.npz"),
               "result": os.path.join(work, "r.json"), "block_migrator": bool(block_migrator)}
        with open(os.path.join(work, "job.json"), "w", encoding="utf-8") as f:
            json.dump(job, f)
        rc, out, err = proc.run(os.path.join(work, "job.json"), timeout)
        if rc != 0 or not os.path.exists(job["result"]):
            tail = " ".join((err or out or "").strip().splitlines()[-3:])
            raise MigratorError(f"the fresh-process check of the exported model crashed "
                                f"(exit {rc}): {tail[-500:]}")
        with open(job["result"], encoding="utf-8") as f:
            recs = json.load(f)
        ys = np.load(job["outputs"])
        outs = [[np.asarray(ys[f"a{k}_o{j}"]) for j in range(r.get("n_outputs", 0))] if r.get("ok") else []
                for k, r in enumerate(recs)]
        return recs, outs
    finally:
        proc.stop()


def _check_outputs(rec: dict, got: list[np.ndarray], keras_outs: list[np.ndarray],
                   refs: list[np.ndarray | None], tol, accept_mismatch: bool,
                   verified: list[float] | None = None, layouts: list | None = None) -> None:
    """Fill ``rec`` with the artifact's errors against the reference and against the
    in-memory Keras model; ``rec['passed']``.

    An artifact is kept only when it matches the *reference*: within the plain tolerance, or no
    farther from the reference than the comparison measured for the verified model at that
    output (``verified``: the recorded max |keras - reference| of a verdict that passed, e.g. on
    the float32 budget) plus the plain tolerance.  Matching the in-memory Keras model alone is not
    enough (a wrong artifact of a wrong model would pass).  ``accept_mismatch`` is the one
    explicit way past a reference mismatch; the record says so (``accepted_mismatch``).  Only
    when no reference output was kept (nothing to compare with) is the in-memory model the
    comparison, and the record names it (``compared_with``)."""
    if not rec.get("ok"):
        rec["passed"] = False
        return
    if len(got) != len(keras_outs):
        rec["passed"] = False
        rec["error"] = f"{len(got)} outputs, the model has {len(keras_outs)}"
        return
    vs_ref, vs_keras = [], []
    ok = True
    missing_ref = False
    verified = list(verified) if verified is not None else [0.0] * len(got)
    layouts = list(layouts) if layouts is not None else [None] * len(got)
    for g, k, r, v, lay in zip(got, keras_outs, refs, verified, layouts, strict=True):
        if g.shape != k.shape:
            rec["passed"] = False
            rec["error"] = f"output shape {g.shape}, the Keras model gives {k.shape}"
            return
        dk = float(np.max(np.abs(g.astype(np.float64) - k))) if g.size else 0.0
        scale = float(np.max(np.abs(k))) if k.size else 0.0
        ok_k = bool(np.isfinite(dk)) and dk <= tol.atol + tol.rtol * scale
        vs_keras.append({"max_abs": dk, "rel_to_max": dk / scale if scale else dk, "passed": ok_k})
        gs = to_source_layout(g, r.ndim, lay) if r is not None else None
        if r is None or gs.shape != r.shape:
            missing_ref = True
            ok = ok and ok_k
            continue
        dr = float(np.max(np.abs(gs.astype(np.float64) - r))) if r.size else 0.0
        rscale = float(np.max(np.abs(r))) if r.size else 0.0
        allowed = tol.atol + tol.rtol * rscale + (v if v is not None and np.isfinite(v) else 0.0)
        ok_r = bool(np.isfinite(dr)) and dr <= allowed
        vs_ref.append({"max_abs": dr, "rel_to_max": dr / rscale if rscale else dr, "passed": ok_r,
                       "verified_max_abs": v, "allowed": allowed})
        ok = ok and ok_r
    rec["vs_reference"] = vs_ref or None
    rec["vs_keras"] = vs_keras
    rec["compared_with"] = ("in-memory Keras model (no reference output kept)" if missing_ref and not vs_ref
                            else "reference")
    rec["max_abs"] = max([d["max_abs"] for d in (vs_ref or vs_keras)], default=0.0)
    rec["rel_to_max"] = max([d["rel_to_max"] for d in (vs_ref or vs_keras)], default=0.0)
    if not ok and accept_mismatch and all(d["passed"] for d in vs_keras):
        rec["accepted_mismatch"] = True      # the user's explicit consent, recorded in the report
        ok = True
    rec["passed"] = bool(ok)


def _verified_error(result, tensor: str) -> float:
    """max |keras - reference| the comparison recorded at the layer producing ``tensor``, when
    that layer passed (0.0 otherwise: then only the plain tolerance counts)."""
    if result is None:
        return 0.0
    try:
        lr = result.layer(tensor.split(":")[0])
    except KeyError:
        return 0.0
    return float(lr.max_abs) if lr.status == "pass" and np.isfinite(lr.max_abs) else 0.0


def verify_artifacts(model, plan, graph, items: list[dict], result=None, *,
                     accept_mismatch: bool = False, baked: dict | None = None) -> list[dict]:
    """Check written artifacts (``{'path', 'format', 'arch'?, 'needs_migrator'?}``) in a
    fresh process; returns one record per item (``passed``, ``max_abs``, ...).  ``baked``
    (:func:`baked_steps`): ``model`` has the preprocessing in front; it is fed the raw pixels
    that preprocess to the comparison input."""
    ins, outs = signature_names(plan, graph)
    x = getattr(result, "input_array", None) if result is not None else None
    if baked is not None and x is not None and not isinstance(x, dict):
        inputs = [unbake_inputs(x, baked)]
    else:
        inputs = _keras_inputs(plan, x) if x is not None else _random_inputs(model)
    y = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    keras_outs = [np.asarray(v) for v in (list(y) if isinstance(y, (list, tuple)) else [y])]
    ref_map = getattr(result, "reference_outputs", None) or {}
    refs = [ref_map.get(t) for t, _ in outs]
    tol = result.tolerances.default if result is not None else Tolerance()
    verified = [_verified_error(result, t) for t, _ in outs]
    recs: list[dict | None] = [None] * len(items)
    for block in (True, False):
        idx = [i for i, it in enumerate(items) if bool(it.get("needs_migrator")) != block]
        if not idx:
            continue
        arts = [{"path": items[i]["path"], "format": items[i]["format"], "arch": items[i].get("arch")}
                for i in idx]
        rr, oo = run_fresh(arts, [s for *_, s in ins], [s for _, s in outs], inputs, block_migrator=block)
        for i, r, o in zip(idx, rr, oo):
            r.setdefault("migrator_importable", not block)
            _check_outputs(r, o, keras_outs, refs, tol, accept_mismatch, verified,
                           [plan.tensor_layouts.get(t) for t, _ in outs])
            recs[i] = r
    return [r or {} for r in recs]


# --------------------------------------------------------------------------------------
# the one export entry point
# --------------------------------------------------------------------------------------
def export(model, plan, result, out_path: str, *, fmt: str | None = None, also: Iterable[str] = (),
           report_path: str | None = None, force: bool = False, accept_mismatch: bool = False,
           graph=None, overrides=None, extra: dict[str, Any] | None = None, verify: bool = True,
           progress: Progress = None, bake=None) -> tuple[list[str], list[dict]]:
    """Write ``out_path`` (format ``fmt`` or from its extension), one companion per ``also``
    format and the report (JSON + .md + .html twins); verify each artifact in a fresh process
    first.  Returns ``(paths written, artifact records)``; raises :class:`MigratorError` (and
    leaves nothing behind) when the comparison failed without consent or an artifact does
    not reproduce the reference.  ``bake`` (an :class:`~migrator.core.inputs.ImagePreprocessing`):
    the written model takes raw RGB pixels and does that preprocessing first (the report says
    so)."""

    graph = graph or plan.graph
    baked = None
    if bake is not None:
        baked = baked_steps(plan, graph, bake)
        model = bake_model(model, baked)
        extra = {**(extra or {}), "preprocessing": baked_description(baked, bake)}
    if result is None and not accept_mismatch:
        raise MigratorError("the conversion has not been verified; run the comparison first "
                            "(or accept explicitly)", file=out_path)
    if result is not None and not result.passed and not accept_mismatch:
        fd = result.first_divergent
        raise MigratorError("verification failed" + (f" (first divergent layer '{fd.source}')" if fd else "")
                            + "; not saving without explicit consent (--accept-mismatch)", file=out_path)
    targets = artifact_paths(out_path, fmt, also)
    recover(os.path.dirname(os.path.abspath(out_path)) or ".")   # a save killed mid-commit: finish it
    report_paths = []
    if report_path:
        stem = report_path[:-5] if report_path.lower().endswith(".json") else report_path
        report_paths = [report_path, stem + ".md", stem + ".html"]
    for p, f in targets:
        check_target(p, f, force)
    if report_paths:
        report_paths += figure_paths(report_paths[1])   # the SVG figures the Markdown report links
    for p in report_paths:
        check_target(p, "report", force)
    if any(f == "h5" for _, f in targets):
        why = ("legacy HDF5 (.h5) cannot store the baked preprocessing (keras.ops); write .keras, "
               "SavedModel or TFLite instead") if baked is not None else h5_problem(model, plan)
        if why:
            raise MigratorError(why, file=next(p for p, f in targets if f == "h5"))
    from .mapping.rules.recurrent import open_length_problem
    for p, f in targets:
        why = open_length_problem(plan, f)
        if why:
            raise MigratorError(why, file=p)
    needs = migrator_only_layers(plan)
    temps: list[str] = []
    written: list[str] = []
    records: list[dict] = []
    committing = False
    n = len(targets)
    try:
        items = []
        # a SavedModel, when one is asked for, is written first: the TFLite converter reads it
        order = sorted(range(n), key=lambda k: targets[k][1] != "saved_model")
        sm_tmp = None
        for i in order:
            p, f = targets[i]
            if progress:
                progress(0.7 * len(items) / n, f"writing {os.path.basename(p)}")
            tmp = _tmp_name(p, f)
            temps.append(tmp)
            t0 = time.perf_counter()
            try:
                info = _write(model, plan, graph, f, tmp, sm_tmp) if f == "tflite" else \
                    _write(model, plan, graph, f, tmp)
            except MigratorError:
                raise
            except Exception as e:  # noqa: BLE001 - a converter / writer failure, named
                raise MigratorError(f"cannot write the {f} export: {type(e).__name__}: "
                                    f"{' '.join(str(e).split())[:400]}", file=p) from None
            if f == "weights":
                temps.append(tmp + ".json")
            if f == "saved_model":
                sm_tmp = tmp
            item = {"path": tmp, "format": f, "target": p, "write_s": time.perf_counter() - t0,
                    "index": i, **info}
            if f == "weights":
                item["arch"] = tmp + ".json"
            if needs and f in ("keras", "h5", "weights"):
                item["needs_migrator"] = True
            items.append(item)
        items.sort(key=lambda it: it["index"])
        if verify:
            if progress:
                progress(0.7, "loading the exported model(s) in a fresh process")
            recs = verify_artifacts(model, plan, graph, items, result, accept_mismatch=accept_mismatch,
                                    baked=baked)
        else:
            recs = [{"passed": None, "note": "not checked"} for _ in items]
        for item, rec in zip(items, recs):
            rec.update({"path": os.path.abspath(item["target"]), "format": item["format"],
                        "write_s": item["write_s"]})
            for k in ("quantization", "ops"):
                if k in item:
                    rec[k] = item[k]
            if item.get("needs_migrator"):
                rec["needs_migrator"] = [d["keras"] for d in needs]
            records.append(rec)
        bad = [r for r in records if r.get("passed") is False]
        if bad:
            r = bad[0]
            why = r.get("error") or (f"outputs differ: max |diff| {r.get('max_abs', float('nan')):.3g} "
                                     f"({r.get('rel_to_max', float('nan')):.3g} of max|ref|)")
            if r.get("error"):
                raise MigratorError(f"the exported {r['format']} model failed its check in a fresh process: "
                                    f"{why}; nothing was written", file=r["path"])
            raise VerificationFailed(f"{r['path']}: the exported {r['format']} model does not match the "
                                     f"{r.get('compared_with', 'reference')} in a fresh process: {why}; "
                                     "nothing was written (--accept-mismatch saves it anyway, recorded in "
                                     "the report)")
        moves = [(item["path"], item["target"]) for item in items]
        if report_path:
            ex = dict(extra or {})
            rep = build_report(graph, plan, result, outputs=[p for p, _ in targets],
                               overrides=overrides if overrides is not None else plan.overrides,
                               accepted_mismatch=bool(result is not None and not result.passed)
                               or any(r.get("accepted_mismatch") for r in records),
                               extra=ex or None, artifacts=records, migrator_only=needs)
            figs = figure_links(rep, report_paths[1])
            texts = [(report_paths[0], json.dumps(rep, indent=1, allow_nan=False))]
            texts += [(os.path.join(os.path.dirname(report_paths[1]), name), fig.svg) for fig, name in figs]
            texts += [(report_paths[1], render_markdown(rep, figs)), (report_paths[2], render_html(rep, [f for f, _ in figs]))]
            for target, text in texts:
                tmp = _tmp_name(target, "report")
                temps.append(tmp)
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
                moves.append((tmp, target))
        for _tmp, target in moves:
            if os.path.lexists(target) and not force:
                raise MigratorError("appeared while writing; not overwritten", file=target)
        if progress:
            progress(0.9, "moving the files into place")
        # the model, its other formats and its report replace the previous set together
        committing = True
        commit(moves, journal_path(out_path))
        written = [target for _tmp, target in moves]
        if report_path:
            for stale in set(report_paths[3:]) - set(written):   # an earlier run's figure this report lacks
                if force and os.path.exists(stale):
                    os.remove(stale)
    except BaseException:
        if committing:     # interrupted between moves: finish the set rather than leave a mix
            recover(os.path.dirname(os.path.abspath(out_path)) or ".")
        for t in temps:
            _remove(t)
        raise
    for t in temps:
        _remove(t)
    if progress:
        progress(1.0, "saved")
    return written, records




def describe_records(records: list[dict]) -> list[str]:
    """One line per artifact for the CLI / the GUI's status."""
    lines = []
    for r in records:
        if r.get("passed") is None:
            lines.append(f"{r['format']:<12} {r['path']}: not checked")
            continue
        how = {"keras": "keras.saving.load_model(safe_mode=True)", "h5": "keras.saving.load_model(safe_mode=True)",
               "weights": "model_from_json + load_weights", "saved_model": "tf.saved_model.load",
               "tflite": "tf.lite.Interpreter"}[r["format"]]
        who = "with Migrator importable" if r.get("migrator_importable") else "without Migrator"
        path = os.path.relpath(r["path"]) if not os.path.relpath(r["path"]).startswith("..") else r["path"]
        lines.append(f"{r['format']:<12} {path}: {'ok' if r.get('passed') else 'FAILED'}, reloaded in a "
                     f"fresh process {who} ({how}); max |diff| vs {r.get('compared_with', 'reference')} "
                     f"{r.get('max_abs', float('nan')):.2g} ({r.get('rel_to_max', float('nan')):.2g} of max|ref|)")
    return lines
