"""File ▸ Convert a folder…: the batch runs in a worker with the status bar's progress and
Cancel, its index shows as a table (status coloured) and a double-click opens a model.
The per-model conversion is faked (no process is spawned); discovery, the loop and the
index files are the core's own."""
from __future__ import annotations

import os
import threading

from PySide6.QtCore import Qt

from migrator.core import batch as core_batch
from migrator.gui import theme
from migrator.gui.flows.batch_flow import BatchRequest
from migrator.gui.views.batch_index import STATUS_KIND

from .conftest import LOAD_TIMEOUT


def _net(folder, name, seed):
    from migrator.testing.caffe_net import NetBuilder
    os.makedirs(folder, exist_ok=True)
    nb = NetBuilder(name, seed=seed)
    nb.input("data", (1, 3, 8, 8))
    nb.conv("conv", "data", 4, 3)
    nb.relu("relu", "conv", top="conv")
    return nb.save(os.path.join(folder, "deploy.prototxt"), os.path.join(folder, f"{name}.caffemodel"))


def _zoo(tmp_path):
    root = tmp_path / "zoo"
    _net(str(root / "good"), "goodnet", 0)
    _net(str(root / "broken"), "brokennet", 1)
    _net(str(root / "odd"), "oddnet", 2)
    # a deploy net without weights: listed by discovery as a bad file
    os.makedirs(root / "lonely")
    (root / "lonely" / "deploy.prototxt").write_text('name: "x"\n')
    return str(root)


OUTCOMES = {"goodnet": ("verified", "", "conv", 2e-7), "brokennet": ("verification failed",
            "first divergent layer conv (max rel 0.31)", "conv", 0.31),
            "oddnet": ("refused", "layer type Frob is not converted", None, None)}


def _fake_convert(calls, gate=None):
    def convert_one(entry, opts, cancel=None):
        calls.append((entry.name, threading.current_thread() is threading.main_thread()))
        if entry.problem:
            return core_batch.ModelOutcome(entry.name, entry.framework, entry.files, "bad file",
                                           detail=entry.problem)
        if gate is not None:
            gate(cancel)
        leaf = os.path.basename(entry.files[-1]).removesuffix(".caffemodel")
        status, detail, worst, rel = OUTCOMES[leaf]
        return core_batch.ModelOutcome(entry.name, entry.framework, entry.files, status, detail=detail,
                                       worst_layer=worst, worst_max_rel=rel, seconds=1.5)
    return convert_one


def _request(root, out):
    return lambda parent, r, o: BatchRequest(root, core_batch.BatchOptions(out_dir=out))


def test_convert_folder_shows_the_index_and_opens_a_model(qtbot, window, tmp_path, monkeypatch):
    win = window
    root, out = _zoo(tmp_path), str(tmp_path / "out")
    calls: list = []
    monkeypatch.setattr(core_batch, "convert_one", _fake_convert(calls))
    win.batch.ask_request = _request(root, out)
    assert win.act_convert_folder in win.menuBar().actions()[0].menu().actions()
    win.act_convert_folder.trigger()
    assert win.jobs["batch"].running
    qtbot.waitUntil(lambda: not win.batch.running and win.batch.view.table.rowCount() == 4, timeout=30_000)
    assert calls and not any(on_main for _, on_main in calls)        # ran in the worker
    view = win.batch.view
    assert win.batch.dock.isVisible()
    statuses = {os.path.basename(os.path.dirname(m["files"][-1])): view.table.item(r, 2).text()
                for r, m in enumerate(view.rows)}
    assert statuses == {"good": "verified", "broken": "verification failed", "odd": "refused",
                        "lonely": "bad file"}
    for r in range(4):
        st = view.table.item(r, 2)
        assert st.foreground().color() == theme.colour(STATUS_KIND[st.text()])
    row = next(r for r, m in enumerate(view.rows) if m["status"] == "verification failed")
    assert view.table.item(row, 4).text() == "conv (0.31)"
    assert view.table.item(row, 5).text() == "1.5"
    assert "4 model(s)" in view.summary.text()
    assert os.path.exists(os.path.join(out, "index.json"))
    # Open index.html: the window's desktop opener gets the page
    opened: list = []
    win.open_url = opened.append
    assert view.open_html.isEnabled()
    qtbot.mouseClick(view.open_html, Qt.MouseButton.LeftButton)
    assert opened == [os.path.join(os.path.abspath(out), "index.html")]
    # a double-click on the row opens that model in the window
    good = next(r for r, m in enumerate(view.rows) if m["status"] == "verified")
    table = view.table
    table.scrollToItem(table.item(good, 0))
    pos = table.visualItemRect(table.item(good, 0)).center()
    assert table.isVisible()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=pos)   # a double-click's first press
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert win.doc.is_open and win.doc.graph.name == "goodnet"
    broken = next(r for r, m in enumerate(view.rows) if m["status"] == "verification failed")
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        view.open_row(broken)
    assert win.doc.graph.name == "brokennet"


