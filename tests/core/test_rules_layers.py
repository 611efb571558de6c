"""Mapping rules (mapping/rules/, one module per op family) end to end: hand-built IR graph -> make_plan ->
build_keras -> Keras output, compared with an independent computation (naive NCHW loops
written from the frameworks' definitions, or plain numpy) -- never with Migrator's own
reference executor."""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core.errors import MigratorError, UnsupportedLayerError
from migrator.core.ir import Graph, Node, Param
from migrator.core.keras_build.builder import build_keras
from migrator.core.keras_build.executor import iter_keras_outputs
from migrator.core.mapping.overrides import Overrides
from migrator.core.mapping.planner import make_plan
from tests.core import naive_ops as R

RNG = np.random.default_rng(7)
TOL = {"rtol": 1e-4, "atol": 1e-5}


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def inp(shape, name="data"):
    return Node(name, "Input", attrs={"shape": tuple(shape)})


def to_keras(x):
    x = np.asarray(x)
    if x.ndim <= 2:
        return x
    return np.moveaxis(x, 1, -1)


def from_keras(y):
    y = np.asarray(y)
    if y.ndim <= 2:
        return y
    return np.moveaxis(y, -1, 1)


def run(nodes, x, framework="caffe", overrides=None):
    """Build graph -> plan -> model; return (plan, {node: output in NCHW}) for every node
    with a Keras output, via the layer-by-layer executor (also checks the model call)."""
    g = Graph(framework, nodes, name="t")
    g.infer_shapes()
    plan = make_plan(g, overrides)
    model = build_keras(plan)
    by_layer = dict(iter_keras_outputs(model, plan, to_keras(x)))
    outs = {}
    for m in plan.mappings:
        if m.keras_output:
            outs[m.source] = from_keras(by_layer[m.keras_output])
            want = g.node(m.source).out_shape
            assert outs[m.source].shape[1:] == tuple(want[1:]), (m.source, outs[m.source].shape, want)
    final = model(to_keras(x), training=False)
    final = final if isinstance(final, (list, tuple)) else [final]
    last = g.output_tensors
    for t, y in zip(last, final):
        node = g.producer(t)
        if node.name in outs and node.num_outputs == 1:
            np.testing.assert_array_equal(from_keras(y), outs[node.name])
    return plan, outs


def conv_node(name, src, W, b=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1, flip=False,
              activation=None):
    params = {"weight": Param("weight", W, "OIHW")}
    if b is not None:
        params["bias"] = Param("bias", b, "O" if b.ndim == 1 else "OHW")
    return Node(name, "Conv", [src], attrs={"kernel": W.shape[2:], "stride": stride, "pad": pad,
                                                "dilation": dilation, "group": group, "bias": b is not None,
                                                "flip": flip, "activation": activation}, params=params)


