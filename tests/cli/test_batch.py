"""`migrator batch`: a folder of models in one run — each converted and verified in its own process,
an index that says what happened to each (verified / verification failed at a layer / refused by type /
bad file), written files only for the good ones, the exit status saying that some failed, a re-run that
skips what is done."""
import json
import os
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from migrator.core.batch import discover, is_network_pickle
from migrator.testing.lasagne_models import MISC_SCRIPT, write_model

from ..lasagne.test_hostile_network_pickle import dumps, mlp
from .test_cli import run, small_net


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    good = root / "caffe_good"
    good.mkdir()
    small_net(good, name="deploy")
    (good / "train_val.prototxt").write_text("name: 'not the deploy net'\n")
    las = root / "lasagne_misc"
    las.mkdir()
    write_model(las, MISC_SCRIPT, flavour="npz", seed=2)
    unk = root / "unknown_type"
    unk.mkdir()
    proto, _ = small_net(unk, name="deploy")
    with open(proto, "a", encoding="utf-8") as f:
        f.write('layer { name: "prior" type: "PriorBoxish" bottom: "prob" top: "prior" }\n')
    bad = root / "corrupt"
    bad.mkdir()
    _, model = small_net(bad, name="deploy")
    data = open(model, "rb").read()
    open(model, "wb").write(data[: len(data) // 3] + b"\xff\xff\xff")
    fail = root / "broken_by_mapping"
    fail.mkdir()
    small_net(fail, name="deploy")
    (fail / "deploy.mapping.json").write_text(json.dumps(
        {"version": 1, "layers": {"bn1": {"epsilon": 0.5, "variance": "raw"}}}))
    return root


def test_discovery_picks_the_deploy_net_and_pairs_the_files(zoo):
    found = {e.name: e for e in discover(str(zoo))}
    assert set(found) == {"caffe_good", "lasagne_misc", "unknown_type",
                          "corrupt", "broken_by_mapping"}, sorted(found)
    assert [os.path.basename(p) for p in found["caffe_good"].files] == ["deploy.prototxt",
                                                                                "deploy.caffemodel"]
    assert found["broken_by_mapping"].mapping.endswith("deploy.mapping.json")
    assert found["lasagne_misc"].framework == "lasagne"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.slow
def test_batch_over_a_mixed_folder(zoo, tmp_path):
    out = tmp_path / "out"
    r = run("batch", zoo, "-o", out, "--timeout", "600")
    assert r.returncode == 3, r.stdout + r.stderr          # some models were not verified
    idx = json.loads((out / "index.json").read_text())
    by = {m["name"]: m for m in idx["models"]}
    assert by["caffe_good"]["status"] == "verified", by["caffe_good"]
    assert by["lasagne_misc"]["status"] == "verified", by["lasagne_misc"]
    assert by["unknown_type"]["status"] == "refused" and "PriorBoxish" in by["unknown_type"]["detail"]
    assert by["corrupt"]["status"] == "bad file" and "deploy.caffemodel" in by["corrupt"]["detail"]
    broken = by["broken_by_mapping"]
    # bn1 is compared through the Scale it is fused with
    assert broken["status"] == "verification failed" and broken["layer"] == "scale1", broken
    for name in ("caffe_good", "lasagne_misc"):
        m = by[name]
        assert m["outputs"] and all(os.path.exists(p) for p in m["outputs"])
        assert m["worst_max_rel"] is not None and m["worst_max_rel"] < 1e-3
        assert m["peak_rss_mb"] and m["seconds"] > 0
    for name in ("unknown_type", "corrupt", "broken_by_mapping"):
        folder = out / name
        assert not folder.exists() or not any(p.suffix in (".keras", ".json") for p in folder.rglob("*")), name
    page = _Page()
    page.feed((out / "index.html").read_text())
    statuses = {row[0]: row[2] for row in page.rows}
    assert statuses == {n: m["status"] for n, m in by.items()}
    assert "verified" in r.stdout and "index:" in r.stdout

    # a re-run skips what is done and converts the rest again
    shutil.rmtree(zoo / "broken_by_mapping")
    r2 = run("batch", zoo, "-o", out, "--timeout", "600")
    idx2 = json.loads((out / "index.json").read_text())
    by2 = {m["name"]: m for m in idx2["models"]}
    assert by2["caffe_good"].get("skipped") and by2["lasagne_misc"].get("skipped")
    assert "broken_by_mapping" not in by2 and "(already done)" in r2.stdout


@pytest.fixture(scope="module")
def pickle_zoo(tmp_path_factory):
    """A Caffe model, a Lasagne script + .pkl parameters, a whole network pickled alone (written
    opcode for opcode as Lasagne pickles one), a nolearn-style one in protocol 4, and a stray
    parameter pickle with no script."""
    import pickle

    import numpy as np
    root = tmp_path_factory.mktemp("pickle_zoo")
    (root / "caffe").mkdir()
    small_net(root / "caffe", name="deploy")
    (root / "scripted").mkdir()
    write_model(root / "scripted", MISC_SCRIPT, flavour="pkl_list", seed=3)
    (root / "alone").mkdir()
    fc, W, b = mlp(np.random.default_rng(5))
    (root / "alone" / "mlp_net.pkl").write_bytes(dumps(fc, 2))
    (root / "alone4").mkdir()
    fc4, _, _ = mlp(np.random.default_rng(6))
    (root / "alone4" / "net.pickle").write_bytes(dumps(fc4, 4))
    (root / "stray").mkdir()     # a parameter file without its script: not a model
    (root / "stray" / "params.pkl").write_bytes(pickle.dumps([W, b], protocol=2))
    return root, W, b


def test_discovery_takes_a_lone_network_pickle_as_a_model(pickle_zoo):
    root, _, _ = pickle_zoo
    found = {e.name: e for e in discover(str(root))}
    assert set(found) == {"caffe", "scripted", "alone", "alone4"}, sorted(found)
    assert found["alone"].framework == "lasagne" and found["alone"].problem is None
    assert [os.path.basename(p) for p in found["alone"].files] == ["mlp_net.pkl"]
    assert [os.path.basename(p) for p in found["alone4"].files] == ["net.pickle"]
    scripted = [os.path.basename(p) for p in found["scripted"].files]
    assert len(scripted) == 2 and scripted[0].endswith(".py") and scripted[1].endswith(".pkl")
    assert not is_network_pickle(str(root / "stray" / "params.pkl"))


def test_a_network_pickle_beside_a_builder_script_stays_its_parameter_file(tmp_path):
    write_model(tmp_path, MISC_SCRIPT, flavour="npz", seed=1)
    import numpy as np
    fc, _, _ = mlp(np.random.default_rng(0))
    (tmp_path / "whole.pkl").write_bytes(dumps(fc))
    found = discover(str(tmp_path))
    assert len(found) == 2 and all(len(e.files) == 2 and e.files[0].endswith(".py") for e in found)


@pytest.mark.slow
def test_batch_converts_a_lone_network_pickle(pickle_zoo, tmp_path):
    import numpy as np
    root, W, b = pickle_zoo
    out = tmp_path / "out"
    r = run("batch", root, "-o", out, "--timeout", "600")
    idx = json.loads((out / "index.json").read_text())
    by = {m["name"]: m for m in idx["models"]}
    assert set(by) == {"caffe", "scripted", "alone", "alone4"}, sorted(by)
    assert all(m["status"] == "verified" for m in by.values()), (by, r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    import keras
    keras_file = next(p for p in by["alone"]["outputs"] if p.endswith(".keras"))
    model = keras.saving.load_model(keras_file, compile=False)
    x = np.random.default_rng(7).normal(size=(4, 5)).astype(np.float32)
    want = np.maximum(x.astype(np.float64) @ W + b, 0)           # naive: relu(x W + b)
    assert np.abs(np.asarray(model.predict(x, verbose=0)) - want).max() < 1e-5
    page = _Page()
    page.feed((out / "index.html").read_text())
    assert {row[0] for row in page.rows} >= {"alone", "alone4"}


def test_no_models_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("batch", tmp_path / "empty", "-o", tmp_path / "out")
    assert r.returncode == 2 and "no models found" in r.stderr and "Traceback" not in r.stderr


def test_index_html_is_well_formed(tmp_path):
    from migrator.core.batch import write_index
    idx = write_index(str(tmp_path), str(tmp_path), "builtin", [
        {"name": "a/b", "framework": "caffe", "status": "verified", "detail": "", "outputs": [],
         "report": str(tmp_path / "a" / "b.report.json"), "worst_layer": "fc", "worst_max_rel": 1e-7,
         "top1_agreement": 1.0, "seconds": 3.2, "peak_rss_mb": 900.0},
        {"name": "c<d>", "framework": "lasagne", "status": "refused", "detail": "unsupported layer type: 'x' (type Y&Z)"}])
    text = (tmp_path / "index.html").read_text()
    ET.fromstring(text.replace("<!DOCTYPE html>", "").replace("<meta charset='utf-8'>", "<meta charset='utf-8'/>"))
    assert "c&lt;d&gt;" in text and "Y&amp;Z" in text and "b.report.html" in text
    assert idx["counts"]["verified"] == 1 and idx["counts"]["refused"] == 1
