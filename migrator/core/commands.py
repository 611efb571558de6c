"""Undoable edits of a :class:`~migrator.core.document.Document` (no Qt).

Every user edit of the mapping is a command with ``do()`` and ``undo()``; both change
``document.overrides`` and re-plan.  The GUI wraps them in ``QUndoCommand`` adapters
(:mod:`migrator.gui.undo`); the CLI can replay the same edits from a mapping file.

* :class:`SetOverride` -- set ``key`` on one layer (``layer=``) or on a whole kind (``kind=``)
* :class:`ResetOverride` -- remove the override (back to the rule's default)
* :class:`ApplyToAllBatchNorm` -- one value for every batch-norm layer (a kind override,
  with any per-layer override of the same key removed so it really applies everywhere)

A value is validated against the rule's option when the command is *created*, so an
invalid edit raises :class:`~migrator.core.errors.MigratorError` and never enters the
undo history.
"""
from __future__ import annotations

from typing import Any

from .document import BATCHNORM_OPS, MISSING, Document, get_override, put_override
from .errors import MigratorError


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if isinstance(v, str) else str(v)


class Command:
    """Base class: subclasses fill ``_changes`` with (scope, target, key, new value)."""

    text = ""

    def __init__(self, doc: Document):
        self.doc = doc
        self._changes: list[tuple[str, str, str, Any]] = []
        self._before: list[Any] | None = None

    def do(self) -> None:
        ov = self.doc.overrides
        self._before = [get_override(ov, s, t, k) for s, t, k, _ in self._changes]
        for s, t, k, v in self._changes:
            put_override(ov, s, t, k, v)
        self.doc.overrides_changed()

    def undo(self) -> None:
        if self._before is None:
            raise RuntimeError("undo() before do()")
        ov = self.doc.overrides
        for (s, t, k, _), old in reversed(list(zip(self._changes, self._before))):
            put_override(ov, s, t, k, old)
        self.doc.overrides_changed()

    # ``redo`` is ``do`` (QUndoCommand vocabulary)
    redo = do


def _target(layer: str | None, kind: str | None) -> tuple[str, str]:
    if (layer is None) == (kind is None):
        raise ValueError("give exactly one of layer= or kind=")
    return ("layer", layer) if layer is not None else ("kind", kind)


class SetOverride(Command):
    def __init__(self, doc: Document, key: str, value: Any, *, layer: str | None = None,
                 kind: str | None = None):
        super().__init__(doc)
        scope, target = _target(layer, kind)
        if scope == "layer" and target not in doc.graph:
            raise MigratorError("no such layer", layer=target)
        value = doc.validate_override(target, key, value, scope=scope)
        self.scope, self.target, self.key, self.value = scope, target, key, value
        self._changes = [(scope, target, key, value)]
        where = f"'{target}'" if scope == "layer" else f"every {target} layer"
        self.text = f"Set {key} = {_fmt(value)} on {where}"


class ResetOverride(Command):
    def __init__(self, doc: Document, key: str, *, layer: str | None = None, kind: str | None = None):
        super().__init__(doc)
        scope, target = _target(layer, kind)
        self.scope, self.target, self.key = scope, target, key
        self._changes = [(scope, target, key, MISSING)]
        where = f"'{target}'" if scope == "layer" else f"{target} layers"
        self.text = f"Reset {key} on {where}"


class ApplyToAllBatchNorm(Command):
    def __init__(self, doc: Document, key: str, value: Any, kind: str = "BatchNorm"):
        super().__init__(doc)
        if kind not in BATCHNORM_OPS:
            raise ValueError(f"not a batch-norm kind: {kind!r}")
        value = doc.validate_override(kind, key, value, scope="kind")
        self.key, self.value = key, value
        self._changes = [("kind", kind, key, value)]
        for name in doc.batchnorm_sources():
            if get_override(doc.overrides, "layer", name, key) is not MISSING:
                self._changes.append(("layer", name, key, MISSING))
        self.text = f"Set {key} = {_fmt(value)} on every batch-norm layer"


def replay(doc: Document, commands: list[Command]) -> None:
    """Run commands in order (CLI replay, tests)."""
    for c in commands:
        c.do()
