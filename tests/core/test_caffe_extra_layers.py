"""Caffe Slice, Crop and Deconvolution against independent implementations.

* OpenCV DNN's own Caffe importer (``cv2.dnn.readNetFromCaffe``): our numpy reference and
  the converted Keras model (``flow.compare(runtime='opencv')``), layer by layer;
* the real Caffe 1.0 through the legacy runtime (``caffe`` marker; skipped without the
  chroot): same comparisons, plus the cases OpenCV gets wrong (measured: OpenCV ignores a
  Deconvolution's ``dilation`` and the legacy ``slice_dim``, and fails on a Slice
  without slice points);
* closed forms (bilinear FCN upsampling of a constant, the output-size formula).

Odd sizes (13x17), several strides / pads / dilations / groups, rectangular kernels.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.reference import numpy_ref
from migrator.testing.caffe_net import NetBuilder
from tests import proofs
from tests.legacy import caffe_root, not_plain_passes, within_default_tolerance

SHAPE = (2, 4, 13, 17)


def bilinear_kernel(channels: int, k: int) -> np.ndarray:
    """FCN's fixed bilinear upsampling weights, (C, 1, k, k) for group == C."""
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    og = np.ogrid[:k, :k]
    filt = (1 - abs(og[0] - c) / f) * (1 - abs(og[1] - c) / f)
    return np.repeat(filt[None, None].astype(np.float32), channels, axis=0)


def net_extra(opencv: bool = False) -> NetBuilder:
    nb = NetBuilder("extra", seed=11)
    nb.input("data", SHAPE)
    nb.deconv("up", "data", 6, 3, stride=2, pad=1)                              # (2, 6, 25, 33)
    # rectangular, grouped, strided; dilated for the real Caffe only (OpenCV ignores dilation)
    nb.deconv("up_g", "data", 4, (4, 3), stride=(3, 2), pad=(1, 0), group=2,
              dilation=1 if opencv else (2, 1))
    nb.deconv("up_1x1", "data", 3, 1, stride=3, bias=False)                     # k < s: gaps
    nb.deconv("up_d", "up_1x1", 5, (2, 3), pad=(1, 2), dilation=1 if opencv else 3)  # stride 1
    # FCN bilinear upsampling: group == channels, fixed weights, no bias
    nb.deconv("up_bil", "data", 4, 4, stride=2, group=4, bias=False, weight=bilinear_kernel(4, 4))
    nb.slice("sl", "up", ["a", "b", "c"], slice_points=[1, 4])
    nb.relu("relu_b", "b")                                                      # uses output 1
    # equal parts (no slice_point): OpenCV 4.14 fails on that (splits == 0), real Caffe only
    nb.slice("sl_eq", "up_bil", ["h0", "h1"], axis=1, slice_points=[2] if opencv else ())
    nb.slice("sl_h", "data", ["r0", "r1", "r2"], axis=2, slice_points=[2, 7],
             legacy_slice_dim=not opencv)
    nb.eltwise("sum_r", ["r1", "r1"], "sum")                                    # uses output 1
    nb.crop("crop", "up", "data")                                               # axis 2, offset 0
    nb.crop("crop_o", "up_bil", "data", offset=3)
    nb.crop("crop_c", "up_g", "crop_o", axis=1, offset=[0, 2, 1])               # channels too
    nb.crop("crop_w", "up", "data", axis=3, offset=[5])                         # W only
    nb.sigmoid("sig", "crop_c")
    nb.tanh("tanh_o", "crop_o", top="tanh_o")   # a reference that nothing else used would be absent in Keras
    return nb


def _input() -> np.ndarray:
    return np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32) * 2


