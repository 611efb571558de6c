"""Proofs recorded, not grepped: which source layer types a test compared with a real framework.

A test that compares Migrator (its numpy reference or the converted Keras model) layer by layer
with a *real* framework (real Caffe in the legacy chroot, real Theano / Lasagne in the legacy venv,
OpenCV's DNN importer) calls the ``record_proof`` fixture (tests/conftest.py) with the graph and
the names of the nodes whose outputs it checked::

    record_proof(g, "real Caffe", names)        # or record_proof({"Convolution"}, "OpenCV DNN", framework="caffe")

The records of a test are kept only if the test passes.  At the end of a session
(``pytest_sessionfinish``) conftest writes what this session proved to ``SESSION_FILE`` (or
``$MIGRATOR_PROOFS_OUT``), and checks that every proof the committed ``docs/proofs.json`` lists for
a test that ran and passed in this session was recorded again (otherwise the session fails with
the type that lost its proof).  Without the real-framework tiers (skipped or deselected tests)
nothing is checked.

``python -m tests.proofs`` (``make coverage``) merges the session file into ``docs/proofs.json``:
the proofs of the tests that ran in that session are replaced by what they recorded, the others
kept.  ``migrator.core.coverage`` reads ``docs/proofs.json`` to say which types are ``exact``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROOF_FILE = REPO / "docs" / "proofs.json"
SESSION_FILE = REPO / ".cache" / "proofs-session.json"    # .cache/ is git-ignored
OUT_VAR = "MIGRATOR_PROOFS_OUT"
FILE_VAR = "MIGRATOR_PROOFS_FILE"     # the committed proofs a session is checked against (tests)

#: the names of the references (what a proof says the type was compared with)
REAL_CAFFE = "real Caffe"
OPENCV = "OpenCV DNN"
REAL_LASAGNE = "real Theano + Lasagne 0.1"
THEANO_OPS = "real Theano ops (as Lasagne's get_output_for)"

Record = tuple[str, str, str]        # (framework, source layer type, reference)

_pending: dict[str, set[Record]] = {}     # nodeid -> records of the running test
_proved: dict[str, set[Record]] = {}      # nodeid -> records of tests that passed


def session_file() -> Path:
    return Path(os.environ[OUT_VAR]) if os.environ.get(OUT_VAR) else SESSION_FILE


def committed_file() -> Path:
    return Path(os.environ[FILE_VAR]) if os.environ.get(FILE_VAR) else PROOF_FILE


def applies(rootpath) -> bool:
    """Whether a session records and checks proofs: this repository's own test suite (not a
    generated project that reuses its conftest), or one told where to write them."""
    return Path(rootpath).resolve() == REPO or bool(os.environ.get(OUT_VAR))


def types_compared(graph, names) -> set[str]:
    """The source layer types of the nodes ``names`` (node names or tensor ids) of ``graph``,
    plus its Input nodes when anything was compared (the real framework was fed the same input)."""
    out = set()
    for name in names:
        key = str(name)
        if key not in graph:
            key = key.split(":")[0]
        out.add(graph.node(key).source_type)
    if out:
        out |= {n.source_type for n in graph.nodes if n.op == "Input"}
    return out


def passed(result) -> list[str]:
    """The source layers a ``flow.compare`` result found equal (status ``pass``)."""
    return [lr.source for lr in result.layers if lr.status == "pass"]


def add(nodeid: str, graph_or_types, reference: str, names=None, framework: str | None = None) -> set[str]:
    """Note that test ``nodeid`` compared these types with ``reference`` (kept if the test passes).
    ``graph_or_types``: a Graph (with ``names``, the nodes whose outputs were checked; all its
    nodes when None) or an iterable of source layer types (then ``framework`` is required)."""
    if hasattr(graph_or_types, "nodes"):
        g = graph_or_types
        types = types_compared(g, [n.name for n in g.nodes] if names is None else names)
        framework = framework or g.framework
    else:
        types = set(graph_or_types)
    if framework not in ("caffe", "lasagne"):
        raise ValueError(f"record_proof: framework must be 'caffe' or 'lasagne', not {framework!r}")
    if not types:
        raise ValueError("record_proof: nothing was compared")
    _pending.setdefault(nodeid, set()).update((framework, t, reference) for t in types)
    return types


def pending(nodeid: str) -> set[Record]:
    """The records of the running test ``nodeid`` so far."""
    return set(_pending.get(nodeid, set()))


def restore(nodeid: str, records) -> None:
    """Records of test ``nodeid`` that arrived with its report (from an xdist worker)."""
    _pending.setdefault(nodeid, set()).update(tuple(r) for r in records)


def settle(nodeid: str, passed: bool) -> None:
    """The test ended: keep its records if it passed."""
    recs = _pending.pop(nodeid, set())
    if passed and recs:
        _proved.setdefault(nodeid, set()).update(recs)


def session_records() -> dict[str, set[Record]]:
    return {k: set(v) for k, v in _proved.items()}


# ---- the proof file --------------------------------------------------------------------------
def load(path: Path = PROOF_FILE) -> dict:
    """{framework: {type: [{"reference", "test"}]}} ({} when the file is missing)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def to_proofs(records: dict[str, set[Record]]) -> dict:
    out: dict = {}
    for nodeid, recs in records.items():
        for fw, t, ref in recs:
            out.setdefault(fw, {}).setdefault(t, []).append({"reference": ref, "test": nodeid})
    return _sorted(out)


