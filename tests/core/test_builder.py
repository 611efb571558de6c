"""Keras builder and layer-by-layer executor; end to end against OpenCV DNN's independent
Caffe implementation (synthetic Caffe net with every converted layer type, odd input
size so ceil pooling, clipped AVE divisors and padding are exercised)."""
from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from migrator.core.errors import Cancelled, MigratorError, UnsupportedLayerError
from migrator.core.ir import Graph, Node, Param
from migrator.core.keras_build.builder import build_keras, keras_layer_order
from migrator.core.keras_build.executor import iter_keras_outputs, keras_device_description
from migrator.core.mapping.plan import KerasLayerSpec
from migrator.core.mapping.planner import make_plan

RNG = np.random.default_rng(3)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def small_graph():
    """data -> conv -> relu -> {pool, tanh}; two outputs (pool, fc)."""
    W, b = f32(4, 3, 3, 3), f32(4)
    nodes = [
        Node("data", "Input", attrs={"shape": (2, 3, 9, 11)}),
        Node("conv", "Conv", ["data"], attrs={"kernel": (3, 3), "stride": (1, 1), "pad": (1, 1), "dilation": (1, 1),
                                                  "group": 1, "bias": True, "flip": False, "activation": None},
             params={"weight": Param("weight", W, "OIHW"), "bias": Param("bias", b, "O")}),
        Node("relu", "Activation", ["conv"], attrs={"kind": "relu", "negative_slope": 0.0}),
        Node("pool", "Pool", ["relu"], attrs={"mode": "max", "kernel": (2, 2), "stride": (2, 2), "pad": (0, 0),
                                                  "rounding": "caffe_ceil", "avg_divisor": "caffe"}),
        Node("t", "Activation", ["relu"], attrs={"kind": "tanh"}),
        Node("fc", "Dense", ["t"], attrs={"num_output": 5, "axis": 1, "bias": False, "activation": None},
             params={"weight": Param("weight", f32(5, 4 * 9 * 11), "OI")}),
    ]
    g = Graph("caffe", nodes, name="small net!")
    g.infer_shapes()
    return g


def test_build_structure_and_weights():
    g = small_graph()
    plan = make_plan(g)
    model = build_keras(plan)
    assert model.name == "small_net"
    assert model.input_shape == (None, 9, 11, 3)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 5, 6, 4), (None, 5)]
    assert keras_layer_order(plan)[0] == "data"
    assert {spec.name for spec in plan.keras_layers} == {layer.name for layer in model.layers}
    for spec in plan.keras_layers:
        if spec.weights:
            got = model.get_layer(spec.name).get_weights()
            for a, b in zip(got, spec.weights):
                np.testing.assert_array_equal(a, b)


def test_executor_matches_keras_own_graph_and_frees_tensors():
    g = small_graph()
    plan = make_plan(g)
    model = build_keras(plan)
    x = f32(2, 9, 11, 3)
    names = [m.keras_output for m in plan.mappings if m.keras_output]
    # Keras' own evaluation of the same intermediate tensors
    probe = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])
    want = dict(zip(names, [np.asarray(t) for t in probe(x, training=False)]))
    seen, progress, stats = [], [], {}
    for name, arr in iter_keras_outputs(model, plan, x, progress=lambda f, m: progress.append(f),
                                        stats=stats):
        seen.append(name)
        np.testing.assert_allclose(arr, want[name], rtol=1e-6, atol=1e-6)
    assert seen == names
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert stats["max_live"] <= 3


def test_executor_want_cancel_and_dict_input():
    g = small_graph()
    plan = make_plan(g)
    model = build_keras(plan)
    x = f32(1, 9, 11, 3)
    assert [n for n, _ in iter_keras_outputs(model, plan, {"data": x}, want=["relu"])] == ["relu"]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        list(iter_keras_outputs(model, plan, x, cancel=cancel))
    with pytest.raises(MigratorError, match="does not fit"):
        list(iter_keras_outputs(model, plan, f32(1, 3, 9, 11)))


