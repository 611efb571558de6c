"""The test set-up script (``python -m tests.setup_envs``, run by ``make test``) fails loudly.

A broken build of the Theano venv (here: a package index that cannot be reached) must stop
``make test`` with one ``error:`` line naming the tier and the reason, unless the tier is
explicitly opted out; the opt-outs are parsed as documented; the Caffe root uses only the Debian
mirror named by the machine's apt configuration.  Builds go to a temporary folder
(``MIGRATOR_LEGACY_DIR``), never to the real ``.legacy``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envs import caffe_root as cr
from tests.envs import tiers

REPO = Path(__file__).resolve().parents[1]


def _broken_index_env(tmp_path, **extra) -> dict:
    """An environment whose pip cannot reach any package index (and has no local wheels)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "MIGRATOR_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "PIP_CONFIG_FILE": os.devnull,          # no pip.conf: no find-links, no extra index
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple/",   # discard port: connection refused
        "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "2", "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "MIGRATOR_LEGACY_DIR": str(tmp_path / "legacy"),
        "MIGRATOR_THEANO_BASE_PYTHON": getattr(sys, "_base_executable", None) or sys.executable,
        "MIGRATOR_NO_CAFFE_ROOT": "1",          # never debootstrap from a test
    })
    env.update(extra)
    return env


