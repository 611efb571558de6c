"""The numpy reference executor against independent implementations: TensorFlow ops and
closed-form cases worked out by hand (the expected numbers are derived in the comments)."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.core.errors import Cancelled, MigratorError
from migrator.core.ir import OPS, Graph, Node, Param
from migrator.core.reference import numpy_ref
from migrator.core.reference.kernels import KERNELS

RNG = np.random.default_rng(1234)


def run1(node: Node, *xs, dtype=np.float32):
    """Run one node on the given inputs (a graph of Input nodes + the node)."""
    ins = [Node(f"in{i}", "Input", attrs={"shape": (None,) + x.shape[1:]}) for i, x in enumerate(xs)]
    node.inputs = [n.name for n in ins]
    g = Graph("caffe", ins + [node])
    before = [x.copy() for x in xs]
    out = numpy_ref.run_all(g, {f"in{i}": x for i, x in enumerate(xs)}, dtype=dtype)
    for x, b in zip(xs, before):   # kernels must never write into their inputs
        np.testing.assert_array_equal(x, b)
    res = out[node.name]
    return res[0] if len(res) == 1 else res


def conv_node(w, b=None, stride=(1, 1), pad=(0, 0), dil=(1, 1), group=1, flip=False, act=None):
    params = {"weight": Param("weight", w, "OIHW")}
    if b is not None:
        params["bias"] = Param("bias", b, "O")
    return Node("conv", "Conv", attrs={"kernel": w.shape[2:], "stride": stride, "pad": pad, "dilation": dil,
                                           "group": group, "bias": b is not None, "flip": flip, "activation": act},
                params=params)


def tf_conv(x, w, stride, pad, dil, group):
    """Independent grouped conv: TF cross-correlation per group, explicit zero padding."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    cg = w.shape[1]
    og = w.shape[0] // group
    outs = []
    for g in range(group):
        xg = np.transpose(xp[:, g * cg:(g + 1) * cg], (0, 2, 3, 1)).astype(np.float64)
        wg = np.transpose(w[g * og:(g + 1) * og], (2, 3, 1, 0)).astype(np.float64)
        # TF CPU does not combine stride > 1 with dilation > 1: compute stride 1 and subsample
        y = tf.nn.conv2d(xg, wg, strides=1, padding="VALID", dilations=list(dil)).numpy()
        outs.append(y[:, ::stride[0], ::stride[1], :])
    return np.transpose(np.concatenate(outs, axis=-1), (0, 3, 1, 2))


def test_every_op_has_a_kernel():
    assert set(OPS) - {"Input"} <= set(KERNELS)


