"""pyqtgraph plots: per-channel error bars, error along the layer sequence, one channel's
reference vs Keras values, and a small histogram.

Every plot item is created once; updates go through ``setData``/``setOpts``/``setImage``.
Log scale is done by plotting log10 values and switching the axis to log labels, so bar
graphs work in log mode too.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .. import theme
from ..models.layers import fmt_num

_FLOOR = 1e-12


def _log(v: np.ndarray, floor: float) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(v, dtype=np.float64), floor))


def _floor_for(values: np.ndarray) -> float:
    pos = values[np.isfinite(values) & (values > 0)]
    if pos.size == 0:
        return _FLOOR
    return max(_FLOOR, float(pos.min()) / 10.0)



def _label_fill():
    """A translucent backdrop in the window colour, so labels stay readable over bars."""
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance()
    col = QColor(app.palette().color(QPalette.ColorRole.Base)) if app is not None else QColor("white")
    col.setAlpha(210)
    return pg.mkBrush(col)

class ChannelErrorPlot(QWidget):
    """One bar per channel: max |keras - ref| in that channel; a tolerance line; hover
    shows the channel and values; click emits ``channel_clicked(int)``."""

    channel_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "channel")
        self.plot.setLabel("left", "max |Keras − reference|")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        # two items (within / above tolerance) rather than one brush per bar: faster updates
        self.bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=0.8, y0=0,
                                    brush=theme.colour("pass"), pen=None)
        self.bad_bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=0.8, y0=0,
                                        brush=theme.colour("fail"), pen=None)
        self.plot.addItem(self.bars)
        self.plot.addItem(self.bad_bars)
        self.tol_line = pg.InfiniteLine(angle=0, movable=False,
                                        pen=pg.mkPen(theme.colour("fail"), width=1.5,
                                                     style=Qt.PenStyle.DashLine),
                                        label="tolerance", labelOpts={"position": 0.99,
                                                                      "anchors": [(1, 1), (1, 1)],
                                                                      "color": theme.colour("fail"),
                                                                      "fill": _label_fill()})
        self.tol_line.setZValue(10)       # line and label above the bars (a tall bar hid the label)
        self.plot.addItem(self.tol_line)
        self.sel_line = pg.InfiniteLine(angle=90, movable=False,
                                        pen=pg.mkPen(theme.colour("overridden"), width=1))
        self.sel_line.setVisible(False)
        self.plot.addItem(self.sel_line)
        self.title = QLabel("Per-channel error: select a compared layer")
        self.hover = QLabel(" ")
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_box = QCheckBox("log scale")
        self.log_box.setChecked(True)
        self.log_box.toggled.connect(self._replot)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.log_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.hover)
        self._err = np.zeros(0)
        self._mean = np.zeros(0)
        self._ref = np.zeros(0)
        self._tol = float("nan")
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        self.plot.scene().sigMouseClicked.connect(self._on_click)

    # ---- data ------------------------------------------------------------------------
    def set_layer(self, name: str | None, layer_result) -> None:
        r = layer_result
        if r is None or r.channel_max_abs is None:
            self._err = self._mean = self._ref = np.zeros(0)
            self._tol = float("nan")
            self.title.setText(f"Per-channel error: {name or '—'} "
                               f"({'not compared' if r is None else r.status})")
        else:
            self._err = np.asarray(r.channel_max_abs, dtype=np.float64)
            self._mean = np.asarray(r.channel_mean_abs if r.channel_mean_abs is not None
                                    else np.full_like(self._err, np.nan), dtype=np.float64)
            self._ref = np.asarray(r.channel_ref_absmax if r.channel_ref_absmax is not None
                                   else np.full_like(self._err, np.nan), dtype=np.float64)
            self._tol = (r.tolerance.atol + r.tolerance.rtol * r.scale
                         if r.tolerance is not None and np.isfinite(r.scale) else float("nan"))
            self.title.setText(f"Per-channel error of <b>{name}</b> ({len(self._err)} channels, "
                               f"{r.status}; worst channel {r.worst_channel})")
        self.sel_line.setVisible(False)
        self._replot()

    def set_log(self, on: bool) -> None:
        self.log_box.setChecked(on)

    def _replot(self, *_):
        err = self._err
        n = len(err)
        x = np.arange(n, dtype=np.float64)
        tol_ok = bool(np.isfinite(self._tol))
        fails = (err > self._tol) if tol_ok else np.zeros(n, bool)
        log = self.log_box.isChecked()
        self.plot.getAxis("left").setLogMode(log)
        if log:
            floor = _floor_for(np.append(err, self._tol if tol_ok else np.nan))
            y0 = float(np.log10(floor))
            h = _log(err, floor) - y0
        else:
            y0 = 0.0
            h = np.nan_to_num(err, posinf=0.0)
        ok = ~fails
        self.bars.setOpts(x=x[ok], height=h[ok], y0=y0, width=0.8, brush=theme.colour("pass"))
        self.bad_bars.setOpts(x=x[fails], height=h[fails], y0=y0, width=0.8, brush=theme.colour("fail"))
        show_tol = tol_ok and (self._tol > 0 or not log)
        self.tol_line.setVisible(show_tol)
        if show_tol:
            self.tol_line.setPos(np.log10(self._tol) if log else self._tol)
        if n:
            self.plot.setXRange(-1, n, padding=0.01)
            self.plot.enableAutoRange(axis="y")

    def mark_channel(self, ch: int) -> None:
        self.sel_line.setPos(ch)
        self.sel_line.setVisible(True)

    # ---- interaction --------------------------------------------------------------------
    def _channel_at(self, scene_pos) -> int | None:
        vb = self.plot.getPlotItem().vb
        if not self.plot.sceneBoundingRect().contains(scene_pos) or len(self._err) == 0:
            return None
        p = vb.mapSceneToView(scene_pos)
        ch = round(p.x())
        return ch if 0 <= ch < len(self._err) else None

    def describe_channel(self, ch: int) -> str:
        return (f"channel {ch}: max abs {fmt_num(self._err[ch])}, mean abs {fmt_num(self._mean[ch])}, "
                f"reference max |value| {fmt_num(self._ref[ch])}, tolerance {fmt_num(self._tol)}")

    def _on_move(self, pos):
        ch = self._channel_at(pos)
        self.hover.setText(self.describe_channel(ch) if ch is not None else " ")

    def _on_click(self, ev):
        ch = self._channel_at(ev.scenePos())
        if ch is not None:
            self.mark_channel(ch)
            self.channel_clicked.emit(ch)


class OverviewPlot(QWidget):
    """Max abs error of every compared layer along the layer sequence (log scale), with
    each layer's tolerance; failing layers red; click a point to select that layer."""

    layer_clicked = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "layer (graph order)")
        self.plot.setLabel("left", "max abs error")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("left").setLogMode(True)
        self.tol_curve = pg.PlotDataItem(pen=pg.mkPen(theme.colour("fail"), width=1,
                                                      style=Qt.PenStyle.DashLine), name="tolerance")
        self.err_curve = pg.PlotDataItem(pen=pg.mkPen(theme.colour("muted"), width=1))
        self.points = pg.ScatterPlotItem(size=7, pen=None)
        self.first_line = pg.InfiniteLine(angle=90, movable=False,
                                          pen=pg.mkPen(theme.colour("fail"), width=1))
        self.first_line.setVisible(False)
        self.sel_line = pg.InfiniteLine(angle=90, movable=False,
                                        pen=pg.mkPen(theme.colour("overridden"), width=1))
        self.sel_line.setVisible(False)
        for it in (self.tol_curve, self.err_curve, self.points, self.first_line, self.sel_line):
            self.plot.addItem(it)
        self.points.sigClicked.connect(self._on_points_clicked)
        self.title = QLabel("Error along the layer sequence")
        self.hover = QLabel(" ")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.hover)
        self._names: list[str] = []
        self._x: dict[str, int] = {}
        self._vals = np.zeros(0)
        self.plot.scene().sigMouseMoved.connect(self._on_move)

    def set_result(self, result) -> None:
        layers = [r for r in (result.layers if result is not None else [])
                  if r.status in ("pass", "fail")]
        self._names = [r.source for r in layers]
        self._x = {n: i for i, n in enumerate(self._names)}
        err = np.array([r.max_abs for r in layers], dtype=np.float64)
        tol = np.array([(r.tolerance.atol + r.tolerance.rtol * r.scale) if r.tolerance else np.nan
                        for r in layers], dtype=np.float64)
        self._vals = err
        floor = _floor_for(np.concatenate([err, tol])) if len(err) else _FLOOR
        x = np.arange(len(err), dtype=np.float64)
        ly, lt = _log(err, floor), _log(tol, floor)
        self.err_curve.setData(x, ly)
        self.tol_curve.setData(x, lt)
        ok, bad = pg.mkBrush(theme.colour("pass")), pg.mkBrush(theme.colour("fail"))
        brushes = [bad if r.status == "fail" else ok for r in layers]
        self.points.setData(x=x, y=ly, brush=brushes, data=self._names)
        fd = result.first_divergent if result is not None else None
        if fd is not None and fd.source in self._x:
            self.first_line.setPos(self._x[fd.source])
            self.first_line.setVisible(True)
        else:
            self.first_line.setVisible(False)
        n_fail = sum(1 for r in layers if r.status == "fail")
        self.title.setText(f"Error along the layer sequence: {len(layers)} compared, "
                           f"{n_fail} failing" + (f"; first divergent: <b>{fd.source}</b>" if fd else ""))
        if len(x):
            self.plot.setXRange(-0.5, len(x) - 0.5, padding=0.02)
            self.plot.enableAutoRange(axis="y")

    def mark_layer(self, name: str | None) -> None:
        if name in self._x:
            self.sel_line.setPos(self._x[name])
            self.sel_line.setVisible(True)
        else:
            self.sel_line.setVisible(False)

    def _on_points_clicked(self, item, points, *args):
        if len(points):
            self.layer_clicked.emit(points[0].data())

    def _on_move(self, pos):
        vb = self.plot.getPlotItem().vb
        if not self.plot.sceneBoundingRect().contains(pos) or not self._names:
            return
        i = round(vb.mapSceneToView(pos).x())
        if 0 <= i < len(self._names):
            self.hover.setText(f"{self._names[i]}: max abs {fmt_num(self._vals[i])}")


