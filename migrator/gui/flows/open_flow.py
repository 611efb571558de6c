"""Opening a model: the Open dialog, File ▸ Open / Open demo / Open recent, drag and drop."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core import document as docmod
from ..workers import run_job

log = logging.getLogger("migrator.gui")

MODEL_EXTS = (".prototxt", ".pbtxt", ".caffemodel", ".py", ".pkl", ".pickle", ".npz")


class OpenDialog(QDialog):
    """Pick the two files of a model: architecture (.prototxt / builder .py) and weights
    (.caffemodel / .pkl / .npz); Lasagne options."""

    def __init__(self, parent=None, start_dir: str = "", plugins: list[str] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open model")
        #: plugin files (layer types Migrator does not know): Python code Migrator RUNS
        self.plugins: list[str] = list(plugins or [])
        self.start_dir = start_dir
        self.arch = QLineEdit()
        self.arch.setPlaceholderText("deploy.prototxt  or  Lasagne builder script .py")
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("weights .caffemodel  or  Lasagne parameters .pkl / .npz  "
                                        "(or a whole pickled network .pkl alone)")
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
        self.func_label = QLabel("Builder function")
        self.out_label = QLabel("Output layer")
        f.addRow(self.func_label, self.func)
        f.addRow(self.out_label, self.out_layer)
        # plugins: the user's own layer types (docs/plugins.md); kept in the settings
        self.plugin_label = QLabel()
        self.plugin_label.setWordWrap(True)
        self.plugin_label.setToolTip("A plugin is a Python file that adds a layer type Migrator "
                                     "does not know. Migrator RUNS its code, with your rights "
                                     "(no sandbox): add only files you trust.")
        add_plugin = QPushButton("Add plugin…")
        add_plugin.clicked.connect(self._pick_plugin)
        clear_plugins = QPushButton("Remove all")
        clear_plugins.clicked.connect(self._clear_plugins)
        prow = QWidget()
        ph = QHBoxLayout(prow)
        ph.setContentsMargins(0, 0, 0, 0)
        ph.addWidget(self.plugin_label, 1)
        ph.addWidget(add_plugin)
        ph.addWidget(clear_plugins)
        f.addRow("Plugins", prow)
        self._show_plugins()
        # what opening does, in plain words (shown for a Lasagne model only)
        self.lasagne_note = QLabel(
            "Opening a Lasagne model runs its builder script (your Python code) in a separate "
            "child process with a time limit of two minutes, so that a script that hangs cannot "
            "freeze Migrator. The parameter file (.pkl / .npz) is only read as data: it never "
            "runs anything.")
        self.lasagne_note.setWordWrap(True)
        self.arch.textChanged.connect(self._update_kind)
        self.weights.textChanged.connect(self._update_kind)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        # what went wrong with the last Open (the dialog stays open with both paths kept)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.hide()
        # set by the flow: Open starts loading and the dialog waits for the outcome
        self.on_open = None
        self.load_started = False
        self.weights.editingFinished.connect(lambda: self.guess_architecture(self.weights.text().strip()))
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("A Caffe model is a .prototxt + .caffemodel pair; a Lasagne model is a "
                             "builder script (.py) + a parameter file (.pkl or .npz), or a whole "
                             "pickled network (.pkl) alone."))
        lay.addLayout(f)
        lay.addWidget(self.lasagne_note)
        lay.addWidget(self.note)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.resize(640, 230)
        self._update_kind()

    def accept(self) -> None:
        if self.on_open is None:
            super().accept()
            return
        self.on_open()

    def show_error(self, message: str) -> None:
        """Say what failed, keep both paths, and let the user fix them and try again."""
        from .. import theme
        self.error.setStyleSheet(f"color: {theme.colour('fail').name()}")
        self.error.setText(message)
        self.error.show()
        self.set_loading(False)

    def set_loading(self, on: bool) -> None:
        self.load_started = on
        self.buttons.button(QDialogButtonBox.StandardButton.Open).setEnabled(not on)
        if on:
            self.error.hide()

    def guess_architecture(self, weights: str) -> str | None:
        """Weights chosen and no architecture yet: fill in the model definition next to them
        (``deploy.prototxt``, or the only .prototxt there; the only .py for Lasagne)."""
        if self.arch.text().strip() or not weights:
            return None
        found = architecture_next_to(weights)
        if found is not None:
            self.arch.setText(found)
            self.note.setText(f"Architecture: {os.path.basename(found)} found next to the weights.")
            self.note.show()
        return found

    def is_lasagne(self) -> bool:
        a, w = self.arch.text().strip().lower(), self.weights.text().strip().lower()
        return a.endswith(".py") or w.endswith((".pkl", ".pickle", ".npz"))

    def _update_kind(self, *_):
        """The builder-function and output-layer fields mean something only for Lasagne."""
        las = self.is_lasagne()
        for wdg in (self.func_label, self.func, self.out_label, self.out_layer, self.lasagne_note):
            wdg.setVisible(las)
        self.adjustSize()

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

    def _show_plugins(self) -> None:
        self.plugin_label.setText(", ".join(os.path.basename(p) for p in self.plugins)
                                  or "none (Python code Migrator would run: add only files you trust)")

    def _pick_plugin(self):
        p, _ = QFileDialog.getOpenFileName(self, "Plugin (Python code Migrator will run)",
                                           self._dir(), "Python (*.py);;All files (*)")
        if p and p not in self.plugins:
            self.plugins.append(p)
            self._show_plugins()

    def _clear_plugins(self):
        self.plugins = []
        self._show_plugins()

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
            self.guess_architecture(p)

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
        """The model's files; a .pkl with no architecture is a whole pickled network."""
        return [p for p in (self.arch.text().strip(), self.weights.text().strip()) if p]

    def options(self) -> dict:
        if not self.is_lasagne():
            return {}
        return {"builder_function": self.func.text().strip() or "build_model",
                "output_layer": self.out_layer.text().strip() or None}


