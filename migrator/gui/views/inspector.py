"""The mapping inspector: how one source layer (or fused group) becomes Keras parameters.

One row per Keras-side parameter (``ParamRow``): formula, source values (scalars, or
per-channel min/mean/max; children list every source value), resulting Keras value.
Rows backed by a rule option are editable (combo box for choices/booleans, text for
numbers); an edit is *requested* through ``edit_requested(source, key, value)`` -- the
main window turns it into an undoable command -- and invalid values are rejected inline.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ...core.document import Document
from ...core.errors import MigratorError
from .. import theme
from ..models.layers import fmt_num
from .plots import Histogram

ROW_ROLE = Qt.ItemDataRole.UserRole + 10      # (source, key) of a ParamRow item
ARRAY_ROLE = Qt.ItemDataRole.UserRole + 11    # (title, ndarray) for the histogram
EDIT_ROLE = Qt.ItemDataRole.UserRole + 12     # editing info dict
FORMULA_ROLE = Qt.ItemDataRole.UserRole + 13  # the formula shown for the current value

# batch-norm parameters first, in this order
BN_ORDER = ("axis", "epsilon", "momentum", "center", "scale", "gamma", "beta", "moving_mean",
            "moving_variance", "fuse_scale", "variance", "training_update", "update_drift")


#: the fine-tuning rows (source vs Keras training update, drift): value and notes under the table
TRAINING_KEYS = ("training_update", "update_drift")


def summarize(v: Any) -> str:
    if isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and v and
                                     all(isinstance(x, (int, float)) for x in v) and len(v) > 4):
        a = np.asarray(v)
        if a.size == 1:
            return fmt_num(a.reshape(-1)[0])
        if a.dtype.kind in "fiu" and a.size:
            af = a.astype(np.float64)
            return (f"min {fmt_num(np.nanmin(af))}  mean {fmt_num(np.nanmean(af))}  "
                    f"max {fmt_num(np.nanmax(af))}   {tuple(a.shape)}")
        return f"array {tuple(a.shape)}"
    if isinstance(v, (float, np.floating)):
        return fmt_num(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if v is None:
        return "—"
    return str(v)


def parse_value(text: str, opt) -> Any:
    """Parse what the user typed for an option; raises MigratorError with the reason."""
    t = opt.type if opt is not None else str
    s = text.strip()
    if t is bool:
        low = s.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise MigratorError(f"expected true or false, got {text!r}")
    if t is float:
        try:
            return float(s)
        except ValueError:
            raise MigratorError(f"expected a number, got {text!r}") from None
    if t is int:
        try:
            return int(s)
        except ValueError:
            raise MigratorError(f"expected an integer, got {text!r}") from None
    if isinstance(t, tuple):
        for tt in t:
            try:
                return parse_value(text, type("O", (), {"type": tt})())
            except MigratorError:
                pass
        raise MigratorError(f"cannot read {text!r}")
    if opt is not None and opt.default is None and s.lower() in ("", "none", "auto", "default"):
        return None
    return s


def formula_for_value(formula: str, choices, value) -> str:
    """A choice option's formula describes every choice ("exact: …; raw: …"): the part
    for the current value (the row showed "exact: …" while the value was raw)."""
    if not choices or not isinstance(value, str):
        return formula
    parts = [p.strip() for p in formula.split("; ")]
    for p in parts:
        if p.startswith(f"{value}:"):
            return p
    return formula


class _Delegate(QStyledItemDelegate):
    def __init__(self, inspector: Inspector):
        super().__init__(inspector)
        self.inspector = inspector

    def createEditor(self, parent, option, index):
        info = index.data(EDIT_ROLE)
        if not info:
            return None
        opt = info["option"]
        if opt is not None and (opt.type is bool or opt.choices):
            cb = QComboBox(parent)
            items = ["true", "false"] if opt.type is bool else [str(c) for c in opt.choices]
            cb.addItems(items)
            return cb
        le = QLineEdit(parent)
        return le

    def setEditorData(self, editor, index):
        info = index.data(EDIT_ROLE)
        cur = summarize(info["value"])
        if isinstance(editor, QComboBox):
            i = editor.findText(cur)
            editor.setCurrentIndex(max(0, i))
            editor.activated.connect(lambda *_: self.commitData.emit(editor))
            editor.showPopup() if self.inspector.popup_combos else None
        else:
            v = info["value"]
            editor.setText(repr(float(v)) if isinstance(v, (float, np.floating)) else cur)
            editor.selectAll()

    def setModelData(self, editor, model, index):
        # never write into the model: ask for an undoable command instead
        info = index.data(EDIT_ROLE)
        text = editor.currentText() if isinstance(editor, QComboBox) else editor.text()
        self.inspector.request_edit(info["source"], info["key"], text)


class Inspector(QWidget):
    edit_requested = Signal(str, str, object)          # source, key, value (validated)
    reset_requested = Signal(str, str)                 # source, key
    apply_all_requested = Signal(str, object)          # key, value

    popup_combos = False

    def __init__(self, doc: Document, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.source: str | None = None
        self.header = QLabel("Select a layer to see how it is mapped.")
        self.header.setWordWrap(True)
        self.header.setMinimumWidth(10)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.model = QStandardItemModel(0, 4, self)
        self.model.setHorizontalHeaderLabels(["Keras parameter", "Formula", "Source values",
                                              "Keras value"])
        self.view = QTreeView()
        self.view.setModel(self.model)
        self.view.setItemDelegateForColumn(3, _Delegate(self))
        self.view.setAlternatingRowColors(True)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed
                                  | QAbstractItemView.EditTrigger.SelectedClicked)
        # no word wrap: rows keep one line's height, so wrapped text showed only its first
        # line ("eps (Caffe ...").  Elided text keeps a tooltip with the full text.
        self.view.setWordWrap(False)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        hdr = self.view.header()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # the formula takes the width left by the other columns (its whole text is shown
        # under the table); the Keras value always stays in view
        hdr.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        hdr.setStretchLastSection(False)
        hdr.setMinimumSectionSize(60)
        self.view.setColumnWidth(0, 130)
        self.view.setColumnWidth(1, 190)
        self.view.setColumnWidth(2, 190)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        # the current row's whole formula, word-wrapped: a formula column wide enough for
        # every formula would leave no room for the values
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setMinimumWidth(10)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.message.hide()
        self.reset_btn = QPushButton("Reset to default")
        self.reset_btn.setToolTip("Remove the override of the selected parameter on this layer")
        self.reset_btn.clicked.connect(self._reset_clicked)
        self.all_btn = QPushButton("Apply to every batch-norm layer")
        self.all_btn.setToolTip("Use the selected parameter's value on every batch-norm layer "
                                "(a per-kind override in the mapping file)")
        self.all_btn.clicked.connect(self._all_clicked)
        self.edit_btn = QPushButton("Edit…")
        self.edit_btn.clicked.connect(self._edit_clicked)
        btns = QHBoxLayout()
        btns.addWidget(self.edit_btn)
        btns.addWidget(self.reset_btn)
        btns.addWidget(self.all_btn)
        btns.addStretch(1)
        self.hist = Histogram()
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.header)
        tl.addWidget(self.view, 1)
        tl.addWidget(self.detail)
        tl.addWidget(self.message)
        tl.addLayout(btns)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.hist)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 100])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(split)
        self._update_buttons()

    # ---- content ------------------------------------------------------------------------
    def show_layer(self, source: str | None) -> None:
        self.source = source
        self.refresh()

    def refresh(self) -> None:
        doc = self.doc
        cur = self.view.currentIndex()
        cur_key = cur.sibling(cur.row(), 0).data(ROW_ROLE) if cur.isValid() else None
        self.model.removeRows(0, self.model.rowCount())
        if not doc.is_open or self.source is None or doc.mapping(self.source) is None:
            self.header.setText("Select a layer to see how it is mapped.")
            self.hist.set_values("", None)
            self._update_buttons()
            return
        group = doc.group_of(self.source)
        mappings = [doc.mapping(s) for s in group]
        mappings = [m for m in mappings if m is not None]
        host = next((m for m in mappings if m.layers), mappings[0])
        keras = [f"{s.class_name} <b>{s.name}</b>" for m in mappings for s in m.layers]
        parts = [f"<b>{m.source}</b> ({m.source_type})" for m in mappings]
        txt = " + ".join(parts) + " → " + (", ".join(keras) if keras else "<i>no Keras layer</i>")
        txt += f"<br><span style='color:{theme.colour('muted').name()}'>rule {host.rule}"
        notes = [n for m in mappings for n in m.notes]
        if notes:
            txt += " · " + " · ".join(notes)
        txt += "</span>"
        for m in mappings:
            if not m.supported:
                txt += f"<br><span style='color:{theme.colour('unsupported').name()}'>Unsupported: " \
                       f"{m.error}</span>"
        warns = [w for m in mappings for w in m.warnings]
        for w in warns:
            txt += f"<br><span style='color:{theme.colour('warning').name()}'>⚠ {w}</span>"
        r = doc.layer_result(self.source)
        if r is not None and r.status in ("pass", "fail"):
            col = theme.colour(r.status).name()
            txt += (f"<br><span style='color:{col}'>Comparison: {r.status.upper()}, max abs error "
                    f"{fmt_num(r.max_abs)}{' (stale)' if doc.stale else ''}</span>")
        self.header.setText(txt)

        # one row per Keras parameter: the host mapping (the one owning the Keras layers)
        # first, then rows only the fused partners have
        rows, seen = [], set()
        for m in [host] + [m for m in mappings if m is not host]:
            for pr in m.rows:
                if pr.key in seen:
                    continue
                seen.add(pr.key)
                rows.append((m.source, pr))
        order = {k: i for i, k in enumerate(BN_ORDER)}
        rows.sort(key=lambda t: order.get(t[1].key, len(order)))
        keep = None
        first_array = None
        for src, pr in rows:
            items = self._row_items(src, pr, multi=src != host.source)
            if first_array is None and items[0].data(ARRAY_ROLE) is not None:
                first_array = items[0]
            self.model.appendRow(items)
            if cur_key == (src, pr.key):
                keep = items[0].index()
        self._fit_columns()
        if keep is None and first_array is not None:
            keep = first_array.index()
        if keep is not None:
            self.view.setCurrentIndex(keep)
        self._on_current(self.view.currentIndex(), None)

    _FIT: ClassVar[dict[int, tuple[int, int]]] = {0: (90, 150), 2: (80, 170), 3: (80, 200)}

    def _fit_columns(self) -> None:
        """Parameter, source-value and Keras-value columns sized to their text (a dozen
        rows: resizeColumnToContents is cheap here), within limits; when the inspector is
        narrow the source values give up width first, so that the Keras value stays in view
        and the formula (whole text under the table) keeps at least a readable start."""
        nat = {}
        for c, (lo, hi) in self._FIT.items():
            self.view.resizeColumnToContents(c)
            nat[c] = max(lo, min(hi, self.view.columnWidth(c)))
        self._natural = nat
        self._distribute()

    def _distribute(self) -> None:
        nat = getattr(self, "_natural", None)
        if not nat:
            return
        avail = self.view.viewport().width()
        formula_min = 130
        spare = avail - nat[0] - nat[3] - formula_min
        # a narrow inspector (1024-px screens) drops the source-value column (its values
        # are in the tooltips and the child rows) before squeezing the formula
        narrow = spare < self._FIT[2][0]
        self.view.setColumnHidden(2, narrow)
        self.view.setColumnWidth(0, nat[0])
        if not narrow:
            self.view.setColumnWidth(2, min(nat[2], spare))
        self.view.setColumnWidth(3, nat[3])

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._distribute()

    def _row_items(self, src: str, pr, multi: bool) -> list[QStandardItem]:
        name = QStandardItem(pr.key + (f"  [{src}]" if multi else ""))
        name.setData((src, pr.key), ROW_ROLE)
        opt = self.doc.option_info(src, pr.option) if pr.option else None
        shown = formula_for_value(pr.formula, opt.choices if opt is not None else None, pr.value)
        formula = QStandardItem(shown)
        formula.setToolTip(f"{pr.key} = {pr.formula}")
        formula.setData(shown, FORMULA_ROLE)
        if len(pr.sources) == 1:
            (sk, sv), = pr.sources.items()
            srcs = QStandardItem(f"{sk}: {summarize(sv)}")
        else:
            srcs = QStandardItem(f"{len(pr.sources)} values" if pr.sources else "")
        val = QStandardItem(summarize(pr.value))
        arr = pr.value if isinstance(pr.value, np.ndarray) and pr.value.size > 1 else None
        if arr is not None:
            val.setData((f"{pr.key} (Keras)", arr), ARRAY_ROLE)
            name.setData((f"{pr.key} (Keras)", arr), ARRAY_ROLE)
        tip = [f"{pr.key} = {pr.formula}"]
        if pr.option:
            info = {"source": src, "key": pr.option, "value": pr.value, "option": opt}
            val.setData(info, EDIT_ROLE)
            val.setEditable(True)
            tip.append(f"Editable (override '{pr.option}', default {summarize(pr.default)}"
                       + (f"; {opt.help}" if opt is not None and opt.help else "") + ")")
            if pr.overridden:
                val.setIcon(theme.status_icon("overridden"))
                val.setForeground(theme.colour("overridden"))
                tip.append("Overridden by the mapping")
        else:
            val.setEditable(False)
        for it in (name, formula, srcs):
            it.setEditable(False)
        for c in pr.caveats:
            tip.append(f"Note: {c}")
        if pr.warnings:
            name.setIcon(theme.status_icon("warning"))
            for w in pr.warnings:
                tip.append(f"Warning: {w}")
        name.setToolTip("\n".join(tip))
        for it in (srcs, val):       # the cell's full text first: the column may elide it
            it.setToolTip("\n".join(([it.text()] if it.text() else []) + tip))
        # children: each source value, then warnings inline
        if len(pr.sources) > 1:
            for sk, sv in pr.sources.items():
                c0 = QStandardItem(f"  {sk}")
                c2 = QStandardItem(summarize(sv))
                c2.setToolTip(summarize(sv))
                if isinstance(sv, np.ndarray) and sv.size > 1:
                    c0.setData((sk, sv), ARRAY_ROLE)
                    c2.setData((sk, sv), ARRAY_ROLE)
                kids = [c0, QStandardItem(""), c2, QStandardItem("")]
                for k in kids:
                    k.setEditable(False)
                name.appendRow(kids)
        elif len(pr.sources) == 1:
            (sk, sv), = pr.sources.items()
            if isinstance(sv, np.ndarray) and sv.size > 1 and arr is None:
                name.setData((sk, sv), ARRAY_ROLE)
                srcs.setData((sk, sv), ARRAY_ROLE)
            elif isinstance(sv, np.ndarray) and sv.size > 1:
                srcs.setData((sk, sv), ARRAY_ROLE)
        for w in pr.warnings:
            w0 = QStandardItem("  warning")
            w0.setIcon(theme.status_icon("warning"))
            w1 = QStandardItem(w)
            w1.setToolTip(w)
            for k in (w0, w1):
                k.setForeground(theme.colour("warning"))
                k.setEditable(False)
            name.appendRow([w0, w1, QStandardItem(""), QStandardItem("")])
        return [name, formula, srcs, val]

    # ---- selection within the inspector ------------------------------------------------------
    def _on_current(self, current: QModelIndex, _previous=None) -> None:
        arr = current.data(ARRAY_ROLE) if current.isValid() else None
        if arr is None and current.isValid():
            arr = current.sibling(current.row(), 0).data(ARRAY_ROLE)
        if arr is None and current.isValid():
            for c in (3, 2):
                arr = current.sibling(current.row(), c).data(ARRAY_ROLE)
                if arr is not None:
                    break
        if arr is not None:
            self.hist.set_values(arr[0], arr[1])
        else:
            self.hist.set_values("", None)
        self._show_detail(current)
        self._update_buttons()

    def _show_detail(self, current: QModelIndex) -> None:
        if not current.isValid():
            self.detail.setText("")
            return
        top = current if not current.parent().isValid() else current.parent()
        key = top.sibling(top.row(), 0).data(ROW_ROLE)
        formula = top.sibling(top.row(), 1).data(FORMULA_ROLE)
        if not key or not formula:
            self.detail.setText("")
            return
        import html
        # a training update reads "source: ...  |  Keras: ...": one line each
        text = f"<b>{html.escape(key[1])}</b> = " + "<br>".join(
            html.escape(part) for part in formula.split("  |  "))
        if key[1] in TRAINING_KEYS:
            text = self._training_detail(key[0], key[1], formula)
        self.detail.setText(text)

    def _training_detail(self, source: str, key: str, formula: str) -> str:
        """Both fine-tuning rows at once: the source's update next to Keras's, the momentum
        (marked when overridden), the drift after N steps one line each, and the notes."""
        import html
        upd, drift = self._param_row(source, "training_update"), self._param_row(source, "update_drift")
        muted = theme.colour("muted").name()
        lines = []
        if upd is not None:
            parts = upd.formula.split("  |  ")
            lines += [f"<b>{html.escape(p.split(': ', 1)[0])} update</b>: "
                      f"{html.escape(p.split(': ', 1)[-1])}" for p in parts]
            mom = "momentum (overridden)" if self._momentum_overridden(source) else "momentum"
            lines.append(f"<b>{mom}</b>: {html.escape(str(upd.value).removeprefix('momentum '))}")
        if drift is not None:
            lines.append(f"<b>drift</b> ({html.escape(drift.formula)}):")
            lines += [f"&nbsp;&nbsp;{html.escape(p)}" for p in str(drift.value).split("; ")]
        for c in (upd.caveats if upd is not None else []):
            lines.append(f"<span style='color:{muted}'>{html.escape(c)}</span>")
        return "<br>".join(lines) if lines else f"<b>{html.escape(key)}</b> = {html.escape(formula)}"

    def _param_row(self, source: str, key: str):
        m = self.doc.mapping(source)
        return None if m is None else next((r for r in m.rows if r.key == key), None)

    def _momentum_overridden(self, source: str) -> bool:
        r = self._param_row(source, "momentum")
        return bool(r is not None and r.overridden)

    def current_edit_info(self) -> dict | None:
        cur = self.view.currentIndex()
        if not cur.isValid():
            return None
        top = cur if not cur.parent().isValid() else cur.parent()
        return self.model.itemFromIndex(top.sibling(top.row(), 3)).data(EDIT_ROLE) \
            if self.model.itemFromIndex(top.sibling(top.row(), 3)) is not None else None

    def _current_row(self):
        info = self.current_edit_info()
        if info is None:
            return None, None
        m = self.doc.mapping(info["source"])
        if m is None:
            return info, None
        for r in m.rows:
            if r.option == info["key"]:
                return info, r
        return info, None

    def _update_buttons(self) -> None:
        info, row = self._current_row()
        self.edit_btn.setEnabled(info is not None)
        self.reset_btn.setEnabled(bool(row is not None and row.overridden))
        is_bn = info is not None and self.doc.graph is not None and \
            info["source"] in self.doc.graph and self.doc.graph.node(info["source"]).op == "BatchNorm"
        self.all_btn.setEnabled(bool(is_bn))

    def select_key(self, key: str) -> bool:
        """Make the row of ``key`` current (tests, keyboard users)."""
        for i in range(self.model.rowCount()):
            it = self.model.item(i, 0)
            data = it.data(ROW_ROLE)
            ed = self.model.item(i, 3).data(EDIT_ROLE)
            if (data and data[1] == key) or (ed and ed["key"] == key):
                self.view.setCurrentIndex(it.index())
                self.view.scrollTo(it.index())
                return True
        return False

    def value_text(self, key: str) -> str | None:
        for i in range(self.model.rowCount()):
            data = self.model.item(i, 0).data(ROW_ROLE)
            if data and data[1] == key:
                return self.model.item(i, 3).text()
        return None

    # ---- edits ----------------------------------------------------------------------------
    def show_message(self, text: str, status: str = "fail") -> None:
        if not text:
            self.message.hide()
            self.message.setText("")
            return
        self.message.setText(f"<span style='color:{theme.colour(status).name()}'>{text}</span>")
        self.message.show()

    def request_edit(self, source: str, key: str, text: str) -> bool:
        """Parse and validate; emit ``edit_requested`` or show why the value is refused."""
        opt = self.doc.option_info(source, key)
        try:
            value = parse_value(text, opt)
            value = self.doc.validate_override(source, key, value)
        except MigratorError as e:
            self.show_message(f"Rejected: {e.message if hasattr(e, 'message') else e}")
            return False
        self.show_message("")
        self.edit_requested.emit(source, key, value)
        return True

    def _edit_clicked(self) -> None:
        cur = self.view.currentIndex()
        if not cur.isValid():
            return
        top = cur if not cur.parent().isValid() else cur.parent()
        self.view.edit(top.sibling(top.row(), 3))

    def _reset_clicked(self) -> None:
        info = self.current_edit_info()
        if info is not None:
            self.reset_requested.emit(info["source"], info["key"])

    def _all_clicked(self) -> None:
        info, row = self._current_row()
        if info is None:
            return
        m = self.doc.mapping(info["source"])
        if m is not None and info["key"] in m.options:
            value = m.options[info["key"]]
        else:
            value = row.value if row is not None else info["value"]
        if isinstance(value, np.generic):
            value = value.item()
        self.apply_all_requested.emit(info["key"], value)