# ------------------------------------------------------------------------------------
# convolution
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,C,H,W,O,k,stride,pad,dil,group", [
    (2, 3, 17, 19, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (1, 4, 17, 19, 6, (3, 5), (2, 1), (1, 2), (1, 1), 2),
    (1, 6, 15, 13, 6, (3, 3), (1, 1), (2, 2), (2, 2), 3),
    (2, 4, 16, 17, 8, (3, 2), (2, 3), (0, 1), (2, 3), 4),    # stride and dilation together
    (1, 8, 9, 9, 8, (3, 3), (1, 1), (1, 1), (1, 1), 8),     # depthwise
    (2, 5, 10, 11, 7, (1, 1), (1, 1), (0, 0), (1, 1), 1),    # 1x1 fast path
    (1, 4, 10, 11, 6, (1, 1), (2, 2), (0, 0), (1, 1), 2),    # 1x1 strided, grouped
    (1, 3, 23, 23, 4, (7, 7), (2, 2), (3, 3), (1, 1), 1),
])
def test_conv_matches_tensorflow(N, C, H, W, O, k, stride, pad, dil, group):
    x = RNG.standard_normal((N, C, H, W)).astype(np.float32)
    w = RNG.standard_normal((O, C // group) + k).astype(np.float32)
    b = RNG.standard_normal(O).astype(np.float32)
    got = run1(conv_node(w, b, stride, pad, dil, group), x)
    want = tf_conv(x, w, stride, pad, dil, group) + b.reshape(1, -1, 1, 1)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_conv_property_vs_tensorflow(data):
    group = data.draw(st.sampled_from([1, 2, 3]))
    C = group * data.draw(st.integers(1, 3))
    O = group * data.draw(st.integers(1, 3))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    ph, pw = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    H = data.draw(st.integers(dh * (kh - 1) + 1, 14))
    W = data.draw(st.integers(dw * (kw - 1) + 1, 14))
    x = RNG.standard_normal((1, C, H, W)).astype(np.float32)
    w = RNG.standard_normal((O, C // group, kh, kw)).astype(np.float32)
    got = run1(conv_node(w, None, (sh, sw), (ph, pw), (dh, dw), group), x)
    want = tf_conv(x, w, (sh, sw), (ph, pw), (dh, dw), group)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv_flip_is_true_convolution_hand_case():
    # x = [[1,2,3],[4,5,6],[7,8,9]], kernel K = [[1,2],[3,4]]
    # true convolution (valid): y[i,j] = sum_ab x[i+a, j+b] * K[1-a, 1-b]
    #   y[0,0] = 1*4 + 2*3 + 4*2 + 5*1 = 23 ; y[0,1] = 2*4 + 3*3 + 5*2 + 6*1 = 33
    #   y[1,0] = 4*4 + 5*3 + 7*2 + 8*1 = 53 ; y[1,1] = 5*4 + 6*3 + 8*2 + 9*1 = 63
    # cross-correlation: y[0,0] = 1*1 + 2*2 + 4*3 + 5*4 = 37, then 47, 67, 77
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    k = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(run1(conv_node(k, flip=True), x)[0, 0], [[23, 33], [53, 63]])
    np.testing.assert_array_equal(run1(conv_node(k, flip=False), x)[0, 0], [[37, 47], [67, 77]])


def test_conv_folded_activation_and_untied_bias():
    x = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = RNG.standard_normal((3, 4, 4)).astype(np.float32)
    node = conv_node(w, None, act={"kind": "relu", "negative_slope": 0.1})
    node.params["bias"] = Param("bias", b, "OHW")
    got = run1(node, x)
    pre = tf_conv(x, w, (1, 1), (0, 0), (1, 1), 1) + b[None]
    np.testing.assert_allclose(got, tf.nn.leaky_relu(pre, 0.1).numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------
# dense
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["OI", "IO"])
def test_dense_flattens_chw_in_c_order(layout):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    w4 = RNG.standard_normal((7, 3, 4, 5)).astype(np.float32)      # (out, C, H, W)
    b = RNG.standard_normal(7).astype(np.float32)
    wm = w4.reshape(7, 60)
    node = Node("fc", "Dense", attrs={"num_output": 7, "axis": 1, "bias": True,
                                      "activation": {"kind": "tanh"}},
                params={"weight": Param("weight", wm if layout == "OI" else wm.T.copy(), layout),
                        "bias": Param("bias", b, "O")})
    got = run1(node, x)
    want = np.tanh(np.einsum("nchw,ochw->no", x.astype(np.float64), w4) + b)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_axis_2():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    w = RNG.standard_normal((5, 4)).astype(np.float32)
    node = Node("fc", "Dense", attrs={"num_output": 5, "axis": 2, "bias": False},
                params={"weight": Param("weight", w, "OI")})
    np.testing.assert_allclose(run1(node, x), np.einsum("abk,ok->abo", x, w), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------
def pool_node(mode, k, s, p, rounding, divisor="caffe"):
    return Node("pool", "Pool", attrs={"mode": mode, "kernel": k, "stride": s, "pad": p, "rounding": rounding,
                                           "avg_divisor": divisor})


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k,s,H,W", [((3, 3), (2, 2), 17, 19), ((2, 2), (2, 2), 16, 15),
                                     ((3, 2), (1, 2), 9, 11)])
def test_floor_pooling_matches_tensorflow(mode, k, s, H, W):
    x = RNG.standard_normal((2, 3, H, W)).astype(np.float32)
    xt = np.transpose(x, (0, 2, 3, 1))
    f = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    want = np.transpose(f(xt, ksize=list(k), strides=list(s), padding="VALID").numpy(), (0, 3, 1, 2))
    for rounding, div in [("floor", "caffe"), ("floor", "inc_pad"), ("floor", "exc_pad")]:
        got = run1(pool_node(mode, k, s, (0, 0), rounding, div), x)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_max_pool_same_matches_tensorflow_where_padding_is_symmetric():
    # TF 'SAME' max pooling ignores padding; for L=17, k=3, s=1 TF pads 1 each side
    x = RNG.standard_normal((1, 2, 17, 17)).astype(np.float32)
    want = tf.nn.max_pool2d(np.transpose(x, (0, 2, 3, 1)), 3, 1, "SAME").numpy().transpose(0, 3, 1, 2)
    got = run1(pool_node("max", (3, 3), (1, 1), (1, 1), "caffe_ceil"), x)
    np.testing.assert_array_equal(got, want)


X25 = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)   # x[r, c] = 5r + c


def test_caffe_ceil_pool_with_pad_hand_case():
    # 5x5, k3 s2 p1, ceil: ceil((5+2-3)/2)+1 = 3 (pad rule: (3-1)*2 = 4 < 5+1, keep 3)
    # window rows (clipped to the image): {0,1}, {1,2,3}, {3,4}; same for columns
    # MAX = x[max row, max col] = 5*rmax + cmax with rmax in {1, 3, 4}
    got = run1(pool_node("max", (3, 3), (2, 2), (1, 1), "caffe_ceil"), X25)[0, 0]
    np.testing.assert_array_equal(got, [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    # AVE: Caffe divisor per dim = min(start+3, L+p=6) - start = 3 for every window -> 9
    # sum over window = nC*5*sum(R) + nR*sum(C); R sums 1, 6, 7 and sizes 2, 3, 2
    #   row 0: (2*5*1+2*1)=12, (3*5*1+2*6)=27, (2*5*1+2*7)=24
    #   row 1: (2*30+3*1)=63, (3*30+3*6)=108, (2*30+3*7)=81
    #   row 2: (2*35+2*1)=72, (3*35+2*6)=117, (2*35+2*7)=84
    got = run1(pool_node("avg", (3, 3), (2, 2), (1, 1), "caffe_ceil"), X25)[0, 0]
    want = np.array([[12, 27, 24], [63, 108, 81], [72, 117, 84]]) / 9.0
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_caffe_ave_divisor_counts_pad_but_not_overhang():
    # 6x6 ones, k3 s2 p1, ceil: ceil((6+2-3)/2)+1 = 4; (4-1)*2 = 6 < 6+1 keeps 4.
    # windows start at -1, 1, 3, 5: real elements per dim 2, 3, 3, 1;
    # divisor per dim = min(start+3, 7) - start = 3, 3, 3, 2 (the last window: row 5 + pad row 6)
    x = np.ones((1, 1, 6, 6), np.float32)
    got = run1(pool_node("avg", (3, 3), (2, 2), (1, 1), "caffe_ceil"), x)[0, 0]
    n = np.array([2, 3, 3, 1.0])
    d = np.array([3, 3, 3, 2.0])
    np.testing.assert_allclose(got, np.outer(n, n) / np.outer(d, d), rtol=1e-6)
    assert got[3, 3] == pytest.approx(0.25) and got[0, 0] == pytest.approx(4 / 9)


def test_caffe_pad_rule_drops_last_window():
    # 3x3, k2 s2 p1: ceil((3+2-2)/2)+1 = 3 but (3-1)*2 = 4 >= 3+1, so 2 windows: rows {0}, {1,2}
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    got = run1(pool_node("max", (2, 2), (2, 2), (1, 1), "caffe_ceil"), x)[0, 0]
    np.testing.assert_array_equal(got, [[0, 2], [6, 8]])


def test_lasagne_exc_pad_hand_case():
    # ignore_border=True (floor), 5x5 k3 s2 p1 -> 3, same windows as above; exc_pad averages
    # the real elements only: mean = 5*mean(R) + mean(C), means 0.5, 2, 3.5
    got = run1(pool_node("avg", (3, 3), (2, 2), (1, 1), "floor", "exc_pad"), X25)[0, 0]
    m = np.array([0.5, 2, 3.5])
    np.testing.assert_allclose(got, 5 * m[:, None] + m[None, :], rtol=1e-6)
    # inc_pad divides by the full 3x3 window = the Caffe numbers above
    got = run1(pool_node("avg", (3, 3), (2, 2), (1, 1), "floor", "inc_pad"), X25)[0, 0]
    np.testing.assert_allclose(got, np.array([[12, 27, 24], [63, 108, 81], [72, 117, 84]]) / 9.0,
                               rtol=1e-6)


@pytest.mark.parametrize("div", ["inc_pad", "exc_pad"])
def test_lasagne_ignore_border_false_clips_windows(div):
    # 5x5 k2 s2, ignore_border=False: ceil(5/2) = 3 windows per dim: {0,1}, {2,3}, {4}
    got = run1(pool_node("max", (2, 2), (2, 2), (0, 0), "lasagne_ceil", div), X25)[0, 0]
    np.testing.assert_array_equal(got, [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    # Theano averages over the clipped window (both modes, no padding): 5*mean(R)+mean(C)
    got = run1(pool_node("avg", (2, 2), (2, 2), (0, 0), "lasagne_ceil", div), X25)[0, 0]
    m = np.array([0.5, 2.5, 4.0])
    np.testing.assert_allclose(got, 5 * m[:, None] + m[None, :], rtol=1e-6)


def test_global_pool():
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    g = run1(Node("g", "GlobalPool", attrs={"mode": "avg", "keepdims": True}), x)
    np.testing.assert_allclose(g, tf.reduce_mean(x, axis=[2, 3], keepdims=True).numpy(), rtol=1e-5)
    g = run1(Node("g", "GlobalPool", attrs={"mode": "max", "keepdims": False}), x)
    np.testing.assert_array_equal(g, tf.reduce_max(x, axis=[2, 3]).numpy())


# ------------------------------------------------------------------------------------
# LRN
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,coeff,beta", [(5, 1.0, 1e-4 / 5, 0.75), (3, 2.0, 0.3, 0.5),
                                            (1, 1.5, 0.1, 0.9)])
def test_lrn_across_matches_tensorflow(n, k, coeff, beta):
    x = (RNG.standard_normal((2, 7, 5, 6)) * 3).astype(np.float32)
    node = Node("lrn", "LRN", attrs={"region": "across", "size": n, "coeff": coeff, "beta": beta, "k": k})
    got = run1(node, x)
    want = tf.nn.local_response_normalization(np.transpose(x, (0, 2, 3, 1)), depth_radius=(n - 1) // 2,
                                              bias=k, alpha=coeff, beta=beta).numpy()
    np.testing.assert_allclose(got, np.transpose(want, (0, 3, 1, 2)), rtol=1e-5, atol=1e-6)


def test_lrn_within_matches_box_sum_by_tensorflow_conv():
    n, k, coeff, beta = 3, 1.0, 2.0 / 9, 0.75
    x = RNG.standard_normal((1, 2, 6, 7)).astype(np.float32)
    node = Node("lrn", "LRN", attrs={"region": "within", "size": n, "coeff": coeff, "beta": beta, "k": k})
    got = run1(node, x)
    sq = np.transpose(x.astype(np.float64) ** 2, (1, 2, 3, 0))   # channels as batch, 1 channel
    box = tf.nn.conv2d(np.pad(sq, ((0, 0), (1, 1), (1, 1), (0, 0))), np.ones((n, n, 1, 1)), 1,
                       "VALID").numpy()
    s = np.transpose(box, (3, 0, 1, 2))
    np.testing.assert_allclose(got, x * (k + coeff * s) ** -beta, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------
# normalisation, scale, elementwise
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sf", [999.98, 0.0, 1.0])
def test_caffe_batchnorm(sf):
    x = RNG.standard_normal((2, 4, 3, 5)).astype(np.float32)
    m = RNG.standard_normal(4) * sf
    v = (RNG.random(4) + 0.5) * sf
    node = Node("bn", "BatchNorm", attrs={"form": "caffe", "axis": 1, "eps": 1e-5},
                params={"mean": Param("mean", m.astype(np.float32)),
                        "variance": Param("variance", v.astype(np.float32)),
                        "scale_factor": Param("scale_factor", np.array([sf], np.float32))})
    s = 0.0 if sf == 0 else 1.0 / np.float32(sf)
    mean = (m.astype(np.float32) * s).reshape(1, 4, 1, 1)
    var = (v.astype(np.float32) * s).reshape(1, 4, 1, 1)
    want = tf.nn.batch_normalization(x.astype(np.float64), mean, var, None, None, 1e-5).numpy()
    np.testing.assert_allclose(run1(node, x), want, rtol=1e-5, atol=1e-5)


def test_lasagne_batchnorm_with_and_without_gamma_beta():
    x = RNG.standard_normal((3, 4, 2, 2)).astype(np.float32)
    mean, inv_std = RNG.standard_normal(4), RNG.random(4) + 0.5
    gamma, beta = RNG.standard_normal(4), RNG.standard_normal(4)
    p = lambda n, v: Param(n, v.astype(np.float32), "C")
    node = Node("bn", "BatchNorm", attrs={"form": "lasagne", "axes": "auto", "epsilon": 1e-4},
                params={"beta": p("beta", beta), "gamma": p("gamma", gamma), "mean": p("mean", mean),
                        "inv_std": p("inv_std", inv_std)})
    b = lambda a: a.reshape(1, 4, 1, 1)
    np.testing.assert_allclose(run1(node, x), (x - b(mean)) * b(gamma * inv_std) + b(beta), rtol=1e-5,
                               atol=1e-5)
    del node.params["beta"], node.params["gamma"]
    np.testing.assert_allclose(run1(node, x), (x - b(mean)) * b(inv_std), rtol=1e-5, atol=1e-5)
    # dense input (N, units)
    x2 = RNG.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(run1(node, x2), (x2 - mean) * inv_std, rtol=1e-5, atol=1e-5)


def test_gist_batchnorm_eps_on_std_and_activation():
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    vals = {n: RNG.standard_normal((1, 3, 1, 1)).astype(np.float32) for n in ("mean", "beta", "gamma")}
    vals["std"] = (RNG.random((1, 3, 1, 1)) + 0.1).astype(np.float32)
    node = Node("bn", "BatchNorm", attrs={"form": "gist", "epsilon": 0.01, "alpha": 0.5,
                                          "activation": {"kind": "relu"}},
                params={n: Param(n, v) for n, v in vals.items()})
    want = np.maximum((x - vals["mean"]) * vals["gamma"] / (vals["std"] + 0.01) + vals["beta"], 0)
    np.testing.assert_allclose(run1(node, x), want, rtol=1e-5, atol=1e-5)


def test_scale_broadcasting():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    s, b = RNG.standard_normal(3).astype(np.float32), RNG.standard_normal(3).astype(np.float32)
    node = Node("sc", "Scale", attrs={"axis": 1, "num_axes": 1, "bias": True, "two_input": False},
                params={"scale": Param("scale", s, "C"), "bias": Param("bias", b, "C")})
    np.testing.assert_allclose(run1(node, x), x * s[:, None, None] + b[:, None, None], rtol=1e-6)
    # scale over (H, W) at axis 2, no bias
    s2 = RNG.standard_normal((4, 5)).astype(np.float32)
    node = Node("sc", "Scale", attrs={"axis": 2, "num_axes": 2, "bias": False, "two_input": False},
                params={"scale": Param("scale", s2)})
    np.testing.assert_allclose(run1(node, x), x * s2, rtol=1e-6)
    # two inputs: scale (N, C) from the second bottom at axis 0
    s3 = RNG.standard_normal((2, 3)).astype(np.float32)
    node = Node("sc", "Scale", attrs={"axis": 0, "num_axes": 1, "bias": False, "two_input": True})
    np.testing.assert_allclose(run1(node, x, s3), x * s3[:, :, None, None], rtol=1e-6)


def test_eltwise_and_concat():
    a, b, c = (RNG.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3))
    E = lambda op, co=None: Node("e", "Eltwise", attrs={"operation": op, "coeffs": co})
    np.testing.assert_allclose(run1(E("sum"), a, b, c), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(run1(E("sum", [0.5, -2.0, 1.0]), a, b, c), 0.5 * a - 2 * b + c, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(run1(E("prod"), a, b, c), a * b * c, rtol=1e-6)
    np.testing.assert_array_equal(run1(E("max"), a, b, c), np.maximum(np.maximum(a, b), c))
    got = run1(Node("cat", "Concat", attrs={"axis": 2}), a, b)
    np.testing.assert_array_equal(got, tf.concat([a, b], axis=2).numpy())


@pytest.mark.parametrize("spec,tf_fn", [
    ({"kind": "relu", "negative_slope": 0.0}, lambda x: tf.nn.relu(x)),
    ({"kind": "relu", "negative_slope": 0.2}, lambda x: tf.nn.leaky_relu(x, 0.2)),
    ({"kind": "elu", "alpha": 1.0}, lambda x: tf.nn.elu(x)),
    ({"kind": "elu", "alpha": 0.5}, lambda x: tf.where(x > 0, x, 0.5 * (tf.exp(x) - 1))),
    ({"kind": "sigmoid"}, lambda x: tf.sigmoid(x)),
    ({"kind": "tanh"}, lambda x: tf.tanh(x)),
    ({"kind": "abs"}, lambda x: tf.abs(x)),
    ({"kind": "softplus"}, lambda x: tf.nn.softplus(x)),
    ({"kind": "linear"}, lambda x: x),
    ({"kind": "scaled_tanh", "scale_in": 0.5, "scale_out": 2.0}, lambda x: 2.0 * tf.tanh(0.5 * x)),
    ({"kind": "exp"}, lambda x: tf.exp(x)),
    ({"kind": "softmax", "axis": 1}, lambda x: tf.nn.softmax(x, axis=1)),
])
def test_activations_match_tensorflow(spec, tf_fn):
    x = (RNG.standard_normal((2, 5, 3, 3)) * 4).astype(np.float32)
    got = run1(Node("a", "Activation", attrs=dict(spec)), x)
    np.testing.assert_allclose(got, np.asarray(tf_fn(tf.constant(x.astype(np.float64)))), rtol=2e-6,
                               atol=1e-6)


def test_softmax_prelu_power():
    x = (RNG.standard_normal((2, 5, 3)) * 5).astype(np.float32)
    np.testing.assert_allclose(run1(Node("s", "Softmax", attrs={"axis": 2}), x),
                               tf.nn.softmax(x.astype(np.float64), axis=2).numpy(), rtol=1e-5, atol=1e-7)
    slope = RNG.standard_normal(5).astype(np.float32)
    node = Node("p", "PReLU", attrs={"channel_shared": False}, params={"slope": Param("slope", slope)})
    np.testing.assert_allclose(run1(node, x), np.where(x > 0, x, x * slope[:, None]), rtol=1e-6)
    node = Node("pw", "Power", attrs={"power": 2.0, "scale": 0.5, "shift": 1.0})
    np.testing.assert_allclose(run1(node, x), (1.0 + 0.5 * x) ** 2, rtol=1e-5)
    node = Node("pw", "Power", attrs={"power": 0.5, "scale": 2.0, "shift": 30.0})
    np.testing.assert_allclose(run1(node, x), np.sqrt(30.0 + 2.0 * x), rtol=1e-5)


def test_shape_ops():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = run1(Node("f", "Flatten", attrs={"axis": 1, "end_axis": 2}), x)
    assert got.shape == (2, 12, 5) and np.array_equal(got[1, 7], x[1, 1, 3])  # 7 = 1*4 + 3
    got = run1(Node("r", "Reshape", attrs={"shape": [0, -1, 10], "axis": 0, "num_axes": -1}), x)
    assert got.shape == (2, 6, 10) and np.array_equal(got.ravel(), x.ravel())
    got = run1(Node("t", "Transpose", attrs={"pattern": [0, 2, "x", 3, 1]}), x)
    np.testing.assert_array_equal(got, np.transpose(x, (0, 2, 3, 1))[:, :, None])
    y = x[:, :1]                 # dimshuffle may drop a broadcastable axis of size 1
    got = run1(Node("t", "Transpose", attrs={"pattern": [0, 3, 2]}), y)
    np.testing.assert_array_equal(got, np.transpose(y[:, 0], (0, 2, 1)))
    got = run1(Node("p", "Pad", attrs={"pad": [(1, 2), (0, 1)], "value": -1.0, "batch_ndim": 2}), x)
    assert got.shape == (2, 3, 7, 6) and got[0, 0, 0, 0] == -1 and got[0, 0, 1, 0] == x[0, 0, 0, 0]
    got = run1(Node("s", "Slice", attrs={"axis": 1, "start": None, "stop": None, "step": -1}), x)
    np.testing.assert_array_equal(got, x[:, ::-1])
    outs = run1(Node("s", "Slice", attrs={"axis": 3, "slice_points": [1, 4]}, num_outputs=3), x)
    assert [o.shape[3] for o in outs] == [1, 3, 1]
    np.testing.assert_array_equal(np.concatenate(outs, axis=3), x)
    a, b = run1(Node("sp", "Split", num_outputs=2), x)
    assert np.array_equal(a, x) and np.array_equal(b, x)
    np.testing.assert_array_equal(run1(Node("d", "Dropout", attrs={"ratio": 0.5}), x), x)


# ------------------------------------------------------------------------------------
# the executor
# ------------------------------------------------------------------------------------
def _chain(n=6):
    nodes = [Node("data", "Input", attrs={"shape": (None, 2, 3, 3)})]
    prev = "data"
    for i in range(n):
        nodes.append(Node(f"r{i}", "Power", [prev], attrs={"power": 1.0, "scale": 2.0, "shift": 0.0}))
        prev = f"r{i}"
    return Graph("caffe", nodes)


def test_run_streams_and_frees():
    g = _chain()
    refs = []
    gen = numpy_ref.run(g, np.ones((1, 2, 3, 3), np.float32))
    for name, outs in gen:
        refs.append(weakref.ref(outs[0]))
        del outs
        gc.collect()
        # at most the current tensor and its input are alive
        alive = [r for r in refs[:-2] if r() is not None]
        assert not alive, f"tensors kept alive after their last use at {name}"


def test_run_keep_progress_cancel():
    g = _chain(4)
    x = np.ones((1, 2, 3, 3), np.float32)
    seen = []
    res = numpy_ref.run_all(g, {"data": x}, progress=lambda f, m: seen.append((f, m)))
    assert list(res) == ["data", "r0", "r1", "r2", "r3"]
    np.testing.assert_array_equal(res["r3"][0], 16 * x)
    assert seen[0] == (0.0, "data") and seen[-1][0] == 1.0 and len(seen) == 6
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        list(numpy_ref.run(g, x, cancel=cancel))


def test_bad_input_is_a_user_error():
    g = _chain(1)
    with pytest.raises(MigratorError, match="expects"):
        list(numpy_ref.run(g, np.ones((1, 3, 3, 3), np.float32)))
    with pytest.raises(MigratorError, match="no value"):
        list(numpy_ref.run(g, {"other": np.ones((1, 2, 3, 3))}))
    g.nodes.append(Node("weird", "Custom", ["r0"], attrs={"class_name": "MyLayer"}))
    with pytest.raises(MigratorError, match="MyLayer"):
        list(numpy_ref.run(g, np.ones((1, 2, 3, 3), np.float32)))


def test_float64_mode():
    g = _chain(1)
    out = numpy_ref.run_all(g, np.ones((1, 2, 3, 3)), dtype=np.float64)
    assert out["r0"][0].dtype == np.float64


# ------------------------------------------------------------------------------------
# pooling property tests against straight transcriptions of the frameworks' loops
# ------------------------------------------------------------------------------------
def caffe_pool_loops(x2d, mode, k, s, p):
    """Caffe's CPU PoolingLayer, transcribed loop by loop (one channel), ceil + pad rule."""
    H, W = x2d.shape
    out_len = []
    for L, kk, ss, pp in zip((H, W), k, s, p):
        o = int(np.ceil((L + 2 * pp - kk) / ss)) + 1
        if pp and (o - 1) * ss >= L + pp:
            o -= 1
        out_len.append(o)
    y = np.zeros(out_len)
    for ph in range(out_len[0]):
        for pw in range(out_len[1]):
            hs, ws_ = ph * s[0] - p[0], pw * s[1] - p[1]
            if mode == "max":
                he, we = min(hs + k[0], H), min(ws_ + k[1], W)
                hs, ws_ = max(hs, 0), max(ws_, 0)
                y[ph, pw] = max(x2d[h, w] for h in range(hs, he) for w in range(ws_, we))
            else:
                he, we = min(hs + k[0], H + p[0]), min(ws_ + k[1], W + p[1])
                size = (he - hs) * (we - ws_)
                hs, ws_ = max(hs, 0), max(ws_, 0)
                he, we = min(he, H), min(we, W)
                y[ph, pw] = sum(x2d[h, w] for h in range(hs, he) for w in range(ws_, we)) / size
    return y


@given(H=st.integers(1, 12), W=st.integers(1, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3),
       mode=st.sampled_from(["max", "avg"]))
@settings(max_examples=150, deadline=None)
def test_caffe_pooling_property(H, W, kh, kw, sh, sw, ph, pw, mode):
    # Caffe requires pad < kernel and (without pad) windows starting inside the input
    if ph >= kh or pw >= kw or H + 2 * ph < kh or W + 2 * pw < kw:
        return
    if (ph == 0 and sh > kh) or (pw == 0 and sw > kw):
        return
    x = RNG.standard_normal((1, 1, H, W)).astype(np.float32)
    want = caffe_pool_loops(x[0, 0].astype(np.float64), mode, (kh, kw), (sh, sw), (ph, pw))
    got = run1(pool_node(mode, (kh, kw), (sh, sw), (ph, pw), "caffe_ceil"), x)[0, 0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
