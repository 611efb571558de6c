"""Edits of the mapping (undoable commands) and mapping files."""
from __future__ import annotations

import logging
import os

from PySide6.QtWidgets import QFileDialog

from ...core.commands import ApplyToAllBatchNorm, ResetOverride, SetOverride
from ...core.errors import MigratorError
from ..undo import push
from ..workers import run_job

log = logging.getLogger("migrator.gui")

_UNSET = object()


class MappingFlow:
    def __init__(self, win):
        self.win = win

    # ---- edits (undoable commands) ------------------------------------------------------------------
    def _push(self, make) -> bool:
        w = self.win
        try:
            cmd = make()
        except MigratorError as e:
            w.inspector.show_message(f"Rejected: {e}")
            return False
        push(w.undo_stack, cmd)
        w.statusBar().showMessage(cmd.text + " — the last comparison is now stale"
                                  if w.doc.result is not None else cmd.text, 5000)
        log.info(cmd.text)
        return True

    def set_override(self, source: str, key: str, value) -> bool:
        doc = self.win.doc
        cur = doc.override_value("layer", source, key, _UNSET)
        if cur is not _UNSET and cur == value and type(cur) is type(value):
            return True          # the same value again (editor committed twice): no new command
        return self._push(lambda: SetOverride(doc, key, value, layer=source))

    def reset_override(self, source: str, key: str) -> bool:
        doc = self.win.doc
        kind = doc.graph.node(source).op if doc.graph is not None else None
        if doc.override_value("layer", source, key, None) is None and kind and \
                doc.override_value("kind", kind, key, None) is not None:
            return self._push(lambda: ResetOverride(doc, key, kind=kind))
        return self._push(lambda: ResetOverride(doc, key, layer=source))

    def apply_to_all_batchnorm(self, key: str, value) -> bool:
        return self._push(lambda: ApplyToAllBatchNorm(self.win.doc, key, value))

    # ---- mapping file --------------------------------------------------------------------------
    def load_mapping_dialog(self) -> None:
        w = self.win
        p, _ = QFileDialog.getOpenFileName(w, "Load mapping", w.settings.get("last_dir") or "",
                                           "Mapping file (*.json);;All files (*)")
        if p:
            self.load_mapping(p)

    def load_mapping(self, path: str) -> None:
        w = self.win
        if not w.doc.is_open:
            return
        graph = w.doc.graph

        def work(progress=None, cancel=None):
            from ...core import pipeline
            ov = pipeline.load_overrides(path)
            ov.check_against(graph)
            return ov

        def done(ov):
            w.undo_stack.clear()
            w.doc.set_overrides(ov, mapping_path=path)
            w.statusBar().showMessage(f"Loaded mapping {path}", 5000)
            log.info("loaded mapping %s", path)

        w.jobs["mapping"] = run_job(work, on_done=done,
                                    on_error=lambda m, d: w.show_error("Cannot load the mapping", m, d),
                                    name="mapping", parent=w)

    def save_mapping(self, ask: bool = False, path: str | None = None) -> str | None:
        w = self.win
        doc = w.doc
        if not doc.is_open:
            return None
        if path is None:
            path = doc.mapping_path
            if ask or not path:
                start = path or os.path.join(w.settings.get("last_dir") or "", "mapping.json")
                path, _ = QFileDialog.getSaveFileName(w, "Save mapping", start, "Mapping file (*.json)")
                if not path:
                    return None
                if not path.lower().endswith(".json"):
                    path += ".json"
        try:
            doc.overrides.save(path)      # small JSON: an atomic write, instant
        except MigratorError as e:
            w.show_error("Cannot save the mapping", str(e))
            return None
        doc.mark_saved(path)
        w.undo_stack.setClean()
        w.statusBar().showMessage(f"Saved mapping {path}", 5000)
        log.info("saved mapping %s", path)
        return path