def _sorted(proofs: dict) -> dict:
    out: dict = {}
    for fw, types in sorted(proofs.items()):
        for t, ps in sorted(types.items()):
            pairs = sorted({(p["reference"], p["test"]) for p in ps})
            out.setdefault(fw, {})[t] = [{"reference": r, "test": n} for r, n in pairs]
    return out


def merge(committed: dict, session: dict) -> dict:
    """``committed`` with every proof of the tests that ran in ``session`` replaced by what they
    recorded (``session``: the session file: {"ran": [nodeid...], "records": {nodeid: [[fw, t, ref]]}})."""
    ran = set(session["ran"])
    out: dict = {}
    for fw, types in committed.items():
        for t, ps in types.items():
            for p in ps:
                if p["test"] not in ran:
                    out.setdefault(fw, {}).setdefault(t, []).append(p)
    for nodeid, recs in session["records"].items():
        for fw, t, ref in recs:
            out.setdefault(fw, {}).setdefault(t, []).append({"reference": ref, "test": nodeid})
    return _sorted(out)


def lost(committed: dict, ran_passed: set[str], collected: set[str], files: set[str],
         records: dict[str, set[Record]]) -> list[str]:
    """The committed proofs this session should have recorded again and did not: a proof whose
    test passed without recording it, or whose test is gone from a file the session collected."""
    out = []
    for fw, types in committed.items():
        for t, ps in types.items():
            for p in ps:
                test = p["test"]
                if test.split("::")[0] not in files:
                    continue                                # its file was not part of this session
                if test not in collected:
                    out.append(f"{fw} {t}: its proof {test} ({p['reference']}) is no longer a test")
                elif test in ran_passed and (fw, t, p["reference"]) not in records.get(test, set()):
                    out.append(f"{fw} {t} lost its proof: {test} passed without comparing it with "
                               f"{p['reference']}")
    return out


def write_session(path: Path, ran: set[str], records: dict[str, set[Record]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"ran": sorted(ran), "records": {k: sorted(map(list, v)) for k, v in sorted(records.items())}}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def dump(proofs: dict) -> str:
    """JSON with one proof a line (reviewable diffs)."""
    lines = ["{"]
    for i, (fw, types) in enumerate(sorted(proofs.items())):
        lines.append(f" {json.dumps(fw)}: {{")
        for j, (t, ps) in enumerate(sorted(types.items())):
            lines.append(f"  {json.dumps(t)}: [")
            lines += [f"   {json.dumps(p, sort_keys=True)}" + ("," if k < len(ps) - 1 else "")
                      for k, p in enumerate(ps)]
            lines.append("  ]" + ("," if j < len(types) - 1 else ""))
        lines.append(" }" + ("," if i < len(proofs) - 1 else ""))
    return "\n".join(lines + ["}"]) + "\n"


def main(argv=None) -> int:
    """``python -m tests.proofs [SESSION_FILE]``: merge a session's records into docs/proofs.json."""
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else session_file()
    if not src.exists():
        print(f"no session record at {src}: docs/proofs.json kept (run the real-framework tests first)")
        return 0
    session = json.loads(src.read_text(encoding="utf-8"))
    new = merge(load(), session)
    PROOF_FILE.write_text(dump(new), encoding="utf-8")
    n = sum(len(v) for v in new.values())
    print(f"wrote {PROOF_FILE.relative_to(REPO)}: {n} types proved ({len(session['ran'])} tests ran in {src})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