def test_memory_stays_bounded_on_a_long_chain():
    nodes = [Node("data", "Input", attrs={"shape": (1, 4, 8, 8)})]
    for i in range(40):
        nodes.append(Node(f"a{i}", "Activation", [nodes[-1].name], attrs={"kind": "tanh"}))
    g = Graph("caffe", nodes)
    g.infer_shapes()
    plan = make_plan(g)
    stats = {}
    outs = list(iter_keras_outputs(build_keras(plan), plan, f32(1, 8, 8, 4), stats=stats))
    assert len(outs) == 41 and stats["max_live"] <= 2


def test_unsupported_layers_listed_together():
    g = small_graph()
    g.nodes.append(Node("odd", "Custom", ["pool"], attrs={"class_name": "Odd"}))
    g.nodes.append(Node("odd2", "Custom", ["fc"], attrs={"class_name": "Odd2"}))
    g.nodes[-1].provenance.type = "OddLayer2"
    g.files = ["net.prototxt"]
    g.infer_shapes()
    plan = make_plan(g)
    with pytest.raises(UnsupportedLayerError) as ei:
        build_keras(plan)
    msg = str(ei.value)
    assert msg.startswith("net.prototxt: ") and "'odd'" in msg and "'odd2' (type OddLayer2)" in msg
    assert ei.value.layers[0][0] == "odd"


def test_bad_plan_errors_name_the_layer():
    g = small_graph()
    plan = make_plan(g)
    conv = plan.mapping("conv").layers[-1]
    conv.weights = [conv.weights[0][:, :, :, :2], conv.weights[1]]
    with pytest.raises(MigratorError, match="layer 'conv'.*expects weights"):
        build_keras(plan)
    plan = make_plan(g)
    plan.mapping("t").layers[0] = KerasLayerSpec("t", "NoSuchLayer", {}, ["relu"], "t")
    with pytest.raises(MigratorError, match="layer 't'.*NoSuchLayer"):
        build_keras(plan)


def test_device_description():
    d = keras_device_description()
    assert d.startswith("GPU: ") or d == "CPU (no GPU found by TensorFlow)"


# ---- end to end against OpenCV ------------------------------------------------------------
def every_layer_net(tmp_path):
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("every", seed=11)
    nb.input("data", (2, 3, 17, 19))
    nb.conv("conv1", "data", 8, (3, 5), stride=(1, 2), pad=(1, 2))
    nb.bn("bn1", "conv1", top="conv1")
    nb.scale("scale1", "conv1", top="conv1")
    nb.relu("relu1", "conv1", negative_slope=0.1, top="conv1")
    nb.pool("pool1", "conv1", "max", 3, stride=2, pad=1)                   # ceil + pad
    nb.conv("conv2", "pool1", 8, 3, group=2, dilation=2, pad=2, bias=False)
    nb.scale("scale2", "conv2", bias=False, top="conv2s")
    nb.prelu("prelu2", "conv2s", top="prelu2")
    nb.conv("conv3", "prelu2", 8, 3, pad=1, rect_fields=True)
    nb.elu("elu3", "conv3", alpha=0.7, top="elu3")
    nb.eltwise("sum", ["prelu2", "elu3"], "sum", coeffs=[0.5, -2.0])
    nb.eltwise("prod", ["sum", "elu3"], "prod")
    nb.eltwise("max", ["prod", "sum"], "max")
    nb.sigmoid("sig", "max", top="sig")
    nb.tanh("tanh", "max", top="tanh")
    nb.concat("cat", ["sig", "tanh"], axis=1)
    nb.absval("abs", "cat", top="abs")
    nb.power("pow", "abs", power=2.0, scale=0.5, shift=1.0, top="pow")
    nb.bnll("bnll", "pow", top="bnll")
    nb.split("split", "bnll", ["s0", "s1"])
    nb.pool("pool_max", "s0", "max", (2, 3), stride=2)                     # ceil, no pad
    nb.pool("pool_ave", "s1", "avg", 3, stride=2, pad=1)                   # clipped divisor
    nb.pool("pool_ave2", "s1", "avg", 2, stride=2)                         # ceil overhang
    nb.lrn("lrn_across", "pool_max", local_size=5, alpha=1e-2, beta=0.75, k=1.0)
    nb.lrn("lrn_within", "pool_max", local_size=3, alpha=5e-2, beta=0.6, region="within")
    nb.concat("cat2", ["lrn_across", "lrn_within"], axis=1)
    nb.dropout("drop", "cat2", ratio=0.3, top="cat2")
    nb.pool("gpool", "cat2", "avg", global_pooling=True)
    nb.pool("gmax", "cat2", "max", global_pooling=True)
    nb.flatten("flat", "gpool")
    nb.ip("fc1", "cat2", 12)
    nb.relu("relu_fc1", "fc1", top="fc1")
    nb.reshape("resh", "fc1", [0, 3, -1])
    nb.flatten("flat2", "resh")
    nb.flatten("flat3", "gmax")
    nb.flatten("flat4", "pool_ave2")
    nb.flatten("flat5", "pool_ave")
    nb.concat("cat3", ["flat2", "flat", "flat3", "flat4", "flat5"], axis=1)
    nb.softmax("prob", "cat3")
    return nb.save(tmp_path / "every.prototxt", tmp_path / "every.caffemodel")


