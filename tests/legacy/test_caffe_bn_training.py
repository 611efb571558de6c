"""Fine-tuning a converted Caffe BatchNorm + Scale net, against the real Caffe (Debian 11's
python3-caffe in the chroot), on crops of a real photograph (``tests.photo``).

The real Caffe runs the net in the TRAIN phase with ``use_global_stats: false``: two phases of
100 forward passes each -- "cold" from hand-set statistics with ``blob2 = 1``, "warm" from the
statistics the cold phase left (``blob2`` accumulated as in training).  Then:

* the converted Keras model (BatchNorm + Scale fused into one BatchNormalization), called with
  ``training=True``, equals Caffe's TRAIN forward layer by layer;
* after N = 1, 10, 100 updates, Keras's moving statistics are compared with Caffe's effective
  ``blob0/blob2``, ``blob1/blob2``: the gaps are what :mod:`migrator.core.mapping.bn_training`
  predicts from the batches' statistics (its replay of Caffe's update -- ``sf`` weighting,
  unbiased variance -- is checked against Caffe's blobs);
* ``model.fit`` runs on the converted model; its Dropout is active in training only.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.legacy import caffe_command, caffe_root
from tests.photo import photo_batches

pytestmark = [pytest.mark.caffe, pytest.mark.slow,
              pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")]

BATCH, STEPS, PHASES = 8, (1, 10, 100), ("cold", "warm")
BNS = {"bn1": ("conv1", "sc1"), "bn2": ("conv2", "sc2"), "bn3": ("fc1", "sc3")}

PROTO = """name: "bn_train"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: %(n)d dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "bn1"
        batch_norm_param { moving_average_fraction: 0.9 %(g)s } }
