"""SegNet's max-unpooling: a Caffe MAX ``Pooling`` with two tops (output, argmax mask) and the
SegNet fork's ``Upsample`` taking that mask as its second bottom.

Independent references, written here from the frameworks' definitions:

* the mask: BVLC ``pooling_layer.cpp`` -- per output cell, the window clipped to the input,
  visited row-major; an element replaces the running maximum (initially -FLT_MAX) only when
  strictly greater; the mask is the flat index ``h * W + w`` (or -1);
* the unpooling: SegNet's ``upsample_layer.cpp`` -- zeros, then ``top[mask[i]] = bottom[i]``
  for every i in row-major order per (n, c) plane (a later i overwrites an earlier one).

Both the Keras model and Migrator's reference kernels are compared with these loops.  BVLC
Caffe has no Upsample, so the mask alone is also checked against real Caffe
(``tests/legacy/test_caffe_bridge.py``).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from migrator.core import flow
from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.ir import Node
from migrator.core.reference import numpy_ref
from migrator.core.reference.kernels import KERNELS
from migrator.testing.caffe_net import NetBuilder
from tests.core.naive_ops import conv2d as naive_conv2d

F32 = np.float32
FLT_MAX = float(np.finfo(np.float32).max)


def caffe_pool_out(L, k, s, p):
    o = -(-(L + 2 * p - k) // s) + 1
    if p > 0 and (o - 1) * s >= L + p:
        o -= 1
    return o


def naive_max_pool_with_mask(x, k, s, p):
    """BVLC's MAX pooling forward with a mask top, loop by loop."""
    N, C, H, W = x.shape
    Ho, Wo = caffe_pool_out(H, k, s, p), caffe_pool_out(W, k, s, p)
    top = np.full((N, C, Ho, Wo), -FLT_MAX, np.float64)
    mask = np.full((N, C, Ho, Wo), -1.0)
    for n in range(N):
        for c in range(C):
            for ph in range(Ho):
                for pw in range(Wo):
                    hstart, wstart = ph * s - p, pw * s - p
                    hend, wend = min(hstart + k, H), min(wstart + k, W)
                    hstart, wstart = max(hstart, 0), max(wstart, 0)
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if x[n, c, h, w] > top[n, c, ph, pw]:
                                top[n, c, ph, pw] = x[n, c, h, w]
                                mask[n, c, ph, pw] = h * W + w
    return top, mask


def naive_unpool(x, mask, H, W):
    """SegNet's Upsample forward, loop by loop."""
    N, C, h, w = x.shape
    y = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for i in range(h * w):
                idx = int(mask[n, c].flat[i])
                assert 0 <= idx < H * W
                y[n, c, idx] = x[n, c].flat[i]
    return y.reshape(N, C, H, W)


#: (kernel, stride, pad, H, W, upsample_param): SegNet's 2x2/2, odd sizes with pad_out, explicit
#: upsample_h/w, overlapping windows (k > s: a position can be the argmax of several cells, and
#: the decoder's different values collide -- the last one wins), Caffe's ceil overhang
GEOMETRIES = {
    "segnet_2x2": (2, 2, 0, 8, 10, {"scale": 2}),
    "odd_pad_out": (2, 2, 0, 9, 11, {"scale": 2, "pad_out_h": True, "pad_out_w": True}),
    "explicit_size": (2, 2, 0, 9, 11, {"upsample_h": 9, "upsample_w": 11}),
    "overlap_3x3_s2_p1": (3, 2, 1, 9, 11, {"upsample_h": 9, "upsample_w": 11}),
    "overlap_3x3_s1_p1": (3, 1, 1, 6, 7, {"upsample_h": 6, "upsample_w": 7}),
    "ceil_3x3_s2": (3, 2, 0, 10, 12, {"upsample_h": 10, "upsample_w": 12}),
    "taller_output": (2, 2, 0, 8, 10, {"upsample_h": 11, "upsample_w": 10}),
}


def segnet_block(tmp_path, name, k, s, p, H, W, up, C=4):
    """data -> conv (c1) -> MAX pool with mask -> conv (c2, the decoder's values) -> Upsample
    with the mask -> conv (c3)."""
    nb = NetBuilder(name, seed=5)
    nb.input("data", (2, 3, H, W))
    nb.conv("c1", "data", C, 3, pad=1)
    pp = {"pool": "MAX", "kernel_size": k, "stride": s}
    if p:
        pp["pad"] = p
    ho, wo = caffe_pool_out(H, k, s, p), caffe_pool_out(W, k, s, p)
    nb.layer("pool1", "Pooling", ["c1"], ["pool1", "pool1_mask"], {"pooling_param": pp},
             out_shape=(2, C, ho, wo))
    nb.conv("c2", "pool1", C, 3, pad=1)
    if "upsample_h" in up:
        out = (up["upsample_h"], up["upsample_w"])
    else:
        out = (ho * 2 - int(up.get("pad_out_h", False)), wo * 2 - int(up.get("pad_out_w", False)))
    nb.layer("up1", "Upsample", ["c2", "pool1_mask"], ["up1"], {"upsample_param": up},
             out_shape=(2, C) + out)
    nb.conv("c3", "up1", 2, 3, pad=1)
    prot, model = nb.save(tmp_path / f"{name}.prototxt", tmp_path / f"{name}.caffemodel")
    return nb, prot, model, out


