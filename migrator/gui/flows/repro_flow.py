"""Writing the repro bundle of a failed comparison (Compare ▸ Write repro bundle…)."""
from __future__ import annotations

import logging
import os

from ...core.errors import MigratorError
from ...core.flow import deep_recursion
from ...core.repro import check_target, write_repro
from ..workers import run_job

log = logging.getLogger("migrator.gui")


def _folder_dialog(parent, title: str, start: str) -> str:
    from PySide6.QtWidgets import QFileDialog
    return QFileDialog.getExistingDirectory(parent, title, start)


def _write(graph, plan, model, result, x, out_dir, runtime, runtime_settings):
    with deep_recursion(plan):
        return write_repro(graph, plan, model, result, x, out_dir, runtime=runtime,
                           runtime_settings=runtime_settings, tolerances=result.tolerances)


class ReproFlow:
    def __init__(self, win):
        self.win = win
        # (parent, title, start folder) -> folder ('' = cancelled): tests script it
        self.get_folder = _folder_dialog

    def available(self) -> bool:
        """True when the last comparison failed, is current and its input is kept."""
        doc = self.win.doc
        r = doc.result
        return (doc.is_open and r is not None and not doc.stale and not r.passed
                and not getattr(r, "cancelled", False) and doc.input_x is not None
                and doc.model_current and self.win.comparing.last_runtime is not None
                and not ("repro" in self.win.jobs and self.win.jobs["repro"].running))

    def repro_dialog(self) -> None:
        w = self.win
        if not self.available():
            return
        start = os.path.join(w.settings.get("last_dir") or "", (w.doc.graph.name or "model") + ".repro")
        folder = self.get_folder(w, "Write repro bundle into a new or empty folder", start)
        if folder:
            self.write_to(folder)

    def write_to(self, folder: str) -> None:
        """Write the bundle into ``folder`` in a worker; a refusal is one line, nothing written."""
        w = self.win
        doc = w.doc
        if not self.available():
            return
        try:
            check_target(folder)
        except MigratorError as e:
            self._failed(str(e).replace(" (use --force to replace it)", ""), "")
            return
        runtime, settings = w.comparing.last_runtime
        w._busy(True, f"Writing the repro bundle into {os.path.basename(folder.rstrip('/'))}…")

        def done(out):
            w._busy(False, "")
            w.last_repro = out
            w.statusBar().showMessage(f"Repro bundle written to {out}", 10000)
            log.info("repro bundle written to %s", out)
            w.export_banner.show_files([os.path.join(out, "repro.py")])
            w._update_actions()
            w.repro_written.emit(out)

        def failed(msg, details):
            w._busy(False)
            self._failed(msg, details)
            w._update_actions()

        w.jobs["repro"] = run_job(_write, doc.graph, doc.plan, doc.model, doc.result, doc.input_x, folder,
                                  runtime, settings, on_done=done, on_error=failed, name="repro",
                                  parent=w, pass_callbacks=False)
        w._update_actions()

    def _failed(self, msg: str, details: str) -> None:
        w = self.win
        line = f"Repro bundle not written: {msg.splitlines()[0] if msg else 'unknown error'}"
        w.statusBar().showMessage(line, 15000)
        log.error("%s", line)
        w.repro_failed.emit(line)