layer { name: "sc1" type: "Scale" bottom: "bn1" top: "sc1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "sc1" top: "relu1" }
layer { name: "pool1" type: "Pooling" bottom: "relu1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "bn2" batch_norm_param { %(g)s } }
layer { name: "sc2" type: "Scale" bottom: "bn2" top: "sc2" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "sc2" top: "relu2" }
layer { name: "fc1" type: "InnerProduct" bottom: "relu2" top: "fc1"
        inner_product_param { num_output: 10 } }
layer { name: "bn3" type: "BatchNorm" bottom: "fc1" top: "bn3"
        batch_norm_param { moving_average_fraction: 0.99 eps: 1e-4 %(g)s } }
layer { name: "sc3" type: "Scale" bottom: "bn3" top: "sc3" scale_param { bias_term: true } }
layer { name: "relu3" type: "ReLU" bottom: "sc3" top: "relu3" }
layer { name: "drop" type: "Dropout" bottom: "relu3" top: "drop" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc2" type: "InnerProduct" bottom: "drop" top: "fc2" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" }
"""

COMPARED = ["conv1", "bn1", "sc1", "relu1", "pool1", "conv2", "sc2", "relu2", "fc1", "sc3", "relu3"]

# runs inside the chroot with the real Caffe (Python 3.9, numpy 1.19)
REAL = f"BNS = {BNS!r}\nCOMPARED = {COMPARED!r}\nCHECK = {STEPS!r}\n" + r'''
import os, sys
os.environ.setdefault("GLOG_minloglevel", "2")
import numpy as np
import caffe
caffe.set_mode_cpu()
wd = sys.argv[1]
rng = np.random.RandomState(5)
net = caffe.Net(os.path.join(wd, "train.prototxt"), caffe.TRAIN)
for name, layer in zip(net._layer_names, net.layers):
    b = layer.blobs
    if layer.type in ("Convolution", "InnerProduct"):
        w = b[0].data
        w[...] = rng.randn(*w.shape) * np.sqrt(2.0 / np.prod(w.shape[1:]))
        b[1].data[...] = rng.randn(*b[1].data.shape) * 0.05
    elif layer.type == "BatchNorm":
        c = b[0].data.shape[0]
        b[0].data[...] = rng.randn(c) * 0.3
        b[1].data[...] = rng.uniform(0.3, 2.0, c)
        b[2].data[...] = 1.0
    elif layer.type == "Scale":
        b[0].data[...] = rng.uniform(0.8, 1.2, b[0].data.shape)
        b[1].data[...] = rng.randn(*b[1].data.shape) * 0.05
OUT = {}
for phase in ("cold", "warm"):
    net.save(os.path.join(wd, phase + ".caffemodel"))
    X = np.load(os.path.join(wd, "batches_%s.npy" % phase))
    for s in range(CHECK[-1]):
        net.blobs["data"].data[...] = X[s]
        net.forward()
        if s == 0:
            for n in COMPARED:
                OUT["%s_train__%s" % (phase, n)] = net.blobs[n].data.copy()
        for bn, (bottom, _) in BNS.items():
            v = net.blobs[bottom].data.astype(np.float64)
            ax = tuple(a for a in range(v.ndim) if a != 1)
            OUT["%s_bmean__%s__%d" % (phase, bn, s)] = v.mean(ax)
            OUT["%s_bvar__%s__%d" % (phase, bn, s)] = v.var(ax)
            OUT["%s_bcount__%s__%d" % (phase, bn, s)] = np.array(v.size // v.shape[1])
        if s + 1 in CHECK:
            for bn in BNS:
                for i in range(3):
                    OUT["%s_blob%d__%s__%d" % (phase, i, bn, s + 1)] = net.params[bn][i].data.copy()
np.savez(os.path.join(wd, "out.npz"), **OUT)
'''


@pytest.fixture(scope="module")
def real():
    from migrator.core import flow
    root = caffe_root()[0]
    host = Path(tempfile.mkdtemp(prefix="migrator-bntrain-", dir=Path(root) / "tmp"))
    try:
        (host / "train.prototxt").write_text(PROTO % {"n": BATCH, "g": "use_global_stats: false"})
        deploy = host / "deploy.prototxt"
        deploy.write_text(PROTO % {"n": BATCH, "g": ""})
        batches = {}
        for i, ph in enumerate(PHASES):
            batches[ph], what = photo_batches(STEPS[-1], BATCH, 12, seed=11 + i)
            np.save(host / f"batches_{ph}.npy", batches[ph])
        r = subprocess.run(caffe_command() + ["-c", REAL, "/tmp/" + host.name], check=False,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        with np.load(host / "out.npz") as z:
            out = {k: z[k] for k in z.files}
        graphs = {ph: flow.open_model([str(deploy), str(host / f"{ph}.caffemodel")])
                  for ph in PHASES}
        yield {"graphs": graphs, "batches": batches, "data": what, "out": out}
    finally:
        shutil.rmtree(host, ignore_errors=True)


def _host(plan, name):
    """The mapping holding the Keras layer of a source layer: itself, or the BatchNorm whose
    layer also computes this fused Scale."""
    m = next(m for m in plan.mappings if m.source == name)
    return m if m.layers else next(h for h in plan.mappings if h.fused_into == name and h.layers)


def _convert(real, phase, overrides=None):
    from migrator.core import flow
    plan = flow.plan_model(real["graphs"][phase], overrides)
    return plan, flow.build_model(plan)


@pytest.mark.parametrize("phase", PHASES)
def test_training_forward_equals_real_caffe(real, phase):
    import keras

    from migrator.core.compare.metrics import to_keras_layout, to_source_layout

    plan, model = _convert(real, phase)
    maps = {m.source: m for m in plan.mappings}
    # BatchNorm + Scale: one BatchNormalization
    assert all(_host(plan, bn).rule == "caffe.BatchNorm" and len(_host(plan, bn).layers) == 1
               and _host(plan, bn) is _host(plan, sc) for bn, (_, sc) in BNS.items()), \
        [(m.source, m.rule, m.fused_into, len(m.layers)) for m in plan.mappings]
    names = [n for n in COMPARED if not n.startswith("bn")]   # a BN's own top: inside the fused layer
    kname = {n: maps[n].keras_output or _host(plan, n).keras_output for n in names}
    sub = keras.Model(model.inputs, [model.get_layer(kname[n]).output for n in names])
    x = real["batches"][phase][0]
    got = sub([to_keras_layout(x)], training=True)
    worst = {}
    for n, k in zip(names, got):
        want = real["out"][f"{phase}_train__{n}"]
        have = to_source_layout(np.asarray(k), want.ndim)
        e = float(np.abs(have - want).max())
        assert e <= 2e-5 * max(1.0, float(np.abs(want).max())), (n, e)
        worst[n] = e
    assert "sc1" in worst and "sc3" in worst
    # Caffe normalised with the batch's statistics, not the stored ones: so did Keras
    inf = sub([to_keras_layout(x)], training=False)
    i = names.index("sc1")
    assert float(np.abs(np.asarray(inf[i]) - np.asarray(got[i])).max()) > 1e-3
    print(f"\n{phase}: training-mode forward vs real Caffe ({real['data']}): worst "
          f"{max(worst.values()):.2e} (" + ", ".join(f"{n} {worst[n]:.1e}" for n in ('sc1', 'sc2', 'sc3'))
          + ")")


def _replay(real, phase, plan, model):
    from migrator.core.compare.metrics import to_keras_layout
    layers = {bn: model.get_layer(_host(plan, bn).layers[0].name) for bn in BNS}
    stats = {}
    for s in range(STEPS[-1]):
        model(to_keras_layout(real["batches"][phase][s]), training=True)
        if s + 1 in STEPS:
            for bn, layer in layers.items():
                stats[(bn, s + 1)] = (np.asarray(layer.moving_mean.numpy(), np.float64),
                                      np.asarray(layer.moving_variance.numpy(), np.float64),
                                      layer.epsilon)
    return layers, stats


def _predicted(real, phase, plan, bn, momentum):
    from migrator.core.mapping.bn_training import BatchStats, SourceState, update_drift
    out, node = real["out"], real["graphs"][phase].node(bn)
    rows = {r.key: r for r in _host(plan, bn).rows}
    b = [np.asarray(node.p(k), np.float64).reshape(-1) for k in ("mean", "variance", "scale_factor")]
    state = SourceState("caffe", b[0], b[1], float(node.attrs.get("moving_average_fraction", 0.999)),
                        float(node.attrs.get("eps", 1e-5)), sf=float(b[2][0]))
    batches = [BatchStats(out[f"{phase}_bmean__{bn}__{s}"], out[f"{phase}_bvar__{bn}__{s}"],
                          int(out[f"{phase}_bcount__{bn}__{s}"])) for s in range(STEPS[-1])]
    for n in STEPS:       # the module's replay of Caffe's update is Caffe's own
        st = state.copy()
        for bs in batches[:n]:
            st.step(bs)
        for i, v in enumerate((st.a, st.b, st.sf)):
            assert np.allclose(v, out[f"{phase}_blob{i}__{bn}__{n}"].reshape(-1), rtol=1e-4,
                               atol=1e-5), (bn, n, i)
    pts = update_drift(state, rows["moving_mean"].value, rows["moving_variance"].value, momentum,
                       rows["epsilon"].value, batches, STEPS)
    return state, {p.step: p for p in pts}


def _gaps(out, phase, bn, eps_src, stats, n):
    mm, mv, eps = stats[(bn, n)]
    sf = float(out[f"{phase}_blob2__{bn}__{n}"].reshape(-1)[0])
    mean = out[f"{phase}_blob0__{bn}__{n}"] / sf
    d = np.sqrt(out[f"{phase}_blob1__{bn}__{n}"] / sf + eps_src)
    return (float(np.max(np.abs(mm - mean) / d)), float(np.max(np.abs(np.sqrt(mv + eps) / d - 1))))


@pytest.mark.parametrize("phase", PHASES)
def test_moving_statistics_vs_real_caffe_after_n_steps(real, phase):
    plan, model = _convert(real, phase)
    layers, stats = _replay(real, phase, plan, model)
    assert set(layers) == set(BNS)
    lines = []
    for bn, layer in layers.items():
        state, pred = _predicted(real, phase, plan, bn, layer.momentum)
        assert layer.momentum == pytest.approx(state.rate)
        for n in STEPS:
            mg, dg = _gaps(real["out"], phase, bn, state.eps, stats, n)
            assert mg == pytest.approx(pred[n].mean_gap, rel=0.02, abs=2e-5), (bn, n, mg)
            assert dg == pytest.approx(pred[n].denominator_gap, rel=0.02, abs=2e-5), (bn, n, dg)
            lines.append(f"{bn} (maf {state.rate:g}, sf {state.sf:.4g}) N={n}: mean {mg:.2e}, "
                         f"denominator {dg:.2e}")
        if phase == "cold":
            # blob2 = 1: Caffe weighs the first batch by 1/(maf + 1), Keras by 1 - maf
            assert pred[1].mean_gap > 0.01
    print(f"\n{phase}: Keras vs real Caffe ({real['data']}):\n  " + "\n  ".join(lines))


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
    x = to_keras_layout(real["batches"]["warm"][:4].reshape(-1, 3, 12, 12))
    y = keras.utils.to_categorical(np.arange(len(x)) % 4, 4)
    bn = model.get_layer(_host(plan, "bn2").layers[0].name)
    before = np.array(bn.moving_variance.numpy())
    w0 = [np.array(w) for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))
    assert not np.array_equal(before, bn.moving_variance.numpy())
    p1, p2 = model.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0)
    assert np.array_equal(p1, p2)
