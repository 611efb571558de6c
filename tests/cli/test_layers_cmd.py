"""`migrator layers` and docs/coverage.md: one place that says what is covered.

The table (migrator/core/coverage.py) is checked against the registries both ways, every
'exact' entry against the test file that proves it, the BVLC type list against the real
Caffe's own registry, and docs/coverage.md against the generator.  `inspect` says up front
which layers of a model are not covered.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.core import coverage
from migrator.core.importers import caffe as C
from migrator.testing.caffe_net import NetBuilder
from tests.legacy import caffe_root

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))

#: how a test file uses a Caffe type: the NetBuilder writer or the type string
WRITER = {"Convolution": ".conv(", "Deconvolution": ".deconv(", "InnerProduct": ".ip(", "BatchNorm": ".bn(",
          "Scale": ".scale(", "ReLU": ".relu(", "PReLU": ".prelu(", "ELU": ".elu(", "Sigmoid": ".sigmoid(",
          "TanH": ".tanh(", "AbsVal": ".absval(", "BNLL": ".bnll(", "Exp": ".exp(", "Log": ".log(",
          "Power": ".power(", "Threshold": ".threshold(", "Clip": ".clip(", "Swish": ".swish(",
          "Pooling": ".pool(", "LRN": ".lrn(", "Eltwise": ".eltwise(", "Concat": ".concat(",
          "Slice": ".slice(", "Split": ".split(", "Crop": ".crop(", "Flatten": ".flatten(",
          "Reshape": ".reshape(", "Softmax": ".softmax(", "Dropout": ".dropout(",
          "Reduction": ".reduction(", "MVN": ".mvn(", "Tile": ".tile(", "ArgMax": ".argmax(",
          "Embed": ".embed(", "Input": ".input(", "Bias": '"Bias"', "SPP": '"SPP"', "LSTM": '"LSTM"', "RNN": '"RNN"', "Im2col": '"Im2col"'}


def run(*args):
    return subprocess.run([sys.executable, "-m", "migrator", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=600, check=False)


def _test_text(path: str) -> str:
    text = (REPO / path).read_text()
    if path == "tests/legacy/test_caffe_bridge.py":   # its nets are written in tests/legacy/__init__.py
        text += (REPO / "tests/legacy/__init__.py").read_text()
    return text


def test_caffe_table_agrees_with_the_importer():
    entries = {e.type: e for e in coverage.caffe_entries()}
    exact = {t for t, e in entries.items() if e.status == "exact"}
    assert exact == set(coverage.CAFFE_TESTED)          # every proved type is converted, and back
    bvlc = set(coverage.BVLC_CAFFE_TYPES)
    from migrator.core.importers.caffe import FORK_TYPES
    # nothing converted is missing from the list (fork types are listed after the BVLC ones)
    assert set(C.SUPPORTED_TYPES) <= bvlc | {"Input"} | set(FORK_TYPES)
    assert set(FORK_TYPES) - bvlc <= set(entries)
    assert set(C.REFUSED_TYPES) <= bvlc
    assert {t for t, e in entries.items() if e.status == "refused"} == set(C.REFUSED_TYPES)
    assert not [t for t in bvlc if entries[t].status in ("unsupported", "converted")]
    for e in entries.values():
        if e.status == "refused":
            assert e.detail and "\n" not in e.detail


@pytest.mark.parametrize("type_", sorted(coverage.CAFFE_TESTED))
def test_each_exact_caffe_type_is_used_by_its_test(type_):
    ref, path, _ = coverage.CAFFE_TESTED[type_]
    text = _test_text(path)
    writer = WRITER.get(type_)   # types without a NetBuilder writer are written by their type string
    assert (writer is not None and writer in text) or f', "{type_}", [' in text, \
        f"{path} does not build a {type_} layer"
    if "real Caffe" in ref:
        assert "caffe_command" in text or "legacy" in text, f"{path} does not run the real Caffe"
    if "OpenCV" in ref:
        assert "cv2" in text or "opencv" in text


def test_lasagne_table_agrees_with_the_registry():
    from migrator.core.importers.lasagne import KNOWN
    assert set(coverage.LASAGNE_TESTED) <= set(KNOWN)
    listed = {e.type for e in coverage.lasagne_entries()}
    assert listed == set(KNOWN)
    for cls, (ref, path, _) in coverage.LASAGNE_TESTED.items():
        assert cls in (REPO / path).read_text(), (cls, path)


@pytest.mark.caffe
@pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")
def test_bvlc_list_is_the_real_caffe_registry():
    root = caffe_root()[0]
    r = subprocess.run(["chroot", root, "python3", "-c",
                        "import caffe; print(' '.join(sorted(caffe.layer_type_list())))"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-500:]
    assert sorted(r.stdout.split()) == sorted(coverage.BVLC_CAFFE_TYPES)


def test_docs_coverage_is_up_to_date():
    want = coverage.as_markdown(coverage.entries())
    have = (REPO / "docs" / "coverage.md").read_text()
    assert have == want, "docs/coverage.md is stale: run `make coverage`"


def test_layers_command_text_and_json():
    r = run("layers")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("caffe: ") and any(ln.startswith("lasagne: ") for ln in lines)
    row = next(ln for ln in lines if ln.split()[:1] == ["Python"])
    assert "refused" in row and "user code" in row
    row = next(ln for ln in lines if ln.split()[:1] == ["Reduction"])
    assert "exact" in row and "real Caffe" in row and "test_caffe_catalogue.py" in row
    r = run("layers", "--json", "--framework", "caffe")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    by = {x["type"]: x for x in d["layers"]}
    assert set(coverage.BVLC_CAFFE_TYPES) <= set(by) and all(x["framework"] == "caffe" for x in d["layers"])
    assert by["SoftmaxWithLoss"]["status"] == "dropped" and by["MemoryData"]["status"] == "input"
    assert d["counts"]["caffe"]["exact"] == len(coverage.CAFFE_TESTED)


def test_inspect_says_up_front_what_is_not_covered(tmp_path):
    nb = NetBuilder("nc", seed=0)
    nb.input("data", (1, 3, 8, 8))
    nb.conv("conv", "data", 4, 3)
    nb.layer("py", "Python", ["conv"], ["py"], {"python_param": {"module": "m", "layer": "L"}})
    nb.layer("odd", "MyFancyLayer", ["py"], ["odd"])
    proto, model = nb.save(tmp_path / "nc.prototxt", tmp_path / "nc.caffemodel")
    r = run("inspect", proto, model)
    lines = r.stdout.splitlines()
    assert lines[1] == "not covered: 2 of 4 layers: py (Python), odd (MyFancyLayer)", r.stdout
    r = run("inspect", proto, model, "--json")
    d = json.loads(r.stdout)
    nc = {x["source"]: x for x in d["not_covered"]}
    assert set(nc) == {"py", "odd"} and "user code" in nc["py"]["why"]
    from migrator.core import flow
    api = coverage.not_covered(flow.plan_model(flow.open_model([proto, model])))
    assert [(n, t) for n, t, _ in api] == [("py", "Python"), ("odd", "MyFancyLayer")]
    nb2 = NetBuilder("ok", seed=0)
    nb2.input("data", (1, 3, 8, 8))
    nb2.conv("conv", "data", 4, 3)
    r = run("inspect", *nb2.save(tmp_path / "ok.prototxt", tmp_path / "ok.caffemodel"))
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "coverage: all 2 layers are converted"
