"""Fine-tuning a converted Lasagne batch-norm net, against the real Lasagne/Theano.

Lasagne 0.1 (PyPI, in the Theano venv) predates ``BatchNormLayer``: the builder defines Lasagne
master's ``BatchNormLayer`` and ``batch_norm`` verbatim (training branch, ``default_update`` trick
and all) on 0.1's ``Layer`` when the import fails, so the real Theano computes master's
training-mode forward and update; Migrator's recorder reads the same script with its own
master stand-ins.  On crops of a real photograph (``tests.photo``):

* the converted Keras model called with ``training=True`` equals Lasagne's
  ``get_output(..., deterministic=False)`` layer by layer (batch mean, biased variance, epsilon);
* after N = 1, 10, 100 updates, Keras's moving mean equals Lasagne's running mean (momentum =
  1 - alpha), and the gap between Keras's ``sqrt(moving_variance + epsilon)`` and Lasagne's
  ``1/inv_std`` is what :mod:`migrator.core.mapping.bn_training` predicts (which also replays
  Lasagne's own update exactly);
* ``model.fit`` runs on the converted model; its Dropout is active in training only.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from tests.lasagne.lasagne_master import BATCH_NORM
from tests.photo import photo_batches

pytestmark = [pytest.mark.theano, pytest.mark.slow]

SCRIPT = '''
import theano
import theano.tensor as T
import lasagne
from lasagne import init, nonlinearities
from lasagne.layers import (InputLayer, Conv2DLayer, MaxPool2DLayer, DenseLayer, DropoutLayer,
                            NonlinearityLayer, Layer)
from lasagne.nonlinearities import softmax

try:
    from lasagne.layers import BatchNormLayer, batch_norm
except ImportError:   # Lasagne master's (PyPI's 0.1 predates it): tests/lasagne/lasagne_master.py
''' + textwrap.indent(BATCH_NORM, '    ') + '''

def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 12, 12), name='input')
    net['conv1'] = batch_norm(Conv2DLayer(net['input'], 6, 3, pad=1, name='conv1'))
    net['pool1'] = MaxPool2DLayer(net['conv1'], 2, name='pool1')
    net['conv2'] = batch_norm(Conv2DLayer(net['pool1'], 8, 3, pad=1, name='conv2'),
                              alpha=0.3, epsilon=1e-3)
    net['fc1'] = batch_norm(DenseLayer(net['conv2'], 10, name='fc1'))
    net['drop'] = DropoutLayer(net['fc1'], p=0.5, name='drop')
    net['prob'] = DenseLayer(net['drop'], 4, nonlinearity=softmax, name='prob')
    return net
'''

#: the real run, in two phases of len(STEPS[-1]) training-mode calls each (every call updates the
#: running statistics): "cold" from the given parameters, "warm" from the parameters the cold
#: phase left (statistics adapted to the data, as a pretrained net holds them; saved as
#: warm_param__i).  Each phase saves its outputs of every layer on its first batch, the BN layers'
#: own batch statistics and mean / inv_std after each step in CHECK.
TRAIN = r"""
import runpy
import numpy as np
import theano, lasagne
ns = runpy.run_path(str(IN["builder"]), run_name="__migrator_builder__")
net = ns["build_model"]()
out = net["prob"]
layers = lasagne.layers.get_all_layers(out)
lasagne.layers.set_all_param_values(out, [IN["param__%d" % i] for i in range(int(IN["n_params"]))])
OUT["lasagne_file"] = np.array(lasagne.__file__)
x = layers[0].input_var
exprs = lasagne.layers.get_output(layers[1:], deterministic=False)
f = theano.function([x], exprs)
bns = [l for l in layers if type(l).__name__ == "BatchNormLayer"]
idx = {l: i for i, l in enumerate(layers[1:])}
check = [int(v) for v in IN["check"]]
for phase in ("cold", "warm"):
    if phase == "warm":
        for i, v in enumerate(lasagne.layers.get_all_param_values(out)):
            OUT["warm_param__%d" % i] = v
    X = IN["batches_" + phase]
    for s in range(int(check[-1])):
        outs = f(X[s])
        if s == 0:
            for i, v in enumerate(outs):
                OUT["%s_train__%s" % (phase, layers[i + 1].name)] = v
        for l in bns:
            v = np.asarray(outs[idx[l.input_layer]], np.float64)
            ax = tuple(a for a in range(v.ndim) if a != 1)
            OUT["%s_bmean__%s__%d" % (phase, l.name, s)] = v.mean(ax)
            OUT["%s_bvar__%s__%d" % (phase, l.name, s)] = v.var(ax)
            OUT["%s_bcount__%s__%d" % (phase, l.name, s)] = np.array(v.size // v.shape[1])
        if s + 1 in check:
            for l in bns:
                OUT["%s_mean__%s__%d" % (phase, l.name, s + 1)] = l.mean.get_value()
                OUT["%s_inv_std__%s__%d" % (phase, l.name, s + 1)] = l.inv_std.get_value()
"""

STEPS = (1, 10, 100)
BATCH = 8
PHASES = ("cold", "warm")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The source graphs (cold: the random parameters; warm: after 100 real training steps),
    the batches of each phase and the real Lasagne run."""
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env, run_theano

    py = ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    from migrator.core import flow
    from migrator.testing import lasagne_models as M

    d = tmp_path_factory.mktemp("bn_training")
    b, p, vals = M.write_model(d, SCRIPT, "pkl_list", seed=3)
    batches = {}
    for i, ph in enumerate(PHASES):
        batches[ph], what = photo_batches(STEPS[-1], BATCH, 12, seed=1 + i)
    req = {"builder": np.array(b), "n_params": np.array(len(vals)), "check": np.array(STEPS)}
    req.update({f"batches_{ph}": v for ph, v in batches.items()})
    req.update({f"param__{i}": v for i, v in enumerate(vals)})
    th = run_theano(py, TRAIN, req)
    assert "migrator" not in str(th["lasagne_file"])          # the real Lasagne ran
    warm = M.write_params(str(d / "warm.pkl"), [th[f"warm_param__{i}"] for i in range(len(vals))],
                          "pkl_list")
    graphs = {"cold": flow.open_model([b, p]), "warm": flow.open_model([b, warm])}
    return {"graphs": graphs, "batches": batches, "data": what, "th": th}


def _convert(real, phase, overrides=None):
    from migrator.core import flow
    plan = flow.plan_model(real["graphs"][phase], overrides)
    return plan, flow.build_model(plan)


def _bn_layers(plan, model) -> dict:
    """source BN name -> (Keras BatchNormalization layer, mapping)."""
    out = {}
    for m in plan.mappings:
        if m.rule == "lasagne.BatchNorm":
            out[m.source] = (model.get_layer(m.layers[0].name), m)
    return out


def _sub_model(model, plan, names):
    import keras
    k = {m.source: m.keras_output for m in plan.mappings}
    return keras.Model(model.inputs, [model.get_layer(k[n]).output for n in names])


@pytest.mark.parametrize("phase", PHASES)
def test_training_forward_equals_real_lasagne(real, phase):
    from migrator.core.compare.metrics import to_keras_layout, to_source_layout

    plan, model = _convert(real, phase)
    th = real["th"]
    names = ["conv1", "conv1_bn", "conv1_bn_nonlin", "pool1", "conv2", "conv2_bn",
             "conv2_bn_nonlin", "fc1", "fc1_bn", "fc1_bn_nonlin"]
    sub = _sub_model(model, plan, names)
    x = real["batches"][phase][0]
    got = sub([to_keras_layout(x)], training=True)
    worst = {}
    for n, k in zip(names, got):
        want = th[f"{phase}_train__{n}"]
        have = to_source_layout(np.asarray(k), want.ndim)
        e = float(np.abs(have - want).max())
        assert e <= 2e-5 * max(1.0, float(np.abs(want).max())), (n, e)
        worst[n] = e
    # the batch statistics really are used: the inference forward differs
    inf = sub([to_keras_layout(x)], training=False)
    assert float(np.abs(np.asarray(inf[1]) - np.asarray(got[1])).max()) > 1e-3
    print(f"\n{phase}: training-mode forward vs real Lasagne ({real['data']}): worst "
          f"{max(worst.values()):.2e} (" + ", ".join(f"{n} {e:.1e}" for n, e in worst.items()
                                               if n.endswith('_bn')) + ")")


def _replay(real, phase, plan, model):
    """Keras training-mode calls on the phase's batches; its statistics after each STEPS."""
    from migrator.core.compare.metrics import to_keras_layout
    bns = _bn_layers(plan, model)
    stats = {}
    for s in range(STEPS[-1]):
        model(to_keras_layout(real["batches"][phase][s]), training=True)
        if s + 1 in STEPS:
            for src, (layer, _) in bns.items():
                stats[(src, s + 1)] = (np.asarray(layer.moving_mean.numpy(), np.float64),
                                       np.asarray(layer.moving_variance.numpy(), np.float64),
                                       layer.epsilon)
    return bns, stats


def _predicted(real, phase, m, src, momentum):
    """The drift bn_training predicts from the real batches' statistics; checks on the way
    that its replay of Lasagne's update is Lasagne's own."""
    from migrator.core.mapping.bn_training import BatchStats, SourceState, update_drift
    th, g = real["th"], real["graphs"][phase]
    node = g.node(src)
    rows = {r.key: r for r in m.rows}
    state = SourceState("lasagne", np.asarray(node.p("mean"), np.float64),
                        np.asarray(node.p("inv_std"), np.float64),
                        float(node.attrs["alpha"]), float(node.attrs["epsilon"]))
    batches = [BatchStats(th[f"{phase}_bmean__{src}__{s}"], th[f"{phase}_bvar__{src}__{s}"],
                          int(th[f"{phase}_bcount__{src}__{s}"])) for s in range(STEPS[-1])]
    pts = update_drift(state, rows["moving_mean"].value, rows["moving_variance"].value, momentum,
                       rows["epsilon"].value, batches, STEPS)
    for n in STEPS:
        st = state.copy()
        for bs in batches[:n]:
            st.step(bs)
        assert np.allclose(st.a, th[f"{phase}_mean__{src}__{n}"], rtol=1e-5, atol=1e-6), (src, n)
        assert np.allclose(st.b, th[f"{phase}_inv_std__{src}__{n}"], rtol=1e-5, atol=1e-6), (src, n)
    return {p.step: p for p in pts}


def _gaps(th, phase, src, stats, n):
    mm, mv, eps = stats[(src, n)]
    d = 1.0 / th[f"{phase}_inv_std__{src}__{n}"]
    return (float(np.max(np.abs(mm - th[f"{phase}_mean__{src}__{n}"]) / d)),
            float(np.max(np.abs(np.sqrt(mv + eps) / d - 1))))


@pytest.mark.parametrize("phase", PHASES)
def test_moving_statistics_vs_real_lasagne_after_n_steps(real, phase):
    plan, model = _convert(real, phase)
    bns, stats = _replay(real, phase, plan, model)
    th = real["th"]
    assert set(bns) == {"conv1_bn", "conv2_bn", "fc1_bn"}
    lines = []
    for src, (layer, m) in bns.items():
        alpha = float(real["graphs"][phase].node(src).attrs["alpha"])
        assert layer.momentum == pytest.approx(1 - alpha)
        pred = _predicted(real, phase, m, src, layer.momentum)
        for n in STEPS:
            mean_gap, den_gap = _gaps(th, phase, src, stats, n)
            # the means follow the same recursion: equal up to float32 rounding
            assert mean_gap < 1e-4, (src, n, mean_gap)
            # the denominators drift as predicted (Keras averages var, Lasagne inv_std)
            assert den_gap == pytest.approx(pred[n].denominator_gap, rel=0.02, abs=2e-5), (src, n)
            lines.append(f"{src} N={n}: mean {mean_gap:.1e}, denominator {den_gap:.2e}")
        # a real spread of batch variances leaves a residual after 100 steps
        assert pred[100].denominator_gap > 1e-4
    print(f"\n{phase}: Keras vs real Lasagne ({real['data']}):\n  " + "\n  ".join(lines))


def test_momentum_override_changes_the_drift_as_predicted(real):
    from migrator.core.mapping.overrides import Overrides

    ov = Overrides.from_dict({"version": 1, "layers": {"conv2_bn": {"momentum": 0.99}}})
    plan, model = _convert(real, "warm", ov)
    bns, stats = _replay(real, "warm", plan, model)
    layer, m = bns["conv2_bn"]
    assert layer.momentum == pytest.approx(0.99)
    pred = _predicted(real, "warm", m, "conv2_bn", 0.99)
    for n in STEPS:
        mean_gap, den_gap = _gaps(real["th"], "warm", "conv2_bn", stats, n)
        assert mean_gap == pytest.approx(pred[n].mean_gap, rel=0.02, abs=1e-5)
        assert den_gap == pytest.approx(pred[n].denominator_gap, rel=0.02, abs=2e-5)
    # alpha = 0.3 against momentum 0.99: the means separate
    assert pred[10].mean_gap > 0.02, pred
    # ... and the mapping's rows say so
    rows = {r.key: r for r in m.rows}
    assert "N=10" in str(rows["update_drift"].value)
    assert any("differs from the source's rate" in c for c in rows["training_update"].caveats)
    print("\nwarm, conv2_bn with momentum 0.99 (alpha 0.3): " + "; ".join(
        f"N={n}: mean {pred[n].mean_gap:.2e}, denominator {pred[n].denominator_gap:.2e}" for n in STEPS))


def test_fit_runs_and_dropout_is_training_only(real):
    import keras

    from migrator.core.compare.metrics import to_keras_layout

    plan, model = _convert(real, "warm")
    drop = next(m for m in plan.mappings if m.source == "drop")
    dl = model.get_layer(drop.layers[0].name)
    assert isinstance(dl, keras.layers.Dropout)
    t = np.ones((4, 10), np.float32)
    assert np.array_equal(np.asarray(dl(t, training=False)), t)
    on = np.asarray(dl(t, training=True))
    assert (on == 0).any() and np.allclose(on[on != 0], 2.0)
    x = to_keras_layout(real["batches"]["warm"][:6].reshape(-1, 3, 12, 12))
    y = keras.utils.to_categorical(np.arange(len(x)) % 4, 4)
    bn = _bn_layers(plan, model)["conv1_bn"][0]
    before = np.array(bn.moving_mean.numpy())
    w0 = [np.array(w) for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))
    assert not np.array_equal(before, bn.moving_mean.numpy())
    # inference stays deterministic after training
    p1, p2 = model.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0)
    assert np.array_equal(p1, p2)
