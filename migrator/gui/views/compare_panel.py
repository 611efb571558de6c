"""Comparison controls: input, reference runtime, Keras device, run/cancel, progress."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import MigratorError

INPUT_KINDS = [("random", "Seeded random (N(0,1))"), ("image", "Image file"),
               ("images", "Image folder (a set)"), ("npy", ".npy array (NCHW)")]
RUNTIME_LABELS = {"builtin": "Built-in (numpy)", "opencv": "OpenCV DNN (Caffe)",
                  "legacy": "Legacy framework (subprocess)"}


_PATH_KEYS = {"image": "compare/image_path", "images": "compare/images_path", "npy": "compare/npy_path"}


def parse_mean(text: str):
    """The mean typed in the panel: numbers, or a mean file (Caffe's mean.binaryproto, .npy)
    read safely by the core (a bad file is a one-line error naming it)."""
    from ...core.inputs import parse_mean as core_parse_mean
    return core_parse_mean(text)[0]


def _with_browse(field: QWidget, tip: str, browse) -> QWidget:
    """``field`` with a "…" button after it that calls ``browse``."""
    button = QToolButton()
    button.setText("…")
    button.setToolTip(tip)
    button.clicked.connect(browse)
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(field, 1)
    row.addWidget(button)
    w = QWidget()
    w.setLayout(row)
    return w


def _section_toggle(title: str, body: QWidget) -> QToolButton:
    """A flat arrow button that shows or hides ``body`` (a collapsible section)."""
    t = QToolButton()
    t.setText(title)
    t.setCheckable(True)
    t.setChecked(True)
    t.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    t.setArrowType(Qt.ArrowType.DownArrow)
    t.setAutoRaise(True)
    t.setToolTip(f"Show or hide the {title.lower()} settings")

    def toggled(on: bool) -> None:
        t.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        body.setVisible(on and not t.isHidden())
    t.toggled.connect(toggled)
    return t


def labelled_row(form: QFormLayout, text: str, field: QWidget) -> QLabel:
    """Add the row ``text: field`` to ``form``; return its label (shown or hidden with it)."""
    label = QLabel(text)
    form.addRow(label, field)
    return label


class ComparePanel(QWidget):
    run_requested = Signal()
    cancel_requested = Signal()
    # the input, its preprocessing or the reference was edited by the user: a result on
    # screen no longer describes what a run would compare
    input_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        # ---- input -----------------------------------------------------------------
        self.kind = QComboBox()
        for k, label in INPUT_KINDS:
            self.kind.addItem(label, k)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.path = QLineEdit()
        self.path.setPlaceholderText("image or .npy file")
        # image folder (an input set): how many images, and how many per batch (memory)
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("Compare only the first N images of the folder (sorted by name)")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 4096)
        self.batch_size.setValue(8)
        self.batch_size.setToolTip("Images per batch: memory grows with the batch, not the folder")
        self.path_w = _with_browse(self.path, "Choose the input file", self._browse)
        self.order = QComboBox()
        self.order.addItems(["BGR", "RGB"])
        self.order.setToolTip("Channel order fed to the network (Caffe models usually expect BGR)")
        self.mean = QLineEdit()
        self.mean.setToolTip("Mean subtracted after the channel reordering: per-channel numbers, or "
                             "a mean file (Caffe's mean.binaryproto, .npy) whose image is "
                             "centre-cropped like the input; empty = the model's stored mean when "
                             "it has one")
        mean_w = _with_browse(self.mean, "Choose a mean file (Caffe's mean.binaryproto, or .npy)",
                              self._browse_mean)
        self.bake = QCheckBox("bake into the exported model")
        self.bake.setToolTip("Export puts the channel order, mean and scale at the model's front: "
                             "the saved model then takes RGB pixels in [0, 255] (resized and "
                             "cropped to its input size); the report says so")
        self.scale = QDoubleSpinBox()
        self.scale.setDecimals(6)
        self.scale.setRange(1e-6, 1e6)
        self.scale.setValue(1.0)
        self.resize_model = QCheckBox("model input size")
        self.resize_model.setChecked(True)
        self.resize_h = QSpinBox()
        self.resize_w = QSpinBox()
        for sp in (self.resize_h, self.resize_w):
            sp.setRange(1, 8192)
            sp.setValue(224)
            sp.setEnabled(False)
        self.resize_model.toggled.connect(lambda on: (self.resize_h.setEnabled(not on),
                                                      self.resize_w.setEnabled(not on)))
        # the check box above the two sizes: on one line they made the panel wider than its dock
        hw = QHBoxLayout()
        hw.setContentsMargins(0, 0, 0, 0)
        hw.addWidget(self.resize_h, 1)
        hw.addWidget(QLabel("×"))
        hw.addWidget(self.resize_w, 1)
        rs = QVBoxLayout()
        rs.setContentsMargins(0, 0, 0, 0)
        rs.setSpacing(2)
        rs.addWidget(self.resize_model)
        rs.addLayout(hw)
        rsw = QWidget()
        rsw.setLayout(rs)
        self.pre_box = QGroupBox()
        # no title (the fold button above names it): no room kept for one
        self.pre_box.setStyleSheet("QGroupBox { margin-top: 0px; }")
        pf = QFormLayout(self.pre_box)
        pf.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        pf.addRow("Resize to", rsw)
        pf.addRow("Channel order", self.order)
        pf.addRow("Mean", mean_w)
        pf.addRow("Scale", self.scale)
        pf.addRow("Export", self.bake)
        inp = QGroupBox("Input")
        f = QFormLayout(inp)
        f.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        f.addRow("Kind", self.kind)
        self.seed_label = labelled_row(f, "Seed", self.seed)
        self.path_label = labelled_row(f, "File", self.path_w)
        self.limit_label = labelled_row(f, "Images", self.limit)
        self.batch_label = labelled_row(f, "Batch size", self.batch_size)
        # ---- runtime -----------------------------------------------------------------
        self.runtime = QComboBox()
        self.legacy_cmd = QLineEdit()
        self.legacy_cmd.setPlaceholderText("e.g. /opt/py27/bin/python")
        self.legacy_cmd.setToolTip("Command starting a Python of the old environment (Caffe or "
                                   "Theano + Lasagne) for the legacy reference")
        self.device = QLabel("Keras device: (detecting…)")
        self.device.setWordWrap(True)
        rt = QGroupBox("Reference and device")
        rf = QFormLayout(rt)
        rf.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        rf.addRow("Reference", self.runtime)
        self.legacy_label = labelled_row(rf, "Legacy command", self.legacy_cmd)
        rf.addRow(self.device)
        # ---- run --------------------------------------------------------------------
        self.run_btn = QPushButton("Run comparison")
        self.run_btn.setToolTip("Run the reference and the Keras model layer by layer (F5)")
        self.run_btn.clicked.connect(self.run_requested)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        # the stage text under the bar (word-wrapped): inside the bar it was cut off
        self.progress_text = QLabel("")
        self.progress_text.setWordWrap(True)
        self.progress_text.setMinimumWidth(10)
        self.summary = QLabel("")
        self.summary.setMinimumWidth(10)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        b = QHBoxLayout()
        b.addWidget(self.run_btn, 1)
        b.addWidget(self.cancel_btn)
        # run, cancel and the progress first: they stay in view however short the dock is,
        # and the input settings (the tallest part) scroll below them
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(b)
        lay.addWidget(self.progress)
        lay.addWidget(self.progress_text)
        lay.addWidget(inp)
        self.pre_toggle = _section_toggle("Image preprocessing", self.pre_box)
        lay.addWidget(self.pre_toggle)
        lay.addWidget(self.pre_box)
        lay.addWidget(rt)
        lay.addWidget(self.summary)
        lay.addStretch(1)
        # every field may shrink: a field wider than the panel scrolled it sideways while typing
        for wdg in (self.path, self.mean, self.legacy_cmd, self.kind, self.runtime, self.order,
                    self.resize_h, self.resize_w, self.limit, self.batch_size, self.scale, self.seed):
            wdg.setMinimumWidth(40)
            wdg.setSizePolicy(QSizePolicy.Policy.Ignored, wdg.sizePolicy().verticalPolicy())
        self._quiet = 0
        for sig in (self.kind.currentIndexChanged, self.seed.valueChanged, self.path.textChanged,
                    self.limit.valueChanged, self.order.currentIndexChanged, self.mean.textChanged,
                    self.scale.valueChanged, self.resize_model.toggled, self.resize_h.valueChanged,
                    self.resize_w.valueChanged, self.runtime.currentIndexChanged,
                    self.legacy_cmd.textChanged):
            sig.connect(self._on_input_edited)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.runtime.currentIndexChanged.connect(self._runtime_changed)
        self._kind_changed()
        self._runtime_changed()
        self._model_mean = None

    # ---- state ------------------------------------------------------------------------
    def _kind_changed(self, *_):
        k = self.kind.currentData()
        self.seed.setVisible(k == "random")
        self.seed_label.setVisible(k == "random")
        self.path_w.setVisible(k != "random")
        self.path_label.setVisible(k != "random")
        self.path_label.setText("Folder" if k == "images" else "File")
        self.path.setPlaceholderText({"images": "folder of images, or a .txt list of paths",
                                      "image": "image file", "npy": ".npy file"}.get(k, ""))
        for w in (self.limit, self.limit_label, self.batch_size, self.batch_label):
            w.setVisible(k == "images")
        images = k in ("image", "images")
        self.pre_toggle.setVisible(images)
        self.pre_box.setVisible(images and self.pre_toggle.isChecked())

    @contextmanager
    def _not_edits(self):
        """Changes made by the program, not by the user: no ``input_changed``."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def _on_input_edited(self, *_):
        if not self._quiet:
            self.input_changed.emit()

    def _runtime_changed(self, *_):
        on = self.runtime.currentData() == "legacy"
        self.legacy_cmd.setVisible(on)
        self.legacy_label.setVisible(on)

    def _browse(self):
        k = self.kind.currentData()
        if k == "images":
            path = QFileDialog.getExistingDirectory(self, "Choose the image folder", self.path.text())
            if path:
                self.path.setText(path)
            return
        filt = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)" if k == "image" else "NumPy arrays (*.npy)"
        path, _ = QFileDialog.getOpenFileName(self, "Choose input", self.path.text(), filt)
        if path:
            self.path.setText(path)

    def _browse_mean(self):
        start = self.mean.text().strip()
        path, _ = QFileDialog.getOpenFileName(self, "Choose a mean file", start if start else "",
                                              "Mean files (*.binaryproto *.npy);;All files (*)")
        if path:
            self.mean.setText(path)

    def set_runtimes(self, runtimes: list[tuple[str, bool, str]], preferred: str | None = None) -> None:
        cur = preferred or self.runtime.currentData()
        self.runtime.blockSignals(True)
        self.runtime.clear()
        model = self.runtime.model()
        for i, (name, usable, reason) in enumerate(runtimes):
            label = RUNTIME_LABELS.get(name, name)
            # legacy stays selectable while unconfigured: the user types its command here
            enabled = usable or name == "legacy"
            self.runtime.addItem(label if usable else f"{label} — unavailable", name)
            item = model.item(i)
            item.setToolTip(reason or label)
            if not enabled:
                item.setEnabled(False)
        idx = self.runtime.findData(cur)
        if idx < 0 or not model.item(idx).isEnabled():
            idx = max(0, self.runtime.findData("builtin"))
        self.runtime.setCurrentIndex(idx)
        self.runtime.blockSignals(False)
        self._runtime_changed()

    def set_model_mean(self, mean) -> None:
        self._model_mean = mean
        if mean is None:
            self.mean.setPlaceholderText("none (the model stores no mean)")
        else:
            m = np.asarray(mean)
            txt = ", ".join(f"{v:g}" for v in m.reshape(-1)) if m.ndim <= 1 else \
                "mean image " + "×".join(map(str, m.shape))
            self.mean.setPlaceholderText(f"model mean: {txt}")

    def set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)
        if running:
            self.progress.setValue(0)
            self.progress.setFormat("%p%")
            self.progress_text.setText("starting…")

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.progress.setFormat("%p%")
        self.progress_text.setText(message or "")

    def set_finished(self, state: str) -> None:
        """'done', 'cancelled' or 'failed': a cancelled or failed run does not show a full
        bar like a success; the bar keeps how far it got."""
        if state == "done":
            self.progress.setValue(1000)
            self.progress.setFormat("done")
        else:
            self.progress.setFormat(state)
        self.progress_text.setText("")

    def reset_for_model(self, graph) -> None:
        """A new model: no progress of the previous one, and image preprocessing back to
        the new model's defaults (its stored mean, the framework's channel order)."""
        with self._not_edits():
            self.progress.setValue(0)
            self.progress.setFormat("idle")
            self.progress_text.setText("")
            self.summary.setText("")
            self.mean.clear()
            self.scale.setValue(1.0)
            self.resize_model.setChecked(True)
            order = (graph.meta.get("channel_order") if graph is not None else None) or \
                ("BGR" if graph is not None and graph.framework == "caffe" else "RGB")
            self.order.setCurrentText(str(order).upper())
            self.set_model_mean(graph.meta.get("mean") if graph is not None else None)

    # ---- what to run -----------------------------------------------------------------------
    def input_spec(self):
        from ...core.inputs import InputSpec
        k = self.kind.currentData()
        if k == "random":
            return InputSpec(kind="random", seed=int(self.seed.value()))
        path = self.path.text().strip()
        if not path:
            raise MigratorError(f"choose an input file for the '{k}' input")
        if k == "npy":
            return InputSpec(kind="npy", path=path)
        pre = self._preprocessing()
        pre.resize = None if self.resize_model.isChecked() else (int(self.resize_h.value()),
                                                                 int(self.resize_w.value()))
        if k == "images":
            return InputSpec(kind="images", path=path, preprocessing=pre,
                             limit=int(self.limit.value()) or None, batch_size=int(self.batch_size.value()))
        return InputSpec(kind="image", path=path, preprocessing=pre)

    def _preprocessing(self):
        from ...core.inputs import ImagePreprocessing
        from ...core.inputs import parse_mean as core_parse_mean
        mean, mean_file = core_parse_mean(self.mean.text())
        return ImagePreprocessing(channel_order=self.order.currentText(), mean=mean,
                                  scale=float(self.scale.value()), mean_file=mean_file)

    def bake_preprocessing(self):
        """The preprocessing to put at the exported model's front, or None (not asked for, or
        the comparison input is not an image)."""
        if not self.bake.isChecked() or self.kind.currentData() not in ("image", "images"):
            return None
        return self._preprocessing()

    def runtime_choice(self) -> tuple[str, dict]:
        name = self.runtime.currentData() or "builtin"
        settings = {}
        if name == "legacy":
            cmd = self.legacy_cmd.text().strip()
            if not cmd:
                raise MigratorError("the legacy reference needs the command of the old Python "
                                    "environment (Reference and device → Legacy command)")
            settings["command"] = cmd
        return name, settings

    # ---- settings persistence ------------------------------------------------------------------
    def load_settings(self, s) -> None:
        with self._not_edits():
            self._load_settings(s)

    def _load_settings(self, s) -> None:
        i = self.kind.findData(s.get("compare/input_kind"))
        self.kind.setCurrentIndex(max(0, i))
        self.seed.setValue(int(s.get("compare/seed")))
        self.order.setCurrentText(s.get("compare/channel_order"))
        self.scale.setValue(float(s.get("compare/scale")))
        self.legacy_cmd.setText(s.get("compare/legacy_command") or "")
        k = self.kind.currentData()
        self.path.setText(s.get(_PATH_KEYS.get(k, "compare/npy_path")) or "")
        self.limit.setValue(int(s.get("compare/images_limit") or 0))
        self.batch_size.setValue(int(s.get("compare/batch_size") or 8))

    def save_settings(self, s) -> None:
        k = self.kind.currentData()
        s.set("compare/input_kind", k)
        s.set("compare/seed", int(self.seed.value()))
        s.set("compare/channel_order", self.order.currentText())
        s.set("compare/scale", float(self.scale.value()))
        s.set("compare/legacy_command", self.legacy_cmd.text())
        s.set("compare/runtime", self.runtime.currentData() or "builtin")
        if k in _PATH_KEYS:
            s.set(_PATH_KEYS[k], self.path.text())
        s.set("compare/images_limit", int(self.limit.value()))
        s.set("compare/batch_size", int(self.batch_size.value()))