# ---- Conv -----------------------------------------------------------------------------------
CONV_CASES = [
    {"stride": (1, 1), "pad": (0, 0)},
    {"stride": (2, 2), "pad": (1, 1)},
    {"stride": (2, 1), "pad": (2, 0), "k": (5, 3)},
    {"stride": (1, 1), "pad": (2, 2), "dilation": (2, 2)},
    {"stride": (2, 2), "pad": (1, 1), "dilation": (2, 1)},      # Keras: stride-1 conv + subsample
    {"stride": (1, 1), "pad": (1, 1), "group": 2},
    {"stride": (1, 1), "pad": (1, 1), "group": 4, "cout": 4},       # depthwise
    {"stride": (3, 3), "pad": (1, 1), "flip": True},
    {"stride": (1, 1), "pad": (0, 0), "flip": True, "bias": False, "k": (2, 3)},
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv(case):
    cin = 4
    cout = case.get("cout", 6)
    group = case.get("group", 1)
    kh, kw = case.get("k", (3, 3))
    W = f32(cout, cin // group, kh, kw)
    b = None if case.get("bias") is False else f32(cout)
    x = f32(2, cin, 17, 19)
    nodes = [inp(x.shape), conv_node("conv", "data", W, b, case["stride"], case["pad"],
                                     case.get("dilation", (1, 1)), group, case.get("flip", False))]
    plan, outs = run(nodes, x, framework="lasagne" if case.get("flip") else "caffe")
    ref = R.conv2d(x, W, b, case["stride"], case["pad"], case.get("dilation", (1, 1)), group,
                   true_conv=case.get("flip", False))
    np.testing.assert_allclose(outs["conv"], ref, **TOL)
    m = plan.mapping("conv")
    assert all(s.config.get("padding") != "same" for s in m.layers)
    kernel_row = next(r for r in m.rows if r.key == "kernel")
    assert ("::-1" in kernel_row.formula) == bool(case.get("flip"))


def test_conv_flip_override_fixes_a_wrong_flag():
    # the layer says cross-correlation, but the weights were trained as a true convolution
    W, b, x = f32(3, 2, 3, 3), f32(3), f32(1, 2, 9, 8)
    nodes = [inp(x.shape), conv_node("c", "data", W, b, pad=(1, 1), flip=False)]
    ov = Overrides.from_dict({"version": 1, "layers": {"c": {"flip": True}}})
    plan, outs = run(nodes, x, overrides=ov)
    np.testing.assert_allclose(outs["c"], R.conv2d(x, W, b, pad=(1, 1), true_conv=True), **TOL)
    assert any(r.key == "flip" and r.overridden for r in plan.mapping("c").rows)
    _, outs = run(nodes, x)
    np.testing.assert_allclose(outs["c"], R.conv2d(x, W, b, pad=(1, 1)), **TOL)


ACTS = {
    "relu": ({"kind": "relu", "negative_slope": 0.0}, lambda v: np.maximum(v, 0)),
    "leaky": ({"kind": "relu", "negative_slope": 0.1}, lambda v: np.where(v > 0, v, 0.1 * v)),
    "neg_slope": ({"kind": "relu", "negative_slope": -0.5}, lambda v: np.where(v > 0, v, -0.5 * v)),
    "elu": ({"kind": "elu", "alpha": 1.0}, lambda v: np.where(v > 0, v, np.expm1(v))),
    "elu2": ({"kind": "elu", "alpha": 0.3}, lambda v: np.where(v > 0, v, 0.3 * np.expm1(v))),
    "sigmoid": ({"kind": "sigmoid"}, lambda v: 1 / (1 + np.exp(-v))),
    "tanh": ({"kind": "tanh"}, np.tanh),
    "abs": ({"kind": "abs"}, np.abs),
    "softplus": ({"kind": "softplus"}, lambda v: np.log1p(np.exp(v))),
    "linear": ({"kind": "linear"}, lambda v: v),
    "scaled_tanh": ({"kind": "scaled_tanh", "scale_in": 0.5, "scale_out": 2.0}, lambda v: 2 * np.tanh(0.5 * v)),
    "exp": ({"kind": "exp"}, np.exp),
}


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_layer_and_folded(name):
    act, fn = ACTS[name]
    x = f32(2, 3, 5, 7)
    W, b = f32(4, 3, 1, 1), f32(4)
    nodes = [inp(x.shape), Node("act", "Activation", ["data"], attrs=dict(act)),
             conv_node("conv", "data", W, b, activation=dict(act))]
    plan, outs = run(nodes, x, framework="lasagne")
    np.testing.assert_allclose(outs["act"], fn(x.astype(np.float64)), **TOL)
    np.testing.assert_allclose(outs["conv"], fn(R.conv2d(x, W, b)), **TOL)
    m = plan.mapping("conv")
    assert m.keras_output == m.layers[-1].name


def test_softmax_activation_dense_and_softmax_node():
    x = f32(3, 6)
    W, b = f32(6, 5), f32(5)
    nodes = [inp(x.shape),
             Node("fc", "Dense", ["data"], attrs={"num_output": 5, "axis": 1, "bias": True,
                                                      "activation": {"kind": "softmax", "axis": 1}},
                  params={"weight": Param("weight", W, "IO"), "bias": Param("bias", b, "O")})]
    _, outs = run(nodes, x, framework="lasagne")
    z = x.astype(np.float64) @ W + b
    ref = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(outs["fc"], ref / ref.sum(1, keepdims=True), **TOL)
    x4 = f32(2, 5, 3, 4)
    _, outs = run([inp(x4.shape), Node("sm", "Softmax", ["data"], attrs={"axis": 1})], x4)
    e = np.exp(x4.astype(np.float64))
    np.testing.assert_allclose(outs["sm"], e / e.sum(1, keepdims=True), **TOL)


def test_unsupported_layers_are_reported_together():
    # untied biases convert now (checked against Theano in tests/lasagne/test_lasagne_catalogue.py);
    # two layers Migrator does not know are both named in one line
    x = f32(1, 2, 5, 5)
    W, b = f32(3, 2, 3, 3), f32(3, 3, 3)
    nodes = [inp(x.shape), conv_node("untied", "data", W, b),
             Node("weird", "Custom", ["untied"], attrs={"class_name": "Weird"}),
             Node("odd", "Custom", ["weird"], attrs={"class_name": "Odd"})]
    nodes[2].provenance.type = "WeirdLayer"
    nodes[3].provenance.type = "OddLayer"
    g = Graph("lasagne", nodes)
    g.infer_shapes()
    plan = make_plan(g)
    assert [m.source for m in plan.unsupported] == ["weird", "odd"]
    assert plan.mapping("untied").error is None
    with pytest.raises(UnsupportedLayerError) as ei:
        build_keras(plan)
    msg = str(ei.value)
    assert "'weird'" in msg and "'odd'" in msg and "WeirdLayer" in msg and "OddLayer" in msg
    assert "\n" not in msg


# ---- Dense ----------------------------------------------------------------------------------
@pytest.mark.parametrize("permute_rows", [True, False])
@pytest.mark.parametrize("layout", ["OI", "IO"])
def test_dense_on_4d_input(layout, permute_rows):
    x = f32(2, 3, 4, 5)
    Wio = f32(60, 7)
    b = f32(7)
    W = Wio.T.copy() if layout == "OI" else Wio
    nodes = [inp(x.shape), Node("fc", "Dense", ["data"], attrs={"num_output": 7, "axis": 1, "bias": True,
                                                                     "activation": None},
                                params={"weight": Param("weight", W, layout), "bias": Param("bias", b, "O")})]
    ov = None if permute_rows else Overrides.from_dict({"version": 1, "kinds": {"Dense": {"permute_rows": False}}})
    plan, outs = run(nodes, x, overrides=ov)
    ref = x.reshape(2, -1).astype(np.float64) @ Wio + b    # source flattens (C, H, W)
    np.testing.assert_allclose(outs["fc"], ref, **TOL)
    classes = [s.class_name for s in plan.mapping("fc").layers]
    assert classes == (["Flatten", "Dense"] if permute_rows else ["Permute", "Flatten", "Dense"])


def test_dense_rank2_and_relu():
    x = f32(4, 9)
    W, b = f32(3, 9), f32(3)
    nodes = [inp(x.shape), Node("ip", "Dense", ["data"], attrs={"num_output": 3, "axis": 1, "bias": True,
                                                                     "activation": {"kind": "relu"}},
                                params={"weight": Param("weight", W, "OI"), "bias": Param("bias", b, "O")})]
    _, outs = run(nodes, x)
    np.testing.assert_allclose(outs["ip"], np.maximum(x.astype(np.float64) @ W.T + b, 0), **TOL)


# ---- PReLU / Power --------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("rank", [2, 4])
def test_prelu(shared, rank):
    x = f32(2, 5, 3, 4) if rank == 4 else f32(3, 5)
    slope = f32(1) if shared else f32(5)
    nodes = [inp(x.shape), Node("pr", "PReLU", ["data"], attrs={"channel_shared": shared},
                                params={"slope": Param("slope", slope, "C")})]
    _, outs = run(nodes, x)
    sl = slope.reshape((1, -1) + (1,) * (rank - 2)) if not shared else slope[0]
    np.testing.assert_allclose(outs["pr"], np.maximum(x, 0) + sl * np.minimum(x, 0), **TOL)


@pytest.mark.parametrize("p,s,sh", [(2.0, 0.5, 1.0), (1.0, 2.0, -1.0), (0.5, 1.0, 3.0), (3.0, -1.0, 0.0)])
def test_power(p, s, sh):
    x = np.abs(f32(2, 3, 4, 5))
    nodes = [inp(x.shape), Node("pw", "Power", ["data"], attrs={"power": p, "scale": s, "shift": sh})]
    _, outs = run(nodes, x)
    np.testing.assert_allclose(outs["pw"], (sh + s * x.astype(np.float64)) ** p, **TOL)


# ---- Pooling --------------------------------------------------------------------------------
CAFFE_POOLS = [("max", 3, 2, 0), ("max", 3, 2, 1), ("max", 2, 2, 0), ("ave", 3, 2, 0), ("ave", 3, 2, 1),
               ("ave", 2, 2, 1), ("ave", 4, 3, 2), ("max", 5, 3, 2), ("ave", 3, 1, 1), ("max", 1, 2, 0)]


@pytest.mark.parametrize("round_mode", ["ceil", "floor"])
@pytest.mark.parametrize("mode,k,s,p", CAFFE_POOLS)
@pytest.mark.parametrize("hw", [(17, 19), (8, 8)])
def test_caffe_pool(mode, k, s, p, round_mode, hw):
    x = f32(2, 3, *hw)
    nodes = [inp(x.shape), Node("pool", "Pool", ["data"], attrs={
        "mode": "max" if mode == "max" else "avg", "kernel": (k, k), "stride": (s, s), "pad": (p, p),
        "rounding": "caffe_ceil" if round_mode == "ceil" else "floor", "avg_divisor": "caffe"})]
    _, outs = run(nodes, x)
    ref = R.caffe_pool(x, mode, (k, k), (s, s), (p, p), round_mode)
    assert outs["pool"].shape == ref.shape
    np.testing.assert_allclose(outs["pool"], ref, **TOL)


@pytest.mark.parametrize("mode", ["max", "average_inc_pad", "average_exc_pad"])
@pytest.mark.parametrize("ignore_border,k,s,p", [(True, 3, 2, 1), (True, 2, 2, 0), (False, 3, 2, 0),
                                                  (False, 2, 3, 0), (False, 3, 1, 0), (True, 3, 3, 2)])
def test_lasagne_pool(mode, ignore_border, k, s, p):
    x = f32(2, 3, 11, 10)
    divisor = {"max": "caffe", "average_inc_pad": "inc_pad", "average_exc_pad": "exc_pad"}[mode]
    nodes = [inp(x.shape), Node("pool", "Pool", ["data"], attrs={
        "mode": "max" if mode == "max" else "avg", "kernel": (k, k), "stride": (s, s), "pad": (p, p),
        "rounding": "floor" if ignore_border else "lasagne_ceil", "avg_divisor": divisor})]
    _, outs = run(nodes, x, framework="lasagne")
    ref = R.theano_pool(x, mode, (k, k), (s, s), (p, p), ignore_border)
    assert outs["pool"].shape == ref.shape
    np.testing.assert_allclose(outs["pool"], ref, **TOL)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("keep", [True, False])
def test_global_pool(mode, keep):
    x = f32(2, 4, 5, 6)
    nodes = [inp(x.shape), Node("gp", "GlobalPool", ["data"], attrs={"mode": mode, "keepdims": keep})]
    plan, outs = run(nodes, x)
    ref = x.mean(axis=(2, 3), keepdims=keep) if mode == "avg" else x.max(axis=(2, 3), keepdims=keep)
    np.testing.assert_allclose(outs["gp"], ref, **TOL)
    assert plan.mapping("gp").layout == ("NHWC" if keep else "NC")


@pytest.mark.parametrize("region,size", [("across", 5), ("across", 3), ("within", 3), ("within", 5)])
def test_lrn(region, size):
    x = f32(2, 7, 6, 5, scale=3.0)
    alpha, beta, k = 0.5, 0.75, 1.0 if region == "within" else 2.0
    coeff = alpha / size if region == "across" else alpha / size ** 2
    nodes = [inp(x.shape), Node("lrn", "LRN", ["data"], attrs={"region": region, "size": size, "coeff": coeff,
                                                                    "beta": beta, "k": k, "source_alpha": alpha})]
    _, outs = run(nodes, x)
    fn = R.lrn_across if region == "across" else R.lrn_within
    np.testing.assert_allclose(outs["lrn"], fn(x, size, coeff, beta, k), **TOL)


# ---- merges ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op,coeffs", [("sum", None), ("sum", [1.0, -1.0, 0.5]), ("prod", None),
                                       ("max", None), ("sum", [1.0, 1.0, 1.0])])
