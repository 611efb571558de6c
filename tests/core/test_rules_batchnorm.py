"""Batch-norm family rules, end to end: hand-built IR -> plan -> Keras model -> outputs
compared with the source formulas written out here in numpy (float64)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from migrator.core.ir import Graph, Node, Param, Provenance
from migrator.core.keras_build.builder import build_keras
from migrator.core.mapping.overrides import Overrides
from migrator.core.mapping.planner import make_plan

RNG = np.random.default_rng(1234)


def P(name, value, layout="C"):
    return Param(name, np.asarray(value, dtype=np.float32), layout)


def graph(framework, nodes):
    g = Graph(framework=framework, nodes=nodes, name="t")
    g.validate()
    g.infer_shapes()
    return g


def inp(name, shape):
    return Node(name, "Input", attrs={"shape": tuple(shape)})


def caffe_bn(name, x, C, sf=999.98, eps=1e-5, **attrs):
    mean_sum = RNG.normal(size=C) * sf
    var_sum = RNG.uniform(0.2, 3.0, size=C) * sf
    a = {"form": "caffe", "axis": 1, "eps": eps, "moving_average_fraction": 0.999,
         "use_global_stats": None}
    a.update(attrs)
    return Node(name, "BatchNorm", [x], attrs=a,
                params={"mean": P("mean", mean_sum), "variance": P("variance", var_sum),
                        "scale_factor": P("scale_factor", [sf], "SCALAR")})


def caffe_scale(name, x, C, bias=True):
    params = {"scale": P("scale", RNG.normal(size=C))}
    if bias:
        params["bias"] = P("bias", RNG.normal(size=C))
    return Node(name, "Scale", [x], attrs={"axis": 1, "num_axes": 1, "bias": bias,
                                           "two_input": False}, params=params)


def caffe_bias(name, x, C):
    return Node(name, "Bias", [x], attrs={"axis": 1, "num_axes": 1},
                params={"bias": P("bias", RNG.normal(size=C))})


def run_keras(plan, x_nchw):
    model = build_keras(plan)
    xs = x_nchw if isinstance(x_nchw, list) else [x_nchw]
    ks = [x.transpose(0, 2, 3, 1) if x.ndim == 4 else x for x in xs]
    y = model.predict(ks if len(ks) > 1 else ks[0], verbose=0)
    y = np.asarray(y, dtype=np.float64)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def bc(v, rank):
    """A (C,) vector broadcast over NCHW."""
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (rank - 2))


def caffe_ref(x, bn, scale=None, bias=None, eps=None):
    """Caffe: s = 0 if blob2 == 0 else 1/blob2; y = (x - blob0*s)/sqrt(blob1*s + eps);
    Scale y*blob0 (+ blob1); Bias y + blob0."""
    r = x.ndim
    b2 = float(bn.p("scale_factor")[0])
    s = 0.0 if b2 == 0 else 1.0 / b2
    e = bn.attrs["eps"] if eps is None else eps
    y = (x - bc(bn.p("mean").astype(np.float64) * s, r)) / np.sqrt(
        bc(bn.p("variance").astype(np.float64) * s, r) + e)
    if scale is not None:
        y = y * bc(scale.p("scale"), r)
        if scale.attrs["bias"]:
            y = y + bc(scale.p("bias"), r)
    if bias is not None:
        y = y + bc(bias.p("bias"), r)
    return y


def close(a, b, rel=2e-5):
    scale = 1.0 + np.abs(b).max()
    assert np.abs(a - b).max() <= rel * scale, np.abs(a - b).max()


def rows(m):
    return {r.key: r for r in m.rows}


# ----------------------------------------------------------------------------- Caffe
def test_caffe_bn_scale_fused_into_one_layer():
    C = 3
    g = graph("caffe", [inp("data", (2, C, 4, 5)), caffe_bn("bn", "data", C),
                        caffe_scale("sc", "bn", C), Node("relu", "Activation", ["sc"],
                                                         attrs={"kind": "relu"})])
    plan = make_plan(g)
    bn, sc = plan.mapping("bn"), plan.mapping("sc")
    assert len(bn.layers) == 1 and bn.layers[0].class_name == "BatchNormalization"
    assert bn.layers[0].output == "sc"
    assert bn.layers[0].config["epsilon"] == 1e-5 and bn.layers[0].config["axis"] == -1
    assert bn.layers[0].config["center"] and bn.layers[0].config["scale"]
    assert bn.keras_output is None and bn.fused_into == "sc"
    assert sc.keras_output == bn.layers[0].name and not sc.layers
    assert {"gamma", "beta"} <= {r.key for r in sc.rows}
    r = rows(bn)
    assert r["momentum"].value == pytest.approx(0.999)
    assert r["fuse_scale"].value is True and r["fuse_scale"].option == "fuse_scale"
    assert r["epsilon"].option == "epsilon" and r["variance"].value == "exact"
    assert not bn.warnings

    x = RNG.normal(size=(2, C, 4, 5))
    ref = np.maximum(caffe_ref(x, g.node("bn"), g.node("sc")), 0)
    close(run_keras(plan, x), ref)


def test_caffe_fuse_scale_false_gives_bn_plus_channel_affine():
    C = 4
    g = graph("caffe", [inp("data", (1, C, 3, 3)), caffe_bn("bn", "data", C),
                        caffe_scale("sc", "bn", C)])
    ov = Overrides(kinds={"BatchNorm": {"fuse_scale": False}})
    plan = make_plan(g, ov)
    bn, sc = plan.mapping("bn"), plan.mapping("sc")
    cfg = bn.layers[0].config
    assert cfg["center"] is False and cfg["scale"] is False
    assert len(bn.layers[0].weights) == 2
    assert sc.layers[0].class_name == "ChannelAffine" and sc.layers[0].config["use_bias"]
    assert rows(bn)["fuse_scale"].overridden
    x = RNG.normal(size=(2, C, 3, 3))
    close(run_keras(plan, x), caffe_ref(x, g.node("bn"), g.node("sc")))


def test_caffe_bn_scale_bias_chain_fused():
    C = 3
    g = graph("caffe", [inp("data", (1, C, 2, 3)), caffe_bn("bn", "data", C),
                        caffe_scale("sc", "bn", C, bias=False), caffe_bias("b", "sc", C)])
    plan = make_plan(g)
    bn, sc, b = plan.mapping("bn"), plan.mapping("sc"), plan.mapping("b")
    assert len(plan.keras_layers) == 2       # Input + one BatchNormalization
    assert bn.layers[0].output == "b"
    assert b.keras_output == bn.layers[0].name
    assert sc.keras_output is None and bn.keras_output is None
    assert sc.fused_into == "b"
    x = RNG.normal(size=(3, C, 2, 3))
    close(run_keras(plan, x), caffe_ref(x, g.node("bn"), g.node("sc"), g.node("b")))


def test_caffe_bn_alone_and_scale_factor_zero():
    C = 2
    g = graph("caffe", [inp("data", (1, C, 3, 3)), caffe_bn("bn", "data", C, sf=0.0)])
    plan = make_plan(g)
    m = plan.mapping("bn")
    assert m.layers[0].config["center"] is False and m.layers[0].config["scale"] is False
    r = rows(m)
    assert np.all(r["moving_mean"].value == 0) and np.all(r["moving_variance"].value == 0)
    assert any("blob2 = 0" in c for c in r["moving_mean"].caveats)
    x = RNG.normal(size=(2, C, 3, 3))
    close(run_keras(plan, x), x / np.sqrt(1e-5))


def test_caffe_bn_over_dense_output():
    C = 5
    g = graph("caffe", [inp("data", (1, C)), caffe_bn("bn", "data", C),
                        caffe_scale("sc", "bn", C)])
    plan = make_plan(g)
    m = plan.mapping("bn")
    assert m.layout == "NC" and m.layers[0].config["axis"] == -1
    x = RNG.normal(size=(4, C))
    close(run_keras(plan, x), caffe_ref(x, g.node("bn"), g.node("sc")))


def test_caffe_bn_not_fused_when_output_used_twice():
    C = 2
    g = graph("caffe", [inp("data", (1, C, 2, 2)), caffe_bn("bn", "data", C),
                        caffe_scale("sc", "bn", C),
                        Node("sum", "Eltwise", ["bn", "sc"], attrs={"operation": "sum",
                                                                     "coeffs": None})])
    plan = make_plan(g)
    assert plan.mapping("bn").keras_output is not None
    assert plan.mapping("sc").layers[0].class_name == "ChannelAffine"
    x = RNG.normal(size=(2, C, 2, 2))
    y = caffe_ref(x, g.node("bn"))
    sc = g.node("sc")
    close(run_keras(plan, x), y + (y * bc(sc.p("scale"), 4) + bc(sc.p("bias"), 4)))


def test_caffe_epsilon_override_exact_and_raw():
    C = 3
    bn = caffe_bn("bn", "data", C)
    bn.params["variance"] = P("variance", np.array([1e-4, 1.0, 2.0]) * 999.98)
    g = graph("caffe", [inp("data", (1, C, 2, 2)), bn, caffe_scale("sc", "bn", C)])
    x = RNG.normal(size=(2, C, 2, 2))
    ref = caffe_ref(x, g.node("bn"), g.node("sc"))

    plan = make_plan(g, Overrides(layers={"bn": {"epsilon": 1e-3}}))
    m = plan.mapping("bn")
    r = rows(m)
    assert m.layers[0].config["epsilon"] == 1e-3 and r["epsilon"].overridden
    assert "eps - epsilon" in r["moving_variance"].formula
    # var + 1e-5 - 1e-3 < 0 in channel 0: reported, not clamped; outputs still exact
    assert r["moving_variance"].value[0] < 0
    assert any("negative in channel(s) 0" in w for w in r["moving_variance"].warnings)
    close(run_keras(plan, x), ref)

    plan = make_plan(g, Overrides(layers={"bn": {"epsilon": 1e-3, "variance": "raw"}}))
    r = rows(plan.mapping("bn"))
    assert any("outputs change" in w for w in r["variance"].warnings)
    y = run_keras(plan, x)
    assert np.abs(y - ref).max() > 1e-2                      # the change is real
    close(y, caffe_ref(x, g.node("bn"), g.node("sc"), eps=1e-3))   # raw: Caffe var, Keras eps


def test_caffe_use_global_stats_false_warned():
    g = graph("caffe", [inp("data", (1, 2, 2, 2)), caffe_bn("bn", "data", 2, use_global_stats=False)])
    assert any("use_global_stats" in w for w in make_plan(g).mapping("bn").warnings)


def test_center_scale_options():
    C = 2
    g = graph("caffe", [inp("data", (1, C, 2, 2)), caffe_bn("bn", "data", C)])
    plan = make_plan(g, Overrides(layers={"bn": {"center": True, "scale": True}}))
    m = plan.mapping("bn")
    w = m.layers[0].weights
    assert len(w) == 4 and np.all(w[0] == 1) and np.all(w[1] == 0)
    x = RNG.normal(size=(1, C, 2, 2))
    close(run_keras(plan, x), caffe_ref(x, g.node("bn")))


def test_override_momentum_and_bad_values():
    g = graph("caffe", [inp("data", (1, 2, 2, 2)), caffe_bn("bn", "data", 2)])
    plan = make_plan(g, Overrides(kinds={"BatchNorm": {"momentum": 0.9}}))
    assert plan.mapping("bn").layers[0].config["momentum"] == 0.9
    from migrator.core.errors import MigratorError
    with pytest.raises(MigratorError, match="momentum"):
        make_plan(g, Overrides(layers={"bn": {"momentum": 2.0}}))
    with pytest.raises(MigratorError, match="epsilon"):
        make_plan(g, Overrides(layers={"bn": {"epsilon": -1.0}}))


# ----------------------------------------------------------------------------- Lasagne
def lasagne_bn(name, x, C, *, gamma=True, beta=True, inv_std=None, eps=1e-4, alpha=0.1):
    params = {}
    if beta:
        params["beta"] = P("beta", RNG.normal(size=C))
    if gamma:
        params["gamma"] = P("gamma", RNG.normal(size=C))
    params["mean"] = P("mean", RNG.normal(size=C))
    if inv_std is None:
        inv_std = 1 / np.sqrt(RNG.uniform(0.1, 4, size=C) + eps)
    params["inv_std"] = P("inv_std", inv_std)
    return Node(name, "BatchNorm", [x], attrs={"form": "lasagne", "axis": 1, "epsilon": eps,
                                               "alpha": alpha, "axes": "auto"}, params=params,
                provenance=Provenance(layer=name, type="BatchNormLayer"))


def lasagne_ref(x, n):
    """Lasagne: y = (x - mean) * (gamma * inv_std) + beta (gamma 1 / beta 0 when None)."""
    r = x.ndim
    gamma = n.p("gamma") if n.p("gamma") is not None else 1.0
    beta = n.p("beta") if n.p("beta") is not None else 0.0
    return (x - bc(n.p("mean"), r)) * bc(np.asarray(gamma, np.float64) * n.p("inv_std"), r) \
        + bc(beta, r)


def test_lasagne_conv_bn_relu():
    C = 3
    W = RNG.normal(size=(C, 2, 3, 3)).astype(np.float32)
    conv = Node("conv", "Conv", ["in"], attrs={
        "kernel": (3, 3), "stride": (1, 1), "pad": (1, 1), "dilation": (1, 1), "group": 1,
        "bias": False, "flip": True, "activation": None, "num_output": C},
        params={"weight": Param("weight", W, "OIHW")})
    g = graph("lasagne", [inp("in", (None, 2, 5, 6)), conv, lasagne_bn("conv_bn", "conv", C),
                          Node("conv_bn_nonlin", "Activation", ["conv_bn"], attrs={"kind": "relu"})])
    plan = make_plan(g)
    m = plan.mapping("conv_bn")
    r = rows(m)
    assert m.rule == "lasagne.BatchNorm"
    assert r["epsilon"].value == 1e-4 and r["momentum"].value == pytest.approx(0.9)
    assert any("inv_std" in c for c in r["momentum"].caveats)
    assert not m.warnings

    x = RNG.normal(size=(2, 2, 5, 6))
    # true convolution (flip_filters=True) written out, zero padding 1
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    Wf = W[:, :, ::-1, ::-1].astype(np.float64)
    conv_out = np.zeros((2, C, 5, 6))
    for i in range(5):
        for j in range(6):
            conv_out[:, :, i, j] = np.einsum("ncab,ocab->no", xp[:, :, i:i + 3, j:j + 3], Wf)
    ref = np.maximum(lasagne_ref(conv_out, g.node("conv_bn")), 0)
    close(run_keras(plan, x), ref)


def test_lasagne_bn_after_dense_without_gamma_beta():
    C = 4
    bn = lasagne_bn("bn", "in", C, gamma=False, beta=False)
    bn.attrs["axes"] = (0,)
    g = graph("lasagne", [inp("in", (None, C)), bn])
    plan = make_plan(g)
    m = plan.mapping("bn")
    assert m.layers[0].config["scale"] is False and m.layers[0].config["center"] is False
    x = RNG.normal(size=(3, C))
    close(run_keras(plan, x), lasagne_ref(x, g.node("bn")))


def test_lasagne_bad_pickle_inv_std_lowers_epsilon_and_stays_exact():
    C = 3
    var = np.array([1e-7, 0.5, 2.0])
    inv = 1 / np.sqrt(var) + 1e-4                     # the published-pickle variant
    g = graph("lasagne", [inp("in", (None, C, 2, 2)), lasagne_bn("bn", "in", C, inv_std=inv)])
    plan = make_plan(g)
    r = rows(plan.mapping("bn"))
    assert r["epsilon"].value < 1e-4
    assert np.all(r["moving_variance"].value >= 0)
    assert any("lowered" in w for w in r["epsilon"].warnings)
    x = RNG.normal(size=(2, C, 2, 2)) * 1e-3
    close(run_keras(plan, x), lasagne_ref(x, g.node("bn")))


def test_lasagne_negative_inv_std_sign_folded():
    C = 2
    g = graph("lasagne", [inp("in", (None, C, 2, 2)),
                          lasagne_bn("bn", "in", C, gamma=False, inv_std=np.array([-2.0, 0.5]))])
    plan = make_plan(g)
    m = plan.mapping("bn")
    assert m.layers[0].config["scale"] is True
    assert any("sign" in w for w in m.warnings)
    x = RNG.normal(size=(2, C, 2, 2))
    close(run_keras(plan, x), lasagne_ref(x, g.node("bn")))


def test_lasagne_epsilon_override_exact_reports_negative_variance():
    C = 2
    inv = 1 / np.sqrt(np.array([1e-4, 1.0]) + 1e-4)
    g = graph("lasagne", [inp("in", (None, C, 1, 1)), lasagne_bn("bn", "in", C, inv_std=inv)])
    plan = make_plan(g, Overrides(kinds={"BatchNormLayer": {"epsilon": 1e-3}}))
    r = rows(plan.mapping("bn"))
    assert r["epsilon"].overridden and r["epsilon"].value == 1e-3
    assert r["moving_variance"].value[0] < 0 and r["moving_variance"].warnings
    x = RNG.normal(size=(2, C, 1, 1))
    close(run_keras(plan, x), lasagne_ref(x, g.node("bn")))


# ----------------------------------------------------------------------------- gist
def test_gist_bn_with_leaky_nonlinearity():
    C, eps = 3, 0.01
    std = RNG.uniform(0.0, 0.3, size=C)
    node = Node("bn", "BatchNorm", ["in"], attrs={
        "form": "gist", "axis": 1, "epsilon": eps, "alpha": 0.5,
        "activation": {"kind": "relu", "negative_slope": 0.1}},
        params={k: P(k, v.reshape(1, C, 1, 1), "1C11") for k, v in {
            "mean": RNG.normal(size=C), "std": std, "beta": RNG.normal(size=C),
            "gamma": RNG.normal(size=C)}.items()})
    g = graph("lasagne", [inp("in", (None, C, 3, 2)), node])
    plan = make_plan(g)
    m = plan.mapping("bn")
    assert [s.class_name for s in m.layers] == ["BatchNormalization", "LeakyReLU"]
    assert m.layers[-1].output == "bn" and m.keras_output == m.layers[-1].name
    assert rows(m)["epsilon"].value == pytest.approx(eps ** 2)
    x = RNG.normal(size=(2, C, 3, 2))
    p = {k: node.p(k).astype(np.float64) for k in ("mean", "std", "beta", "gamma")}
    y = (x - p["mean"]) * p["gamma"] / (p["std"] + eps) + p["beta"]   # gist formula
    close(run_keras(plan, x), np.where(y > 0, y, 0.1 * y))


# ----------------------------------------------------------------------------- Scale / Bias
def test_two_input_scale_axis0_broadcasts():
    C = 3
    s = Node("sc", "Scale", ["x", "s"], attrs={"axis": 0, "num_axes": 1, "bias": False,
                                               "two_input": True})
    g = graph("caffe", [inp("x", (2, C, 2, 3)), inp("s", (2, C)), s])
    plan = make_plan(g)
    m = plan.mapping("sc")
    assert [l.class_name for l in m.layers] == ["Reshape", "Multiply"]
    x, sv = RNG.normal(size=(2, C, 2, 3)), RNG.normal(size=(2, C))
    close(run_keras(plan, [x, sv]), x * sv[:, :, None, None])


def test_scale_over_two_axes_and_scalar_bias():
    C, H = 2, 3
    sc = Node("sc", "Scale", ["x"], attrs={"axis": 1, "num_axes": 2, "bias": False,
                                           "two_input": False},
              params={"scale": P("scale", RNG.normal(size=(C, H)), "CH")})
    bias = Node("b", "Bias", ["sc"], attrs={"axis": 1, "num_axes": 0},
                params={"bias": P("bias", [0.7], "SCALAR")})
    g = graph("caffe", [inp("x", (1, C, H, 4)), sc, bias])
    plan = make_plan(g)
    assert plan.mapping("sc").layers[0].config["axis"] == [1, 3]
    x = RNG.normal(size=(2, C, H, 4))
    ref = x * sc.p("scale").astype(np.float64)[None, :, :, None] + 0.7
    close(run_keras(plan, x), ref)


def test_unsupported_bn_axes_reported_not_raised():
    C = 2
    bn = lasagne_bn("bn", "in", C * 3 * 3)
    bn.attrs["axes"] = (0,)
    g = Graph(framework="lasagne", nodes=[inp("in", (None, C, 3, 3)), bn])
    g.infer_shapes()
    m = make_plan(g).mapping("bn")
    assert not m.supported and "axes" in m.error


# ----------------------------------------------------------------------------- vs OpenCV DNN
@pytest.mark.opencv
def test_caffe_bn_family_against_opencv(tmp_path):
    """Caffe files -> importer -> plan -> Keras, against OpenCV DNN's own Caffe importer."""
    from migrator.core.importers.caffe import load_caffe
    from migrator.testing.caffe_net import NetBuilder

    nb = NetBuilder("bnfam", seed=7)
    nb.input("data", (2, 5, 6, 7))
    nb.conv("conv1", "data", 4, 3, pad=1)
    nb.bn("bn1", "conv1", top="conv1", scale_factor=999.98)           # in place
    nb.scale("sc1", "conv1", top="conv1", bias=True)                  # fused: 1 Keras layer
    nb.relu("relu1", "conv1", top="conv1")
    nb.bn("bn2", "data", top="bn2", eps=1e-3)
    nb.scale("sc2", "bn2", top="bn2", bias=False)                     # fused, no beta
    nb.bn("bn3", "data", top="bn3", scale_factor=0.0)                 # s = 0
    nb.scale("sc3", "bn3", top="sc3", bias=True)
    nb.ip("fc", "conv1", 6)
    nb.bn("bn_fc", "fc", top="fc")                                    # rank 2
    nb.scale("sc_fc", "fc", top="fc", bias=True)
    proto, model = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    g = load_caffe(proto, model)
    outs = g.output_tensors
    x = np.random.default_rng(3).standard_normal((2, 5, 6, 7)).astype(np.float32)

    for ov in (None, Overrides(kinds={"BatchNorm": {"fuse_scale": False}}),
               Overrides(kinds={"BatchNorm": {"epsilon": 1e-2}})):
        plan = make_plan(g, ov)
        tol = 1e-5
        if ov is not None and ov.kinds["BatchNorm"].get("epsilon"):
            # bn3 (s = 0): var + eps = 1e-5 but epsilon 1e-2 -> negative moving_variance and
            # float32 cancellation, reported with its size
            w = " ".join(plan.mapping("bn3").warnings)
            assert "negative" in w and "cancellation" in w
            tol = 1e-4
        if ov is None:
            assert sum(s.class_name == "BatchNormalization" for s in plan.keras_layers) == 4
            assert not any(s.class_name == "ChannelAffine" for s in plan.keras_layers)
        model_k = build_keras(plan)
        ys = model_k.predict(x.transpose(0, 2, 3, 1), verbose=0)
        ys = ys if isinstance(ys, list) else [ys]
        net = cv2.dnn.readNetFromCaffe(proto, model)
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.enableFusion(False)
        net.setInput(x)
        names = [g.node(t).provenance.layer or t for t in outs]
        theirs = net.forward(names)
        for t, mine, ref in zip(outs, ys, theirs):
            mine = np.asarray(mine, np.float64)
            if mine.ndim == 4:
                mine = mine.transpose(0, 3, 1, 2)
            ref = np.asarray(ref, np.float64).reshape(mine.shape)
            err = np.abs(mine - ref).max() / max(np.abs(ref).max(), 1e-6)
            assert err < tol, (t, err, ov)


