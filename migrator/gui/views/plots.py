"""pyqtgraph plots: per-channel error bars, error along the layer sequence, one channel's
reference vs Keras values, and a small histogram.

Every plot item is created once; updates go through ``setData``/``setOpts``/``setImage``.
Log scale is done by plotting log10 values and switching the axis to log labels, so bar
graphs work in log mode too.
"""
from __future__ import annotations

from typing import ClassVar

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



def _fg():
    return pg.mkColor(pg.getConfigOption("foreground"))


def _swatch(colour, text: str, shape: str = "■") -> str:
    c = colour.name() if hasattr(colour, "name") else str(colour)
    return f"<span style='color:{c}'>{shape}</span>&nbsp;{text}"


def _sel_pen():
    """The selected channel or layer: 2 px in a colour that stands out in both themes."""
    return pg.mkPen(theme.colour("selected"), width=2)


def _label_fill():
    """A plot label's background: the plot's own, mostly opaque (the label stays readable
    over the grid)."""
    c = pg.mkColor(pg.getConfigOption("background"))
    c.setAlpha(210)
    return pg.mkBrush(c)


def restyle(pw, labels: dict[str, str] | None = None) -> None:
    """Apply the current pyqtgraph colours (set by :func:`theme.apply_theme`) to an existing
    PlotWidget: background, axes, tick labels and axis titles."""
    pw.setBackground(pg.getConfigOption("background"))
    fg = _fg()
    pi = pw.getPlotItem()
    for name in ("left", "bottom"):
        ax = pi.getAxis(name)
        ax.setPen(pg.mkPen(fg))
        ax.setTextPen(pg.mkPen(fg))
    for name, text in (labels or {}).items():
        pi.setLabel(name, text, color=fg.name())
    pw.update()


def error_plot(labels: dict[str, str]):
    """A PlotWidget for errors: no context menu, horizontal grid lines, the axis titles
    ``labels`` and plain (not SI-prefixed) numbers on the left axis."""
    pw = pg.PlotWidget()
    pw.setMenuEnabled(False)
    pw.showGrid(x=False, y=True, alpha=0.25)
    for k, v in labels.items():
        pw.setLabel(k, v)
    pw.getAxis("left").enableAutoSIPrefix(False)
    return pw


