"""Prototxt fields Migrator does not know are errors, unless training-only or accepted.

Issue 9: a DenseNet-121 Caffe prototxt has ``pooling_param { ceil_mode: false }`` (a fork
field); reading past it gave pool1 57x57 where the model's framework gives 56x56, and the
comparison passed because the built-in reference read the file the same way.  Now the
fork field is honoured (checked against OpenCV, which knows ``ceil_mode``, and against the
real Caffe running the BVLC spelling ``round_mode: FLOOR``), and any field Migrator does
not know stops the import with one line naming the file, the layer and the field.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from migrator.core import flow
from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.importers.caffe.fields import TRAINING_ONLY, scan_unknown_fields
from migrator.core.importers.caffe_proto import pb
from migrator.core.mapping.overrides import Overrides
from migrator.core.reference import numpy_ref
from migrator.testing.caffe_net import NetBuilder
from tests.core import bn_frob_weights
from tests.legacy import caffe_root, within_default_tolerance


def densenet_stem(ceil_mode=None, round_mode=None, size=224, seed=0) -> NetBuilder:
    """DenseNet-121's stem as in the public DenseNet-Caffe prototxt: conv1 7x7/2 pad 3,
    BatchNorm + Scale + ReLU, pool1 MAX 3x3/2 pad 1 (ceil_mode: false there)."""
    nb = NetBuilder("densenet_stem", seed=seed)
    nb.input("data", (1, 3, size, size))
    nb.conv("conv1", "data", 8, 7, stride=2, pad=3, bias=False)
    nb.bn("conv1/bn", "conv1", top="conv1")
    nb.scale("conv1/scale", "conv1", top="conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.pool("pool1", "conv1", "max", 3, stride=2, pad=1, ceil_mode=ceil_mode, round_mode=round_mode)
    return nb


def test_ceil_mode_false_is_floor_densenet_pool1(tmp_path):
    nb = densenet_stem(ceil_mode=False)
    p, m = nb.save(tmp_path / "d.prototxt", tmp_path / "d.caffemodel")
    assert "ceil_mode: false" in Path(p).read_text()
    g = load_caffe(p, m)
    assert g.node("pool1").attrs["rounding"] == "floor"
    assert g.node("pool1").out_shape == (1, 8, 56, 56)
    # without the fork field: BVLC's ceil rule gives 57
    nb2 = densenet_stem()
    p2, m2 = nb2.save(tmp_path / "c.prototxt", tmp_path / "c.caffemodel")
    assert load_caffe(p2, m2).node("pool1").out_shape == (1, 8, 57, 57)
    # ceil_mode: true is BVLC's rule
    p3, m3 = densenet_stem(ceil_mode=True).save(tmp_path / "t.prototxt", tmp_path / "t.caffemodel")
    assert load_caffe(p3, m3).node("pool1").out_shape == (1, 8, 57, 57)
    # the converted model verifies at 56x56
    plan = flow.plan_model(g)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    res = flow.compare(g, plan, flow.build_model(plan), x)
    assert res.passed


@pytest.mark.opencv
def test_ceil_mode_false_matches_opencv(tmp_path):
    import cv2
    nb = densenet_stem(ceil_mode=False, size=64)
    p, m = nb.save(tmp_path / "d.prototxt", tmp_path / "d.caffemodel")
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    net = cv2.dnn.readNetFromCaffe(p, m)
    net.setInput(x)
    theirs = net.forward("pool1")
    g = load_caffe(p, m)
    ours = numpy_ref.run_all(g, x)["pool1"][0]
    assert theirs.shape == ours.shape == (1, 8, 16, 16)   # ceil would give 17
    ok, err, bound = within_default_tolerance(theirs, ours)
    assert ok, (err, bound)


@pytest.mark.caffe
@pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")
def test_ceil_mode_false_equals_real_caffe_round_mode_floor(tmp_path):
    """The real BVLC Caffe refuses ceil_mode but knows round_mode: FLOOR, the same rule."""
    from migrator.core.reference.runtimes import get_runtime
    from tests.legacy import caffe_command
    fork = densenet_stem(ceil_mode=False, size=64, seed=4)
    p, m = fork.save(tmp_path / "fork.prototxt", tmp_path / "fork.caffemodel")
    bvlc = densenet_stem(round_mode="FLOOR", size=64, seed=4)
    bp, bm = bvlc.save(tmp_path / "bvlc.prototxt", tmp_path / "bvlc.caffemodel")
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    g = load_caffe(p, m)
    ours = numpy_ref.run_all(g, x)["pool1"][0]
    rt = get_runtime("legacy", command=caffe_command())
    real = dict(rt.run(load_caffe(bp, bm), x))["pool1"][0]
    assert real.shape == ours.shape == (1, 8, 16, 16)
    ok, err, bound = within_default_tolerance(real, ours)
    assert ok, (err, bound)


def test_round_mode_floor_and_contradiction(tmp_path):
    p, _ = densenet_stem(round_mode="FLOOR").save(tmp_path / "f.prototxt")
    assert load_caffe(p).node("pool1").out_shape == (1, 8, 56, 56)
    text = Path(p).read_text().replace("round_mode: FLOOR", "round_mode: FLOOR ceil_mode: true")
    (tmp_path / "x.prototxt").write_text(text)
    with pytest.raises(MigratorError, match="opposite") as ei:
        load_caffe(str(tmp_path / "x.prototxt"))
    assert ei.value.layer == "pool1"


BN_TEXT = """name: "bn_frob"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 decay_mult: 1 lr_warmup: 3 }
        convolution_param { num_output: 4 kernel_size: 3
                            weight_filler { type: "msra" sparse_ratio: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" %s
        batch_norm_param { use_global_stats: true %s } }
"""


def _bn_files(tmp_path, layer_field="", param_field=""):
    m = bn_frob_weights(tmp_path)
    p = tmp_path / "bn.prototxt"
    p.write_text(BN_TEXT % (layer_field, param_field))
    return str(p), m


@pytest.mark.parametrize("layer_field,param_field,path", [
    ("frob: 1", "", "frob"),
    ("", "frob: 1", "batch_norm_param.frob"),
    ("", "scale_bias { value: 2 }", "batch_norm_param.scale_bias"),
])
def test_made_up_field_in_batchnorm_is_an_error(tmp_path, layer_field, param_field, path):
    p, m = _bn_files(tmp_path, layer_field, param_field)
    with pytest.raises(MigratorError) as ei:
        load_caffe(p, m)
    e = ei.value
    assert e.layer == "bn" and e.file == p
    msg = str(e)
    assert "\n" not in msg and f"'{path}'" in msg
    assert f"line {8 if layer_field else 9}" in msg
    assert f"--accept-unknown bn.{path}" in msg


@pytest.mark.parametrize("spec", ["frob", "batch_norm_param.frob", "bn.frob", "bn.batch_norm_param.frob",
                                  "BatchNorm.frob", "bn"])
def test_accepted_field_converts_and_is_reported_unverified(tmp_path, spec):
    p, m = _bn_files(tmp_path, "", "frob: 1")
    g = load_caffe(p, m, accept_unknown=[spec])
    recs = g.meta["caffe"]["unknown_fields"]
    assert recs == [{"layer": "bn", "type": "BatchNorm", "field": "batch_norm_param.frob", "value": "1",
                     "line": 9, "accepted": True, "accepted_by": spec}]
    plan = flow.plan_model(g)
    m_bn = plan.mapping("bn")
    assert m_bn.supported and any("semantics unverified" in n for n in m_bn.notes)


def test_collect_mode_marks_the_layer_unsupported(tmp_path):
    """The GUI opens with unknown='collect': the model loads, the layer is marked and the
    plan refuses it (export blocked) until the field is accepted."""
    p, m = _bn_files(tmp_path, "frob: 1", "")
    g = flow.open_model([p, m], unknown="collect")
    recs = g.meta["caffe"]["unknown_fields"]
    assert [(r["layer"], r["field"], r["accepted"]) for r in recs] == [("bn", "frob", False)]
    plan = flow.plan_model(g)
    assert [u.source for u in plan.unsupported] == ["bn"]
    assert "--accept-unknown bn.frob" in plan.unsupported[0].error
    g = flow.open_model([p, m], unknown="collect", accept_unknown=["bn.frob"])
    assert not flow.plan_model(g).unsupported


def test_accept_specs_do_not_overreach(tmp_path):
    p, m = _bn_files(tmp_path, "", "frob: 1")
    for spec in ("conv.frob", "conv", "Convolution.frob", "fro", "batch_norm_param"):
        with pytest.raises(MigratorError, match="frob"):
            load_caffe(p, m, accept_unknown=[spec])


def test_training_only_fields_are_read_past(tmp_path):
    # the conv layer's param { lr_warmup } and weight_filler { sparse_ratio } are not errors
    p, m = _bn_files(tmp_path)
    g = load_caffe(p, m)
    assert g.meta["caffe"]["unknown_fields"] == []
    assert any("training-only" in w and "lr_warmup" in w for w in g.warnings)
    assert {"lr_mult", "weight_filler", "transform_param", "loss_weight"} <= TRAINING_ONLY


def test_unknown_fields_in_dropped_layers_are_ignored(tmp_path):
    text = """name: "train_val"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        data_param { source: "x" batch_size: 4 backend: LMDB prefetch_depth: 2 }
        fancy_sampler { ratio: 2 } }
