"""Qt model over the last comparison result: one row per source layer."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from PySide6.QtCore import QAbstractTableModel, Qt
from PySide6.QtGui import QColor, QFont

from ...core.document import Document
from .. import theme
from .layers import NAME_ROLE, SORT_ROLE, fmt_num


class ResultsModel(QAbstractTableModel):
    HEADERS = ("#", "Source layer", "Status", "Max abs", "Max rel", "Needed rtol", "Tolerance",
               "Worst ch.", "Type", "Keras layer")
    NUMERIC = (0, 3, 4, 5, 6, 7)
    # column -> field (the order above)
    _COLS = ("index", "source", "status", "max_abs", "max_rel", "needed_rtol", "tol", "worst", "type", "keras")

    def __init__(self, doc: Document, parent=None):
        super().__init__(parent)
        self.doc = doc
        self._layers = []
        self._first = None
        self._row_of: dict[str, int] = {}
        self._cache: dict[int, tuple] = {}
        # the rows are from an earlier run than the current input (a cancelled or failed run,
        # an edited input): every status says so, as for a changed mapping
        self.outdated = False

    def refresh(self) -> None:
        self.beginResetModel()
        res = self.doc.result
        self._layers = list(res.layers) if res is not None else []
        fd = res.first_divergent if res is not None else None
        self._first = fd.source if fd is not None else None
        self._row_of = {r.source: i for i, r in enumerate(self._layers)}
        self._cache = {}
        self.endResetModel()

    def restatus(self) -> None:
        """Redraw (staleness changed) without resetting selection or sorting."""
        self._cache = {}
        if self._layers:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._layers) - 1, len(self.HEADERS) - 1))

    def column_texts(self, c: int) -> tuple[list[str], list[str]]:
        """(texts to size column ``c`` by, texts shown in bold): cheap for 1,000 layers --
        names are read directly, numeric columns measured on their widest possible form."""
        f = self._COLS[c]
        L = self._layers
        if not L:
            return [], []
        if f == "index":
            return [str(len(L))], []
        if f in ("source", "type", "keras"):
            get = {"source": lambda r: r.source, "type": lambda r: r.source_type,
                   "keras": lambda r: r.keras or ""}[f]
            texts = [get(r) for r in L]
            bold = [get(r) for r in L if r.source == self._first]
            return texts, bold
        if f == "worst":
            return [str(max((r.worst_channel or 0) for r in L))], []
        if f == "status":
            seen, texts, bold = set(), [], []
            for i, r in enumerate(L):
                if r.source == self._first:
                    bold.append(self._text(i, r, f))
                elif r.status not in seen:
                    seen.add(r.status)
                    texts.append(self._text(i, r, f))
            return texts, bold
        return ["-8.88e-08"], (["-8.88e-08"] if self._first else [])

    def row_of(self, name: str):
        return self._row_of.get(name)

    def rowCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self._layers)

    def columnCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def _tol(self, r):
        if r.tolerance is None or not np.isfinite(r.scale):
            return float("nan")
        return r.tolerance.atol + r.tolerance.rtol * r.scale

    # roles a view asks for every visible cell on every paint: answered from a per-row cache
    # (a paint of ~25 rows x 10 columns asks ~2,000 times; each answer is a Python call that
    # needs the GIL, which a comparison running in a worker holds most of the time)
    _PAINT_ROLES: ClassVar[dict[int, int]] = {int(Qt.ItemDataRole.DisplayRole): 0, int(Qt.ItemDataRole.DecorationRole): 1,
                    int(Qt.ItemDataRole.FontRole): 2, int(Qt.ItemDataRole.TextAlignmentRole): 3,
                    int(Qt.ItemDataRole.BackgroundRole): 4, int(Qt.ItemDataRole.ForegroundRole): 5}
    _RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    _NONE_ROLES = frozenset({int(Qt.ItemDataRole.CheckStateRole), int(Qt.ItemDataRole.SizeHintRole)})

    def _paint_row(self, row: int) -> tuple:
        """(texts, decorations, fonts, alignments, backgrounds, foregrounds), one per column."""
        r = self._layers[row]
        n = len(self.HEADERS)
        texts = tuple(self._text(row, r, f) for f in self._COLS)
        deco = [None] * n
        if r.status in ("pass", "fail", "fused"):
            deco[self._COLS.index("status")] = theme.status_icon(r.status)
        first = r.source == self._first
        font = None
        back = None
        if first:
            font = QFont()
            font.setBold(True)
            back = QColor(theme.colour("fail"))
            back.setAlpha(48)
        fore = (theme.colour("muted") if r.status in ("fused", "not-compared") or self.outdated else
                theme.colour("fail") if r.status == "fail" else None)
        align = tuple(self._RIGHT if c in self.NUMERIC else None for c in range(n))
        out = (texts, tuple(deco), (font,) * n, align, (back,) * n, (fore,) * n)
        self._cache[row] = out
        return out

    def _text(self, row: int, r, f: str) -> str:
        if f == "index":
            return str(row + 1)
        if f == "source":
            return r.source
        if f == "type":
            return r.source_type
        if f == "keras":
            return r.keras or ""
        if f == "status":
            s = {"fail": "FAIL", "not-compared": "not compared"}.get(r.status, r.status)
            if (self.doc.stale or self.outdated) and r.status in ("pass", "fail"):
                s += " (stale)"
            if r.source == self._first:
                s += "  ← first divergent"
            return s
        if r.status not in ("pass", "fail"):
            return ""
        if f == "worst":
            return "" if r.worst_channel is None else str(r.worst_channel)
        return fmt_num({"max_abs": r.max_abs, "max_rel": r.max_rel, "needed_rtol": r.needed_rtol,
                        "tol": self._tol(r)}[f])

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        k = self._PAINT_ROLES.get(role)
        if k is not None:
            row = index.row()
            cached = self._cache.get(row)
            if cached is None:
                if not index.isValid() or row >= len(self._layers):
                    return None
                cached = self._paint_row(row)
            return cached[k][index.column()]
        if role in self._NONE_ROLES or not index.isValid():
            return None
        r = self._layers[index.row()]
        f = self._COLS[index.column()]
        if role == SORT_ROLE:
            return {"index": index.row(), "source": r.source, "type": r.source_type,
                    "keras": r.keras or "", "status": r.status, "max_abs": r.max_abs,
                    "max_rel": r.max_rel, "needed_rtol": r.needed_rtol, "tol": self._tol(r),
                    "worst": -1 if r.worst_channel is None else r.worst_channel}[f]
        if role == NAME_ROLE:
            return r.source
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = [f"{r.source} ({r.source_type}) → {r.keras or '—'}"]
            if r.status in ("pass", "fail"):
                tip.append(f"max abs {fmt_num(r.max_abs)}, mean abs {fmt_num(r.mean_abs)}, "
                           f"max rel {fmt_num(r.max_rel)}; worst channel {r.worst_channel}")
                tip.append(f"tolerance atol + rtol·max|ref| = {fmt_num(self._tol(r))}; "
                           f"rtol needed to pass: {fmt_num(r.needed_rtol)}")
            if r.note:
                tip.append(r.note)
            return "\n".join(tip)
        return None
