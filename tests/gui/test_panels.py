"""Comparison inputs (image with preprocessing, .npy), cancel, log panel, settings and layout."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from .conftest import open_model, run_compare


def test_image_input_defaults_to_the_model_mean(qtbot, window, demos, tmp_path):
    from PIL import Image
    win = window
    open_model(qtbot, win, demos["lasagne"])
    rng = np.random.default_rng(0)
    img = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(img)
    p = win.compare
    p.kind.setCurrentIndex(p.kind.findData("image"))
    assert p.pre_box.isVisibleTo(p) and not p.seed.isVisibleTo(p)
    p.path.setText(str(img))
    p.order.setCurrentText("RGB")
    p.scale.setValue(0.5)
    res = run_compare(qtbot, win)
    assert res is not None and res.passed
    desc = win.doc.input_desc
    assert desc["kind"] == "image" and desc["preprocessing"]["mean_source"] == "model"
    # the input really is: resize to 40x40, RGB, minus the stored mean, times 0.5
    with Image.open(img) as im:
        a = np.asarray(im.convert("RGB").resize((40, 40), Image.BILINEAR), np.float32)
    mean = np.asarray(win.doc.graph.meta["mean"], np.float32).reshape(3, 1, 1)
    expect = ((a.transpose(2, 0, 1) - mean) * 0.5)[None]
    np.testing.assert_allclose(win.doc.input_x, expect, rtol=1e-6, atol=1e-5)
    # an explicit mean replaces the model's
    p.mean.setText("1, 2, 3")
    run_compare(qtbot, win)
    assert win.doc.input_desc["preprocessing"]["mean_source"] == "given"


def test_npy_input_and_bad_input_message(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    x = np.random.default_rng(3).standard_normal((3, 48, 48)).astype(np.float32)
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    p = win.compare
    p.kind.setCurrentIndex(p.kind.findData("npy"))
    p.path.setText(str(npy))
    res = run_compare(qtbot, win)
    assert res.passed
    np.testing.assert_array_equal(win.doc.input_x[0], x)
    # a wrong shape: a one-line message naming the file, the previous result stays
    np.save(npy, np.zeros((2, 5, 5), np.float32))
    run_compare(qtbot, win)
    assert win.last_error and "x.npy" in win.last_error and "\n" not in win.last_error
    assert win.doc.result is res
    # no file chosen
    p.path.setText("")
    win.run_comparison()
    assert "choose an input file" in win.last_error


def test_cancel_keeps_the_gui_usable(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    with qtbot.waitSignal(win.comparison_done, timeout=120_000):
        win.run_comparison()
        win.act_cancel.trigger()
    # cancelled (or finished first on a fast machine): never stuck in 'running'
    assert not win.jobs["compare"].running
    assert win.compare.run_btn.isEnabled() and not win.compare.cancel_btn.isEnabled()
    if win.doc.result is None:
        assert win.compare.progress.format() == "cancelled"
    run_compare(qtbot, win)
    assert win.doc.result.passed


def test_log_panel_shows_python_logging(qtbot, window):
    logging.getLogger("migrator.test").warning("hello from the core")
    qtbot.waitUntil(lambda: "hello from the core" in window.log_panel.toPlainText(), timeout=5000)


def test_layout_and_settings_are_restored(qtbot, tmp_path):
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings
    ini = str(tmp_path / "s.ini")
    w1 = MainWindow(Settings(ini))
    w1.show()
    w1.resize(701, 503)
    w1.log_dock.hide()
    w1.compare.seed.setValue(42)
    qtbot.wait(20)
    size = (w1.width(), w1.height())
    assert size != (1500, 950)
    w1.ask = lambda *a: True
    w1.close()
    w2 = MainWindow(Settings(ini))
    w2.show()
    qtbot.wait(20)
    assert (w2.width(), w2.height()) == size
    assert not w2.log_dock.isVisible()
    assert w2.compare.seed.value() == 42
    w2.ask = lambda *a: True
    w2.close()


def test_settings_defaults_and_types(tmp_path):
    from migrator.gui.settings import DEFAULTS, Settings
    s = Settings(str(tmp_path / "x.ini"))
    assert s.get("compare/seed") == 0 and s.get("plots/log_scale") is True
    s.set("compare/seed", 7)
    s.set("plots/log_scale", False)
    for i in range(12):
        s.add_recent([f"/m{i}.prototxt", f"/m{i}.caffemodel"])
    s.add_recent(["/m3.prototxt", "/m3.caffemodel"])
    s.sync()
    t = Settings(str(tmp_path / "x.ini"))
    assert t.get("compare/seed") == 7 and t.get("plots/log_scale") is False
    rec = t.recent()
    assert len(rec) == DEFAULTS["recent_max"] and rec[0] == ["/m3.prototxt", "/m3.caffemodel"]
    assert rec.count(["/m3.prototxt", "/m3.caffemodel"]) == 1


@pytest.mark.parametrize("theme_name", ["light", "dark"])
def test_status_colours_readable_on_both_palettes(qapp, theme_name):
    from PySide6.QtGui import QPalette

    from migrator.gui import theme
    theme.apply_theme(theme_name)
    base = qapp.palette().color(QPalette.ColorRole.Base)

    def lum(c):
        def ch(v):
            v = v / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * ch(c.red()) + 0.7152 * ch(c.green()) + 0.0722 * ch(c.blue())

    for st in ("fail", "unsupported", "overridden", "pass", "stale", "fused"):
        c = theme.colour(st)
        hi, lo = sorted([lum(c), lum(base)], reverse=True)
        assert (hi + 0.05) / (lo + 0.05) >= 3.0, (theme_name, st)   # WCAG large-text contrast
    text = qapp.palette().color(QPalette.ColorRole.Text)
    hi, lo = sorted([lum(text), lum(base)], reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 7.0
    theme.apply_theme("light")


@pytest.mark.opencv
def test_reference_runtime_choice(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["caffe"])
    p = win.compare
    names = [p.runtime.itemData(i) for i in range(p.runtime.count())]
    assert names[:1] == ["builtin"] and "legacy" in names
    # legacy without its command: a clear message, nothing runs
    p.runtime.setCurrentIndex(p.runtime.findData("legacy"))
    assert p.legacy_cmd.isVisibleTo(p)
    win.run_comparison()
    assert "legacy" in win.last_error and "command" in win.last_error
    i = p.runtime.findData("opencv")         # cv2 is installed by make test: offered, enabled
    assert p.runtime.model().item(i).isEnabled()
    p.runtime.setCurrentIndex(i)
    res = run_compare(qtbot, win)
    assert res is not None and res.runtime["name"] == "opencv"
    assert res.passed, [(r.source, r.status, r.max_abs) for r in res.layers if r.status == "fail"]
    # OpenCV cannot run a Lasagne model: offered but disabled, with the reason as tooltip
    open_model(qtbot, win, demos["lasagne"])
    i = p.runtime.findData("opencv")
    assert not p.runtime.model().item(i).isEnabled() and p.runtime.model().item(i).toolTip()
    assert p.runtime.currentData() == "builtin"


@pytest.mark.slow
def test_mean_file_in_the_preprocessing_panel_and_a_baked_export(qtbot, window, demos, tmp_path):
    """A Caffe mean.binaryproto typed in the Mean field is read and centre-cropped with the image
    (transform_param's test-time crop, written here); 'bake into the exported model' puts it at
    the exported model's front and the report says so; a bad mean file is one line naming it."""
    import json

    from PIL import Image

    from .conftest import LOAD_TIMEOUT
    win = window
    open_model(qtbot, win, demos["caffe"])
    H, W = win.doc.graph.input_nodes[0].attrs["shape"][2:]
    rng = np.random.default_rng(1)
    mean = rng.uniform(80, 140, (3, H + 4, W + 6)).astype(np.float32)
    # Caffe's BlobProto, by hand: num/channels/height/width varints, then packed float data
    blob = b"".join(bytes([f << 3, v]) for f, v in zip((1, 2, 3, 4), (1, 3, H + 4, W + 6)))
    data = mean.astype("<f4").tobytes()
    n, size = len(data), b""
    while True:
        size += bytes([(n & 0x7F) | (0x80 if n >> 7 else 0)])
        n >>= 7
        if not n:
            break
    mean_file = tmp_path / "mean.binaryproto"
    mean_file.write_bytes(blob + bytes([5 << 3 | 2]) + size + data)
    img = rng.integers(0, 256, (H + 4, W + 6, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    p = win.compare
    p.kind.setCurrentIndex(p.kind.findData("image"))
    p.path.setText(str(tmp_path / "in.png"))
    p.order.setCurrentText("BGR")
    p.mean.setText(str(mean_file))
    p.scale.setValue(0.5)
    res = run_compare(qtbot, win)
    assert res is not None and res.passed
    want = (img[2:2 + H, 3:3 + W, ::-1].transpose(2, 0, 1).astype(np.float32)
            - mean[:, 2:2 + H, 3:3 + W]) * np.float32(0.5)
    np.testing.assert_array_equal(win.doc.input_x[0], want)
    assert win.doc.input_desc["preprocessing"]["mean_file"] == str(mean_file)
    # baked into the export
    p.bake.setChecked(True)
    with qtbot.waitSignal(win.exported, timeout=LOAD_TIMEOUT * 4):
        win.exporting.export_to(str(tmp_path / "baked.keras"))
    rep = json.loads((tmp_path / "baked.report.json").read_text())
    pre = rep["extra"]["preprocessing"]
    assert pre["baked"] and pre["mean_file"] == str(mean_file) and pre["scale"] == 0.5
    assert all(a["passed"] for a in rep["artifacts"])
    # a broken mean file: one line naming it
    bad = tmp_path / "bad.binaryproto"
    bad.write_bytes(b"\xff\xff\xff")
    p.mean.setText(str(bad))
    win.run_comparison()
    qtbot.wait(50)
    assert win.last_error and str(bad) in win.last_error and "\n" not in win.last_error
