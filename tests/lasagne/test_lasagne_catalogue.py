"""The Lasagne catalogue (issue 14): the rest of master's ``lasagne.layers``, each class
against the real framework or refused by name.

* Classes Lasagne 0.1 (PyPI) has -- FeaturePoolLayer (T.max/T.mean/T.sum/T.min, any axis),
  FeatureWTALayer, GlobalPoolLayer with T.sum/T.min/T.var/T.std/T.prod and on a rank-3
  input, ElemwiseMergeLayer with T.minimum/T.sub/T.mul/T.maximum, SliceLayer (slices with a
  step, an index), GaussianNoiseLayer, NINLayer with untie_biases, FlattenLayer(outdim),
  ReshapeLayer([0], [1], -1) -- are run by the *real* Lasagne 0.1 + Theano 1.0.5
  (``get_output(..., deterministic=True)``), after checking that the recorder describes the
  network exactly like the real Lasagne.
* Classes of Lasagne master only -- Conv2DDNNLayer / Conv2DMMLayer / Conv2DCCLayer (their
  flip_filters=False default, flip_filters=True, untie_biases), MaxPool2DDNNLayer,
  Pool2DDNNLayer, MaxPool2DCCLayer, DenseLayer(num_leading_axes 2 / -1), ScaleLayer,
  BiasLayer, ParametricRectifierLayer (auto / 'all'), RandomizedRectifierLayer,
  StandardizationLayer (spatial / features / an int; instance_norm, layer_norm),
  Upscale1DLayer (repeat / dilate), BatchNormLayer (rank 4 and 2, batch_norm), BatchNormDNNLayer (batch_norm_dnn), LocallyConnected2DLayer (channelwise or not,
  flip_filters, untie_biases), SpatialPyramidPooling(DNN)Layer (kaiming / fast, max / average),
  ConcatLayer / ElemwiseSumLayer / ElemwiseMergeLayer with ``cropping`` -- are compared with
  Theano's own ops written from master's get_output_for
  (``migrator.testing.lasagne_models.CATALOGUE_THEANO_SCRIPT``), with constructor values taken
  from the script's calls (``CATALOGUE_MASTER_CALLS``) and master's defaults written there as
  literals -- never from the recorder's description of the layers.

Both Migrator's numpy reference and the converted Keras model are compared, within 1e-5
relative to the layer's largest value; one Theano process runs everything.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests import proofs

from . import convert_script

TOL = 1e-5

#: Theano's fast_compile optimizer: the same ops, not fused (compiling ~100 fused graphs on a
#: shared machine takes longer than the test's limit; unfused ops compile once and are cached).
NO_CXX = '''
import os
os.environ["THEANO_FLAGS"] = os.environ.get("THEANO_FLAGS", "") + ",optimizer=fast_compile"
'''

REAL_FORWARD = r'''
import runpy
import lasagne
ns = runpy.run_path(str(IN["real::builder"]), run_name="__migrator_builder__")
net = ns["build_model"]()
out = net["prob"]
layers = lasagne.layers.get_all_layers(out)
values = [IN["real::param__%d" % i] for i in range(int(IN["real::n_params"]))]
lasagne.layers.set_all_param_values(out, values)
x = layers[0].input_var
exprs = lasagne.layers.get_output(layers[1:], deterministic=True)
f = theano.function([x], exprs)
for i, v in enumerate(f(IN["real::x"])):
    OUT["real::layer__%d" % (i + 1)] = v
'''


def _rel(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    # relative to the reference's own scale (an absolute floor of 1e-6 for all-but-zero outputs)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
                 / max(1e-6, float(np.abs(b).max())))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env, run_theano

    py = ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    out, req = {"python": py}, {}
    for tag, script in (("real", M.CATALOGUE_01_SCRIPT), ("master", M.CATALOGUE_MASTER_SCRIPT)):
        r = convert_script(tmp_path_factory.mktemp(tag), script, "pkl_list", seed=4, x_seed=9)
        b, vals, x = r["builder"], r["values"], r["x"]
        out[tag] = {k: r[k] for k in ("graph", "ref", "keras", "builder", "plan", "model", "x")}
        if tag == "real":
            req.update({"real::builder": np.array(b), "real::x": x,
                        "real::n_params": np.array(len(vals))})
            req.update({f"real::param__{i}": v for i, v in enumerate(vals)})
        else:
            g = r["graph"]
            req.update(M.theano_request(g, {g.input_nodes[0].name: x}, r["ref"], tag=tag))
            # the reference's constructor values: the script's arguments + master's literal defaults
            req["master::calls"] = np.array(json.dumps(M.CATALOGUE_MASTER_CALLS))
    th = run_theano(py, NO_CXX + M.CATALOGUE_THEANO_SCRIPT + REAL_FORWARD, req, timeout=900)
    names = [L["name"] for L in out["real"]["graph"].meta["lasagne_description"]["layers"]]
    out["real"]["theano"] = {names[int(k.split("__")[1])]: v for k, v in th.items()
                             if k.startswith("real::layer__")}
    pre = "master::"
    out["master"]["iso"] = {k[len(pre) + 5:]: v for k, v in th.items() if k.startswith(pre + "iso__")}
    out["master"]["chain"] = {k[len(pre) + 7:]: v for k, v in th.items()
                              if k.startswith(pre + "chain__")}
    return out


@pytest.mark.theano
@pytest.mark.slow
def test_recorder_describes_the_01_classes_like_real_lasagne(results):
    from migrator.core.importers.lasagne import describe_builder

    b = results["real"]["builder"]
    rec = describe_builder(b)
    real = describe_builder(b, impl="real", python=results["python"], timeout=300)
    assert real["impl"] == "real" and len(rec["layers"]) == len(real["layers"]) == 29
    for a, r in zip(rec["layers"], real["layers"]):
        assert (a["name"], a["class"], a["inputs"]) == (r["name"], r["class"], r["inputs"])
        assert a["output_shape"] == r["output_shape"], a["name"]
        assert [(p["name"], p["shape"]) for p in a["params"]] == \
               [(p["name"], p["shape"]) for p in r["params"]], a["name"]
    assert rec["params"] == real["params"]


@pytest.mark.theano
@pytest.mark.slow
def test_01_classes_match_real_lasagne(results, record_proof):
    r = results["real"]
    g, real = r["graph"], r["theano"]
    want_ops = {"fp_max": "FeaturePool", "wta": "FeatureWTA", "gp_var": "LasagneReduce",
                "m_min": "CropMerge", "m_sub": "CropMerge", "gp3_max": "LasagneReduce",
                "noise": "Identity", "nin": "Conv"}
    assert {k: g.node(k).op for k in want_ops} == want_ops
    assert len(real) == len(g.nodes) - 1 == 28
    worst_ref = worst_keras = 0.0
    for name, want in real.items():
        e = _rel(r["ref"][name], want)
        assert e <= TOL, f"numpy ref vs real Lasagne 0.1, layer {name}: {e:.2e}"
        worst_ref = max(worst_ref, e)
        assert name in r["keras"], f"no Keras output for {name}"
        e = _rel(r["keras"][name], want)
        assert e <= TOL, f"Keras vs real Lasagne 0.1, layer {name}: {e:.2e}"
        worst_keras = max(worst_keras, e)
    record_proof(g, proofs.REAL_LASAGNE, list(real))
    print(f"\nreal Lasagne 0.1: {len(real)} layers, numpy ref worst {worst_ref:.1e}, "
          f"Keras worst {worst_keras:.1e} (relative)")


def test_master_calls_cover_the_master_script(tmp_path):
    """Every layer of the master catalogue has its constructor call written out for the Theano
    reference (which never reads constructor values from the recorder's description)."""
    from migrator.core.importers.lasagne import describe_builder
    b = tmp_path / "master.py"
    b.write_text(M.CATALOGUE_MASTER_SCRIPT)
    layers = [L for L in describe_builder(str(b))["layers"] if L["known"] != "InputLayer"]
    assert {L["name"]: L["known"] for L in layers} == \
        {n: cls for n, (cls, _) in M.CATALOGUE_MASTER_CALLS.items()}
    src = M.CATALOGUE_THEANO_SCRIPT
    ns: dict = {}
    part = src[src.index("# ---- constructor values"):src.index("_described_layer_expr = layer_expr")]
    exec(part, ns)  # noqa: S102 -- our own reference text, as run_theano runs it
    # the recorder's description agrees with master's constructors (literal defaults resolved as
    # master resolves 'auto' / 'spatial' / 'features' / None strides) on every value the
    # reference reads: the Theano comparison below then checks the arithmetic, not the defaults

    def norm(v):
        if isinstance(v, dict) and "__callable__" in v:
            n = v["__callable__"].rsplit(".", 1)[-1]
            return None if n in ("linear", "identity") else n
        return [norm(x) for x in v] if isinstance(v, (list, tuple)) else v

    shapes = {L["name"]: L["output_shape"] for L in describe_builder(str(b))["layers"]}
    bad = []
    for L in layers:
        cls, given = M.CATALOGUE_MASTER_CALLS[L["name"]]
        want = ns["master_attrs"](cls, given, len(shapes[L["inputs"][0]]), len(L["inputs"]))
        bad += [(L["name"], k, v, L["attrs"].get(k, "<absent>")) for k, v in want.items()
                if norm(L["attrs"].get(k, "<absent>")) != norm(v)]
    assert not bad, bad


@pytest.mark.theano
@pytest.mark.slow
def test_master_classes_match_theano_ops(results, record_proof):
    r = results["master"]
    g = r["graph"]
    classes = {L["name"]: L["class"] for L in g.meta["lasagne_description"]["layers"]}
    for cls in ("Conv2DDNNLayer", "Conv2DMMLayer", "Conv2DCCLayer", "MaxPool2DDNNLayer",
                "Pool2DDNNLayer", "MaxPool2DCCLayer", "ScaleLayer", "BiasLayer",
                "ParametricRectifierLayer", "RandomizedRectifierLayer", "StandardizationLayer",
                "GaussianNoiseLayer", "DropoutLayer", "ConcatLayer", "ElemwiseSumLayer",
                "ElemwiseMergeLayer", "DenseLayer", "NINLayer", "BatchNormLayer", "BatchNormDNNLayer",
                "LocallyConnected2DLayer", "SpatialPyramidPoolingLayer",
                "SpatialPyramidPoolingDNNLayer", "Upscale1DLayer"):
        assert cls in classes.values(), cls
    assert {g.node(n).op for n in ("cat_crop", "sum_crop", "mul_crop", "cat_w")} == {"CropMerge"}
    assert g.node("rrelu").attrs == {"kind": "relu", "negative_slope": 0.35}
    worst_ref = worst_keras = 0.0
    checked = 0
    for n in g.nodes:
        if n.op == "Input":
            continue
        assert n.name in r["iso"] and n.name in r["chain"], f"Theano gave no output for {n.name}"
        e = _rel(r["ref"][n.name], r["iso"][n.name])
        assert e <= TOL, f"numpy ref vs Theano, layer {n.name} ({classes[n.name]}): {e:.2e}"
        worst_ref = max(worst_ref, e)
        assert n.name in r["keras"], f"no Keras output for {n.name}"
        e = _rel(r["keras"][n.name], r["chain"][n.name])
        assert e <= TOL, f"Keras vs Theano, layer {n.name} ({classes[n.name]}): {e:.2e}"
        worst_keras = max(worst_keras, e)
        checked += 1
    assert checked == len(g.nodes) - 1
    record_proof(g, proofs.THEANO_OPS, [n.name for n in g.nodes if n.op != "Input"])
    print(f"\nLasagne master classes vs Theano ops: {checked} layers, numpy ref worst "
          f"{worst_ref:.1e}, Keras worst {worst_keras:.1e} (relative)")


@pytest.mark.theano
@pytest.mark.slow
def test_converted_catalogue_model_is_plain_keras(results):
    """The catalogue layers use built-in layers / keras.ops only: nothing needs Migrator."""
    from migrator.core.keras_build.plain import migrator_only_layers

    for tag in ("real", "master"):
        assert migrator_only_layers(results[tag]["plan"]) == []


REFUSED_SCRIPT = '''
import theano.tensor as T
from lasagne.layers import (InputLayer, DenseLayer, ExpressionLayer, InverseLayer,
                            TransformerLayer, TPSTransformerLayer, LocallyConnected2DLayer,
                            SpatialPyramidPoolingLayer, ConcatLayer, FlattenLayer, ReshapeLayer)
from lasagne.layers.dnn import SpatialPyramidPoolingDNNLayer


def build_model():
    l_in = InputLayer((None, 3, 8, 8), name='in')
    expr = ExpressionLayer(l_in, lambda x: x * 2, name='expr')
    loc = DenseLayer(l_in, 6, name='loc')
    st = TransformerLayer(l_in, loc, name='st')
    tps = TPSTransformerLayer(l_in, DenseLayer(l_in, 32, name='loc2'), control_points=16,
                              name='tps')
    lc = LocallyConnected2DLayer(l_in, 4, 3, name='lc')
    spp = SpatialPyramidPoolingLayer(l_in, [5, 1], name='spp')   # pool_2d: 7 bins, not 5
    sppd = SpatialPyramidPoolingDNNLayer(l_in, [2, 1], name='sppd')
    dense = DenseLayer(l_in, 12, name='dense')
    inv = InverseLayer(dense, dense, name='inv')
    return ConcatLayer([FlattenLayer(x) for x in (expr, st, tps, lc, spp, sppd, inv)],
                       name='out')
'''


def test_refused_classes_are_named_with_their_reason(tmp_path):
    from migrator.core.errors import UnsupportedLayerError
    from migrator.core.importers.lasagne import REFUSED_CLASSES, load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan

    b, p, _ = M.write_model(tmp_path, REFUSED_SCRIPT, "pkl_list", seed=1)
    g = load_lasagne(b, p)
    plan = make_plan(g)
    by = {m.source: m for m in plan.mappings}
    want = {"expr": "ExpressionLayer", "st": "TransformerLayer", "tps": "TPSTransformerLayer",
            "inv": "InverseLayer"}
    assert set(want.values()) == set(REFUSED_CLASSES)
    for name, cls in want.items():
        m = by[name]
        assert not m.supported and m.source_type == cls
        assert m.error.startswith(f"refused: {REFUSED_CLASSES[cls]}"), m.error
        assert "\n" not in m.error
    assert by["expr"].error.startswith("refused: ExpressionLayer runs an arbitrary Python/Theano "
                                "function (user code) that the builder description cannot capture")
    # a convertible class refused for one setting: the reason names it
    assert g.node("sppd").op == "LasagneSPP" and by["sppd"].supported
    assert g.node("lc").op == "LocallyConnected" and by["lc"].supported
    assert not by["spp"].supported and by["spp"].source_type == "SpatialPyramidPoolingLayer"
    assert by["spp"].error.startswith("unsupported layer type") or "5" in by["spp"].error
    assert any("'spp' (SpatialPyramidPoolingLayer): the pool_2d implementation of pyramid level 5 "
               "on 8 pixels (window 2, stride 1) gives 7 bins, not 5" in w for w in g.warnings)
    with pytest.raises(UnsupportedLayerError) as ei:
        build_keras(plan)
    msg = str(ei.value)
    assert "'st'" in msg and "spatial transformer" in msg
    assert any("'inv' (InverseLayer): refused: InverseLayer is the gradient" in w
               for w in g.warnings), g.warnings
