"""The Open dialog: plugin files (kept in the settings, loaded before the model) and a whole
pickled Lasagne network opened alone."""
from __future__ import annotations

import numpy as np

from .conftest import LOAD_TIMEOUT
from .test_open_dialog import _click_open, _drive_dialog


def test_a_plugin_added_in_the_open_dialog_is_kept_and_converts_its_type(
        qtbot, window, tmp_path, monkeypatch):
    from migrator.core.plugins import LOADED, unload_plugin
    from migrator.gui.flows import open_flow
    from migrator.testing.caffe_net import NetBuilder
    from tests.core.test_plugins import PRIOR_LAYERS, PRIORBOX

    nb = NetBuilder("ssd_gui", seed=1)
    nb.input("data", (1, 3, 32, 24))
    nb.conv("conv1", "data", 4, 3, pad=1, stride=4)
    nb.conv("conv2", "conv1", 4, 3, pad=1, stride=2)
    proto, model = nb.save(tmp_path / "ssd.prototxt", tmp_path / "ssd.caffemodel")
    with open(proto, "a") as f:
        f.write(PRIOR_LAYERS)
    win = window
    monkeypatch.setattr(open_flow.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (PRIORBOX, "")))

    def steps(dlg):
        dlg._pick_plugin()
        assert "priorbox_plugin.py" in dlg.plugin_label.text()
        dlg.arch.setText(str(proto))
        dlg.weights.setText(str(model))
        _click_open(dlg)
    try:
        with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
            _drive_dialog(qtbot, win, steps)
        assert win.settings.get("plugins") == [PRIORBOX]
        assert PRIORBOX in LOADED
        ops = {n.name: n.op for n in win.doc.graph.nodes}
        assert ops["p1"] == ops["p2"] == "PriorBox"
        assert not win.doc.plan.unsupported
    finally:
        unload_plugin(PRIORBOX)
        win.settings.set("plugins", [])


def test_a_pickled_network_opens_alone(qtbot, window, tmp_path):
    from tests.lasagne.test_hostile_network_pickle import dumps, mlp

    fc, _, _ = mlp(np.random.default_rng(0))
    p = tmp_path / "net.pkl"
    p.write_bytes(dumps(fc))
    win = window

    def steps(dlg):
        dlg.weights.setText(str(p))
        _click_open(dlg)
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        _drive_dialog(qtbot, win, steps)
    assert win.doc.paths == [str(p)]
    assert [n.op for n in win.doc.graph.nodes] == ["Input", "Dense"]
