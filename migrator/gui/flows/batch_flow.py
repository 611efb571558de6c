"""Converting a whole folder of models (File ▸ Convert a folder…): the options dialog, the
batch in a worker (status-bar progress and Cancel), its index shown as a table in a dock."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from ...core import batch as core_batch
from ...core.errors import Cancelled
from ..workers import run_job

log = logging.getLogger("migrator.gui")

RUNTIMES = (("builtin", "Built-in NumPy reference"), ("legacy", "Legacy (real Caffe / Theano)"))
ALSO = (("tflite", "TensorFlow Lite"), ("saved_model", "SavedModel"))


@dataclass
class BatchRequest:
    root: str
    options: core_batch.BatchOptions


def _batch_dialog(parent, root: str, out_dir: str) -> BatchRequest | None:
    """The modal options dialog; None when cancelled."""
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QDialog,
        QDialogButtonBox,
        QFileDialog,
        QFormLayout,
        QHBoxLayout,
        QLineEdit,
        QPushButton,
        QWidget,
    )
    dlg = QDialog(parent)
    dlg.setWindowTitle("Convert a folder")
    form = QFormLayout(dlg)

    def folder_row(text: str) -> tuple[QWidget, QLineEdit]:
        edit = QLineEdit(text)
        btn = QPushButton("Browse…")
        btn.clicked.connect(lambda: edit.setText(
            QFileDialog.getExistingDirectory(dlg, "Choose a folder", edit.text()) or edit.text()))
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        h.addWidget(btn)
        return row, edit

    root_row, root_edit = folder_row(root)
    out_row, out_edit = folder_row(out_dir)
    root_edit.setMinimumWidth(380)
    form.addRow("Models folder", root_row)
    form.addRow("Output folder", out_row)
    runtime = QComboBox()
    for key, label in RUNTIMES:
        runtime.addItem(label, key)
    form.addRow("Reference", runtime)
    also = {}
    for key, label in ALSO:
        also[key] = QCheckBox(f"also write {label}")
        form.addRow("", also[key])
    force = QCheckBox("convert again the models already verified")
    form.addRow("", force)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
    start = buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
    start.setDefault(True)
    buttons.accepted.connect(dlg.accept)
    buttons.rejected.connect(dlg.reject)
    form.addRow(buttons)
    if dlg.exec() != QDialog.DialogCode.Accepted or not root_edit.text().strip():
        return None
    r = root_edit.text().strip()
    out = out_edit.text().strip() or os.path.join(r, "migrated")
    opts = core_batch.BatchOptions(out_dir=out, runtime=runtime.currentData() or "builtin",
                                   also=[k for k, box in also.items() if box.isChecked()],
                                   force=force.isChecked())
    return BatchRequest(r, opts)


def _read_index(out_dir: str) -> dict | None:
    try:
        with open(os.path.join(out_dir, "index.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class BatchFlow:
    def __init__(self, win):
        self.win = win
        # (parent, models folder, output folder) -> BatchRequest | None: tests script it
        self.ask_request = _batch_dialog
        self.view = None
        self.dock = None
        self._box: dict = {}
        self._timer = None

    @property
    def running(self) -> bool:
        job = self.win.jobs.get("batch")
        return job is not None and job.running

    # ---- the dock ----------------------------------------------------------------------------------
    def ensure_view(self):
        """The index table's dock, made on first use beside the comparison."""
        if self.view is None:
            from PySide6.QtCore import Qt

            from ..views.batch_index import BatchIndexView
            w = self.win
            self.view = BatchIndexView()
            self.view.open_model_requested.connect(self.open_model)
            self.view.open_index_requested.connect(lambda p: w.open_url(p))
            self.dock = w._dock("Batch index", "batch", self.view, Qt.DockWidgetArea.BottomDockWidgetArea)
            w.tabifyDockWidget(w.compare_dock, self.dock)
            # the table is wide: most of the bottom width, the error plots keep the rest
            w.resizeDocks([self.dock, w.plots_dock], [int(w.width() * 0.68), int(w.width() * 0.32)],
                          Qt.Orientation.Horizontal)
        self.dock.show()
        self.dock.raise_()
        return self.view

    # ---- running ----------------------------------------------------------------------------------
    def convert_folder_dialog(self) -> None:
        w = self.win
        if self.running:
            return
        root = w.settings.get("last_dir") or os.path.expanduser("~")
        req = self.ask_request(w, root, os.path.join(root, "migrated"))
        if req is not None:
            self.start(req.root, req.options)

    def start(self, root: str, opts: core_batch.BatchOptions) -> None:
        """Run the batch over ``root`` in a worker; the table fills as models finish."""
        w = self.win
        if self.running:
            return
        view = self.ensure_view()
        view.set_index(None)
        view.summary.setText(f"Converting the models under {root}…")
        self._box = box = {"out_dir": opts.out_dir, "done": 0}
        w._busy(True, f"Converting the models under {os.path.basename(root.rstrip('/')) or root}…")
        w.status_cancel.setToolTip("Cancel the batch (the model being converted is stopped)")
        w.status_cancel.show()
        log.info("batch started: %s -> %s", root, opts.out_dir)
        if self._timer is None:
            from PySide6.QtCore import QTimer
            self._timer = QTimer(w)
            self._timer.setInterval(400)
            self._timer.timeout.connect(self.poll)
        self._timer.start()
        w.jobs["batch"] = run_job(self.work, root, opts, box, on_done=self.finished, on_error=self.failed,
                                  on_cancel=self.cancelled, on_progress=self.progress, name="batch",
                                  parent=w, pool_kind="batch")

    @staticmethod
    def work(root: str, opts: core_batch.BatchOptions, box: dict, *, progress, cancel) -> dict:
        """Worker thread: :func:`migrator.core.batch.run_batch`, its progress passed on (a cancel
        stops the batch through ``cancel``; the index of what finished is still returned)."""
        def step(done: int, total: int, name: str, eta: float | None) -> None:
            box["done"] = done
            msg = f"{done}/{total} models" + (f" — {name}" if name else "")
            if eta:
                msg += f" — about {int(eta // 60)} min {int(eta % 60)} s left"
            try:
                progress(done / max(total, 1), msg)
            except Cancelled:
                pass            # run_batch sees cancel() and writes the index of what finished

        box["index"] = core_batch.run_batch(root, opts, progress=step, cancel=cancel)
        return box["index"]

    def progress(self, f: float, msg: str) -> None:
        self.win._busy_progress(f, msg)
        self.poll()

    def poll(self) -> None:
        """While the batch runs (a timer; progress is throttled): show the rows finished so far."""
        done = self._box.get("done", 0)
        if done and done != self._box.get("shown"):
            # the index on disk is rewritten after every model: show the rows so far
            self._box["shown"] = done
            idx = _read_index(self._box["out_dir"])
            if idx is not None:
                self.view.set_index(idx, None, "running…")

    def cancel(self) -> None:
        job = self.win.jobs.get("batch")
        if job is not None and job.running:
            job.cancel()
            core_batch.stop_all()
            self.win.statusBar().showMessage("Cancelling the batch…")

    def _end(self) -> None:
        w = self.win
        if self._timer is not None:
            self._timer.stop()
        w._busy(False)
        if not (w.jobs.get("compare") is not None and w.jobs["compare"].running):
            w.status_cancel.hide()
        w.status_cancel.setToolTip("Cancel the comparison (Esc)")

    def _show(self, index: dict | None, note: str = "") -> None:
        html = os.path.join(index["out_dir"], "index.html") if index and index.get("out_dir") else None
        self.ensure_view().set_index(index, html if html and os.path.exists(html) else None, note)

    def finished(self, index: dict) -> None:
        self._end()
        self._show(index)
        n = len(index.get("models") or [])
        ok = sum(1 for m in index.get("models") or [] if m.get("status") == "verified")
        self.win.statusBar().showMessage(f"Batch done: {ok} of {n} models verified", 10000)
        log.info("batch finished: %d of %d verified, index in %s", ok, n, index.get("out_dir"))

    def cancelled(self) -> None:
        self._end()
        index = self._box.get("index") or _read_index(self._box.get("out_dir", ""))
        self._show(index, "Cancelled: the models not listed were not converted")
        self.win.statusBar().showMessage("Batch cancelled", 10000)
        log.info("batch cancelled")

    def failed(self, msg: str, details: str) -> None:
        self._end()
        self.win.show_error("Convert a folder failed", msg, details)

    # ---- opening a row ------------------------------------------------------------------------------
    def open_model(self, row: dict) -> None:
        """Open the row's model (its source files, with its mapping file if any) in the window."""
        files = [f for f in row.get("files") or [] if f]
        if not files:
            return
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            self.win.show_error("Cannot open the model", "missing: " + ", ".join(missing))
            return
        mapping = row.get("mapping")
        self.win.open_paths(files, mapping_path=mapping if mapping and os.path.exists(mapping) else None)