layer { name: "input" type: "Input" top: "data" include { phase: TEST }
        input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "relu" bottom: "label" top: "loss"
        loss_param { focal_gamma: 2 } smooth_factor: 3 }
"""
    p = tmp_path / "tv.prototxt"
    p.write_text(text)
    g = load_caffe(str(p))
    assert [n.name for n in g.nodes] == ["input", "relu"]


def test_net_level_unknown_field(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('name: "n"\nquantize_all: true\ninput: "data"\n'
                 'input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
                 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    with pytest.raises(MigratorError, match="'quantize_all'.*line 2"):
        load_caffe(str(p))
    assert load_caffe(str(p), accept_unknown=["quantize_all"]).node("r").op == "Activation"


def test_v1_layers_unknown_field(tmp_path):
    p = tmp_path / "v1.prototxt"
    p.write_text('name: "v1"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n'
                 'layers { name: "r" type: RELU bottom: "data" top: "r" relu_param { cap: 6 } }\n')
    with pytest.raises(MigratorError) as ei:
        load_caffe(str(p))
    assert ei.value.layer == "r" and "relu_param.cap" in str(ei.value)


def test_scanner_handles_text_format_forms():
    text = """# comment
name: 'x' name2: "a" "b"
layer < name: "l" type: "T" top: ["a", "b"] pooling_param: { pool: MAX zz: -1e-3 } >
layer { name: "m" type: "T"; ww { a { b: 1 } } ; }
"""
    res = scan_unknown_fields(text, pb.NetParameter.DESCRIPTOR)
    assert [(u.path, u.line) for u in res.net] == [("name2", 2)]
    assert [u.path for u in res.layers[("layer", 0)]] == ["pooling_param.zz"]
    assert [u.path for u in res.layers[("layer", 1)]] == ["ww"]


def test_caffemodel_layer_params_are_not_read(tmp_path):
    """A binary .caffemodel whose layers carry fields the schema does not know still loads:
    protobuf keeps unknown fields, and Migrator takes only the blobs from it (the
    parameters come from the prototxt, where unknown fields are checked)."""
    nb = densenet_stem(size=32)
    p, m = nb.save(tmp_path / "d.prototxt", tmp_path / "d.caffemodel")
    raw = Path(m).read_bytes()
    net = pb.NetParameter()
    net.ParseFromString(raw)
    # field 1013 inside pooling_param is ceil_mode now; append an unknown field 999 to a layer
    extra = bytes([0xB8, 0x3E, 0x01])          # field 999, varint 1
    lp = net.layer[-1]
    body = lp.SerializeToString() + extra
    lp2 = pb.LayerParameter()
    lp2.ParseFromString(body)
    from google.protobuf.unknown_fields import UnknownFieldSet
    assert len(UnknownFieldSet(lp2)) == 1           # kept, not an error
    net.layer[-1].CopyFrom(lp2)
    Path(m).write_bytes(net.SerializeToString())
    g = load_caffe(p, m)
    assert g.node("pool1").out_shape == (1, 8, 9, 9)


# ------------------------------------------------------------------------------------
# CLI and mapping file
# ------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "migrator.cli", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=600)


def test_cli_inspect_and_convert_exit_2_then_accept(tmp_path):
    p, m = _bn_files(tmp_path, "frob: 1", "")
    for cmd in (["inspect", p, m], ["convert", p, m, "-o", tmp_path / "o.keras"]):
        r = _cli(*cmd)
        assert r.returncode == 2, r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and "layer 'bn'" in err[0] and "'frob'" in err[0] and p in err[0]
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.keras").exists()
    r = _cli("inspect", p, m, "--accept-unknown", "bn.frob")
    assert r.returncode == 0, r.stderr
    assert "unverified" in r.stdout
    r = _cli("inspect", p, m, "--accept-unknown", "bn.frob", "--json")
    assert json.loads(r.stdout)["unknown_fields"][0]["accepted_by"] == "bn.frob"
    # the same through a mapping file
    mp = tmp_path / "map.json"
    mp.write_text(json.dumps({"version": 1, "accept_unknown": ["bn.frob"]}))
    out = tmp_path / "o.keras"
    r = _cli("convert", p, m, "-o", out, "--mapping", mp)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "o.report.json").read_text())
    assert rep["overrides"]["accept_unknown"] == ["bn.frob"]
    bn = next(layer for layer in rep["layers"] if layer["source"] == "bn")
    assert any("semantics unverified" in n for n in bn["notes"])
    assert bn.get("unverified")


def test_cli_inspect_unknown_layer_type_exits_2(tmp_path):
    p = tmp_path / "u.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                 'layer { name: "w" type: "Weird" bottom: "data" top: "w" }\n')
    r = _cli("inspect", p)
    assert r.returncode == 2
    assert "w" in r.stdout and "'w' (Weird)" in r.stderr


def test_mapping_file_schema(tmp_path):
    ov = Overrides.from_dict({"version": 1, "accept_unknown": ["pool1.ceil_mode"],
                              "input_shapes": {"data": [1, 3, 224, 224]}})
    assert ov.to_dict()["accept_unknown"] == ["pool1.ceil_mode"] and bool(ov)
    assert Overrides.from_dict(ov.to_dict()) == ov and ov.copy() == ov
    assert "accept_unknown" not in Overrides().to_dict()
    for bad, key in (({"accept_unknown": "frob"}, "accept_unknown"),
                     ({"accept_unknown": [""]}, "accept_unknown"),
                     ({"input_shapes": {"data": [1, 3, -1, 4]}}, "input_shapes.data"),
                     ({"input_shapes": [1, 3]}, "input_shapes")):
        with pytest.raises(MigratorError) as ei:
            Overrides.from_dict({"version": 1, **bad}, file="m.json")
        assert ei.value.key == key


# ------------------------------------------------------------------------------------
# A misspelt block: the unknown field is the diagnosis, not what it leaves missing
# ------------------------------------------------------------------------------------
TYPO_TEXT = """name: "typo"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  %s { num_output: 8 kernel_size: 3 %s}
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
"""


def _typo_file(tmp_path, block="convoluton_param", extra=""):
    p = tmp_path / "typo.prototxt"
    p.write_text(TYPO_TEXT % (block, extra))
    return str(p)


def _assert_typo_message(msg, p):
    assert "\n" not in msg and p in msg and "layer 'conv1'" in msg
    assert "unknown field 'convoluton_param' (line 9" in msg
    assert "did you mean 'convolution_param'" in msg
    assert "num_output is missing" not in msg.split("reading past it")[0]


def test_misspelt_block_is_reported_before_the_missing_field(tmp_path):
    p = _typo_file(tmp_path)
    with pytest.raises(MigratorError) as ei:
        load_caffe(p)
    assert ei.value.layer == "conv1" and ei.value.file == p
    _assert_typo_message(str(ei.value), p)
    assert "missing" not in str(ei.value)
    # the core open call the CLI uses
    with pytest.raises(MigratorError) as ei:
        flow.open_model([p])
    _assert_typo_message(str(ei.value), p)
    # the GUI opens with unknown='collect': the layer cannot be built past the typo, and the
    # error still names the unknown block first (then what reading past it gave)
    with pytest.raises(MigratorError) as ei:
        flow.open_model([p], unknown="collect")
    msg = str(ei.value)
    _assert_typo_message(msg, p)
    assert msg.index("convoluton_param") < msg.index("convolution_param.num_output is missing")


def test_unknown_field_of_an_earlier_layer_comes_before_a_later_layers_error(tmp_path):
    p = tmp_path / "two.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
                 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { cap: 6 } }\n'
                 'layer { name: "ip" type: "InnerProduct" bottom: "r" top: "ip" }\n')
    with pytest.raises(MigratorError) as ei:
        load_caffe(str(p))
    assert ei.value.layer == "r" and "'relu_param.cap' (line 3" in str(ei.value)


def test_cli_inspect_misspelt_block_exit_2_one_line(tmp_path):
    p = _typo_file(tmp_path)
    r = subprocess.run([sys.executable, "-m", "migrator", "inspect", p],
                       check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    _assert_typo_message(err[0], p)
    assert "missing" not in err[0]


def test_accept_unknown_still_reads_past_a_harmless_field(tmp_path):
    # a known block with one extra field the user vouches for: converts, marked unverified
    p = _typo_file(tmp_path, "convolution_param", "frob: 1 ")
    with pytest.raises(MigratorError, match=r"'convolution_param\.frob' \(line 9"):
        load_caffe(p)
    g = load_caffe(p, accept_unknown=["conv1.convolution_param.frob"])
    assert g.node("conv1").out_shape == (1, 8, 6, 6)
    assert [(r["field"], r["accepted"]) for r in g.meta["caffe"]["unknown_fields"]] == [
        ("convolution_param.frob", True)]
    r = subprocess.run([sys.executable, "-m", "migrator", "inspect", p, "--accept-unknown", "frob"],
                       check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "unverified" in r.stdout
    # accepting the misspelt block reads past it, so the layer really lacks its parameters
    with pytest.raises(MigratorError, match="convolution_param.num_output is missing"):
        load_caffe(_typo_file(tmp_path), accept_unknown=["conv1.convoluton_param"])
