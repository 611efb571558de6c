"""The batch index (File ▸ Convert a folder…) as a table: one row per model, its status
coloured; a double-click opens the model in the window, "Open index.html" the written page."""
from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import theme

COLUMNS = ("Model", "Framework", "Status", "Detail", "Worst layer (max rel)", "Seconds")

# batch status -> the window's status colour
STATUS_KIND = {"verified": "pass", "verification failed": "fail", "crashed": "fail",
               "refused": "unsupported", "bad file": "unsupported",
               "timed out": "muted", "out of memory": "muted", "interrupted": "muted"}


def worst_text(m: dict) -> str:
    """``layer (max rel)`` of a row, or an em dash."""
    if m.get("worst_layer") is None:
        return "—"
    rel = m.get("worst_max_rel")
    return f"{m['worst_layer']} ({rel:.3g})" if rel is not None else str(m["worst_layer"])


def short_detail(m: dict) -> str:
    """The row's detail with the model's own file paths cut to their names (the folder is the
    row's name already; the full text is the cell's tooltip)."""
    text = m.get("detail") or ""
    for f in m.get("files") or []:
        text = text.replace(f, os.path.basename(f))
    return text


class BatchIndexView(QWidget):
    open_model_requested = Signal(dict)     # the row's index entry (files, mapping, ...)
    open_index_requested = Signal(str)      # the index.html path

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.index: dict | None = None
        self.rows: list[dict] = []
        self.html_path: str | None = None
        self.note = ""
        self.summary = QLabel("No batch yet: File ▸ Convert a folder…")
        self.summary.setWordWrap(True)
        self.open_html = QPushButton("Open index.html")
        self.open_html.setEnabled(False)
        self.open_html.clicked.connect(self._open_html)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.open_html)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hdr.setStretchLastSection(False)
        for c, w in enumerate((210, 80, 150, 300, 160, 70)):
            self.table.setColumnWidth(c, w)
        # short columns fit their contents; the detail (the longest text) takes the rest
        for c in (1, 2, 5):
            hdr.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        hdr.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setToolTip("Double-click a model to open it in the window")
        self.table.cellDoubleClicked.connect(lambda r, _c: self.open_row(r))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)

    def set_index(self, index: dict | None, html_path: str | None = None, note: str = "") -> None:
        """Show ``index`` (the dict :func:`migrator.core.batch.run_batch` returns / index.json)."""
        self.index = index
        self.html_path = html_path
        self.note = note
        self.rows = list((index or {}).get("models") or [])
        t = self.table
        t.setRowCount(len(self.rows))
        for r, m in enumerate(self.rows):
            secs = m.get("seconds")
            cells = (m.get("name", ""), m.get("framework") or "—", m.get("status", ""),
                     short_detail(m), worst_text(m),
                     "—" if secs is None else f"{secs:.1f}")
            for c, text in enumerate(cells):
                it = QTableWidgetItem(text)
                tip = {0: "\n".join(m.get("files") or []), 3: m.get("detail") or ""}.get(c, text)
                it.setToolTip(tip)
                if c == 5:
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                t.setItem(r, c, it)
            st = t.item(r, 2)
            kind = STATUS_KIND.get(m.get("status", ""), "muted")
            st.setForeground(theme.colour(kind))
            st.setIcon(theme.status_icon(kind))
            f = st.font()
            f.setBold(True)
            st.setFont(f)
        counts = {}
        for m in self.rows:
            counts[m.get("status", "")] = counts.get(m.get("status", ""), 0) + 1
        text = f"{len(self.rows)} model(s)"
        if counts:
            text += ": " + ", ".join(f"{n} {s}" for s, n in counts.items())
        if index and index.get("out_dir"):
            text += f" — written to {index['out_dir']}"
        note = note or (index or {}).get("note") or ""
        if note:
            text += f". {note}"
        self.summary.setText(text)
        self.open_html.setEnabled(bool(html_path))

    def status_of(self, name: str) -> str | None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == name:
                return self.table.item(r, 2).text()
        return None

    def open_row(self, row: int) -> None:
        if 0 <= row < len(self.rows):
            self.open_model_requested.emit(dict(self.rows[row]))

    def _open_html(self) -> None:
        if self.html_path:
            self.open_index_requested.emit(self.html_path)

    def refresh_status(self) -> None:
        """The theme changed: recolour the status column."""
        self.set_index(self.index, self.html_path, self.note)