def test_eltwise(op, coeffs):
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape),
             Node("a", "Power", ["data"], attrs={"power": 1.0, "scale": 2.0, "shift": 0.0}),
             Node("b", "Activation", ["data"], attrs={"kind": "tanh"}),
             Node("e", "Eltwise", ["data", "a", "b"], attrs={"operation": op, "coeffs": coeffs})]
    _, outs = run(nodes, x)
    xs = [x.astype(np.float64), 2.0 * x, np.tanh(x.astype(np.float64))]
    if op == "sum":
        cs = coeffs or [1, 1, 1]
        ref = sum(c * v for c, v in zip(cs, xs))
    elif op == "prod":
        ref = xs[0] * xs[1] * xs[2]
    else:
        ref = np.maximum(np.maximum(xs[0], xs[1]), xs[2])
    np.testing.assert_allclose(outs["e"], ref, **TOL)


@pytest.mark.parametrize("rank,axis", [(4, 1), (4, 2), (4, 3), (2, 1)])
def test_concat(rank, axis):
    x = f32(2, 3, 4, 5) if rank == 4 else f32(2, 3)
    nodes = [inp(x.shape), Node("t", "Activation", ["data"], attrs={"kind": "tanh"}),
             Node("cat", "Concat", ["data", "t"], attrs={"axis": axis})]
    _, outs = run(nodes, x)
    np.testing.assert_allclose(outs["cat"], np.concatenate([x, np.tanh(x)], axis=axis), **TOL)


