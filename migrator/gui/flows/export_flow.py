"""Exporting the Keras model and its report (File ▸ Export, Ctrl+E)."""
from __future__ import annotations

import logging
import os

from ...core import document as docmod
from ...core.errors import MigratorError
from ..workers import run_job

log = logging.getLogger("migrator.gui")


# (file-dialog filter, format) in the order offered; a SavedModel is a directory
FILTERS = (("Keras model (*.keras)", "keras"), ("HDF5 model (*.h5)", "h5"),
           ("Weights only (*.weights.h5)", "weights"), ("TensorFlow Lite (*.tflite)", "tflite"),
           ("TensorFlow SavedModel (a folder)", "saved_model"))
EXTS = {"keras": ".keras", "h5": ".h5", "weights": ".weights.h5", "tflite": ".tflite", "saved_model": ""}


def format_of(path: str, fmt: str | None = None) -> str:
    if fmt is not None:
        return fmt
    p = path.lower()
    if p.endswith(".weights.h5"):
        return "weights"
    if p.endswith((".h5", ".hdf5")):
        return "h5"
    if p.endswith(".tflite"):
        return "tflite"
    return "keras"


def export_targets(path: str, fmt: str | None = None) -> tuple[str, list[str]]:
    """(report path, every file an export to ``path`` writes).

    ``x.keras`` -> ``x.report.{json,md,html}``; other formats keep their extension in the
    report's name (``x.h5.report.json``, ``x.weights.h5.report.json``), so ``x.keras`` and
    ``x.h5`` exported side by side each have their own report."""
    stem = path.rstrip("/\\")
    if fmt == "saved_model":
        stem += ".saved_model"
    elif stem.lower().endswith(".keras"):
        stem = stem[: -len(".keras")]
    report = stem + ".report.json"
    return report, [path, report, stem + ".report.md", stem + ".report.html"]


def typed_format(path: str) -> str | None:
    """The format a typed file name asks for by its extension (None: no known extension)."""
    p = path.lower()
    if p.endswith((".keras", ".h5", ".hdf5", ".tflite")):
        return format_of(path)
    return None


FORMAT_NAMES = {"keras": "Keras model", "h5": "HDF5 model", "weights": "weights only",
                "tflite": "TensorFlow Lite", "saved_model": "TensorFlow SavedModel"}


def _save_file_dialog(parent, title: str, start: str, filters: str) -> tuple[str, str]:
    from PySide6.QtWidgets import QFileDialog
    return QFileDialog.getSaveFileName(parent, title, start, filters,
                                       options=QFileDialog.Option.DontConfirmOverwrite)


class ExportFlow:
    def __init__(self, win):
        self.win = win
        # (parent, title, start path, filters) -> (path, chosen filter): tests script it
        self.get_save_path = _save_file_dialog

    def choose_target(self, start: str) -> tuple[str, str] | None:
        """Ask for the file until the user picks one that may be written (path, format);
        None when cancelled.  A typed known extension (``demo.tflite``) decides the format,
        whatever the type list says; No to "Overwrite?" asks again."""
        w = self.win
        while True:
            path, filt = self.get_save_path(w, "Export Keras model", start,
                                            ";;".join(f for f, _ in FILTERS))
            if not path:
                return None
            chosen = dict(FILTERS).get(filt)
            fmt = typed_format(path)
            if fmt is None and chosen == "saved_model":
                fmt = "saved_model"
            elif fmt is None:
                fmt = chosen or "keras"
                path += EXTS[fmt]
            if chosen is not None and chosen != fmt:
                w.statusBar().showMessage(f"Exporting as {FORMAT_NAMES[fmt]}, as the file name "
                                          f"{os.path.basename(path)} says", 10000)
                log.info("export format follows the file name %s: %s", os.path.basename(path),
                         FORMAT_NAMES[fmt])
            _, targets = export_targets(path, fmt)
            existing = [t for t in targets if os.path.exists(t)]
            if existing and not w.ask("Overwrite?", "These files already exist:\n" + "\n".join(existing)
                                      + "\n\nReplace them? (No: choose another name)"):
                start = path
                continue
            return path, fmt

    def export_dialog(self) -> None:
        w = self.win
        if not w.doc.is_open:
            return
        if not self.confirm_gate():
            return
        start = os.path.join(w.settings.get("last_dir") or "", (w.doc.graph.name or "model") + ".keras")
        chosen = self.choose_target(start)
        if chosen is None:
            return
        path, fmt = chosen
        self.export_to(path, gate_confirmed=True, force=True,
                       fmt="saved_model" if fmt == "saved_model" else None)

    def confirm_gate(self) -> bool:
        problem = self.win.doc.export_problem()
        if problem is None:
            return True
        return self.win.ask("Export without a passing comparison?",
                            f"Export is meant for a mapping with a passing comparison, but {problem}.\n\n"
                            "Export the Keras model anyway? The report will say so.")

    def export_to(self, path: str, *, gate_confirmed: bool = False, force: bool = False,
                  fmt: str | None = None) -> None:
        """Export in a worker; asks (win.ask) before exporting past the gate or overwriting."""
        w = self.win
        doc = w.doc
        problem = doc.export_problem()
        if problem is not None and not gate_confirmed and not self.confirm_gate():
            return
        fmt = format_of(path, fmt)
        if fmt == "keras" and not path.lower().endswith(".keras"):
            path += ".keras"
        report, targets = export_targets(path, fmt)
        existing = [t for t in targets if os.path.exists(t)]
        if not force and existing:
            names = "\n".join(existing)
            if not w.ask("Overwrite?", f"These files already exist:\n{names}\n\nReplace them?"):
                return
            force = True
        model = doc.model if doc.model_current else None
        result = doc.result if not doc.stale else None
        try:
            bake = w.compare.bake_preprocessing()
        except MigratorError as e:
            w.show_error("Export failed", str(e), "")
            return
        w._busy(True, f"Exporting {os.path.basename(path)}…")

        def failed(msg, details):
            w._busy(False)
            if "exist" in msg and not force and w.ask("Overwrite?", f"{msg}\n\nReplace the existing files?"):
                self.export_to(path, gate_confirmed=True, force=True, fmt=fmt)
                return
            w.show_error("Export failed", msg, details)

        def done(files):
            w._busy(False, "")
            w.last_export = list(files)
            names = [os.path.basename(f) for f in files]
            w.statusBar().showMessage(f"Exported {names[0]}" + (f" and {len(names) - 1} report files"
                                                                if len(names) > 1 else ""), 10000)
            log.info("exported %s", ", ".join(files))
            w.export_banner.show_files(list(files))
            w.exported.emit(list(files))

        w.jobs["export"] = run_job(docmod.export_model, doc.graph, doc.plan, doc.overrides, model, result,
                                   path, formats=(), report_path=report, force=force,
                                   fmt=fmt if fmt == "saved_model" else None,
                                   accept_mismatch=problem is not None, bake=bake,
                                   on_done=done, on_error=failed, on_progress=w._busy_progress,
                                   name="export", parent=w)
