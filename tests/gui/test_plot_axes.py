"""Plots: no axes of a previous model, colour scales on the channel images, a selected
channel or layer that stands out in the dark theme and whose label hides no data."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from .conftest import open_model, run_compare


def _ranges(plot):
    (x0, x1), (y0, y1) = plot.plot.getPlotItem().vb.viewRange()
    return x0, x1, y0, y1


def _shows_ticks(plot) -> bool:
    return any(plot.plot.getAxis(a).style["showValues"] for a in ("left", "bottom"))


def test_channel_plot_forgets_the_previous_model(qtbot, window, demos):
    win = window
    cp = win.channel_plot
    # first start: an empty plot without made-up ticks
    assert not _shows_ticks(cp)
    assert _ranges(cp) == pytest.approx((0, 1, 0, 1))
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    win.select_source("conv1")
    qtbot.wait(20)
    n = len(cp._err)
    assert n > 1 and _shows_ticks(cp)
    assert _ranges(cp)[1] >= n - 1
    # another model: its layers are not compared; nothing of conv1's axes remains
    open_model(qtbot, win, demos["lasagne"])
    qtbot.wait(20)
    assert not _shows_ticks(cp) and _ranges(cp) == pytest.approx((0, 1, 0, 1))
    win.select_source(win.doc.next_batchnorm(None))
    qtbot.wait(20)
    assert "not compared" in cp.title.text()
    assert not _shows_ticks(cp) and _ranges(cp) == pytest.approx((0, 1, 0, 1))


def test_channel_images_have_colour_scales(qtbot):
    from migrator.gui.views.plots import ChannelValuesView
    v = ChannelValuesView()
    qtbot.addWidget(v)
    v.resize(900, 300)
    v.show()
    ref = np.linspace(-2, 3, 48).reshape(6, 8).astype(np.float32)
    got = ref + np.float32(0.01) * np.arange(48, dtype=np.float32).reshape(6, 8) / 48
    v.show_values("conv1", 3, ref, got)
    qtbot.wait(20)
    lo, hi = float(min(ref.min(), got.min())), float(max(ref.max(), got.max()))
    ref_bar, keras_bar, diff_bar = v.bars
    # the same scale for reference and Keras, with the numbers of the data; its own for the difference
    assert ref_bar.levels() == pytest.approx((lo, hi)) and keras_bar.levels() == pytest.approx((lo, hi))
    dmax = float(np.abs(got.astype(np.float64) - ref).max())
    assert diff_bar.levels() == pytest.approx((0, dmax), rel=1e-5)
    for bar, img in zip(v.bars, (v.ref_img, v.keras_img, v.diff_img)):
        assert bar.isVisible() and bar.getAxis("right").isVisible()
        assert img.getLevels() == pytest.approx(bar.levels())
        assert img.lut is not None or img.getColorMap() is not None      # coloured, not grey
    # the scale is drawn beside its image, not over it
    for g, bar in zip(v.glws, v.bars):
        img_box = g.ci.getItem(1, 0).sceneBoundingRect()
        assert not img_box.intersects(bar.sceneBoundingRect())


def _contrast(a, b) -> float:
    def lum(c):
        ch = [x / 255 for x in (c.red(), c.green(), c.blue())]
        ch = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    la, lb = sorted((lum(a), lum(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("theme_name", ["dark", "light"])
def test_selected_channel_and_layer_stand_out_and_hide_no_data(qtbot, window, demos, theme_name):
    from migrator.gui import theme
    win = window
    win.set_theme(theme_name)
    try:
        open_model(qtbot, win, demos["caffe"])
        run_compare(qtbot, win)
        win.plot_tabs.setCurrentWidget(win.overview_plot)
        names = win.overview_plot._names
        mid = names[len(names) // 2]
        win.select_source(mid)
        qtbot.wait(50)
        bg = pg.mkColor(pg.getConfigOption("background"))
        sel = theme.colour("selected")
        assert _contrast(sel, bg) >= 4.5
        for line in (win.channel_plot.sel_line, win.overview_plot.sel_line):
            assert line.pen.color().name() == sel.name() and line.pen.widthF() >= 2
        assert sel.name() in win.channel_plot.legend.text() or sel.name() in win.overview_plot.legend.text()
        # the selected layer's name covers none of the points
        ov = win.overview_plot
        assert ov.sel_text.isVisible() and ov.sel_text.textItem.toPlainText() == mid
        label = ov.sel_text.sceneBoundingRect()
        vb = ov.plot.getPlotItem().vb
        for sp in (ov.points, ov.zero_points):
            for p in sp.points():
                assert not label.contains(vb.mapViewToScene(p.pos())), p.data()
        if ov.first_text.isVisible():
            first = ov.first_text.sceneBoundingRect()
            for p in ov.points.points():
                assert not first.contains(vb.mapViewToScene(p.pos()))
    finally:
        win.set_theme("light")