@pytest.mark.opencv
def test_every_layer_against_opencv(tmp_path):
    import cv2

    from migrator.core.importers.caffe import load_caffe

    proto, weights = every_layer_net(tmp_path)
    g = load_caffe(str(proto), str(weights))
    plan = make_plan(g)
    model = build_keras(plan)
    x = np.random.default_rng(5).standard_normal((2, 3, 17, 19)).astype(np.float32)
    keras_outs = dict(iter_keras_outputs(model, plan, x.transpose(0, 2, 3, 1)))

    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x)
    names = list(net.getLayerNames())
    cv_outs = dict(zip(names, net.forward(names)))

    # in-place layers write into their bottom blob: OpenCV names outputs by layer, as we do
    compared = []
    for m in plan.mappings:
        if m.source not in cv_outs or m.keras_output is None or m.source.startswith("split"):
            continue
        ours = keras_outs[m.keras_output]
        ours = np.moveaxis(ours, -1, 1) if ours.ndim > 2 else ours     # channels-last -> NC...
        theirs = cv_outs[m.source].reshape(ours.shape) if cv_outs[m.source].size == ours.size \
            else cv_outs[m.source]
        assert ours.shape == theirs.shape, (m.source, ours.shape, theirs.shape)
        err = np.abs(ours - theirs).max() / max(1e-6, np.abs(theirs).max())
        assert err < 1e-4, (m.source, err)
        compared.append(m.source)
    must = {"conv1", "pool1", "conv2", "prelu2", "conv3", "elu3", "sum", "prod", "max", "sig", "tanh",
            "cat", "abs", "pow", "bnll", "pool_max", "pool_ave", "pool_ave2", "lrn_across", "lrn_within",
            "cat2", "gpool", "gmax", "flat", "fc1", "resh", "flat2", "flat4", "flat5", "cat3", "prob", "relu1", "scale2"}
    assert must <= set(compared), must - set(compared)