def test_split_dropout_identity():
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("sp", "Split", ["data"], num_outputs=2),
             Node("d", "Dropout", ["sp:0"], attrs={"ratio": 0.5}),
             Node("i", "Identity", ["sp:1"]),
             Node("e", "Eltwise", ["d", "i"], attrs={"operation": "prod", "coeffs": None})]
    plan, outs = run(nodes, x)
    np.testing.assert_allclose(outs["e"], x * x, **TOL)
    np.testing.assert_array_equal(outs["d"], x)
    assert plan.mapping("sp").keras_output == "data" and plan.mapping("i").keras_output == "data"
    assert plan.mapping("sp").layers == [] and plan.mapping("i").layers == []


# ---- shape ops ------------------------------------------------------------------------------
def test_flatten_keeps_source_order():
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("fl", "Flatten", ["data"], attrs={"axis": 1, "end_axis": -1})]
    _, outs = run(nodes, x)
    np.testing.assert_array_equal(outs["fl"], x.reshape(2, -1))


def test_flatten_partial():
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("fl", "Flatten", ["data"], attrs={"axis": 2, "end_axis": -1})]
    _, outs = run(nodes, x)
    np.testing.assert_array_equal(outs["fl"], x.reshape(2, 3, 20))


@pytest.mark.parametrize("shape,want", [([0, -1], (2, 60)), ([0, 6, 2, 5], (2, 6, 2, 5)),
                                        ([0, 0, -1], (2, 3, 20)), ([-1, 5, 4, 3], (2, 5, 4, 3))])
