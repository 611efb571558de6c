"""A filterable layer list (QTreeView over a flat model) with name-based selection."""
from __future__ import annotations

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyle,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..models.layers import NAME_ROLE, SORT_ROLE


def fit_column(view: QAbstractItemView, col: int, texts, *, bold_texts=(), icon: bool = False,
               minimum: int = 40, maximum: int | None = None) -> int:
    """Set ``col``'s width to its longest text (and its header), within [minimum, maximum].

    Measures the strings with QFontMetrics instead of ``resizeColumnToContents``, which asks
    the delegate for a size hint of every row (slow for 1,000-layer models).  ``bold_texts``
    are measured in bold (the first divergent row); ``icon``: the column shows a status icon.
    """
    fm = view.fontMetrics()
    w = max((fm.horizontalAdvance(t) for t in set(texts) if t), default=0)
    if bold_texts:
        f = QFont(view.font())
        f.setBold(True)
        bfm = QFontMetrics(f)
        w = max([w] + [bfm.horizontalAdvance(t) for t in bold_texts if t])
    style = view.style()
    w += 2 * (style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1) + 2
    if icon:
        ic = view.iconSize()
        iw = ic.width() if ic.isValid() and ic.width() > 0 else \
            style.pixelMetric(QStyle.PixelMetric.PM_SmallIconSize, None, view)
        w += iw + 6
    head = view.model().headerData(col, Qt.Orientation.Horizontal) if view.model() is not None else None
    if head:      # the header's text, and room for the sort arrow where the view sorts
        arrow = 16 if getattr(view, "isSortingEnabled", lambda: False)() else 0
        w = max(w, view.header().fontMetrics().horizontalAdvance(str(head))
                + 2 * style.pixelMetric(QStyle.PixelMetric.PM_HeaderMargin, None, view) + 4 + arrow)
    w = max(w, minimum)
    if maximum is not None:
        w = min(w, maximum)
    view.setColumnWidth(col, w)
    return w


def table_view(model) -> QTreeView:
    """A flat, sortable QTreeView of ``model`` (uniform alternating rows, source order until a
    header is clicked)."""
    view = QTreeView()
    view.setModel(model)
    view.setRootIsDecorated(False)
    view.setUniformRowHeights(True)
    view.setAlternatingRowColors(True)
    view.setSortingEnabled(True)
    view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
    return view


class LayerFilterProxy(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(-1)
        self.setSortRole(SORT_ROLE)

    def lessThan(self, a, b):
        va, vb = a.data(SORT_ROLE), b.data(SORT_ROLE)
        try:
            return va < vb
        except TypeError:
            return str(va) < str(vb)


class LayerTree(QWidget):
    """Title + filter box + tree.  Emits ``selected(list[str])`` when the user selects."""

    selected = Signal(list)
    activated = Signal(str)

    def __init__(self, title: str, model, placeholder: str, parent=None):
        super().__init__(parent)
        self.model = model
        self.proxy = LayerFilterProxy(self)
        self.proxy.setSourceModel(model)
        self.title = QLabel(f"<b>{title}</b>")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(placeholder)
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._set_filter)
        self.view = table_view(self.proxy)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hdr = self.view.header()
        hdr.setStretchLastSection(True)
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hdr.setSortIndicatorShown(True)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        self.view.activated.connect(lambda ix: self.activated.emit(ix.data(NAME_ROLE)))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        self.note = QLabel("")     # e.g. the Keras layout of the model's inputs and outputs
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        lay.addWidget(self.title)
        lay.addWidget(self.note)
        lay.addWidget(self.filter)
        lay.addWidget(self.view)
        self._muted = False

    def set_note(self, lines: list[str]) -> None:
        """Short lines shown under the title (hidden when there are none)."""
        self.note.setText("\n".join(lines))
        self.note.setVisible(bool(lines))

    def _set_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)

    def set_column_widths(self, widths: dict[int, int]) -> None:
        for c, w in widths.items():
            self.view.setColumnWidth(c, w)

    def fit_columns(self, columns=None, limits: dict[int, tuple[int, int | None]] | None = None) -> None:
        """Size ``columns`` (default: all but the last, which stretches) to their contents.
        ``limits``: column -> (minimum, maximum) width."""
        n = self.model.columnCount()
        if columns is None:
            columns = range(n - 1)
        limits = limits or {}
        for c in columns:
            lo, hi = limits.get(c, (40, 260))
            texts, bold = self.model.column_texts(c)
            fit_column(self.view, c, texts, bold_texts=bold, icon=c == 0, minimum=lo, maximum=hi)

    def _on_selection(self, *_):
        if self._muted:
            return
        self.selected.emit(self.selected_names())

    def selected_names(self) -> list[str]:
        rows = self.view.selectionModel().selectedRows(0)
        rows.sort(key=lambda ix: self.proxy.mapToSource(ix).row())
        return [ix.data(NAME_ROLE) for ix in rows]

    def current_name(self) -> str | None:
        ix = self.view.currentIndex()
        if ix.isValid():
            return ix.data(NAME_ROLE)
        names = self.selected_names()
        return names[0] if names else None

    def select_names(self, names: list[str], *, emit: bool = False, scroll: bool = True) -> None:
        """Select the rows of ``names`` (clearing the filter if it hides one) and scroll to
        the first.  ``emit=False`` does not re-emit ``selected`` (counterpart sync)."""
        rows = [self.model.row_of(n) for n in names]
        rows = [r for r in rows if r is not None]
        sel = QItemSelection()
        pix = []
        for r in rows:
            ix = self.proxy.mapFromSource(self.model.index(r, 0))
            if not ix.isValid() and self.filter.text():
                self.filter.clear()
                ix = self.proxy.mapFromSource(self.model.index(r, 0))
            if ix.isValid():
                pix.append(ix)
        last = self.proxy.columnCount() - 1
        for ix in pix:
            sel.select(ix, ix.sibling(ix.row(), last))
        self._muted = not emit
        try:
            sm = self.view.selectionModel()
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
            sm.select(sel, flags)
            if pix:
                sm.setCurrentIndex(pix[0], QItemSelectionModel.SelectionFlag.NoUpdate)
                if scroll:
                    self.view.scrollTo(pix[0], QAbstractItemView.ScrollHint.PositionAtCenter)
        finally:
            self._muted = False
        if emit:
            self.selected.emit(self.selected_names())
