"""Keras layouts follow meaning, not rank (no real framework needed; the recurrent arithmetic
itself is checked against real Lasagne in tests/lasagne/test_recurrent*.py and
test_open_length.py).

* a sequence (N, T, F) feeding a recurrence keeps Keras's order -- Lasagne's --, also when its
  length equals its number of features (where a transposed layout would go unnoticed by shape);
* Embedding outputs and recurrent outputs stay (N, T, F): no Permute between an embedding, a
  recurrence and a Dense over time steps;
* (N, C, L) data for a Conv1D still becomes Keras's (N, L, C);
* ``io_layout_lines`` says so for every input and output; ``inspect`` prints it.
"""
from __future__ import annotations

import numpy as np

from migrator.testing import lasagne_models as M

SQUARE = '''
from lasagne.layers import InputLayer, LSTMLayer, GRULayer


def build_model():
    l = InputLayer((None, 6, 6))
    return GRULayer(LSTMLayer(l, 6, peepholes=False), 6)
'''

EMB = '''
import lasagne
from lasagne.layers import InputLayer, EmbeddingLayer, LSTMLayer, DenseLayer


def build_model():
    net = {}
    net['chars'] = InputLayer((None, 5))
    net['emb'] = EmbeddingLayer(net['chars'], input_size=7, output_size=4)
    net['lstm'] = LSTMLayer(net['emb'], 3)
    net['per_step'] = DenseLayer(net['lstm'], 2, num_leading_axes=2,
                                 nonlinearity=lasagne.nonlinearities.tanh)
    return net
'''

CONV1D = '''
from lasagne.layers import InputLayer, Conv1DLayer


def build_model():
    return Conv1DLayer(InputLayer((None, 4, 10)), 3, 3)
'''


def _naive_lasagne_lstm_gru(x, g):
    """Lasagne's LSTM (no peepholes) then GRU, written from the formulas (numpy, float64)."""
    def sig(a):
        return 1.0 / (1.0 + np.exp(-a))

    lstm, gru = g.nodes[1], g.nodes[2]
    n, T, _ = x.shape
    U = int(lstm.attrs["units"])
    W = {k: np.asarray(lstm.p(k), np.float64) for k in lstm.params}
    h = np.zeros((n, U)) + W.get("hid_init", np.zeros((1, U))).reshape(1, U)
    c, hs = np.zeros((n, U)) + W.get("cell_init", np.zeros((1, U))).reshape(1, U), []
    for t in range(T):
        z = {q: x[:, t] @ W[f"W_in_to_{q}"] + h @ W[f"W_hid_to_{q}"] + W[f"b_{q}"]
             for q in ("ingate", "forgetgate", "cell", "outgate")}
        c = sig(z["forgetgate"]) * c + sig(z["ingate"]) * np.tanh(z["cell"])
        h = sig(z["outgate"]) * np.tanh(c)
        hs.append(h)
    x2 = np.stack(hs, 1)
    V = {k: np.asarray(gru.p(k), np.float64) for k in gru.params}
    U2 = int(gru.attrs["units"])
    h, out = np.zeros((n, U2)) + V.get("hid_init", np.zeros((1, U2))).reshape(1, U2), []
    for t in range(T):
        r = sig(x2[:, t] @ V["W_in_to_resetgate"] + h @ V["W_hid_to_resetgate"] + V["b_resetgate"])
        u = sig(x2[:, t] @ V["W_in_to_updategate"] + h @ V["W_hid_to_updategate"] + V["b_updategate"])
        hu = np.tanh(x2[:, t] @ V["W_in_to_hidden_update"] + V["b_hidden_update"]
                     + r * (h @ V["W_hid_to_hidden_update"]))
        h = (1 - u) * h + u * hu
        out.append(h)
    return np.stack(out, 1)