def _opencv_outputs(proto, model, names_multi, x):
    """{layer: [outputs]} from OpenCV; multi-output layers are fetched alone (OpenCV's buffer
    reuse can overwrite the later outputs when many layers are requested together)."""
    def net():
        n = cv2.dnn.readNetFromCaffe(proto, model)
        n.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        n.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        n.enableFusion(False)
        n.setInput(x)
        return n
    out = {}
    for name, multi in names_multi:
        out[name] = list(net().forwardAndRetrieve([name])[0]) if multi else [net().forward(name)]
    return out


@pytest.fixture(scope="module")
def opencv_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("extra_cv")
    nb = net_extra(opencv=True)
    proto, model = nb.save(d / "extra.prototxt", d / "extra.caffemodel")
    return nb, proto, model


def test_import_ops_and_attrs(opencv_model):
    _, proto, model = opencv_model
    g = load_caffe(proto, model)
    ops = {n.name: n.op for n in g.nodes}
    assert ops["up"] == ops["up_g"] == ops["up_bil"] == "Deconv"
    assert ops["sl"] == ops["sl_h"] == "Slice" and ops["crop_c"] == "Crop"
    assert g.node("sl").num_outputs == 3 and g.node("sl").attrs == {"axis": 1, "slice_points": [1, 4]}
    assert g.node("sl_eq").attrs["slice_points"] == [2]
    assert load_caffe_text_slice_equal_parts() is None
    assert g.node("relu_b").inputs == ["sl:1"] and g.node("sum_r").inputs == ["sl_h:1", "sl_h:1"]
    assert g.node("crop_c").attrs == {"axis": 1, "offsets": [0, 2, 1]}
    assert g.node("crop_c").inputs == ["up_g", "crop_o"]
    assert g.node("up_g").params["weight"].layout == "IOHW"
    # closed-form sizes: s*(L-1) + d*(k-1) + 1 - 2p
    assert g.node("up").out_shape == (2, 6, 2 * 12 + 3 - 2, 2 * 16 + 3 - 2)
    assert g.node("up_g").out_shape == (2, 4, 3 * 12 + 4 - 2, 2 * 16 + 3)
    assert g.node("up_1x1").out_shape == (2, 3, 37, 49)
    assert g.node("crop_c").out_shape == (2, 4, 13, 17)
    assert g.node("crop_w").out_shape == (2, 6, 25, 17)


def load_caffe_text_slice_equal_parts():
    """A Slice without slice points imports with slice_points None (equal parts)."""
    import tempfile
    from pathlib import Path
    nb = NetBuilder("eq", seed=0)
    nb.input("data", (1, 4, 3, 3))
    nb.slice("s", "data", ["a", "b"])
    with tempfile.TemporaryDirectory() as d:
        g = load_caffe(*nb.save(Path(d) / "e.prototxt", Path(d) / "e.caffemodel"))
    assert g.node("s").out_shapes == [(1, 2, 3, 3), (1, 2, 3, 3)]
    return g.node("s").attrs["slice_points"]


@pytest.mark.opencv
def test_reference_vs_opencv_layer_by_layer(opencv_model, record_proof):
    _nb, proto, model = opencv_model
    g = load_caffe(proto, model)
    x = _input()
    ours = numpy_ref.run_all(g, x)
    layers = [n for n in g.nodes if n.op != "Input"]
    theirs = _opencv_outputs(proto, model, [(n.name, n.num_outputs > 1) for n in layers], x)
    bad, worst = [], {}
    for n in layers:
        assert len(theirs[n.name]) == n.num_outputs, n.name
        for j, (mine, cv) in enumerate(zip(ours[n.name], theirs[n.name])):
            assert mine.shape == tuple(n.out_shapes[j]), n.name
            ok, err, bound = within_default_tolerance(cv, mine)
            worst[n.source_type] = max(worst.get(n.source_type, 0.0), err)
            if not ok:
                bad.append((n.name, j, err, bound))
    assert not bad, bad
    assert {"Deconvolution", "Slice", "Crop"} <= set(worst)
    record_proof(g, proofs.OPENCV, [n.name for n in layers])


