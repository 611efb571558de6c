"""The command-line contract: inspect / convert / compare, exit codes, one-line errors, no
half-written or overwritten outputs.  Runs the real `python -m migrator` in a subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from migrator.testing.caffe_net import NetBuilder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)


def run(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "migrator", *map(str, args)], capture_output=True,
                       text=True, env=ENV, cwd=cwd or REPO, timeout=600)
    return r


def conv_bn_net(tmp_path, name, seed, hw, filters, pool, pool_k, classes):
    """Save a small classifier (conv, BatchNorm + Scale, ReLU, ``pool`` pooling, InnerProduct,
    Softmax) on a ``(1, 3, *hw)`` input as ``tmp_path/<name>.prototxt/.caffemodel``."""
    nb = NetBuilder(name, seed=seed)
    nb.input("data", (1, 3, *hw))
    nb.conv("conv1", "data", filters, 3, pad=1, stride=2)
    nb.bn_scale("bn1", "scale1", "conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.pool("pool1", "conv1", pool, pool_k, stride=2)
    nb.ip("fc", "pool1", classes)
    nb.softmax("prob", "fc")
    return nb.save(tmp_path / f"{name}.prototxt", tmp_path / f"{name}.caffemodel")


def small_net(tmp_path, name="net", v1=False):
    return conv_bn_net(tmp_path, name, 1, (17, 19), 6, "max", 3, 5)


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_inspect_table_and_json(tmp_path):
    proto, model = small_net(tmp_path)
    r = run("inspect", proto, model)
    assert r.returncode == 0, r.stderr
    assert "bn1" in r.stdout and "BatchNorm" in r.stdout and "fused" in r.stdout
    r = run("inspect", proto, model, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    names = [L["source"] for L in d["layers"]]
    assert names == ["data", "conv1", "bn1", "scale1", "relu1", "pool1", "fc", "prob"]
    pool = d["layers"][names.index("pool1")]
    assert pool["shape"] == [1, 6, 4, 5]       # 9x10 -> ceil((9-3)/2)+1 = 4, ceil((10-3)/2)+1 = 5
    assert d["layers"][names.index("bn1")]["fused_into"] == "scale1"


def test_convert_writes_model_and_report_and_reloads(tmp_path):
    proto, model = small_net(tmp_path)
    out = tmp_path / "out.keras"
    # (legacy .h5 cannot store the keras.ops of pool1's -FLT_MAX padding: tests/core/test_export.py)
    r = run("convert", proto, model, "-o", out, "--also", "weights")
    assert r.returncode == 0, r.stdout + r.stderr
    for p in ("out.keras", "out.weights.h5", "out.report.json", "out.report.md", "out.report.html"):
        assert (tmp_path / p).is_file(), p
    rep = json.loads((tmp_path / "out.report.json").read_text())
    assert rep["schema_version"] == 1 and rep["verification"]["passed"]
    L = {e["source"]: e for e in rep["layers"]}
    assert L["scale1"]["keras"] and L["scale1"]["layout"] == "NHWC" and L["prob"]["layout"] == "NC"
    assert L["bn1"]["status"] == "fused"
    keys = {row["key"] for row in L["bn1"]["mapping"]}
    assert {"epsilon", "momentum", "moving_mean", "moving_variance"} <= keys
    assert rep["tool"]["tensorflow"] and rep["source"]["files"][0]["sha256"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], "temp files left behind"


def test_convert_refuses_overwrite_and_keeps_file(tmp_path):
    proto, model = small_net(tmp_path)
    out = tmp_path / "m.keras"
    out.write_text("precious")
    r = run("convert", proto, model, "-o", out)
    one_line_error(r, str(out), "exists")
    assert out.read_text() == "precious"
    assert not (tmp_path / "m.report.json").exists()


def test_failed_verification_exit_3_and_nothing_written(tmp_path):
    proto, model = small_net(tmp_path)
    mapping = tmp_path / "bad.json"
    # keep the raw Caffe variance but change epsilon by a lot: outputs change -> must be caught
    mapping.write_text(json.dumps({"version": 1, "layers": {"bn1": {"epsilon": 0.5, "variance": "raw"}}}))
    out = tmp_path / "m.keras"
    r = run("convert", proto, model, "-o", out, "--mapping", mapping)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "first divergent layer: scale1" in r.stdout
    assert "root cause: scale1" in r.stdout
    assert not out.exists() and not (tmp_path / "m.report.json").exists()
    r = run("convert", proto, model, "-o", out, "--mapping", mapping, "--accept-mismatch")
    assert r.returncode == 3 and out.exists()
    rep = json.loads((tmp_path / "m.report.json").read_text())
    assert rep["accepted_mismatch"] is True and rep["verification"]["first_divergent"] == "scale1"
    assert rep["overrides"]["layers"]["bn1"]["epsilon"] == 0.5


def test_compare_with_npy_and_opencv(tmp_path):
    proto, model = small_net(tmp_path)
    x = np.random.default_rng(5).standard_normal((1, 3, 17, 19)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rep = tmp_path / "cmp.json"
    r = run("compare", proto, model, "--input", tmp_path / "x.npy", "--runtime", "opencv", "--report", rep)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VERIFICATION PASSED" in r.stdout
    d = json.loads(rep.read_text())
    assert d["verification"]["runtime"]["name"] == "opencv"
    assert d["verification"]["input"]["kind"] == "npy"


def test_compare_image_input(tmp_path):
    from PIL import Image
    proto, model = small_net(tmp_path)
    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).uniform(0, 255, (40, 30, 3))).astype(np.uint8)).save(img)
    r = run("compare", proto, model, "--image", img, "--mean", "104,117,123", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    pre = json.loads((tmp_path / "r.json").read_text())["verification"]["input"]["preprocessing"]
    assert pre["channel_order"] == "BGR" and pre["mean"] == [104.0, 117.0, 123.0]


def test_v1_model_converts(tmp_path):
    nb = NetBuilder("v1net", seed=2)
    nb.input("data", (1, 3, 15, 15))
    nb.conv("conv1", "data", 4, 3)
    nb.relu("relu1", "conv1", top="conv1")
    nb.lrn("norm1", "conv1", local_size=3)
    nb.pool("pool1", "norm1", "ave", 3, stride=2, pad=1)
    nb.ip("fc", "pool1", 3)
    proto, model = nb.save(tmp_path / "v1.prototxt", tmp_path / "v1.caffemodel", v1=True,
                           input_style="input_dim")
    assert "layers {" in open(proto).read()
    r = run("convert", proto, model, "-o", tmp_path / "v1.keras")
    assert r.returncode == 0, r.stdout + r.stderr


# ---- bad inputs: exit 2, one line naming the file (and layer), no output file ----------
def _bad_case(tmp_path, case):
    proto, model = small_net(tmp_path)
    text = open(proto).read()
    if case == "empty":
        open(model, "wb").close()
        return [proto, model], [model]
    if case == "random":
        open(model, "wb").write(np.random.default_rng(0).bytes(5000))
        return [proto, model], [model]
    if case == "truncated":
        data = open(model, "rb").read()
        open(model, "wb").write(data[: len(data) // 2])
        return [proto, model], [model]
    if case == "syntax":
        open(proto, "w").write(text.replace("}", "", 1))
        return [proto, model], [proto]
    if case == "misfit":
        nb = NetBuilder("net", seed=1)
        nb.input("data", (1, 3, 17, 19))
        nb.conv("conv1", "data", 6, 3, pad=1, stride=2)
        nb.weights["conv1"][0] = nb.weights["conv1"][0][:, :2]
        p2, m2 = nb.save(tmp_path / "misfit.prototxt", tmp_path / "misfit.caffemodel")
        return [p2, m2], ["conv1"]
    if case == "missing-weights":
        nb = NetBuilder("other", seed=1)
        nb.input("data", (1, 3, 17, 19))
        nb.conv("convX", "data", 6, 3)
        _, m2 = nb.save(tmp_path / "o.prototxt", tmp_path / "o.caffemodel")
        return [proto, m2], ["conv1"]
    if case == "unknown-type":
        open(proto, "w").write(text + '\nlayer { name: "weird" type: "FancyNorm" bottom: "prob" top: "w" }\n')
        return [proto, model], ["weird", "FancyNorm"]
    if case == "nan":
        nb = NetBuilder("net", seed=1)
        nb.input("data", (1, 3, 17, 19))
        nb.conv("conv1", "data", 6, 3)
        nb.weights["conv1"][0][0, 0, 0, 0] = np.nan
        p2, m2 = nb.save(tmp_path / "nan.prototxt", tmp_path / "nan.caffemodel")
        return [p2, m2], ["conv1"]
    if case == "undefined-bottom":
        open(proto, "w").write(text.replace('bottom: "pool1"', 'bottom: "nowhere"'))
        return [proto, model], ["fc", "nowhere"]
    if case == "cycle":
        open(proto, "w").write(text + '\nlayer { name: "a" type: "ReLU" bottom: "b" top: "a" }\n'
                               'layer { name: "b" type: "ReLU" bottom: "a" top: "b" }\n')
        return [proto, model], ["cycl"]
    if case == "unreadable":
        return [proto, tmp_path / "does-not-exist.caffemodel"], ["does-not-exist.caffemodel"]
    if case == "bad-mapping":
        m = tmp_path / "map.json"
        m.write_text(json.dumps({"version": 1, "layers": {"bn1": {"epsilonn": 1e-3}}}))
        return [proto, model, "--mapping", m], ["epsilonn"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty", "random", "truncated", "syntax", "misfit", "missing-weights",
                                  "unknown-type", "nan", "undefined-bottom", "cycle", "unreadable",
                                  "bad-mapping"])
def test_bad_input_exit_2(tmp_path, case):
    args, needles = _bad_case(tmp_path, case)
    out = tmp_path / "out.keras"
    r = run("convert", *args, "-o", out)
    one_line_error(r, *needles)
    assert not out.exists() and not (tmp_path / "out.report.json").exists()
