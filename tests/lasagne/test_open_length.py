"""A Lasagne character model keeps Keras's sequence order and its open length, checked against the
REAL Lasagne 0.1 + Theano 1.0.5.

``InputLayer((None, None, 60))`` -> ``LSTMLayer`` (peepholes: Lasagne's default, which no
built-in Keras layer computes) -> ``GRULayer`` -> the last time step -> ``DenseLayer`` (softmax),
converted as with ``--input-shape 2,20,60``:

* the Keras input is ``(None, None, 60)``: (batch, time, features) as Lasagne and Keras RNNs
  have it, time left open -- data shaped as for Lasagne is fed as it is;
* the peephole LSTM is a graph loop (``keras.ops.while_loop``), the GRU the built-in layer;
* the exported SavedModel, loaded where Migrator cannot be imported, is fed sequences of
  length 7 and 31 (neither is the 20 of the comparison) and equals real Lasagne's output;
* ``.keras`` cannot hold the loop without a Migrator class, and TFLite runs the built-in GRU at
  an open length only with the Flex delegate: the export says so in one line each;
* with every recurrence as the loop (mapping file ``{"kinds": {"Recurrent": {"impl": "loop"}}}``)
  the TFLite model (TFLite built-in ops) takes both lengths too and equals real Lasagne.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M

pytestmark = [pytest.mark.theano, pytest.mark.slow]

F, U_LSTM, U_GRU = 60, 9, 7

CHAR = '''
import lasagne
from lasagne.layers import InputLayer, LSTMLayer, GRULayer, SliceLayer, DenseLayer


def build_model():
    net = {}
    net['chars'] = InputLayer((None, None, 60))
    net['lstm'] = LSTMLayer(net['chars'], 9)                  # peepholes=True: Lasagne's default
    net['gru'] = GRULayer(net['lstm'], 7, learn_init=False)
    net['last'] = SliceLayer(net['gru'], -1, 1)
    net['prob'] = DenseLayer(net['last'], 60, nonlinearity=lasagne.nonlinearities.softmax)
    return net
'''


@pytest.fixture(scope="module")
def py():
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env

    p = ensure_theano_env()
    if not p:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    return p


def _real(py, builder, vals, x, want):
    """Real Lasagne's outputs of the layers ``want`` for the input ``x`` (N, T, 60)."""
    from tests.envs.theano_env import run_theano
    from tests.lasagne.test_recurrent import FORWARD

    req = {"builder": np.array(builder), "roots": np.array(["prob"]), "n_params": np.array(len(vals)),
           "want": np.array(want), "no_cxx": np.array(1), "input__chars": x}
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    return run_theano(py, FORWARD, req, timeout=900)


def _rel(got, want) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(1e-6, float(np.abs(want).max())))