# ---- executor overhead -----------------------------------------------------------------------
@pytest.mark.slow
def test_executor_overhead_on_a_resnet_like_model(tmp_path):
    from migrator.core.importers.caffe import load_caffe
    from migrator.testing.caffe_net import NetBuilder

    nb = NetBuilder("res", seed=0)
    nb.input("data", (1, 3, 160, 160))
    nb.conv("conv1", "data", 32, 7, stride=2, pad=3)
    nb.relu("r1", "conv1", top="conv1")
    nb.pool("pool1", "conv1", "max", 3, stride=2)
    x_name, c = "pool1", 32
    for i in range(12):
        s = 2 if i in (4, 8) else 1
        w = c * (2 if s == 2 else 1)
        nb.conv(f"c{i}a", x_name, w, 3, stride=s, pad=1)
        nb.bn(f"c{i}a_bn", f"c{i}a", top=f"c{i}a")
        nb.scale(f"c{i}a_sc", f"c{i}a", top=f"c{i}a")
        nb.relu(f"c{i}a_r", f"c{i}a", top=f"c{i}a")
        nb.conv(f"c{i}b", f"c{i}a", w, 3, pad=1)
        sc = x_name if s == 1 and w == c else nb.conv(f"c{i}p", x_name, w, 1, stride=s) and f"c{i}p"
        nb.eltwise(f"sum{i}", [f"c{i}b", sc])
        nb.relu(f"sum{i}_r", f"sum{i}", top=f"sum{i}")
        x_name, c = f"sum{i}", w
    nb.pool("gp", x_name, "ave", global_pooling=True)
    nb.ip("fc", "gp", 100)
    p, w = nb.save(tmp_path / "r.prototxt", tmp_path / "r.caffemodel")
    plan = make_plan(load_caffe(str(p), str(w)))
    model = build_keras(plan)
    x = np.random.default_rng(0).standard_normal((2, 160, 160, 3)).astype(np.float32)

    def plain():
        np.asarray(model(x, training=False))

    def layerwise():
        for _ in iter_keras_outputs(model, plan, x):
            pass

    plain(), layerwise()
    tp, tl = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        plain()
        tp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        layerwise()
        tl.append(time.perf_counter() - t0)
    ratio = float(np.median(tl) / np.median(tp))
    print(f"executor overhead: layer-by-layer {np.median(tl):.3f}s vs model() {np.median(tp):.3f}s "
          f"= {ratio:.2f}x on {keras_device_description()}")
    assert ratio < 1.6


# ---- end to end against the real Theano + Lasagne 0.1 ------------------------------------------
LASAGNE_NET = '''
import numpy as np
import theano
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, DenseLayer, NonlinearityLayer, Pool2DLayer,
                            MaxPool2DLayer, ElemwiseSumLayer, ConcatLayer, FlattenLayer, ReshapeLayer,
                            DimshuffleLayer, PadLayer, SliceLayer, LocalResponseNormalization2DLayer)
from lasagne.nonlinearities import softmax, sigmoid, tanh, very_leaky_rectify, LeakyRectify


def build_model():
    l_in = InputLayer((None, 3, 15, 11), name='in')
    c1 = Conv2DLayer(l_in, 6, (3, 2), stride=(2, 1), pad=1, name='c1')          # true convolution
    p1 = Pool2DLayer(c1, 3, stride=2, ignore_border=False, mode='average_inc_pad', name='p_inc')
    p2 = Pool2DLayer(c1, 3, stride=2, pad=1, mode='average_exc_pad', name='p_exc')
    p3 = MaxPool2DLayer(c1, 2, stride=3, ignore_border=False, name='p_max')
    s = ElemwiseSumLayer([p1, p2], coeffs=[0.5, -1.5], name='wsum')
    nl = NonlinearityLayer(s, very_leaky_rectify, name='vleaky')
    pad = PadLayer(nl, width=(1, 2), val=-0.5, name='pad')
    lrn = LocalResponseNormalization2DLayer(pad, alpha=1e-2, k=2, beta=0.75, n=3, name='lrn')
    sl = SliceLayer(lrn, indices=slice(1, 5), axis=1, name='slice')
    ds = DimshuffleLayer(sl, (0, 1, 3, 2), name='dims')
    c2 = Conv2DLayer(ds, 4, 1, nonlinearity=sigmoid, name='c2')
    d1 = DenseLayer(c2, 7, nonlinearity=LeakyRectify(0.2), name='d1')           # 4-D input
    fl = FlattenLayer(p3, name='flat')
    rs = ReshapeLayer(fl, ([0], 6, -1), name='resh')
    ds2 = DimshuffleLayer(rs, (0, 2, 1), name='dims2')
    fl2 = FlattenLayer(ds2, name='flat2')
    cat = ConcatLayer([d1, fl2], name='cat')
    t = NonlinearityLayer(cat, tanh, name='tanh')
    return DenseLayer(t, 5, nonlinearity=softmax, name='prob')
'''


