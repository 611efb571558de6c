"""`migrator layers` and docs/coverage.md: one place that says what is covered.

The table (migrator/core/coverage.py) is checked against the registries both ways, 'exact'
against the proofs the real-framework tests recorded (docs/proofs.json), the BVLC type list
against the real Caffe's own registry, and docs/coverage.md against the generator.  `inspect` says up front
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

def run(*args):
    return subprocess.run([sys.executable, "-m", "migrator", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=600, check=False)


def _converted(fw: str) -> set[str]:
    """The types the registries convert (any status but refused / dropped / input / unsupported)."""
    return {e.type for e in coverage.entries(fw, proofs={}) if e.status == "converted"}


def test_caffe_table_agrees_with_the_importer():
    entries = {e.type: e for e in coverage.caffe_entries()}
    exact = {t for t, e in entries.items() if e.status == "exact"}
    proved = set(coverage.load_proofs().get("caffe", {}))
    assert exact == proved & _converted("caffe")          # every recorded converted type is exact, and back
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


def test_every_recorded_proof_names_an_existing_real_framework_test():
    """docs/proofs.json is written by the tests (tests/proofs.py): each proof names a test that
    exists and takes the record_proof fixture; the notes only annotate recorded proofs."""
    proofs = coverage.load_proofs()
    assert proofs.get("caffe") and proofs.get("lasagne"), "docs/proofs.json is missing or empty"
    for fw, types in proofs.items():
        for t, ps in types.items():
            assert ps, (fw, t)
            for p in ps:
                path, _, name = p["test"].partition("::")
                text = (REPO / path).read_text()
                func = name.split("[")[0]
                assert f"def {func}(" in text and "record_proof" in text, (fw, t, p["test"])
    assert set(coverage.CAFFE_NOTES) <= set(proofs["caffe"])
    assert set(coverage.LASAGNE_NOTES) <= set(proofs["lasagne"])


def test_exact_only_when_the_proof_file_has_it(tmp_path):
    """A type is exact only if docs/proofs.json records it (reference and test from there)."""
    assert not [e for e in coverage.entries(proofs={}) if e.status == "exact"]
    fake = {"caffe": {"Tile": [{"reference": "real Caffe", "test": "tests/a.py::test_x"},
                               {"reference": "OpenCV DNN", "test": "tests/b.py::test_y"}]},
            "lasagne": {"GRULayer": [{"reference": "real Theano + Lasagne 0.1", "test": "tests/c.py::test_z"}],
                        "InverseLayer": [{"reference": "real Theano", "test": "tests/c.py::test_z"}]}}
    path = tmp_path / "proofs.json"
    path.write_text(json.dumps(fake))
    got = {(e.framework, e.type): e for e in coverage.entries(proofs=coverage.load_proofs(path))}
    assert {k for k, e in got.items() if e.status == "exact"} == {("caffe", "Tile"), ("lasagne", "GRULayer")}
    tile = got["caffe", "Tile"]
    assert tile.reference == "OpenCV DNN + real Caffe" and tile.test == "tests/a.py::test_x (+1 more)"
    assert got["lasagne", "GRULayer"].test == "tests/c.py::test_z"
    assert got["lasagne", "InverseLayer"].status == "refused"       # a proof does not override a refusal
    assert got["caffe", "Reduction"].status == "converted"
    assert coverage.load_proofs(tmp_path / "missing.json") == {}


def test_lasagne_table_agrees_with_the_registry():
    from migrator.core.importers.lasagne import KNOWN
    listed = {e.type for e in coverage.lasagne_entries()}
    assert listed == set(KNOWN)
    exact = {e.type for e in coverage.lasagne_entries() if e.status == "exact"}
    assert exact == set(coverage.load_proofs().get("lasagne", {})) & _converted("lasagne")


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
    assert d["counts"]["caffe"]["exact"] == len(set(coverage.load_proofs()["caffe"]) & _converted("caffe"))


PYTHON_PLUGIN = """
def register(api):
    api.add_layer_type("MyPyOp", family="activation", doc="x -> x", shape=lambda n, s, c: s,
                       kernel=lambda n, xs: xs, keras=lambda xs, attrs, name: xs[0],
                       caffe_type="Python", caffe_params="python_param")
"""


def test_layers_command_lists_plugin_types(tmp_path):
    """`migrator layers --plugin FILE.py` lists the types the plugin adds, marked with its file;
    a BVLC type the plugin takes over ('Python', refused without it) is the plugin's too."""
    prior = REPO / "docs" / "examples" / "priorbox_plugin.py"
    mine = tmp_path / "python_layer_plugin.py"
    mine.write_text(PYTHON_PLUGIN)
    r = run("layers", "--json", "--framework", "caffe")
    assert r.returncode == 0, r.stderr
    plain = {x["type"]: x for x in json.loads(r.stdout)["layers"]}
    assert "PriorBox" not in plain and plain["Python"]["status"] == "refused"
    r = run("layers", "--json", "--framework", "caffe", "--plugin", prior, "--plugin", mine)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    by = {x["type"]: x for x in d["layers"]}
    assert by["PriorBox"]["status"] == "plugin" and str(prior) in by["PriorBox"]["detail"]
    assert "PriorBox" in by["PriorBox"]["detail"]            # the op it imports as
    assert by["Python"]["status"] == "plugin" and str(mine) in by["Python"]["detail"]
    assert "MyPyOp" in by["Python"]["detail"]
    assert d["counts"]["caffe"]["plugin"] == 2
    assert [x["type"] for x in d["layers"]].count("Python") == 1
    # everything else is listed as without the plugins
    assert {t: x["status"] for t, x in by.items() if t not in ("PriorBox", "Python")} == \
        {t: x["status"] for t, x in plain.items() if t != "Python"}
    r = run("layers", "--plugin", prior)                        # text: marked, names the file
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.split()[:1] == ["PriorBox"])
    assert row.split()[1] == "plugin" and str(prior) in row
    r = run("layers", "--plugin", tmp_path / "missing.py")     # a missing plugin: one line
    assert r.returncode != 0 and "missing.py" in r.stderr and "Traceback" not in r.stderr


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