@pytest.mark.opencv
def test_keras_vs_opencv(opencv_model, record_proof):
    from migrator.core import flow
    _, proto, model = opencv_model
    g = flow.open_model([proto, model])
    plan = flow.plan_model(g)
    assert all(m.supported for m in plan.mappings), [m.error for m in plan.mappings if not m.supported]
    keras_model = flow.build_model(plan)
    res = flow.compare(g, plan, keras_model, _input(), runtime="opencv")
    status = {lr.source: lr.status for lr in res.layers}
    assert all(s == "pass" for s in status.values()), {lr.source: (lr.status, lr.max_abs, lr.note)
                                                        for lr in res.layers if lr.status != "pass"}
    assert set(status) >= {"up", "up_g", "up_1x1", "up_d", "up_bil", "sl", "relu_b", "sl_h",
                           "sum_r", "crop", "crop_o", "crop_c", "crop_w"}
    assert not not_plain_passes(res.layers), not_plain_passes(res.layers)    # shallow: no budget
    record_proof(g, proofs.OPENCV, proofs.passed(res))


def test_bilinear_upsampling_of_a_constant_is_constant(tmp_path):
    """Closed form: FCN's bilinear kernel (k = 2s) reproduces a constant image away from
    the border (each output pixel receives weights summing to 1)."""
    from migrator.core import flow
    nb = NetBuilder("bil", seed=0)
    nb.input("data", (1, 3, 7, 9))
    nb.deconv("up", "data", 3, 8, stride=4, group=3, bias=False, weight=bilinear_kernel(3, 8))
    g = flow.open_model(list(nb.save(tmp_path / "b.prototxt", tmp_path / "b.caffemodel")))
    x = np.full((1, 3, 7, 9), 2.5, np.float32)
    y = numpy_ref.run_all(g, x)["up"][0]
    assert y.shape == (1, 3, 4 * 6 + 8, 4 * 8 + 8)
    np.testing.assert_allclose(y[:, :, 4:-4, 4:-4], 2.5, rtol=1e-6)
    model = flow.build_model(flow.plan_model(g))
    yk = np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(yk[:, :, 4:-4, 4:-4], 2.5, rtol=1e-6)


