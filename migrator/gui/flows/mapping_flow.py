"""Edits of the mapping (undoable commands) and mapping files."""
from __future__ import annotations

import logging
import os

from PySide6.QtWidgets import QFileDialog

from ...core.commands import ApplyToAllBatchNorm, Command, ResetOverride, SetOverride
from ...core.document import MISSING, get_override
from ...core.errors import MigratorError
from ..undo import push
from ..workers import run_job

log = logging.getLogger("migrator.gui")

_UNSET = object()


class ResetOneOfKind(Command):
    """Reset ``key`` on one layer whose value comes from a kind override: the kind override
    is removed and every *other* layer it applied to gets the same value as its own
    override, so only ``source`` goes back to the rule's default."""

    def __init__(self, doc, key: str, source: str, kind: str):
        super().__init__(doc)
        value = get_override(doc.overrides, "kind", kind, key)
        self._changes = [("kind", kind, key, MISSING)]
        for n in doc.graph.nodes:
            if n.name == source or kind not in (n.op, n.source_type):
                continue
            if get_override(doc.overrides, "layer", n.name, key) is MISSING:
                self._changes.append(("layer", n.name, key, value))
        self.text = f"Reset {key} on '{source}'"


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
        """Reset ``key`` on this layer only.  When its value comes from a per-kind override
        (e.g. "Apply to every batch-norm layer"), the other layers of that kind keep it:
        the kind override becomes per-layer overrides of the others (one undoable step)."""
        doc = self.win.doc
        if doc.override_value("layer", source, key, _UNSET) is not _UNSET:
            return self._push(lambda: ResetOverride(doc, key, layer=source))
        node = doc.graph.node(source) if doc.graph is not None else None
        kinds = [k for k in (node.op, node.source_type) if k] if node is not None else []
        kind = next((k for k in reversed(kinds)
                     if doc.override_value("kind", k, key, _UNSET) is not _UNSET), None)
        if kind is None:
            return self._push(lambda: ResetOverride(doc, key, layer=source))
        return self._push(lambda: ResetOneOfKind(doc, key, source, kind))

    def apply_to_all_batchnorm(self, key: str, value) -> bool:
        return self._push(lambda: ApplyToAllBatchNorm(self.win.doc, key, value))

    # ---- mapping file --------------------------------------------------------------------------
    def suggested_path(self) -> str:
        """``<model>.mapping.json`` in the folder last used (never a demo's install folder)."""
        w = self.win
        g = w.doc.graph
        stem = (g.name if g is not None and g.name else
                os.path.splitext(os.path.basename(w.doc.paths[0]))[0] if w.doc.paths else "model")
        folder = w.settings.get("last_dir") or os.path.expanduser("~")
        return os.path.join(folder, f"{stem}.mapping.json")

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
        if not w.confirm_replace(f"loading {os.path.basename(path)}"):
            return
        graph = w.doc.graph

        def work(progress=None, cancel=None):
            from ...core.flow import load_overrides
            ov = load_overrides(path)
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
                start = path or self.suggested_path()
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
        w.settings.set("last_dir", os.path.dirname(os.path.abspath(path)))
        w.undo_stack.setClean()
        w.statusBar().showMessage(f"Saved mapping {path}", 5000)
        log.info("saved mapping %s", path)
        return path
