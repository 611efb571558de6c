"""Property tests of the pure parameter transforms.

Each test evaluates the *source* framework's formula written out here independently
(Caffe, Lasagne, the 2015 gist, Theano's true convolution, C-order flattening) and the
*Keras* formula with the mapped values, and checks they agree.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from migrator.core.mapping import transforms as T

SET = settings(max_examples=150, deadline=None)

f64 = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def keras_bn(x, gamma, beta, mean, var, eps):
    """Keras BatchNormalization inference, channels on the last axis, float64."""
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def channels(c, elements):
    return hnp.arrays(np.float64, (c,), elements=elements)


# ----------------------------------------------------------------------------- Caffe
@SET
@given(data=st.data(), c=st.integers(1, 6),
       sf=st.one_of(st.just(0.0), st.floats(1e-3, 1e4)),
       eps=st.floats(1e-8, 1e-1))
def test_caffe_bn_roundtrip(data, c, sf, eps):
    blob0 = data.draw(channels(c, f64))
    blob1 = data.draw(channels(c, st.floats(0, 1e4)))
    x = data.draw(hnp.arrays(np.float64, (3, c), elements=f64))
    # Caffe, written out: s = 0 if blob2 == 0 else 1/blob2
    s = 0.0 if sf == 0 else 1.0 / sf
    src = (x - blob0 * s) / np.sqrt(blob1 * s + eps)

    mean, var, s2 = T.caffe_bn_stats(blob0, blob1, np.array([sf]))
    assert s2 == s
    got = keras_bn(x, 1.0, 0.0, mean, T.caffe_variance_for_epsilon(var, eps, eps), eps)
    np.testing.assert_allclose(got, src, rtol=1e-12, atol=1e-12)


def test_caffe_scale_factor_zero_means_zero_stats():
    mean, var, s = T.caffe_bn_stats([5.0, -2.0], [3.0, 4.0], [0.0])
    assert s == 0.0
    assert np.all(mean == 0) and np.all(var == 0)
    # the real-model case: blob2 = 999.98
    mean, var, s = T.caffe_bn_stats([999.98], [2 * 999.98], np.array([999.98], np.float32))
    np.testing.assert_allclose([mean[0], var[0]], [1.0, 2.0], rtol=1e-6)


@SET
@given(data=st.data(), c=st.integers(1, 6), eps=st.floats(1e-6, 1e-2),
       eps_k=st.floats(1e-6, 1e-2))
def test_caffe_epsilon_override_stays_exact(data, c, eps, eps_k):
    var = data.draw(channels(c, st.floats(0, 100)))
    mean = data.draw(channels(c, f64))
    x = data.draw(hnp.arrays(np.float64, (4, c), elements=f64))
    src = (x - mean) / np.sqrt(var + eps)
    vk = T.caffe_variance_for_epsilon(var, eps, eps_k)
    np.testing.assert_allclose(vk + eps_k, var + eps, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(keras_bn(x, 1.0, 0.0, mean, vk, eps_k), src, rtol=1e-9, atol=1e-9)
    # negative-variance detection: exactly the channels where var + eps < eps_k
    expected_neg = [i for i in range(c) if var[i] + eps - eps_k < 0]
    assert T.negative_channels(vk) == expected_neg


def test_caffe_raw_variance_changes_results_when_eps_differs():
    var = np.array([1e-4])
    vk = T.caffe_variance_for_epsilon(var, 1e-5, 1e-3)
    assert vk[0] == pytest.approx(1e-4 + 1e-5 - 1e-3)
    assert T.negative_channels(vk) == [0]
    # raw: var unchanged, output differs from Caffe's
    x = np.array([[1.0]])
    assert not np.allclose(keras_bn(x, 1, 0, 0, var, 1e-3), x / np.sqrt(var + 1e-5))


# ----------------------------------------------------------------------------- Lasagne
inv_std_el = st.one_of(st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))


@SET
@given(data=st.data(), c=st.integers(1, 6), eps_default=st.floats(1e-8, 1.0))
def test_lasagne_bn_roundtrip_with_safe_epsilon(data, c, eps_default):
    gamma = data.draw(channels(c, f64))
    beta = data.draw(channels(c, f64))
    mean = data.draw(channels(c, f64))
    inv_std = data.draw(channels(c, inv_std_el))
    x = data.draw(hnp.arrays(np.float64, (4, c), elements=f64))
    # Lasagne, written out
    src = (x - mean) * (gamma * inv_std) + beta

    eps_k = T.safe_epsilon_for_lasagne(inv_std, eps_default)
    var = T.lasagne_variance(inv_std, eps_k)
    g = T.fold_sign_into_gamma(gamma, inv_std)
    total = 1.0 / inv_std ** 2
    # never negative, never above the default, and as large as allowed
    assert 0 < eps_k <= eps_default
    assert np.all(var >= 0)
    assert np.float32(eps_k) <= total.min()
    if eps_default <= total.min():
        assert eps_k == eps_default
    else:
        nxt = np.nextafter(np.float32(eps_k), np.float32(np.inf))
        assert float(nxt) > total.min()
    got = keras_bn(x, g, beta, mean, var, eps_k)
    np.testing.assert_allclose(got, src, rtol=1e-9, atol=1e-9 * (1 + np.abs(src).max()))
    # and the same in float32, as Keras computes it (weights cast after the float64 maths)
    f = np.float32
    got32 = keras_bn(x.astype(f), g.astype(f), beta.astype(f), mean.astype(f), var.astype(f), f(eps_k))
    scale = np.abs(x - mean).max() * np.abs(gamma * inv_std).max() + np.abs(beta).max() + 1
    assert np.abs(got32 - src).max() <= 1e-5 * scale


def test_lasagne_bad_pickle_inv_std_forces_smaller_epsilon():
    # inv_std = 1/sqrt(var) + 1e-4 with var tiny -> 1/inv_std^2 below the layer epsilon
    var = np.array([1e-6, 1.0, 4.0])
    inv_std = 1 / np.sqrt(var) + 1e-4
    eps_k = T.safe_epsilon_for_lasagne(inv_std, 1e-4)
    assert eps_k < 1e-4
    v = T.lasagne_variance(inv_std, eps_k)
    assert v.min() >= 0 and v[0] < 1e-12
    x = np.array([[0.5, -1.0, 2.0]])
    np.testing.assert_allclose(keras_bn(x, 1, 0, 0, v, eps_k), x * inv_std, rtol=1e-9)


def test_lasagne_variance_with_layer_epsilon_is_batch_variance():
    # inv_std = 1/sqrt(var + eps) exactly -> variance comes back as var
    var = np.array([0.25, 3.0, 1e-3])
    inv_std = 1 / np.sqrt(var + 1e-4)
    assert T.safe_epsilon_for_lasagne(inv_std, 1e-4) == 1e-4
    np.testing.assert_allclose(T.lasagne_variance(inv_std, 1e-4), var, rtol=1e-10)


def test_lasagne_nonfinite_inv_std_reported():
    inv = np.array([1.0, 0.0, np.nan, np.inf])
    total = T.lasagne_total_variance(inv)
    assert T.nonfinite_channels(total) == [1, 2]
    assert T.nonfinite_channels(inv) == [2, 3]


def test_momentum_from_alpha_matches_running_average():
    alpha = 0.1
    m = T.momentum_from_alpha(alpha)
    stat_l = stat_k = 0.3
    for batch in (1.0, -2.0, 0.5):
        stat_l = (1 - alpha) * stat_l + alpha * batch          # Lasagne update
        stat_k = stat_k * m + batch * (1 - m)                  # Keras update
    assert stat_k == pytest.approx(stat_l, rel=1e-12)


# ----------------------------------------------------------------------------- gist
@SET
@given(data=st.data(), c=st.integers(1, 6), eps=st.floats(1e-4, 0.5))
def test_gist_bn_roundtrip(data, c, eps):
    mean = data.draw(channels(c, f64))
    std = data.draw(channels(c, st.floats(0, 100)))
    gamma = data.draw(channels(c, f64))
    beta = data.draw(channels(c, f64))
    x = data.draw(hnp.arrays(np.float64, (4, c), elements=f64))
    src = (x - mean) * gamma / (std + eps) + beta          # gist formula

    eps_k = T.safe_epsilon_for_gist(std, eps)
    # std >= 0: the std=0 limit eps**2 fits -- up to the float64 rounding of (0 + eps)**2, which
    # can put the smallest total one ulp below eps**2 (then its float32 floor is taken)
    assert eps_k == pytest.approx(eps ** 2, rel=1e-6) and eps_k <= eps ** 2
    var = T.gist_variance(std, eps, eps_k)
    assert np.all(var >= 0)
    got = keras_bn(x, T.fold_sign_into_gamma(gamma, std + eps), beta, mean, var, eps_k)
    np.testing.assert_allclose(got, src, rtol=1e-9, atol=1e-9 * (1 + np.abs(src).max()))


def test_gist_negative_std_plus_eps_sign_folded():
    mean, std, gamma, beta, eps = np.zeros(2), np.array([-0.5, 0.2]), np.ones(2), np.zeros(2), 0.01
    x = np.array([[1.0, 1.0]])
    src = (x - mean) * gamma / (std + eps) + beta
    eps_k = T.safe_epsilon_for_gist(std, eps)
    var = T.gist_variance(std, eps, eps_k)
    got = keras_bn(x, T.fold_sign_into_gamma(gamma, std + eps), beta, mean, var, eps_k)
    np.testing.assert_allclose(got, src, rtol=1e-12)


def test_squeeze_channels():
    assert T.squeeze_channels(np.arange(3).reshape(1, 3, 1, 1)).tolist() == [0, 1, 2]
    assert T.squeeze_channels(np.arange(3)).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        T.squeeze_channels(np.zeros((2, 3, 1, 1)))


# ----------------------------------------------------------------------------- epsilon helpers
@SET
@given(st.floats(1e-40, 1e30))
def test_float32_floor(x):
    y = T.float32_floor(x)
    assert y <= x and float(np.float32(y)) == y
    assert float(np.nextafter(np.float32(y), np.float32(np.inf))) > x


def test_safe_epsilon_ignores_nonfinite_and_falls_back():
    assert T.safe_epsilon([np.inf, np.nan, 0.0], 1e-3) == 1e-3
    assert T.safe_epsilon([2.0, 1e-6], 1e-3) == T.float32_floor(1e-6)


# ----------------------------------------------------------------------------- kernels
def true_conv_valid(x, K):
    """2-D true convolution (valid part) from the definition y[n] = sum_m x[m] K[n - m]."""
    H, W = x.shape
    kh, kw = K.shape
    out = np.zeros((H - kh + 1, W - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            n0, n1 = i + kh - 1, j + kw - 1           # full-convolution index of this output
            acc = 0.0
            for m0 in range(H):
                for m1 in range(W):
                    a, b = n0 - m0, n1 - m1
                    if 0 <= a < kh and 0 <= b < kw:
                        acc += x[m0, m1] * K[a, b]
            out[i, j] = acc
    return out


def xcorr_hwio(x_nhwc, Wk):
    kh, kw, _ci, co = Wk.shape
    n, H, W, _ = x_nhwc.shape
    out = np.zeros((n, H - kh + 1, W - kw + 1, co))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            patch = x_nhwc[:, i:i + kh, j:j + kw, :]
            out[:, i, j, :] = np.einsum("nabc,abco->no", patch, Wk)
    return out


@settings(max_examples=30, deadline=None)
@given(data=st.data(), kh=st.integers(1, 3), kw=st.integers(1, 3), ci=st.integers(1, 2),
       co=st.integers(1, 2))
def test_lasagne_flip_conv_equals_true_convolution(data, kh, kw, ci, co):
    H, W = kh + 2, kw + 1
    x = data.draw(hnp.arrays(np.float64, (1, ci, H, W), elements=st.floats(-5, 5)))
    Wt = data.draw(hnp.arrays(np.float64, (co, ci, kh, kw), elements=st.floats(-5, 5)))
    # Theano/Lasagne flip_filters=True: true convolution, summed over input channels
    src = np.stack([sum(true_conv_valid(x[0, c], Wt[o, c]) for c in range(ci)) for o in range(co)])
    got = xcorr_hwio(x.transpose(0, 2, 3, 1), T.lasagne_conv_to_keras(Wt, flip=True))[0]
    np.testing.assert_allclose(got.transpose(2, 0, 1), src, atol=1e-9)
    # flip_filters=False / Caffe: plain cross-correlation on the OIHW kernel
    src_x = np.zeros_like(src)
    for o in range(co):
        for i in range(src.shape[1]):
            for j in range(src.shape[2]):
                src_x[o, i, j] = np.sum(x[0, :, i:i + kh, j:j + kw] * Wt[o])
    for conv in (T.caffe_conv_to_keras(Wt), T.lasagne_conv_to_keras(Wt, flip=False)):
        np.testing.assert_allclose(xcorr_hwio(x.transpose(0, 2, 3, 1), conv)[0].transpose(2, 0, 1),
                                   src_x, atol=1e-9)


def test_flip_kernel_is_involution_and_rotates():
    K = np.arange(6.0).reshape(1, 1, 2, 3)
    assert T.flip_kernel(K)[0, 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    np.testing.assert_array_equal(T.flip_kernel(T.flip_kernel(K)), K)


# ----------------------------------------------------------------------------- dense
@settings(max_examples=60, deadline=None)
@given(data=st.data(), c=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 4),
       u=st.integers(1, 3))
def test_dense_rows_chw_to_hwc(data, c, h, w, u):
    x = data.draw(hnp.arrays(np.float64, (2, c, h, w), elements=st.floats(-10, 10)))
    W = data.draw(hnp.arrays(np.float64, (c * h * w, u), elements=st.floats(-10, 10)))
    src = x.reshape(2, -1) @ W                              # source: flatten NCHW in C order
    Wk = T.dense_rows_chw_to_hwc(W, c, h, w)
    got = np.transpose(x, (0, 2, 3, 1)).reshape(2, -1) @ Wk  # Keras: flatten NHWC
    np.testing.assert_allclose(got, src, rtol=1e-12, atol=1e-9)


def test_dense_rows_shape_mismatch():
    with pytest.raises(ValueError):
        T.dense_rows_chw_to_hwc(np.zeros((5, 2)), 2, 1, 2)


def test_caffe_dense_to_keras():
    rng = np.random.default_rng(0)
    Woi, x = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    src = np.stack([Woi @ xi for xi in x])                   # Caffe: y = W x
    np.testing.assert_allclose(x @ T.caffe_dense_to_keras(Woi), src, rtol=1e-12)
