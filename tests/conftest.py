"""Session-wide: what this run proved against independent frameworks.

Every test run ends (just above pytest's closing line) with a summary of the tests per tier marker
(``caffe``: real Caffe, ``theano``: real Theano/Lasagne, ``opencv``: OpenCV's DNN importer) and per
other registered marker, counted generically from ``[tool.pytest.ini_options] markers``.

When tests of a tier that needs a built environment (``caffe``, ``theano``) were skipped because the
environment is missing, the run fails (exit status 1) with one ``error:`` line naming the tier and
why -- unless the tier is explicitly opted out (``MIGRATOR_ALLOW_MISSING_TIERS=1`` or ``=caffe`` /
``=theano``; ``MIGRATOR_NO_CAFFE_ROOT`` / ``MIGRATOR_NO_THEANO``), which prints a loud
``TIER NOT RUN`` line instead.  See ``tests/envs/tiers.py`` and docs/contributing.md.

Parallel runs (pytest-xdist, ``make test`` uses ``-n``): the workers collect and run the tests; the
controller sees only their reports.  Each test's registered markers and recorded proofs travel in
the report's ``user_properties``, and each worker writes what it collected (deselected tests
included) to a file the controller merges before its checks, so the tier verdict and the proof
check mean the same with and without ``-n``.

Proofs (``tests/proofs.py``): the ``record_proof`` fixture notes which source layer types a test
compared with a real framework; a passing test's records are written at the end of the session
(to ``.cache/proofs-session.json`` or ``$MIGRATOR_PROOFS_OUT``; ``make coverage`` merges them into
docs/proofs.json), and a committed proof whose test passed in this session without recording it
again fails the session.  A session without the real-framework tiers checks nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import proofs
from tests.envs import tiers

_markers: dict[str, tuple[str, ...]] = {}       # nodeid -> registered marker names on the test
_outcome: dict[str, str] = {}                   # nodeid -> passed / failed / error / skipped / xfailed ...
_skip_reason: dict[str, str] = {}
_collected: set[str] = set()                    # every collected test, deselected ones included
_verdict: dict[str, list[str]] = {"errors": [], "loud": [], "proofs": [], "note": []}

_MARKERS_KEY = "migrator_markers"
_PROOF_KEY = "migrator_proof"
_COLLECT_DIR_KEY = "migrator_collect_dir"
_state: dict[str, object] = {"collect_dir": None, "worker": False}

_RANK = {"passed": 0, "xpassed": 1, "skipped": 2, "xfailed": 2, "failed": 3, "error": 4}


def _project_marker_lines(config) -> list[str]:
    """The ``markers`` the project's own configuration file declares (not the ones plugins add)."""
    path = config.inipath
    if path is None:
        return []
    try:
        if path.name == "pyproject.toml":
            import tomllib
            with open(path, "rb") as f:
                lines = tomllib.load(f).get("tool", {}).get("pytest", {}).get("ini_options", {}).get("markers", [])
        else:
            import configparser
            cp = configparser.ConfigParser()
            cp.read(path)
            section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
            lines = cp.get(section, "markers", fallback="").splitlines()
    except (OSError, ValueError):
        return []
    return [ln for ln in (lines if isinstance(lines, list) else [lines]) if str(ln).strip()]


def _registered(config) -> list[str]:
    names = []
    for line in _project_marker_lines(config):
        name = line.split(":", 1)[0].split("(", 1)[0].strip()
        if name and name not in names:
            names.append(name)
    return names


