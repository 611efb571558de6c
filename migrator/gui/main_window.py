"""The main window: two layer trees, the mapping inspector, the comparison and its plots.

The window only shows the document and turns user actions into core calls: long calls
(open, plan, build, compare, channel values, export) run in workers
(:mod:`migrator.gui.workers`); edits of the mapping are undoable commands
(:mod:`migrator.core.commands` wrapped by :mod:`migrator.gui.undo`).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import ClassVar
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..core import document as docmod
from ..core.commands import ApplyToAllBatchNorm, ResetOverride, SetOverride
from ..core.document import Document
from ..core.errors import MigratorError
from . import theme
from .models import KerasLayerModel, ResultsModel, SourceLayerModel
from .models.layers import NAME_ROLE
from .settings import Settings
from .undo import push
from .views.compare_panel import ComparePanel
from .views.inspector import Inspector
from .views.log_panel import LogPanel
from .views.plots import ChannelErrorPlot, ChannelValuesView, OverviewPlot
from .views.trees import LayerTree, _Proxy, fit_column
from .workers import run_job, threaded_executor

log = logging.getLogger("migrator.gui")

_UNSET = object()
MODEL_EXTS = (".prototxt", ".pbtxt", ".caffemodel", ".py", ".pkl", ".pickle", ".npz")


# --------------------------------------------------------------------------------------
class OpenDialog(QDialog):
    """Pick the two files of a model: architecture (.prototxt / builder .py) and weights
    (.caffemodel / .pkl / .npz); Lasagne options."""

    def __init__(self, parent=None, start_dir: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.start_dir = start_dir
        self.arch = QLineEdit()
        self.arch.setPlaceholderText("deploy.prototxt  or  Lasagne builder script .py")
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("weights .caffemodel  or  Lasagne parameters .pkl / .npz")
        self.func = QLineEdit("build_model")
        self.func.setToolTip("Lasagne: the function of the builder script that returns the network")
        self.out_layer = QLineEdit()
        self.out_layer.setPlaceholderText("(optional) Lasagne output layer name")
        both = QPushButton("Choose both files…")
        both.clicked.connect(self._pick_both)
        f = QFormLayout()
        f.addRow("Architecture", self._row(self.arch, self._pick_arch))
        f.addRow("Weights", self._row(self.weights, self._pick_weights))
        f.addRow("", both)
        f.addRow("Builder function", self.func)
        f.addRow("Output layer", self.out_layer)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("A Caffe model is a .prototxt + .caffemodel pair; a Lasagne model is a "
                             "builder script (.py) + a parameter file (.pkl or .npz)."))
        lay.addLayout(f)
        lay.addWidget(self.buttons)
        self.resize(620, 230)

    def _row(self, edit, pick):
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(0, 0, 0, 0)
        b = QToolButton()
        b.setText("…")
        b.clicked.connect(pick)
        h.addWidget(edit, 1)
        h.addWidget(b)
        return w

    def _dir(self):
        for e in (self.arch, self.weights):
            if e.text():
                return os.path.dirname(e.text())
        return self.start_dir

    def _pick_arch(self):
        p, _ = QFileDialog.getOpenFileName(self, "Architecture", self._dir(),
                                           "Model definition (*.prototxt *.pbtxt *.py);;All files (*)")
        if p:
            self.arch.setText(p)
            self._guess_partner(p)

    def _pick_weights(self):
        p, _ = QFileDialog.getOpenFileName(self, "Weights", self._dir(),
                                           "Weights (*.caffemodel *.pkl *.pickle *.npz);;All files (*)")
        if p:
            self.weights.setText(p)

    def _pick_both(self):
        ps, _ = QFileDialog.getOpenFileNames(self, "Choose the model files", self._dir(),
                                             "Model files (*.prototxt *.pbtxt *.caffemodel *.py *.pkl "
                                             "*.pickle *.npz)")
        for p in ps:
            if p.lower().endswith((".prototxt", ".pbtxt", ".py")):
                self.arch.setText(p)
            else:
                self.weights.setText(p)

    def _guess_partner(self, arch: str):
        if self.weights.text():
            return
        d = Path(arch).parent
        exts = (".caffemodel",) if arch.lower().endswith((".prototxt", ".pbtxt")) else (".npz", ".pkl")
        cands = sorted(p for p in d.iterdir() if p.suffix.lower() in exts) if d.is_dir() else []
        if len(cands) == 1:
            self.weights.setText(str(cands[0]))

    def paths(self) -> list[str]:
        return [p for p in (self.arch.text().strip(), self.weights.text().strip()) if p]

    def options(self) -> dict:
        return {"builder_function": self.func.text().strip() or "build_model",
                "output_layer": self.out_layer.text().strip() or None}


# --------------------------------------------------------------------------------------
class MainWindow(QMainWindow):
    opened = Signal()                  # a model finished loading (or failed: see last_error)
    load_failed = Signal(str)
    comparison_done = Signal()         # finished, failed or cancelled
    exported = Signal(list)
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
        self._run_after_plan = False
        self._selecting = False
        self._channel_job_seq = 0
        self.ask: Callable[[str, str], bool] = self._ask_dialog
        self.setWindowTitle("Migrator")
        self.setWindowIcon(theme.app_icon())
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_widgets()
        self._build_actions()
        self._build_menus()
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
        QTimer.singleShot(0, self._detect_device)

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
        self.setCentralWidget(split)

        self.inspector = Inspector(self.doc)
        self.inspector.edit_requested.connect(self.set_override)
        self.inspector.reset_requested.connect(self.reset_override)
        self.inspector.apply_all_requested.connect(self.apply_to_all_batchnorm)
        self.inspector_dock = self._dock("Mapping inspector", "inspector", self.inspector,
                                         Qt.DockWidgetArea.RightDockWidgetArea)

        self.compare = ComparePanel()
        self.compare.run_requested.connect(self.run_comparison)
        self.compare.cancel_requested.connect(self.cancel_comparison)
        self.results_model = ResultsModel(self.doc, self)
        self.results_proxy = _Proxy(self)
        self.results_proxy.setSourceModel(self.results_model)
        self.results_view = QTreeView()
        self.results_view.setModel(self.results_proxy)
        self.results_view.setRootIsDecorated(False)
        self.results_view.setUniformRowHeights(True)
        self.results_view.setAlternatingRowColors(True)
        self.results_view.setSortingEnabled(True)
        self.results_view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.results_view.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for c, w in {0: 36, 1: 120, 2: 185, 3: 72, 4: 72, 5: 80, 6: 72, 7: 64, 8: 100, 9: 120}.items():
            self.results_view.setColumnWidth(c, w)
        self.results_view.selectionModel().currentChanged.connect(self._on_result_row)
        cmp_w = QSplitter(Qt.Orientation.Horizontal)
        cmp_w.addWidget(self.compare)
        cmp_w.addWidget(self.results_view)
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
        self.resizeDocks([self.inspector_dock], [int(w * 0.40)], Qt.Orientation.Horizontal)
        self.resizeDocks([self.compare_dock], [int(self.height() * 0.45)], Qt.Orientation.Vertical)
        self.resizeDocks([self.compare_dock, self.plots_dock], [int(w * 0.53), int(w * 0.47)],
                         Qt.Orientation.Horizontal)
        # the trees share their width in proportion to what their columns need
        need = [sum(t.view.columnWidth(c) for c in range(t.model.columnCount())) or 1
                for t in (self.source_tree, self.keras_tree)]
        tw = int(w * 0.60)
        self.trees_split.setSizes([int(tw * need[0] / sum(need)), int(tw * need[1] / sum(need))])
        self.cmp_split.setSizes([230, int(w * 0.53) - 230])

    def _dock(self, title, name, widget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(f"dock_{name}")
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _act(self, text, slot, shortcut=None, tip=None, shortcuts=None) -> QAction:
        a = QAction(text, self)
        if shortcuts:
            a.setShortcuts([QKeySequence(s) for s in shortcuts])
        elif shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.triggered.connect(lambda *_: slot())
        self.addAction(a)
        return a

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_open = self._act("&Open model…", self.open_dialog, K.Open,
                                  "Open a Caffe (.prototxt + .caffemodel) or Lasagne (.py + .pkl/.npz) model")
        self.act_demo_caffe = self._act("&Caffe demo (BatchNorm + Scale)", lambda: self.open_demo("caffe"))
        self.act_demo_lasagne = self._act("&Lasagne demo (batch_norm)", lambda: self.open_demo("lasagne"))
        self.act_load_map = self._act("&Load mapping…", self.load_mapping_dialog, "Ctrl+L",
                                      "Load overrides from a mapping file (JSON)")
        self.act_save_map = self._act("&Save mapping", self.save_mapping, K.Save,
                                      "Save the overrides as a mapping file (JSON)")
        self.act_save_map_as = self._act("Save mapping &as…", lambda: self.save_mapping(ask=True), K.SaveAs)
        self.act_export = self._act("&Export Keras model…", self.export_dialog, "Ctrl+E",
                                    "Save the Keras model (.keras / .h5 / .weights.h5) and the report")
        self.act_quit = self._act("&Quit", self.close, K.Quit)
        self.act_undo = self.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.act_redo = self.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.act_undo)
        self.addAction(self.act_redo)
        self.act_next_bn = self._act("&Next batch-norm layer", self.next_batchnorm,
                                     shortcuts=["F3", "Ctrl+B"], tip="Select the next batch-norm layer")
        self.act_filter = self._act("&Filter layers", lambda: self.source_tree.filter.setFocus(), "Ctrl+F")
        self.act_edit_param = self._act("&Edit selected parameter", self.inspector._edit_clicked, "F2")
        self.act_reset = self._act("&Reset parameter to default", self.inspector._reset_clicked,
                                   "Ctrl+Backspace")
        self.act_all_bn = self._act("Apply to every &batch-norm layer", self.inspector._all_clicked,
                                    "Ctrl+Shift+B")
        self.act_run = self._act("&Run comparison", self.run_comparison, "F5",
                                 "Compare the Keras model with the source, layer by layer")
        self.act_cancel = self._act("&Cancel comparison", self.cancel_comparison, "Escape")
        self.act_about = self._act("&About Migrator", self.about)
        self.act_log_scale = QAction("&Log scale", self, checkable=True)
        self.act_log_scale.setChecked(bool(self.settings.get("plots/log_scale")))
        self.act_log_scale.toggled.connect(self.channel_plot.set_log)
        self.channel_plot.log_box.toggled.connect(self.act_log_scale.setChecked)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.act_open)
        demo = m.addMenu("Open &demo")
        demo.addAction(self.act_demo_caffe)
        demo.addAction(self.act_demo_lasagne)
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._fill_recent()
        m.addSeparator()
        m.addAction(self.act_load_map)
        m.addAction(self.act_save_map)
        m.addAction(self.act_save_map_as)
        m.addSeparator()
        m.addAction(self.act_export)
        m.addSeparator()
        m.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        e.addAction(self.act_undo)
        e.addAction(self.act_redo)
        e.addSeparator()
        e.addAction(self.act_edit_param)
        e.addAction(self.act_reset)
        e.addAction(self.act_all_bn)
        v = mb.addMenu("&View")
        v.addAction(self.act_next_bn)
        v.addAction(self.act_filter)
        v.addAction(self.act_log_scale)
        v.addSeparator()
        th = v.addMenu("&Theme")
        grp = QActionGroup(self)
        for key, label in (("auto", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            a = QAction(label, self, checkable=True)
            a.setChecked(self.settings.get("theme") == key)
            a.triggered.connect(lambda *_, k=key: self.set_theme(k))
            grp.addAction(a)
            th.addAction(a)
        v.addSeparator()
        for d in (self.inspector_dock, self.compare_dock, self.plots_dock, self.log_dock):
            v.addAction(d.toggleViewAction())
        c = mb.addMenu("&Compare")
        c.addAction(self.act_run)
        c.addAction(self.act_cancel)
        h = mb.addMenu("&Help")
        h.addAction(self.act_about)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(180)
        self.busy.setRange(0, 1000)
        self.busy.hide()
        self.status_model = QLabel("No model")
        self.status_result = QLabel("")
        self.status_device = QLabel("")
        sb.addPermanentWidget(self.busy)
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
        if (self.doc.overrides_modified and self.doc.is_open and not self.undo_stack.isClean()
                and not self.ask("Unsaved mapping", "The mapping has unsaved overrides. Quit anyway?")):
            ev.ignore()
            return
        for key in list(self.jobs):
            job = self.jobs.get(key)
            if job is not None and getattr(job, "running", False):
                job.cancel()
        self.save_layout()
        self.log_panel.uninstall()
        super().closeEvent(ev)

    # ---- dialogs (overridable in tests) -----------------------------------------------------------
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

    def set_theme(self, key: str) -> None:
        self.settings.set("theme", key)
        theme.apply_theme(key)
        self.source_model.refresh_status()
        self.keras_model.refresh_status()
        self.inspector.refresh()

    # ---- busy indicator ---------------------------------------------------------------------------
    def _busy(self, on: bool, text: str = "") -> None:
        self.busy.setVisible(on)
        self.busy.setValue(0)
        if text:
            self.statusBar().showMessage(text)

    def _busy_progress(self, f: float, msg: str) -> None:
        self.busy.setValue(int(f * 1000))
        if msg:
            self.statusBar().showMessage(msg)

    # ---- opening ---------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        dlg = OpenDialog(self, self.settings.get("last_dir") or "")
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.paths():
            self.open_paths(dlg.paths(), **dlg.options())

    def open_paths(self, paths: list[str], mapping_path: str | None = None, **opts) -> None:
        """Load a model in a worker; the previous document stays open until it succeeds."""
        if "load" in self.jobs and self.jobs["load"].running:
            self.jobs["load"].cancel()
        paths = [str(p) for p in paths]
        self.last_error = None
        self._busy(True, f"Opening {', '.join(os.path.basename(p) for p in paths)}…")
        log.info("opening %s", " ".join(paths))
        self.jobs["load"] = run_job(docmod.load_model, paths, mapping_path=mapping_path,
                                    on_done=self._loaded, on_error=self._load_failed,
                                    on_cancel=lambda: self._busy(False, "Opening cancelled"),
                                    on_progress=self._busy_progress, name="load", parent=self, **opts)

    def _loaded(self, res: dict) -> None:
        self._busy(False, "")
        self.undo_stack.clear()
        self.doc.set_opened(res["paths"], res["graph"], res["plan"], res["overrides"], res["model"],
                            res["build_error"], res["mapping_path"])
        self.settings.add_recent(res["paths"])
        if res["paths"]:
            self.settings.set("last_dir", os.path.dirname(os.path.abspath(res["paths"][0])))
        g = res["graph"]
        msg = f"Opened {g.name or os.path.basename(res['paths'][0])}: {len(g.nodes)} layers"
        if res["plan"].unsupported:
            msg += f", {len(res['plan'].unsupported)} unsupported"
        self.statusBar().showMessage(msg, 8000)
        log.info(msg)
        if res["build_error"]:
            log.warning(res["build_error"])
        self.opened.emit()

    def _load_failed(self, msg: str, details: str) -> None:
        self._busy(False, "")
        self.show_error("Cannot open the model", msg, details)
        self.load_failed.emit(msg)

    def open_demo(self, which: str, mapping_path: str | None = None) -> None:
        self._busy(True, f"Preparing the {which} demo…")
        self.jobs["demo"] = run_job(_demo_paths, which,
                                    on_done=lambda p: self.open_paths(p, mapping_path=mapping_path),
                                    on_error=self._load_failed, name="demo", parent=self,
                                    pass_callbacks=False)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        rec = self.settings.recent()
        for paths in rec:
            label = "  +  ".join(os.path.basename(p) for p in paths)
            a = self.recent_menu.addAction(label)
            a.setToolTip("\n".join(paths))
            a.triggered.connect(lambda *_, p=paths: self.open_paths(p))
        if rec:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.settings.clear_recent)
        else:
            a = self.recent_menu.addAction("(none)")
            a.setEnabled(False)

    # drag and drop -------------------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls() and any(
                u.toLocalFile().lower().endswith(MODEL_EXTS + (".json",)) for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        ev.acceptProposedAction()
        self.open_dropped(paths)

    def open_dropped(self, paths: list[str]) -> None:
        maps = [p for p in paths if p.lower().endswith(".json")]
        models = [p for p in paths if p.lower().endswith(MODEL_EXTS)]
        if models:
            if len(models) == 1:
                dlg = OpenDialog(self, os.path.dirname(models[0]))
                if models[0].lower().endswith((".prototxt", ".pbtxt", ".py")):
                    dlg.arch.setText(models[0])
                    dlg._guess_partner(models[0])
                else:
                    dlg.weights.setText(models[0])
                if dlg.exec() != QDialog.DialogCode.Accepted:
                    return
                models = dlg.paths()
            self.open_paths(models, mapping_path=maps[0] if maps else None)
        elif maps and self.doc.is_open:
            self.load_mapping(maps[0])

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
        self.source_model.refresh()
        self.keras_model.refresh()
        self.results_model.refresh()
        self._fit_trees()
        self._fit_results()
        self.inspector.show_layer(None)
        self.channel_plot.set_layer(None, None)
        self.overview_plot.set_result(None)
        self.channel_view.clear()
        g = self.doc.graph
        if g is not None:
            self.compare.set_model_mean(g.meta.get("mean"))
            self._refresh_runtimes()
            self.status_model.setText(f"{g.framework}: {g.name or os.path.basename(self.doc.paths[0])} "
                                      f"({len(g.nodes)} layers)")
        else:
            self.status_model.setText("No model")
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
        self.inspector.refresh()
        if sel:
            self._sync_keras_selection(sel)
        self._update_actions()
        if self._run_after_plan and not self.doc.planning:
            self._run_after_plan = False
            self.run_comparison()

    def _on_plan_error(self, message: str) -> None:
        self.inspector.show_message(f"Re-planning failed: {message}")
        self.show_error("Invalid mapping", message)

    def _on_result(self) -> None:
        self.results_model.refresh()
        self.source_model.refresh_status()
        self.keras_model.refresh_status(self.source_model.statuses())
        # column fitting measures every row's text: done in a later turn of the event loop,
        # so installing a big result is two short GUI-thread stalls, not one long one
        QTimer.singleShot(0, self._fit_after_result)
        self.overview_plot.set_result(self.doc.result)
        self.inspector.refresh()
        self._show_layer_plots(self.source_tree.current_name())
        self._update_result_status()
        self._update_actions()

    def _fit_after_result(self) -> None:
        self._fit_results()
        self.source_tree.fit_columns([0, 4], self._SOURCE_FIT)   # the bold row, the statuses

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
        if r is None:
            self.status_result.setText("not compared")
            self.status_result.setStyleSheet("")
            self.compare.summary.setText("")
            return
        fd = r.first_divergent
        n = len(r.compared)
        if self.doc.stale:
            txt, st = "comparison stale (mapping changed)", "stale"
        elif r.cancelled:
            txt, st = "comparison cancelled", "warning"
        elif r.passed:
            txt, st = f"PASS ({n} layers match)", "pass"
        else:
            txt, st = f"FAIL at '{fd.source}'" if fd else "FAIL", "fail"
        col = theme.colour(st).name()
        self.status_result.setText(txt)
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
        topk = ""
        if r.topk:
            topk = (f"<br>top-1 agreement {r.topk.get('top1_agreement', 0):.0%}, "
                    f"top-{r.topk.get('k', 5)} overlap {r.topk.get('topk_overlap', 0):.0%}")
        self.compare.summary.setText(f"<span style='color:{col}'><b>{txt}</b></span>{extra}<br>"
                                     f"reference: {rt}; Keras on {dev}<br>"
                                     f"smallest rtol passing every layer: {r.needed_rtol:.2g}{topk}")

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
            self.act_export.setStatusTip("Save the Keras model (.keras / .h5 / .weights.h5) and the report")
        self.compare.run_btn.setEnabled(open_ and not running)

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

    # ---- edits (undoable commands) ------------------------------------------------------------------
    def _push(self, make) -> bool:
        try:
            cmd = make()
        except MigratorError as e:
            self.inspector.show_message(f"Rejected: {e}")
            return False
        push(self.undo_stack, cmd)
        self.statusBar().showMessage(cmd.text + " — the last comparison is now stale"
                                     if self.doc.result is not None else cmd.text, 5000)
        log.info(cmd.text)
        return True

    def set_override(self, source: str, key: str, value) -> bool:
        cur = self.doc.override_value("layer", source, key, _UNSET)
        if cur is not _UNSET and cur == value and type(cur) is type(value):
            return True          # the same value again (editor committed twice): no new command
        return self._push(lambda: SetOverride(self.doc, key, value, layer=source))

    def reset_override(self, source: str, key: str) -> bool:
        kind = self.doc.graph.node(source).op if self.doc.graph is not None else None
        if self.doc.override_value("layer", source, key, None) is None and kind and \
                self.doc.override_value("kind", kind, key, None) is not None:
            return self._push(lambda: ResetOverride(self.doc, key, kind=kind))
        return self._push(lambda: ResetOverride(self.doc, key, layer=source))

    def apply_to_all_batchnorm(self, key: str, value) -> bool:
        return self._push(lambda: ApplyToAllBatchNorm(self.doc, key, value))

    # ---- mapping file --------------------------------------------------------------------------
    def load_mapping_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Load mapping", self.settings.get("last_dir") or "",
                                           "Mapping file (*.json);;All files (*)")
        if p:
            self.load_mapping(p)

    def load_mapping(self, path: str) -> None:
        if not self.doc.is_open:
            return
        graph = self.doc.graph

        def work(progress=None, cancel=None):
            from ..core import pipeline
            ov = pipeline.load_overrides(path)
            ov.check_against(graph)
            return ov

        def done(ov):
            self.undo_stack.clear()
            self.doc.set_overrides(ov, mapping_path=path)
            self.statusBar().showMessage(f"Loaded mapping {path}", 5000)
            log.info("loaded mapping %s", path)

        self.jobs["mapping"] = run_job(work, on_done=done,
                                       on_error=lambda m, d: self.show_error("Cannot load the mapping", m, d),
                                       name="mapping", parent=self)

    def save_mapping(self, ask: bool = False, path: str | None = None) -> str | None:
        if not self.doc.is_open:
            return None
        if path is None:
            path = self.doc.mapping_path
            if ask or not path:
                start = path or os.path.join(self.settings.get("last_dir") or "", "mapping.json")
                path, _ = QFileDialog.getSaveFileName(self, "Save mapping", start,
                                                      "Mapping file (*.json)")
                if not path:
                    return None
                if not path.lower().endswith(".json"):
                    path += ".json"
        try:
            self.doc.overrides.save(path)      # small JSON: an atomic write, instant
        except MigratorError as e:
            self.show_error("Cannot save the mapping", str(e))
            return None
        self.doc.mark_saved(path)
        self.undo_stack.setClean()
        self.statusBar().showMessage(f"Saved mapping {path}", 5000)
        log.info("saved mapping %s", path)
        return path

    # ---- comparison -----------------------------------------------------------------------------
    def run_comparison(self) -> None:
        doc = self.doc
        if not doc.is_open:
            return
        if "compare" in self.jobs and self.jobs["compare"].running:
            return
        if doc.planning:
            self._run_after_plan = True
            return
        try:
            spec = self.compare.input_spec()
            runtime, rt_settings = self.compare.runtime_choice()
        except MigratorError as e:
            self.show_error("Cannot run the comparison", str(e))
            return
        plan = doc.plan
        fp = docmod.overrides_fingerprint(plan.overrides)
        model = doc.model if (doc.model is not None and doc.model_fp == fp) else None
        self.compare.set_running(True)
        self.compare.save_settings(self.settings)
        log.info("comparison started (reference: %s)", runtime)
        self.jobs["compare"] = run_job(docmod.run_comparison, doc.graph, plan, model, spec,
                                       runtime=runtime, runtime_settings=rt_settings,
                                       on_done=self._compared, on_error=self._compare_failed,
                                       on_cancel=self._compare_cancelled,
                                       on_progress=self.compare.set_progress, name="compare", parent=self)
        self._update_actions()

    def cancel_comparison(self) -> None:
        job = self.jobs.get("compare")
        if job is not None and job.running:
            job.cancel()
            self.compare.progress.setFormat("cancelling…")

    def _compared(self, res: dict) -> None:
        self.compare.set_running(False)
        self.compare.set_progress(1.0, "done")
        self.doc.set_result(res["result"], res["fingerprint"], model=res["model"],
                            model_fp=res["fingerprint"], x=res["x"], input_desc=res["input_desc"])
        r = res["result"]
        fd = r.first_divergent
        log.info("comparison finished: %s%s", "PASS" if r.passed else "FAIL",
                 f" (first divergent layer '{fd.source}')" if fd else "")
        self._update_actions()
        # select the first divergent layer in a later turn of the event loop, so the
        # window repaints in between (two short GUI-thread steps instead of one long one)
        QTimer.singleShot(0, lambda: self._after_compare(fd.source if fd is not None else None))

    def _after_compare(self, first_divergent: str | None) -> None:
        if first_divergent is not None and self.doc.first_divergent is not None:
            self.select_source(first_divergent)
        self.comparison_done.emit()

    def _compare_failed(self, msg: str, details: str) -> None:
        self.compare.set_running(False)
        self.compare.progress.setFormat("failed")
        self.show_error("Comparison failed", msg, details)
        self._update_actions()
        self.comparison_done.emit()

    def _compare_cancelled(self) -> None:
        self.compare.set_running(False)
        self.compare.progress.setFormat("cancelled")
        log.info("comparison cancelled")
        self._update_actions()
        self.comparison_done.emit()

    # ---- one channel ------------------------------------------------------------------------------
    def show_channel(self, channel: int) -> None:
        name = self.channel_plot_layer()
        if name is None:
            return
        self._channel_job_seq += 1
        seq = self._channel_job_seq
        self.channel_view.clear(f"Computing {name}, channel {channel}…")
        self.plot_tabs.setCurrentWidget(self.channel_view)

        def done(cv):
            if seq == self._channel_job_seq:
                self.channel_view.show_values(cv.source, cv.channel, cv.reference, cv.keras)
                self.channel_values_ready.emit()

        def failed(msg, details):
            if seq == self._channel_job_seq:
                self.channel_view.clear(f"Cannot show the channel: {msg}")

        self.jobs["channel"] = run_job(self.doc.channel_values, name, channel, on_done=done,
                                       on_error=failed, name="channel", parent=self)

    def channel_plot_layer(self) -> str | None:
        t = self.channel_plot.title.text()
        if "<b>" in t:
            return t.split("<b>", 1)[1].split("</b>", 1)[0]
        return None

    # ---- export -----------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        if not self.doc.is_open:
            return
        if not self._confirm_export_gate():
            return
        start = os.path.join(self.settings.get("last_dir") or "",
                             (self.doc.graph.name or "model") + ".keras")
        path, _filt = QFileDialog.getSaveFileName(
            self, "Export Keras model", start,
            "Keras model (*.keras);;HDF5 model (*.h5);;Weights only (*.weights.h5)",
            options=QFileDialog.Option.DontConfirmOverwrite)
        if not path:
            return
        self.export_to(path, gate_confirmed=True)

    @staticmethod
    def format_of(path: str) -> str:
        p = path.lower()
        if p.endswith(".weights.h5"):
            return "weights"
        if p.endswith((".h5", ".hdf5")):
            return "h5"
        return "keras"

    @staticmethod
    def export_targets(path: str) -> tuple[str, list[str]]:
        """(report path, every file an export to ``path`` writes)."""
        stem = path
        for ext in (".weights.h5", ".keras", ".h5", ".hdf5"):
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        report = stem + ".report.json"
        return report, [path, report, stem + ".report.md", stem + ".report.html"]

    def _confirm_export_gate(self) -> bool:
        problem = self.doc.export_problem()
        if problem is None:
            return True
        return self.ask("Export without a passing comparison?",
                        f"Export is meant for a mapping with a passing comparison, but {problem}.\n\n"
                        "Export the Keras model anyway? The report will say so.")

    def export_to(self, path: str, *, gate_confirmed: bool = False, force: bool = False) -> None:
        """Export in a worker; asks (self.ask) before exporting past the gate or overwriting."""
        doc = self.doc
        problem = doc.export_problem()
        if problem is not None and not gate_confirmed and not self._confirm_export_gate():
            return
        fmt = self.format_of(path)
        if fmt == "keras" and not path.lower().endswith(".keras"):
            path += ".keras"
        report, targets = self.export_targets(path)
        existing = [t for t in targets if os.path.exists(t)]
        if not force and existing:
            names = "\n".join(existing)
            if not self.ask("Overwrite?", f"These files already exist:\n{names}\n\nReplace them?"):
                return
            force = True
        model = doc.model if doc.model_current else None
        result = doc.result if not doc.stale else None
        self._busy(True, f"Exporting {os.path.basename(path)}…")

        def failed(msg, details):
            self._busy(False)
            if "exist" in msg and not force and self.ask("Overwrite?", f"{msg}\n\nReplace the existing files?"):
                self.export_to(path, gate_confirmed=True, force=True)
                return
            self.show_error("Export failed", msg, details)

        def done(files):
            self._busy(False, "")
            self.last_export = list(files)
            self.statusBar().showMessage("Exported " + ", ".join(files), 10000)
            log.info("exported %s", ", ".join(files))
            self.exported.emit(list(files))

        self.jobs["export"] = run_job(docmod.export_model, doc.graph, doc.plan, doc.overrides, model, result,
                                      path, formats=(), report_path=report, force=force,
                                      accept_mismatch=problem is not None,
                                      on_done=done, on_error=failed, on_progress=self._busy_progress,
                                      name="export", parent=self)

    # ---- misc -----------------------------------------------------------------------------------
    def _detect_device(self) -> None:
        def work(progress=None, cancel=None):
            from ..core.keras_build.executor import keras_device_description
            return keras_device_description()

        def done(desc):
            self.compare.device.setText(f"Keras device: {desc}")
            self.status_device.setText(f"Keras on {desc}")

        self.jobs["device"] = run_job(work, on_done=done,
                                      on_error=lambda m, d: self.compare.device.setText(f"Keras device: unknown ({m})"),
                                      name="device", parent=self)

    def about(self) -> None:
        dlg = QDialog(self)
        dlg.setWindowTitle("About Migrator")
        text = QTextBrowser()
        text.setOpenExternalLinks(True)
        text.setHtml(about_html(None))
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(dlg.reject)
        lay = QVBoxLayout(dlg)
        lay.addWidget(text)
        lay.addWidget(bb)
        dlg.resize(560, 480)

        def done(devs):
            text.setHtml(about_html(devs))
        self.jobs["about"] = run_job(tf_devices, on_done=done,
                                     on_error=lambda m, d: text.setHtml(about_html([f"(unavailable: {m})"])),
                                     name="about", parent=self, pass_callbacks=False)
        self._about = dlg
        dlg.open()


# --------------------------------------------------------------------------------------
def _demo_paths(which: str) -> list[str]:
    from .app import ensure_demos
    return ensure_demos()[which]


def library_versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {"Migrator": __version__, "Python": sys.version.split()[0]}
    for dist, label in (("numpy", "NumPy"), ("tensorflow", "TensorFlow"), ("keras", "Keras"),
                        ("protobuf", "protobuf"), ("h5py", "h5py"), ("PySide6-Essentials", "PySide6"),
                        ("PySide6", "PySide6"), ("pyqtgraph", "pyqtgraph"),
                        ("opencv-python-headless", "OpenCV"), ("opencv-python", "OpenCV")):
        if label in out:
            continue
        try:
            out[label] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        from PySide6 import QtCore
        out["Qt"] = QtCore.qVersion()
    except Exception as e:  # noqa: BLE001
        log.debug("no Qt version: %s", e)
    return out


def tf_devices() -> list[str]:
    import tensorflow as tf
    return [f"{d.device_type}: {d.name}" for d in tf.config.list_physical_devices()]


def about_html(devices) -> str:
    vers = library_versions()
    rows = "".join(f"<tr><td>{k}</td><td><b>{v}</b></td></tr>" for k, v in vers.items())
    if devices is None:
        dev = "<i>listing TensorFlow devices…</i>"
    else:
        dev = "<br>".join(devices) or "(none)"
    return (f"<h2>Migrator {__version__}</h2>"
            "<p>Converts pretrained Caffe and Lasagne/Theano models to Keras 3 and proves, layer by "
            "layer and channel by channel, that the converted model computes the same thing.</p>"
            f"<h3>Libraries</h3><table cellspacing=4>{rows}</table>"
            f"<h3>TensorFlow devices</h3><p>{dev}</p>")