def test_v1_format_slice_and_deconvolution(tmp_path):
    nb = NetBuilder("v1x", seed=3)
    nb.input("data", (1, 4, 7, 9))
    nb.deconv("up", "data", 2, 3, stride=2, pad=1)
    nb.slice("sl", "up", ["a", "b"], slice_points=[1])
    nb.relu("r", "b")
    g1 = load_caffe(*nb.save(tmp_path / "v1.prototxt", tmp_path / "v1.caffemodel", v1=True,
                             input_style="input_dim"))
    g2 = load_caffe(*nb.save(tmp_path / "v2.prototxt", tmp_path / "v2.caffemodel"))
    assert g1.meta["caffe"]["format"] == "V1"
    assert [n.op for n in g1.nodes] == ["Input", "Deconv", "Slice", "Activation"]
    x = np.random.default_rng(0).standard_normal((1, 4, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(numpy_ref.run_all(g1, x)["r"][0], numpy_ref.run_all(g2, x)["r"][0])


@pytest.mark.parametrize("build, words", [
    (lambda nb: nb.layer("c", "Crop", ["data", "big"], ["c"], {"crop_param": {"offset": [1]}}),
     "does not fit"),
    (lambda nb: nb.layer("c", "Crop", ["big", "data"], ["c"], {"crop_param": {"offset": [1, 2, 3]}}),
     "3 crop offsets for 2"),
    (lambda nb: nb.layer("s", "Slice", ["data"], ["a", "b"], {"slice_param": {"slice_point": [1, 2]}}),
     "2 slice points for 2 tops"),
    (lambda nb: nb.layer("s", "Slice", ["data"], ["a", "b", "c"],
                         {"slice_param": {"slice_point": [2, 1]}}), "not strictly increasing"),
    (lambda nb: nb.layer("d", "Deconvolution", ["data"], ["d"],
                         {"convolution_param": {"num_output": 4, "kernel_size": [3]}},
                         [np.zeros((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)]),
     "does not fit num_output"),
])
def test_bad_input_is_one_line(tmp_path, build, words):
    nb = NetBuilder("bad", seed=0)
    nb.input("data", (1, 4, 5, 5))
    nb.input("big", (1, 4, 9, 9))
    build(nb)
    with pytest.raises(MigratorError) as ei:
        load_caffe(*nb.save(tmp_path / "bad.prototxt", tmp_path / "bad.caffemodel"))
    msg = str(ei.value)
    assert "\n" not in msg and words in msg and ("'c'" in msg or "'s'" in msg or "'d'" in msg), msg


# ------------------------------------------------------------------------------------
# the real Caffe 1.0 (legacy runtime), including dilation and slice_dim
# ------------------------------------------------------------------------------------
@pytest.mark.caffe
@pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")
def test_real_caffe_vs_reference_and_keras(tmp_path, record_proof):
    from migrator.core import flow
    from migrator.core.reference.runtimes import get_runtime
    from tests.legacy import caffe_command
    nb = net_extra(opencv=False)
    proto, model = nb.save(tmp_path / "extra.prototxt", tmp_path / "extra.caffemodel")
    g = flow.open_model([proto, model])
    assert g.node("up_d").attrs["dilation"] == (3, 3) and g.node("sl_h").attrs["axis"] == 2
    x = _input()
    rt = get_runtime("legacy", command=caffe_command())
    real = dict(rt.run(g, x))
    assert rt.warnings == [], rt.warnings
    ours = numpy_ref.run_all(g, x)
    bad = []
    for n in g.nodes:
        assert len(real[n.name]) == n.num_outputs, n.name
        for j, (mine, theirs) in enumerate(zip(ours[n.name], real[n.name])):
            ok, err, bound = within_default_tolerance(theirs, mine)
            if not ok:
                bad.append((n.name, j, err, bound))
    assert not bad, bad
    plan = flow.plan_model(g)
    res = flow.compare(g, plan, flow.build_model(plan), x, runtime="legacy",
                           runtime_settings={"command": caffe_command()})
    assert res.runtime["versions"]["caffe"] == "1.0.0"
    not_pass = {lr.source: (lr.status, lr.max_abs, lr.note) for lr in res.layers if lr.status != "pass"}
    assert not not_pass, not_pass
    assert not not_plain_passes(res.layers), not_plain_passes(res.layers)    # shallow: no budget
    record_proof(g, proofs.REAL_CAFFE, [n.name for n in g.nodes])


def test_crop_reference_used_only_for_its_shape(tmp_path):
    """The branch that only gives a Crop its reference shape is pruned by Keras (no output
    depends on it): the comparison says so instead of failing, and the Crop itself passes."""
    from migrator.core import flow
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("cropref", seed=3)
    nb.input("data", (1, 3, 13, 17))
    nb.conv("big", "data", 4, 3, pad=2)
    nb.conv("small", "data", 4, 3)          # consumed only as the Crop's reference
    nb.crop("crop", "big", "small", axis=2, offset=(1, 2))
    files = nb.save(tmp_path / "c.prototxt", tmp_path / "c.caffemodel")
    g = flow.open_model(files)
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    x = np.random.default_rng(0).standard_normal((1, 3, 13, 17)).astype(np.float32)
    res = flow.compare(g, plan, model, x)
    by = {r.source: r for r in res.layers}
    assert by["crop"].status == "pass" and by["big"].status == "pass"
    assert by["small"].status == "not-compared" and "not part of the model" in by["small"].note
    assert res.passed
    assert not not_plain_passes(res.layers), not_plain_passes(res.layers)