class ChannelValuesView(QWidget):
    """One channel of one layer: reference and Keras feature maps side by side (and their
    difference), or a reference-vs-Keras scatter for 1-D outputs."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("Click a channel in the per-channel plot to see its values")
        self.glw = pg.GraphicsLayoutWidget()
        for col, text in enumerate(("reference (source semantics)", "Keras", "|Keras − reference|")):
            self.glw.addLabel(text, row=0, col=col)
        self.ref_vb = self.glw.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
        self.keras_vb = self.glw.addViewBox(row=1, col=1, lockAspect=True, invertY=True)
        self.diff_vb = self.glw.addViewBox(row=1, col=2, lockAspect=True, invertY=True)
        self.keras_vb.setXLink(self.ref_vb)
        self.keras_vb.setYLink(self.ref_vb)
        self.diff_vb.setXLink(self.ref_vb)
        self.diff_vb.setYLink(self.ref_vb)
        self.ref_img = pg.ImageItem(axisOrder="row-major")
        self.keras_img = pg.ImageItem(axisOrder="row-major")
        self.diff_img = pg.ImageItem(axisOrder="row-major")
        self.ref_vb.addItem(self.ref_img)
        self.keras_vb.addItem(self.keras_img)
        self.diff_vb.addItem(self.diff_img)
        self.labels = QLabel("Same colour scale for reference and Keras; the difference has its own.")
        self.scatter_plot = pg.PlotWidget()
        self.scatter_plot.setLabel("bottom", "reference")
        self.scatter_plot.setLabel("left", "Keras")
        self.scatter = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(theme.colour("overridden")))
        self.diag = pg.PlotDataItem(pen=pg.mkPen(theme.colour("muted"), style=Qt.PenStyle.DashLine))
        self.scatter_plot.addItem(self.diag)
        self.scatter_plot.addItem(self.scatter)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addWidget(self.labels)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.scatter_plot, 1)
        self.scatter_plot.hide()

    def clear(self, message: str = "Click a channel in the per-channel plot to see its values") -> None:
        self.title.setText(message)
        z = np.zeros((1, 1), np.float32)
        for it in (self.ref_img, self.keras_img, self.diff_img):
            it.setImage(z)
        self.scatter.setData(x=[], y=[])

    def show_values(self, source: str, channel: int, ref: np.ndarray, got: np.ndarray) -> None:
        ref = np.asarray(ref, dtype=np.float32)
        got = np.asarray(got, dtype=np.float32)
        diff = np.abs(got.astype(np.float64) - ref)
        self.title.setText(f"<b>{source}</b>, channel {channel}: max |difference| "
                           f"{fmt_num(diff.max() if diff.size else 0)}, reference range "
                           f"[{fmt_num(ref.min() if ref.size else 0)}, {fmt_num(ref.max() if ref.size else 0)}]")
        if ref.ndim >= 2:
            ref2 = ref.reshape(ref.shape[-2], ref.shape[-1])
            got2 = got.reshape(ref2.shape)
            lo, hi = float(min(ref2.min(), got2.min())), float(max(ref2.max(), got2.max()))
            if hi <= lo:
                hi = lo + 1e-6
            self.ref_img.setImage(ref2, levels=(lo, hi))
            self.keras_img.setImage(got2, levels=(lo, hi))
            d2 = diff.reshape(ref2.shape)
            self.diff_img.setImage(d2, levels=(0, max(float(d2.max()), 1e-30)))
            self.ref_vb.autoRange()
            self.glw.show()
            self.labels.show()
            self.scatter_plot.hide()
        else:
            r1, g1 = ref.reshape(-1), got.reshape(-1)
            self.scatter.setData(x=r1, y=g1)
            if r1.size:
                lo, hi = float(min(r1.min(), g1.min())), float(max(r1.max(), g1.max()))
                self.diag.setData([lo, hi], [lo, hi])
            self.glw.hide()
            self.labels.hide()
            self.scatter_plot.show()


class Histogram(pg.PlotWidget):
    """A small histogram of per-channel values (mapping inspector)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0,
                                     brush=pg.mkBrush(theme.colour("overridden")),
                                     pen=pg.mkPen(theme.colour("overridden")))
        self.addItem(self.curve)
        self.setMaximumHeight(140)
        self.setMinimumHeight(90)

    def set_values(self, title: str, values) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1) if values is not None else np.zeros(0)
        v = v[np.isfinite(v)]
        if v.size == 0:
            self.curve.setData([0, 1], [0])
            self.setTitle("<span style='font-size:9pt'>Select a per-channel parameter to see its "
                          "histogram</span>")
            return
        bins = int(min(40, max(5, np.sqrt(v.size) * 2)))
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        h, edges = np.histogram(v, bins=bins, range=(lo, hi))
        self.curve.setData(edges, h)
        self.setTitle(f"<span style='font-size:9pt'>{title}: {v.size} values, min {fmt_num(lo)}, "
                      f"mean {fmt_num(v.mean())}, max {fmt_num(hi)}</span>")
        self.enableAutoRange()