def pytest_configure(config):
    winput = getattr(config, "workerinput", None)
    _state["worker"] = winput is not None
    _state["collect_dir"] = winput.get(_COLLECT_DIR_KEY) if winput else None
    if winput is None and config.pluginmanager.hasplugin("xdist"):
        _state["collect_dir"] = tempfile.mkdtemp(prefix="migrator-collected-")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(xdist controller) tell each worker where to write what it collected."""
    node.workerinput[_COLLECT_DIR_KEY] = _state["collect_dir"]


def pytest_itemcollected(item):
    _collected.add(item.nodeid)


def pytest_collection_modifyitems(session, config, items):
    known = set(_registered(config))
    for item in items:
        _markers[item.nodeid] = tuple(sorted({m.name for m in item.iter_markers()} & known))
        item.user_properties.append((_MARKERS_KEY, list(_markers[item.nodeid])))


def pytest_collection_finish(session):
    """(xdist worker) write every collected test id, deselected ones included, for the controller."""
    d = _state["collect_dir"]
    if _state["worker"] and d:
        wid = session.config.workerinput.get("workerid", "w")
        Path(d, f"{wid}.json").write_text(json.dumps(sorted(_collected)), encoding="utf-8")


def _merge_worker_collections() -> None:
    d = _state["collect_dir"]
    if _state["worker"] or not d or not os.path.isdir(d):
        return
    for f in Path(d).glob("*.json"):
        try:
            _collected.update(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    shutil.rmtree(d, ignore_errors=True)


def _set(nodeid: str, outcome: str) -> None:
    old = _outcome.get(nodeid)
    if old is None or _RANK[outcome] >= _RANK[old]:
        _outcome[nodeid] = outcome


@pytest.fixture
def record_proof(request):
    """``record_proof(graph_or_types, reference, names=None, framework=None)``: this test compared
    these source layer types with the real framework ``reference`` (see tests/proofs.py); kept
    only if the test passes."""
    def record(graph_or_types, reference, names=None, framework=None):
        types = proofs.add(request.node.nodeid, graph_or_types, reference, names, framework)
        # travels with the report to an xdist controller (settled there like here)
        request.node.user_properties.append(
            (_PROOF_KEY, [list(r) for r in sorted(proofs.pending(request.node.nodeid))]))
        return types
    return record


def pytest_runtest_logreport(report):
    for key, value in getattr(report, "user_properties", ()) or ():
        if key == _MARKERS_KEY and report.nodeid not in _markers:
            _markers[report.nodeid] = tuple(value)
        elif key == _PROOF_KEY and report.when == "call":
            proofs.restore(report.nodeid, value)
    if report.when == "call":
        proofs.settle(report.nodeid, report.passed and not hasattr(report, "wasxfail"))
        if hasattr(report, "wasxfail"):
            _set(report.nodeid, "xfailed" if report.skipped else "xpassed")
        else:
            _set(report.nodeid, report.outcome)
    elif report.failed:
        _set(report.nodeid, "error")
    elif report.skipped and report.when == "setup":
        _set(report.nodeid, "xfailed" if hasattr(report, "wasxfail") else "skipped")
    if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        _skip_reason[report.nodeid] = str(report.longrepr[2]).removeprefix("Skipped: ")


def _counts(marker: str) -> Counter:
    return Counter(o for n, o in _outcome.items() if marker in _markers.get(n, ()))


def _fmt(c: Counter) -> str:
    if not c:
        return "0 run"
    order = ["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
    return ", ".join(f"{c[k]} {k}" for k in order if c[k])


def pytest_sessionfinish(session, exitstatus):
    if _state["worker"]:
        return          # the controller judges the whole run
    _merge_worker_collections()
    _verdict["errors"].clear()
    _verdict["loud"].clear()
    _verdict["proofs"].clear()
    _verdict["note"].clear()
    for tier in tiers.REQUIRED:
        skipped = [n for n, o in _outcome.items() if o == "skipped" and tier in _markers.get(n, ())]
        if not skipped:
            continue
        ok, why = tiers.availability(tier)
        if ok:   # the environment is there: these skips have reasons of their own (shown by -ra)
            continue
        label = tiers.TIERS[tier].label
        allowed = tiers.opted_out(tier)
        if allowed:
            _verdict["loud"].append(f"TIER NOT RUN: {tier} ({label}): {len(skipped)} tests skipped ({why}); "
                                    f"allowed by {allowed}: this run proves less")
        else:
            _verdict["errors"].append(
                f"error: tier '{tier}' ({label}) did not run: {len(skipped)} tests skipped ({why}); "
                f"{tiers.hint([tier])}")
    _check_proofs(session.config.rootpath, session.config.args)
    if (_verdict["errors"] or _verdict["proofs"]) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _check_proofs(rootpath, args) -> None:
    """Write this session's proofs; fail it when a committed proof was not recorded again by its
    test that passed.  Only tests of the real-framework tiers record, so a session without them
    (skipped or deselected) writes and checks nothing."""
    records = proofs.session_records()
    ran = {n for n, o in _outcome.items() if o == "passed"}
    if not proofs.applies(rootpath):
        return
    if not records and not any(set(_markers.get(n, ())) & set(tiers.TIERS) for n in ran):
        return
    path = proofs.session_file()
    proofs.write_session(path, ran, records)
    n_types = len({(fw, t) for recs in records.values() for fw, t, _ in recs})
    _verdict["note"].append(f"proofs: {n_types} layer types compared with a real framework by "
                            f"{len(records)} passing tests, written to {path} (`make coverage` "
                            "merges them into docs/proofs.json)")
    # a file named with a test id (``file.py::test``) was collected only in part: its other
    # tests are not gone, just not asked for
    partial = {os.path.relpath(os.path.abspath(str(a).split("::")[0]), str(rootpath)).replace(os.sep, "/")
               for a in args if "::" in str(a)}
    files = {n.split("::")[0] for n in _collected} - partial
    gone = proofs.lost(proofs.load(proofs.committed_file()), ran, _collected, files, records)
    if gone:
        _verdict["proofs"].append(
            f"error: {len(gone)} recorded proofs of docs/proofs.json were not recorded again: "
            + "; ".join(gone) + " (record them again, or run `make coverage` after this session to drop "
            f"them from docs/proofs.json: session record {path})")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _outcome:
        return
    tr = terminalreporter
    parts = [f"{t.label} {_fmt(_counts(t.marker))}" for t in tiers.TIERS.values()]
    tr.write_line("tiers: " + " | ".join(parts), bold=True)
    others = [m for m in _registered(config) if m not in tiers.TIERS]
    rows = [f"{m} {_fmt(_counts(m))}" for m in others if _counts(m)]
    if rows:
        tr.write_line("other markers: " + " | ".join(rows))
    for line in _verdict["note"]:
        tr.write_line(line)
    for line in _verdict["loud"]:
        tr.write_line(line, yellow=True, bold=True)
    if _verdict["errors"]:
        tr.write_line(" ".join(_verdict["errors"]), red=True, bold=True)
        key = "tier not run" if len(_verdict["errors"]) == 1 else "tiers not run"
        # counted in pytest's closing line ("N passed, ..., 1 tier not run in ..."), which stays last;
        # objects with attributes, not strings: other plugins walk the stats too
        tr.stats.setdefault(key, []).extend(
            SimpleNamespace(nodeid="", when="session", outcome=key, longrepr=e, user_properties=[])
            for e in _verdict["errors"])
    for e in _verdict["proofs"]:
        tr.write_line(e, red=True, bold=True)
        tr.stats.setdefault("proof lost", []).append(
            SimpleNamespace(nodeid="", when="session", outcome="proof lost", longrepr=e, user_properties=[]))
