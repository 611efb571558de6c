"""`--input-shape`: models that leave the input size open (Lasagne Recipes' GoogLeNet
declares ``InputLayer((None, 3, None, None))``).

* without it, convert/compare stop with one line naming the option, pre-filled when the
  parameters imply a size (a Dense after the pooling fixes H x W);
* with it, the model converts and verifies; the exported Keras model keeps the open sizes
  when no layer's conversion depends on them (checked by running the saved model at
  another size against the reference computed at that size), and fixes them otherwise;
* the shape is recorded in the report (and a mapping file's ``input_shapes`` works too).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from migrator.core import flow
from migrator.core.errors import MigratorError
from migrator.core.input_shape import (
    apply_input_shapes,
    input_shape_need,
    parse_input_shapes,
    suggest_input_shape,
)
from migrator.core.reference import numpy_ref
from migrator.testing.caffe_net import NetBuilder
from migrator.testing.lasagne_models import write_model

from .test_cli import run

# Lasagne Recipes GoogLeNet's pattern, small: open input, ceil-mode pooling
# (ignore_border=False), a global 'pool5' before the DenseLayer (Lasagne itself refuses a
# DenseLayer on open sizes).
IMPORTS = """
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, MaxPool2DLayer, GlobalPoolLayer,
                            DenseLayer)
