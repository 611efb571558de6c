"""The comparison as a user sees it: a cancelled, failed or out-of-date run never looks like
a pass; its progress and Cancel are in view; the panel fits at 1500x950 and 1024x700."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QRect, Qt

from .conftest import Asker, close_window, open_model, run_compare


def _slow_comparison(*args, progress=None, cancel=None, **kw):
    """Stands in for the core comparison: runs until cancelled (progress raises then)."""
    for _ in range(6000):
        progress(0.3, "layer 3 of 10")
        time.sleep(0.01)
    raise RuntimeError("the slow comparison was never cancelled")


@pytest.fixture
def slow(monkeypatch):
    from migrator.gui.flows import compare_flow
    real = compare_flow.docmod.compare_model

    def use(on: bool):
        monkeypatch.setattr(compare_flow.docmod, "compare_model", _slow_comparison if on else real)
    return use


def _fully_visible(w) -> bool:
    """Shown, and not clipped by a scroll area, a splitter or the window edge."""
    if not w.isVisible():
        return False
    vis = w.visibleRegion().boundingRect()
    win = w.window()
    r = QRect(w.mapTo(win, w.rect().topLeft()), w.size())
    return vis.size() == w.size() and win.rect().contains(r)


def _statuses(win) -> list[str]:
    m = win.results_model
    col = m._COLS.index("status")
    return [m.index(r, col).data() for r in range(m.rowCount())]


def _start_slow_run(qtbot, win):
    win.run_comparison()
    qtbot.waitUntil(lambda: win.status_result.text().startswith("comparing… 30"), timeout=20_000)


def test_cancel_after_a_pass_marks_the_old_results_and_says_so(qtbot, window, demos, slow):
    win = window
    open_model(qtbot, win, demos["caffe"])
    assert run_compare(qtbot, win).passed
    assert "PASS" in win.status_result.text()
    slow(True)
    _start_slow_run(qtbot, win)
    # while it runs the status bar shows the progress and a Cancel button, not the old PASS
    assert "PASS" not in win.status_result.text()
    assert _fully_visible(win.busy) and win.busy.value() == 300
    assert _fully_visible(win.status_cancel)
    with qtbot.waitSignal(win.comparison_done, timeout=20_000):
        qtbot.mouseClick(win.status_cancel, Qt.MouseButton.LeftButton)
    text = win.status_result.text()
    assert "cancelled" in text and "previous run" in text and "PASS" not in text
    assert not win.busy.isVisible() and not win.status_cancel.isVisible()
    assert "previous run" in win.compare.summary.text()
    # every row of the table says it is out of date
    compared = [s for s in _statuses(win) if s.startswith(("pass", "FAIL"))]
    assert compared and all("(stale)" in s for s in compared)
    # a new complete run is current again
    slow(False)
    assert run_compare(qtbot, win).passed
    qtbot.waitUntil(lambda: "PASS" in win.status_result.text(), timeout=10_000)
    assert not any("(stale)" in s for s in _statuses(win))


def test_cancel_with_no_earlier_result_says_there_is_none(qtbot, window, demos, slow):
    win = window
    open_model(qtbot, win, demos["caffe"])
    slow(True)
    _start_slow_run(qtbot, win)
    with qtbot.waitSignal(win.comparison_done, timeout=20_000):
        win.act_cancel.trigger()
    assert win.status_result.text() == "comparison cancelled — no results"
    assert "cancelled" in win.compare.summary.text()
    # another model: nothing of that outcome remains
    open_model(qtbot, win, demos["lasagne"])
    assert win.status_result.text() == "not compared"


def test_changing_the_input_marks_the_results_out_of_date(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    qtbot.waitUntil(lambda: "PASS" in win.status_result.text(), timeout=10_000)
    c = win.compare
    c.kind.setCurrentIndex(c.kind.findData("images"))
    c.path.setText(str(tmp_path))
    text = win.status_result.text()
    assert "input changed" in text and "previous run" in text and "PASS" not in text
    assert all("(stale)" in s for s in _statuses(win) if s.startswith(("pass", "FAIL")))
    # the same input again (random, seed 0): a run brings the verdict back
    c.kind.setCurrentIndex(c.kind.findData("random"))
    run_compare(qtbot, win)
    qtbot.waitUntil(lambda: "PASS" in win.status_result.text(), timeout=10_000)


def test_a_failed_run_does_not_leave_the_old_verdict(qtbot, window, demos, monkeypatch):
    from migrator.core.errors import MigratorError
    from migrator.gui.flows import compare_flow
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)

    def broken(*a, **k):
        raise MigratorError("the reference could not run")
    monkeypatch.setattr(compare_flow.docmod, "compare_model", broken)
    with qtbot.waitSignal(win.comparison_done, timeout=20_000):
        win.run_comparison()
    text = win.status_result.text()
    assert "failed" in text and "previous run" in text and "PASS" not in text


# ---- the panel fits ---------------------------------------------------------------------------
def _make_window(qtbot, tmp_path, size, theme_name="light"):
    from migrator.gui import theme
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings
    theme.apply_theme(theme_name)
    win = MainWindow(Settings(str(tmp_path / "s.ini")))
    win.ask = Asker(True)
    win.resize(*size)
    win.show()
    qtbot.wait(20)
    win.default_layout()
    return win


def _close(qtbot, win):
    from migrator.gui import theme
    theme.apply_theme("light")
    close_window(qtbot, win)


@pytest.mark.parametrize("size", [(1500, 950), (1024, 700)])
def test_comparison_controls_and_status_column_in_view(qtbot, tmp_path, demos, size):
    win = _make_window(qtbot, tmp_path, size)
    try:
        open_model(qtbot, win, demos["lasagne"])
        run_compare(qtbot, win)
        win.default_layout()
        c = win.compare
        c.kind.setCurrentIndex(c.kind.findData("images"))
        c.path.setText(str(tmp_path / ("a-long-folder-name-" * 6)))
        c.path.setFocus()
        c.path.end(False)
        qtbot.wait(50)
        browse = c.path_w.findChildren(type(c.pre_toggle))[0]
        must_see = [c.run_btn, c.cancel_btn, c.progress]
        if size == (1500, 950):
            must_see += [c.path_label, c.path, browse, c.limit, c.batch_size]
        for w in must_see:
            assert _fully_visible(w), w
        # typing in a field never scrolls the panel sideways (its labels stay in view)
        sa = win.compare_scroll
        assert sa.horizontalScrollBar().maximum() == 0
        assert c.mapTo(sa.viewport(), c.rect().topLeft()).x() == 0
        assert c.width() <= sa.viewport().width()
        # the results table shows the Status column (before the layer names)
        v = win.results_view
        hdr = v.header()
        status_col = win.results_model._COLS.index("status")
        assert hdr.visualIndex(status_col) < hdr.visualIndex(1)
        assert hdr.sectionViewportPosition(status_col) + 40 <= v.viewport().width()
        # the inspector shows more than two and a half rows
        win.select_source(win.doc.next_batchnorm(None))
        qtbot.wait(20)
        iv = win.inspector.view
        assert iv.viewport().height() >= 4 * max(iv.sizeHintForRow(0), 18)
    finally:
        _close(qtbot, win)


def test_preprocessing_section_collapses(qtbot, window):
    c = window.compare
    c.kind.setCurrentIndex(c.kind.findData("images"))
    assert c.pre_box.isVisibleTo(c)
    c.pre_toggle.click()
    assert not c.pre_box.isVisibleTo(c) and c.pre_toggle.isVisibleTo(c)
    c.kind.setCurrentIndex(c.kind.findData("random"))
    c.kind.setCurrentIndex(c.kind.findData("image"))
    assert not c.pre_box.isVisibleTo(c)          # stays collapsed as the user left it
    c.pre_toggle.click()
    assert c.pre_box.isVisibleTo(c)



def test_screenshot_of_a_run_in_progress_on_an_image_folder(tmp_path, demos):
    """`make screenshots` shoots the window mid-run on an image folder (docs/screenshots.sh)."""
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(imgs / f"{i:02d}.png")
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-m", "migrator.gui.app", "--screenshot", str(out),
                        "--settings", str(tmp_path / "s.ini"), "--images", str(imgs), "--running",
                        *demos["caffe"]], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 10_000
    log = r.stderr
    assert log.count("comparison started") == 2
    # shot before the run on the folder ended: its end is a cancel at exit, not a finish
    assert "comparison finished" not in log.rsplit("comparison started", 1)[1]


def test_cancel_on_an_image_folder_keeps_the_images_compared(qtbot, window, demos, tmp_path, monkeypatch):
    """An image folder, batch 1: while it runs the status shows the rate and the time left;
    Cancel keeps the images compared so far and says how many they are."""
    import numpy as np
    from PIL import Image

    from migrator.core.inputs import InputSpec
    from migrator.gui.flows import compare_flow
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(imgs / f"{i:02d}.png")
    real = compare_flow.docmod.compare_model

    def on_the_folder(graph, plan, model, spec, progress=None, **kw):
        def slow(f, m):               # slow enough to cancel mid-set
            progress(f, m)
            time.sleep(0.01)
        return real(graph, plan, model, InputSpec(kind="images", path=str(imgs), batch_size=1),
                    progress=slow, **kw)
    win = window
    open_model(qtbot, win, demos["caffe"])
    monkeypatch.setattr(compare_flow.docmod, "compare_model", on_the_folder)
    win.run_comparison()
    qtbot.waitUntil(lambda: "images/s" in win.status_result.text(), timeout=60_000)
    assert "left" in win.status_result.text()
    with qtbot.waitSignal(win.comparison_done, timeout=60_000):
        win.act_cancel.trigger()
    r = win.doc.result
    assert r is not None and r.cancelled and 1 <= r.n_samples < 60 and r.set_size == 60
    want = f"stopped after {r.n_samples} of 60 images; results cover "
    assert want in win.status_result.text() and "cancelled" in win.status_result.text()
    assert "PASS" not in win.status_result.text()