def test_reshape(shape, want):
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("rs", "Reshape", ["data"], attrs={"shape": shape, "axis": 0, "num_axes": -1})]
    _, outs = run(nodes, x)
    np.testing.assert_array_equal(outs["rs"], x.reshape(want))


@pytest.mark.parametrize("pattern", [(0, 2, 3, 1), (0, 1, 3, 2), (0, 3, 1, 2), (0, 1, "x", 2, 3),
                                     (0, 1, 2, 3)])
def test_transpose(pattern):
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("ds", "Transpose", ["data"], attrs={"pattern": pattern})]
    _, outs = run(nodes, x, framework="lasagne")
    ints = [p for p in pattern if p != "x"]
    ref = x.transpose(ints)
    ref = ref.reshape([1 if p == "x" else x.shape[p] for p in pattern])
    np.testing.assert_array_equal(outs["ds"], ref)


def test_transpose_drops_broadcastable_axis():
    x = f32(2, 3, 1, 5)
    nodes = [inp(x.shape), Node("ds", "Transpose", ["data"], attrs={"pattern": (0, 3, 1)})]
    _, outs = run(nodes, x, framework="lasagne")
    np.testing.assert_array_equal(outs["ds"], x[:, :, 0, :].transpose(0, 2, 1))


@pytest.mark.parametrize("axis,start,stop,step", [(1, 1, 3, None), (2, None, None, 2), (3, -3, None, None),
                                                  (-1, 4, 0, -2)])