def test_cancel_stops_the_batch_and_keeps_the_rows_so_far(qtbot, window, tmp_path, monkeypatch):
    win = window
    root, out = _zoo(tmp_path), str(tmp_path / "out")
    calls: list = []
    stopped: list = []
    real_stop = core_batch.stop_all

    def stop_all():
        stopped.append(True)
        real_stop()

    def gate(cancel):
        # the second model that runs "hangs" until the batch is cancelled
        if len(calls) >= 2:
            for _ in range(600):
                if cancel():
                    raise_interrupted.append(True)
                    return
                threading.Event().wait(0.05)

    raise_interrupted: list = []
    fake = _fake_convert(calls, gate)

    def convert_one(entry, opts, cancel=None):
        o = fake(entry, opts, cancel)
        if raise_interrupted:
            o.status, o.detail = "interrupted", "stopped by the user"
        return o

    monkeypatch.setattr(core_batch, "convert_one", convert_one)
    monkeypatch.setattr(core_batch, "stop_all", stop_all)
    win.batch.ask_request = _request(root, out)
    win.convert_folder_dialog()
    assert win.status_cancel.isVisible() and win.busy.isVisible()
    qtbot.waitUntil(lambda: len(calls) >= 2, timeout=30_000)
    # the finished model is in the table while the batch still runs
    qtbot.waitUntil(lambda: win.batch.view.table.rowCount() >= 1, timeout=10_000)
    assert win.batch.running
    qtbot.mouseClick(win.status_cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not win.batch.running, timeout=30_000)
    assert stopped and raise_interrupted
    view = win.batch.view
    names = [m["name"] for m in view.rows]
    assert len(names) == 2 and len(calls) == 2          # the rest were never started
    assert view.table.item(0, 2).text() != "interrupted"
    assert view.table.item(1, 2).text() == "interrupted"
    assert "Cancelled" in view.summary.text()
    assert not win.status_cancel.isVisible() and not win.busy.isVisible()


def test_the_options_dialog_builds_the_request(qtbot, window, tmp_path):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QCheckBox, QDialogButtonBox

    from migrator.gui.flows.batch_flow import _batch_dialog
    seen = {}

    def answer():
        dlg = QApplication.activeModalWidget()
        seen["title"] = dlg.windowTitle()
        for box in dlg.findChildren(QCheckBox):
            if "TensorFlow Lite" in box.text():
                box.setChecked(True)
        bb = dlg.findChild(QDialogButtonBox)
        start = next(b for b in bb.buttons() if b.text() == "Start")
        start.click()

    QTimer.singleShot(200, answer)
    req = _batch_dialog(window, str(tmp_path / "zoo"), str(tmp_path / "out"))
    assert seen["title"] == "Convert a folder"
    assert req.root == str(tmp_path / "zoo")
    assert req.options.out_dir == str(tmp_path / "out")
    assert req.options.runtime == "builtin" and list(req.options.also) == ["tflite"]
    assert not req.options.force