class ChannelErrorPlot(QWidget):
    """One bar per channel: max |keras - ref| in that channel; a tolerance line; hover
    shows the channel and values; click emits ``channel_clicked(int)``.

    Channels whose error is exactly 0 get a short grey stub (in a log plot they have no
    height); a legend line above the plot names every colour and line."""

    channel_clicked = Signal(int)
    LABELS: ClassVar[dict[str, str]] = {"bottom": "channel", "left": "max |Keras − reference|"}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = error_plot(self.LABELS)
        # two items (within / above tolerance) rather than one brush per bar: faster updates
        self.bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=0.8, y0=0,
                                    brush=theme.colour("pass"), pen=None)
        self.bad_bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=0.8, y0=0,
                                        brush=theme.colour("fail"), pen=None)
        self.zero_bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=0.8, y0=0,
                                         brush=theme.colour("muted"), pen=None)
        self.plot.addItem(self.bars)
        self.plot.addItem(self.bad_bars)
        self.plot.addItem(self.zero_bars)
        self.tol_line = pg.InfiniteLine(angle=0, movable=False,
                                        pen=pg.mkPen(theme.colour("fail"), width=1.5,
                                                     style=Qt.PenStyle.DashLine))
        self.tol_line.setZValue(10)       # the line above the bars
        self.plot.addItem(self.tol_line)
        self.sel_line = pg.InfiniteLine(angle=90, movable=False, pen=_sel_pen())
        self.sel_line.setZValue(11)
        self.sel_line.setVisible(False)
        self.plot.addItem(self.sel_line)
        self.title = QLabel("Per-channel error: select a compared layer")
        self.title.setMinimumWidth(10)
        self.title.setWordWrap(True)
        self.legend = QLabel(" ")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setMinimumWidth(10)
        self.hover = QLabel(" ")
        self.hover.setMinimumWidth(10)
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
        lay.addWidget(self.legend)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.hover)
        self._err = np.zeros(0)
        self._mean = np.zeros(0)
        self._ref = np.zeros(0)
        self._tol = float("nan")
        self._name: str | None = None
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self._replot()            # the axis matches the "log scale" box from the start

    # ---- data ------------------------------------------------------------------------
    def set_layer(self, name: str | None, layer_result) -> None:
        r = layer_result
        self._name = name if (r is not None and r.channel_max_abs is not None) else None
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
        self.title.setToolTip(self.title.text().replace("<b>", "").replace("</b>", ""))
        self.sel_line.setVisible(False)
        self.hover.setText(" ")            # a readout of the previous layer would be stale
        self._replot()

    @property
    def layer_name(self) -> str | None:
        """The layer whose channels are shown (None when nothing is plotted)."""
        return self._name

    def set_log(self, on: bool) -> None:
        self.log_box.setChecked(on)

    def _replot(self, *_):
        err = self._err
        n = len(err)
        x = np.arange(n, dtype=np.float64)
        tol_ok = bool(np.isfinite(self._tol))
        zero = err == 0
        fails = (err > self._tol) if tol_ok else np.zeros(n, bool)
        log = self.log_box.isChecked()
        self.plot.getAxis("left").setLogMode(log)
        if log:
            floor = _floor_for(np.append(err, self._tol if tol_ok else np.nan))
            y0 = float(np.log10(floor))
            h = _log(err, floor) - y0
            top = float(np.nanmax(np.append(h, (np.log10(self._tol) - y0) if tol_ok and self._tol > 0
                                            else 0.0))) if n else 1.0
            stub = max(top, 1.0) * 0.04
        else:
            y0 = 0.0
            h = np.nan_to_num(err, posinf=0.0)
            top = float(max(h.max() if n else 0.0, self._tol if tol_ok else 0.0))
            stub = (top or 1.0) * 0.02
        ok = ~fails & ~zero
        self.bars.setOpts(x=x[ok], height=h[ok], y0=y0, width=0.8, brush=theme.colour("pass"))
        self.bad_bars.setOpts(x=x[fails], height=h[fails], y0=y0, width=0.8, brush=theme.colour("fail"))
        self.zero_bars.setOpts(x=x[zero], height=np.full(int(zero.sum()), stub), y0=y0, width=0.8,
                               brush=theme.colour("muted"))
        show_tol = tol_ok and (self._tol > 0 or not log)
        self.tol_line.setVisible(show_tol)
        if show_tol:
            self.tol_line.setPos(np.log10(self._tol) if log else self._tol)
        # an empty plot has no axes of its own: no tick values, a neutral range (not the
        # previous model's channels and errors)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setStyle(showValues=bool(n))
        if not n:
            self.plot.setXRange(0, 1, padding=0)
            self.plot.setYRange(0, 1, padding=0)
        if n:
            self.plot.setXRange(-0.6, n - 0.4, padding=0.01)
            # room above the highest bar and the tolerance line
            if log:
                self.plot.setYRange(y0, y0 + max(top, 1.0) * 1.08 + 0.15, padding=0)
            else:
                self.plot.setYRange(0, (top or 1.0) * 1.12, padding=0)
        self._legend(n, int(fails.sum()), int(zero.sum()), show_tol)

    def _legend(self, n: int, n_fail: int, n_zero: int, show_tol: bool) -> None:
        if not n:
            self.legend.setText(" ")
            return
        parts = [_swatch(theme.colour("pass"), "within tolerance")]
        if n_fail:
            parts.append(_swatch(theme.colour("fail"), f"above tolerance ({n_fail})"))
        if n_zero:
            parts.append(_swatch(theme.colour("muted"), f"exactly 0 ({n_zero})"))
        if show_tol:
            parts.append(_swatch(theme.colour("fail"), f"tolerance {fmt_num(self._tol)}", "╌╌"))
        parts.append(_swatch(theme.colour("selected"), "<b>selected channel (click)</b>", "<b>|</b>"))
        self.legend.setText("&nbsp;&nbsp; ".join(parts))

    def mark_channel(self, ch: int) -> None:
        self.sel_line.setPos(ch)
        self.sel_line.setVisible(True)

    def apply_theme(self) -> None:
        restyle(self.plot, self.LABELS)
        self.tol_line.setPen(pg.mkPen(theme.colour("fail"), width=1.5, style=Qt.PenStyle.DashLine))
        self.sel_line.setPen(_sel_pen())
        self._replot()

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
    each layer's tolerance; failing layers red; click a point to select that layer.

    The x axis is the row number of the results table ("#"), so both number a layer
    the same way; an error of exactly 0 is drawn as a hollow grey marker on the floor
    (not joined to the error line), and the selected and first divergent layers are
    named on the plot."""

    layer_clicked = Signal(str)
    LABELS: ClassVar[dict[str, str]] = {"bottom": "layer # (as in the results table)",
                                        "left": "max abs error"}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = error_plot(self.LABELS)
        self.plot.getAxis("left").setLogMode(True)
        self.tol_curve = pg.PlotDataItem(connect="finite", name="tolerance")
        self.err_curve = pg.PlotDataItem(connect="finite")
        self.points = pg.ScatterPlotItem(size=7, pen=None)
        self.zero_points = pg.ScatterPlotItem(size=7, brush=None, symbol="o")
        self.first_line = pg.InfiniteLine(angle=90, movable=False)
        self.first_line.setVisible(False)
        self.sel_line = pg.InfiniteLine(angle=90, movable=False)
        self.sel_line.setVisible(False)
        # the layer names hang from the top of the plot, in headroom kept free of data
        # (at the point they covered the points around it): first divergent left of its
        # line, selected right of its line
        self.first_text = pg.TextItem(anchor=(1, 0))
        self.sel_text = pg.TextItem(anchor=(0, 0))
        for it in (self.tol_curve, self.err_curve, self.points, self.zero_points, self.first_line,
                   self.sel_line, self.first_text, self.sel_text):
            self.plot.addItem(it)
        self._pens()
        self.points.sigClicked.connect(self._on_points_clicked)
        self.zero_points.sigClicked.connect(self._on_points_clicked)
        self.title = QLabel("Error along the layer sequence")
        self.title.setMinimumWidth(10)
        self.legend = QLabel(" ")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setMinimumWidth(10)
        self.hover = QLabel(" ")
        self.hover.setMinimumWidth(10)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addWidget(self.legend)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.hover)
        self._names: list[str] = []
        self._x: dict[str, int] = {}
        self._y: dict[str, float] = {}
        self._vals = np.zeros(0)
        self._top = 0.0
        self._label_y = 1.0
        self._bottom = 0.0
        self.plot.scene().sigMouseMoved.connect(self._on_move)

    def _pens(self) -> None:
        self.tol_curve.setPen(pg.mkPen(theme.colour("fail"), width=1, style=Qt.PenStyle.DashLine))
        self.err_curve.setPen(pg.mkPen(theme.colour("muted"), width=1))
        self.zero_points.setPen(pg.mkPen(theme.colour("muted"), width=1.5))
        self.first_line.setPen(pg.mkPen(theme.colour("fail"), width=1))
        self.sel_line.setPen(_sel_pen())
        self.first_text.setColor(theme.colour("fail"))
        self.sel_text.setColor(theme.colour("selected"))
        for t in (self.first_text, self.sel_text):
            t.fill = _label_fill()
            t.update()

    def set_result(self, result) -> None:
        all_layers = list(result.layers) if result is not None else []
        layers = [(i + 1, r) for i, r in enumerate(all_layers) if r.status in ("pass", "fail")]
        self._names = [r.source for _, r in layers]
        self._x = {r.source: i for i, r in layers}
        err = np.array([r.max_abs for _, r in layers], dtype=np.float64)
        tol = np.array([(r.tolerance.atol + r.tolerance.rtol * r.scale) if r.tolerance else np.nan
                        for _, r in layers], dtype=np.float64)
        self._vals = err
        floor = _floor_for(np.concatenate([err, tol])) if len(err) else _FLOOR
        x = np.array([i for i, _ in layers], dtype=np.float64)
        zero = err == 0
        ly = _log(err, floor)
        ly_line = np.where(zero, np.nan, ly)          # an exact 0 is not an error at the floor
        lt = np.where(tol > 0, _log(tol, floor), np.nan)
        self.err_curve.setData(x, ly_line)
        self.tol_curve.setData(x, lt)
        ok, bad = pg.mkBrush(theme.colour("pass")), pg.mkBrush(theme.colour("fail"))
        nz = ~zero
        brushes = [bad if r.status == "fail" else ok for (_, r), z in zip(layers, zero) if not z]
        names = np.array(self._names, dtype=object)
        self.points.setData(x=x[nz], y=ly[nz], brush=brushes, data=list(names[nz]))
        self.zero_points.setData(x=x[zero], y=np.full(int(zero.sum()), np.log10(floor)),
                                 data=list(names[zero]))
        self._y = {n: float(v) for n, v in zip(self._names, ly)}
        self._top = float(np.nanmax(np.append(ly, lt))) if len(ly) else 0.0
        bottom = float(np.log10(floor))
        if len(ly):
            bottom = min(bottom, float(np.nanmin(np.append(ly, lt))))
        span = max(self._top - bottom, 1.0)
        # headroom above the highest point for the layer names (about two text lines)
        self._label_y = self._top + max(0.3 * span, 0.8)
        self._bottom = bottom - 0.05 * span
        fd = result.first_divergent if result is not None else None
        if fd is not None and fd.source in self._x:
            self.first_line.setPos(self._x[fd.source])
            self.first_line.setVisible(True)
            self.first_text.setText(fd.source)
            self.first_text.setPos(self._x[fd.source], self._label_y)
            self.first_text.setVisible(True)
        else:
            self.first_line.setVisible(False)
            self.first_text.setVisible(False)
        n_fail = sum(1 for _, r in layers if r.status == "fail")
        self.title.setText(f"Error along the layer sequence: {len(layers)} compared, "
                           f"{n_fail} failing" + (f"; first divergent: <b>{fd.source}</b>" if fd else ""))
        self.hover.setText(" ")
        if len(x):
            parts = [_swatch(theme.colour("pass"), "pass", "●")]
            if n_fail:
                parts.append(_swatch(theme.colour("fail"), "fail", "●"))
            if zero.any():
                parts.append(_swatch(theme.colour("muted"), f"exactly 0 ({int(zero.sum())})", "○"))
            parts.append(_swatch(theme.colour("fail"), "tolerance", "╌╌"))
            if fd is not None:
                parts.append(_swatch(theme.colour("fail"), "first divergent", "│"))
            parts.append(_swatch(theme.colour("selected"), "<b>selected layer</b>", "<b>|</b>"))
            self.legend.setText("&nbsp;&nbsp; ".join(parts))
            self.plot.setXRange(0.5, len(all_layers) + 0.5, padding=0.02)
            self.plot.setYRange(self._bottom, self._label_y, padding=0.02)
        else:
            self.legend.setText(" ")
        self.mark_layer(None)

    def mark_layer(self, name: str | None) -> None:
        if name in self._x:
            self.sel_line.setPos(self._x[name])
            self.sel_line.setVisible(True)
            self.sel_text.setText(name)
            self.sel_text.setPos(self._x[name], self._label_y)
            self.sel_text.setVisible(True)
        else:
            self.sel_line.setVisible(False)
            self.sel_text.setVisible(False)

    def apply_theme(self) -> None:
        restyle(self.plot, self.LABELS)
        self._pens()

    def _on_points_clicked(self, item, points, *args):
        if len(points):
            self.layer_clicked.emit(points[0].data())

    def _on_move(self, pos):
        vb = self.plot.getPlotItem().vb
        if not self.plot.sceneBoundingRect().contains(pos) or not self._names:
            return
        i = round(vb.mapSceneToView(pos).x())
        for k, name in enumerate(self._names):
            if self._x[name] == i:
                v = self._vals[k]
                self.hover.setText(f"#{i} {name}: max abs {'0 (exact)' if v == 0 else fmt_num(v)}")
                return


class ChannelValuesView(QWidget):
    """One channel of one layer: reference and Keras feature maps side by side (and their
    difference), or a reference-vs-Keras scatter for 1-D outputs.

    Each image has its own view box ranged to the whole map (linked boxes of different
    widths showed only part of the last map)."""

    HEADS = ("reference", "Keras", "|Keras − reference|")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("Click a channel in the per-channel plot to see its values")
        self.title.setMinimumWidth(10)
        # three graphics views in a row with equal stretch: one graphics layout sized its
        # columns by their header texts, which gave the images boxes of different widths
        self.glw = QWidget()
        row = QHBoxLayout(self.glw)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.glws, self.heads, vbs, self.bars = [], [], [], []
        self.ref_img = pg.ImageItem(axisOrder="row-major")
        self.keras_img = pg.ImageItem(axisOrder="row-major")
        self.diff_img = pg.ImageItem(axisOrder="row-major")
        for text, img, cmap in zip(self.HEADS, (self.ref_img, self.keras_img, self.diff_img),
                                   ("viridis", "viridis", "inferno")):
            g = pg.GraphicsLayoutWidget()
            self.heads.append(g.addLabel(text, row=0, col=0, colspan=2))
            vb = g.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
            vb.addItem(img)
            vbs.append(vb)
            # each image its colour scale (the same for reference and Keras), read-only
            bar = pg.ColorBarItem(values=(0, 1), width=12, colorMap=cmap, interactive=False,
                                  colorMapMenu=False)
            bar.setImageItem(img)
            g.addItem(bar, row=1, col=1)
            self.bars.append(bar)
            self.glws.append(g)
            row.addWidget(g, 1)
        self.ref_vb, self.keras_vb, self.diff_vb = vbs
        self.labels = QLabel("Same colour scale for reference and Keras; the difference has its own.")
        self.labels.setMinimumWidth(10)
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

    @property
    def view_boxes(self):
        return (self.ref_vb, self.keras_vb, self.diff_vb)

    def _fit(self) -> None:
        for vb, img in zip(self.view_boxes, (self.ref_img, self.keras_img, self.diff_img)):
            w, h = img.width() or 1, img.height() or 1
            vb.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def clear(self, message: str = "Click a channel in the per-channel plot to see its values") -> None:
        self.title.setText(message)
        z = np.zeros((1, 1), np.float32)
        for it in (self.ref_img, self.keras_img, self.diff_img):
            it.setImage(z)
        self.scatter.setData(x=[], y=[])
        self._fit()                # no ranges sized for the previous model's maps

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
            d2 = diff.reshape(ref2.shape)
            dl = (0.0, max(float(d2.max()), 1e-30))
            for img, bar, data, lv in zip((self.ref_img, self.keras_img, self.diff_img), self.bars,
                                          (ref2, got2, d2), ((lo, hi), (lo, hi), dl)):
                img.setImage(data, levels=lv)
                bar.setLevels(lv)
            self.glw.show()
            self.labels.show()
            self.scatter_plot.hide()
            self._fit()
        else:
            r1, g1 = ref.reshape(-1), got.reshape(-1)
            self.scatter.setData(x=r1, y=g1)
            if r1.size:
                lo, hi = float(min(r1.min(), g1.min())), float(max(r1.max(), g1.max()))
                self.diag.setData([lo, hi], [lo, hi])
            self.glw.hide()
            self.labels.hide()
            self.scatter_plot.show()

    def apply_theme(self) -> None:
        for g in self.glws:
            g.setBackground(pg.getConfigOption("background"))
        for lab, text in zip(self.heads, self.HEADS):
            lab.setText(text, color=_fg().name())
        for bar in self.bars:
            ax = bar.getAxis("right")
            ax.setPen(pg.mkPen(_fg()))
            ax.setTextPen(pg.mkPen(_fg()))
        restyle(self.scatter_plot, {"bottom": "reference", "left": "Keras"})


class Histogram(pg.PlotWidget):
    """A small histogram of per-channel values (mapping inspector)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0)
        self.addItem(self.curve)
        self.setMaximumHeight(140)
        self.setMinimumHeight(70)
        self._title = ""
        self.apply_theme()

    def _set_title(self, text: str) -> None:
        self._title = text
        self.setTitle(f"<span style='font-size:9pt; color:{_fg().name()}'>{text}</span>")

    def apply_theme(self) -> None:
        """Background, axes and title in the current theme's colours."""
        restyle(self)
        self.curve.setBrush(pg.mkBrush(theme.colour("overridden")))
        self.curve.setPen(pg.mkPen(theme.colour("overridden")))
        self._set_title(self._title)

    def set_values(self, title: str, values) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1) if values is not None else np.zeros(0)
        v = v[np.isfinite(v)]
        if v.size == 0:
            self.curve.setData([0, 1], [0])
            self._set_title("Select a per-channel parameter to see its histogram")
            for ax in ("left", "bottom"):
                self.hideAxis(ax)
            return
        for ax in ("left", "bottom"):
            self.showAxis(ax)
        bins = int(min(40, max(5, np.sqrt(v.size) * 2)))
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        h, edges = np.histogram(v, bins=bins, range=(lo, hi))
        self.curve.setData(edges, h)
        # the plot is short: label 0 and the highest count only (three labels overlapped)
        top = int(h.max())
        self.getAxis("left").setTicks([[(0, "0"), (top, str(top))], []])
        self._set_title(f"{title}: {v.size} values, min {fmt_num(lo)}, mean {fmt_num(v.mean())}, "
                        f"max {fmt_num(hi)}")
        self.enableAutoRange()
