"""Lasagne TransposedConv2DLayer (Deconv2DLayer), DilatedConv2DLayer and Upscale2DLayer.

The network below is imported, run by Migrator's numpy reference (each layer on the same
inputs as Theano: isolated) and converted to Keras (the whole network: chained); both are
compared with real Theano 1.0.5 running the ops Lasagne 0.2 uses for these layers
(``AbstractConv2d_gradInputs`` with ``filter_flip = not flip_filters``,
``AbstractConv2d_gradWeights`` with the dilation as subsampling, ``T.extra_ops.repeat`` /
``set_subtensor``), see ``THEANO_LAYERS_SCRIPT``.  Tolerance: max |err| <= 1e-5 + 1e-4 * max|ref|.

Without the Theano environment the import/mapping tests below still run, the Upscale kernel
is checked against closed-form numpy (np.kron), and the whole chain -- both the converted Keras
model and Migrator's numpy reference -- is checked against naive loops written from Lasagne's
definitions of these layers (``tests/core/naive_ops.py``: transposed convolution as a scatter,
dilated cross-correlation, repeat/dilate upscaling), which share no code with Migrator.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests import proofs
from tests.core import naive_ops as N

from . import convert_script

SCRIPT = M.HEADER + '''
from lasagne.layers import TransposedConv2DLayer, Deconv2DLayer, DilatedConv2DLayer, Upscale2DLayer


def build_model():
    l = InputLayer((None, 3, 7, 6), name='x')
    t1 = TransposedConv2DLayer(l, 4, (3, 4), stride=2, name='tc_s2_default')
    t2 = TransposedConv2DLayer(t1, 5, 3, crop='full', flip_filters=True, nonlinearity=None,
                               name='tc_full_flip')
    t3 = Deconv2DLayer(t2, 4, (3, 5), crop='same', nonlinearity=tanh, name='dc_same')
    t4 = TransposedConv2DLayer(t3, 3, (4, 5), stride=(2, 3), crop=(1, 2), b=None,
                               nonlinearity=LeakyRectify(0.2), name='tc_crop12')
    d1 = DilatedConv2DLayer(t4, 6, (3, 2), dilation=(2, 3), name='dil_23')
    d2 = DilatedConv2DLayer(d1, 4, 3, dilation=1, nonlinearity=None, name='dil_1')
    u1 = Upscale2DLayer(d2, (2, 3), name='up_repeat')
    u2 = Upscale2DLayer(u1, 2, mode='dilate', name='up_dilate')
    return DilatedConv2DLayer(u2, 2, (2, 2), dilation=(3, 2), nonlinearity=sigmoid, name='out')
'''

UNSUPPORTED = {   # layer name -> (constructor call, word the reason must contain)
    "tc_outsize": ("TransposedConv2DLayer(l, 3, 3, stride=2, output_size=12, name='tc_outsize')",
                   "output_size"),
    "tc_untied": ("TransposedConv2DLayer(l, 3, 3, untie_biases=True, name='tc_untied')",
                  "untie_biases"),
    "dil_pad": ("DilatedConv2DLayer(l, 3, 3, dilation=2, pad=1, name='dil_pad')", "pad"),
}


def _err(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _tol(ref) -> float:
    return 1e-5 + 1e-4 * float(np.abs(ref).max())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    r = convert_script(tmp_path_factory.mktemp("extra"), SCRIPT, "npz", seed=5, x_seed=11)
    return {k: r[k] for k in ("graph", "plan", "x", "ref", "keras", "values")}


def naive_chain(x, values) -> dict[str, np.ndarray]:
    """SCRIPT's network evaluated from Lasagne's layer definitions (float64), given the parameter
    values in get_all_params order (W, b per layer; tc_crop12 has b=None)."""
    v = iter(values)
    out = {}
    y = N.lasagne_transposed_conv(x, next(v), next(v), stride=2, crop=0, flip_filters=False)
    y = out["tc_s2_default"] = N.lasagne_nonlin(y, "rectify")
    y = out["tc_full_flip"] = N.lasagne_transposed_conv(y, next(v), next(v), crop="full", flip_filters=True)
    y = N.lasagne_transposed_conv(y, next(v), next(v), crop="same", flip_filters=False)
    y = out["dc_same"] = N.lasagne_nonlin(y, "tanh")
    y = N.lasagne_transposed_conv(y, next(v), None, stride=(2, 3), crop=(1, 2), flip_filters=False)
    y = out["tc_crop12"] = N.lasagne_nonlin(y, ("leaky", 0.2))
    y = out["dil_23"] = N.lasagne_nonlin(N.lasagne_dilated_conv(y, next(v), next(v), dilation=(2, 3)),
                                         "rectify")
    y = out["dil_1"] = N.lasagne_dilated_conv(y, next(v), next(v), dilation=1)
    y = out["up_repeat"] = N.lasagne_upscale(y, (2, 3), "repeat")
    y = out["up_dilate"] = N.lasagne_upscale(y, 2, "dilate")
    out["out"] = N.lasagne_nonlin(N.lasagne_dilated_conv(y, next(v), next(v), dilation=(3, 2)), "sigmoid")
    assert next(v, None) is None, "parameter values left over"
    return out


@pytest.fixture(scope="module")
def naive(converted):
    return naive_chain(converted["x"], converted["values"])


@pytest.fixture(scope="module")
def theano_out(converted):
    from tests.envs import theano_env as TE

    py = TE.ensure_theano_env()
    if not py:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    g = converted["graph"]
    req = M.theano_request(g, {g.input_nodes[0].name: converted["x"]}, converted["ref"], tag="extra")
    th = TE.run_theano(py, M.THEANO_LAYERS_SCRIPT, req)
    pre = "extra::"
    return {"iso": {k[len(pre) + 5:]: v for k, v in th.items() if k.startswith(pre + "iso__")},
            "chain": {k[len(pre) + 7:]: v for k, v in th.items() if k.startswith(pre + "chain__")}}


def test_layers_import_as_canonical_ops(converted):
    g = converted["graph"]
    ops = {n.name: n.op for n in g.nodes}
    assert ops == {"x": "Input", "tc_s2_default": "Deconv", "tc_full_flip": "Deconv",
                   "dc_same": "Deconv", "tc_crop12": "Deconv", "dil_23": "Conv", "dil_1": "Conv",
                   "up_repeat": "Upscale", "up_dilate": "Upscale", "out": "Conv"}
    t1 = g.node("tc_s2_default")
    assert t1.attrs["flip"] is True            # flip_filters=False (default) -> filter_flip=True
    assert g.node("tc_full_flip").attrs["flip"] is False
    assert t1.attrs["activation"] == {"kind": "relu", "negative_slope": 0.0}
    assert g.node("tc_full_flip").attrs["pad"] == (2, 2)
    assert g.node("dc_same").attrs["pad"] == (1, 2)
    assert g.node("tc_crop12").attrs["pad"] == (1, 2) and "bias" not in g.node("tc_crop12").params
    assert t1.params["weight"].layout == "IOHW" and t1.p("weight").shape == (3, 4, 3, 4)
    dil = g.node("dil_23")
    assert dil.attrs["dilation"] == (2, 3) and dil.attrs["flip"] is False
    assert dil.p("weight").shape == (6, 3, 3, 2)        # stored (3, 6, 3, 2), transposed to OIHW
    assert "transpose(1, 0, 2, 3)" in dil.params["weight"].source_name
    assert g.node("up_repeat").attrs == {"scale": (2, 3), "mode": "repeat"}
    assert g.node("up_dilate").attrs == {"scale": (2, 2), "mode": "dilate"}
    # Migrator's shape inference agrees with the recorder (Lasagne's formulas): no warnings
    assert not [w for w in g.warnings if "infers the output shape" in w], g.warnings
    assert all(m.supported for m in converted["plan"].mappings), \
        [(m.source, m.error) for m in converted["plan"].mappings if not m.supported]


def test_upscale_kernel_closed_form(converted):
    r = converted["ref"]
    xin = r["dil_1"]
    up = np.kron(xin, np.ones((1, 1, 2, 3), dtype=np.float32))
    np.testing.assert_array_equal(r["up_repeat"], up)
    dil = np.kron(up, np.array([[1, 0], [0, 0]], dtype=np.float32)[None, None])
    np.testing.assert_array_equal(r["up_dilate"], dil)


def test_keras_and_reference_match_naive_lasagne(converted, naive):
    """Both Migrator outputs, every layer of the chain, vs the naive Lasagne definitions."""
    assert set(naive) == {n.name for n in converted["graph"].nodes if n.op != "Input"}
    rows = []
    for name, want in naive.items():
        for side in ("keras", "ref"):
            got = converted[side][name]
            e = _err(got, want)
            assert e <= _tol(want), f"layer {name}: {side} vs naive Lasagne max err {e:.3g} > {_tol(want):.3g}"
        rows.append(f"{name}={_err(converted['keras'][name], want):.1e}")
    print("\nKeras vs naive Lasagne (chained): " + ", ".join(rows))


def test_naive_transposed_conv_is_the_adjoint_of_the_naive_conv():
    """The scatter definition is the transpose of the (flipped) strided convolution:
    <deconv(x), z> == <x, conv(z)> for random x, z (checks naive_ops itself)."""
    rng = np.random.default_rng(4)
    W = rng.normal(size=(3, 2, 3, 4))
    x = rng.normal(size=(1, 3, 4, 5))
    for flip in (False, True):
        y = N.lasagne_transposed_conv(x, W, stride=(2, 3), crop=(1, 1), flip_filters=flip)
        z = rng.normal(size=y.shape)
        conv = N.conv2d(z, W, stride=(2, 3), pad=(1, 1), true_conv=not flip)
        assert conv.shape == x.shape
        assert abs(float((y * z).sum()) - float((x * conv).sum())) < 1e-9


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_variants_are_custom(tmp_path, name):
    from migrator.core.importers.lasagne import load_lasagne

    call, why = UNSUPPORTED[name]
    script = (M.HEADER + "from lasagne.layers import TransposedConv2DLayer, DilatedConv2DLayer\n"
              "def build_model():\n    l = InputLayer((None, 2, 5, 5), name='x')\n"
              f"    return {call}\n")
    b, p, _ = M.write_model(tmp_path, script, "npz", seed=1)
    n = load_lasagne(b, p).node(name)
    assert n.op == "Custom" and why in n.attrs["reason"], n.attrs.get("reason")


def _per_layer(g, ours, theirs, present, missing, what, record_proof) -> list[str]:
    """Check every non-input layer of ``g``: named in ``present`` (else ``missing`` with its
    name), ``ours`` within :func:`_tol` of ``theirs``; record the proof; the ``name=err`` rows."""
    rows = []
    for n in g.nodes:
        if n.op == "Input":
            continue
        assert n.name in present, missing.format(n.name)
        e = _err(ours[n.name], theirs[n.name])
        rows.append(f"{n.name}={e:.1e}")
        assert e <= _tol(theirs[n.name]), f"layer {n.name} ({n.op}): {what} max err {e}"
    record_proof(g, proofs.THEANO_OPS, [n.name for n in g.nodes if n.op != "Input"])
    return rows


@pytest.mark.theano
def test_numpy_reference_matches_theano_per_layer(converted, theano_out, record_proof):
    g, ref, iso = converted["graph"], converted["ref"], theano_out["iso"]
    rows = _per_layer(g, ref, iso, iso, "Theano gave no output for {}", "numpy ref vs Theano", record_proof)
    print("\nnumpy ref vs Theano (isolated): " + ", ".join(rows))


@pytest.mark.theano
def test_keras_matches_theano_per_layer(converted, theano_out, record_proof):
    g, ker, chain = converted["graph"], converted["keras"], theano_out["chain"]
    rows = _per_layer(g, ker, chain, ker, "no Keras output for {}", "Keras vs Theano", record_proof)
    print("\nKeras vs Theano (chained): " + ", ".join(rows))
