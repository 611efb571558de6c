"""Qt item models over the document: the source layer list and the Keras layer list.

Both are flat models shown in QTreeViews.  Everything shown is precomputed into plain
Python lists when the document changes (one ``beginResetModel``/``endResetModel``), so
``data()`` is a list lookup and a 1,000-layer model populates in milliseconds.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PySide6.QtCore import QAbstractTableModel, Qt
from PySide6.QtGui import QFont

from ...core.document import Document
from .. import theme

NAME_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2
SORT_ROLE = Qt.ItemDataRole.UserRole + 3


def fmt_shape(shape) -> str:
    if shape is None:
        return ""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def fmt_count(n: int) -> str:
    return f"{n:,}" if n else ""


def fmt_num(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(v):
        return "—" if np.isnan(v) else str(v)
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def _fmt_val(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class _FlatModel(QAbstractTableModel):
    HEADERS: tuple[str, ...] = ()

    def __init__(self, doc: Document, parent=None):
        super().__init__(parent)
        self.doc = doc
        self._rows: list[list[str]] = []
        self._names: list[str] = []
        self._status: list[str] = []      # '' | 'pass' | 'fail' | 'unsupported' | 'overridden'
        self._sort: list[list[Any]] = []
        self._row_of: dict[str, int] = {}
        self._bold: set[int] = set()

    # ---- Qt model API --------------------------------------------------------------
    def rowCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self._rows)

    def columnCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    # roles a view asks for every visible cell on every paint (each a Python call needing the
    # GIL, which a comparison in a worker holds most of the time): a dict lookup, then a list
    _DISPLAY = int(Qt.ItemDataRole.DisplayRole)
    _PAINT_ROLES: ClassVar[dict[int, int]] = {
        int(Qt.ItemDataRole.DecorationRole): 0, int(Qt.ItemDataRole.FontRole): 1,
        int(Qt.ItemDataRole.TextAlignmentRole): 2, int(Qt.ItemDataRole.ForegroundRole): 3,
        int(Qt.ItemDataRole.BackgroundRole): 4, int(Qt.ItemDataRole.CheckStateRole): 4,
        int(Qt.ItemDataRole.SizeHintRole): 4}
    _RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        r = index.row()
        if not 0 <= r < len(self._rows):        # an invalid index has row -1
            return None
        if role == self._DISPLAY:
            return self._rows[r][index.column()]
        k = self._PAINT_ROLES.get(role)
        if k is not None:
            if k == 4:
                return None
            c = index.column()
            if k == 2:
                return self._RIGHT if c in self.RIGHT_COLUMNS else None
            st = self._status[r]
            if k == 0:
                return theme.status_icon(st) if c == 0 and st else None
            if k == 3:
                return theme.colour(st) if st and st != "pass" else None
            if r in self._bold:
                f = QFont()
                f.setBold(True)
                return f
            return None
        if role == NAME_ROLE:
            return self._names[r]
        if role == STATUS_ROLE:
            return self._status[r]
        if role == SORT_ROLE:
            return self._sort[r][index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(r) or None
        return None

    RIGHT_COLUMNS: tuple[int, ...] = ()

    def tooltip(self, row: int) -> str:      # computed on demand (hover), not per refresh
        return ""

    def row_of(self, name: str) -> int | None:
        return self._row_of.get(name)

    def column_texts(self, c: int) -> tuple[list[str], list[str]]:
        """(every row's text in column ``c``, the texts of the bold rows): to size the column."""
        return [r[c] for r in self._rows], [self._rows[i][c] for i in self._bold if i < len(self._rows)]

    def name_at(self, row: int) -> str:
        return self._names[row]

    def _install(self, rows, names, status, sort, bold=()) -> None:
        self.beginResetModel()
        self._rows, self._names, self._status, self._sort = rows, names, status, sort
        self._row_of = {n: i for i, n in enumerate(names)}
        self._bold = set(bold)
        self.endResetModel()

    def _restatus(self, status, bold=()) -> None:
        """Update statuses without a reset (keeps selection and scroll position)."""
        self._status, self._bold = status, set(bold)
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.HEADERS) - 1))


def quick_status(doc: Document, name: str) -> str:
    """The status of one source layer: unsupported > fail > overridden > pass > fused > ''
    (fused: compared as part of another source layer's Keras layer, e.g. a Caffe BatchNorm
    whose Scale shares its BatchNormalization)."""
    m = doc.mapping(name)
    if m is not None and not m.supported:
        return "unsupported"
    r = doc.layer_result(name)
    if r is not None and r.status == "fail":
        return "fail"
    if m is not None and m.overridden:
        return "overridden"
    if r is not None and r.status == "pass":
        return "pass"
    if r is not None and r.status == "fused":
        return "fused"
    return ""