def test_square_sequence_is_fed_in_lasagne_order(tmp_path):
    from migrator.core import flow
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.mapping.io_layouts import io_layout_lines

    b, p, _ = M.write_model(tmp_path, SQUARE, "npz", seed=2)
    g = load_lasagne(b, p)
    plan = flow.plan_model(g)
    assert [s.class_name for s in plan.keras_layers] == ["Input", "LasagneRNN", "LasagneRNN"]
    model = flow.build_model(plan)
    assert tuple(model.input.shape) == (None, 6, 6)
    x = np.random.default_rng(0).normal(size=(2, 6, 6)).astype(np.float32)
    want = _naive_lasagne_lstm_gru(x.astype(np.float64), g)
    got = np.asarray(model(x))                     # data shaped as for Lasagne, as it is
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    # the transposed feed (the old (N, F, T) layout) gives something else
    assert np.abs(np.asarray(model(x.transpose(0, 2, 1))) - want).max() > 1e-2
    name = g.output_tensors[0]
    assert io_layout_lines(plan) == [
        f"input '{g.input_nodes[0].name}': Keras (N, T=6, F=6) — sequence, same order as Lasagne",
        f"output '{name}': Keras (N, T=6, F=6) — sequence, same order as Lasagne"], io_layout_lines(plan)
    res = flow.compare(g, plan, model, x, input_desc={"shape": [2, 6, 6]})
    assert res.passed


def test_embedding_recurrence_and_dense_over_time_need_no_permute(tmp_path):
    from migrator.core import flow
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.inputs import InputSpec, make_input

    b, p, _ = M.write_model(tmp_path, EMB, "npz", seed=1)
    g = load_lasagne(b, p, output_layer="per_step")
    plan = flow.plan_model(g)
    assert not plan.unsupported, [(m.source, m.error) for m in plan.unsupported]
    assert "Permute" not in {s.class_name for s in plan.keras_layers}, \
        [(s.name, s.class_name) for s in plan.keras_layers]
    assert {m.source: m.layout for m in plan.mappings} == {
        "chars": "NC", "emb": "NTF", "lstm": "NTF", "per_step": "NTF"}
    model = flow.build_model(plan)
    assert tuple(model.output.shape) == (None, 5, 2)
    x, desc = make_input(g, InputSpec(kind="random", seed=3, batch=3))
    res = flow.compare(g, plan, model, x, input_desc=desc)
    assert res.passed, [(r.source, r.max_rel) for r in res.layers if r.status == "fail"]


def test_conv1d_data_stays_channels_last(tmp_path):
    from migrator.core import flow
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.mapping.io_layouts import io_layout_lines

    b, p, _ = M.write_model(tmp_path, CONV1D, "npz", seed=1)
    g = load_lasagne(b, p)
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    assert tuple(model.input.shape) == (None, 10, 4)
    assert io_layout_lines(plan)[0] == (f"input '{g.input_nodes[0].name}': Keras (N, L=10, C=4) — 1-D "
                                        "data, channels-last (source (N, C, L))")


OPEN_PEEPHOLE = '''
from lasagne.layers import InputLayer, LSTMLayer


def build_model():
    return LSTMLayer(InputLayer((None, None, 4), name='chars'), 3, name='lstm')
'''


def test_report_states_layouts_and_the_keras_format_limit(tmp_path):
    from migrator.core import flow
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.report import build_report, render_markdown

    b, p, _ = M.write_model(tmp_path, OPEN_PEEPHOLE, "npz", seed=1)
    g = load_lasagne(b, p)
    plan = flow.plan_model(g)
    assert [s.config.get("impl") for s in plan.keras_layers if s.class_name == "LasagneRNN"] == ["loop"]
    rep = build_report(g, plan, None)
    assert rep["keras_io"]["lines"][0] == "input 'chars': Keras (N, T=?, F=4) — sequence, same order as Lasagne"
    note = rep["keras_io"]["keras_format_note"]
    assert "\n" not in note and "'lstm'" in note and "SavedModel" in note
    from migrator.core.mapping.rules.recurrent import open_length_problem
    assert open_length_problem(plan, "weights") and open_length_problem(plan, "h5")
    assert open_length_problem(plan, "saved_model") is None and open_length_problem(plan, "tflite") is None
    md = render_markdown(rep)
    assert "## Keras inputs and outputs" in md and "- output 'lstm': Keras (N, T=?, F=3)" in md


def test_an_input_named_like_a_python_keyword_gets_a_signature_name(tmp_path):
    from migrator.core import export as E
    from migrator.core import flow
    from migrator.core.importers.lasagne import load_lasagne

    b, p, _ = M.write_model(tmp_path, OPEN_PEEPHOLE.replace("name='chars'", "name='in'"), "npz", seed=1)
    g = load_lasagne(b, p)
    ins, _outs = E.signature_names(flow.plan_model(g), g)
    assert [(src, sig) for src, _k, sig in ins] == [("in", "in_")]
