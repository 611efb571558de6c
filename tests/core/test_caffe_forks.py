"""Caffe fork layer types (ReLU6, Upsample, Interp, Permute, Normalize, depthwise
convolutions, ShuffleChannel) against independent implementations:

* naive numpy loops written here from the forks' definitions (DeepLab's interp2 weights,
  SSD's Normalize, ShuffleNet's channel shuffle, YOLOv3's nearest Upsample);
* OpenCV DNN's own Caffe importer, for the types it knows (ReLU6, Interp with zoom_factor
  or height/width, Permute, Normalize, ConvolutionDepthwise, ShuffleChannel);
* TensorFlow's ``resize_bilinear(align_corners=True)`` (another implementation of the
  align-corners rule) and a closed form (linear ramps are interpolated exactly);
* the real BVLC Caffe (chroot, ``caffe`` marker) running the *same arithmetic written
  with BVLC types*: ReLU6 = ReLU(x) - ReLU(x - 6); Upsample = a ones-kernel
  Deconvolution; Interp zoom z = a bilinear (triangle) Deconvolution with kernel 2z-1,
  stride z, pad z-1; depthwise = Convolution with group = C; ShuffleChannel = Slice into
  single channels + Concat in the shuffled order.

Every case is also converted to Keras and verified layer by layer, and the saved model
loads with plain Keras (built-in layers only).
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core import flow
from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.reference import numpy_ref
from migrator.testing.caffe_net import NetBuilder
from tests.core.naive_ops import conv2d as naive_conv2d
from tests.legacy import caffe_root, within_default_tolerance

SHAPE = (2, 6, 9, 11)
F32 = np.float32


def _x(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32) * 3


# ------------------------------------------------------------------------------------
# naive implementations from the forks' definitions
# ------------------------------------------------------------------------------------
def _interp_taps(r, o, L):
    """(i, step to the next source index (0 at the last), weight of i, weight of i + step) of
    output index ``o``: src = r*o, i = int(src), l = src - i, all float32 as in interp2."""
    src = F32(r * F32(o))
    i = int(src)
    l1 = F32(src - F32(i))
    return i, 1 if i < L - 1 else 0, F32(1) - l1, l1


def naive_interp(x, oh, ow, pad_beg=0, pad_end=0):
    """DeepLab interp2: crop to [-pad_beg, L + pad_end), then for every output pixel the
    float32 weights r = (L-1)/(out-1), src = r*o, i = int(src), l = src - i."""
    N, C, H, W = x.shape
    h1, w1 = H + pad_beg + pad_end, W + pad_beg + pad_end
    o0 = -pad_beg
    y = np.zeros((N, C, oh, ow), F32)
    if (h1, w1) == (oh, ow):
        return x[:, :, o0:o0 + h1, o0:o0 + w1].copy()
    rh = F32(h1 - 1) / F32(oh - 1) if oh > 1 else F32(0)
    rw = F32(w1 - 1) / F32(ow - 1) if ow > 1 else F32(0)
    for i2 in range(oh):
        i1, ip, hl0, hl1 = _interp_taps(rh, i2, h1)
        for j2 in range(ow):
            j1, jp, wl0, wl1 = _interp_taps(rw, j2, w1)
            a = x[:, :, o0 + i1, o0 + j1]
            b = x[:, :, o0 + i1, o0 + j1 + jp]
            c = x[:, :, o0 + i1 + ip, o0 + j1]
            d = x[:, :, o0 + i1 + ip, o0 + j1 + jp]
            y[:, :, i2, j2] = hl0 * (wl0 * a + wl1 * b) + hl1 * (wl0 * c + wl1 * d)
    return y


def naive_normalize(x, scale, across_spatial, eps):
    y = np.zeros_like(x, dtype=np.float64)
    xd = x.astype(np.float64)
    for n in range(x.shape[0]):
        if across_spatial:
            y[n] = xd[n] / np.sqrt((xd[n] ** 2).sum() + eps)
        else:
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    y[n, :, i, j] = xd[n, :, i, j] / np.sqrt((xd[n, :, i, j] ** 2).sum() + eps)
    s = np.asarray(scale, np.float64).reshape(-1)
    for c in range(x.shape[1]):
        y[:, c] *= s[0] if s.size == 1 else s[c]
    return y


def naive_shuffle(x, g):
    C = x.shape[1]
    y = np.empty_like(x)
    for j in range(g):                 # group j, member k goes to k*g + j
        for k in range(C // g):
            y[:, k * g + j] = x[:, j * (C // g) + k]
    return y


def naive_upsample(x, sh, sw):
    N, C, H, W = x.shape
    y = np.empty((N, C, H * sh, W * sw), x.dtype)
    for i in range(H * sh):
        for j in range(W * sw):
            y[:, :, i, j] = x[:, :, i // sh, j // sw]
    return y


# ------------------------------------------------------------------------------------
# the cases: (name, build(nb) adding layers after 'data', naive(x, nb) -> expected output)
# ------------------------------------------------------------------------------------
def _interp_case(**kw):
    def build(nb):
        nb.interp("ip", "data", **kw)

    def naive(x, nb):
        H, W = x.shape[2:]
        pb, pe = kw.get("pad_beg", 0), kw.get("pad_end", 0)
        he, we = H + pb + pe, W + pb + pe
        if "height" in kw:
            oh, ow = kw["height"], kw["width"]
        else:
            s, z = kw.get("shrink_factor", 1), kw.get("zoom_factor", 1)
            oh, ow = (he - 1) // s + 1, (we - 1) // s + 1
            oh, ow = oh + (oh - 1) * (z - 1), ow + (ow - 1) * (z - 1)
        return naive_interp(x, oh, ow, pb, pe)
    return build, naive


CASES = {
    "relu6": (lambda nb: nb.relu6("r6", "data"), lambda x, nb: np.minimum(np.maximum(x, 0), 6)),
    "upsample2": (lambda nb: nb.upsample("up", "data", 2), lambda x, nb: naive_upsample(x, 2, 2)),
    "upsample_hw": (lambda nb: nb.upsample("up", "data", (3, 2)),
                    lambda x, nb: naive_upsample(x, 3, 2)),
    "interp_zoom": _interp_case(zoom_factor=3),
    "interp_shrink": _interp_case(shrink_factor=2),
    "interp_size": _interp_case(height=20, width=7),
    "interp_shrink_zoom": _interp_case(shrink_factor=2, zoom_factor=3),
    "interp_pad": _interp_case(zoom_factor=2, pad_beg=-1, pad_end=-2),
    "permute": (lambda nb: nb.permute("pm", "data", [0, 2, 3, 1]),
                lambda x, nb: x.transpose(0, 2, 3, 1)),
    "permute_hw": (lambda nb: nb.permute("pm", "data", [0, 1, 3, 2]),
                   lambda x, nb: x.transpose(0, 1, 3, 2)),
    "normalize": (lambda nb: nb.normalize("nm", "data"),
                  lambda x, nb: naive_normalize(x, nb.weights["nm"][0], False, 1e-10)),
    "normalize_across_shared": (
        lambda nb: nb.normalize("nm", "data", across_spatial=True, channel_shared=True),
        lambda x, nb: naive_normalize(x, nb.weights["nm"][0], True, 1e-10)),
    "depthwise": (lambda nb: nb.depthwise_conv("dw", "data", 3, stride=2, pad=1),
                  lambda x, nb: naive_conv2d(x, nb.weights["dw"][0], nb.weights["dw"][1], (2, 2),
                                             (1, 1), group=6)),
    "depthwise_dc": (lambda nb: nb.depthwise_conv("dw", "data", (3, 5), pad=(1, 2), bias=False,
                                                  type_="DepthwiseConvolution", write_group=True),
                     lambda x, nb: naive_conv2d(x, nb.weights["dw"][0], None, (1, 1), (1, 2),
                                                group=6)),
    "normalize_eps": (lambda nb: nb.normalize("nm", "data", eps=1e-3),
                      lambda x, nb: naive_normalize(x, nb.weights["nm"][0], False, 1e-3)),
    "normalize_across_eps": (lambda nb: nb.normalize("nm", "data", across_spatial=True, eps=30.0),
                             lambda x, nb: naive_normalize(x, nb.weights["nm"][0], True, 30.0)),
    # two bottoms: the output takes the second bottom's (H, W) (floor pooling: 9x11 -> 4x5;
    # nearest Upsample: 9x11 -> 18x22)
    "interp_like_down": (lambda nb: (nb.pool("ref", "data", "max", 2, stride=2, round_mode="FLOOR"),
                                     nb.layer("ip", "Interp", ["data", "ref"], ["ip"])),
                         lambda x, nb: naive_interp(x, 4, 5)),
    "interp_like_up": (lambda nb: (nb.upsample("ref", "data", 2),
                                   nb.layer("ip", "Interp", ["data", "ref"], ["ip"],
                                            {"interp_param": {"pad_beg": -1}})),
                       lambda x, nb: naive_interp(x, 18, 22, pad_beg=-1)),
    "shuffle3": (lambda nb: nb.shuffle_channel("sh", "data", 3), lambda x, nb: naive_shuffle(x, 3)),
    "shuffle2": (lambda nb: nb.shuffle_channel("sh", "data", 2), lambda x, nb: naive_shuffle(x, 2)),
}


def _save(tmp_path, name, shape=SHAPE, seed=3):
    nb = NetBuilder(name, seed=seed)
    nb.input("data", shape)
    CASES[name][0](nb)
    p, m = nb.save(tmp_path / f"{name}.prototxt", tmp_path / f"{name}.caffemodel")
    return nb, p, m


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_vs_naive_and_keras(tmp_path, name):
    nb, p, m = _save(tmp_path, name)
    g = flow.open_model([p, m])
    x = _x()
    want = CASES[name][1](x, nb)
    last = g.nodes[-1]
    assert last.out_shape == tuple(want.shape)
    got = numpy_ref.run_all(g, x)[last.name][0]
    ok, err, bound = within_default_tolerance(want, got, atol=1e-6, rtol=1e-6)
    assert ok, (name, err, bound)
    plan = flow.plan_model(g)
    assert not plan.unsupported, [(u.source, u.error) for u in plan.unsupported]
    model = flow.build_model(plan)
    res = flow.compare(g, plan, model, x)
    assert res.passed, [(r.source, r.max_abs, r.max_rel) for r in res.layers]
    # Keras output against the naive implementation directly (channels-last -> NCHW)
    k = np.asarray(model(np.transpose(x, (0, 2, 3, 1))))
    k = np.transpose(k, (0, 3, 1, 2)) if want.ndim == 4 else k
    ok, err, bound = within_default_tolerance(want, k)
    assert ok, (name, "keras", err, bound)
    # built-in Keras layers only: the model is usable without Migrator
    from migrator.core.keras_build import custom_layers
    used = {s.class_name for s in plan.keras_layers}
    assert not used & set(custom_layers.CUSTOM_LAYERS), used


OPENCV_CASES = ["relu6", "interp_zoom", "interp_size", "permute", "permute_hw", "normalize",
                "normalize_across_shared", "depthwise", "shuffle3", "shuffle2"]


@pytest.mark.opencv
@pytest.mark.parametrize("name", OPENCV_CASES)
def test_reference_vs_opencv(tmp_path, name):
    import cv2
    _nb, p, m = _save(tmp_path, name)
    net = cv2.dnn.readNetFromCaffe(str(p), str(m))
    x = _x()
    net.setInput(x)
    theirs = net.forward()
    g = load_caffe(str(p), str(m))
    ours = numpy_ref.run_all(g, x)[g.nodes[-1].name][0]
    ok, err, bound = within_default_tolerance(theirs, ours)
    assert ok, (name, err, bound)


@pytest.mark.parametrize("kw,out", [({"zoom_factor": 4}, (33, 41)), ({"height": 5, "width": 30}, (5, 30)),
                                    ({"shrink_factor": 3}, (3, 4))])
def test_interp_vs_tensorflow_align_corners(tmp_path, kw, out):
    import tensorflow as tf
    nb = NetBuilder("i", seed=0)
    nb.input("data", SHAPE)
    nb.interp("ip", "data", **kw)
    p, _ = nb.save(tmp_path / "i.prototxt")
    g = load_caffe(str(p))
    assert g.node("ip").out_shape[2:] == out
    x = _x()
    ours = numpy_ref.run_all(g, x)["ip"][0]
    tfy = tf.compat.v1.image.resize_bilinear(np.transpose(x, (0, 2, 3, 1)), out, align_corners=True)
    theirs = np.transpose(np.asarray(tfy), (0, 3, 1, 2))
    assert np.abs(theirs - ours).max() <= 2e-6 * np.abs(x).max()


def test_interp_of_a_linear_ramp_is_exact(tmp_path):
    """Align-corners bilinear interpolation reproduces a linear function exactly:
    output (o_h, o_w) = f(o_h * (H-1)/(oh-1), o_w * (W-1)/(ow-1))."""
    H, W, z = 5, 7, 3
    nb = NetBuilder("ramp")
    nb.input("data", (1, 1, H, W))
    nb.interp("ip", "data", zoom_factor=z)
    p, _ = nb.save(tmp_path / "r.prototxt")
    g = load_caffe(str(p))
    ii, jj = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    x = (2.0 * ii - 0.5 * jj + 1.0).astype(F32)[None, None]
    y = numpy_ref.run_all(g, x)["ip"][0][0, 0]
    oh, ow = z * (H - 1) + 1, z * (W - 1) + 1
    oi, oj = np.meshgrid(np.arange(oh) / z, np.arange(ow) / z, indexing="ij")
    np.testing.assert_allclose(y, 2.0 * oi - 0.5 * oj + 1.0, atol=1e-5)


def test_saved_model_loads_with_plain_keras(tmp_path):
    import keras
    nb = NetBuilder("all", seed=1)
    nb.input("data", (1, 6, 9, 11))
    nb.conv("c1", "data", 12, 3, pad=1)
    nb.relu6("r6", "c1")
    nb.depthwise_conv("dw", "r6", 3, pad=1)
    nb.shuffle_channel("sh", "dw", 3)
    nb.normalize("nm", "sh")
    nb.upsample("up", "nm", 2)
    nb.interp("ip", "up", zoom_factor=2)
    nb.permute("pm", "ip", [0, 2, 3, 1])
    p, m = nb.save(tmp_path / "all.prototxt", tmp_path / "all.caffemodel")
    g = flow.open_model([p, m])
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    x = _x((1, 6, 9, 11))
    res = flow.compare(g, plan, model, x)
    assert res.passed
    out = tmp_path / "all.keras"
    model.save(out)
    back = keras.saving.load_model(out, compile=False)     # no custom_objects
    xk = np.transpose(x, (0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(back(xk)), np.asarray(model(xk)))


@pytest.mark.parametrize("text,words", [
    (('layer { name: "u" type: "Upsample" bottom: "data" bottom: "mask" top: "u" '
     'upsample_param { scale: 2 upsample_h: 8 } }'), ["upsample_h and upsample_w"]),
    (('layer { name: "u" type: "Upsample" bottom: "data" bottom: "mask" top: "u" '
     'upsample_param { scale: 1 } }'), ["scale", "must be > 1"]),
    (('layer { name: "u" type: "Upsample" bottom: "data" bottom: "mask" top: "u" '
     'upsample_param { scale: 3 pad_out_h: true } }'), ["pad_out_h", "scale of 2"]),
    (('layer { name: "u" type: "Upsample" bottom: "data" top: "u" '
     'upsample_param { upsample_h: 8 upsample_w: 8 } }'), ["second bottom"]),
    (('layer { name: "u" type: "Upsample" bottom: "data" bottom: "mask" bottom: "data" top: "u" '
     'upsample_param { scale: 2 } }'), ["3 bottoms"]),
    (('layer { name: "u" type: "Interp" bottom: "data" bottom: "mask" top: "u" interp_param { '
     'zoom_factor: 2 } }'), ["second bottom", "zoom_factor"]),
    ('layer { name: "u" type: "Upsample" bottom: "data" top: "u" }', ["upsample_param.scale"]),
    (('layer { name: "u" type: "Interp" bottom: "data" top: "u" interp_param { zoom_factor: 2 '
     'pad_beg: 1 } }'), ["pad_beg"]),
    ('layer { name: "u" type: "Interp" bottom: "data" top: "u" }', ["zoom_factor"]),
    (('layer { name: "u" type: "ShuffleChannel" bottom: "data" top: "u" '
     'shuffle_channel_param { group: 4 } }'), ["6 channels", "4 groups"]),
    ('layer { name: "u" type: "Permute" bottom: "data" top: "u" permute_param { order: 0 order: 0 } }',
     ["repeats"]),
])
def test_bad_fork_layers_are_one_line_errors(tmp_path, text, words):
    p = tmp_path / "bad.prototxt"
    p.write_text('input: "data"\ninput_shape { dim: 1 dim: 6 dim: 8 dim: 8 }\n'
                 'input: "mask"\ninput_shape { dim: 1 dim: 6 dim: 8 dim: 8 }\n' + text + "\n")
    with pytest.raises(MigratorError) as ei:
        load_caffe(str(p))
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg and "layer 'u'" in msg
    for w in words:
        assert w in msg, msg


def test_normalize_with_a_large_eps_keeps_the_eps(tmp_path):
    """eps > 1e-6 is not dropped (UnitNormalization has none): the fork's x / sqrt(sum x^2 + eps)
    exactly, where dropping it would be off by far more than the tolerance."""
    nb = NetBuilder("n", seed=0)
    nb.input("data", SHAPE)
    nb.normalize("nm", "data", eps=1e-3)
    p, m = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    plan = flow.plan_model(flow.open_model([p, m]))
    assert not plan.unsupported
    assert next(s.class_name for s in plan.mapping("nm").layers) == "EpsL2Normalization"
    model = flow.build_model(plan)
    x = _x() * 1e-2                     # sum x^2 ~ 6e-4 per position: comparable to eps
    want = naive_normalize(x, nb.weights["nm"][0], False, 1e-3)
    k = np.transpose(np.asarray(model(np.transpose(x, (0, 2, 3, 1)))), (0, 3, 1, 2))
    np.testing.assert_allclose(k, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want, naive_normalize(x, nb.weights["nm"][0], False, 0.0), rtol=1e-2)


# ------------------------------------------------------------------------------------
# real Caffe: the same arithmetic written with BVLC layer types
# ------------------------------------------------------------------------------------
def _bvlc_equivalent(name, fork_nb, C=SHAPE[1]):
    """A BVLC-only net computing what the fork case computes (same weights)."""
    nb = NetBuilder(name + "_bvlc")
    nb.input("data", SHAPE)
    N, _, H, W = SHAPE
    if name == "relu6":
        nb.relu("a", "data", top="a")
        nb.power("s", "data", shift=-6.0, top="s")
        nb.relu("b", "s", top="b")
        nb.eltwise("out", ["a", "b"], "sum", coeffs=[1.0, -1.0])
    elif name == "upsample2":
        nb.layer("out", "Deconvolution", ["data"], ["out"],
                 {"convolution_param": {"num_output": C, "kernel_size": [2], "stride": [2],
                                        "group": C, "bias_term": False}},
                 [np.ones((C, 1, 2, 2), F32)], (N, C, 2 * H, 2 * W))
    elif name == "interp_zoom":
        z = 3
        k = 2 * z - 1
        tri = 1.0 - np.abs(np.arange(k) - (z - 1)) / z
        w = np.broadcast_to(np.outer(tri, tri).astype(F32), (C, 1, k, k)).copy()
        nb.layer("out", "Deconvolution", ["data"], ["out"],
                 {"convolution_param": {"num_output": C, "kernel_size": [k], "stride": [z],
                                        "pad": [z - 1], "group": C, "bias_term": False}},
                 [w], (N, C, z * (H - 1) + 1, z * (W - 1) + 1))
    elif name == "depthwise":
        wgt, b = fork_nb.weights["dw"]
        nb.layer("out", "Convolution", ["data"], ["out"],
                 {"convolution_param": {"num_output": C, "kernel_size": [3], "stride": [2],
                                        "pad": [1], "group": C}}, [wgt, b])
    elif name in ("shuffle3", "shuffle2"):
        g = int(name[-1])
        tops = [f"c{i}" for i in range(C)]
        nb.layer("sl", "Slice", ["data"], tops, {"slice_param": {"axis": 1,
                                                                 "slice_point": list(range(1, C))}})
        order = [j * (C // g) + k for k in range(C // g) for j in range(g)]
        nb.layer("out", "Concat", [tops[i] for i in order], ["out"], {"concat_param": {"axis": 1}})
    else:
        raise KeyError(name)
    return nb


@pytest.mark.caffe
@pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")
@pytest.mark.parametrize("name", ["relu6", "upsample2", "interp_zoom", "depthwise", "shuffle3",
                                  "shuffle2"])
def test_real_caffe_with_bvlc_equivalent(tmp_path, name):
    from migrator.core.reference.runtimes import get_runtime
    from tests.legacy import caffe_command
    fork_nb, p, m = _save(tmp_path, name)
    g = flow.open_model([p, m])
    x = _x()
    ours = numpy_ref.run_all(g, x)[g.nodes[-1].name][0]
    bnb = _bvlc_equivalent(name, fork_nb)
    bp, bm = bnb.save(tmp_path / f"{name}_bvlc.prototxt", tmp_path / f"{name}_bvlc.caffemodel")
    bg = flow.open_model([bp, bm])
    rt = get_runtime("legacy", command=caffe_command())
    real = dict(rt.run(bg, x))
    theirs = real[bg.nodes[-1].name][0]
    ok, err, bound = within_default_tolerance(theirs, ours)
    assert ok, (name, err, bound)