# ----------------------------------------------------------------------------- Lasagne files
LASAGNE_BUILDER = '''
import lasagne
from lasagne.layers import InputLayer, Conv2DLayer, BatchNormLayer, DenseLayer, batch_norm
from lasagne.nonlinearities import rectify


def build_model():
    net = {}
    net['input'] = InputLayer((None, 2, 5, 5))
    net['conv'] = batch_norm(Conv2DLayer(net['input'], 3, 3, pad=1, nonlinearity=rectify,
                                         name='conv'))
    net['fc'] = DenseLayer(net['conv'], 4, nonlinearity=None, name='fc')
    net['prob'] = BatchNormLayer(net['fc'], name='fc_bn', beta=None, gamma=None, epsilon=1e-3)
    return net
'''


def test_lasagne_files_end_to_end(tmp_path):
    """builder.py + params.npz -> importer -> plan -> Keras, against the Lasagne formulas."""
    from migrator.core.importers.lasagne import load_lasagne

    (tmp_path / "builder.py").write_text(LASAGNE_BUILDER)
    rng = np.random.default_rng(11)
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    beta, gamma, mean = (rng.normal(size=3).astype(np.float32) for _ in range(3))
    inv_std = (1 / np.sqrt(rng.uniform(0.5, 2, 3)) + 1e-4).astype(np.float32)   # pickle variant
    inv_std[1] = -inv_std[1]                                                   # sign -> gamma
    Wfc = (rng.normal(size=(75, 4)) * 0.1).astype(np.float32)
    bfc = rng.normal(size=4).astype(np.float32)
    mean2 = rng.normal(size=4).astype(np.float32)
    inv2 = np.array([40.0, 1.0, 0.5, 2.0], np.float32)     # 1/inv^2 < 1e-3 in channel 0
    # get_all_params order: conv W, BN beta gamma mean inv_std, fc W b, BN mean inv_std
    np.savez(tmp_path / "params.npz", W, beta, gamma, mean, inv_std, Wfc, bfc, mean2, inv2)
    g = load_lasagne(str(tmp_path / "builder.py"), str(tmp_path / "params.npz"))
    plan = make_plan(g)
    assert plan.mapping("conv_bn").rule == "lasagne.BatchNorm"
    r = rows(plan.mapping("fc_bn"))
    assert r["epsilon"].value < 1e-3 and np.all(r["moving_variance"].value >= 0)
    assert plan.mapping("fc_bn").layers[0].config["center"] is False

    x = rng.normal(size=(2, 2, 5, 5))
    # Lasagne, written out: true convolution (flip_filters=True), pad 1, no bias (batch_norm)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    Wf = W[:, :, ::-1, ::-1].astype(np.float64)
    c = np.zeros((2, 3, 5, 5))
    for i in range(5):
        for j in range(5):
            c[:, :, i, j] = np.einsum("ncab,ocab->no", xp[:, :, i:i + 3, j:j + 3], Wf)
    f64 = lambda a: np.asarray(a, np.float64)
    h = (c - bc(f64(mean), 4)) * bc(f64(gamma) * f64(inv_std), 4) + bc(f64(beta), 4)
    h = np.maximum(h, 0)
    fc = h.reshape(2, -1) @ f64(Wfc) + f64(bfc)                    # flatten (C, H, W)
    ref = (fc - f64(mean2)) * f64(inv2)
    close(run_keras(plan, x), ref)