def source_status(doc: Document, name: str) -> tuple[str, str]:
    """(status, tooltip) of one source layer: unsupported > fail > overridden > pass."""
    m = doc.mapping(name)
    tips = []
    status = ""
    if m is not None and not m.supported:
        status = "unsupported"
        tips.append(f"Unsupported: {m.error or 'no conversion rule'}")
    r = doc.layer_result(name)
    if r is not None and r.status == "fail":
        if not status:
            status = "fail"
        tol = r.tolerance
        tol_txt = (f" > tolerance {fmt_num(tol.atol + tol.rtol * r.scale)}" if tol is not None
                   and np.isfinite(r.scale) else "")
        tips.append(f"Fails: max abs error {fmt_num(r.max_abs)}{tol_txt} "
                    f"(max rel {fmt_num(r.max_rel)}, worst channel {r.worst_channel})"
                    + (f" — {r.note}" if r.note else ""))
        fd = doc.first_divergent
        if fd is not None and fd.source == name:
            tips.append("First divergent layer")
    if m is not None and m.overridden:
        if not status:
            status = "overridden"
        ov = {r_.key: r_.value for r_ in m.rows if r_.overridden}
        tips.append("Overridden: " + ", ".join(f"{k} = {_fmt_val(v) if not isinstance(v, np.ndarray) else 'array'}"
                                               for k, v in ov.items()))
    if m is not None:
        for w in m.warnings:
            tips.append(f"Warning: {w}")
    if r is not None and r.status == "pass" and not status:
        status = "pass"
        tips.append(f"Matches: max abs error {fmt_num(r.max_abs)}")
    if r is not None and r.status == "fused" and not status:
        status = "fused"
    if r is not None and doc.stale:
        tips.append("(result is stale: the mapping changed since this comparison)")
    if m is not None and m.fused_into:
        tips.append(f"Fused: its Keras layer also computes '{m.fused_into}'")
    return status, "\n".join(tips)


class SourceLayerModel(_FlatModel):
    HEADERS = ("Layer", "Type", "Output shape", "Parameters", "Status")
    RIGHT_COLUMNS = (3,)

    def refresh(self) -> None:
        doc = self.doc
        rows, names, status, sort = [], [], [], []
        stale = doc.stale
        if doc.graph is not None:
            for i, n in enumerate(doc.graph.nodes):
                st = quick_status(doc, n.name)
                cnt = n.param_count()
                rows.append([n.name, n.source_type, fmt_shape(n.out_shape), fmt_count(cnt),
                             self._status_text(doc, n.name, st, stale)])
                names.append(n.name)
                status.append(st)
                sort.append([i, n.source_type, str(n.out_shape), cnt, st])
        self._install(rows, names, status, sort, self._bold_rows(names))

    def tooltip(self, row: int) -> str:
        return source_status(self.doc, self._names[row])[1]

    def statuses(self) -> dict[str, str]:
        return dict(zip(self._names, self._status))

    def refresh_status(self) -> None:
        doc = self.doc
        if doc.graph is None or len(self._names) != len(doc.graph.nodes):
            self.refresh()
            return
        status = []
        stale = doc.stale
        for i, name in enumerate(self._names):
            st = quick_status(doc, name)
            status.append(st)
            self._rows[i][4] = self._status_text(doc, name, st, stale)
            self._sort[i][4] = st
        self._restatus(status, self._bold_rows(self._names))

    def _bold_rows(self, names):
        fd = self.doc.first_divergent
        if fd is None:
            return ()
        i = self._row_of.get(fd.source) if len(self._row_of) == len(names) else None
        if i is None:
            i = names.index(fd.source) if fd.source in names else None
        return () if i is None else (i,)

    @staticmethod
    def _status_text(doc, name, st, stale) -> str:
        r = doc.layer_result(name)
        base = {"unsupported": "unsupported", "overridden": "overridden"}.get(st, "")
        if r is not None:
            res = {"pass": "pass", "fail": "FAIL", "fused": "fused",
                   "not-compared": "not compared"}.get(r.status, r.status)
            if stale and r.status in ("pass", "fail"):
                res += " (stale)"
            base = f"{base}, {res}" if base else res
        return base


class KerasLayerModel(_FlatModel):
    HEADERS = ("Keras layer", "Class", "Output shape", "Parameters")
    RIGHT_COLUMNS = (3,)
    _ORDER: ClassVar[dict[str, int]] = {"unsupported": 5, "fail": 4, "overridden": 3, "pass": 2, "fused": 1,
                                        "": 0}

    def refresh(self) -> None:
        doc = self.doc
        rows, names, status, sort = [], [], [], []
        for i, info in enumerate(doc.keras_layer_info()):
            srcs = info["sources"] or [info["source"]]
            rows.append([info["name"], info["class_name"], fmt_shape(info["shape"]),
                         fmt_count(info["param_count"])])
            names.append(info["name"])
            status.append(self._status_of(srcs))
            sort.append([i, info["class_name"], str(info["shape"]), info["param_count"]])
        self._install(rows, names, status, sort)

    def _status_of(self, sources, known: dict[str, str] | None = None) -> str:
        best = ""
        for s in sources:
            st = known[s] if known is not None and s in known else quick_status(self.doc, s)
            if self._ORDER.get(st, 0) > self._ORDER.get(best, 0):
                best = st
        return best

    def tooltip(self, row: int) -> str:
        srcs = self.doc.sources_for_keras(self._names[row])
        tips = [t for t in (source_status(self.doc, s)[1] for s in srcs) if t]
        return f"Computes source layer(s): {', '.join(srcs)}" + ("\n" + "\n".join(tips) if tips else "")

    def refresh_status(self, known: dict[str, str] | None = None) -> None:
        """``known``: source statuses already computed (SourceLayerModel.statuses())."""
        if self.doc.plan is None:
            self.refresh()
            return
        status = [self._status_of(self.doc.sources_for_keras(n), known) for n in self._names]
        self._restatus(status)
