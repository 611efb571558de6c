"""The main window: two layer trees, the mapping inspector, the comparison and its plots.

The window lays out the views and wires their signals; the long user flows live in
:mod:`migrator.gui.flows` (open, compare, export, mapping edits), the actions and menus in
:mod:`migrator.gui.actions`.  Long calls run in workers (:mod:`migrator.gui.workers`);
edits of the mapping are undoable commands (:mod:`migrator.core.commands` wrapped by
:mod:`migrator.gui.undo`).
"""
from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from typing import ClassVar

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFrame,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.document import Document
from . import actions, theme, workers
from .flows.batch_flow import BatchFlow
from .flows.compare_flow import CompareFlow
from .flows.export_flow import ExportFlow, export_targets, format_of
from .flows.mapping_flow import MappingFlow
from .flows.open_flow import MODEL_EXTS, OpenDialog, OpenFlow
from .flows.repro_flow import ReproFlow
from .help import (
    about_dialog,
    about_html,
    library_versions,
    shortcuts_dialog,
    tf_devices,
    user_guide_dialog,
)
from .models import KerasLayerModel, ResultsModel, SourceLayerModel
from .models.layers import NAME_ROLE
from .settings import Settings
from .views.compare_panel import ComparePanel
from .views.export_banner import ExportBanner
from .views.inspector import Inspector
from .views.log_panel import LogPanel
from .views.plots import ChannelErrorPlot, ChannelValuesView, OverviewPlot
from .views.trees import LayerFilterProxy, LayerTree, fit_column, table_view
from .workers import threaded_executor

log = logging.getLogger("migrator.gui")

__all__ = ["MODEL_EXTS", "MainWindow", "OpenDialog", "about_html", "library_versions", "tf_devices"]


def _open_with_desktop(path: str) -> None:
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices
    QDesktopServices.openUrl(QUrl.fromLocalFile(path))