def test_slice(axis, start, stop, step):
    x = f32(2, 4, 6, 7)
    nodes = [inp(x.shape), Node("sl", "Slice", ["data"], attrs={"axis": axis, "start": start, "stop": stop,
                                                                     "step": step})]
    _, outs = run(nodes, x, framework="lasagne")
    idx = [slice(None)] * 4
    idx[axis] = slice(start, stop, step)
    np.testing.assert_array_equal(outs["sl"], x[tuple(idx)])


def test_slice_multi_output_and_index():
    x = f32(2, 6, 3, 4)
    nodes = [inp(x.shape),
             Node("sl", "Slice", ["data"], attrs={"axis": 1, "slice_points": [1, 4]}, num_outputs=3),
             Node("e", "Concat", ["sl:2", "sl:0"], attrs={"axis": 1}),
             Node("ix", "Slice", ["data"], attrs={"axis": 2, "index": 1})]
    _, outs = run(nodes, x)
    np.testing.assert_array_equal(outs["e"], np.concatenate([x[:, 4:], x[:, :1]], axis=1))
    np.testing.assert_array_equal(outs["sl"], x[:, :1])
    np.testing.assert_array_equal(outs["ix"], x[:, :, 1])


@pytest.mark.parametrize("value", [0.0, -2.5])
def test_pad(value):
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("pd", "Pad", ["data"], attrs={"pad": [(1, 2), (0, 3)], "value": value,
                                                             "batch_ndim": 2})]
    _, outs = run(nodes, x, framework="lasagne")
    np.testing.assert_array_equal(outs["pd"], np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 3)),
                                                     constant_values=value))


def test_rule_errors_name_the_layer():
    x = f32(2, 3, 4, 5)
    nodes = [inp(x.shape), Node("sl", "Slice", ["data"], attrs={"axis": 0, "start": 0, "stop": 1, "step": None})]
    g = Graph("lasagne", nodes)
    g.infer_shapes()
    plan = make_plan(g)
    assert not plan.mapping("sl").supported and "batch" in plan.mapping("sl").error
    with pytest.raises(MigratorError, match="'sl'"):
        build_keras(plan)


def test_pool_on_unknown_spatial_size():
    # Lasagne InputLayer((None, C, None, None)): floor pooling still maps (exc_pad divisor at run time)
    x = f32(2, 3, 9, 8)
    nodes = [inp((None, 3, None, None)),
             Node("pool", "Pool", ["data"], attrs={"mode": "avg", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
                                                       "rounding": "floor", "avg_divisor": "exc_pad"}),
             Node("pmax", "Pool", ["data"], attrs={"mode": "max", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
                                                       "rounding": "floor", "avg_divisor": "caffe"}),
             Node("ceil", "Pool", ["data"], attrs={"mode": "max", "kernel": (3, 3), "stride": (2, 2), "pad": (0, 0),
                                                       "rounding": "lasagne_ceil", "avg_divisor": "caffe"})]
    g = Graph("lasagne", nodes)
    g.infer_shapes()
    plan = make_plan(g)
    assert [m.source for m in plan.unsupported] == ["ceil"]
    g.nodes.pop()
    plan = make_plan(g)
    model = build_keras(plan)
    outs = dict(iter_keras_outputs(model, plan, to_keras(x)))
    np.testing.assert_allclose(from_keras(outs["pool"]),
                               R.theano_pool(x, "average_exc_pad", (3, 3), (2, 2), (1, 1)), **TOL)
    np.testing.assert_allclose(from_keras(outs["pmax"]), R.theano_pool(x, "max", (3, 3), (2, 2), (1, 1)),
                               **TOL)
