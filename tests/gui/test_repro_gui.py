"""Compare ▸ Write repro bundle…: a failed comparison's failing layer written to a folder."""
from __future__ import annotations

import json
import os

from .conftest import LOAD_TIMEOUT, open_model, run_compare, wait_plan

BUNDLE = ("layer.keras", "repro.py", "inputs.npz", "expected.npz", "source.json")


def _failing_mapping(tmp_path) -> str:
    p = tmp_path / "bad.mapping.json"
    p.write_text(json.dumps({"version": 1,
                             "layers": {"bn1": {"epsilon": 0.5, "variance": "raw"}}}))
    return str(p)


def test_repro_bundle_from_failed_comparison(qtbot, window, demos, tmp_path):
    win = window
    assert not win.act_repro.isEnabled()                       # nothing open
    open_model(qtbot, win, demos["caffe"], mapping=_failing_mapping(tmp_path))
    wait_plan(qtbot, win)
    assert not win.act_repro.isEnabled()                       # not compared yet
    r = run_compare(qtbot, win)
    assert r is not None and not r.passed
    assert win.act_repro.isEnabled()
    assert win.act_repro in win.results_view.actions()
    out = tmp_path / "bundle"
    asked = []

    def folder(parent, title, start):
        asked.append(title)
        return str(out)

    win.repro.get_folder = folder
    with qtbot.waitSignal(win.repro_written, timeout=LOAD_TIMEOUT) as sig:
        win.act_repro.trigger()
    assert len(asked) == 1
    assert os.path.samefile(sig.args[0], out)
    for name in BUNDLE:
        assert (out / name).is_file(), name
    assert "Repro bundle written" in win.statusBar().currentMessage()
    assert win.act_repro.isEnabled()

    # a non-empty folder is refused in one line, nothing written
    before = {f: os.path.getmtime(out / f) for f in os.listdir(out)}
    with qtbot.waitSignal(win.repro_failed, timeout=10_000) as sig:
        win.act_repro.trigger()
    assert "not empty" in sig.args[0] and "\n" not in sig.args[0]
    assert {f: os.path.getmtime(out / f) for f in os.listdir(out)} == before

    # back to the default mapping: the failed result is stale, then a passing comparison
    assert win.reset_override("bn1", "epsilon") and win.reset_override("bn1", "variance")
    wait_plan(qtbot, win)
    assert win.doc.stale and not win.act_repro.isEnabled()
    r = run_compare(qtbot, win)
    assert r.passed
    assert not win.act_repro.isEnabled()
