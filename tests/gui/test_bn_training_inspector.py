"""The mapping inspector's fine-tuning rows: source vs Keras training update, the drift after N
steps, and the momentum override's effect on them."""
from __future__ import annotations

from .conftest import open_model, wait_plan


def test_inspector_shows_training_update_and_drift(qtbot, window, demos):
    win = window
    open_model(qtbot, win, demos["lasagne"])
    win.select_source("conv1_bn")
    assert win.inspector.select_key("update_drift")
    text = win.inspector.detail.text().replace("&amp;", "&").replace("&lt;", "<")
    assert "source update</b>: mean <- (1-alpha)*mean" in text
    assert "Keras update</b>: moving_mean <- momentum*moving_mean" in text
    assert "N=1: mean 0," in text and "N=100:" in text and "(overridden)" not in text
    before = next(r for r in win.doc.mapping("conv1_bn").rows if r.key == "update_drift").value
    assert win.set_override("conv1_bn", "momentum", 0.99)
    wait_plan(qtbot, win)
    assert win.inspector.select_key("update_drift")
    text = win.inspector.detail.text().replace("&amp;", "&").replace("&#x27;", "'")
    after = next(r for r in win.doc.mapping("conv1_bn").rows if r.key == "update_drift").value
    assert after != before and after.split("; ")[-1] in text
    assert "momentum (overridden)</b>: 0.99" in text
    assert "differs from the source's rate (0.9)" in text
