"""Help ▸ About: versions of the libraries and TensorFlow's devices."""
from __future__ import annotations

import logging
import sys

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from .. import __version__
from .workers import run_job

log = logging.getLogger("migrator.gui")


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
