"""Core features offered by the window: unknown Caffe fields mark their layer and block
export, an input-size prompt for models that leave sizes open, the image-folder input
(an input set), TFLite / SavedModel export."""
from __future__ import annotations

import os

import numpy as np
import pytest

from .conftest import LOAD_TIMEOUT, open_model, run_compare


def test_unknown_field_marks_the_layer_and_blocks_export(qtbot, window, tmp_path):
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("frob", seed=0)
    nb.input("data", (1, 3, 8, 8))
    nb.conv("conv", "data", 4, 3)
    nb.bn("bn", "conv", top="conv")
    p, m = nb.save(tmp_path / "f.prototxt", tmp_path / "f.caffemodel")
    from pathlib import Path
    text = Path(p).read_text()
    assert text.count('type: "BatchNorm"') == 1
    Path(p).write_text(text.replace('type: "BatchNorm"', 'type: "BatchNorm"\n  frob: 1'))
    win = window
    open_model(qtbot, win, [p, m])            # opens instead of failing the whole model
    assert [u.source for u in win.doc.plan.unsupported] == ["bn"]
    assert "frob" in win.doc.plan.unsupported[0].error
    assert win.source_model._status[win.source_model.row_of("bn")] == "unsupported"
    assert not win.act_export.isEnabled()
    # named up front, as `migrator inspect` does (coverage.not_covered)
    summary = win.compare.summary.text()
    assert "1 layer(s) not converted" in summary and "bn" in summary and "frob" in summary


def test_open_input_size_prompt_reopens_at_the_given_size(qtbot, window, tmp_path):
    from migrator.testing.lasagne_models import write_model
    src = '''
import lasagne
from lasagne.layers import InputLayer, Conv2DLayer, MaxPool2DLayer, GlobalPoolLayer, DenseLayer
from lasagne.nonlinearities import softmax

def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, None, None))
    net['conv1'] = Conv2DLayer(net['input'], 4, 3, stride=2, pad=1)
    net['pool1'] = MaxPool2DLayer(net['conv1'], pool_size=3, stride=2, ignore_border=False)
    net['pool5'] = GlobalPoolLayer(net['pool1'])
    net['prob'] = DenseLayer(net['pool5'], num_units=5, nonlinearity=softmax)
    return net
'''
    b, prm, _vals = write_model(tmp_path, src, flavour="npz", seed=3)
    win = window
    asked = []

    def answer(title, text, default):
        asked.append(text)
        return "1,3,40,40"
    win.ask_text = answer
    open_model(qtbot, win, [b, prm])
    assert win.doc.plan.unsupported                       # pool1 needs a size
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        pass                                              # reopened at the given size
    assert asked and "open" in asked[0] and "pool1" in asked[0]
    assert tuple(win.doc.graph.node("input").out_shape) == (1, 3, 40, 40)
    assert not win.doc.plan.unsupported
    res = run_compare(qtbot, win)
    assert res is not None and res.passed


def test_image_folder_input_is_a_set(qtbot, window, demos, tmp_path):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / f"i{i}.png")
    win = window
    open_model(qtbot, win, demos["caffe"])
    c = win.compare
    c.kind.setCurrentIndex(c.kind.findData("images"))
    assert c.limit.isVisibleTo(c) and c.pre_box.isVisibleTo(c) and c.path_label.text() == "Folder"
    c.path.setText(str(folder))
    c.limit.setValue(2)
    c.batch_size.setValue(1)
    spec = c.input_spec()
    assert spec.kind == "images" and spec.limit == 2 and spec.batch_size == 1
    res = run_compare(qtbot, win)
    assert res is not None and res.n_samples == 2 and res.passed
    assert "over 2 samples" in c.summary.text()


def test_export_formats_offered(qtbot, window, demos, tmp_path):
    from migrator.gui.flows.export_flow import FILTERS, export_targets, format_of
    fmts = [f for _, f in FILTERS]
    assert {"keras", "h5", "weights", "tflite", "saved_model"} <= set(fmts)
    assert format_of("a.tflite") == "tflite" and format_of("x", "saved_model") == "saved_model"
    rep, targets = export_targets(str(tmp_path / "m"), "saved_model")
    assert rep.endswith("m.saved_model.report.json") and targets[0] == str(tmp_path / "m")
    win = window
    open_model(qtbot, win, demos["caffe"])
    run_compare(qtbot, win)
    with qtbot.waitSignal(win.exported, timeout=300_000):
        win.export_to(str(tmp_path / "demo.tflite"))
    assert os.path.getsize(tmp_path / "demo.tflite") > 1000
    assert (tmp_path / "demo.tflite.report.json").is_file()


@pytest.mark.parametrize("kind", ["image", "images"])
def test_preprocessing_shown_for_image_kinds(qtbot, window, kind):
    c = window.compare
    c.kind.setCurrentIndex(c.kind.findData(kind))
    assert c.pre_box.isVisibleTo(c)
    c.kind.setCurrentIndex(c.kind.findData("random"))
    assert not c.pre_box.isVisibleTo(c) and not c.limit.isVisibleTo(c)
