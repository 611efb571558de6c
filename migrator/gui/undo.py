"""QUndoCommand adapters of the core's undoable commands (:mod:`migrator.core.commands`)."""
from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from ..core.commands import Command


class CoreCommand(QUndoCommand):
    """Wraps one :class:`migrator.core.commands.Command`; QUndoStack.push() calls redo()."""

    def __init__(self, command: Command):
        super().__init__(command.text)
        self.command = command

    def redo(self) -> None:
        self.command.do()

    def undo(self) -> None:
        self.command.undo()


def push(stack, command: Command) -> CoreCommand:
    qc = CoreCommand(command)
    stack.push(qc)
    return qc
