"""The window's actions (menu entries and shortcuts) and its menus."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QApplication

# window shortcuts that a text field would otherwise take for itself (Ctrl+E is "end of
# line" in a QLineEdit on X11, so Export did nothing while the cursor was in a field)
WINDOW_KEYS = ("Ctrl+E", "Ctrl+B", "Ctrl+L", "Ctrl+Shift+B", "F3", "F5")


class WindowShortcuts(QObject):
    """Application event filter: a ShortcutOverride for one of :data:`WINDOW_KEYS` sent to
    a widget of ``win`` is refused, so the window's action gets the key."""

    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.keys = {QKeySequence(k)[0].toCombined() for k in WINDOW_KEYS}

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.ShortcutOverride:
            combo = ev.keyCombination().toCombined()
            if combo in self.keys and obj.isWidgetType() and self.win.isAncestorOf(obj):
                ev.ignore()
                return True
        return False


def install_window_shortcuts(win) -> WindowShortcuts:
    f = WindowShortcuts(win)
    QApplication.instance().installEventFilter(f)
    return f


def _act(win, text, slot, shortcut=None, tip=None, shortcuts=None) -> QAction:
    a = QAction(text, win)
    if shortcuts:
        a.setShortcuts([QKeySequence(s) for s in shortcuts])
    elif shortcut is not None:
        a.setShortcut(QKeySequence(shortcut))
    if tip:
        a.setStatusTip(tip)
        a.setToolTip(tip)
    a.triggered.connect(lambda *_: slot())
    win.addAction(a)
    return a


def build_actions(win) -> None:
    K = QKeySequence.StandardKey
    w = win
    w.act_open = _act(w, "&Open model…", w.open_dialog, K.Open,
                      "Open a Caffe (.prototxt + .caffemodel) or Lasagne (.py + .pkl/.npz) model")
    w.act_demo_caffe = _act(w, "&Caffe demo (BatchNorm + Scale)", lambda: w.open_demo("caffe"))
    w.act_demo_lasagne = _act(w, "&Lasagne demo (batch_norm)", lambda: w.open_demo("lasagne"))
    w.act_load_map = _act(w, "&Load mapping…", w.mapping.load_mapping_dialog, "Ctrl+L",
                          "Load overrides from a mapping file (JSON)")
    w.act_save_map = _act(w, "&Save mapping", w.save_mapping, K.Save,
                          "Save the overrides as a mapping file (JSON)")
    w.act_save_map_as = _act(w, "Save mapping &as…", lambda: w.save_mapping(ask=True), K.SaveAs)
    w.act_export = _act(w, "&Export Keras model…", w.export_dialog, "Ctrl+E",
                        "Save the Keras model (.keras / .h5 / .weights.h5 / .tflite / SavedModel) and the report")
    w.act_convert_folder = _act(w, "Convert a &folder…", w.convert_folder_dialog, tip=
                                "Convert and verify every model in a folder tree; the index opens as a table")
    w.act_quit = _act(w, "&Quit", w.close, K.Quit)
    w.act_undo = w.undo_stack.createUndoAction(w, "&Undo")
    w.act_undo.setShortcuts([QKeySequence("Ctrl+Z")])
    w.act_redo = w.undo_stack.createRedoAction(w, "&Redo")
    w.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    w.addAction(w.act_undo)
    w.addAction(w.act_redo)
    w.act_next_bn = _act(w, "&Next batch-norm layer", w.next_batchnorm,
                         shortcuts=["F3", "Ctrl+B"], tip="Select the next batch-norm layer")
    w.act_filter = _act(w, "&Filter layers", lambda: w.source_tree.filter.setFocus(), "Ctrl+F")
    w.act_edit_param = _act(w, "&Edit selected parameter", w.inspector._edit_clicked, "F2")
    w.act_reset = _act(w, "&Reset parameter to default", w.inspector._reset_clicked, "Ctrl+Backspace")
    w.act_all_bn = _act(w, "Apply to every &batch-norm layer", w.inspector._all_clicked, "Ctrl+Shift+B")
    w.act_run = _act(w, "&Run comparison", w.run_comparison, "F5",
                     "Compare the Keras model with the source, layer by layer")
    w.act_cancel = _act(w, "&Cancel comparison", w.cancel_comparison, "Escape")
    w.act_repro = _act(w, "Write &repro bundle…", w.repro.repro_dialog, tip=
                       "Write the failing layer alone, its inputs, the expected output and a script "
                       "into a folder (needs a failed, current comparison)")
    # also on the results table's context menu (right-click a failing row)
    w.results_view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
    w.results_view.addAction(w.act_repro)
    w.act_about = _act(w, "&About Migrator", w.about)
    w.act_guide = _act(w, "&User guide", w.user_guide, K.HelpContents, "Read the user guide")
    w.act_shortcuts = _act(w, "&Keyboard shortcuts", w.show_shortcuts, "Ctrl+/",
                           "List every keyboard shortcut")
    w.act_log_scale = QAction("&Log scale", w, checkable=True)
    w.act_log_scale.setChecked(bool(w.settings.get("plots/log_scale")))
    w.act_log_scale.toggled.connect(w.channel_plot.set_log)
    w.channel_plot.log_box.toggled.connect(w.act_log_scale.setChecked)


def add_items(menu, items) -> None:
    """Add ``items`` to ``menu`` in order: an action, or None for a separator."""
    for a in items:
        if a is None:
            menu.addSeparator()
        else:
            menu.addAction(a)


def build_menus(win) -> None:
    w = win
    mb = w.menuBar()
    m = mb.addMenu("&File")
    m.addAction(w.act_open)
    demo = m.addMenu("Open &demo")
    add_items(demo, (w.act_demo_caffe, w.act_demo_lasagne))
    w.recent_menu = m.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(w._fill_recent)
    w._fill_recent()
    add_items(m, (None, w.act_load_map, w.act_save_map, w.act_save_map_as, None, w.act_export,
                  w.act_convert_folder, None, w.act_quit))
    add_items(mb.addMenu("&Edit"), (w.act_undo, w.act_redo, None, w.act_edit_param, w.act_reset,
                                     w.act_all_bn))
    v = mb.addMenu("&View")
    add_items(v, (w.act_next_bn, w.act_filter, w.act_log_scale, None))
    th = v.addMenu("&Theme")
    grp = QActionGroup(w)
    for key, label in (("auto", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
        a = QAction(label, w, checkable=True)
        a.setChecked(w.settings.get("theme") == key)
        a.triggered.connect(lambda *_, k=key: w.set_theme(k))
        grp.addAction(a)
        th.addAction(a)
    v.addSeparator()
    for d in (w.inspector_dock, w.compare_dock, w.plots_dock, w.log_dock):
        v.addAction(d.toggleViewAction())
    add_items(mb.addMenu("&Compare"), (w.act_run, w.act_cancel, None, w.act_repro))
    add_items(mb.addMenu("&Help"), (w.act_guide, w.act_shortcuts, None, w.act_about))
