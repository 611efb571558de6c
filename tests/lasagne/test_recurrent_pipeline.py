"""Recurrent Lasagne models through the pipeline (no real Theano needed): random test inputs
of embedding lookups are valid indices, and a model Keras cannot run unrolled (unknown
sequence length) is refused with the reason instead of being converted approximately."""
from __future__ import annotations

import numpy as np

from migrator.testing import lasagne_models as M

SCRIPT = '''
import lasagne
from lasagne.layers import InputLayer, EmbeddingLayer, LSTMLayer, GRULayer, DenseLayer


def build_model():
    net = {}
    net['chars'] = InputLayer((None, 4))
    net['emb'] = EmbeddingLayer(net['chars'], input_size=7, output_size=3)
    net['lstm'] = LSTMLayer(net['emb'], 5)                      # peepholes: unrolled
    net['gru'] = GRULayer(net['lstm'], 4, only_return_final=True)
    net['prob'] = DenseLayer(net['gru'], 2, nonlinearity=lasagne.nonlinearities.softmax)
    return net
'''

OPEN_T = '''
from lasagne.layers import InputLayer, LSTMLayer, GRULayer


def build_model():
    l = InputLayer((None, None, 3))
    return GRULayer(LSTMLayer(l, 4, peepholes=False), 3)
'''


def test_random_input_of_an_embedding_is_valid_indices(tmp_path):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.inputs import InputSpec, make_input

    b, p, _ = M.write_model(tmp_path, SCRIPT, "npz", seed=1)
    g = load_lasagne(b, p, output_layer="prob")
    x, desc = make_input(g, InputSpec(kind="random", seed=3, batch=4))
    assert x.shape == (4, 4) and desc["kind"] == "random"
    assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 6
    assert len(np.unique(x)) > 2


def test_open_sequence_length_builtin_ok_unrolled_refused(tmp_path):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.mapping.planner import make_plan

    b, p, _ = M.write_model(tmp_path, OPEN_T, "npz", seed=1)
    g = load_lasagne(b, p)
    plan = make_plan(g)
    assert not plan.unsupported      # built-in LSTM (no peepholes) and GRU take any length
    impls = [s.config["impl"] for m in plan.mappings for s in m.layers if s.class_name == "LasagneRNN"]
    assert impls == ["builtin", "builtin"]
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.reference import numpy_ref
    model = build_keras(plan)
    for T in (2, 6):     # any sequence length (the numpy kernel is checked against Theano
        x = np.random.default_rng(T).normal(size=(2, T, 3)).astype(np.float32)   # elsewhere)
        want = numpy_ref.run_all(g, x)[g.nodes[-1].name][0]
        got = np.asarray(model.predict(x, verbose=0))     # Keras (N, T, F) = Lasagne's order
        assert got.shape == want.shape == (2, T, 3)
        assert np.abs(got - want).max() <= 1e-6 + 1e-5 * np.abs(want).max()
    from migrator.core.mapping.overrides import Overrides
    plan = make_plan(g, Overrides(kinds={"Recurrent": {"impl": "unrolled"}}))
    bad = {m.source: m.error for m in plan.unsupported}
    assert len(bad) == 2 and all("known sequence length" in e for e in bad.values()), bad
