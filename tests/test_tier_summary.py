"""tests/conftest.py: the per-tier summary line, and a run fails when a real-framework tier was
skipped for want of its environment unless that is explicitly allowed.

Each case runs pytest in a subprocess on a small generated project whose conftest is ours, with
``MIGRATOR_LEGACY_DIR`` pointing at a temporary folder (no environments there, or a fake ready
Theano venv), so the result does not depend on this machine's real environments.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envs import theano_env

REPO = Path(__file__).resolve().parents[1]

TESTS = '''
import pytest

@pytest.mark.theano
def test_theano_skipped():
    pytest.skip("the real-Theano environment is unavailable")

@pytest.mark.theano
@pytest.mark.slow
def test_theano_ran():
    pass

@pytest.mark.caffe
def test_caffe_ran():
    pass

@pytest.mark.opencv
def test_opencv_a():
    pass

@pytest.mark.opencv
@pytest.mark.parametrize("i", [1, 2])
def test_opencv_b(i):
    pass

@pytest.mark.newmarker
def test_new_marker():
    pass
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    slow: s\n    theano: t\n    caffe: c\n    opencv: o\n    newmarker: n\n")
    (tmp_path / "test_tiers.py").write_text(TESTS)
    return tmp_path


def _run(project, *args, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MIGRATOR_", "PYTEST_", "PYTHONPATH"))}
    env.update({"PYTHONPATH": str(REPO), "MIGRATOR_LEGACY_DIR": str(project / "legacy")})
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False)


def _lines(r):
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]


@pytest.mark.parametrize("jobs", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_missing_tier_fails_with_one_line_and_counts(project, jobs):
    r = _run(project, *jobs)
    lines = _lines(r)
    assert r.returncode == 1, r.stdout
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, r.stdout
    assert "tier 'theano'" in errors[0] and "1 tests skipped" in errors[0] and \
        "MIGRATOR_ALLOW_MISSING_TIERS=theano" in errors[0], errors
    tiers = [ln for ln in lines if ln.startswith("tiers:")]
    assert tiers == ["tiers: real Caffe 1 passed | real Theano/Lasagne 1 passed, 1 skipped | OpenCV 3 passed"], lines
    assert "other markers: slow 1 passed | newmarker 1 passed" in lines
    # pytest's closing line stays last, and says the run proved less
    assert lines[-1].startswith("6 passed, 1 skipped, 1 tier not run in "), lines[-1]


@pytest.mark.parametrize("optout", ["MIGRATOR_ALLOW_MISSING_TIERS=1", "MIGRATOR_ALLOW_MISSING_TIERS=theano",
                                    "MIGRATOR_NO_THEANO=1"])
def test_opt_out_is_loud_but_passes(project, optout):
    k, v = optout.split("=")
    r = _run(project, **{k: v})
    lines = _lines(r)
    assert r.returncode == 0, r.stdout
    assert not [ln for ln in lines if ln.startswith("error:")], r.stdout
    loud = [ln for ln in lines if ln.startswith("TIER NOT RUN: theano")]
    assert len(loud) == 1 and f"allowed by {optout}" in loud[0], r.stdout
    assert lines[-1].startswith("6 passed, 1 skipped in "), lines[-1]


def test_other_opt_out_does_not_cover_the_tier(project):
    r = _run(project, MIGRATOR_ALLOW_MISSING_TIERS="caffe")
    assert r.returncode == 1 and "error: tier 'theano'" in r.stdout, r.stdout


def test_skip_with_the_environment_present_is_an_ordinary_skip(project):
    venv = project / "legacy" / "theano-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / theano_env.MARKER).write_text(json.dumps({"spec": theano_env.SPEC}))
    r = _run(project)
    assert r.returncode == 0, r.stdout
    assert "error:" not in r.stdout and "TIER NOT RUN" not in r.stdout
    assert "SKIPPED [1] test_tiers.py:6: the real-Theano environment is unavailable" in r.stdout


def test_failures_keep_their_exit_status(project):
    (project / "test_fail.py").write_text("import pytest\n@pytest.mark.opencv\ndef test_x():\n    assert 0\n")
    r = _run(project, MIGRATOR_ALLOW_MISSING_TIERS="1")
    assert r.returncode == 1
    assert "OpenCV 3 passed, 1 failed" in r.stdout