def architecture_next_to(weights: str) -> str | None:
    """The model definition in the folder of ``weights``, when there is one obvious choice:
    a Caffe ``*deploy*.prototxt`` (else the only .prototxt that is not a solver), or the only
    Lasagne builder script (.py)."""
    w = Path(weights)
    d = w.parent
    if not d.is_dir():
        return None
    if w.suffix.lower() == ".caffemodel":
        protos = sorted(p for p in d.iterdir() if p.suffix.lower() in (".prototxt", ".pbtxt")
                        and "solver" not in p.name.lower())
        deploy = [p for p in protos if "deploy" in p.name.lower()]
        pick = deploy if len(deploy) == 1 else protos
    elif w.suffix.lower() in (".pkl", ".pickle", ".npz"):
        pick = sorted(p for p in d.iterdir() if p.suffix.lower() == ".py")
    else:
        return None
    return str(pick[0]) if len(pick) == 1 else None


def _load(paths, progress=None, cancel=None, plugins=None, **kw) -> dict:
    """Open in a worker: unknown source fields mark their layers (instead of failing the
    whole model), and a model that leaves input sizes open says which it needs.  ``plugins``:
    the plugin files of the settings, loaded first (plugins no longer listed are unloaded)."""
    from ...core import plugins as plugmod
    wanted = [os.path.abspath(p) for p in plugins or []]
    for p in list(plugmod.LOADED):
        if p not in wanted:
            plugmod.unload_plugin(p)
    plugmod.load_plugins(wanted)
    res = docmod.load_model(paths, unknown="collect", progress=progress, cancel=cancel, **kw)
    res["input_shape_need"] = None
    from ...core.input_shape import input_shape_need, open_inputs
    if open_inputs(res["graph"]) and not kw.get("input_shapes"):
        res["input_shape_need"] = input_shape_need(res["graph"], res["plan"])
    return res


def _demo_paths(which: str) -> list[str]:
    from ..app import ensure_demos
    return ensure_demos()[which]


def recent_label(paths: list[str], index: int = 0) -> str:
    """'&1 deploy.prototxt + weights.caffemodel   —   ~/models/nsfw': the file names, then
    the folder (shortened with ~, middle-elided when long) so that two models with the same
    file names in different folders can be told apart."""
    names = " + ".join(os.path.basename(p) for p in paths)
    dirs = {os.path.dirname(os.path.abspath(p)) for p in paths}
    folder = dirs.pop() if len(dirs) == 1 else os.path.commonpath(sorted(dirs)) if dirs else ""
    home = os.path.expanduser("~")
    if folder == home or folder.startswith(home + os.sep):
        folder = "~" + folder[len(home):]
    if len(folder) > 60:
        folder = folder[:25] + "…" + folder[-32:]
    prefix = f"&{index + 1} " if index < 9 else ""
    return f"{prefix}{names.replace('&', '&&')}   —   {folder.replace('&', '&&')}"


