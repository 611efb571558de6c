"""The recording stand-ins follow Lasagne 0.2's documented semantics (shapes from the
closed-form formulas of docs/semantics.md, add_param / get_all_params order, naming)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.lasagne import describe_builder, load_lasagne
from migrator.testing import lasagne_models as M


def _desc(tmp_path, body, **kw):
    return describe_builder(M.write_script(tmp_path, M.HEADER + body), **kw)


def _layers(d):
    return {L["name"]: L for L in d["layers"]}


def _conv_len(L, k, s, pad):
    p = {"valid": 0, "full": k - 1, "same": k // 2}.get(pad, pad)
    return (L + 2 * p - k) // s + 1


def _pool_len(L, k, s, ignore_border, p=0):
    if ignore_border:
        return (L + 2 * p - k) // s + 1
    if s >= k:
        return math.ceil(L / s)
    return max(0, math.ceil((L - k) / s)) + 1


CONV_CASES = [(L, k, s, pad) for L in (5, 8, 11) for k in (1, 3, 5) for s in (1, 2, 3)
              for pad in ("valid", "full", "same", 0, 2) if not (pad == "valid" and k > L)]


def test_conv_output_shapes_and_weight_shapes(tmp_path):
    lines = ["def build_model():", "    l = InputLayer((None, 6, 13, 13))", "    out = []"]
    for i, (L, k, s, pad) in enumerate(CONV_CASES):
        lines.append(f"    x = InputLayer((None, 6, {L}, {L + 1}))")
        lines.append(f"    out.append(Conv2DLayer(x, 4, {k}, stride={s}, pad={pad!r}, "
                     f"name='c{i}', num_groups=2))")
    lines.append("    return ConcatLayer([GlobalPoolLayer(c) for c in out])")
    d = _desc(tmp_path, "\n" + "\n".join(lines) + "\n")
    lay = _layers(d)
    for i, (L, k, s, pad) in enumerate(CONV_CASES):
        c = lay[f"c{i}"]
        assert c["output_shape"] == [None, 4, _conv_len(L, k, s, pad), _conv_len(L + 1, k, s, pad)]
        assert [p["name"] for p in c["params"]] == ["W", "b"]
        assert c["params"][0]["shape"] == [4, 3, k, k]


def test_pool_output_shapes(tmp_path):
    cases = [(L, k, s, ib) for L in (5, 6, 7, 13) for k in (2, 3) for s in (1, 2, 3)
             for ib in (True, False)]
    lines = ["def build_model():", "    out = []"]
    for i, (L, k, s, ib) in enumerate(cases):
        lines.append(f"    x = InputLayer((None, 2, {L}, {L}))")
        lines.append(f"    out.append(Pool2DLayer(x, {k}, stride={s}, ignore_border={ib}, "
                     f"name='p{i}'))")
    lines.append("    out.append(MaxPool2DLayer(InputLayer((None, 2, 9, 9)), 3, stride=2, pad=1, "
                 "name='pp'))")
    lines.append("    return ConcatLayer([GlobalPoolLayer(c) for c in out])")
    d = _desc(tmp_path, "\n" + "\n".join(lines) + "\n")
    lay = _layers(d)
    for i, (L, k, s, ib) in enumerate(cases):
        n = _pool_len(L, k, s, ib)
        assert lay[f"p{i}"]["output_shape"] == [None, 2, n, n], (L, k, s, ib)
    assert lay["pp"]["output_shape"] == [None, 2, 5, 5]
    assert lay["pp"]["attrs"]["stride"] == [2, 2]


def test_batch_norm_helper_names_and_param_order(tmp_path):
    d = _desc(tmp_path, '''
def build_model():
    l = InputLayer((None, 3, 8, 8), name='in')
    l = batch_norm(Conv2DLayer(l, 5, 3, name='conv'))
    l = batch_norm(Conv2DLayer(l, 5, 3, nonlinearity=None))
    l = batch_norm(DenseLayer(l, 7, name='fc', nonlinearity=linear), epsilon=1e-3, beta=None)
    return l
''')
    names = [L["name"] for L in d["layers"]]
    # nonlinearity=None becomes identity in Lasagne, so batch_norm() still stacks a
    # NonlinearityLayer (unnamed, as the conv is)
    assert names == ["in", "conv", "conv_bn", "conv_bn_nonlin", "Conv2DLayer_1",
                     "BatchNormLayer_1", "NonlinearityLayer_1", "fc", "fc_bn", "fc_bn_nonlin"]
    lay = _layers(d)
    assert [p["name"] for p in lay["conv"]["params"]] == ["W"]          # bias removed
    assert [p["name"] for p in lay["conv_bn"]["params"]] == ["beta", "gamma", "mean", "inv_std"]
    assert [p["name"] for p in lay["fc_bn"]["params"]] == ["gamma", "mean", "inv_std"]
    assert lay["fc_bn"]["attrs"]["epsilon"] == 1e-3
    assert lay["conv"]["attrs"]["nonlinearity"]["__callable__"] == "linear"
    assert [(lay_, p) for lay_, p, _ in d["params"]][:6] == [
        ("conv", "W"), ("conv_bn", "beta"), ("conv_bn", "gamma"), ("conv_bn", "mean"),
        ("conv_bn", "inv_std"), ("Conv2DLayer_1", "W")]


def test_get_all_layers_order_with_branches_and_shared_params(tmp_path):
    d = _desc(tmp_path, '''
def build_model():
    i = InputLayer((None, 4), name='i')
    a = DenseLayer(i, 3, name='a')
    b = DenseLayer(i, 3, name='b', W=a.W)          # shares a's weight
    c = DenseLayer(b, 3, name='c')
    return ElemwiseSumLayer([c, a], name='sum')
''')
    assert [L["name"] for L in d["layers"]] == ["i", "b", "c", "a", "sum"]
    # get_all_params: per layer in that order, the shared W once (at b, its first use)
    assert [(lay, p) for lay, p, _ in d["params"]] == [("b", "W"), ("b", "b"), ("c", "W"),
                                                        ("c", "b"), ("a", "b")]


def test_shared_param_is_loaded_once_and_flagged(tmp_path):
    b = M.write_script(tmp_path, M.HEADER + '''
def build_model():
    i = InputLayer((None, 4), name='i')
    a = DenseLayer(i, 4, name='a')
    return DenseLayer(a, 4, name='b', W=a.W)
''')
    vals = [np.eye(4, dtype=np.float32) * 2, np.zeros(4, np.float32), np.ones(4, np.float32)]
    g = load_lasagne(b, M.write_params(str(tmp_path / "p.npz"), vals, "npz"))
    assert g.node("a").params["weight"].value is g.node("b").params["weight"].value
    assert any("shares its parameter 'W'" in w for w in g.warnings)
    assert g.meta["param_order"] == [("a", "weight"), ("a", "bias"), ("b", "bias")]


def test_output_choice_from_a_dict(tmp_path):
    body = '''
def build_model():
    net = {}
    net['input'] = InputLayer((None, 5))
    net['fc1'] = DenseLayer(net['input'], 4)
    net['side'] = DenseLayer(net['input'], 2)
    net['fc2'] = DenseLayer(net['fc1'], 3)
    return net
'''
    # two layers feed no other ('fc2', 'side'): ambiguous -> an error listing both (issue 11)
    with pytest.raises(MigratorError) as ei:
        _desc(tmp_path, body)
    msg = str(ei.value)
    assert "'fc2'" in msg and "'side'" in msg and "--output-layer" in msg and "\n" not in msg
    d = describe_builder(str(tmp_path / "builder.py"), output_layer="fc2")
    assert d["output"] == "fc2" and [L["name"] for L in d["layers"]] == ["input", "fc1", "fc2"]
    d2 = describe_builder(str(tmp_path / "builder.py"), output_layer="side")
    assert d2["output"] == "side"
    d3 = _desc(tmp_path, body.replace("return net", "net['prob'] = NonlinearityLayer("
                                      "net['fc2'], softmax)\n    return net"))
    assert d3["output"] == "prob" and any("'prob'" in w for w in d3["warnings"])


def test_default_names_are_stable_and_unique(tmp_path):
    body = '''
def build_model():
    l = InputLayer((None, 2, 6, 6))
    l = Conv2DLayer(l, 2, 3, name='DenseLayer_1')
    l = DenseLayer(l, 3)
    l = DenseLayer(l, 3, name='x')
    return DenseLayer(l, 3, name='x')
'''
    d1, d2 = _desc(tmp_path, body), _desc(tmp_path, body)
    names = [L["name"] for L in d1["layers"]]
    assert names == [L["name"] for L in d2["layers"]]
    assert names == ["InputLayer_1", "DenseLayer_1", "DenseLayer_1_2", "x", "x_2"]
    assert any("two layers are named 'x'" in w for w in d1["warnings"])


def test_layer_subclasses_and_custom_layers(tmp_path):
    b, p, _ = M.write_model(tmp_path, M.HEADER + '''
class MyConv(Conv2DLayer):                      # only changes defaults: still a Conv2DLayer
    def __init__(self, incoming, num_filters, **kw):
        super(MyConv, self).__init__(incoming, num_filters, 3, pad='same', **kw)


class Odd(Conv2DLayer):                         # its own computation: Custom
    def get_output_for(self, input, **kwargs):
        return T.sqr(super(Odd, self).get_output_for(input, **kwargs))


class Halve(lasagne.layers.Layer):
    def get_output_shape_for(self, input_shape):
        return input_shape[:2] + (input_shape[2] // 2, input_shape[3] // 2)


def build_model():
    l = InputLayer((None, 3, 8, 8), name='in')
    l = MyConv(l, 4, name='myconv')
    l = Odd(l, 4, 1, name='odd')
    l = Halve(l, name='halve')
    l = lasagne.layers.ExpressionLayer(l, lambda x: x * 2, name='expr')
    return DenseLayer(l, 2, nonlinearity=T.nnet.sigmoid, name='fc')
''', "pkl_list")
    g = load_lasagne(b, p)
    assert g.node("myconv").op == "Conv" and g.node("myconv").attrs["pad"] == (1, 1)
    assert g.node("odd").op == "Custom" and g.node("odd").params["W"].shape == (4, 4, 1, 1)
    assert g.node("halve").op == "Custom" and g.node("halve").out_shape == (None, 4, 4, 4)
    assert g.node("expr").op == "Custom"
    assert g.node("fc").attrs["activation"] == {"kind": "sigmoid"}
    assert g.node("fc").params["weight"].shape == (64, 2)


def test_layer_on_a_shape_tuple_gets_an_input_node(tmp_path):
    b = M.write_script(tmp_path, M.HEADER + '''
def build_model():
    return DenseLayer((None, 6), 2, name='fc')
''')
    g = load_lasagne(b, M.write_params(str(tmp_path / "p.pkl"),
                                       [np.ones((6, 2), np.float32), np.zeros(2, np.float32)],
                                       "pkl_list"))
    assert [(n.name, n.op) for n in g.nodes] == [("fc_input", "Input"), ("fc", "Dense")]
    assert g.node("fc_input").attrs["shape"] == (None, 6)


def test_shape_layers_and_helpers_inside_the_builder(tmp_path):
    d = _desc(tmp_path, '''
def build_model():
    l = InputLayer((None, 3, 4, 5), name='in')
    r = ReshapeLayer(l, ([0], [2], -1), name='r')
    f = FlattenLayer(l, outdim=3, name='f')
    s = DimshuffleLayer(l, (0, 'x', 2, 3, 1), name='s')
    p = PadLayer(l, (1, (2, 3)), name='p')
    sl = SliceLayer(l, slice(1, None), axis=-1, name='sl')
    d = DenseLayer(r, 2, num_leading_axes=2, name='d')
    assert lasagne.layers.count_params(d) == 15 * 2 + 2
    vals = lasagne.layers.get_all_param_values(d)
    lasagne.layers.set_all_param_values(d, [v + 1 for v in vals])
    assert lasagne.layers.get_output_shape(f) == (None, 3, 20)
    return {'r': r, 'f': f, 's': s, 'p': p, 'sl': sl, 'd': d}
''', output_layer="d")
    lay = _layers(d)
    assert lay["r"]["output_shape"] == [None, 4, 15]
    assert lay["d"]["output_shape"] == [None, 4, 2]
    d2 = describe_builder(str(tmp_path / "builder.py"), output_layer="s")
    assert _layers(d2)["s"]["output_shape"] == [None, 1, 4, 5, 3]
    d3 = describe_builder(str(tmp_path / "builder.py"), output_layer="p")
    assert _layers(d3)["p"]["output_shape"] == [None, 3, 6, 10]
    d4 = describe_builder(str(tmp_path / "builder.py"), output_layer="sl")
    assert _layers(d4)["sl"]["output_shape"] == [None, 3, 4, 4]


@pytest.mark.parametrize("expr,kind", [
    ("lasagne.nonlinearities.rectify", {"kind": "relu", "negative_slope": 0.0}),
    ("lasagne.nonlinearities.leaky_rectify", {"kind": "relu", "negative_slope": 0.01}),
    ("lasagne.nonlinearities.very_leaky_rectify", {"kind": "relu", "negative_slope": 1 / 3}),
    ("LeakyRectify(0.2)", {"kind": "relu", "negative_slope": 0.2}),
    ("lasagne.nonlinearities.ScaledTanH(2, 3)", {"kind": "scaled_tanh", "scale_in": 2.0,
                                                 "scale_out": 3.0}),
    ("T.tanh", {"kind": "tanh"}),
    ("None", None),
])
def test_nonlinearities(tmp_path, expr, kind):
    b = M.write_script(tmp_path, M.HEADER + f'''
def build_model():
    return DenseLayer(InputLayer((None, 3)), 2, nonlinearity={expr}, name='fc')
''')
    g = load_lasagne(b, M.write_params(str(tmp_path / "p.pkl"),
                                       [np.ones((3, 2), np.float32), np.zeros(2, np.float32)],
                                       "pkl_list"))
    act = g.node("fc").attrs["activation"]
    if kind is None:
        assert act is None
    else:
        assert act.keys() == kind.keys()
        for k, v in kind.items():
            assert act[k] == pytest.approx(v) if isinstance(v, float) else act[k] == v


def test_recipes_style_imports_load(tmp_path):
    d = _desc(tmp_path, '''
from lasagne.layers.dnn import Conv2DDNNLayer as ConvLayer, Pool2DDNNLayer as PoolLayer
from lasagne.layers.corrmm import Conv2DMMLayer
from lasagne.layers import LocalResponseNormalization2DLayer as NormLayer
from lasagne.utils import floatX
import theano.tensor.nnet.abstract_conv
from theano.sandbox.rng_mrg import MRG_RandomStreams


class Custom(theano.Op):
    pass


def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 32, 32))
    net['conv1'] = ConvLayer(net['input'], 8, 7, stride=2)
    net['norm1'] = NormLayer(net['conv1'], alpha=0.0001)
    net['pool1'] = PoolLayer(net['norm1'], 3, stride=3, mode='average_exc_pad')
    net['conv2'] = Conv2DMMLayer(net['pool1'], 8, 3, pad=1)
    net['prob'] = DenseLayer(net['conv2'], 10, nonlinearity=lasagne.nonlinearities.softmax)
    return net
''')
    lay = _layers(d)
    assert [L["class"] for L in d["layers"]] == ["InputLayer", "Conv2DDNNLayer",
                                                 "LocalResponseNormalization2DLayer",
                                                 "Pool2DDNNLayer", "Conv2DMMLayer", "DenseLayer"]
    assert lay["conv1"]["attrs"]["flip_filters"] is False
    assert lay["conv2"]["attrs"]["flip_filters"] is False
    assert lay["pool1"]["output_shape"] == [None, 8, 4, 4]


def test_builder_returning_a_list_of_layers(tmp_path):
    d = _desc(tmp_path, '''
def build_model():
    i = InputLayer((None, 4))
    a = DenseLayer(i, 3)
    return [i, a]
''')
    assert d["output"] == "DenseLayer_1"           # list positions never become names
    assert [L["name"] for L in d["layers"]] == ["InputLayer_1", "DenseLayer_1"]
