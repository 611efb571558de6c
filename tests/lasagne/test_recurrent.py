"""Lasagne recurrent layers vs the real Lasagne 0.1 + Theano 1.0.5 (scan, pure-Python ops:
THEANO_FLAGS cxx= because Theano's scan C code does not build on Python 3.11).

* ``CHAR_01`` -- a character model written with Lasagne 0.1's public API: EmbeddingLayer ->
  LSTMLayer (peepholes, the default; mask_input with binary *and* fractional values) ->
  LSTMLayer (peepholes=False, backwards) -> GRULayer (learn_init) -> LSTMLayer with
  non-default gate nonlinearities -> GRULayer (backwards, a rectify hidden update) ->
  RecurrentLayer (tanh) -> CustomRecurrentLayer (Dense sub-layers, the recurrent one with
  a bias and a nonlinearity) -> DimshuffleLayer / ReshapeLayer / SliceLayer on time ->
  DenseLayer (softmax).  The recorder must describe it like the real Lasagne (names, shapes,
  get_all_params order; GRULayer's learn_init default is True in 0.1, False later, so the
  script sets it); then real Lasagne runs it and Migrator's numpy reference and
  converted Keras model are compared layer by layer.
* ``FEATURES_02`` -- what Lasagne 0.1 lacks (only_return_final, hid_init/cell_init given
  as layers, DenseLayer(num_leading_axes=2)), imported with the recorder; the Theano side is
  ``FEATURES_01``, the same network in 0.1's API (full sequence + slice, hid_init as the
  Theano expression of the init layer, reshape + dense + reshape) with the same parameters.
* The LSTM peephole on the output gate differs between 0.1 (``o = act(z_o) + c_t w_co``)
  and later Lasagne (``o = act(z_o + c_t w_co)``): the importer reads the version of the
  Lasagne that describes the builder; the later form is checked against a Theano scan
  written from Lasagne 0.2's LSTMLayer.step.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests import proofs

pytestmark = [pytest.mark.theano, pytest.mark.slow]

T_STEPS, BATCH, VOCAB = 5, 2, 11

CHAR_01 = '''
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, EmbeddingLayer, LSTMLayer, GRULayer, RecurrentLayer,
                            CustomRecurrentLayer, DenseLayer, SliceLayer, DimshuffleLayer,
                            ReshapeLayer, ConcatLayer, Gate)
from lasagne.nonlinearities import tanh, sigmoid, rectify, softmax, identity


def build_model():
    net = {}
    net['chars'] = InputLayer((None, 5), input_var=T.imatrix('chars'))
    net['mask'] = InputLayer((None, 5))
    net['emb'] = EmbeddingLayer(net['chars'], input_size=11, output_size=6)
    net['lstm'] = LSTMLayer(net['emb'], 7, mask_input=net['mask'])
    net['lstm_back'] = LSTMLayer(net['lstm'], 4, peepholes=False, backwards=True)
    net['gru'] = GRULayer(net['lstm_back'], 5, learn_init=True)
    net['lstm_odd'] = LSTMLayer(net['gru'], 4, ingate=Gate(nonlinearity=tanh),
                                forgetgate=Gate(nonlinearity=sigmoid),
                                cell=Gate(W_cell=None, nonlinearity=rectify),
                                outgate=Gate(nonlinearity=identity), nonlinearity=sigmoid)
    net['gru_back'] = GRULayer(net['lstm_odd'], 4, backwards=True, learn_init=False,
                               hidden_update=Gate(W_cell=None, nonlinearity=rectify))
    net['rnn'] = RecurrentLayer(net['gru_back'], 3, nonlinearity=tanh, name='rnn')
    net['crnn'] = CustomRecurrentLayer(
        net['rnn'], DenseLayer(InputLayer((None, 3)), 4, nonlinearity=None),
        DenseLayer(InputLayer((None, 4)), 4, nonlinearity=tanh), nonlinearity=rectify)
    net['shuf'] = DimshuffleLayer(net['crnn'], (0, 2, 1))
    net['resh'] = ReshapeLayer(net['shuf'], ([0], 20))
    net['last'] = SliceLayer(net['crnn'], -1, 1)
    net['dense_t'] = DenseLayer(net['resh'], 3, nonlinearity=tanh)
    net['cat'] = ConcatLayer([net['last'], net['dense_t']])
    net['prob'] = DenseLayer(net['cat'], 3, nonlinearity=softmax)
    return net
'''

FEATURES_02 = '''
import lasagne
from lasagne.layers import (InputLayer, LSTMLayer, GRULayer, RecurrentLayer, DenseLayer,
                            ElemwiseSumLayer)
from lasagne.nonlinearities import tanh


def build_model():
    net = {}
    net['x'] = InputLayer((None, 5, 3))
    net['h0'] = DenseLayer(InputLayer((None, 2), name='ctx'), 6, nonlinearity=tanh, name='h0')
    net['c0'] = DenseLayer(net['h0'], 6, nonlinearity=None, name='c0')
    net['lstm'] = LSTMLayer(net['x'], 6, hid_init=net['h0'], cell_init=net['c0'],
                            peepholes=False, name='lstm')
    net['dense_t'] = DenseLayer(net['lstm'], 4, num_leading_axes=2, nonlinearity=tanh,
                                name='dense_t')
    net['gru_final'] = GRULayer(net['dense_t'], 5, only_return_final=True, backwards=True,
                                name='gru_final')
    net['rnn_final'] = RecurrentLayer(net['dense_t'], 5, hid_init=net['gru_final'],
                                      only_return_final=True, name='rnn_final')
    net['out'] = ElemwiseSumLayer([net['gru_final'], net['rnn_final']], name='out')
    return net
'''

FEATURES_01 = '''
import lasagne
from lasagne.layers import (InputLayer, LSTMLayer, GRULayer, RecurrentLayer, DenseLayer,
                            ElemwiseSumLayer, SliceLayer, ReshapeLayer, get_output)
from lasagne.nonlinearities import tanh


def build_model():
    net = {}
    net['x'] = InputLayer((None, 5, 3))
    net['ctx'] = InputLayer((None, 2), name='ctx')
    net['h0'] = DenseLayer(net['ctx'], 6, nonlinearity=tanh, name='h0')
    net['c0'] = DenseLayer(net['h0'], 6, nonlinearity=None, name='c0')
    net['lstm'] = LSTMLayer(net['x'], 6, hid_init=get_output(net['h0']),
                            cell_init=get_output(net['c0']), peepholes=False, name='lstm')
    flat = ReshapeLayer(net['lstm'], (-1, 6))
    net['dense_t'] = ReshapeLayer(DenseLayer(flat, 4, nonlinearity=tanh, name='dense_t'),
                                  (-1, 5, 4))
    gru = GRULayer(net['dense_t'], 5, backwards=True, learn_init=False, name='gru_final')
    net['gru_final'] = SliceLayer(gru, 0, axis=1)     # backwards: the final state is at t=0
    rnn = RecurrentLayer(net['dense_t'], 5, hid_init=get_output(net['gru_final']),
                         name='rnn_final')
    net['rnn_final'] = SliceLayer(rnn, -1, axis=1)
    net['out'] = ElemwiseSumLayer([net['gru_final'], net['rnn_final']], name='out')
    return net
'''

#: run by the Theano venv: real Lasagne builds the network, the parameters are set in
#: get_all_params(roots) order, the wanted layers' outputs (deterministic) for the inputs
CONV1D_01 = '''
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, EmbeddingLayer, Conv1DLayer, MaxPool1DLayer,
                            DimshuffleLayer, DenseLayer, SliceLayer, ConcatLayer, FlattenLayer)
from lasagne.nonlinearities import tanh, softmax


def build_model():
    net = {}
    net['chars'] = InputLayer((None, 12), input_var=T.imatrix('chars'))
    net['emb'] = EmbeddingLayer(net['chars'], input_size=11, output_size=4)
    net['to_ncl'] = DimshuffleLayer(net['emb'], (0, 2, 1))
    net['conv'] = Conv1DLayer(net['to_ncl'], 5, 3, pad='same', nonlinearity=tanh)
    net['conv_full'] = Conv1DLayer(net['conv'], 6, 2, pad='full', stride=2)
    net['pool'] = MaxPool1DLayer(net['conv_full'], 3, stride=2, ignore_border=False)
    net['pool_pad'] = MaxPool1DLayer(net['conv'], 2, pad=1)
    net['to_ntc'] = DimshuffleLayer(net['pool'], (0, 2, 1))
    net['last'] = SliceLayer(net['to_ntc'], -1, 1)
    net['cat'] = ConcatLayer([net['last'], FlattenLayer(net['pool_pad'])])
    net['prob'] = DenseLayer(net['cat'], 3, nonlinearity=softmax)
    return net
'''

#: Theano's scan C extension does not compile on Python 3.11 (longintrepr.h moved): run
#: the Theano side with pure-Python ops (the last THEANO_FLAGS entry wins)
NO_CXX = r'''
import os
if int(IN.get("no_cxx", 1)):
    os.environ["THEANO_FLAGS"] = os.environ.get("THEANO_FLAGS", "") + ",cxx="
'''

FORWARD = NO_CXX + r'''
import runpy, theano, lasagne
ns = runpy.run_path(str(IN["builder"]), run_name="__migrator_builder__")
net = ns["build_model"]()
roots = [net[str(r)] for r in IN["roots"]]
layers = lasagne.layers.get_all_layers(roots)
params = lasagne.layers.get_all_params(roots)
assert len(params) == int(IN["n_params"]), (len(params), int(IN["n_params"]))
for i, prm in enumerate(params):
    v = IN["param__%d" % i]
    assert prm.get_value().shape == v.shape, (prm.name, prm.get_value().shape, v.shape)
    prm.set_value(v)
inputs = [l for l in layers if isinstance(l, lasagne.layers.InputLayer)]
want = [str(s) for s in IN["want"]]
keys = {id(v): k for k, v in net.items()}
named = [(keys.get(id(l)) or l.name, l) for l in layers]
named = [(k, l) for k, l in named if k in want]
f = theano.function([l.input_var for l in inputs],
                    lasagne.layers.get_output([l for _, l in named], deterministic=True),
                    on_unused_input="ignore")
res = f(*[IN["input__" + (keys.get(id(l)) or l.name)].astype(l.input_var.dtype) for l in inputs])
for (k, _), v in zip(named, res):
    OUT[k] = v
'''

#: Lasagne 0.2's LSTMLayer step (peephole inside the outgate nonlinearity), as a Theano scan
LSTM_02 = NO_CXX + r'''
import theano, theano.tensor as T
x = T.tensor3("x")
P = [theano.shared(IN["param__%d" % i]) for i in range(int(IN["n_params"]))]
U = int(IN["units"])
# Lasagne order: (W_in, W_hid, b) for ingate, forgetgate, cell, outgate; W_cell_to_{i,f,o};
# cell_init; hid_init
Wi = T.concatenate([P[0], P[3], P[6], P[9]], axis=1)
Wh = T.concatenate([P[1], P[4], P[7], P[10]], axis=1)
b = T.concatenate([P[2], P[5], P[8], P[11]])
wci, wcf, wco, c_init, h_init = P[12], P[13], P[14], P[15], P[16]
xt = T.dot(x.dimshuffle(1, 0, 2), Wi) + b
def step(z, c_prev, h_prev):
    g = z + T.dot(h_prev, Wh)
    i = T.nnet.sigmoid(g[:, 0:U] + c_prev * wci)
    f = T.nnet.sigmoid(g[:, U:2 * U] + c_prev * wcf)
    c = f * c_prev + i * T.tanh(g[:, 2 * U:3 * U])
    o = T.nnet.sigmoid(g[:, 3 * U:] + c * wco)
    return [c, o * T.tanh(c)]
ones = T.ones((x.shape[0], 1))
(cs, hs), _ = theano.scan(step, sequences=xt, outputs_info=[T.dot(ones, c_init), T.dot(ones, h_init)])
OUT["lstm"] = theano.function([x], hs.dimshuffle(1, 0, 2))(IN["input__x"])
'''


@pytest.fixture(scope="module")
def py():
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env

    p = ensure_theano_env()
    if not p:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    return p


def _inputs(g, rng):
    xs = {}
    for n in g.input_nodes:
        shp = (BATCH,) + tuple(d if d is not None else T_STEPS for d in n.out_shape[1:])
        if n.name == "chars":
            xs[n.name] = rng.integers(0, VOCAB, size=shp).astype(np.float32)
        elif n.name == "mask":
            m = (rng.random(shp) > 0.3).astype(np.float32)
            m[1, 2] = 0.25            # Lasagne blends: h = m*h_new + (1-m)*h_prev
            m[0, 0] = 0.0             # a masked first step: the initial state is kept
            xs[n.name] = m
        else:
            xs[n.name] = rng.normal(size=shp).astype(np.float32)
    return xs


def _run_real(py, builder, roots, vals, xs, want, no_cxx=True):
    """``no_cxx``: pure-Python ops (scan needs it on Python 3.11); False: Theano's C ops
    (the old ConvOp of Lasagne 0.1's Conv1DLayer has no Python version with today's scipy)."""
    from tests.envs.theano_env import run_theano

    req = {"builder": np.array(builder), "roots": np.array(roots), "n_params": np.array(len(vals)),
           "want": np.array(want), "no_cxx": np.array(int(no_cxx))}
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    req.update({f"input__{k}": v for k, v in xs.items()})
    return run_theano(py, FORWARD, req, timeout=900)


def _migrate(g, xs):
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan
    from migrator.core.reference import numpy_ref

    ref = {k: v[0] for k, v in numpy_ref.run_all(g, xs).items()}
    plan = make_plan(g)
    assert not plan.unsupported, [(m.source, m.error) for m in plan.unsupported]
    model = build_keras(plan)
    return ref, plan, model, _keras_outputs(model, plan, xs, ref)


def _keras_outputs(model, plan, xs: dict, ref):
    """keras_outputs_by_source for several inputs (a dict keyed by source input name)."""
    from migrator.core.compare.metrics import inputs_to_keras, to_source_layout
    from migrator.core.keras_build.executor import iter_keras_outputs

    k2s: dict[str, list[str]] = {}
    for m in plan.mappings:
        if m.keras_output:
            k2s.setdefault(m.keras_output, []).append(m.source)
    out = {}
    for kname, arr in iter_keras_outputs(model, plan, inputs_to_keras(plan, xs)):
        for s in k2s.get(kname, []):
            out[s] = to_source_layout(arr, ref[s].ndim, plan.layout_of(s))
    return out


def _rel(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b).max() / max(1e-6, float(np.abs(b).max())))


def _check(real, ref, keras_out, names, tol=1e-5):
    rows = []
    for name in names:
        want = real[name]
        e_ref = _rel(ref[name], want)
        e_k = _rel(keras_out[name], want)
        rows.append(f"{name}: ref {e_ref:.1e} keras {e_k:.1e}")
        assert e_ref <= tol, f"numpy ref vs real Lasagne, layer {name}: relative {e_ref:.2e}"
        assert e_k <= tol, f"Keras vs real Lasagne, layer {name}: relative {e_k:.2e}"
    print("\n" + "; ".join(rows))


# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def char(py, tmp_path_factory):
    d = tmp_path_factory.mktemp("char01")
    b, p, vals = M.write_model(d, CHAR_01, "pkl_param_values", seed=4)
    return b, p, vals


def test_recorder_describes_recurrent_layers_like_real_lasagne_01(py, char):
    from migrator.core.importers.lasagne import describe_builder

    b, _, _ = char
    rec = describe_builder(b, output_layer="prob")
    real = describe_builder(b, impl="real", python=py, timeout=300, output_layer="prob")
    assert real["impl"] == "real" and real["lasagne_version"].startswith("0.1")
    assert [L["name"] for L in rec["layers"]] == [L["name"] for L in real["layers"]]
    for a, r in zip(rec["layers"], real["layers"]):
        assert (a["class"], a["inputs"], a["output_shape"]) == (r["class"], r["inputs"], r["output_shape"])
        assert [(p["name"], p["shape"], p["tags"]) for p in a["params"]] == \
               [(p["name"], p["shape"], p["tags"]) for p in r["params"]], a["name"]
    assert rec["params"] == real["params"]     # get_all_params order = the file's order
    by = {L["name"]: L for L in rec["layers"]}
    assert [p["name"] for p in by["rnn"]["params"]] == [
        "hid_init", "input_to_hidden.W", "input_to_hidden.b", "hidden_to_hidden.W"]
    assert [p["name"] for p in by["gru"]["params"]][:4] == [
        "W_in_to_updategate", "W_hid_to_updategate", "b_updategate", "W_in_to_resetgate"]
    assert "trainable" in next(p for p in by["gru"]["params"] if p["name"] == "hid_init")["tags"]
    assert "trainable" not in next(p for p in by["lstm"]["params"] if p["name"] == "hid_init")["tags"]


def test_char_model_matches_real_lasagne_01(py, char, tmp_path, record_proof):
    from migrator.core.importers.lasagne import load_lasagne

    b, p, vals = char
    # impl='real': the 0.1 description -> Lasagne 0.1's outgate peephole form
    g = load_lasagne(b, p, output_layer="prob", impl="real", python=py, timeout=300)
    assert g.node("lstm").attrs["outgate_peephole"] == "after_nonlinearity"
    xs = _inputs(g, np.random.default_rng(2))
    names = [n.name for n in g.nodes if n.op != "Input"]
    real = _run_real(py, b, ["prob"], vals, xs, names)
    ref, plan, _, keras_out = _migrate(g, xs)
    _check(real, ref, keras_out, names)
    impl = {m.source: s.config.get("impl") for m in plan.mappings for s in m.layers
            if s.class_name == "LasagneRNN"}
    # built-in Keras layers exactly where Keras can express the layer
    assert impl == {"lstm": "unrolled", "lstm_back": "builtin", "gru": "builtin",
                    "lstm_odd": "unrolled", "gru_back": "builtin", "rnn": "builtin",
                    "crnn": "unrolled"}
    assert not np.allclose(g.node("gru").p("hid_init"), 0)      # learned init really used
    _check_saved_and_custom(plan, g, xs, real["prob"], tmp_path)
    record_proof(g, proofs.REAL_LASAGNE, names)


LOAD_PLAIN = r'''
import sys, numpy as np, keras
m = keras.saving.load_model(sys.argv[1], safe_mode=True)
z = np.load(sys.argv[2])
y = m.predict([z["in%d" % i] for i in range(len(z.files))], verbose=0)
assert "migrator" not in sys.modules
np.save(sys.argv[3], y)
'''


def _check_saved_and_custom(plan, g, xs, want, tmp_path):
    """The saved .keras loads in a fresh interpreter without Migrator (plain Keras), and the
    custom-class build (plain=False, LasagneRNN's own call) computes the same."""
    import subprocess
    import sys

    from migrator.core.compare.metrics import to_keras_layout
    from migrator.core.keras_build.builder import build_keras

    model = build_keras(plan)
    path = str(tmp_path / "char.keras")
    model.save(path)
    ins = {f"in{i}": to_keras_layout(xs[n.name], plan.layout_of(n.name)) for i, n in enumerate(g.input_nodes)}
    np.savez(tmp_path / "in.npz", **ins)
    script = tmp_path / "load.py"
    script.write_text(LOAD_PLAIN)
    r = subprocess.run([sys.executable, str(script), path, str(tmp_path / "in.npz"),
                        str(tmp_path / "y.npy")], cwd=str(tmp_path), capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    e_saved = _rel(np.load(tmp_path / "y.npy"), want)
    custom = build_keras(plan, plain=False)
    e_custom = _rel(np.asarray(custom.predict(list(ins.values()), verbose=0)), want)
    print(f"saved .keras (loaded without Migrator) {e_saved:.1e}, custom class {e_custom:.1e}")
    assert e_saved <= 1e-5 and e_custom <= 1e-5


def test_lstm_peephole_02_form_matches_theano(py, tmp_path, record_proof):
    from migrator.core.importers.lasagne import load_lasagne
    from tests.envs.theano_env import run_theano

    script = ("import lasagne\nfrom lasagne.layers import InputLayer, LSTMLayer\n\n"
              "def build_model():\n    l = InputLayer((None, 5, 3))\n"
              "    return LSTMLayer(l, 4, learn_init=True)\n")
    b, p, vals = M.write_model(tmp_path, script, "npz", seed=8)
    g = load_lasagne(b, p)               # the recorder: Lasagne 0.2 semantics
    n = g.nodes[-1]
    assert n.attrs["outgate_peephole"] == "before_nonlinearity" and n.attrs["peepholes"]
    xs = {g.input_nodes[0].name: np.random.default_rng(5).normal(size=(2, 5, 3)).astype(np.float32)}
    req = {"n_params": np.array(len(vals)), "units": np.array(4), "input__x": next(iter(xs.values()))}
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    want = run_theano(py, LSTM_02, req, timeout=600)["lstm"]
    ref, _, _, keras_out = _migrate(g, xs)
    _check({n.name: want}, ref, keras_out, [n.name])
    record_proof(g, proofs.THEANO_OPS, [n.name])


def test_02_features_match_theano(py, tmp_path, record_proof):
    """only_return_final, hid_init/cell_init as layers, num_leading_axes=2 (recorder) vs the
    same network in Lasagne 0.1's API run by real Theano."""
    from migrator.core.importers.lasagne import load_lasagne

    b, p, vals = M.write_model(tmp_path / "m02", FEATURES_02, "npz", seed=6)
    b01 = M.write_script(tmp_path / "m01", FEATURES_01)
    g = load_lasagne(b, p, output_layer="out")
    assert g.node("gru_final").attrs["only_return_final"]
    assert g.node("lstm").attrs["hid_init"] == "input" and g.node("lstm").attrs["cell_init"] == "input"
    assert g.node("lstm").inputs[1:] == ["h0", "c0"]
    assert g.node("dense_t").attrs["axis"] == 2
    rng = np.random.default_rng(9)
    xs = {"x": rng.normal(size=(2, 5, 3)).astype(np.float32),
          "ctx": rng.normal(size=(2, 2)).astype(np.float32)}
    names = ["h0", "c0", "lstm", "dense_t", "gru_final", "rnn_final", "out"]
    # 0.1: h0/c0 feed the recurrences as Theano expressions, not incomings: name them as
    # roots so that get_all_params orders their parameters first, as 0.2's incomings do
    real = _run_real(py, b01, ["h0", "c0", "out"], vals, xs, names)
    ref, _, _, keras_out = _migrate(g, xs)
    _check(real, ref, keras_out, names)
    record_proof(g, proofs.REAL_LASAGNE, names)      # the same network in 0.1's API, run by Lasagne 0.1


def test_conv1d_pool1d_text_model_matches_real_lasagne_01(py, tmp_path, record_proof):
    """Embedding -> Dimshuffle to (N, C, L) -> Conv1DLayer ('same', 'full' + stride; Lasagne
    0.1 always convolves, i.e. flips) -> MaxPool1DLayer (ignore_border=False; pad) ->
    Dimshuffle back -> SliceLayer on time: recorder vs real description, then every layer vs
    real Lasagne (Theano's C ops: no scan here)."""
    from migrator.core.importers.lasagne import describe_builder, load_lasagne

    b, p, vals = M.write_model(tmp_path, CONV1D_01, "npz", seed=12)
    rec = describe_builder(b, output_layer="prob")
    real_desc = describe_builder(b, impl="real", python=py, timeout=300, output_layer="prob")
    assert [(L["name"], L["class"], L["output_shape"]) for L in rec["layers"]] == \
           [(L["name"], L["class"], L["output_shape"]) for L in real_desc["layers"]]
    assert rec["params"] == real_desc["params"]
    g = load_lasagne(b, p, output_layer="prob")
    assert {n.op for n in g.nodes} >= {"Conv1D", "Pool1D", "Embedding"}
    xs = _inputs(g, np.random.default_rng(4))
    names = [n.name for n in g.nodes if n.op != "Input"]
    real = _run_real(py, b, ["prob"], vals, xs, names, no_cxx=False)
    ref, _, _, keras_out = _migrate(g, xs)
    _check(real, ref, keras_out, [n for n in names if n in real])
    record_proof(g, proofs.REAL_LASAGNE, [n for n in names if n in real])


C3D = '''
import lasagne
from lasagne.layers import InputLayer, DenseLayer, NonlinearityLayer, ElemwiseSumLayer, Conv3DLayer
from lasagne.layers.dnn import Conv3DDNNLayer, MaxPool3DDNNLayer, Pool3DDNNLayer
from lasagne.nonlinearities import softmax


def build_model():
    # the Recipes C3D layer types (cuDNN classes: flip_filters=False), scaled down
    net = {}
    net['input'] = InputLayer((None, 3, 4, 10, 10))
    net['conv1a'] = Conv3DDNNLayer(net['input'], 4, (3, 3, 3), pad=1)
    net['pool1'] = MaxPool3DDNNLayer(net['conv1a'], pool_size=(1, 2, 2), stride=(1, 2, 2))
    net['conv2a'] = Conv3DLayer(net['pool1'], 5, (3, 2, 3), pad=(1, 0, 1), stride=(1, 1, 2))
    net['pool2'] = MaxPool3DDNNLayer(net['conv2a'], pool_size=(2, 2, 2), stride=(2, 2, 2))
    net['avg'] = Pool3DDNNLayer(net['conv1a'], (2, 3, 3), stride=(2, 2, 2), pad=(1, 1, 1),
                                mode='average_inc_pad')
    net['fc6'] = DenseLayer(net['pool2'], 6)
    net['fc7'] = DenseLayer(net['avg'], 6, nonlinearity=None)
    net['sum'] = ElemwiseSumLayer([net['fc6'], net['fc7']])
    net['prob'] = NonlinearityLayer(net['sum'], softmax)
    return net
'''

#: the C3D network with Theano's own ops (Lasagne 0.1 has no 3-D layers): Conv3DLayer is
#: conv3d(border_mode=pad, subsample=stride, filter_flip=flip_filters) + b, then the
#: nonlinearity; Pool3D(DNN)Layer is pool_3d(ws, ignore_border=True, stride, pad, mode)
C3D_THEANO = r'''
import theano, theano.tensor as T
from theano.tensor.nnet import conv3d, relu
from theano.tensor.signal.pool import pool_3d
P = [IN["param__%d" % i] for i in range(8)]
x = T.TensorType("float32", (False,) * 5)("x")
def conv(v, W, b, pad, stride, flip):
    y = conv3d(v, theano.shared(W), border_mode=pad, subsample=stride, filter_flip=flip)
    return relu(y + theano.shared(b).dimshuffle("x", 0, "x", "x", "x"))
o = {}
o["conv1a"] = conv(x, P[0], P[1], (1, 1, 1), (1, 1, 1), False)
o["pool1"] = pool_3d(o["conv1a"], (1, 2, 2), ignore_border=True, stride=(1, 2, 2), pad=(0, 0, 0), mode="max")
o["conv2a"] = conv(o["pool1"], P[2], P[3], (1, 0, 1), (1, 1, 2), True)
o["pool2"] = pool_3d(o["conv2a"], (2, 2, 2), ignore_border=True, stride=(2, 2, 2), pad=(0, 0, 0), mode="max")
o["avg"] = pool_3d(o["conv1a"], (2, 3, 3), ignore_border=True, stride=(2, 2, 2), pad=(1, 1, 1),
                   mode="average_inc_pad")
o["fc6"] = relu(T.dot(o["pool2"].flatten(2), theano.shared(P[4])) + theano.shared(P[5]))
o["fc7"] = T.dot(o["avg"].flatten(2), theano.shared(P[6])) + theano.shared(P[7])
o["sum"] = o["fc6"] + o["fc7"]
o["prob"] = T.nnet.softmax(o["sum"])
names = sorted(o)
for k, v in zip(names, theano.function([x], [o[k] for k in names])(IN["x"])):
    OUT[k] = v
'''


def test_c3d_layers_match_theano_ops(py, tmp_path, record_proof):
    from migrator.core.importers.lasagne import load_lasagne
    from tests.envs.theano_env import run_theano

    b, p, vals = M.write_model(tmp_path, C3D, "npz", seed=21)
    g = load_lasagne(b, p, output_layer="prob")
    assert g.node("conv1a").attrs["flip"] is False and g.node("conv2a").attrs["flip"] is True
    assert [tuple(v.shape) for v in vals] == [(4, 3, 3, 3, 3), (4,), (5, 4, 3, 2, 3), (5,),
                                              (20, 6), (6,), (300, 6), (6,)]
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 10, 10)).astype(np.float32)
    req = {"x": x}
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    real = run_theano(py, C3D_THEANO, req, timeout=600)
    ref, _, _, keras_out = _migrate(g, {"input": x})
    _check(real, ref, keras_out, sorted(real))
    record_proof(g, proofs.THEANO_OPS, sorted(real))
