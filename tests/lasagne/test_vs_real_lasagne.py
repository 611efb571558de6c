"""The recorder vs the real Lasagne (0.1, from PyPI, in the Theano venv).

* The same builder script is described twice by ``builder_child``: with Migrator's recording
  stand-ins, and with the real Lasagne + Theano (``--impl real``).  Names, classes, wiring,
  output shapes, parameter names/shapes and the get_all_params order must agree.
* The real Lasagne then runs the network (``get_output(..., deterministic=True)`` for every
  layer, parameters set with ``set_all_param_values`` from the same file) and Migrator's
  numpy reference and converted Keras model are compared with it layer by layer.

Lasagne 0.1 predates batch_norm and flip_filters (its Conv2DLayer always convolves, i.e.
flips); those are covered against Theano ops in test_vs_theano.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests import proofs

from . import keras_outputs_by_source

pytestmark = [pytest.mark.theano, pytest.mark.slow]

SCRIPT_01 = '''
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, MaxPool2DLayer, Pool2DLayer, NINLayer,
                            LocalResponseNormalization2DLayer, DenseLayer, ElemwiseSumLayer,
                            ConcatLayer, GlobalPoolLayer, DropoutLayer, PadLayer,
                            DimshuffleLayer, ReshapeLayer, FlattenLayer, NonlinearityLayer)
from lasagne.nonlinearities import softmax, LeakyRectify, tanh


def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 15, 13))
    net['conv1'] = Conv2DLayer(net['input'], 6, 5, pad='same', nonlinearity=LeakyRectify(0.2))
    net['conv2'] = Conv2DLayer(net['conv1'], 6, 3, pad='full', stride=2)
    net['pool1'] = MaxPool2DLayer(net['conv2'], 3, stride=2, ignore_border=False)
    net['pool2'] = Pool2DLayer(net['conv1'], 3, stride=2, pad=(1, 1),
                               mode='average_exc_pad')
    net['pool3'] = Pool2DLayer(net['conv1'], 2, mode='average_inc_pad', ignore_border=False)
    net['nin'] = NINLayer(net['pool2'], 5, nonlinearity=tanh)
    net['norm'] = LocalResponseNormalization2DLayer(net['nin'], alpha=0.01, k=1.5, beta=0.6, n=3)
    net['conv3'] = Conv2DLayer(net['norm'], 6, (3, 2), pad=1)
    net['pad'] = PadLayer(net['conv3'], 1)
    net['shuf'] = DimshuffleLayer(net['pad'], (0, 1, 3, 2))
    net['cat'] = ConcatLayer([GlobalPoolLayer(net['shuf']), GlobalPoolLayer(net['pool1']),
                              FlattenLayer(net['pool3'])])
    net['fc1'] = DenseLayer(DropoutLayer(net['cat']), 12)
    net['fc2'] = DenseLayer(net['pool1'], 12, nonlinearity=None)
    net['sum'] = ElemwiseSumLayer([net['fc1'], net['fc2']], coeffs=[0.5, 2.0])
    net['resh'] = ReshapeLayer(net['sum'], ([0], 3, 4))
    net['fc3'] = DenseLayer(net['resh'], 4, nonlinearity=None)
    net['prob'] = NonlinearityLayer(net['fc3'], softmax)
    return net
'''

FORWARD = r'''
import runpy, theano, lasagne
ns = runpy.run_path(str(IN["builder"]), run_name="__migrator_builder__")
net = ns["build_model"]()
out = net["prob"]
layers = lasagne.layers.get_all_layers(out)
values = [IN["param__%d" % i] for i in range(int(IN["n_params"]))]
lasagne.layers.set_all_param_values(out, values)
x = layers[0].input_var
exprs = lasagne.layers.get_output(layers[1:], deterministic=True)
f = theano.function([x], exprs)
for i, v in enumerate(f(IN["x"])):
    OUT["layer__%d" % (i + 1)] = v
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env

    py = ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    d = tmp_path_factory.mktemp("l01")
    b, p, vals = M.write_model(d, SCRIPT_01, "pkl_param_values", seed=5)
    return py, b, p, vals


def test_recorder_describes_the_network_like_real_lasagne(env):
    from migrator.core.importers.lasagne import describe_builder

    py, b, _, _ = env
    rec = describe_builder(b)
    real = describe_builder(b, impl="real", python=py, timeout=300)
    assert rec["impl"] == "recorder" and real["impl"] == "real"
    assert rec["output"] == real["output"] == "prob"
    assert len(rec["layers"]) == len(real["layers"]) == 22
    for a, r in zip(rec["layers"], real["layers"]):
        assert (a["name"], a["class"], a["inputs"]) == (r["name"], r["class"], r["inputs"])
        assert a["output_shape"] == r["output_shape"], a["name"]
        assert [(p["name"], p["shape"], p["tags"]) for p in a["params"]] == \
               [(p["name"], p["shape"], p["tags"]) for p in r["params"]], a["name"]
    assert rec["params"] == real["params"]


def test_numpy_reference_and_keras_match_real_lasagne(env, record_proof):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan
    from migrator.core.reference import numpy_ref
    from tests.envs.theano_env import run_theano

    py, b, p, vals = env
    g = load_lasagne(b, p)
    x = np.random.default_rng(11).normal(size=(2, 3, 15, 13)).astype(np.float32)
    req = {"builder": np.array(b), "x": x, "n_params": np.array(len(vals))}
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    th = run_theano(py, FORWARD, req)
    names = [L["name"] for L in g.meta["lasagne_description"]["layers"]]
    real = {names[int(k.split("__")[1])]: v for k, v in th.items()}
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, x).items()}
    plan = make_plan(g)
    model = build_keras(plan)
    keras_out = keras_outputs_by_source(model, plan, x, ref)
    worst_ref = worst_keras = 0.0
    for name, want in real.items():
        scale = max(1e-2, float(np.abs(want).max()))     # relative; a floor only for all-but-zero outputs
        e = float(np.abs(ref[name] - want).max())
        assert e <= 5e-5 * scale, f"numpy ref vs real Lasagne, layer {name}: {e}"
        worst_ref = max(worst_ref, e)
        if name in keras_out:
            e = float(np.abs(keras_out[name] - want).max())
            assert e <= 1e-4 * scale, f"Keras vs real Lasagne, layer {name}: {e}"
            worst_keras = max(worst_keras, e)
    assert "prob" in keras_out and len(real) == 21
    record_proof(g, proofs.REAL_LASAGNE, list(real))
    print(f"\nreal Lasagne 0.1: numpy ref worst {worst_ref:.2e}, Keras worst {worst_keras:.2e} "
          f"over {len(real)} layers")
