"""Custom Keras layers and their plain expressions (keras_build/constructs/): formula vs
independent numpy (every formula test runs on both implementations), get_config round trip,
and save -> load in a fresh process -> identical outputs (the plain model with Migrator
un-importable and ``safe_mode=True``)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from migrator.core.keras_build import custom_layers as CL
from migrator.core.keras_build import plain as PL
from migrator.core.mapping.plan import KerasLayerSpec
from tests.core import naive_ops as R

RNG = np.random.default_rng(1234)
_IMPL = {"impl": "custom"}


@pytest.fixture(params=["custom", "plain"], autouse=True)
def impl(request):
    """Run each formula test on the custom class and on its plain expression."""
    _IMPL["impl"] = request.param
    yield request.param
    _IMPL["impl"] = "custom"


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


_BASE_KEYS = {"name", "trainable", "dtype"}


def as_plain(layer, input_shapes):
    """The plain expression of a custom layer instance (same config and weights), as a
    nested functional model over inputs of ``input_shapes`` (without the batch axis)."""
    cfg = {k: v for k, v in layer.get_config().items() if k not in _BASE_KEYS}
    weights = layer.get_weights() if layer.built and layer.weights else None
    spec = KerasLayerSpec(name=layer.name, class_name=type(layer).__name__, config=cfg,
                          inputs=[f"i{i}" for i in range(len(input_shapes))], output="o",
                          weights=weights)
    sub = PL.build_plain_layer(spec, [keras.Input(tuple(s)) for s in input_shapes])
    ops_free = all(isinstance(op, keras.layers.Layer) for op in sub.operations)
    assert ops_free or PL.ops_layers(keras.Model(sub.inputs, sub.outputs)) is not None
    return sub


def _run(layer, x):
    if _IMPL["impl"] == "custom":
        return np.asarray(layer(x))
    xs = x if isinstance(x, list) else [x]
    if not layer.built:
        layer(xs if isinstance(x, list) else x)    # builds it, as Keras would (no-op weights)
    sub = as_plain(layer, [a.shape[1:] for a in xs])
    return np.asarray(sub(xs if isinstance(x, list) else x))


# ---- formulas ---------------------------------------------------------------------------
def test_channel_affine_formula():
    x = _x(2, 5, 4, 3)
    lay = CL.ChannelAffine()
    lay.build(x.shape)
    s, b = _x(3), _x(3)
    lay.set_weights([s, b])
    np.testing.assert_allclose(_run(lay, x), x * s + b, rtol=1e-6, atol=1e-6)
    only_b = CL.ChannelAffine(use_scale=False)
    only_b.build(x.shape)
    only_b.set_weights([b])
    np.testing.assert_allclose(_run(only_b, x), x + b, rtol=1e-6, atol=1e-6)
    only_s = CL.ChannelAffine(use_bias=False)
    only_s.build(x.shape)
    only_s.set_weights([s])
    np.testing.assert_allclose(_run(only_s, x), x * s, rtol=1e-6, atol=1e-6)
    # several axes (e.g. an untied bias per (H, W, C))
    multi = CL.ChannelAffine(axis=[1, 2, 3], use_scale=False)
    multi.build(x.shape)
    bb = _x(5, 4, 3)
    multi.set_weights([bb])
    np.testing.assert_allclose(_run(multi, x), x + bb, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        CL.ChannelAffine(use_scale=False, use_bias=False)


def test_constant_padding():
    x = _x(2, 3, 4, 2)
    out = _run(CL.ConstantPadding2D(((1, 2), (0, 3)), value=-np.inf), x)
    ref = np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0)), constant_values=-np.inf)
    np.testing.assert_array_equal(out, ref)
    out = _run(CL.ConstantPadding2D(2, value=1.5), x)
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=1.5))


@pytest.mark.parametrize("size", [1, 3, 5, 4])
def test_lrn_across(size):
    x = _x(2, 7, 6, 9)
    lay = CL.LRN("across", size=size, coeff=0.3, beta=0.75, k=2.0)
    ref = R.lrn_across(R.nchw(x), size, 0.3, 0.75, 2.0)
    np.testing.assert_allclose(_run(lay, x), R.nhwc(ref), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_within(size):
    x = _x(2, 7, 6, 4)
    lay = CL.LRN("within", size=size, coeff=0.2, beta=0.6, k=1.0)
    ref = R.lrn_within(R.nchw(x), size, 0.2, 0.6, 1.0)
    np.testing.assert_allclose(_run(lay, x), R.nhwc(ref), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("H,W,k,s,p", [(17, 19, 3, 2, 1), (7, 8, 3, 2, 0), (6, 6, 2, 2, 1),
                                       (10, 5, 4, 3, 2), (5, 5, 5, 1, 0)])
def test_exact_average_pooling_caffe(H, W, k, s, p):
    x = _x(2, H, W, 3)
    ref = R.caffe_pool(R.nchw(x), "ave", (k, k), (s, s), (p, p), "ceil")
    oh, ow = ref.shape[2:]
    eh = max(0, (oh - 1) * s + k - (H + 2 * p))
    ew = max(0, (ow - 1) * s + k - (W + 2 * p))
    lay = CL.ExactAveragePooling2D((k, k), (s, s), padding=((p, p + eh), (p, p + ew)),
                                   counted_padding=((p, p), (p, p)))
    np.testing.assert_allclose(_run(lay, x), R.nhwc(ref), rtol=1e-5, atol=1e-6)
    # unknown spatial size: the divisor is computed at call time
    inp = keras.Input((None, None, 3))
    lay = CL.ExactAveragePooling2D((k, k), (s, s), padding=((p, p + eh), (p, p + ew)),
                                   counted_padding=((p, p), (p, p)))
    m = keras.Model(inp, lay(inp) if _IMPL["impl"] == "custom" else as_plain(lay, [(None, None, 3)])(inp))
    np.testing.assert_allclose(np.asarray(m(x)), R.nhwc(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["average_exc_pad", "average_inc_pad"])
@pytest.mark.parametrize("ignore_border,p", [(True, 1), (True, 2), (False, 0)])
def test_exact_average_pooling_theano(mode, ignore_border, p):
    H, W, k, s = 9, 11, 3, 2
    x = _x(1, H, W, 2)
    ref = R.theano_pool(R.nchw(x), mode, (k, k), (s, s), (p, p), ignore_border)
    oh, ow = ref.shape[2:]
    eh = max(0, (oh - 1) * s + k - (H + 2 * p))
    ew = max(0, (ow - 1) * s + k - (W + 2 * p))
    counted = ((p, p), (p, p)) if mode == "average_inc_pad" else ((0, 0), (0, 0))
    lay = CL.ExactAveragePooling2D((k, k), (s, s), padding=((p, p + eh), (p, p + ew)),
                                   counted_padding=counted)
    np.testing.assert_allclose(_run(lay, x), R.nhwc(ref), rtol=1e-5, atol=1e-6)


def test_unary_ops():
    x = _x(2, 3, 4, 5)
    np.testing.assert_array_equal(_run(CL.UnaryOp("abs"), x), np.abs(x))
    np.testing.assert_allclose(_run(CL.UnaryOp("scaled_tanh", scale_in=0.5, scale_out=1.7), x),
                               1.7 * np.tanh(0.5 * x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    xp = np.abs(x) + 0.1
    for p, sc, sh in [(2.0, 1.5, 0.25), (0.5, 2.0, 1.0), (1.0, -3.0, 2.0), (3.0, 1.0, 0.0), (-1.0, 1.0, 1.0)]:
        np.testing.assert_allclose(_run(CL.UnaryOp("power", power=p, scale=sc, shift=sh), xp),
                                   (sh + sc * xp.astype(np.float64)) ** p, rtol=2e-5, atol=1e-6)
    with pytest.raises(ValueError):
        CL.UnaryOp("nope")


def test_weighted_sum_and_slice():
    a, b, c = _x(2, 3, 4, 5), _x(2, 3, 4, 5), _x(2, 3, 4, 5)
    np.testing.assert_allclose(_run(CL.WeightedSum([0.5, -2.0, 1.0]), [a, b, c]),
                               0.5 * a - 2.0 * b + c, rtol=1e-6, atol=1e-6)
    for ax, st, sp, stp in [(-1, 1, 4, None), (1, None, None, 2), (2, -3, None, None), (3, 4, 0, -1)]:
        idx = [slice(None)] * 4
        idx[ax] = slice(st, sp, stp)
        out = _run(CL.SliceAxis(ax, st, sp, stp), a)
        np.testing.assert_array_equal(out, a[tuple(idx)])
        assert CL.SliceAxis(ax, st, sp, stp).compute_output_shape(a.shape) == a[tuple(idx)].shape


# ---- config round trip and save/load in a fresh process ------------------------------------
INSTANCES = [
    CL.ChannelAffine(axis=-1, use_bias=True),
    CL.ConstantPadding2D(((1, 2), (3, 0)), value=float("-inf")),
    CL.LRN("within", 3, 0.01, 0.75, 1.0),
    CL.ExactAveragePooling2D((3, 3), (2, 2), ((1, 2), (1, 1)), ((1, 1), (1, 1))),
    CL.UnaryOp("power", power=2.0, scale=0.5, shift=1.0),
    CL.WeightedSum([1.0, -0.5]),
    CL.SliceAxis(-1, 1, None, 2),
]


@pytest.mark.parametrize("layer", INSTANCES, ids=lambda layer: type(layer).__name__)
def test_get_config_round_trip(layer):
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
    # also through Keras' generic (de)serialisation, by registered name
    ser = keras.saving.serialize_keras_object(layer)
    assert ser["registered_name"] == f"migrator>{type(layer).__name__}"
    again = keras.saving.deserialize_keras_object(ser)
    assert type(again) is type(layer) and again.get_config() == cfg


def _model_with_all_layers(plain: bool = False):
    """A model using every custom class; ``plain=True``: the same model with each custom
    layer replaced by its plain expression (same config, same weights)."""
    inp = keras.Input((9, 10, 4), name="x")

    def mk(layer, t):
        if not plain:
            return layer(t)
        ts = t if isinstance(t, list) else [t]
        return as_plain(layer, [tuple(a.shape[1:]) for a in ts])(t)

    aff = CL.ChannelAffine(name="aff")
    aff.build((None, 9, 10, 4))
    aff.set_weights([np.random.default_rng(7).standard_normal(4).astype("f"),
                     np.random.default_rng(8).standard_normal(4).astype("f")])
    a = mk(aff, inp)
    p = mk(CL.ConstantPadding2D(((1, 0), (0, 1)), value=float("-inf"), name="pad"), a)
    p = keras.layers.MaxPooling2D(2, name="mp")(p)
    lrn = mk(CL.LRN("across", 3, 0.1, 0.75, 2.0, name="lrn"), inp)
    lrn2 = mk(CL.LRN("within", 3, 0.1, 0.75, 1.0, name="lrn2"), lrn)
    av = mk(CL.ExactAveragePooling2D((3, 3), (2, 2), ((1, 1), (1, 1)), ((1, 1), (0, 1)), name="avg"), lrn2)
    u = mk(CL.UnaryOp("scaled_tanh", scale_in=0.7, scale_out=1.5, name="st"), av)
    w = mk(CL.WeightedSum([2.0, -1.0], name="ws"), [u, p])
    s = mk(CL.SliceAxis(-1, 0, 3, None, name="sl"), w)
    po = mk(CL.UnaryOp("power", power=2.0, scale=0.5, shift=1.0, name="pw"), s)
    ab = mk(CL.UnaryOp("abs", name="abs"), po)
    return keras.Model(inp, [ab, w])


def test_save_load_fresh_process(tmp_path, impl):
    """custom: loads after ``import migrator``; plain: loads with Migrator un-importable and
    ``safe_mode=True`` and computes what the custom layers compute."""
    plain = impl == "plain"
    m = _model_with_all_layers(plain=plain)
    x = _x(2, 9, 10, 4)
    ref = [np.asarray(t) for t in m(x)]
    if plain:
        want_custom = [np.asarray(t) for t in _model_with_all_layers(plain=False)(x)]
        for a, b in zip(ref, want_custom):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    path = tmp_path / "m.keras"
    m.save(path)
    np.save(tmp_path / "x.npy", x)
    setup = ("sys.modules['migrator'] = None" if plain
             else "import migrator.core.keras_build  # registers the custom layers")
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        {setup}
        import numpy as np, keras
        m = keras.saving.load_model({str(path)!r}, safe_mode=True)
        outs = m(np.load({str(tmp_path / 'x.npy')!r}))
        np.savez({str(tmp_path / 'out.npz')!r}, *[np.asarray(o) for o in outs])
        print(sorted(type(l).__name__ for l in m.layers))
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("ChannelAffine", "LRN", "ExactAveragePooling2D", "UnaryOp", "WeightedSum", "SliceAxis",
                 "ConstantPadding2D"):
        assert (name in r.stdout) != plain
    if plain:
        assert "Functional" in r.stdout and "MaxPooling2D" in r.stdout
    got = np.load(tmp_path / "out.npz")
    for i, want in enumerate(ref):
        np.testing.assert_array_equal(got[f"arr_{i}"], want)