from lasagne.nonlinearities import softmax
"""

# (written so that the real Lasagne 0.1 in the Theano venv runs it too: no flip_filters)
GOOGLENET_LIKE = IMPORTS + '''
def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, None, None))
    net['conv1'] = Conv2DLayer(net['input'], 8, 7, stride=2, pad=3)
    net['pool1'] = MaxPool2DLayer(net['conv1'], pool_size=3, stride=2, ignore_border=False)
    net['conv2'] = Conv2DLayer(net['pool1'], 8, 3, pad=1)
    net['pool5'] = GlobalPoolLayer(net['conv2'])
    net['prob'] = DenseLayer(net['pool5'], num_units=10, nonlinearity=softmax)
    return net
'''

# Fully convolutional: floor pooling and a global pool before the Dense -> any size works.
FCN_LIKE = IMPORTS + '''
def build_model():
    l = InputLayer((None, 3, None, None), name='input')
    l = Conv2DLayer(l, 8, 3, pad=1, name='conv1')
    l = MaxPool2DLayer(l, 2, name='pool1')
    l = Conv2DLayer(l, 6, 1, name='conv2')
    l = GlobalPoolLayer(l, name='gap')
    l = DenseLayer(l, 5, nonlinearity=softmax, name='fc')
    return l
'''


VALUES: dict = {}


def _written(tmp_path_factory, name, script, seed):
    """(folder, builder, params) of ``script`` written with npz parameters (kept in VALUES)."""
    d = tmp_path_factory.mktemp(name)
    b, p, vals = write_model(d, script, flavour="npz", seed=seed)
    VALUES[b] = vals
    return d, b, p


@pytest.fixture(scope="module")
def googlenet(tmp_path_factory):
    return _written(tmp_path_factory, "googlenet_like", GOOGLENET_LIKE, 2)


@pytest.fixture(scope="module")
def fcn(tmp_path_factory):
    return _written(tmp_path_factory, "fcn_like", FCN_LIKE, 5)


def test_open_input_without_shape_is_one_line_naming_the_option(googlenet):
    d, b, p = googlenet
    r = run("convert", b, p, "-o", d / "x.keras")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "--input-shape 1,3,H,W" in lines[0], lines[0]
    assert "'pool1'" in lines[0] and "ceil-mode" in lines[0]
    assert not (d / "x.keras").exists()
    # inspect shows the table and says the same as a note
    r = run("inspect", b, p)
    assert r.returncode == 0 and "note: input 'input' has open dimensions" in r.stdout


def test_suggestion_api(googlenet, fcn, tmp_path):
    g = flow.open_model([googlenet[1], googlenet[2]])
    assert suggest_input_shape(g) == (None, None)     # a global pool: any size fits
    need = input_shape_need(g, flow.plan_model(g))
    assert need["inputs"] == ["input"] and need["layers"] and need["layers"][0][0] == "pool1"
    assert input_shape_need(flow.open_model([fcn[1], fcn[2]])) is not None
    # a Dense after a flatten fixes H x W: the suggestion comes from its weights
    nb = NetBuilder("flat", seed=0)
    nb.input("data", (1, 3, 32, 32))
    nb.conv("conv", "data", 4, 3)
    nb.pool("pool", "conv", "max", 2, stride=2)
    nb.ip("fc", "pool", 10)
    p, m = nb.save(tmp_path / "f.prototxt", tmp_path / "f.caffemodel")
    g = flow.open_model([p, m])
    g.node("data").attrs["shape"] = (None, 3, None, None)
    g.infer_shapes()
    sugg, why = suggest_input_shape(g)
    assert sugg == {"data": (1, 3, 32, 32)} and "'fc'" in why
    from migrator.core.input_shape import need_error
    msg = str(need_error(g, input_shape_need(g)))
    assert "--input-shape 1,3,32,32" in msg and "parameters imply" in msg


def test_convert_with_input_shape_fixed_sizes(googlenet):
    d, b, p = googlenet
    out = d / "g.keras"
    r = run("convert", b, p, "-o", out, "--input-shape", "1,3,32,32")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((d / "g.report.json").read_text())
    rec = rep["source"]["input_shapes"]["input"]
    assert rec["declared"] == [None, 3, None, None] and rec["given"] == [1, 3, 32, 32]
    assert rec["keras_open"] is False and any("pool1" in w for w in rec["fixed_because"])
    assert rep["overrides"]["input_shapes"] == {"": [1, 3, 32, 32]}
    import keras
    m = keras.saving.load_model(out, compile=False)
    assert tuple(m.inputs[0].shape) == (None, 32, 32, 3)
    # a shape that does not fit the model is a one-line error naming the option
    r = run("convert", b, p, "-o", d / "bad.keras", "--input-shape", "1,4,32,32")
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("note:")]
    assert r.returncode == 2 and "--input-shape" in r.stderr and len(lines) == 1, r.stderr


def test_open_sizes_are_kept_when_every_layer_allows(fcn, tmp_path):
    _d, b, p = fcn
    out = tmp_path / "f.keras"
    r = run("convert", b, p, "-o", out, "--input-shape", "1,3,20,16")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((tmp_path / "f.report.json").read_text())
    assert rep["source"]["input_shapes"]["input"]["keras_open"] is True
    import keras
    m = keras.saving.load_model(out, compile=False)
    assert tuple(m.inputs[0].shape) == (None, None, None, 3)
    # the saved model at another size equals the reference computed at that size
    g = flow.open_model([b, p], input_shapes={"": (2, 3, 34, 26)})
    x = np.random.default_rng(0).standard_normal((2, 3, 34, 26)).astype(np.float32)
    ref = numpy_ref.run_all(g, x)["fc"][0]
    got = np.asarray(m(np.transpose(x, (0, 2, 3, 1))))
    assert np.abs(got - ref).max() <= 1e-5 + 1e-4 * np.abs(ref).max()


def test_compare_with_npy_input_takes_its_size(fcn, tmp_path):
    _d, b, p = fcn
    x = np.random.default_rng(1).standard_normal((1, 3, 12, 14)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run("compare", b, p, "--input", tmp_path / "x.npy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VERIFICATION PASSED" in r.stdout


def test_mapping_file_input_shapes(googlenet, tmp_path):
    _d, b, p = googlenet
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps({"version": 1, "input_shapes": {"input": [1, 3, 32, 32]}}))
    r = run("compare", b, p, "--mapping", mp)
    assert r.returncode == 0, r.stdout + r.stderr


def test_caffe_input_shape_and_names(tmp_path):
    nb = NetBuilder("two", seed=0)
    nb.input("a", (1, 3, 8, 8))
    nb.input("b", (1, 3, 8, 8))
    nb.eltwise("s", ["a", "b"])
    nb.conv("c", "s", 4, 3)
    p, m = nb.save(tmp_path / "t.prototxt", tmp_path / "t.caffemodel")
    g = flow.open_model([p, m], input_shapes=parse_input_shapes(["a=2,3,10,12", "b=2,3,10,12"]))
    assert g.node("c").out_shape == (2, 4, 8, 10)
    assert g.meta["input_shapes"]["a"] == {"declared": [1, 3, 8, 8], "given": [2, 3, 10, 12]}
    with pytest.raises(MigratorError, match="name every input|2 inputs"):
        flow.open_model([p, m], input_shapes=parse_input_shapes(["1,3,8,8"]))
    with pytest.raises(MigratorError, match="does not have"):
        flow.open_model([p, m], input_shapes={"zz": (1, 3, 8, 8)})
    g = flow.open_model([p, m])
    with pytest.raises(MigratorError, match="channels"):
        apply_input_shapes(g, {"a": (1, 4, 8, 8)})
    for bad in (["1,3,x"], ["0,3,4,4"], ["a=1,3,4,4", "a=1,3,4,4"], ["1,3,4,4", "b=1,3,4,4"]):
        with pytest.raises(MigratorError, match="--input-shape"):
            parse_input_shapes(bad)
    r = run("inspect", p, m, "--input-shape", "a=1,3,9,9", "--input-shape", "b=1,3,9,9", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert {L["source"]: L["shape"] for L in info["layers"]}["c"] == [1, 4, 7, 7]


FORWARD = r"""
import runpy, theano, lasagne
ns = runpy.run_path(str(IN["builder"]), run_name="__migrator_builder__")
net = ns["build_model"]()
out = net["prob"] if isinstance(net, dict) else net
lasagne.layers.set_all_param_values(out, [IN["param__%d" % i] for i in range(int(IN["n"]))])
x = lasagne.layers.get_all_layers(out)[0].input_var
OUT["y"] = theano.function([x], lasagne.layers.get_output(out, deterministic=True))(IN["x"])
"""


@pytest.mark.theano
@pytest.mark.slow
def test_exported_models_vs_real_lasagne(googlenet, fcn, tmp_path):
    """The real Lasagne 0.1 runs the open-size builders at the given size (GoogLeNet-like,
    fixed Keras input) and at another size (fully convolutional, open Keras input); the
    saved Keras models must agree with it."""
    import keras

    from tests.envs import theano_env as TE
    from tests.envs.theano_env import run_theano
    py = TE.ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    worst = {}
    for (_d, b, p), given, run_at in ((googlenet, "1,3,32,32", (2, 3, 32, 32)),
                                      (fcn, "1,3,20,16", (2, 3, 34, 26))):
        out = tmp_path / f"{len(worst)}.keras"
        r = run("convert", b, p, "-o", out, "--input-shape", given)
        assert r.returncode == 0, r.stdout + r.stderr
        x = np.random.default_rng(4).standard_normal(run_at).astype(np.float32)
        vals = VALUES[b]
        req = {"builder": np.array(b), "x": x, "n": np.array(len(vals))}
        req.update({f"param__{i}": v for i, v in enumerate(vals)})
        want = run_theano(py, FORWARD, req)["y"]
        m = keras.saving.load_model(out, compile=False)
        got = np.asarray(m(np.transpose(x, (0, 2, 3, 1))))
        err = float(np.abs(got - want).max())
        assert err <= 1e-5 + 1e-4 * float(np.abs(want).max()), (b, err)
        worst[str(b)] = err
    print(f"\nKeras vs real Lasagne 0.1 (open input sizes): {worst}")
