"""Opening mistakes: the weights alone find their model definition, and a failed Open keeps
the dialog open with both paths to fix."""
from __future__ import annotations

import shutil

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDialogButtonBox

from .conftest import LOAD_TIMEOUT


def _caffe_folder(tmp_path, demos, *, deploy: bool, extra=()):
    d = tmp_path / "model"
    d.mkdir()
    proto, weights = demos["caffe"]
    shutil.copy(weights, d / "net.caffemodel")
    if deploy:
        shutil.copy(proto, d / "deploy.prototxt")
    for name in extra:
        (d / name).write_text("# not the model\n")
    return d


def _click_open(dlg):
    dlg.buttons.button(QDialogButtonBox.StandardButton.Open).click()


def _drive_dialog(qtbot, win, steps):
    """Run File > Open (a modal dialog) and play ``steps(dlg)`` inside it; returns the dialog."""
    seen = {}

    def start():
        dlg = win.opening.dialog
        seen["dlg"] = dlg
        QTimer.singleShot(LOAD_TIMEOUT, dlg.reject)          # never hang the suite
        steps(dlg)
    QTimer.singleShot(0, start)
    win.act_open.trigger()
    return seen["dlg"]


def test_weights_alone_find_the_deploy_prototxt(qtbot, window, demos, tmp_path):
    win = window
    d = _caffe_folder(tmp_path, demos, deploy=True, extra=("solver.prototxt",))

    def steps(dlg):
        dlg.weights.setText(str(d / "net.caffemodel"))
        _click_open(dlg)
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        dlg = _drive_dialog(qtbot, win, steps)
    assert win.doc.paths == [str(d / "deploy.prototxt"), str(d / "net.caffemodel")]
    assert dlg.arch.text() == str(d / "deploy.prototxt")
    assert "deploy.prototxt" in dlg.note.text() and not dlg.isVisible()


def test_weights_alone_without_a_definition_say_what_to_fill(qtbot, window, demos, tmp_path):
    win = window
    d = _caffe_folder(tmp_path, demos, deploy=False, extra=("a.prototxt", "b.prototxt"))
    seen = {}

    def steps(dlg):
        dlg.weights.setText(str(d / "net.caffemodel"))
        _click_open(dlg)
        # not loaded; the dialog is still open and says which field to fill
        seen["visible"] = dlg.isVisible()
        seen["error"] = dlg.error.text()
        seen["weights"] = dlg.weights.text()
        seen["loading"] = "load" in win.jobs
        dlg.reject()
    _drive_dialog(qtbot, win, steps)
    assert seen["visible"] and not seen["loading"]
    assert "Architecture field" in seen["error"]
    assert seen["weights"] == str(d / "net.caffemodel")
    assert not win.doc.is_open


def test_a_failed_open_keeps_the_dialog_and_both_paths(qtbot, window, demos, tmp_path):
    win = window
    d = _caffe_folder(tmp_path, demos, deploy=False)
    bad = d / "broken.prototxt"
    bad.write_text("layer { name: 'x' type: 'Convolution' bottom: 'nothing' top: 'x' }\n{{{")
    good = str(demos["caffe"][0])
    seen = {}

    def steps(dlg):
        dlg.arch.setText(str(bad))
        dlg.weights.setText(str(d / "net.caffemodel"))

        def failed(msg):
            seen["msg"] = msg
            seen["visible"] = dlg.isVisible()
            seen["paths"] = dlg.paths()
            seen["error"] = dlg.error.text()
            seen["last_error"] = win.last_error
            seen["open_enabled"] = dlg.buttons.button(QDialogButtonBox.StandardButton.Open).isEnabled()
            win.load_failed.disconnect(failed)
            # fix the architecture and try again, in the same dialog
            dlg.arch.setText(good)
            QTimer.singleShot(0, lambda: _click_open(dlg))
        win.load_failed.connect(failed)
        _click_open(dlg)
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        dlg = _drive_dialog(qtbot, win, steps)
    assert seen["visible"] and seen["open_enabled"]
    assert seen["paths"] == [str(bad), str(d / "net.caffemodel")]
    assert seen["error"] and seen["error"] == seen["last_error"] == seen["msg"]
    assert win.doc.paths == [good, str(d / "net.caffemodel")]
    assert not dlg.isVisible()


def test_picking_the_weights_fills_the_architecture(qtbot, demos, tmp_path, monkeypatch):
    from migrator.gui.flows import open_flow
    d = _caffe_folder(tmp_path, demos, deploy=True)
    dlg = open_flow.OpenDialog(None, str(d))
    qtbot.addWidget(dlg)
    monkeypatch.setattr(open_flow.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(d / "net.caffemodel"), "")))
    dlg._pick_weights()
    assert dlg.arch.text() == str(d / "deploy.prototxt")
    # Lasagne: the only builder script next to the parameters
    las = open_flow.architecture_next_to(demos["lasagne"][1])
    assert las == str(demos["lasagne"][0])
    assert open_flow.architecture_next_to(str(tmp_path / "nowhere" / "x.caffemodel")) is None
