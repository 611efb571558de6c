"""The Keras feature-extraction idiom on what ``migrator convert`` writes.

A Keras user reads an intermediate layer of a pretrained model with
``keras.Model(m.input, m.get_layer(NAME).output)`` (the Keras FAQ's way).  That only works on a
flat functional graph: a nested model's ``.output`` belongs to its own graph.  Here, for real
architectures rebuilt by code (BVLC AlexNet with LRN and grouped convolutions, BVLC GoogLeNet
with ``/`` in its layer names, Kaiming He's ResNet-50, DenseNet-121, channel counts divided so
the whole topology runs in seconds) and a recurrent Lasagne character model, the ``.keras`` file
is loaded in a fresh process where Migrator cannot be imported, and for EVERY converted source
layer the idiom model is built and its output computed; the output must equal the layer's output from Migrator's
numpy reference (an implementation without Keras) within the comparison's default tolerance
(1e-5 + 1e-4 * max|ref|).  ``model.summary()`` lists the source layers under their own names.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from migrator.testing import architectures as A

from .test_cli import ENV, REPO, run

pytestmark = pytest.mark.slow

# Runs with Migrator un-importable: the artifact must be plain Keras.
CHILD = r'''
import json, sys
sys.modules["migrator"] = None
import numpy as np, keras
job = json.load(open(sys.argv[1]))
m = keras.saving.load_model(job["model"], safe_mode=True)
x = np.load(job["x"])
subs = [keras.Model(m.input, m.get_layer(name).output) for name in job["names"]]   # the idiom
# every idiom model's output, computed in one pass (one eager pass per layer would take
# minutes on DenseNet); every 8th idiom model also runs on its own and must agree
ys = keras.Model(m.input, [s.outputs[0] for s in subs])(x, training=False)
outs = {f"o{i}": np.asarray(y) for i, y in enumerate(ys)}
for i in range(0, len(subs), 8):
    alone = np.asarray(subs[i](x, training=False))
    assert np.allclose(alone, outs[f"o{i}"], rtol=1e-6, atol=1e-7), job["names"][i]
np.savez(job["out"], **outs)
lines = []
m.summary(print_fn=lambda s, **k: lines.append(s), line_length=110)
json.dump({"summary": "\n".join(lines), "layers": [ly.name for ly in m.layers],
           "nested": [ly.name for ly in m.layers if isinstance(ly, keras.Model)]},
          open(job["info"], "w"))
'''

CHAR_SCRIPT = '''
import lasagne
from lasagne.layers import InputLayer, EmbeddingLayer, LSTMLayer, GRULayer, DenseLayer


def build_model():
    net = {}
    net['chars'] = InputLayer((None, 9))
    net['emb'] = EmbeddingLayer(net['chars'], input_size=11, output_size=6)
    net['lstm'] = LSTMLayer(net['emb'], 8)                      # peepholes: unrolled
    net['gru'] = GRULayer(net['lstm'], 5, backwards=True)
    net['last'] = lasagne.layers.SliceLayer(net['gru'], -1, axis=1)
    net['prob'] = DenseLayer(net['last'], 4, nonlinearity=lasagne.nonlinearities.softmax)
    return net
'''

CAFFE = {"alexnet": (A.alexnet, 8, {}), "googlenet": (A.googlenet, 8, {}),
         "resnet50": (A.resnet50, 8, {}), "densenet121": (A.densenet121, 8, {"size": 96})}


def _files(name, d):
    if name == "char_lstm_gru":
        from migrator.testing.lasagne_models import write_model
        b, p, _ = write_model(d, CHAR_SCRIPT, "npz", seed=5)
        return [str(b), str(p)]
    gen, width, kw = CAFFE[name]
    return [str(f) for f in gen(width=width, **kw).save(d / f"{name}.prototxt", d / f"{name}.caffemodel")]


@pytest.fixture(scope="session", params=[*CAFFE, "char_lstm_gru"])
def idiom(request, tmp_path_factory):
    """Convert one architecture with the CLI, run the idiom for every converted source layer
    in a Migrator-free process; the numpy reference's outputs of the same input."""
    from migrator.core import flow
    from migrator.core.inputs import InputSpec, make_input
    from migrator.core.reference import numpy_ref

    name = request.param
    d = tmp_path_factory.mktemp(f"idiom_{name}")
    files = _files(name, d)
    g = flow.open_model(files)
    x, _ = make_input(g, InputSpec(kind="random", seed=3, batch=2))
    out = d / f"{name}.keras"
    r = run("convert", *files, "-o", out, "--report", d / "r.json", "--precision", "off")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rep = json.loads((d / "r.json").read_text())
    pairs = [(L["source"], L["keras"]) for L in rep["layers"] if L.get("keras") and L["status"] != "fused"]
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, x).items()}
    # the Keras input as the report's comparison fed it (channels-last for images, sequences as
    # they are): the layout tags of the plan
    from migrator.core.compare.metrics import to_keras_layout
    plan = flow.plan_model(g)
    in_name = next(n.name for n in g.nodes if n.op == "Input")
    xk = to_keras_layout(x, plan.layout_of(in_name))
    np.save(d / "xk.npy", xk)
    job = {"model": str(out), "x": str(d / "xk.npy"), "names": [k for _, k in pairs],
           "out": str(d / "outs.npz"), "info": str(d / "info.json")}
    (d / "job.json").write_text(json.dumps(job))
    c = subprocess.run([sys.executable, "-c", CHILD, str(d / "job.json")], capture_output=True, text=True,
                       env=ENV, cwd=REPO, timeout=1200, check=False)
    assert c.returncode == 0, c.stderr[-3000:]
    outs = np.load(d / "outs.npz")
    got = {src: outs[f"o{i}"] for i, (src, _) in enumerate(pairs)}
    info = json.loads((d / "info.json").read_text())
    return {"name": name, "graph": g, "pairs": pairs, "ref": ref, "got": got, "info": info,
            "report": rep, "layouts": {src: plan.layout_of(src) for src, _ in pairs}}


def test_every_source_layer_reads_out_with_the_idiom(idiom):
    from migrator.core.compare.metrics import to_source_layout
    from tests.legacy import within_default_tolerance

    bad, n = [], 0
    for src, kname in idiom["pairs"]:
        ref = idiom["ref"][src]
        got = to_source_layout(idiom["got"][src], ref.ndim, idiom["layouts"][src])
        ok, err, bound = within_default_tolerance(ref, got)
        n += 1
        if not ok:
            bad.append((src, kname, got.shape, ref.shape, err, bound))
    assert not bad, bad
    # every node of the source graph but the fused ones is read out
    fused = {L["source"] for L in idiom["report"]["layers"] if L["status"] == "fused"}
    assert n == len(idiom["graph"].nodes) - len(fused)
    assert not idiom["info"]["nested"]                     # a flat graph
    print(idiom["name"], n, "source layers read with the idiom")


def test_summary_reads_as_the_source_network(idiom):
    layers = idiom["info"]["layers"]
    for _src, kname in idiom["pairs"]:
        assert kname in layers
    summary = idiom["info"]["summary"]
    if idiom["name"] == "alexnet":
        for want in ("conv1 (Conv2D)", "norm1 (Identity)", "norm1_square", "pool1", "fc8 (Dense)"):
            assert want in summary, summary
    if idiom["name"] == "googlenet":     # names with '/' keep the report's (sanitized) names
        ks = dict(idiom["pairs"])
        assert ks["inception_3a/output"] in layers and ks["pool1/norm1"] in layers
