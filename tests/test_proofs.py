"""tests/proofs.py and the session check in tests/conftest.py: proofs are recorded by the tests
that compare with a real framework, merged into docs/proofs.json, and a committed proof that a
passing test no longer records fails the session.

The session cases run pytest in a subprocess on a small generated project whose conftest is
ours (as tests/test_tier_summary.py does), told where to write its records and which committed
proof file to check against, so nothing here touches the repository's own files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import proofs

REPO = Path(__file__).resolve().parents[1]


def test_merge_replaces_the_proofs_of_the_tests_that_ran():
    committed = {"caffe": {"Tile": [{"reference": "real Caffe", "test": "t.py::a"}],
                           "Clip": [{"reference": "real Caffe", "test": "t.py::b"}]}}
    session = {"ran": ["t.py::a", "t.py::c"],
               "records": {"t.py::c": [["caffe", "Clip", "OpenCV DNN"], ["lasagne", "GRULayer", "x"]]}}
    got = proofs.merge(committed, session)
    # a ran without recording Tile: gone; b did not run: kept; c's records added
    assert got == {"caffe": {"Clip": [{"reference": "OpenCV DNN", "test": "t.py::c"},
                                      {"reference": "real Caffe", "test": "t.py::b"}]},
                   "lasagne": {"GRULayer": [{"reference": "x", "test": "t.py::c"}]}}


def test_lost_names_the_type_and_the_test():
    committed = {"caffe": {"Tile": [{"reference": "real Caffe", "test": "t.py::a"}],
                           "Clip": [{"reference": "real Caffe", "test": "t.py::b"}],
                           "Exp": [{"reference": "real Caffe", "test": "u.py::c"}],
                           "Log": [{"reference": "real Caffe", "test": "t.py::gone"}]}}
    records = {"t.py::a": {("caffe", "Tile", "real Caffe")}}
    got = proofs.lost(committed, {"t.py::a", "t.py::b"}, {"t.py::a", "t.py::b"}, {"t.py"}, records)
    # b passed without Clip; 'gone' is no longer collected; u.py was not part of the session
    assert len(got) == 2
    assert "caffe Clip lost its proof: t.py::b passed without comparing it with real Caffe" in got
    assert any(g.startswith("caffe Log: its proof t.py::gone") for g in got)


def test_types_compared_and_add_settle():
    from migrator.core.ir import Graph, Node, Provenance
    g = Graph("caffe", [Node("data", "Input", provenance=Provenance(type="Input")),
                        Node("c", "Conv", ["data"], provenance=Provenance(type="Convolution")),
                        Node("s", "Slice", ["c"], num_outputs=2, provenance=Provenance(type="Slice")),
                        Node("r", "Activation", ["s:1"], provenance=Provenance(type="ReLU"))])
    assert proofs.types_compared(g, ["s:1"]) == {"Slice", "Input"}
    assert proofs.types_compared(g, []) == set()
    proofs.add("x.py::t_fail", g, "real Caffe", ["c"])
    proofs.settle("x.py::t_fail", passed=False)
    proofs.add("x.py::t_ok", {"GRULayer"}, "real Lasagne", framework="lasagne")
    proofs.settle("x.py::t_ok", passed=True)
    recs = proofs.session_records()
    assert "x.py::t_fail" not in recs and recs["x.py::t_ok"] == {("lasagne", "GRULayer", "real Lasagne")}
    proofs._proved.pop("x.py::t_ok")
    with pytest.raises(ValueError):
        proofs.add("x.py::t", {"GRULayer"}, "real Lasagne")      # types need their framework


TESTS = '''
import pytest

@pytest.mark.theano
def test_lstm(record_proof):
    record_proof({"LSTMLayer"}, "real Theano + Lasagne 0.1", framework="lasagne")

@pytest.mark.theano
def test_gru(record_proof):
    pass            # used to compare GRULayer, does no longer

@pytest.mark.theano
def test_fails(record_proof):
    record_proof({"RecurrentLayer"}, "real Theano + Lasagne 0.1", framework="lasagne")
    assert False

def test_fast():
    pass
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: s\n    theano: t\n    caffe: c\n"
                                         "    opencv: o\n")
    (tmp_path / "test_rec.py").write_text(TESTS)
    committed = {"lasagne": {"GRULayer": [{"reference": "real Theano + Lasagne 0.1", "test": "test_rec.py::test_gru"}],
                             "LSTMLayer": [{"reference": "real Theano + Lasagne 0.1", "test": "test_rec.py::test_lstm"}]}}
    (tmp_path / "proofs.json").write_text(json.dumps(committed))
    return tmp_path


def _pytest(project, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO), MIGRATOR_ALLOW_MISSING_TIERS="1",
               MIGRATOR_PROOFS_OUT=str(project / "session.json"), MIGRATOR_PROOFS_FILE=str(project / "proofs.json"))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, capture_output=True, text=True, env=env, timeout=300, check=False)


#: the same checks in one process and in a parallel run (the controller sees only reports)
PARALLEL = pytest.mark.parametrize("jobs", [(), ("-n", "2")], ids=["serial", "xdist"])


@PARALLEL
def test_a_lost_proof_fails_the_session(project, jobs):
    r = _pytest(project, *jobs, "-k", "not fails")
    assert r.returncode == 1, r.stdout
    assert ("lasagne GRULayer lost its proof: test_rec.py::test_gru passed without comparing it with "
            "real Theano + Lasagne 0.1") in r.stdout
    assert "LSTMLayer lost" not in r.stdout and "1 proof lost" in r.stdout.splitlines()[-1]
    s = json.loads((project / "session.json").read_text())
    assert s["records"] == {"test_rec.py::test_lstm": [["lasagne", "LSTMLayer", "real Theano + Lasagne 0.1"]]}
    assert "test_rec.py::test_fails" not in s["ran"]


@PARALLEL
def test_a_failing_test_records_nothing_and_a_fast_run_checks_nothing(project, jobs):
    r = _pytest(project, *jobs, "-k", "fails or lstm")
    assert r.returncode == 1 and "lost its proof" not in r.stdout, r.stdout   # gru deselected: not checked
    s = json.loads((project / "session.json").read_text())
    assert set(s["records"]) == {"test_rec.py::test_lstm"}
    (project / "session.json").unlink()
    r = _pytest(project, *jobs, "-m", "not theano")
    assert r.returncode == 0, r.stdout
    assert not (project / "session.json").exists() and "proofs:" not in r.stdout
