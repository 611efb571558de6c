"""A whole Lasagne network pickled by the real Lasagne/Theano, opened with no builder script.

The real Lasagne 0.1 + Theano 1.0.5 (the legacy venv) builds three networks, sets their
parameters to random values, pickles them (``pickle.dump(network, f)``) and runs them
(``get_output(..., deterministic=True)`` for every layer); Migrator then opens each pickle
ALONE -- through the one flow, ``open_model([file])`` -- and its numpy reference and converted
Keras model are compared with the real outputs layer by layer:

* a CNN with batch normalisation (``lasagne.layers.normalization.BatchNormLayer``: Lasagne 0.1
  predates it, so the Theano script defines master's BatchNormLayer -- its attributes and its
  deterministic ``get_output_for`` written here from master's documented code -- and places it
  in the real ``lasagne.layers.normalization`` module, so the pickle names it exactly as a
  Lasagne >= 0.2 pickle does); pickle protocol 2;
* an LSTM model (``LSTMLayer`` -> ``SliceLayer`` -> ``DenseLayer``), pickled at protocol 0
  (``copy_reg._reconstructor``, as Python 2 wrote pickles), and one with a mask input;
* a nolearn-style wrapper: nolearn does not install in the legacy venv without scikit-learn
  (a version with ``sklearn.cross_validation``) and more, so the script defines a class
  ``NeuralNet`` in a module named ``nolearn.lasagne.base`` with what nolearn 0.6's fitted
  ``NeuralNet`` holds: ``layers_`` (a ``Layers`` OrderedDict subclass), the layer list,
  update rule and objective (Lasagne functions), a shared learning rate, a ``BatchIterator``,
  the training history and a *compiled* Theano predict function (its whole graph: ops, types,
  linkers become inert records).

Hostile and foreign pickles are in test_hostile_params.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.lasagne import keras_outputs_by_source
from tests.lasagne.lasagne_master import BATCH_NORM

pytestmark = [pytest.mark.theano, pytest.mark.slow]

BUILD = r'''
import os
PART = str(IN["part"])
if PART == "lstm":   # Theano's scan C extension does not compile on Python 3.11: pure-Python
    os.environ["THEANO_FLAGS"] = os.environ.get("THEANO_FLAGS", "") + ",cxx="   # ops (last wins)
import collections, pickle, sys, textwrap, types
import numpy as np
import theano, theano.tensor as T
import lasagne
from lasagne import init, nonlinearities
from lasagne.layers import (InputLayer, Conv2DLayer, MaxPool2DLayer, DenseLayer, DropoutLayer,
                            NonlinearityLayer, LSTMLayer, SliceLayer, Layer, get_all_layers,
                            get_all_params, get_output)
from lasagne.nonlinearities import rectify, softmax, tanh, LeakyRectify
import lasagne.layers.normalization as NORM


''' + BATCH_NORM + r'''

BatchNormLayer.__module__ = 'lasagne.layers.normalization'
NORM.BatchNormLayer = BatchNormLayer

rng = np.random.RandomState(3)


def fill(out):
    for p in get_all_params(out):
        v = p.get_value()
        if p.name and p.name.endswith('inv_std'):
            v = rng.uniform(0.5, 2.0, v.shape)
        else:
            v = rng.normal(0, 0.5, v.shape)
        p.set_value(v.astype(theano.config.floatX))


def run(out, x, tag):
    layers = get_all_layers(out)
    ins = [l for l in layers if isinstance(l, InputLayer)]
    xs = x if isinstance(x, list) else [x]
    f = theano.function([l.input_var for l in ins],
                        get_output([l for l in layers if l not in ins], deterministic=True))
    k = 0
    for i, l in enumerate(layers):
        if l not in ins:
            OUT["%s__%d" % (tag, i)] = f(*xs)[k]
            k += 1
    return f


d = str(IN["dir"])

# ---- a CNN with batch normalisation ---------------------------------------------------
if PART == "cnn":
  l = InputLayer((None, 3, 12, 10))
  l = Conv2DLayer(l, 8, 3, pad=1, nonlinearity=None, b=None, name='conv1')
  l = BatchNormLayer(l, name='bn1')
  l = NonlinearityLayer(l, rectify)
  l = MaxPool2DLayer(l, 2)
  l = Conv2DLayer(l, 6, 3, nonlinearity=LeakyRectify(0.2))
  l = BatchNormLayer(l, epsilon=1e-3)
  l = DenseLayer(l, 12, nonlinearity=tanh)
  l = BatchNormLayer(l)
  cnn = DenseLayer(l, 5, nonlinearity=softmax, name='prob')
  fill(cnn)
  with open(os.path.join(d, 'cnn_bn.pkl'), 'wb') as f:
      pickle.dump(cnn, f, protocol=2)
  run(cnn, IN["x_cnn"], 'cnn')

# ---- an LSTM model (protocol 0, as Python 2 wrote) ------------------------------------
if PART == "lstm":
  l = InputLayer((None, 6, 4))
  l = LSTMLayer(l, 7, name='lstm')
  l = SliceLayer(l, -1, axis=1)
  lstm = DenseLayer(l, 3, nonlinearity=softmax, name='out')
  fill(lstm)
  with open(os.path.join(d, 'lstm.pkl'), 'wb') as f:
      pickle.dump(lstm, f, protocol=0)
  run(lstm, IN["x_lstm"], 'lstm')
  # with a mask input (Lasagne 0.1: incomings [input, mask])
  x = InputLayer((None, 6, 4), name='x')
  m = InputLayer((None, 6), name='mask')
  l = LSTMLayer(x, 5, mask_input=m, name='lstm_m')
  lstm_m = DenseLayer(SliceLayer(l, -1, axis=1), 3, nonlinearity=softmax, name='out')
  fill(lstm_m)
  with open(os.path.join(d, 'lstm_mask.pkl'), 'wb') as f:
      pickle.dump(lstm_m, f, protocol=2)
  run(lstm_m, [IN["x_lstm_mask"], IN["m_lstm_mask"]], 'lstm_mask')

# ---- a nolearn-style NeuralNet ----------------------------------------------------------
if PART == "mlp":
  nolearn = types.ModuleType('nolearn')
  nl_lasagne = types.ModuleType('nolearn.lasagne')
  base = types.ModuleType('nolearn.lasagne.base')
  nolearn.lasagne, nl_lasagne.base = nl_lasagne, base
  sys.modules.update({'nolearn': nolearn, 'nolearn.lasagne': nl_lasagne,
                      'nolearn.lasagne.base': base})
  exec(compile(textwrap.dedent("""
  from collections import OrderedDict
  class Layers(OrderedDict):
      pass
  class BatchIterator(object):
      def __init__(self, batch_size, shuffle=False, seed=42):
          self.batch_size, self.shuffle, self.random = batch_size, shuffle, None
  class NeuralNet(object):
      def get_all_layers(self):
          return list(self.layers_.values())
  def objective(layers, loss_function, target, **kwargs):
      pass
  """), 'nolearn/lasagne/base.py', 'exec'), base.__dict__)
  for k in ('Layers', 'BatchIterator', 'NeuralNet', 'objective'):
      getattr(base, k).__module__ = 'nolearn.lasagne.base'

  net = base.NeuralNet()
  layers_ = base.Layers()
  layers_['input'] = InputLayer((None, 20), name='input')
  layers_['hidden'] = DenseLayer(layers_['input'], 16, name='hidden')
  layers_['dropout'] = DropoutLayer(layers_['hidden'], p=0.5, name='dropout')
  layers_['output'] = DenseLayer(layers_['dropout'], 4, nonlinearity=softmax, name='output')
  net.layers = [(InputLayer, {'shape': (None, 20)}), (DenseLayer, {'num_units': 16}),
                (DropoutLayer, {}), (DenseLayer, {'num_units': 4, 'nonlinearity': softmax})]
  net.layers_ = layers_
  net.update = lasagne.updates.nesterov_momentum
  net.update_learning_rate = theano.shared(np.float32(0.01))
  net.objective = base.objective
  net.objective_loss_function = lasagne.objectives.categorical_crossentropy
  net.batch_iterator_train = base.BatchIterator(128)
  net.y_tensor_type = T.ivector
  net.max_epochs = 10
  net.regression = False
  net.train_history_ = [{'epoch': 1, 'train_loss': 0.9, 'valid_loss': 1.0}]
  fill(layers_['output'])
  net.predict_iter_ = run(layers_['output'], IN["x_mlp"], 'mlp')
  with open(os.path.join(d, 'nolearn_net.pkl'), 'wb') as f:
      pickle.dump(net, f, protocol=2)
'''

CASES = {"cnn": ("cnn_bn.pkl", (2, 3, 12, 10)), "lstm": ("lstm.pkl", (2, 6, 4)),
         "lstm_mask": ("lstm_mask.pkl", (2, 6, 4)), "mlp": ("nolearn_net.pkl", (2, 20))}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env, run_theano

    py = ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    d = tmp_path_factory.mktemp("pickled_networks")
    rng = np.random.default_rng(7)
    req = {"dir": np.array(str(d))}
    for tag, (_, shp) in CASES.items():
        req[f"x_{tag}"] = rng.normal(size=shp).astype(np.float32)
    req["m_lstm_mask"] = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], np.float32)
    out = {}
    for part in ("cnn", "lstm", "mlp"):
        out.update(run_theano(py, BUILD, {**req, "part": np.array(part)}))
    return d, req, out


@pytest.mark.parametrize("tag", list(CASES))
def test_pickled_network_converts_without_script_and_matches_real_lasagne(real, tag):
    from migrator.core.flow import Flow, FlowOptions, open_model
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan
    from migrator.core.reference import numpy_ref

    d, req, out = real
    path = str(d / CASES[tag][0])
    g = open_model([path])                       # the pickle alone: no builder script
    assert g.meta["builder"] is None and g.meta["network_pickle"] == path
    assert not [n.name for n in g.nodes if n.op == "Custom"]
    x = req[f"x_{tag}"]
    names = [L["name"] for L in g.meta["lasagne_description"]["layers"]]
    want = {names[int(k.split("__")[1])]: v for k, v in out.items() if k.startswith(tag + "__")}
    ins = [n.name for n in g.input_nodes]
    assert len(want) == len(names) - len(ins)
    if tag == "lstm_mask":
        assert ins == ["x", "mask"] and {n.op for n in g.nodes} >= {"Recurrent"}
        x = {"x": x, "mask": req["m_lstm_mask"]}
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, x).items()}     # first output, whole batch
    plan = make_plan(g)
    model = build_keras(plan)
    keras_out = keras_outputs_by_source(model, plan, x, ref)
    worst_ref = worst_keras = 0.0
    for name, w in want.items():
        scale = max(1e-2, float(np.abs(w).max()))
        assert ref[name].shape == w.shape, name
        e = float(np.abs(ref[name] - w).max())
        assert e <= 5e-5 * scale, f"{tag}: numpy ref vs real Lasagne, layer {name}: {e}"
        worst_ref = max(worst_ref, e / scale)
        if name in keras_out:
            assert keras_out[name].shape == w.shape, name
            e = float(np.abs(keras_out[name] - w).max())
            assert e <= 1e-4 * scale, f"{tag}: Keras vs real Lasagne, layer {name}: {e}"
            worst_keras = max(worst_keras, e / scale)
    assert g.meta["output_layer"] in keras_out
    # and the one flow's own comparison (the built-in reference vs Keras) passes
    if tag != "lstm_mask":   # (a random mask is not a 0/1 mask: compared above on a real one)
        flow = Flow(FlowOptions(paths=[path]))
        res = flow.compare()
        assert res.passed, res
    print(f"\n{tag}: {len(want)} layers; numpy ref worst {worst_ref:.1e}, Keras worst "
          f"{worst_keras:.1e} (relative to the layer's largest value)")


def test_what_the_pickles_hold(real):
    """Guard the fixture: the pickles name what the docstring says (read as opcodes, never
    unpickled here)."""
    import pickletools

    d, _, _ = real

    def globals_of(name):
        data = (d / name).read_bytes()
        ops = list(pickletools.genops(data))
        found = set()
        for i, (op, arg, _) in enumerate(ops):
            if op.name == "GLOBAL":
                found.add(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                found.add(f"{ops[i - 2][1]}.{ops[i - 1][1]}")
        return found

    cnn = globals_of("cnn_bn.pkl")
    assert {"lasagne.layers.normalization.BatchNormLayer", "lasagne.layers.conv.Conv2DLayer",
            "theano.tensor.sharedvar.TensorSharedVariable"} <= cnn
    assert "lasagne.layers.recurrent.LSTMLayer" in globals_of("lstm_mask.pkl")
    lstm = globals_of("lstm.pkl")
    assert {"lasagne.layers.recurrent.LSTMLayer", "copy_reg._reconstructor"} <= lstm
    mlp = globals_of("nolearn_net.pkl")
    assert {"nolearn.lasagne.base.NeuralNet", "nolearn.lasagne.base.Layers",
            "lasagne.updates.nesterov_momentum"} <= mlp
    assert any(g.startswith("theano.compile.") for g in mlp)     # the compiled function
