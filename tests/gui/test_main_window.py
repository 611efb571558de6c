"""Drive the real main window on the two bundled demos."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from .conftest import Asker, open_model, run_compare, wait_plan


def _keras_rows(win):
    return [win.keras_model.name_at(r) for r in range(win.keras_model.rowCount())]


def test_open_caffe_demo_and_select_counterparts(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    g = win.doc.graph
    assert win.source_model.rowCount() == len(g.nodes)
    assert _keras_rows(win) == [s.name for s in win.doc.plan.keras_layers]
    # Caffe BatchNorm -> the one BatchNormalization; that layer -> the BatchNorm + Scale pair
    win.select_source("bn1")
    assert win.keras_tree.selected_names() == ["bn1"]
    assert win.doc.plan.keras_layers[[s.name for s in win.doc.plan.keras_layers].index("bn1")] \
        .class_name == "BatchNormalization"
    win.select_keras("bn1")
    assert win.source_tree.selected_names() == ["bn1", "scale1"]
    win.select_source("scale2")
    assert win.keras_tree.selected_names() == ["bn2"]
    # the inspector shows the batch-norm rows of the fused pair, batch norm first
    win.select_source("bn1")
    keys = [win.inspector.model.item(i, 0).data(0x0100 + 10)[1]
            for i in range(win.inspector.model.rowCount())]
    for k in ("epsilon", "gamma", "beta", "moving_mean", "moving_variance", "fuse_scale", "variance"):
        assert k in keys
    assert keys.index("epsilon") < keys.index("moving_mean")
    # moving_mean shown is blob0 / blob2 (Caffe's scale factor), not the stored sum
    node = g.node("bn1")
    expect = node.p("mean") / node.p("scale_factor")[0]
    mm = next(r for r in win.doc.mapping("bn1").rows if r.key == "moving_mean")
    np.testing.assert_allclose(np.asarray(mm.value, np.float64), expect, rtol=1e-6)
    assert "min" in win.inspector.value_text("moving_mean")


def test_open_lasagne_demo_and_select_counterparts(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["lasagne"])
    assert win.doc.graph.framework == "lasagne"
    win.select_source("conv1_bn")
    assert win.keras_tree.selected_names() == ["conv1_bn"]
    # the identity nonlinearity of batch_norm(..., nonlinearity=None) is computed by the BN layer
    win.select_keras("conv3_bn")
    assert win.source_tree.selected_names() == ["conv3_bn", "conv3_bn_nonlin"]
    # the model's stored mean is the image-preprocessing default
    assert "0.2" in win.compare.mean.placeholderText()


def test_next_batchnorm_action_and_filter(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    win.act_next_bn.trigger()
    assert win.source_tree.current_name() == "bn1"
    win.act_next_bn.trigger()
    assert win.source_tree.current_name() == "bn2"
    assert win.keras_tree.selected_names() == ["bn2"]
    win.source_tree.filter.setText("scale")
    assert win.source_tree.proxy.rowCount() == 3
    # selecting a filtered-out layer clears the filter and shows it
    win.select_source("conv1")
    assert win.source_tree.filter.text() == ""
    assert win.source_tree.selected_names() == ["conv1"]


def test_override_epsilon_one_and_all_with_undo_redo(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    doc = win.doc
    default_eps = doc.mapping("bn1").options["epsilon"]
    win.select_source("bn1")
    assert win.inspector.request_edit("bn1", "epsilon", "0.001")
    wait_plan(qtbot, win)
    assert doc.mapping("bn1").options["epsilon"] == pytest.approx(1e-3)
    assert doc.mapping("bn2").options["epsilon"] == pytest.approx(default_eps)
    assert next(r for r in doc.mapping("bn1").rows if r.key == "epsilon").overridden
    assert win.source_model._status[win.source_model.row_of("bn1")] == "overridden"
    assert "1e-03" in win.inspector.value_text("epsilon") or "0.001" in win.inspector.value_text("epsilon")
    assert win.undo_stack.count() == 1
    # invalid values are refused inline and never reach the undo stack
    assert not win.inspector.request_edit("bn1", "epsilon", "abc")
    assert "Rejected" in win.inspector.message.text()
    assert not win.inspector.request_edit("bn1", "variance", "nonsense")
    assert win.undo_stack.count() == 1
    # every batch-norm layer
    assert win.apply_to_all_batchnorm("epsilon", 2e-3)
    wait_plan(qtbot, win)
    for bn in ("bn1", "bn2", "bn3"):
        assert doc.mapping(bn).options["epsilon"] == pytest.approx(2e-3)
    assert doc.overrides.to_dict()["kinds"] == {"BatchNorm": {"epsilon": 2e-3}}
    # undo / redo through the real actions
    win.act_undo.trigger()
    wait_plan(qtbot, win)
    assert doc.mapping("bn1").options["epsilon"] == pytest.approx(1e-3)
    assert doc.mapping("bn2").options["epsilon"] == pytest.approx(default_eps)
    win.act_undo.trigger()
    wait_plan(qtbot, win)
    assert doc.mapping("bn1").options["epsilon"] == pytest.approx(default_eps)
    assert not doc.overrides
    win.act_redo.trigger()
    win.act_redo.trigger()
    wait_plan(qtbot, win)
    for bn in ("bn1", "bn2", "bn3"):
        assert doc.mapping(bn).options["epsilon"] == pytest.approx(2e-3)
    # reset to default removes the kind override from the selected layer's kind
    assert win.reset_override("bn2", "epsilon")
    wait_plan(qtbot, win)
    assert doc.mapping("bn2").options["epsilon"] == pytest.approx(default_eps)


def test_compare_then_failing_override_then_export_gate(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    doc = win.doc
    res = run_compare(qtbot, win)
    assert res is not None and res.passed, [(r.source, r.status, r.max_abs) for r in res.layers]
    assert win.results_model.rowCount() == len(res.layers)
    assert "PASS" in win.status_result.text()
    # per-channel plot of a compared layer: one bar per channel
    win.select_source("conv2")
    assert len(win.channel_plot._err) == 32
    hover = win.channel_plot.describe_channel(7)
    assert hover.startswith("channel 7: max abs") and "tolerance" in hover
    # the gate: a passing, current comparison exports without a question
    out = tmp_path / "ok.keras"
    with qtbot.waitSignal(win.exported, timeout=120_000):
        win.export_to(str(out))
    assert out.exists()
    assert win.ask.questions == []
    for ext in (".report.json", ".report.md", ".report.html"):
        assert (tmp_path / f"ok{ext}").exists()
    rep = json.loads((tmp_path / "ok.report.json").read_text())
    assert "bn1" in json.dumps(rep)
    # the saved model reloads and computes what the source computes (vs the numpy reference)
    import keras

    import migrator.core.keras_build.custom_layers  # noqa: F401
    m = keras.saving.load_model(str(out))
    x = win.doc.input_x
    got = np.asarray(m(np.transpose(x, (0, 2, 3, 1))))
    from migrator.core.reference import numpy_ref
    ref = None
    for name, outs in numpy_ref.run(win.doc.graph, x):
        if name == "prob":
            ref = outs[0]
    np.testing.assert_allclose(got, ref.reshape(got.shape), rtol=1e-4, atol=1e-6)
    # other formats from the file name (legacy .h5 is refused for this model: HDF5 cannot store
    # the keras.ops of pool1's -FLT_MAX padding; tests/core/test_export.py)
    for name in ("ok_w.weights.h5",):
        with qtbot.waitSignal(win.exported, timeout=120_000):
            win.export_to(str(tmp_path / name))
        assert (tmp_path / name).exists()
    # a deliberately wrong mapping: raw variance with a big epsilon on bn2
    win.select_source("bn2")
    assert win.set_override("bn2", "variance", "raw")
    assert win.set_override("bn2", "epsilon", 0.5)
    wait_plan(qtbot, win)
    assert doc.stale
    assert "stale" in win.status_result.text()
    res = run_compare(qtbot, win)
    assert not res.passed
    fd = res.first_divergent
    assert fd is not None and fd.source in ("bn2", "scale2")
    # layers before bn2 still pass, the failing one is marked in the tree and the table
    assert res.layer("conv2").status == "pass"
    row = win.source_model.row_of(fd.source)
    assert win.source_model._status[row] == "fail"
    assert "first divergent" in win.results_model.data(win.results_model.index(
        win.results_model.row_of(fd.source), 2))
    assert win.source_tree.current_name() == fd.source     # selected after the run
    # the channel plot shows failing bars above the tolerance line
    assert (win.channel_plot._err > win.channel_plot._tol).any()
    # export now asks, saying why; answering no writes nothing
    win.ask = Asker(False)
    bad = tmp_path / "bad.keras"
    win.export_to(str(bad))
    assert win.ask.questions and "failed" in win.ask.questions[0][1]
    assert not bad.exists()
    # answering yes exports, and the existing file is not overwritten without asking
    win.ask = Asker(True)
    with qtbot.waitSignal(win.exported, timeout=120_000):
        win.export_to(str(bad))
    assert bad.exists()
    win.ask = Asker(lambda title, text: "already exist" not in text)   # yes to the gate only
    mtime = bad.stat().st_mtime_ns
    win.export_to(str(bad))
    assert any("already exist" in q[1] for q in win.ask.questions)
    assert bad.stat().st_mtime_ns == mtime


def test_save_and_reopen_mapping(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    assert win.set_override("bn3", "epsilon", 1e-4)
    assert win.apply_to_all_batchnorm("fuse_scale", True)
    wait_plan(qtbot, win)
    path = str(tmp_path / "demo.mapping.json")
    assert win.save_mapping(path=path) == path
    data = json.loads(Path(path).read_text())
    assert data["layers"] == {"bn3": {"epsilon": 1e-4}}
    assert data["kinds"] == {"BatchNorm": {"fuse_scale": True}}
    assert not win.doc.overrides_modified
    assert not win.windowTitle().endswith("*")
    # reopen: a fresh document with the model, then the mapping file
    open_model(qtbot, win, demos["caffe"])
    assert not win.doc.overrides
    win.load_mapping(path)
    qtbot.waitUntil(lambda: win.doc.mapping_path == path and not win.doc.planning, timeout=30_000)
    assert win.doc.mapping("bn3").options["epsilon"] == pytest.approx(1e-4)
    assert win.doc.overrides.to_dict() == data
    # and a model opened together with the mapping
    open_model(qtbot, win, demos["caffe"], mapping=path)
    assert win.doc.mapping("bn3").options["epsilon"] == pytest.approx(1e-4)


def test_bad_file_keeps_previous_document(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    bad = tmp_path / "broken.prototxt"
    bad.write_text("layer { name: 'x' type: \n")
    with qtbot.waitSignal(win.load_failed, timeout=60_000) as sig:
        win.open_paths([str(bad), demos["caffe"][1]])
    msg = sig.args[0]
    assert "broken.prototxt" in msg and "Traceback" not in msg and "\n" not in msg
    assert win.doc.paths == demos["caffe"]
    assert win.source_model.rowCount() == len(win.doc.graph.nodes)


def test_drop_files_and_recent(qtbot, window, demos):
    win = window
    with qtbot.waitSignal(win.opened, timeout=120_000):
        win.open_dropped(list(demos["lasagne"]))
    assert win.doc.graph.framework == "lasagne"
    assert win.settings.recent()[0] == list(demos["lasagne"])


def test_channel_values(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    win.select_source("conv1")
    with qtbot.waitSignal(win.channel_values_ready, timeout=60_000):
        win.show_channel(3)
    ref = win.channel_view.ref_img.image
    got = win.channel_view.keras_img.image
    assert ref.shape == (48, 48) and got.shape == (48, 48)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # dense layer: scatter of reference vs Keras
    win.select_source("fc1")
    with qtbot.waitSignal(win.channel_values_ready, timeout=60_000):
        win.show_channel(5)
    assert win.channel_view.scatter_plot.isVisibleTo(win.channel_view)


def test_about_and_theme(qtbot, window):
    from PySide6.QtWidgets import QTextBrowser

    from migrator.gui.main_window import about_html, library_versions
    v = library_versions()
    assert "Migrator" in v and "NumPy" in v
    assert "TensorFlow devices" in about_html(["CPU: /physical_device:CPU:0"])
    window.about()
    browser = window._about.findChild(QTextBrowser)
    qtbot.waitUntil(lambda: "physical_device" in browser.toPlainText(), timeout=60_000)
    assert "TensorFlow" in browser.toPlainText()
    window._about.close()
    window.set_theme("dark")
    from migrator.gui import theme
    assert theme.is_dark()
    window.set_theme("light")
    assert not theme.is_dark()


def test_screenshot_command(tmp_path, demos):
    import subprocess
    import sys
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-m", "migrator.gui.app", "--screenshot", str(out),
                        "--settings", str(tmp_path / "s.ini"), *demos["lasagne"]],
                       env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 10_000


def test_unsupported_layer_is_marked_and_blocks_comparison(qtbot, window, tmp_path):
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("u", seed=0)
    nb.input("data", (1, 3, 8, 8))
    nb.conv("conv1", "data", 4, 3, pad=1)
    nb.layer("weird", "MyFancyLayer", ["conv1"], ["weird"], blobs=[np.ones(4, np.float32)],
             out_shape=(1, 4, 8, 8))
    nb.relu("relu", "weird")
    paths = [str(p) for p in nb.save(tmp_path / "u.prototxt", tmp_path / "u.caffemodel")]
    win = window
    open_model(qtbot, win, paths)
    row = win.source_model.row_of("weird")
    assert win.source_model._status[row] == "unsupported"
    tip = win.source_model.data(win.source_model.index(row, 0), 3)   # ToolTipRole
    assert "MyFancyLayer" in tip
    assert win.source_model.data(win.source_model.index(row, 0), 1) is not None   # an icon
    assert not win.act_export.isEnabled()
    win.run_comparison()
    qtbot.waitUntil(lambda: win.last_error is not None, timeout=60_000)
    assert "unsupported" in win.last_error and "weird" in win.last_error


def test_edit_in_the_inspector_with_the_keyboard(qtbot, window, demos):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit
    win = window
    open_model(qtbot, win, demos["caffe"])
    win.select_source("bn2")
    assert win.inspector.select_key("epsilon")
    win.inspector.view.setFocus()
    win.act_edit_param.trigger()                       # F2
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    qtbot.keyClicks(editor, "0.003")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.undo_stack.count() == 1, timeout=5000)
    wait_plan(qtbot, win)
    assert win.doc.mapping("bn2").options["epsilon"] == pytest.approx(3e-3)
    # a typo is refused inline, the mapping is unchanged
    assert win.inspector.select_key("epsilon")
    win.act_edit_param.trigger()
    editor = QApplication.focusWidget()
    editor.selectAll()
    qtbot.keyClicks(editor, "1e-3x")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.inspector.message.isVisible(), timeout=5000)
    assert "number" in win.inspector.message.text()
    assert win.undo_stack.count() == 1
    # choices get a drop-down list
    assert win.inspector.select_key("variance")
    win.act_edit_param.trigger()
    combo = QApplication.focusWidget()
    assert isinstance(combo, QComboBox)
    items = [combo.itemText(i) for i in range(combo.count())]
    assert "raw" in items and "exact" in items
    combo.setCurrentIndex(items.index("raw"))
    combo.activated.emit(items.index("raw"))
    qtbot.keyClick(combo, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.undo_stack.count() == 2, timeout=5000)
    wait_plan(qtbot, win)
    assert win.doc.mapping("bn2").options["variance"] == "raw"
    win.act_undo.trigger()
    wait_plan(qtbot, win)
    assert win.doc.mapping("bn2").options["variance"] == "exact"
