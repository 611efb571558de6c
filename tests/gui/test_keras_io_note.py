"""The Keras tree says, under its title, each input's and output's Keras layout in words."""
from __future__ import annotations

from migrator.testing import lasagne_models as M

from .conftest import open_model, wait_plan

SEQ = '''
from lasagne.layers import InputLayer, LSTMLayer


def build_model():
    return LSTMLayer(InputLayer((None, None, 5), name='chars'), 3, peepholes=False, name='lstm')
'''


def test_keras_tree_states_input_and_output_layouts(qtbot, window, demos, tmp_path):
    win = window
    open_model(qtbot, win, demos["caffe"])
    wait_plan(qtbot, win)
    text = win.keras_tree.note.text()
    assert "— image, channels-last (source (N, C, H, W))" in text, text
    assert not win.keras_tree.note.isHidden()
    b, p, _ = M.write_model(tmp_path, SEQ, "npz", seed=1)
    open_model(qtbot, win, [str(b), str(p)])
    wait_plan(qtbot, win)
    lines = win.keras_tree.note.text().splitlines()
    assert lines == ["input 'chars': Keras (N, T=?, F=5) — sequence, same order as Lasagne",
                     "output 'lstm': Keras (N, T=?, F=3) — sequence, same order as Lasagne"], lines
