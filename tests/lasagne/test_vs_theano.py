"""Imported Lasagne networks vs real Theano, layer by layer.

Three networks (every conv pad mode and flip_filters both ways, pooling modes with odd sizes
and ignore_border=False, a dense layer right after a convolution, BN over a dense output,
BN with beta=None / gamma=None and channels whose ``1/inv_std^2 - eps`` is negative, a
ResNet made with ``batch_norm()``, the preliminary gist BN, and the shape/merge/affine layers:
Scale, Bias, PReLU, Concat, Slice, Pad, Dimshuffle, Reshape, Flatten, elementwise max) are written as builder scripts +
parameter files (one flavour each), imported, and run by

* Migrator's numpy reference (``numpy_ref``), compared with Theano on the *same* layer
  inputs (isolated, per op), and
* the converted Keras model (planner + builder), compared with Theano running the whole
  network (chained),

where the Theano side is built from the Lasagne-level description (class + constructor
settings, raw parameter arrays) with the ops Lasagne 0.2 uses (``T.nnet.conv2d`` with
``filter_flip``/border modes, ``pool_2d``, the BN/LRN formulas) -- one Theano process for
the module.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests import proofs

from . import convert_script

pytestmark = [pytest.mark.theano, pytest.mark.slow]


def _fill_coverage(layer, pname, shape, rng):
    # BN channels whose 1/inv_std^2 - eps is negative (inv_std = 300 -> 1/inv_std^2 = 1.1e-5
    # < epsilon 1e-4), and a few ordinary ones
    if pname == "inv_std" and layer in ("bn_nogamma", "dense2_bn"):
        v = rng.uniform(0.5, 2.0, shape)
        v.flat[0] = 300.0
        v.flat[-1] = 150.0
        return v
    return None


def _fill_gist(layer, pname, shape, rng):
    if pname == "std":
        v = rng.uniform(0.2, 1.5, shape)
        v.flat[0] = 0.001     # (std + eps)^2 - eps_k tiny: the variance conversion matters
        return v
    return None


CASES = {
    # tag: (script, parameter-file flavour, fill)
    "coverage": (M.COVERAGE_SCRIPT, "npz", _fill_coverage),
    "resnet": (M.RESNET_SCRIPT, "pkl_values", None),
    "gist": (M.GIST_SCRIPT, "pkl_py2", _fill_gist),
    "misc": (M.MISC_SCRIPT, "pkl_param_values", None),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from tests.envs import theano_env as TE
    from tests.envs.theano_env import ensure_theano_env, run_theano

    py = ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    req, out = {}, {}
    for tag, (script, flavour, fill) in CASES.items():
        r = convert_script(tmp_path_factory.mktemp(tag), script, flavour, seed=3, x_seed=7, fill=fill)
        g, x, ref = r["graph"], r["x"], r["ref"]
        out[tag] = {"graph": g, "ref": ref, "keras": r["keras"]}
        req.update(M.theano_request(g, {g.input_nodes[0].name: x}, ref, tag=tag))
    th = run_theano(py, M.THEANO_LAYERS_SCRIPT, req)
    for tag in CASES:
        pre = f"{tag}::"
        out[tag]["iso"] = {k[len(pre) + 5:]: v for k, v in th.items() if k.startswith(pre + "iso__")}
        out[tag]["chain"] = {k[len(pre) + 7:]: v for k, v in th.items()
                             if k.startswith(pre + "chain__")}
    return out


def _err(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@pytest.mark.parametrize("tag", list(CASES))
def test_numpy_reference_matches_theano_per_layer(results, tag, record_proof):
    r = results[tag]
    g = r["graph"]
    rows = []
    for n in g.nodes:
        if n.op in ("Input",):
            continue
        assert n.name in r["iso"], f"Theano gave no output for {n.name}"
        e = _err(r["ref"][n.name], r["iso"][n.name])
        scale = max(1e-2, float(np.abs(r["iso"][n.name]).max()))   # relative (floor for near-zero outputs)
        rows.append((n.name, n.op, e))
        assert e <= 2e-5 * scale, f"{tag}: layer {n.name} ({n.op}): numpy ref vs Theano max err {e}"
    record_proof(g, proofs.THEANO_OPS, [nm for nm, _, _ in rows])
    print(f"\n[{tag}] numpy ref vs Theano (isolated): " +
          ", ".join(f"{nm}={e:.1e}" for nm, _, e in rows))


@pytest.mark.parametrize("tag", list(CASES))
def test_keras_matches_theano_whole_network(results, tag, record_proof):
    r = results[tag]
    g = r["graph"]
    worst, worst_rel, worst_at = 0.0, 0.0, None
    checked = []
    for n in g.nodes:
        if n.op == "Input" or n.name not in r["keras"]:
            continue
        th = r["chain"][n.name]
        e = _err(r["keras"][n.name], th)
        scale = max(1e-2, float(np.abs(th).max()))       # relative (floor for near-zero outputs)
        assert e <= 1e-4 * scale, f"{tag}: layer {n.name} ({n.op}): Keras vs Theano max err {e}"
        worst = max(worst, e)
        if e / scale >= worst_rel:
            worst_rel, worst_at = e / scale, n.name
        checked.append(n.name)
    out_name = g.meta["output_layer"]
    assert out_name in r["keras"], "the network output has no Keras counterpart"
    assert len(checked) >= len([n for n in g.nodes if n.op != "Input"]) // 2
    record_proof(g, proofs.THEANO_OPS, checked)
    print(f"\n[{tag}] Keras vs Theano (chained): {len(checked)} layers, worst abs {worst:.2e}, "
          f"worst relative to the layer's max |value| {worst_rel:.1e} at {worst_at}")


def test_cases_cover_what_they_claim(results):
    """Guard the fixtures: the networks really contain the cases named in the docstring."""
    g = results["coverage"]["graph"]
    convs = [n for n in g.nodes if n.op == "Conv" and n.attrs["kernel"] != (1, 1)]
    assert {n.attrs["flip"] for n in convs} == {True, False}
    desc = {L["name"]: L for L in g.meta["lasagne_description"]["layers"]}
    assert {str(desc[n.name]["attrs"]["pad"]) for n in convs} >= {"same", "full", "[0, 0]", "[1, 2]"}
    pools = [n for n in g.nodes if n.op == "Pool"]
    assert {(n.attrs["mode"], n.attrs["rounding"], n.attrs["avg_divisor"]) for n in pools} == {
        ("max", "lasagne_ceil", None), ("avg", "floor", "inc_pad"), ("avg", "floor", "exc_pad"),
        ("max", "floor", None)}
    bn = g.node("bn_nogamma")
    inv = bn.p("inv_std")
    assert (1.0 / inv.astype(np.float64) ** 2 - bn.attrs["epsilon"]).min() < 0
    assert "gamma" not in bn.params and "beta" not in g.node("bn_nobeta").params
    assert g.node("dense2_bn").attrs["axes"] == (0,)
    assert g.producer(g.node("dense_on_conv").inputs[0]).op == "Conv"
    gg = results["gist"]["graph"]
    assert any(n.op == "BatchNorm" and n.attrs["form"] == "gist" for n in gg.nodes)