def test_char_model_open_length_saved_model_and_tflite_match_real_lasagne(py, tmp_path):
    from migrator.core import export as E
    from migrator.core import flow
    from migrator.core.errors import MigratorError
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.input_shape import apply_input_shapes
    from migrator.core.keras_build.executor import iter_keras_outputs
    from migrator.core.mapping.io_layouts import io_layout_lines
    from migrator.core.mapping.overrides import Overrides
    from tests.core.test_export import independent_outputs

    b, p, vals = M.write_model(tmp_path, CHAR, "pkl_param_values", seed=3)
    # impl='real': the real Lasagne 0.1 describes the builder (its outgate peephole form)
    g = load_lasagne(b, p, output_layer="prob", impl="real", python=py, timeout=300)
    apply_input_shapes(g, {"": (2, 20, F)})                  # as --input-shape 2,20,60
    plan = flow.plan_model(g)
    assert not plan.unsupported, [(m.source, m.error) for m in plan.unsupported]
    impl = {m.source: s.config.get("impl") for m in plan.mappings for s in m.layers
            if s.class_name == "LasagneRNN"}
    assert impl == {"lstm": "loop", "gru": "builtin"}
    model = flow.build_model(plan)
    assert tuple(model.input.shape) == (None, None, F)      # (batch, time, features), time open
    lines = io_layout_lines(plan)
    assert "input 'chars': Keras (N, T=?, F=60) — sequence, same order as Lasagne" in lines, lines

    x20 = np.random.default_rng(0).normal(size=(2, 20, F)).astype(np.float32)
    res = flow.compare(g, plan, model, x20, input_desc={"shape": [2, 20, F]})
    assert res.passed, [(r.source, r.max_rel) for r in res.layers if r.status == "fail"]

    with pytest.raises(MigratorError, match="SavedModel") as ei:     # one line, points to SavedModel
        E.export(model, plan, res, str(tmp_path / "char.keras"), graph=g)
    assert "\n" not in str(ei.value) and "'lstm'" in str(ei.value)
    assert not (tmp_path / "char.keras").exists()

    with pytest.raises(MigratorError, match="Flex") as ei:      # built-in GRU on an open axis
        E.export(model, plan, res, str(tmp_path / "char.tflite"), graph=g)
    assert "\n" not in str(ei.value) and "'gru'" in str(ei.value) and '"loop"' in str(ei.value)

    sm = tmp_path / "char_saved_model"
    _written, records = E.export(model, plan, res, str(sm), fmt="saved_model", graph=g)
    assert records[0]["passed"] and records[0]["compared_with"] == "reference", records

    # every recurrence as the graph loop: TFLite runs it with its built-in ops at any length
    loop_plan = flow.plan_model(g, Overrides(kinds={"Recurrent": {"impl": "loop"}}))
    assert {s.config.get("impl") for s in loop_plan.keras_layers if s.class_name == "LasagneRNN"} == {"loop"}
    loop_model = flow.build_model(loop_plan)
    assert tuple(loop_model.input.shape) == (None, None, F)
    res2 = flow.compare(g, loop_plan, loop_model, x20, input_desc={"shape": [2, 20, F]})
    assert res2.passed, [(r.source, r.max_rel) for r in res2.layers if r.status == "fail"]
    tfl = tmp_path / "char.tflite"
    _written, records = E.export(loop_model, loop_plan, res2, str(tfl), graph=g)
    assert records[0]["passed"] and records[0]["compared_with"] == "reference", records
    assert records[0].get("ops") == "TFLite built-ins", records

    ins, outs = E.signature_names(plan, g)
    arts = [("saved_model", sm), ("tflite", tfl)]
    errs = []
    for T in (7, 31):
        x = np.random.default_rng(T).normal(size=(2, T, F)).astype(np.float32)
        want = _real(py, b, vals, x, ["lstm", "gru", "prob"])
        assert want["lstm"].shape == (2, T, U_LSTM) and want["gru"].shape == (2, T, U_GRU)
        got = independent_outputs(tmp_path, arts, [x], [s for *_, s in ins], [s for _, s in outs])
        for k, (fmt, _) in enumerate(arts):
            e = _rel(got[(k, 0)], want["prob"])
            errs.append(f"{fmt} T={T}: {e:.1e}")
            assert e <= 1e-5, f"{fmt} at T={T}: relative {e:.2e} from real Lasagne"
        # the in-memory models' recurrent layers at this length, in Lasagne's (N, T, F) order
        for pl, mo, tag in ((plan, model, "auto"), (loop_plan, loop_model, "loop")):
            k2s = {pl.mapping(n).keras_output: n for n in ("lstm", "gru")}
            for kname, a in iter_keras_outputs(mo, pl, x, want=set(k2s)):
                if kname not in k2s:
                    continue
                n = k2s[kname]
                e = _rel(np.asarray(a), want[n])
                errs.append(f"keras[{tag}] {n} T={T}: {e:.1e}")
                assert e <= 1e-5, f"{tag} {n} at T={T}: relative {e:.2e} from real Lasagne"
    print("\n" + "; ".join(errs))


def test_every_cell_as_the_loop_matches_real_lasagne(py, tmp_path):
    """The loop form of every Lasagne cell and option -- masks with fractional values,
    backwards, learned and layer-given initial states, peepholes, odd gate nonlinearities,
    CustomRecurrentLayer's Dense sub-layers -- against real Lasagne 0.1 (the character model
    of test_recurrent.py, every recurrence forced to ``impl='loop'``)."""
    from migrator.core import flow
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.overrides import Overrides
    from migrator.core.reference import numpy_ref
    from tests.envs.theano_env import run_theano
    from tests.lasagne import keras_outputs_by_source
    from tests.lasagne.test_recurrent import CHAR_01, FORWARD, _inputs

    b, p, vals = M.write_model(tmp_path, CHAR_01, "pkl_param_values", seed=4)
    g = load_lasagne(b, p, output_layer="prob", impl="real", python=py, timeout=300)
    xs = _inputs(g, np.random.default_rng(5))
    names = [n.name for n in g.nodes if n.op != "Input"]
    req = {"builder": np.array(b), "roots": np.array(["prob"]), "n_params": np.array(len(vals)),
           "want": np.array(names), "no_cxx": np.array(1)}
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    req.update({f"input__{k}": v for k, v in xs.items()})
    real = run_theano(py, FORWARD, req, timeout=900)
    plan = flow.plan_model(g, Overrides(kinds={"Recurrent": {"impl": "loop"}}))
    assert not plan.unsupported, [(m.source, m.error) for m in plan.unsupported]
    loops = [m.source for m in plan.mappings for s in m.layers
             if s.class_name == "LasagneRNN" and s.config["impl"] == "loop"]
    assert len(loops) == 7, loops
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, xs).items()}
    got = keras_outputs_by_source(flow.build_model(plan), plan, xs, ref)
    # Migrator's own class (LasagneRNN.call with the same loop), as a model needing Migrator
    custom = keras_outputs_by_source(build_keras(plan, plain=False), plan, xs, ref)
    for n in names:
        e = _rel(got[n], real[n])
        assert e <= 1e-5, f"loop form, layer {n}: relative {e:.2e} from real Lasagne"
        assert _rel(custom[n], real[n]) <= 1e-5, f"LasagneRNN class, layer {n}"
