"""A researcher's whole session (issue 13): no lost edits, no stale state, a layout that
fits at 1024x700, channel images that show the whole map, undo scope, plots that tell
the truth, readable text, report and files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QRect, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QDialog

from .conftest import LOAD_TIMEOUT, Asker, close_window, open_model, run_compare, wait_plan


def _dirty(qtbot, win, eps=1e-3):
    assert win.set_override("bn1", "epsilon", eps)
    wait_plan(qtbot, win)
    assert win.has_unsaved_edits() and win.windowTitle().count("*") == 1


class Unsaved:
    """Stands in for the Save / Discard / Cancel question; records what it was asked."""

    def __init__(self, answer):
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, what):
        self.asked.append(what)
        return self.answer


def _no_load_started(qtbot, win, paths_before):
    qtbot.wait(50)
    assert "load" not in win.jobs or not win.jobs["load"].running
    assert win.doc.paths == paths_before


# ---- 1. unsaved overrides: every path that replaces the model, and Quit ---------------------
def _open_via(path_kind, win, demos, monkeypatch):
    """Start replacing the model the way a user would; returns the paths that should open."""
    from migrator.gui.flows import open_flow
    target = list(demos["lasagne"])
    if path_kind == "dialog":            # File > Open (Ctrl+O)
        def fake_exec(dlg):
            dlg.arch.setText(target[0])
            dlg.weights.setText(target[1])
            return QDialog.DialogCode.Accepted
        monkeypatch.setattr(open_flow.OpenDialog, "exec", fake_exec)
        win.act_open.trigger()
    elif path_kind == "recent":          # File > Open recent
        win.settings.add_recent(target)
        win._fill_recent()
        act = next(a for a in win.recent_menu.actions() if a.toolTip() == "\n".join(target))
        act.trigger()
    elif path_kind == "drop":            # drag and drop of both files
        win.open_dropped(target)
    elif path_kind == "demo":            # File > Open demo
        win.act_demo_lasagne.trigger()
    return target


@pytest.mark.parametrize("path_kind", ["dialog", "recent", "drop", "demo"])
def test_unsaved_overrides_cancel_keeps_them_discard_drops_them(qtbot, window, demos, monkeypatch,
                                                                  path_kind):
    win = window
    open_model(qtbot, win, demos["caffe"])
    _dirty(qtbot, win)
    before = list(win.doc.paths)
    # Cancel: nothing is replaced, the edit and its undo history stay
    win.ask_unsaved = Unsaved("cancel")
    _open_via(path_kind, win, demos, monkeypatch)
    assert len(win.ask_unsaved.asked) == 1 and "opening" in win.ask_unsaved.asked[0]
    _no_load_started(qtbot, win, before)
    assert win.doc.override_value("layer", "bn1", "epsilon") == pytest.approx(1e-3)
    assert win.undo_stack.count() == 1
    # Discard: the other model opens
    win.ask_unsaved = Unsaved("discard")
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        _open_via(path_kind, win, demos, monkeypatch)
    assert len(win.ask_unsaved.asked) == 1      # asked once (the demo path too)
    assert win.doc.graph.framework == "lasagne"
    assert not win.has_unsaved_edits() and "*" not in win.windowTitle()
    win.ask_unsaved = Unsaved("cancel")         # a clean document: never asked
    win.open_paths(list(demos["caffe"]))
    assert win.ask_unsaved.asked == []
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        pass


def test_unsaved_overrides_save_then_open_and_quit(qtbot, window, demos, tmp_path, monkeypatch):
    from migrator.gui.flows import mapping_flow
    win = window
    open_model(qtbot, win, demos["caffe"])
    _dirty(qtbot, win, 2e-3)
    target = tmp_path / "kept.mapping.json"
    suggested = []

    def fake_save(parent, title, start, filt):
        suggested.append(start)
        return str(target), filt
    monkeypatch.setattr(mapping_flow.QFileDialog, "getSaveFileName", fake_save)
    win.ask_unsaved = Unsaved("save")
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        win.open_paths(list(demos["lasagne"]))
    saved = json.loads(target.read_text())
    assert saved["layers"]["bn1"]["epsilon"] == pytest.approx(2e-3)
    # the suggestion: <model>.mapping.json
    assert os.path.basename(suggested[0]) == "migrator_demo_caffe.mapping.json"
    # Quit asks too, and offers Save
    open_model(qtbot, win, demos["caffe"])
    _dirty(qtbot, win)
    win.ask_unsaved = Unsaved("cancel")
    win.close()
    assert win.isVisible() and win.ask_unsaved.asked == ["quitting"]
    win.ask_unsaved = Unsaved("save")
    target.unlink()
    win.close()
    assert not win.isVisible() and target.is_file()
    win.show()
    # loading a mapping replaces the overrides as well
    _dirty(qtbot, win, 5e-3)
    win.ask_unsaved = Unsaved("cancel")
    win.load_mapping(str(target))
    assert win.ask_unsaved.asked and "loading" in win.ask_unsaved.asked[0]
    assert win.doc.override_value("layer", "bn1", "epsilon") == pytest.approx(5e-3)
    win.ask_unsaved = Unsaved("discard")


def test_unsaved_prompt_falls_back_to_yes_no_in_headless_tests(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    _dirty(qtbot, win)
    win.ask = Asker(False)
    assert win.confirm_replace("quitting") is False
    win.ask = Asker(True)
    assert win.confirm_replace("quitting") is True


# ---- 4. no stale state after opening another model -----------------------------------------
def test_no_stale_state_after_opening_another_model(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    win.select_source("scale1")
    cp = win.channel_plot
    cp.hover.setText(cp.describe_channel(15))          # as if the mouse had been there
    win.overview_plot.hover.setText("conv1: max abs 1e-6")
    with qtbot.waitSignal(win.channel_values_ready, timeout=60_000):
        win.show_channel(3)
    assert win.channel_view.ref_img.image.shape == (48, 48)
    win.source_tree.filter.setText("scale")
    win.keras_tree.filter.setText("bn")
    win.compare.order.setCurrentText("BGR")
    win.compare.mean.setText("104, 117, 123")
    win.compare.scale.setValue(0.5)
    assert win.compare.progress.format() == "done"

    open_model(qtbot, win, demos["lasagne"])
    assert cp.hover.text().strip() == "" and cp.layer_name is None
    assert "channel 15" not in cp.title.text()
    assert win.overview_plot.hover.text().strip() == ""
    assert win.source_tree.filter.text() == "" and win.keras_tree.filter.text() == ""
    assert win.source_tree.proxy.rowCount() == len(win.doc.graph.nodes)
    assert win.compare.progress.format() == "idle" and win.compare.progress.value() == 0
    assert win.status_result.text() == "not compared"
    # the channel-values boxes are no longer sized for the 48x48 maps
    assert win.channel_view.ref_img.image.shape == (1, 1)
    (x0, x1), (y0, y1) = win.channel_view.ref_vb.viewRange()
    assert x1 - x0 < 5 and y1 - y0 < 5
    # image preprocessing back to this model's defaults (its stored mean, RGB for Lasagne)
    assert win.compare.mean.text() == "" and "0.2" in win.compare.mean.placeholderText()
    assert win.compare.order.currentText() == "RGB" and win.compare.scale.value() == 1.0


# ---- 2. layout at 1024 x 700 ---------------------------------------------------------------
def _rect_in(win, w) -> QRect:
    return QRect(w.mapTo(win, w.rect().topLeft()), w.size())


@pytest.mark.parametrize("theme_name", ["light", "dark"])
def test_layout_at_1024x700(qtbot, tmp_path, demos, theme_name):
    from migrator.gui import theme
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings
    theme.apply_theme(theme_name)
    win = MainWindow(Settings(str(tmp_path / "s.ini")))
    win.ask = Asker(True)
    win.resize(1024, 700)
    win.show()
    try:
        qtbot.wait(20)
        win.default_layout()
        open_model(qtbot, win, demos["caffe"])
        run_compare(qtbot, win)
        win.default_layout()
        win.select_source("bn1")
        qtbot.wait(50)
        status = _rect_in(win, win.statusBar())
        docks = {d.objectName(): _rect_in(win, d) for d in
                 (win.inspector_dock, win.compare_dock, win.plots_dock)}
        central = _rect_in(win, win.centralWidget())
        # nothing drawn over the status bar; the docks and the trees do not overlap
        for name, r in docks.items():
            assert r.bottom() < status.top(), name
            assert not r.intersects(central), name
        assert not docks["dock_comparison"].intersects(docks["dock_plots"])
        # the comparison controls scroll inside their dock (the summary no longer spills)
        vp = _rect_in(win, win.compare_scroll.viewport())
        assert docks["dock_comparison"].contains(vp)
        summary = _rect_in(win, win.compare.summary)
        assert summary.intersected(vp) == summary or summary.top() >= vp.top()
        # a usable results table; the plot not cut off on the right
        assert win.results_view.viewport().height() >= 150
        assert win.results_view.viewport().width() >= 200
        plot = _rect_in(win, win.channel_plot.plot)
        assert plot.right() <= win.width() and plot.width() >= 300 and plot.height() >= 150
        # the inspector shows its rows (it showed two)
        v = win.inspector.view
        row_h = v.sizeHintForRow(0)
        assert row_h > 0 and v.viewport().height() // row_h >= 6
        # the Keras value column stays in view
        hdr = v.header()
        assert hdr.sectionViewportPosition(3) + 20 < v.viewport().width()
        # permanent status widgets leave room for messages
        perm = sum(w.width() for w in (win.status_result, win.status_model, win.status_device))
        assert perm < 0.75 * win.width()
    finally:
        theme.apply_theme("light")
        close_window(qtbot, win)


# ---- 3. channel values: every image shows the whole map ---------------------------------------
@pytest.mark.parametrize("size", [(7, 7), (48, 48), (5, 12), (30, 9)])
def test_channel_value_images_show_the_whole_map(qtbot, size):
    from migrator.gui.views.plots import ChannelValuesView
    view = ChannelValuesView()
    qtbot.addWidget(view)
    view.resize(640, 240)          # wide and short, like the plots dock
    view.show()
    rng = np.random.default_rng(0)
    big = rng.normal(size=(64, 64)).astype(np.float32)
    view.show_values("big", 0, big, big + 1e-3)    # a previous, larger map
    qtbot.wait(20)
    ref = rng.normal(size=size).astype(np.float32)
    view.show_values("x", 1, ref, ref + rng.normal(scale=1e-4, size=size).astype(np.float32))
    qtbot.wait(30)
    h, w = size
    for vb in view.view_boxes:
        (x0, x1), (y0, y1) = vb.viewRange()
        assert x0 <= 0 and x1 >= w and y0 <= 0 and y1 >= h, (vb, vb.viewRange())
    # the three boxes are equally wide
    widths = [vb.sceneBoundingRect().width() for vb in view.view_boxes]
    assert max(widths) - min(widths) <= 2, widths


# ---- 5. undo scope of Reset after "Apply to every batch-norm layer" -------------------------
def test_reset_one_layer_after_apply_to_all_keeps_the_others(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    doc = win.doc
    default_eps = doc.mapping("bn1").options["epsilon"]
    assert win.apply_to_all_batchnorm("epsilon", 3e-3)
    wait_plan(qtbot, win)
    assert win.reset_override("bn2", "epsilon")
    wait_plan(qtbot, win)
    assert doc.mapping("bn2").options["epsilon"] == pytest.approx(default_eps)
    for bn in ("bn1", "bn3"):
        assert doc.mapping(bn).options["epsilon"] == pytest.approx(3e-3)
    assert not next(r for r in doc.mapping("bn2").rows if r.key == "epsilon").overridden
    assert win.undo_stack.count() == 2
    # one undo step brings the kind override back as it was
    win.act_undo.trigger()
    wait_plan(qtbot, win)
    for bn in ("bn1", "bn2", "bn3"):
        assert doc.mapping(bn).options["epsilon"] == pytest.approx(3e-3)
    assert doc.overrides.to_dict()["kinds"] == {"BatchNorm": {"epsilon": 3e-3}}
    assert not doc.overrides.to_dict()["layers"]
    win.act_redo.trigger()
    wait_plan(qtbot, win)
    assert doc.mapping("bn2").options["epsilon"] == pytest.approx(default_eps)
    assert doc.mapping("bn3").options["epsilon"] == pytest.approx(3e-3)
    # a per-layer override is simply removed (bn1's came from splitting the kind override)
    assert win.set_override("bn1", "epsilon", 4e-3)
    wait_plan(qtbot, win)
    assert win.reset_override("bn1", "epsilon")
    wait_plan(qtbot, win)
    assert doc.mapping("bn1").options["epsilon"] == pytest.approx(default_eps)
    assert doc.mapping("bn3").options["epsilon"] == pytest.approx(3e-3)


# ---- 6. Ctrl+E while a text field has the focus; the window shows before TensorFlow ------------
def test_window_shortcuts_win_over_text_fields(qtbot, window):
    win = window
    field = win.compare.mean
    field.setFocus()
    ev = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier, "\x05")
    ev.setAccepted(True)
    from PySide6.QtWidgets import QApplication
    QApplication.sendEvent(field, ev)
    assert not ev.isAccepted()          # the line edit does not keep Ctrl+E for itself
    # ordinary editing keys stay with the field
    ev2 = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier, "\x01")
    QApplication.sendEvent(field, ev2)
    assert ev2.isAccepted()
    hits = []
    win.act_export.triggered.connect(lambda *_: hits.append(1))
    win.act_export.setEnabled(True)
    from PySide6.QtTest import QTest
    QTest.keyClick(field, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert hits == [1]


def test_tensorflow_is_not_imported_before_the_window_paints(tmp_path):
    import subprocess
    import sys
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM']='offscreen'\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from migrator.gui.main_window import MainWindow\n"
        "from migrator.gui.settings import Settings\n"
        f"w = MainWindow(Settings({str(tmp_path / 's.ini')!r}))\n"
        "assert 'tensorflow' not in sys.modules, 'imported with the window'\n"
        "w.show(); app.processEvents()\n"
        "assert w.first_paint_s is not None\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


# ---- 7. dark theme ---------------------------------------------------------------------------
def test_theme_switch_restyles_every_plot(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    win.select_source("scale1")
    try:
        win.set_theme("dark")
        for w in (win.inspector.hist, win.channel_plot.plot, win.overview_plot.plot):
            assert w.backgroundBrush().color().lightness() < 80, w
        for g in win.channel_view.glws:
            assert g.backgroundBrush().color().lightness() < 80
        fg = win.inspector.hist.getPlotItem().titleLabel.text
        assert "#d0d0d0" in fg.lower()        # a readable title on the dark background
        win.set_theme("light")
        for w in (win.inspector.hist, win.channel_plot.plot, win.overview_plot.plot):
            assert w.backgroundBrush().color().lightness() > 200, w
    finally:
        win.set_theme("light")


# ---- 8. plots that tell the truth -------------------------------------------------------------
def _layer(err, status="pass", tol=(1e-6, 1e-4), scale=1.0):
    from migrator.core.compare.metrics import LayerResult, Tolerance
    err = np.asarray(err, np.float64)
    return LayerResult(source="L", source_type="Convolution", keras="L", layout="NHWC",
                       shape=(1, len(err), 4, 4), status=status, max_abs=float(err.max()),
                       mean_abs=float(err.mean()), max_rel=0.0, scale=scale,
                       tolerance=Tolerance(atol=tol[0], rtol=tol[1]), needed_rtol=0.0,
                       channel_max_abs=err, channel_mean_abs=err / 2,
                       channel_ref_absmax=np.ones_like(err), worst_channel=int(err.argmax()))


def test_per_channel_plot_zero_channels_legend_and_log_axis(qtbot):
    from migrator.gui.views.plots import ChannelErrorPlot
    p = ChannelErrorPlot()
    qtbot.addWidget(p)
    # the axis matches the check box before any data (it was ticked over a linear axis)
    assert p.plot.getAxis("left").logMode == p.log_box.isChecked()
    p.set_layer("L", _layer([0.0, 1e-6, 0.0, 5e-3]))
    assert len(p.zero_bars.opts["x"]) == 2 and list(p.zero_bars.opts["x"]) == [0.0, 2.0]
    assert all(h > 0 for h in p.zero_bars.opts["height"])      # visible, not missing
    assert list(p.bad_bars.opts["x"]) == [3.0]
    leg = p.legend.text()
    assert "tolerance" in leg and "exactly 0 (2)" in leg and "selected channel" in leg
    # the y range leaves room above the tolerance line and the highest bar
    (_, _), (_, y1) = p.plot.getPlotItem().vb.viewRange()
    assert y1 > p.tol_line.value() and y1 > np.log10(5e-3)
    p.set_log(False)
    assert p.plot.getAxis("left").logMode is False
    (_, _), (_, y1) = p.plot.getPlotItem().vb.viewRange()
    assert y1 > 5e-3 and all(h > 0 for h in p.zero_bars.opts["height"])


def test_overview_numbers_like_the_table_and_zero_is_not_an_error(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    ov = win.overview_plot
    for name, x in ov._x.items():
        assert x == win.results_model.row_of(name) + 1       # the table's "#"
    zero = [n for n in ov._names if win.doc.layer_result(n).max_abs == 0]
    assert zero, "the demo's input layer has an exact 0"
    assert set(ov.zero_points.data["data"]) == set(zero)
    assert not set(ov.points.data["data"]) & set(zero)
    xs, ys = ov.err_curve.getData()
    for n in zero:
        assert np.isnan(ys[list(xs).index(ov._x[n])])          # not joined at the floor
    assert "tolerance" in ov.legend.text() and "selected layer" in ov.legend.text()
    win.select_source("conv2")
    assert ov.sel_text.isVisible() and ov.sel_text.textItem.toPlainText() == "conv2"


def test_cancelled_comparison_is_not_shown_as_success(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    res = run_compare(qtbot, win)
    res.cancelled = True
    win.compare.set_progress(0.35, "layer 7 of 20")
    with qtbot.waitSignal(win.comparison_done, timeout=10_000):
        win.comparing.compared({"result": res, "fingerprint": win.doc.result_fp, "model": None,
                                "x": None, "input_desc": None})
    assert win.compare.progress.format() == "cancelled"
    assert win.compare.progress.value() < 1000
    assert "cancelled" in win.status_result.text()


# ---- 9. text cut off -----------------------------------------------------------------------------
def test_inspector_formula_and_variance_row_match_the_value(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    win.select_source("bn1")

    def formula(key):
        m = win.inspector.model
        for i in range(m.rowCount()):
            if m.item(i, 0).data(0x0100 + 10)[1] == key:
                return m.item(i, 1).text()
    assert formula("variance").startswith("exact:") and "raw:" not in formula("variance")
    assert win.set_override("bn1", "variance", "raw")
    wait_plan(qtbot, win)
    assert formula("variance").startswith("raw:") and "exact:" not in formula("variance")
    # the current row's whole formula is shown under the table
    assert win.inspector.select_key("moving_variance")
    mv = next(r for r in win.doc.mapping("bn1").rows if r.key == "moving_variance")
    assert mv.formula in win.inspector.detail.text().replace("&amp;", "&")


def test_result_columns_fit_their_headers(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    qtbot.wait(20)
    v = win.results_view
    fm = v.header().fontMetrics()
    for c in (6, 7):      # Tolerance, Worst ch.
        head = win.results_model.headerData(c, Qt.Orientation.Horizontal)
        assert v.columnWidth(c) >= fm.horizontalAdvance(head) + 16, head
    # progress text under the bar, not squeezed into it
    assert win.compare.progress.format() == "done"


# ---- 10. report and files ------------------------------------------------------------------------
def test_h5_and_keras_exports_have_their_own_reports(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    # (the demo's exact average pooling cannot be stored in legacy .h5: weights-only .h5 then)
    for name in ("x.keras", "x.weights.h5"):
        with qtbot.waitSignal(win.exported, timeout=LOAD_TIMEOUT):
            win.export_to(str(tmp_path / name))
    for rep in ("x.report.json", "x.report.html", "x.weights.h5.report.json", "x.weights.h5.report.html"):
        assert (tmp_path / rep).is_file(), rep
    a = json.loads((tmp_path / "x.report.json").read_text())
    b = json.loads((tmp_path / "x.weights.h5.report.json").read_text())
    assert a["outputs"][0].endswith("x.keras") and b["outputs"][0].endswith("x.weights.h5")
    from migrator.gui.flows.export_flow import export_targets
    assert export_targets("/d/x.h5")[0] == "/d/x.h5.report.json"
    assert export_targets("/d/x.keras")[0] == "/d/x.report.json"
    html = (tmp_path / "x.report.html").read_text()
    assert "`" not in html.split("<body>", 1)[1]           # backticks rendered, not shown
    assert "<code>" in html and "class='passed'" in html
    assert "Input:" in html and "seed 0" in html and "Tolerances:" in html
    md = (tmp_path / "x.report.md").read_text()
    assert "- Tolerances: atol" in md


def test_failed_report_is_styled(tmp_path):
    from migrator.core.report import render_html
    rep = {"source": {"name": "m", "files": []}, "created": "now", "tool": {},
           "verification": {"passed": False, "runtime": {"name": "builtin"}, "device": "CPU",
                            "first_divergent": "conv2", "needed_rtol": 0.1,
                            "input": {"kind": "image", "path": "/x/cat.jpg", "shape": [1, 3, 8, 8],
                                      "preprocessing": {"channel_order": "BGR", "mean": [104, 117, 123],
                                                        "scale": 1.0, "resize": None}},
                            "tolerances": {"default": {"atol": 1e-5, "rtol": 1e-4}, "per_layer": {}}},
           "overrides": None, "layers": []}
    html = render_html(rep)
    assert "<b class='failed'>FAILED</b>" in html and "**" not in html
    assert "channel order BGR, mean 104, 117, 123" in html and "<code>/x/cat.jpg</code>" in html


def test_recent_files_are_clear_and_deduplicated(tmp_path):
    from migrator.gui.flows.open_flow import recent_label
    from migrator.gui.settings import Settings
    s = Settings(str(tmp_path / "s.ini"))
    a, b = str(tmp_path / "m" / "deploy.prototxt"), str(tmp_path / "m" / "w.caffemodel")
    s.add_recent([a, b])
    s.add_recent([str(tmp_path / "other.py"), str(tmp_path / "other.npz")])
    s.add_recent([b, a])                       # the same model, files in the other order
    rec = s.recent()
    assert len(rec) == 2 and rec[0] == [b, a]
    label = recent_label([a, b], 0)
    assert "deploy.prototxt" in label and "w.caffemodel" in label and "m" in label.split("—")[-1]


def test_save_mapping_suggestion_is_not_the_demo_folder(qtbot, window, monkeypatch, tmp_path):
    win = window
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        win.open_demo("caffe")
    sug = win.mapping.suggested_path()
    assert os.path.basename(sug) == "migrator_demo_caffe.mapping.json"
    assert os.path.dirname(sug) != os.path.dirname(win.doc.paths[0])
    assert win.settings.recent() == []        # a demo is not a recent model


def test_help_menu_and_open_dialog(qtbot, window):
    from migrator.gui.flows.open_flow import OpenDialog
    from migrator.gui.help import shortcut_rows, user_guide_markdown
    win = window
    texts = [a.text() for a in win.menuBar().actions()[-1].menu().actions()]
    assert "&User guide" in texts and "&Keyboard shortcuts" in texts
    rows = dict(shortcut_rows(win))
    assert rows["Export Keras model"] == "Ctrl+E" and "F5" in rows["Run comparison"]
    assert "Migrator" in user_guide_markdown()
    dlg = OpenDialog(win)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.arch.setText("/m/deploy.prototxt")
    assert not dlg.func.isVisible() and not dlg.out_layer.isVisible() and dlg.options() == {}
    dlg.arch.setText("/m/build.py")
    assert dlg.func.isVisible() and dlg.out_layer.isVisible()
    note = dlg.lasagne_note.text()
    assert "child process" in note and "time limit" in note and "never runs anything" in note
    assert dlg.options()["builder_function"] == "build_model"
