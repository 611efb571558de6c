"""Python logging -> a read-only text panel (thread-safe through a queued Qt signal)."""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit


class _Emitter(QObject):
    line = Signal(str)


class QtLogHandler(logging.Handler):
    def __init__(self, level=logging.INFO):
        super().__init__(level)
        self.emitter = _Emitter()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                            "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise
            return
        try:
            self.emitter.line.emit(msg)
        except RuntimeError:   # the panel is gone (application shutting down)
            pass


class LogPanel(QPlainTextEdit):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.handler = QtLogHandler()
        self.handler.emitter.line.connect(self.append_line)

    def append_line(self, text: str) -> None:
        """Append and keep the newest entry in view (unless the user scrolled up to read)."""
        bar = self.verticalScrollBar()
        follow = not self.isVisible() or bar.value() >= bar.maximum() - 2
        self.appendPlainText(text)
        if follow:
            self.scroll_to_end()

    def scroll_to_end(self) -> None:
        self.moveCursor(QTextCursor.MoveOperation.End)
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        # hidden behind another tab, the panel had no size to scroll in: scroll on showing
        self.scroll_to_end()

    def install(self, logger: logging.Logger | None = None) -> None:
        logger = logger or logging.getLogger()
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def uninstall(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).removeHandler(self.handler)
