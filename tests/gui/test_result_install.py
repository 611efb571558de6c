"""Installing a comparison result in short GUI-thread steps (benchmarks/bench_gui.py measures the
stalls): the window ends in the state of the newest result, whatever arrives in between."""
from __future__ import annotations

from PySide6.QtCore import Qt

from .conftest import open_model, run_compare, wait_plan


def _payload(win, res):
    return {"result": res, "fingerprint": win.doc.fingerprint, "model": None, "x": None,
            "input_desc": None}


def _failing_result(qtbot, win):
    """A real FAIL from a deliberately wrong mapping (raw variance, a huge epsilon on bn2)."""
    assert win.set_override("bn2", "variance", "raw")
    assert win.set_override("bn2", "epsilon", 0.5)
    wait_plan(qtbot, win)
    res = run_compare(qtbot, win)
    assert not res.passed and res.first_divergent is not None
    return res


def _status_texts(win):
    m = win.results_model
    return [m.data(m.index(i, 2)) for i in range(m.rowCount())]


def test_result_arrives_in_steps_and_the_newest_wins(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    good = run_compare(qtbot, win)
    assert good.passed
    bad = _failing_result(qtbot, win)
    fd = bad.first_divergent.source
    assert any(t.startswith("FAIL") for t in _status_texts(win))

    done = []
    win.comparison_done.connect(lambda: done.append(1))
    # the good result, then -- before its steps ran -- the failing one again, then the good one
    win.comparing.compared(_payload(win, good))
    assert win._result_installing
    win.comparing.compared(_payload(win, bad))
    win.comparing.compared(_payload(win, good))
    qtbot.waitUntil(lambda: len(done) == 3, timeout=10_000)
    assert not win._result_installing
    # every view shows the newest (passing) result, none a mixture
    assert not any(t.startswith("FAIL") for t in _status_texts(win))
    assert "fail" not in win.source_model._status
    assert "fail" not in win.keras_model._status
    assert win.status_result.text().startswith("PASS")
    assert win.overview_plot._names == [r.source for r in good.compared]

    # and the other way round: the failing one last selects its first divergent layer
    done.clear()
    win.comparing.compared(_payload(win, good))
    win.comparing.compared(_payload(win, bad))
    qtbot.waitUntil(lambda: len(done) == 2, timeout=10_000)
    assert win.source_model._status[win.source_model.row_of(fd)] == "fail"
    assert win.status_result.text().startswith("FAIL")
    qtbot.waitUntil(lambda: win.source_tree.current_name() == fd, timeout=5_000)


def test_opening_a_model_drops_a_result_being_installed(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    res = run_compare(qtbot, win)
    done = []
    win.comparison_done.connect(lambda: done.append(1))
    win.comparing.compared(_payload(win, res))
    open_model(qtbot, win, demos["lasagne"])
    qtbot.waitUntil(lambda: len(done) == 1, timeout=10_000)    # whoever waited is told
    qtbot.wait(100)                                            # no step of the old one runs late
    assert win.doc.result is None and win.results_model.rowCount() == 0
    assert win.status_result.text() == "not compared"
    assert set(win.source_model._status) <= {"", "overridden", "unsupported"}


def test_theme_switch_recolours_result_rows(qtbot, window, demos):
    from migrator.gui import theme
    win = window
    open_model(qtbot, win, demos["caffe"])
    res = _failing_result(qtbot, win)
    m = win.results_model
    ix = m.index(m.row_of(res.first_divergent.source), 1)
    fg = Qt.ItemDataRole.ForegroundRole
    try:
        assert m.data(ix, fg).name() == theme.colour("fail").name()
        light = m.data(ix, fg).name()
        win.set_theme("dark")
        assert m.data(ix, fg).name() == theme.colour("fail").name() != light
    finally:
        win.set_theme("light")
    assert m.data(ix, fg).name() == light


def test_fused_layers_are_marked_as_such(qtbot, window, demos):
    """A Caffe BatchNorm compared through its Scale's Keras layer is 'fused' in the layer tree
    and the table (grey, with its own icon), not a row without status."""
    from migrator.gui import theme
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    assert win.doc.layer_result("bn1").status == "fused"
    sm = win.source_model
    row = sm.row_of("bn1")
    assert sm._status[row] == "fused"
    ix = sm.index(row, 0)
    assert not sm.data(ix, Qt.ItemDataRole.DecorationRole).isNull()
    assert sm.data(ix, Qt.ItemDataRole.ForegroundRole).name() == theme.colour("fused").name()
    assert sm._status[sm.row_of("scale1")] == "pass"
    # the Keras BatchNormalization computing bn1 + scale1 shows the compared layer's status
    km = win.keras_model
    assert km._status[km.row_of("bn1")] == "pass"
    rm = win.results_model
    rix = rm.index(rm.row_of("bn1"), 2)
    assert rm.data(rix) == "fused" and not rm.data(rix, Qt.ItemDataRole.DecorationRole).isNull()
    # an override on the fused layer wins over 'fused'
    assert win.set_override("bn1", "epsilon", 1e-3)
    wait_plan(qtbot, win)
    assert sm._status[row] == "overridden"


def test_inspector_histogram_labels_fit(qtbot):
    """The histogram is short: its count axis is labelled 0 and the highest count only."""
    import numpy as np

    from migrator.gui.views.plots import Histogram
    h = Histogram()
    qtbot.addWidget(h)
    h.set_values("gamma", np.linspace(0.5, 1.5, 64) ** 2)
    ticks = h.getAxis("left")._tickLevels
    labels = [t[1] for t in ticks[0]]
    counts, _ = np.histogram(np.linspace(0.5, 1.5, 64) ** 2, bins=16)
    assert labels == ["0", str(int(counts.max()))]


def test_models_answer_nothing_for_an_invalid_index(qtbot, window, demos):
    from PySide6.QtCore import QModelIndex
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    for m in (win.source_model, win.keras_model, win.results_model):
        for role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole,
                     Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.ToolTipRole):
            assert m.data(QModelIndex(), role) is None, (type(m).__name__, role)