def _setup(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.setup_envs"], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_unreachable_index_fails_with_one_line_unless_opted_out(tmp_path):
    r = _setup(_broken_index_env(tmp_path))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    errors = [ln for ln in out.splitlines() if "error:" in ln]
    assert len(errors) == 1, out
    line = errors[0]
    assert "tier 'theano'" in line and "pip install failed" in line, line
    assert tiers.ALLOW_VAR in line, line          # says how to opt out
    assert "caffe" not in line                      # caffe was opted out (MIGRATOR_NO_CAFFE_ROOT)
    assert "NOT BUILT" in r.stdout and "MIGRATOR_NO_CAFFE_ROOT=1" in r.stdout
    assert not (tmp_path / "legacy" / "theano-venv").exists()
    assert not list((tmp_path / "legacy").glob("theano-venv.tmp-*"))   # the half-built venv is gone

    # an opt-out for another tier does not cover it
    r = _setup(_broken_index_env(tmp_path, MIGRATOR_ALLOW_MISSING_TIERS="caffe"))
    assert r.returncode == 1, r.stdout + r.stderr

    # the explicit opt-out turns the failure into a loud line and exit 0
    r = _setup(_broken_index_env(tmp_path, MIGRATOR_ALLOW_MISSING_TIERS="1"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert not [ln for ln in out.splitlines() if "error:" in ln], out
    loud = [ln for ln in r.stdout.splitlines() if "theano" in ln and "NOT BUILT" in ln]
    assert len(loud) == 1 and "pip install failed" in loud[0] and "MIGRATOR_ALLOW_MISSING_TIERS=1" in loud[0], out


def test_disabling_theano_is_an_explicit_opt_out(tmp_path):
    r = _setup(_broken_index_env(tmp_path, MIGRATOR_NO_THEANO="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "allowed by MIGRATOR_NO_THEANO=1" in r.stdout
    # "0" means not set
    r = _setup(_broken_index_env(tmp_path, MIGRATOR_NO_THEANO="0", MIGRATOR_THEANO_BASE_PYTHON="/nonexistent"))
    assert r.returncode == 1 and "tier 'theano'" in r.stderr and "no Python 3.8-3.11" in r.stderr, r.stderr


def test_a_crashing_builder_is_a_failure_not_a_skip(tmp_path, monkeypatch, capsys):
    from tests import setup_envs
    from tests.envs import theano_env

    def boom(*a, **k):
        raise RuntimeError("simulated crash in the builder")

    monkeypatch.setattr(theano_env, "ensure_theano_env", boom)
    monkeypatch.setenv("MIGRATOR_NO_CAFFE_ROOT", "1")
    monkeypatch.delenv(tiers.ALLOW_VAR, raising=False)
    monkeypatch.delenv("MIGRATOR_NO_THEANO", raising=False)
    assert setup_envs.main() == 1
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and "RuntimeError: simulated crash in the builder" in line[0], err


@pytest.mark.parametrize("env, tier, expect", [
    ({}, "theano", None),
    ({"MIGRATOR_ALLOW_MISSING_TIERS": "1"}, "theano", "MIGRATOR_ALLOW_MISSING_TIERS=1"),
    ({"MIGRATOR_ALLOW_MISSING_TIERS": "all"}, "caffe", "MIGRATOR_ALLOW_MISSING_TIERS=all"),
    ({"MIGRATOR_ALLOW_MISSING_TIERS": "caffe"}, "theano", None),
    ({"MIGRATOR_ALLOW_MISSING_TIERS": "caffe, theano"}, "theano", "MIGRATOR_ALLOW_MISSING_TIERS=caffe, theano"),
    ({"MIGRATOR_ALLOW_MISSING_TIERS": "0"}, "caffe", None),
    ({"MIGRATOR_NO_CAFFE_ROOT": "1"}, "caffe", "MIGRATOR_NO_CAFFE_ROOT=1"),
    ({"MIGRATOR_NO_CAFFE_ROOT": "1"}, "theano", None),
    ({"MIGRATOR_NO_THEANO": "yes"}, "theano", "MIGRATOR_NO_THEANO=yes"),
    ({"MIGRATOR_NO_THEANO": "0"}, "theano", None),
])
def test_opt_out_parsing(env, tier, expect):
    assert tiers.opted_out(tier, env) == expect


def _apt(tmp_path, files: dict[str, str]) -> Path:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_debian_mirror_only_from_the_apt_configuration(tmp_path):
    deb822 = ("Types: deb\n# URIs: http://commented.invalid/debian\nURIs: http://mirror-a.invalid/debian/\n"
              "Suites: bookworm\n\nTypes: deb\nURIs: http://mirror-a.invalid/debian-security\n")
    assert cr.debian_mirror(_apt(tmp_path / "a", {"sources.list.d/debian.sources": deb822})) == \
        "http://mirror-a.invalid/debian"
    one_line = "# deb http://old.invalid/debian bullseye main\ndeb [arch=amd64] http://mirror-b.invalid/debian bookworm main\n"
    assert cr.debian_mirror(_apt(tmp_path / "b", {"sources.list": one_line})) == "http://mirror-b.invalid/debian"
    several = "Types: deb\nURIs: http://other.invalid/node http://mirror-c.invalid/debian\n"
    assert cr.debian_mirror(_apt(tmp_path / "c", {"sources.list.d/x.sources": several})) == \
        "http://mirror-c.invalid/debian"
    # no Debian archive configured (only a third-party repository, or nothing): None, no default
    third = "deb http://repo.invalid/apt stable main\n"
    assert cr.debian_mirror(_apt(tmp_path / "d", {"sources.list.d/x.list": third})) is None
    assert cr.debian_mirror(tmp_path / "missing") is None


def test_no_mirror_means_a_reason_not_a_default(tmp_path, monkeypatch):
    monkeypatch.setattr(cr, "LEGACY_DIR", tmp_path)
    monkeypatch.setattr(cr, "ROOT", tmp_path / "caffe-root")
    monkeypatch.setattr(cr, "STAMP", tmp_path / "caffe-root.stamp")
    monkeypatch.setattr(cr, "debian_mirror", lambda *a, **k: None)
    monkeypatch.setattr(cr.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cr.shutil, "which", lambda name, *a, **k: f"/usr/sbin/{name}")
    monkeypatch.delenv("MIGRATOR_NO_CAFFE_ROOT", raising=False)

    def no_subprocess(*a, **k):
        raise AssertionError(f"must not run anything without a mirror: {a}")

    monkeypatch.setattr(cr.subprocess, "run", no_subprocess)
    assert cr.ensure_caffe_root() is None
    assert "no Debian mirror in this machine's apt configuration" in cr.last_reason
    assert not list(tmp_path.iterdir())


def test_no_registry_host_in_the_env_builders():
    for name in ("caffe_root.py", "theano_env.py", "tiers.py"):
        text = (REPO / "tests" / "envs" / name).read_text()
        assert not re.findall(r"https?://[A-Za-z]", text), name