def naive_segnet(nb, x, k, s, p, out):
    c1 = naive_conv2d(x, *nb.weights["c1"], pad=(1, 1))
    pool, mask = naive_max_pool_with_mask(c1, k, s, p)
    c2 = naive_conv2d(pool, *nb.weights["c2"], pad=(1, 1))
    up = naive_unpool(c2, mask, *out)
    c3 = naive_conv2d(up, *nb.weights["c3"], pad=(1, 1))
    return {"pool1": pool, "pool1_mask": mask, "up1": up, "c3": c3}


def _x(H, W, seed=0):
    return np.random.default_rng(seed).standard_normal((2, 3, H, W)).astype(F32)


def _keras_outputs(model, plan, x, layers):
    """Keras layer name -> its output (NCHW), run layer by layer as the comparison does."""
    from migrator.core.keras_build.executor import iter_keras_outputs
    got = dict(iter_keras_outputs(model, plan, np.transpose(x, (0, 2, 3, 1)), want=layers))
    return {n: np.transpose(np.asarray(got[n]), (0, 3, 1, 2)) for n in layers}


@pytest.mark.parametrize("case", sorted(GEOMETRIES))
def test_segnet_block_vs_naive(tmp_path, case):
    k, s, p, H, W, up = GEOMETRIES[case]
    nb, prot, model_file, out = segnet_block(tmp_path, case, k, s, p, H, W, up)
    g = flow.open_model([prot, model_file])
    assert [n.op for n in g.nodes] == ["Input", "Conv", "Pool", "Conv", "MaxUnpool", "Conv"]
    assert g.node("up1").out_shape == (2, 4) + out
    x = _x(H, W)
    want = naive_segnet(nb, x, k, s, p, out)
    if case.startswith("overlap"):   # collisions really happen: some position has 2+ writers
        m = want["pool1_mask"].reshape(2 * 4, -1)
        assert any(len(np.unique(r)) < r.size for r in m)

    # Migrator's reference kernels against the loops
    ref = numpy_ref.run_all(g, x)
    np.testing.assert_array_equal(ref["pool1"][1], want["pool1_mask"])
    np.testing.assert_allclose(ref["up1"][0], want["up1"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref["c3"][0], want["c3"], rtol=1e-5, atol=1e-5)

    # the Keras model against the loops (the mask exactly)
    plan = flow.plan_model(g)
    assert not plan.unsupported, [(u.source, u.error) for u in plan.unsupported]
    model = flow.build_model(plan)
    mask_layer = [sp.name for sp in plan.mapping("pool1").layers if sp.class_name == "MaxPoolMask"]
    names = [mask_layer[0], plan.mapping("up1").keras_output, plan.mapping("c3").keras_output]
    got = _keras_outputs(model, plan, x, names)
    np.testing.assert_array_equal(got[names[0]], want["pool1_mask"])
    np.testing.assert_allclose(got[names[1]], want["up1"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[names[2]], want["c3"], rtol=1e-5, atol=1e-5)
    final = np.transpose(np.asarray(model(np.transpose(x, (0, 2, 3, 1)))), (0, 3, 1, 2))
    np.testing.assert_allclose(final, want["c3"], rtol=1e-5, atol=1e-5)

    # and the layer-by-layer comparison (both pooling outputs) passes
    res = flow.compare(g, plan, model, x)
    assert res.passed, [(r.source, r.status, r.note) for r in res.layers]
    pool = next(r for r in res.layers if r.source == "pool1")
    assert [o["output"] for o in pool.outputs] == [0, 1] and pool.outputs[1]["max_abs"] == 0.0


def test_ties_keep_the_first_maximum():
    """Equal values in a window: the strict > keeps the first one in row-major order."""
    x = np.zeros((1, 1, 4, 4), F32)
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5
    node = Node("p", "Pool", ["x"], attrs={"mode": "max", "kernel": (2, 2), "stride": (2, 2),
                                           "pad": (0, 0), "rounding": "caffe_ceil",
                                           "avg_divisor": "caffe"}, num_outputs=2)
    y, mask = KERNELS["Pool"](node, [x])
    want = naive_max_pool_with_mask(x, 2, 2, 0)[1]
    np.testing.assert_array_equal(mask, want)
    assert mask[0, 0, 0, 0] == 1            # (0, 1) comes before (1, 0) and (1, 1)
    # an all -inf window beats nothing: the mask stays -1, as Caffe's
    x2 = np.full((1, 1, 2, 2), -np.inf, F32)
    m2 = KERNELS["Pool"](node, [x2])[1]
    np.testing.assert_array_equal(m2, naive_max_pool_with_mask(x2, 2, 2, 0)[1])
    assert m2[0, 0, 0, 0] == -1


def test_unpool_kernel_refuses_an_index_outside_the_output():
    node = Node("u", "MaxUnpool", ["x", "m"], attrs={"scale": (2, 2), "pad_out": (False, False),
                                                    "size": None})
    x = np.ones((1, 1, 2, 2), F32)
    m = np.array([[[[0, 1], [2, 16]]]], F32)          # 16 >= 4 * 4
    with pytest.raises(MigratorError) as ei:
        KERNELS["MaxUnpool"](node, [x, m])
    assert "16" in str(ei.value) and "\n" not in str(ei.value)
    # within range: the last write wins
    m = np.array([[[[5, 5], [2, 3]]]], F32)
    x = np.array([[[[1, 7], [3, 4]]]], F32)
    y = KERNELS["MaxUnpool"](node, [x, m])[0]
    np.testing.assert_array_equal(y, naive_unpool(x, m, 4, 4))
    assert y[0, 0, 1, 1] == 7


@pytest.mark.slow
def test_saved_model_loads_without_migrator(tmp_path):
    """The SegNet block saves to .keras and loads with plain Keras in a fresh process that never
    imports Migrator (safe_mode, no custom_objects), giving the same output."""
    k, s, p, H, W, up = GEOMETRIES["overlap_3x3_s2_p1"]
    _, prot, model_file, _ = segnet_block(tmp_path, "save", k, s, p, H, W, up)
    g = flow.open_model([prot, model_file])
    model = flow.build_model(flow.plan_model(g))
    path = tmp_path / "segnet.keras"
    model.save(path)
    x = np.transpose(_x(H, W, 3), (0, 2, 3, 1))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", np.asarray(model(x)))
    code = ("import sys, numpy as np, keras\n"
            f"m = keras.saving.load_model({str(path)!r}, compile=False, safe_mode=True)\n"
            f"x = np.load({str(tmp_path / 'x.npy')!r}); want = np.load({str(tmp_path / 'want.npy')!r})\n"
            "np.testing.assert_allclose(np.asarray(m(x)), want, rtol=1e-6, atol=1e-6)\n"
            "assert not [k for k in sys.modules if k.startswith('migrator')]\n"
            "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_unpool_without_a_pooling_mask_is_reported_by_name(tmp_path):
    """A mask that is not a Pooling's second top has no window geometry: unsupported, named."""
    nb = NetBuilder("nomask")
    nb.input("data", (1, 2, 4, 4))
    nb.input("mask", (1, 2, 4, 4))
    nb.layer("up", "Upsample", ["data", "mask"], ["up"], {"upsample_param": {"scale": 2}},
             out_shape=(1, 2, 8, 8))
    prot, _ = nb.save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    plan = flow.plan_model(flow.open_model([prot]))
    assert [u.source for u in plan.unsupported] == ["up"]
    assert "second output of a MAX Pooling" in plan.unsupported[0].error


@pytest.mark.parametrize("pp,tops,words", [
    ({"pool": "AVE", "kernel_size": 2, "stride": 2}, ["p", "pm"], ["only MAX pooling"]),
    ({"pool": "MAX", "kernel_size": 2, "stride": 2}, ["p", "pm", "q"], ["3 tops"]),
    ({"pool": "MAX", "global_pooling": True}, ["p", "pm"], ["global"]),
])
def test_bad_pooling_tops_are_one_line_errors(tmp_path, pp, tops, words):
    nb = NetBuilder("bad")
    nb.input("data", (1, 2, 4, 4))
    nb.layer("p", "Pooling", ["data"], tops, {"pooling_param": pp}, out_shape=(1, 2, 2, 2))
    prot, _ = nb.save(tmp_path / "b.prototxt", tmp_path / "b.caffemodel")
    with pytest.raises(MigratorError) as ei:
        load_caffe(str(prot))
    msg = str(ei.value)
    assert "\n" not in msg and str(prot) in msg and "layer 'p'" in msg
    for w in words:
        assert w in msg, msg