@pytest.mark.theano
@pytest.mark.slow
def test_lasagne_net_against_real_theano(tmp_path):
    from tests.envs import theano_env
    if not theano_env._ready(theano_env.ENV_DIR):
        pytest.skip("no Theano venv (build it with `python -m tests.setup_envs`)")
    from migrator.core import flow
    from migrator.testing.lasagne_models import make_param_values, write_params, write_script

    b = write_script(tmp_path, LASAGNE_NET)
    p = write_params(str(tmp_path / "params.pkl"), make_param_values(b, seed=2), "pkl_list")
    g = flow.open_model([b, p])
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    x = np.random.default_rng(4).standard_normal((2, 3, 15, 11)).astype(np.float32)
    settings = {"command": [str(theano_env.env_python())],
                "env": {"THEANO_FLAGS": theano_env.theano_env_vars()["THEANO_FLAGS"]}}
    res = flow.compare(g, plan, model, x, runtime="legacy", runtime_settings=settings)
    assert res.runtime["versions"]["lasagne"] == "0.1"
    statuses = {lr.source: lr.status for lr in res.layers}
    assert all(s in ("pass", "fused") for s in statuses.values()), statuses
    for name in ("c1", "p_inc", "p_exc", "p_max", "wsum", "pad", "lrn", "slice", "dims", "d1",
                 "resh", "dims2", "prob"):
        assert statuses.get(name) == "pass", (name, statuses.get(name))


def test_constructs_are_flat_in_the_model_graph(tmp_path):
    """A construct's layers and keras.ops calls sit in the model's own graph (no nested model),
    named after the spec and ended by a layer of the spec's name, so the Keras idiom
    ``keras.Model(model.input, model.get_layer(name).output)`` reads every converted layer; a
    source layer named like a construct's operation does not collide; the executor, which runs
    each construct alone (spec_callables), gives what Keras's own graph gives."""
    from migrator.core import flow
    from migrator.core.keras_build import plain as PL
    from migrator.testing.caffe_net import NetBuilder

    nb = NetBuilder("flat", seed=2)
    nb.input("data", (1, 3, 13, 11))
    nb.conv("conv1", "data", 6, 3, pad=1)
    nb.lrn("norm1", "conv1", local_size=5, alpha=0.5, beta=0.75, k=2.0)
    nb.conv("norm1_square", "norm1", 6, 1)             # the name the LRN's ops.square would take
    nb.pool("pool1", "norm1_square", "max", 3, stride=2, pad=1)     # padded max: ConstantPadding2D
    nb.pool("pool2", "pool1", "ave", 3, stride=2, pad=1)            # ExactAveragePooling2D
    nb.ip("fc", "pool2", 4)
    g = flow.open_model(nb.save(tmp_path / "flat.prototxt", tmp_path / "flat.caffemodel"))
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    classes = {s.name: s.class_name for s in plan.keras_layers}
    constructs = [n for n, c in classes.items() if PL.has_plain(c)]
    assert "norm1" in constructs and len(constructs) >= 3, classes
    assert not [op for op in model.operations if isinstance(op, keras.Model)]
    names = [op.name for op in model.operations]
    assert len(names) == len(set(names))
    spec_names = set(classes)
    for op in model.operations:          # every other operation is named after its spec
        assert op.name in spec_names or any(op.name.startswith(c + "_") for c in constructs), op.name
    assert isinstance(model.get_layer("norm1_square"), keras.layers.Conv2D)
    assert "norm1" in PL.ops_layers(model, plan)
    x = f32(2, 13, 11, 3)
    seen = dict(iter_keras_outputs(model, plan, x))
    for m in plan.mappings:
        if m.keras_output:
            sub = keras.Model(model.input, model.get_layer(m.keras_output).output)
            np.testing.assert_allclose(np.asarray(sub(x)), seen[m.keras_output], rtol=1e-6, atol=1e-6)
    calls = PL.spec_callables(model, plan)
    assert calls["conv1"] is model.get_layer("conv1") and calls["norm1"] is not model.get_layer("norm1")
