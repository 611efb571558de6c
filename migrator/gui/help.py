"""Help ▸ About: versions of the libraries and TensorFlow's devices."""
from __future__ import annotations

import html
import logging
import sys
from pathlib import Path

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from .. import __version__
from .workers import run_job

log = logging.getLogger("migrator.gui")


USER_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"


def _text_dialog(win, title: str, *, markdown: str | None = None, html_text: str | None = None,
                 size=(560, 480)) -> tuple[QDialog, QTextBrowser]:
    dlg = QDialog(win)
    dlg.setWindowTitle(title)
    text = QTextBrowser()
    text.setOpenExternalLinks(True)
    if markdown is not None:
        text.setMarkdown(markdown)
    else:
        text.setHtml(html_text or "")
    bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    bb.rejected.connect(dlg.reject)
    lay = QVBoxLayout(dlg)
    lay.addWidget(text)
    lay.addWidget(bb)
    dlg.resize(*size)
    return dlg, text


def user_guide_markdown() -> str:
    try:
        return USER_GUIDE.read_text(encoding="utf-8")
    except OSError:
        return ("# User guide\n\nThe user guide (docs/user-guide.md) is not part of this "
                "installation. Help ▸ Keyboard shortcuts lists every shortcut.")


def user_guide_dialog(win) -> QDialog:
    dlg, _ = _text_dialog(win, "Migrator user guide", markdown=user_guide_markdown(), size=(820, 680))
    dlg.open()
    return dlg


def shortcut_rows(win) -> list[tuple[str, str]]:
    """(action, its shortcuts) for every action of the window that has one."""
    rows = []
    for a in win.actions():
        keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts()]
        keys = [k for k in keys if k]
        if keys:
            rows.append((a.text().replace("&", "").rstrip("…"), ", ".join(keys)))
    return rows


def shortcuts_html(win) -> str:
    rows = "".join(f"<tr><td>{html.escape(t)}</td><td><b>{html.escape(k)}</b></td></tr>"
                   for t, k in shortcut_rows(win))
    return ("<h3>Keyboard shortcuts</h3><table cellspacing=6>" + rows + "</table>"
            "<p>In the mapping inspector: F2 edits the selected value, Enter commits it, Escape "
            "cancels. The shortcuts also work while the cursor is in a text field.</p>")


def shortcuts_dialog(win) -> QDialog:
    dlg, _ = _text_dialog(win, "Keyboard shortcuts", html_text=shortcuts_html(win), size=(460, 520))
    dlg.open()
    return dlg


def about_dialog(win) -> QDialog:
    dlg = QDialog(win)
    dlg.setWindowTitle("About Migrator")
    text = QTextBrowser()
    text.setOpenExternalLinks(True)
    text.setHtml(about_html(None))
    bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    bb.rejected.connect(dlg.reject)
    lay = QVBoxLayout(dlg)
    lay.addWidget(text)
    lay.addWidget(bb)
    dlg.resize(560, 480)

    def done(devs):
        text.setHtml(about_html(devs))
    win.jobs["about"] = run_job(tf_devices, on_done=done,
                                on_error=lambda m, d: text.setHtml(about_html([f"(unavailable: {m})"])),
                                name="about", parent=win, pass_callbacks=False)
    dlg.open()
    return dlg


def library_versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {"Migrator": __version__, "Python": sys.version.split()[0]}
    for dist, label in (("numpy", "NumPy"), ("tensorflow", "TensorFlow"), ("keras", "Keras"),
                        ("protobuf", "protobuf"), ("h5py", "h5py"), ("PySide6-Essentials", "PySide6"),
                        ("PySide6", "PySide6"), ("pyqtgraph", "pyqtgraph"),
                        ("opencv-python-headless", "OpenCV"), ("opencv-python", "OpenCV")):
        if label in out:
            continue
        try:
            out[label] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        from PySide6 import QtCore
        out["Qt"] = QtCore.qVersion()
    except Exception as e:  # noqa: BLE001
        log.debug("no Qt version: %s", e)
    return out


def tf_devices() -> list[str]:
    import tensorflow as tf
    return [f"{d.device_type}: {d.name}" for d in tf.config.list_physical_devices()]


def about_html(devices) -> str:
    vers = library_versions()
    rows = "".join(f"<tr><td>{k}</td><td><b>{v}</b></td></tr>" for k, v in vers.items())
    if devices is None:
        dev = "<i>listing TensorFlow devices…</i>"
    else:
        dev = "<br>".join(devices) or "(none)"
    return (f"<h2>Migrator {__version__}</h2>"
            "<p>Converts pretrained Caffe and Lasagne/Theano models to Keras 3 and proves, layer by "
            "layer and channel by channel, that the converted model computes the same thing.</p>"
            f"<h3>Libraries</h3><table cellspacing=4>{rows}</table>"
            f"<h3>TensorFlow devices</h3><p>{dev}</p>")
