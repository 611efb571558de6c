"""A lasting note of what the last export wrote, with buttons to open the folder or the report."""
from __future__ import annotations

import html
import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton

from .. import theme


class ExportBanner(QFrame):
    """Hidden until an export finishes; then names every written file (their folder once)
    until closed or the next export."""

    open_requested = Signal(str)          # a folder or a file to open with the desktop

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("export_banner")
        self.text = QLabel("")
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        self.text.setMinimumWidth(10)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_btn = QPushButton("Open folder")
        self.report_btn = QPushButton("Open report")
        self.close_btn = QToolButton()
        self.close_btn.setText("✕")
        self.close_btn.setToolTip("Hide this note")
        self.close_btn.setAutoRaise(True)
        self.folder_btn.clicked.connect(lambda: self.open_requested.emit(self.folder))
        self.report_btn.clicked.connect(lambda: self.open_requested.emit(self.report))
        self.close_btn.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 3, 3, 3)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.folder_btn)
        lay.addWidget(self.report_btn)
        lay.addWidget(self.close_btn)
        self.files: list[str] = []
        self.folder = ""
        self.report = ""
        self.hide()

    def show_files(self, files: list[str]) -> None:
        self.files = list(files)
        first = files[0]
        self.folder = os.path.dirname(os.path.abspath(first.rstrip("/\\")))
        html_reports = [f for f in files if f.endswith(".report.html")]
        self.report = html_reports[0] if html_reports else ""
        self.report_btn.setVisible(bool(self.report))
        names = ", ".join(html.escape(os.path.basename(f.rstrip("/\\"))) for f in files)
        col = theme.colour("pass").name()
        self.text.setText(f"<span style='color:{col}'><b>Exported</b></span> {names} "
                          f"<span style='color:{theme.colour('muted').name()}'>in "
                          f"{html.escape(self.folder)}</span>")
        self.setToolTip("\n".join(files))
        self.show()