class OpenFlow:
    """Everything that replaces the window's model."""

    def __init__(self, win):
        self.win = win
        self.dialog: OpenDialog | None = None       # the Open dialog waiting for its load

    def open_dialog(self) -> None:
        """The Open dialog stays open while its model loads: a failure is shown in it with
        both paths kept; it closes when the model is open."""
        w = self.win
        dlg = OpenDialog(w, w.settings.get("last_dir") or os.path.expanduser("~"),
                         plugins=w.settings.get("plugins"))
        dlg.on_open = lambda: self.open_from_dialog(dlg)
        self.dialog = dlg
        try:
            answer = dlg.exec()
        finally:
            self.dialog = None
        if answer == QDialog.DialogCode.Accepted and not dlg.load_started and dlg.paths():
            self.open_paths(dlg.paths(), **dlg.options())

    def open_from_dialog(self, dlg: OpenDialog) -> None:
        weights = dlg.weights.text().strip()
        if not dlg.arch.text().strip() and weights:
            dlg.guess_architecture(weights)
        if weights.lower().endswith(".caffemodel") and not dlg.arch.text().strip():
            dlg.show_error("A Caffe model needs its .prototxt as well: fill the Architecture field "
                           "(no deploy.prototxt was found next to the .caffemodel).")
            return
        if not dlg.paths():
            dlg.show_error("Choose the model files first.")
            return
        self.win.settings.set("plugins", list(dlg.plugins))
        dlg.set_loading(True)
        if not self.open_paths(dlg.paths(), **dlg.options()):
            dlg.set_loading(False)

    def open_paths(self, paths: list[str], mapping_path: str | None = None, *,
                   confirmed: bool = False, demo: bool = False, **opts) -> bool:
        """Load a model in a worker; the previous document stays open until it succeeds.
        Unsaved overrides are offered for saving first (False: the user cancelled)."""
        w = self.win
        paths = [str(p) for p in paths]
        if not confirmed and not w.confirm_replace(
                "opening " + " + ".join(os.path.basename(p) for p in paths)):
            return False
        if "load" in w.jobs and w.jobs["load"].running:
            w.jobs["load"].cancel()
        self._demo = demo
        w.last_error = None
        w._busy(True, f"Opening {', '.join(os.path.basename(p) for p in paths)}…")
        log.info("opening %s", " ".join(paths))
        self._request = (paths, mapping_path, dict(opts))
        opts.setdefault("plugins", w.settings.get("plugins"))
        w.jobs["load"] = run_job(_load, paths, mapping_path=mapping_path,
                                 on_done=self.loaded, on_error=self.load_failed,
                                 on_cancel=self.load_cancelled,
                                 on_progress=w._busy_progress, name="load", parent=w, **opts)
        return True

    def loaded(self, res: dict) -> None:
        w = self.win
        w._busy(False, "")
        w.undo_stack.clear()
        w.doc.set_opened(res["paths"], res["graph"], res["plan"], res["overrides"], res["model"],
                         res["build_error"], res["mapping_path"])
        if not getattr(self, "_demo", False):
            # a demo lives in Migrator's own folder: neither a recent model nor the folder
            # where the user keeps files
            w.settings.add_recent(res["paths"])
            if res["paths"]:
                w.settings.set("last_dir", os.path.dirname(os.path.abspath(res["paths"][0])))
        g = res["graph"]
        msg = f"Opened {g.name or os.path.basename(res['paths'][0])}: {len(g.nodes)} layers"
        if res["plan"].unsupported:
            msg += f", {len(res['plan'].unsupported)} unsupported"
        w.statusBar().showMessage(msg, 8000)
        log.info(msg)
        if res["build_error"]:
            log.warning(res["build_error"])
        if self.dialog is not None:
            self.dialog.done(QDialog.DialogCode.Accepted)
        w.opened.emit()
        need = res.get("input_shape_need")
        if need:
            QTimer.singleShot(0, lambda: self.ask_input_shape(res["paths"], need))

    def ask_input_shape(self, paths: list[str], need: dict) -> None:
        """The model leaves input sizes open and a layer needs one: ask for it (with the
        size its parameters imply, when there is one) and reopen at that size."""
        from ...core.errors import MigratorError
        from ...core.input_shape import format_shape, parse_input_shapes
        w = self.win
        g = w.doc.graph
        names = need["inputs"]
        several = len(g.input_nodes) > 1
        sugg = need.get("suggestion") or {}
        default = " ".join(f"{n + '=' if several else ''}{format_shape(sugg[n])}" for n in names if n in sugg)
        declared = ", ".join(f"{n} {format_shape(g.node(n).attrs.get('shape'))}" for n in names)
        layers = need.get("layers") or []
        why = (f"Layer '{layers[0][0]}' cannot be converted without it ({layers[0][1]})."
               if layers else "The comparison needs a known input size.")
        text = (f"The model leaves input sizes open: {declared}.\n{why}\n\n"
                "Input size (N,C,H,W; several inputs: NAME=1,3,224,224 separated by spaces)"
                + (f"\n{need['why_suggested']}" if need.get("why_suggested") else ""))
        answer = w.ask_text("Input size", text, default)
        if not answer:
            w.statusBar().showMessage("Input size not given: the layers that need it stay "
                                      "unsupported", 8000)
            return
        try:
            shapes = parse_input_shapes(answer.split(), option="input size")
        except MigratorError as e:
            w.show_error("Invalid input size", str(e))
            return
        req_paths, mapping_path, opts = getattr(self, "_request", (paths, None, {}))
        opts = dict(opts)
        opts["input_shapes"] = shapes
        self.open_paths(req_paths, mapping_path=mapping_path, confirmed=True,
                        demo=getattr(self, "_demo", False), **opts)

    def load_cancelled(self) -> None:
        self.win._busy(False, "Opening cancelled")
        if self.dialog is not None:
            self.dialog.set_loading(False)

    def load_failed(self, msg: str, details: str) -> None:
        w = self.win
        w._busy(False, "")
        dlg = self.dialog
        if dlg is not None and dlg.load_started:
            # the dialog is still open: the message goes there, next to the paths to fix
            w.last_error = msg
            log.error("Cannot open the model: %s", msg)
            w.statusBar().showMessage(f"Cannot open the model: {msg}", 10000)
            dlg.show_error(msg)
        else:
            w.show_error("Cannot open the model", msg, details)
        w.load_failed.emit(msg)

    def open_demo(self, which: str, mapping_path: str | None = None) -> bool:
        w = self.win
        if not w.confirm_replace(f"opening the {which} demo"):
            return False
        w._busy(True, f"Preparing the {which} demo…")
        w.jobs["demo"] = run_job(_demo_paths, which,
                                 on_done=lambda p: self.open_paths(p, mapping_path=mapping_path,
                                                                   confirmed=True, demo=True),
                                 on_error=self.load_failed, name="demo", parent=w,
                                 pass_callbacks=False)
        return True

    def fill_recent(self, menu) -> None:
        w = self.win
        menu.clear()
        rec = w.settings.recent()
        for i, paths in enumerate(rec):
            a = menu.addAction(recent_label(paths, i))
            a.setToolTip("\n".join(paths))
            a.setStatusTip(" + ".join(paths))
            a.triggered.connect(lambda *_, p=paths: self.open_paths(p))
        if rec:
            menu.addSeparator()
            menu.addAction("Clear list", w.settings.clear_recent)
        else:
            a = menu.addAction("(none)")
            a.setEnabled(False)

    # drag and drop -------------------------------------------------------------------------------
    @staticmethod
    def accepts_drop(mime) -> bool:
        return mime.hasUrls() and any(
            u.toLocalFile().lower().endswith(MODEL_EXTS + (".json",)) for u in mime.urls())

    def open_dropped(self, paths: list[str]) -> None:
        w = self.win
        maps = [p for p in paths if p.lower().endswith(".json")]
        models = [p for p in paths if p.lower().endswith(MODEL_EXTS)]
        if models:
            if len(models) == 1:
                dlg = OpenDialog(w, os.path.dirname(models[0]))
                if models[0].lower().endswith((".prototxt", ".pbtxt", ".py")):
                    dlg.arch.setText(models[0])
                    dlg._guess_partner(models[0])
                else:
                    dlg.weights.setText(models[0])
                if dlg.exec() != QDialog.DialogCode.Accepted:
                    return
                models = dlg.paths()
            self.open_paths(models, mapping_path=maps[0] if maps else None)
        elif maps and w.doc.is_open:
            w.mapping.load_mapping(maps[0])
