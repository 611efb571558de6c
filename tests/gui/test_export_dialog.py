"""Export as a user does it: the file named is the file written, "No" to overwrite asks for
another name, and what was written stays on screen."""
from __future__ import annotations

import logging
import os

from PySide6.QtCore import Qt

from .conftest import LOAD_TIMEOUT, Asker, open_model, run_compare


class SaveDialog:
    """Stands in for the file dialog: answers (path, filter) in turn, records each start."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.starts: list[str] = []

    def __call__(self, parent, title, start, filters):
        self.starts.append(start)
        return self.answers.pop(0) if self.answers else ("", "")


KERAS = "Keras model (*.keras)"


def test_a_typed_extension_decides_the_format(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    flow = win.exporting
    # the type list says Keras, the name says TensorFlow Lite: TFLite, named as typed
    flow.get_save_path = SaveDialog((str(tmp_path / "demo.tflite"), KERAS))
    assert flow.choose_target("start") == (str(tmp_path / "demo.tflite"), "tflite")
    assert "TensorFlow Lite" in win.statusBar().currentMessage()
    # no extension typed: the type list decides
    flow.get_save_path = SaveDialog((str(tmp_path / "plain"), "TensorFlow Lite (*.tflite)"))
    assert flow.choose_target("start") == (str(tmp_path / "plain.tflite"), "tflite")
    # the whole export: weights.h5 typed with the Keras type -> weights only, no ".keras" added
    flow.get_save_path = SaveDialog((str(tmp_path / "demo.weights.h5"), KERAS))
    with qtbot.waitSignal(win.exported, timeout=LOAD_TIMEOUT) as sig:
        win.export_dialog()
    files = sig.args[0]
    assert files[0] == str(tmp_path / "demo.weights.h5")
    assert (tmp_path / "demo.weights.h5").is_file()
    assert not any(p.name.endswith(".keras") or ".h5.keras" in p.name for p in tmp_path.iterdir())
    assert (tmp_path / "demo.weights.h5.report.json").is_file()


def test_no_to_overwrite_asks_for_another_name_then_the_banner_stays(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    taken = tmp_path / "taken.keras"
    taken.write_bytes(b"not to be replaced")
    dlg = SaveDialog((str(taken), KERAS), (str(tmp_path / "fresh"), KERAS))
    win.exporting.get_save_path = dlg
    win.ask = Asker(lambda title, text: title != "Overwrite?")
    opened: list[str] = []
    win.open_url = opened.append
    with qtbot.waitSignal(win.exported, timeout=LOAD_TIMEOUT):
        win.export_dialog()
    # asked once, answered No: back to the file dialog (starting at the refused name)
    assert [q[0] for q in win.ask.questions].count("Overwrite?") == 1
    assert len(dlg.starts) == 2 and dlg.starts[1] == str(taken)
    assert taken.read_bytes() == b"not to be replaced"
    assert (tmp_path / "fresh.keras").is_file()
    # a lasting note names what was written, with ways to open it
    qtbot.wait(20)
    banner = win.export_banner
    assert banner.isVisible()
    text = banner.text.text()
    assert "fresh.keras" in text and "fresh.report.html" in text and str(tmp_path) in text
    win.statusBar().clearMessage()           # the note outlives the status message
    qtbot.mouseClick(banner.folder_btn, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(banner.report_btn, Qt.MouseButton.LeftButton)
    assert opened == [str(tmp_path), str(tmp_path / "fresh.report.html")]
    qtbot.mouseClick(banner.close_btn, Qt.MouseButton.LeftButton)
    assert not banner.isVisible()


def test_cancelling_the_file_dialog_exports_nothing(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    out = tmp_path / "out"
    out.mkdir()
    win.settings.set("last_dir", str(out))
    win.exporting.get_save_path = SaveDialog()
    win.export_dialog()
    qtbot.wait(50)
    assert "export" not in win.jobs and not win.export_banner.isVisible()
    assert os.listdir(out) == []


def test_log_tab_shows_the_newest_entry(qtbot, window):
    win = window
    lg = logging.getLogger("migrator.test")
    win.compare_dock.raise_()                # the log is a hidden tab meanwhile
    for i in range(400):
        lg.warning("line %d", i)
    qtbot.wait(20)
    win.log_dock.raise_()
    qtbot.wait(50)
    bar = win.log_panel.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    assert "line 399" in win.log_panel.toPlainText().splitlines()[-1]
    # visible: new lines keep it at the end
    lg.warning("one more")
    qtbot.wait(20)
    assert bar.value() == bar.maximum()
    # scrolled up to read: a new line does not pull it away
    bar.setValue(0)
    lg.warning("and another")
    qtbot.wait(20)
    assert bar.value() == 0