# --------------------------------------------------------------------------------------
class MainWindow(QMainWindow):
    opened = Signal()                  # a model finished loading (or failed: see last_error)
    load_failed = Signal(str)
    comparison_done = Signal()         # finished, failed or cancelled
    exported = Signal(list)
    repro_written = Signal(str)        # the folder of a written repro bundle
    repro_failed = Signal(str)         # why a repro bundle was not written (one line)
    channel_values_ready = Signal()

    def __init__(self, settings: Settings | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings or Settings()
        self.doc = Document()
        self.doc.executor = threaded_executor(self)
        self.undo_stack = QUndoStack(self)
        self.jobs: dict[str, object] = {}
        self.last_error: str | None = None
        self.last_export: list[str] = []
        self.last_repro: str | None = None
        self._selecting = False
        self._result_seq = 0                 # see _on_result
        self._result_installing = False
        self._result_waiters: list = []
        # why the result on screen no longer describes the current input (None: it does)
        self.results_outdated: str | None = None
        # opens a folder or a file with the desktop's application (tests replace it)
        self.open_url: Callable[[str], None] = _open_with_desktop
        # cyclic garbage is collected on this thread between worker jobs (workers.py says why)
        workers.acquire_collector()
        self._holds_collector = True
        self.opening = OpenFlow(self)
        self.comparing = CompareFlow(self)
        self.exporting = ExportFlow(self)
        self.repro = ReproFlow(self)
        self.mapping = MappingFlow(self)
        self.batch = BatchFlow(self)
        self.ask: Callable[[str, str], bool] = self._ask_dialog
        # unsaved overrides before the model is replaced or the app quits: 'save' | 'discard' | 'cancel'
        self.ask_unsaved: Callable[[str], str] = self._ask_unsaved_dialog
        # a line of text (the input size of a model that leaves it open); None = cancelled
        self.ask_text: Callable[[str, str, str], str | None] = self._ask_text_dialog
        self.setWindowTitle("Migrator")
        self.setWindowIcon(theme.app_icon())
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_widgets()
        actions.build_actions(self)
        actions.build_menus(self)
        self._shortcuts = actions.install_window_shortcuts(self)
        self._build_status()
        self.doc.subscribe("opened", lambda d, **k: self._on_opened())
        self.doc.subscribe("plan", lambda d, **k: self._on_plan())
        self.doc.subscribe("result", lambda d, **k: self._on_result())
        self.doc.subscribe("stale", lambda d, **k: self._on_stale())
        self.doc.subscribe("overrides", lambda d, **k: self._update_title())
        self.doc.subscribe("model", lambda d, **k: self.keras_model.refresh())
        self.doc.subscribe("error", lambda d, message="", **k: self._on_plan_error(message))
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.resize(1500, 950)
        self._restore_layout()
        self.compare.load_settings(self.settings)
        self.channel_plot.set_log(bool(self.settings.get("plots/log_scale")))
        self._update_actions()
        self._update_title()
        # TensorFlow is imported only after the window has painted once: imported in a worker
        # right away, it held the interpreter while the window waited to show (up to 13 s)
        self._after_paint: list[Callable[[], None]] = []
        self.first_paint_s: float | None = None
        self.after_first_paint(self.comparing.detect_device)

    # ---- construction ------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.source_model = SourceLayerModel(self.doc, self)
        self.keras_model = KerasLayerModel(self.doc, self)
        self.source_tree = LayerTree("Source layers", self.source_model, "Filter source layers (Ctrl+F)")
        self.keras_tree = LayerTree("Keras layers", self.keras_model, "Filter Keras layers")
        self.source_tree.set_column_widths({0: 120, 1: 100, 2: 115, 3: 80})
        self.keras_tree.set_column_widths({0: 120, 1: 140, 2: 105})
        self.source_tree.selected.connect(self._on_source_selected)
        self.keras_tree.selected.connect(self._on_keras_selected)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.source_tree)
        split.addWidget(self.keras_tree)
        split.setSizes([560, 480])
        self.trees_split = split
        # a lasting note of what the last export wrote, above the trees
        self.export_banner = ExportBanner()
        self.export_banner.open_requested.connect(lambda p: self.open_url(p))
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(2)
        cl.addWidget(self.export_banner)
        cl.addWidget(split, 1)
        self.setCentralWidget(central)

        self.inspector = Inspector(self.doc)
        self.inspector.edit_requested.connect(self.set_override)
        self.inspector.reset_requested.connect(self.reset_override)
        self.inspector.apply_all_requested.connect(self.apply_to_all_batchnorm)
        self.inspector_dock = self._dock("Mapping inspector", "inspector", self.inspector,
                                         Qt.DockWidgetArea.RightDockWidgetArea)

        self.compare = ComparePanel()
        self.compare.run_requested.connect(self.run_comparison)
        self.compare.cancel_requested.connect(self.cancel_comparison)
        self.compare.input_changed.connect(self._on_input_changed)
        self.results_model = ResultsModel(self.doc, self)
        self.results_proxy = LayerFilterProxy(self)
        self.results_proxy.setSourceModel(self.results_model)
        self.results_view = table_view(self.results_proxy)
        self.results_view.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for c, w in {0: 36, 1: 120, 2: 185, 3: 72, 4: 72, 5: 80, 6: 72, 7: 64, 8: 100, 9: 120}.items():
            self.results_view.setColumnWidth(c, w)
        self.results_view.selectionModel().currentChanged.connect(self._on_result_row)
        # the columns that matter first: #, Status, then the layer name (a long name column
        # pushed Status off-screen)
        self.results_view.header().moveSection(2, 1)
        # the controls scroll when the dock is short (at 1024x700 they were drawn over the
        # tabs and the status bar); the results table keeps the rest of the width
        self.compare_scroll = QScrollArea()
        self.compare_scroll.setWidget(self.compare)
        self.compare_scroll.setWidgetResizable(True)
        self.compare_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.compare_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.compare_scroll.setMinimumWidth(230)
        self.results_view.setMinimumSize(220, 120)
        cmp_w = QSplitter(Qt.Orientation.Horizontal)
        cmp_w.addWidget(self.compare_scroll)
        cmp_w.addWidget(self.results_view)
        cmp_w.setChildrenCollapsible(False)
        cmp_w.setStretchFactor(1, 1)
        cmp_w.setSizes([330, 900])
        self.compare_dock = self._dock("Comparison", "comparison", cmp_w,
                                       Qt.DockWidgetArea.BottomDockWidgetArea)

        self.channel_plot = ChannelErrorPlot()
        self.channel_plot.channel_clicked.connect(self.show_channel)
        self.channel_plot.log_box.toggled.connect(lambda on: self.settings.set("plots/log_scale", on))
        self.overview_plot = OverviewPlot()
        self.overview_plot.layer_clicked.connect(lambda n: self.select_source(n))
        self.channel_view = ChannelValuesView()
        self.plot_tabs = QTabWidget()
        self.plot_tabs.addTab(self.channel_plot, "Per-channel error")
        self.plot_tabs.addTab(self.overview_plot, "Along the layers")
        self.plot_tabs.addTab(self.channel_view, "Channel values")
        self.plots_dock = self._dock("Error plots", "plots", self.plot_tabs,
                                     Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(self.compare_dock, self.plots_dock, Qt.Orientation.Horizontal)

        self.log_panel = LogPanel()
        self.log_panel.install()
        self.log_dock = self._dock("Log", "log", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.compare_dock, self.log_dock)
        self.compare_dock.raise_()
        self.cmp_split = cmp_w

    def default_layout(self) -> None:
        """Proportions for a first start (and screenshots): trees | inspector on top,
        comparison | plots below."""
        w = max(self.width(), 1000)
        self.resizeDocks([self.inspector_dock], [int(w * (0.40 if w >= 1300 else 0.47))],
                         Qt.Orientation.Horizontal)
        # a short window keeps more height for the trees and the inspector's rows
        frac = 0.45 if self.height() >= 850 else 0.42
        self.resizeDocks([self.compare_dock], [int(self.height() * frac)], Qt.Orientation.Vertical)
        self.resizeDocks([self.compare_dock, self.plots_dock], [int(w * 0.53), int(w * 0.47)],
                         Qt.Orientation.Horizontal)
        # the trees share their width in proportion to what their columns need
        need = [sum(t.view.columnWidth(c) for c in range(t.model.columnCount())) or 1
                for t in (self.source_tree, self.keras_tree)]
        tw = int(w * 0.60)
        self.trees_split.setSizes([int(tw * need[0] / sum(need)), int(tw * need[1] / sum(need))])
        ctl = 270 if w >= 1300 else 250
        self.cmp_split.setSizes([ctl, int(w * 0.53) - ctl])

    # ---- start-up -------------------------------------------------------------------------------
    def after_first_paint(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the window has been painted (at once when it already has)."""
        if self.first_paint_s is not None:
            QTimer.singleShot(0, self, fn)
        else:
            self._after_paint.append(fn)

    def paintEvent(self, ev) -> None:
        super().paintEvent(ev)
        if self.first_paint_s is None:
            import time
            self.first_paint_s = time.monotonic()
            todo, self._after_paint = self._after_paint, []
            # a short delay: the first frame reaches the screen before heavy imports start
            for fn in todo:
                QTimer.singleShot(50, self, fn)   # dropped if the window is deleted first

    # ---- the flows' entry points (menus, tests, the app) -----------------------------------------
    def open_dialog(self) -> None:
        self.opening.open_dialog()

    def open_paths(self, paths: list[str], mapping_path: str | None = None, **opts) -> None:
        self.opening.open_paths(paths, mapping_path=mapping_path, **opts)

    def open_demo(self, which: str, mapping_path: str | None = None) -> None:
        self.opening.open_demo(which, mapping_path=mapping_path)

    def open_dropped(self, paths: list[str]) -> None:
        self.opening.open_dropped(paths)

    def _fill_recent(self) -> None:
        self.opening.fill_recent(self.recent_menu)

    def run_comparison(self) -> None:
        self.comparing.run_comparison()

    def cancel_comparison(self) -> None:
        self.comparing.cancel()

    def cancel_running(self) -> None:
        """The status bar's Cancel: the comparison and a folder conversion, whichever runs."""
        self.comparing.cancel()
        self.batch.cancel()

    def convert_folder_dialog(self) -> None:
        self.batch.convert_folder_dialog()

    def show_channel(self, channel: int) -> None:
        self.comparing.show_channel(channel)

    def channel_plot_layer(self) -> str | None:
        return self.comparing.channel_plot_layer()

    def export_dialog(self) -> None:
        self.exporting.export_dialog()

    def export_to(self, path: str, *, gate_confirmed: bool = False, force: bool = False,
                  fmt: str | None = None) -> None:
        self.exporting.export_to(path, gate_confirmed=gate_confirmed, force=force, fmt=fmt)

    format_of = staticmethod(format_of)
    export_targets = staticmethod(export_targets)

    def set_override(self, source: str, key: str, value) -> bool:
        return self.mapping.set_override(source, key, value)

    def reset_override(self, source: str, key: str) -> bool:
        return self.mapping.reset_override(source, key)

    def apply_to_all_batchnorm(self, key: str, value) -> bool:
        return self.mapping.apply_to_all_batchnorm(key, value)

    def load_mapping(self, path: str) -> None:
        self.mapping.load_mapping(path)

    def save_mapping(self, ask: bool = False, path: str | None = None) -> str | None:
        return self.mapping.save_mapping(ask=ask, path=path)

    def about(self) -> None:
        self._about = about_dialog(self)

    def user_guide(self) -> None:
        self._guide = user_guide_dialog(self)

    def show_shortcuts(self) -> None:
        self._shortcuts_dlg = shortcuts_dialog(self)

    # drag and drop
    def dragEnterEvent(self, ev) -> None:
        if self.opening.accepts_drop(ev.mimeData()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        ev.acceptProposedAction()
        self.open_dropped(paths)

    def _dock(self, title, name, widget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(f"dock_{name}")
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(180)
        self.busy.setRange(0, 1000)
        self.busy.hide()
        # the permanent widgets stay short (full text in their tooltips) so that the
        # messages on the left are not hidden under them
        self.status_model = QLabel("No model")
        self.status_result = QLabel("")
        self.status_device = QLabel("")
        sb.messageChanged.connect(lambda m: sb.setToolTip(m))
        sb.addPermanentWidget(self.busy)
        # a running comparison: its progress and Cancel always in view, whatever the docks show
        self.status_cancel = QToolButton()
        self.status_cancel.setText("Cancel")
        self.status_cancel.setToolTip("Cancel the comparison (Esc)")
        self.status_cancel.clicked.connect(self.cancel_running)
        self.status_cancel.hide()
        sb.addPermanentWidget(self.status_cancel)
        sb.addPermanentWidget(self.status_result)
        sb.addPermanentWidget(self.status_model)
        sb.addPermanentWidget(self.status_device)

    # ---- layout persistence ---------------------------------------------------------------------
    def _restore_layout(self) -> None:
        g, s = self.settings.get("window/geometry"), self.settings.get("window/state")
        restored = False
        if isinstance(g, (QByteArray, bytes)):
            self.restoreGeometry(QByteArray(g))
        if isinstance(s, (QByteArray, bytes)):
            restored = self.restoreState(QByteArray(s))
        if not restored:
            QTimer.singleShot(0, self.default_layout)

    def save_layout(self) -> None:
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.set("window/state", self.saveState())
        self.compare.save_settings(self.settings)
        self.settings.sync()

    def closeEvent(self, ev) -> None:
        if not self.confirm_replace("quitting"):
            ev.ignore()
            return
        for key in list(self.jobs):
            job = self.jobs.get(key)
            if job is not None and getattr(job, "running", False):
                job.cancel()
        self.save_layout()
        self.log_panel.uninstall()
        if self._holds_collector:
            self._holds_collector = False
            workers.release_collector()
        super().closeEvent(ev)

    # ---- dialogs (overridable in tests) -----------------------------------------------------------
    def has_unsaved_edits(self) -> bool:
        return bool(self.doc.is_open and self.doc.overrides_modified)

    def confirm_replace(self, what: str) -> bool:
        """Before ``what`` ("opening x", "quitting", ...) drops the overrides: Save /
        Discard / Cancel when they are unsaved.  True = go on."""
        if not self.has_unsaved_edits():
            return True
        answer = self.ask_unsaved(what)
        if answer == "save":
            return self.save_mapping() is not None
        return answer == "discard"

    def _ask_unsaved_dialog(self, what: str) -> str:
        text = (f"The mapping has unsaved overrides. Save them before {what}?\n\n"
                "Discard loses the overrides and their undo history.")
        if QApplication.platformName() == "offscreen" and os.environ.get("MIGRATOR_GUI_NO_DIALOGS"):
            return "discard" if self.ask("Unsaved mapping", text) else "cancel"
        B = QMessageBox.StandardButton
        r = QMessageBox.warning(self, "Unsaved mapping", text, B.Save | B.Discard | B.Cancel, B.Save)
        return {B.Save: "save", B.Discard: "discard"}.get(r, "cancel")

    def _ask_text_dialog(self, title: str, text: str, default: str = "") -> str | None:
        if QApplication.platformName() == "offscreen" and os.environ.get("MIGRATOR_GUI_NO_DIALOGS"):
            return None
        from PySide6.QtWidgets import QInputDialog
        value, ok = QInputDialog.getText(self, title, text, text=default)
        return value.strip() if ok and value.strip() else None

    def _ask_dialog(self, title: str, text: str) -> bool:
        r = QMessageBox.question(self, title, text,
                                 QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                 QMessageBox.StandardButton.No)
        return r == QMessageBox.StandardButton.Yes

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """A clear message (no traceback unless it is an internal error, then in details)."""
        self.last_error = message
        log.error("%s: %s", title, message)
        self.statusBar().showMessage(f"{title}: {message}", 10000)
        if QApplication.platformName() == "offscreen" and os.environ.get("MIGRATOR_GUI_NO_DIALOGS"):
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self._error_box = box

    def set_status_model(self, text: str) -> None:
        self.status_model.setToolTip(text)
        self.status_model.setText(self.status_model.fontMetrics().elidedText(
            text, Qt.TextElideMode.ElideMiddle, 240))

    def set_status_device(self, desc: str) -> None:
        self.status_device.setToolTip(f"Keras runs on {desc}")
        self.status_device.setText(f"Keras: {desc.split(' (')[0]}")

    def set_theme(self, key: str) -> None:
        self.settings.set("theme", key)
        theme.apply_theme(key)
        self.source_model.refresh_status()
        self.keras_model.refresh_status()
        self.results_model.restatus()          # its colours are cached per row
        self.inspector.refresh()
        if self.batch.view is not None:
            self.batch.view.refresh_status()
        # existing plots keep the colours they were made with unless told (the error plot
        # stayed dark after switching back to light, the histogram stayed white in dark)
        for p in (self.channel_plot, self.overview_plot, self.channel_view, self.inspector.hist):
            p.apply_theme()
        self._update_result_status()

    # ---- busy indicator ---------------------------------------------------------------------------
    def _busy(self, on: bool, text: str = "") -> None:
        self.busy.setVisible(on)
        self.busy.setValue(0)
        if text:
            self.statusBar().showMessage(text)

    def comparison_running(self, on: bool) -> None:
        """Show (or hide) the comparison's progress and Cancel in the status bar."""
        self.busy.setVisible(on)
        self.status_cancel.setVisible(on)
        self.busy.setValue(0)
        if on:
            self._compare_rate = ""
            self.status_result.setText("comparing…")
            self.status_result.setStyleSheet("")
            self.status_result.setToolTip("A comparison is running")
        else:
            self._update_result_status()

    def comparison_progress(self, f: float, msg: str) -> None:
        """The comparison's progress; on an input set with the rate and the time left (kept
        from the last message that had them)."""
        from ..core.compare.sets import split_rate
        msg, rate = split_rate(msg or "")
        if f <= 0.0:
            self._compare_rate = ""
        if rate:
            self._compare_rate = rate
        self.compare.set_progress(f, msg)
        self.busy.setValue(int(max(0.0, min(1.0, f)) * 1000))
        rate = getattr(self, "_compare_rate", "")
        self.status_result.setText(f"comparing… {int(f * 100)}%" + (f" — {rate}" if rate else ""))
        if msg:
            self.statusBar().showMessage(msg)

    def mark_results_outdated(self, reason: str | None) -> None:
        """The result on screen is from an earlier run (``reason`` says why), or current (None)."""
        if reason is not None and self.doc.result is None:
            reason = None
        self.results_outdated = reason
        self.results_model.outdated = reason is not None
        self.results_model.restatus()
        self._fit_results()                 # "pass (stale)" is wider than "pass"
        self._update_result_status()

    def _on_input_changed(self) -> None:
        if "compare" in self.jobs and self.jobs["compare"].running:
            self.comparing.input_changed_while_running = True
        elif self.doc.result is not None and self.results_outdated is None:
            self.mark_results_outdated("input changed — results below are from the previous run")

    def _busy_progress(self, f: float, msg: str) -> None:
        self.busy.setValue(int(f * 1000))
        if msg:
            self.statusBar().showMessage(msg)

    # ---- document events ------------------------------------------------------------------------
    # column limits (minimum, maximum) for sizing the name columns to their contents
    _SOURCE_FIT: ClassVar[dict] = {0: (90, 280), 1: (60, 170), 2: (80, 160), 3: (70, 110), 4: (50, 200)}
    _KERAS_FIT: ClassVar[dict] = {0: (100, 280), 1: (70, 190), 2: (80, 160), 3: (70, 110)}

    def _fit_trees(self) -> None:
        self.source_tree.fit_columns(self._SOURCE_FIT, self._SOURCE_FIT)
        self.keras_tree.fit_columns(self._KERAS_FIT, self._KERAS_FIT)

    def _fit_results(self) -> None:
        m, v = self.results_model, self.results_view
        for c in range(m.columnCount()):
            lo, hi = {1: (90, 260), 2: (70, 260), 8: (60, 200), 9: (90, 260)}.get(c, (30, 160))
            texts, bold = m.column_texts(c)
            fit_column(v, c, texts, bold_texts=bold, icon=c == 2, minimum=lo, maximum=hi)

    def _on_opened(self) -> None:
        # nothing of the previous model may remain: filters, plot readouts, progress,
        # channel-values ranges, image preprocessing; a result still being installed is dropped
        self._result_seq += 1
        self._result_installed()
        self.results_outdated = None
        self.results_model.outdated = False
        self.comparing.last_outcome = None
        for t in (self.source_tree, self.keras_tree):
            t.filter.clear()
        self.compare.reset_for_model(self.doc.graph)
        self.source_model.refresh()
        self.keras_model.refresh()
        self._show_keras_io()
        self.results_model.refresh()
        self._fit_trees()
        self._fit_results()
        self.inspector.show_layer(None)
        self.channel_plot.set_layer(None, None)
        self.overview_plot.set_result(None)
        self.channel_view.clear()
        g = self.doc.graph
        if g is not None:
            self._refresh_runtimes()
            self.set_status_model(f"{g.framework}: {g.name or os.path.basename(self.doc.paths[0])} "
                                  f"({len(g.nodes)} layers)")
        else:
            self.set_status_model("No model")
        self._on_stale()
        self._update_actions()
        self._update_title()

    def _refresh_runtimes(self) -> None:
        try:
            from ..core.reference.runtimes import available_runtimes
            cmd = self.compare.legacy_cmd.text().strip()
            rts = available_runtimes(self.doc.graph, {"legacy": {"command": cmd}} if cmd else None)
        except Exception as e:  # noqa: BLE001 - show builtin only
            log.warning("cannot list reference runtimes: %s", e)
            rts = [("builtin", True, "")]
        self.compare.set_runtimes(rts, self.settings.get("compare/runtime"))

    def _on_plan(self) -> None:
        sel = self.source_tree.selected_names()
        self.source_model.refresh_status()
        self.keras_model.refresh()
        self._show_keras_io()
        self.inspector.refresh()
        if sel:
            self._sync_keras_selection(sel)
        self._update_actions()
        if self.doc.result is None:
            self._update_result_status()        # the not-converted line follows the plan
        self.comparing.after_plan()

    def _show_keras_io(self) -> None:
        """The Keras layout of each input and output under the Keras tree's title."""
        plan = getattr(self.doc, "plan", None)
        if plan is None:
            self.keras_tree.set_note([])
            return
        from ..core.mapping.io_layouts import io_layout_lines
        self.keras_tree.set_note(io_layout_lines(plan))

    def _on_plan_error(self, message: str) -> None:
        self.inspector.show_message(f"Re-planning failed: {message}")
        self.show_error("Invalid mapping", message)

    def _on_result(self) -> None:
        """Install a new (or cleared) comparison result in short GUI-thread steps.

        Each step updates one part of the window and returns to the event loop, which paints
        it before the next step (a short timer, so input and other timers run in between): a
        1,000-layer result is a few stalls of a few tens of milliseconds, not one of a few
        hundred (``benchmarks/bench_gui.py``: target <= 100 ms).  A newer result (or a newly
        opened model) abandons the steps left of an older one; :meth:`when_result_installed`
        runs code after the last step."""
        self._result_seq += 1
        self._update_actions()
        self._result_installing = True
        seq = self._result_seq
        steps = [self._install_results_table, self._install_source_statuses,
                 self._install_keras_statuses, self._install_result_plots]
        QTimer.singleShot(self._STEP_MS, lambda: self._run_result_steps(seq, steps))

    # between two installation steps: long enough that Qt lays out and paints the previous
    # step first (a view lays out its rows in a 0 ms timer of its own, then paints)
    _STEP_MS = 10

    def _run_result_steps(self, seq: int, steps: list) -> None:
        if seq != self._result_seq:
            return                  # superseded: the newer installation runs the waiters
        if not steps:
            self._result_installed()
            return
        steps[0]()
        # a timer, not a posted call: the paint of this step and other timers come first
        QTimer.singleShot(self._STEP_MS, lambda: self._run_result_steps(seq, steps[1:]))

    def _result_installed(self) -> None:
        """The last step ran (or the installation was dropped): tell whoever waited."""
        self._result_installing = False
        waiters, self._result_waiters = self._result_waiters, []
        for fn in waiters:
            fn()

    def when_result_installed(self, fn) -> None:
        """Run ``fn`` once the result being installed is fully shown (now if none is)."""
        if self._result_installing:
            self._result_waiters.append(fn)
        else:
            fn()

    def _install_results_table(self) -> None:
        self.results_model.refresh()
        self._fit_results()
        self._update_result_status()

    def _install_source_statuses(self) -> None:
        self.source_model.refresh_status()
        self.source_tree.fit_columns([0, 4], self._SOURCE_FIT)   # the bold row, the statuses

    def _install_keras_statuses(self) -> None:
        self.keras_model.refresh_status(self.source_model.statuses())

    def _install_result_plots(self) -> None:
        self.overview_plot.set_result(self.doc.result)
        self.inspector.refresh()
        self._show_layer_plots(self.source_tree.current_name())

    def _on_stale(self) -> None:
        self.source_model.refresh_status()
        self.keras_model.refresh_status(self.source_model.statuses())
        self.results_model.restatus()
        self.source_tree.fit_columns([4], self._SOURCE_FIT)
        self._fit_results()
        self._update_result_status()
        self._update_actions()

    def _update_result_status(self) -> None:
        r = self.doc.result
        if "compare" in self.jobs and self.jobs["compare"].running:
            return              # "comparing… n%" until it ends
        if r is None:
            txt = self.comparing.last_outcome or "not compared"
            self.status_result.setText(txt)
            self.status_result.setToolTip(txt)
            self.status_result.setStyleSheet(
                f"color: {theme.colour('warning').name()}; font-weight: bold"
                if self.comparing.last_outcome else "")
            head = (f"<span style='color:{theme.colour('warning').name()}'><b>{html.escape(txt)}</b>"
                    f"</span><br>" if self.comparing.last_outcome else "")
            self.compare.summary.setText(head + self._not_covered_html())
            return
        fd = r.first_divergent
        n = len(r.compared)
        if self.results_outdated:
            txt, st = self.results_outdated, "stale"
        elif self.doc.stale:
            txt, st = "comparison stale (mapping changed)", "stale"
        elif r.cancelled and getattr(r, "coverage_note", None):
            txt, st = f"comparison cancelled — {r.coverage_note}", "warning"
        elif r.cancelled:
            txt, st = f"comparison cancelled — partial results ({n} layers compared)", "warning"
        elif r.passed:
            txt, st = f"PASS ({n} layers match)", "pass"
        else:
            txt, st = f"FAIL at '{fd.source}'" if fd else "FAIL", "fail"
        col = theme.colour(st).name()
        self.status_result.setText(txt)
        self.status_result.setToolTip(txt)
        self.status_result.setStyleSheet(f"color: {col}; font-weight: bold")
        dev = r.device
        rt = r.runtime.get("name") if isinstance(r.runtime, dict) else r.runtime
        extra = f"<br>first divergent layer: <b>{fd.source}</b>" if fd else ""
        rc = getattr(r, "root_cause", None)
        kind = getattr(r, "divergence", None)
        if rc is not None:
            extra += (f"<br>root cause: <b>{rc.source}</b> is wrong even on the reference's own "
                      f"inputs")
        elif kind == "accumulated":
            extra += ("<br>every failing layer matches on the reference's own inputs: "
                      "float32 rounding accumulated along the network")
        n_samples = getattr(r, "n_samples", 1) or 1
        if n_samples > 1:
            # an input set (image folder): the verdict is the worst over every sample
            extra += f"<br>over {n_samples} samples (worst per layer)"
            if fd is not None and getattr(fd, "sample_name", None):
                extra += f"; first divergent worst on <b>{html.escape(fd.sample_name)}</b>"
            mism = getattr(r, "top1_mismatches", None)
            if mism is not None:
                extra += f"<br>top-1 differs on {len(mism)} of {n_samples} samples"
        topk = ""
        if r.topk:
            topk = (f"<br>top-1 agreement {r.topk.get('top1_agreement', 0):.0%}, "
                    f"top-{r.topk.get('k', 5)} overlap {r.topk.get('topk_overlap', 0):.0%}")
        self.compare.summary.setText(f"<span style='color:{col}'><b>{txt}</b></span>{extra}<br>"
                                     f"reference: {rt}; Keras on {dev}<br>"
                                     f"smallest rtol passing every layer: {r.needed_rtol:.2g}{topk}")

    def _not_covered_html(self) -> str:
        """The layers Migrator does not convert, up front (as ``migrator inspect`` lists them)."""
        plan = self.doc.plan
        if plan is None or not plan.unsupported:
            return ""
        from ..core.coverage import not_covered
        rows = not_covered(plan)
        col = theme.colour("unsupported").name()
        items = "".join(f"<br>• <b>{html.escape(n)}</b> ({html.escape(t)}): {html.escape(why)}"
                        for n, t, why in rows[:6])
        more = f"<br>… and {len(rows) - 6} more" if len(rows) > 6 else ""
        return (f"<span style='color:{col}'><b>{len(rows)} layer(s) not converted</b></span>"
                f"{items}{more}<br>Comparison and export need every layer converted.")

    @Slot(bool)
    def _on_clean_changed(self, _clean: bool) -> None:
        self._update_title()

    def _update_title(self) -> None:
        name = ""
        if self.doc.is_open:
            name = self.doc.graph.name or os.path.basename(self.doc.paths[0])
            if self.doc.mapping_path:
                name += f" — {os.path.basename(self.doc.mapping_path)}"
            if self.doc.overrides_modified:
                name += " *"
        self.setWindowTitle(f"{name} — Migrator" if name else "Migrator")

    def _update_actions(self) -> None:
        open_ = self.doc.is_open
        running = "compare" in self.jobs and self.jobs["compare"].running
        for a in (self.act_load_map, self.act_save_map, self.act_save_map_as, self.act_next_bn):
            a.setEnabled(open_)
        self.act_run.setEnabled(open_ and not running)
        self.act_cancel.setEnabled(running)
        self.act_export.setEnabled(open_ and self.doc.plan is not None and not self.doc.plan.unsupported)
        if open_ and not self.doc.can_export_cleanly:
            self.act_export.setStatusTip("Export: " + (self.doc.export_problem() or "") +
                                         " — you will be asked to confirm")
        else:
            self.act_export.setStatusTip("Save the Keras model (.keras / .h5 / .weights.h5 / .tflite / "
                                         "SavedModel) and the report")
        self.compare.run_btn.setEnabled(open_ and not running)
        self.act_repro.setEnabled(not running and self.repro.available())

    # ---- selection sync ------------------------------------------------------------------------
    def select_source(self, name: str) -> None:
        self.source_tree.select_names([name], emit=True)

    def select_keras(self, name: str) -> None:
        self.keras_tree.select_names([name], emit=True)

    def _on_source_selected(self, names: list[str]) -> None:
        if self._selecting:
            return
        self._selecting = True
        try:
            self._sync_keras_selection(names)
        finally:
            self._selecting = False
        cur = names[0] if names else None
        if cur is not None and self.source_tree.current_name() in names:
            cur = self.source_tree.current_name()
        self.inspector.show_layer(cur)
        self._show_layer_plots(cur)

    def _sync_keras_selection(self, names: list[str]) -> None:
        ks: list[str] = []
        for n in names:
            for k in self.doc.keras_for_source(n):
                if k not in ks:
                    ks.append(k)
        self.keras_tree.select_names(ks)

    def _on_keras_selected(self, names: list[str]) -> None:
        if self._selecting:
            return
        srcs: list[str] = []
        for k in names:
            for s in self.doc.sources_for_keras(k):
                if s not in srcs:
                    srcs.append(s)
        self._selecting = True
        try:
            self.source_tree.select_names(srcs)
        finally:
            self._selecting = False
        cur = srcs[0] if srcs else None
        self.inspector.show_layer(cur)
        self._show_layer_plots(cur)

    def next_batchnorm(self) -> None:
        nxt = self.doc.next_batchnorm(self.source_tree.current_name())
        if nxt is None:
            self.statusBar().showMessage("This model has no batch-norm layer", 4000)
            return
        self.select_source(nxt)
        self.source_tree.view.setFocus()

    def _on_result_row(self, current, _prev=None) -> None:
        if current.isValid() and not self._selecting:
            name = current.data(NAME_ROLE)
            if name and name != self.source_tree.current_name():
                self.select_source(name)

    def _show_layer_plots(self, name: str | None) -> None:
        r = self.doc.layer_result(name) if name else None
        if r is not None and r.status not in ("pass", "fail") and self.doc.result is not None:
            # a fused node: show its host's (or partner's) comparison
            for s in self.doc.group_of(name):
                rr = self.doc.layer_result(s)
                if rr is not None and rr.status in ("pass", "fail"):
                    name, r = s, rr
                    break
        self.channel_plot.set_layer(name, r)
        self.overview_plot.mark_layer(name)
        row = self.results_model.row_of(name) if name else None
        if row is not None:
            ix = self.results_proxy.mapFromSource(self.results_model.index(row, 0))
            self._selecting = True
            try:
                self.results_view.setCurrentIndex(ix)
                self.results_view.scrollTo(ix)
            finally:
                self._selecting = False

