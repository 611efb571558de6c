"""Pure numpy parameter transforms (source parameters -> Keras parameters).

Every function here is pure (no I/O, no Keras), works in float64 and documents its
formula.  Callers cast the results to the model dtype (float32) at the very end, so
each Keras weight is the correctly rounded value of the exact formula.

Batch-norm notation: Keras computes at inference

    y = gamma * (x - moving_mean) / sqrt(moving_variance + eps_k) + beta

so a source normaliser ``(x - m) * k`` (k > 0 per channel) is reproduced exactly when
``moving_variance + eps_k == 1 / k**2``.  Any ``eps_k`` with ``0 < eps_k <= 1/k**2``
works; the variance is then ``1/k**2 - eps_k`` (never negative).  The sign of a
negative ``k`` is folded into gamma.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "as_f64",
    "caffe_bn_scale_factor",
    "caffe_bn_stats",
    "caffe_conv_to_keras",
    "caffe_dense_to_keras",
    "caffe_variance_for_epsilon",
    "dense_rows_chw_to_hwc",
    "flip_kernel",
    "float32_floor",
    "fold_sign_into_gamma",
    "gist_total_variance",
    "gist_variance",
    "lasagne_conv_to_keras",
    "lasagne_total_variance",
    "lasagne_variance",
    "momentum_from_alpha",
    "negative_channels",
    "nonfinite_channels",
    "safe_epsilon",
    "safe_epsilon_for_gist",
    "safe_epsilon_for_lasagne",
    "squeeze_channels",
]


def as_f64(a) -> np.ndarray:
    """``np.asarray(a, dtype=float64)``."""
    return np.asarray(a, dtype=np.float64)


def float32_floor(x: float) -> float:
    """Largest float32-representable number ``<= x`` (returned as a Python float).

    Used for epsilons: Keras stores ``epsilon`` as a Python float but adds it in float32,
    so an epsilon meant to stay below a bound must stay below it *after* rounding.
    """
    x = float(x)
    f = np.float32(x)
    if np.isfinite(f) and float(f) > x:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


# --------------------------------------------------------------------------------------
# Caffe BatchNorm
# --------------------------------------------------------------------------------------
def caffe_bn_scale_factor(scale_factor) -> float:
    """Caffe's moving-average scale factor: ``s = 0 if blob2 == 0 else 1 / blob2``.

    ``blob2`` is a one-element blob (shape ``(1,)``, sometimes ``()``).
    """
    sf = as_f64(scale_factor).reshape(-1)
    b = float(sf[0]) if sf.size else 0.0
    return 0.0 if b == 0.0 else 1.0 / b


def caffe_bn_stats(mean_sum, var_sum, scale_factor) -> tuple[np.ndarray, np.ndarray, float]:
    """Caffe BatchNorm running statistics.

    ``s = 0 if blob2 == 0 else 1/blob2``; ``mean = blob0 * s``; ``var = blob1 * s``.
    Returns ``(mean, var, s)`` in float64.  Caffe's inference is then
    ``y = (x - mean) / sqrt(var + eps)``.
    """
    s = caffe_bn_scale_factor(scale_factor)
    return as_f64(mean_sum) * s, as_f64(var_sum) * s, s


def caffe_variance_for_epsilon(var, eps_source: float, eps_keras: float) -> np.ndarray:
    """Keras moving_variance that keeps Caffe's output exact under another epsilon.

    ``moving_variance = var + eps_source - eps_keras`` so that
    ``moving_variance + eps_keras == var + eps_source``.  (Equals ``var`` when the
    epsilons agree.)  May become negative when ``eps_keras > var + eps_source``; the
    caller must report that.
    """
    v = as_f64(var)
    if float(eps_source) == float(eps_keras):
        return v.copy()
    return (v + float(eps_source)) - float(eps_keras)


# --------------------------------------------------------------------------------------
# Lasagne BatchNormLayer:  y = (x - mean) * (gamma * inv_std) + beta
# --------------------------------------------------------------------------------------
def lasagne_total_variance(inv_std) -> np.ndarray:
    """``1 / inv_std**2`` -- the value ``moving_variance + eps_k`` must equal."""
    inv = as_f64(inv_std)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return 1.0 / (inv * inv)


def lasagne_variance(inv_std, eps_k: float) -> np.ndarray:
    """Keras moving_variance for a Lasagne BatchNormLayer: ``1/inv_std**2 - eps_k``.

    Exact for any ``eps_k`` as long as the result is ``>= 0`` (choose ``eps_k`` with
    :func:`safe_epsilon_for_lasagne`).  Uses ``|inv_std|``; a negative inv_std's sign
    goes into gamma (:func:`fold_sign_into_gamma`).
    """
    return lasagne_total_variance(inv_std) - float(eps_k)


# --------------------------------------------------------------------------------------
# Preliminary (2015 gist) batch norm:  y = (x - mean) * gamma / (std + eps) + beta
# --------------------------------------------------------------------------------------
def gist_total_variance(std, eps: float) -> np.ndarray:
    """``(std + eps)**2`` -- the value ``moving_variance + eps_k`` must equal."""
    d = as_f64(std) + float(eps)
    return d * d


def gist_variance(std, eps: float, eps_k: float) -> np.ndarray:
    """Keras moving_variance for the gist batch norm: ``(std + eps)**2 - eps_k``.

    Exact while ``>= 0``; a negative ``std + eps`` flips the sign, which goes into
    gamma (:func:`fold_sign_into_gamma` with ``k = std + eps``).
    """
    return gist_total_variance(std, eps) - float(eps_k)


# --------------------------------------------------------------------------------------
# Choosing the Keras epsilon
# --------------------------------------------------------------------------------------
def safe_epsilon(total_variance, eps_default: float) -> float:
    """The largest ``eps_k <= eps_default`` keeping every channel's
    ``moving_variance = total_variance - eps_k`` non-negative.

    ``eps_k = eps_default`` if ``eps_default <= min(total_variance)``; otherwise
    ``eps_k = float32_floor(min(total_variance))`` -- the largest float32 number not
    above the smallest total, so the float32 sum Keras forms stays ``<=`` every total
    and the smallest channel gets variance 0 (exact, not clamped).  Only finite,
    positive totals count (the others are reported as non-finite channels).  Returns
    ``eps_default`` when no channel qualifies.  The result can be 0.0 when the smallest
    total underflows float32; the caller must report that.
    """
    t = as_f64(total_variance).reshape(-1)
    t = t[np.isfinite(t) & (t > 0)]
    eps_default = float(eps_default)
    if t.size == 0:
        return eps_default
    m = float(t.min())
    if eps_default <= m:
        return eps_default
    return float32_floor(m)


def safe_epsilon_for_lasagne(inv_std, eps_default: float) -> float:
    """Default Keras epsilon for a Lasagne BatchNormLayer.

    ``eps_k = eps_default`` (the layer's own epsilon) unless some channel has
    ``1/inv_std**2 < eps_default`` (possible for pickles that stored
    ``1/sqrt(var) + 1e-4``); then ``eps_k = float32_floor(min_c 1/inv_std_c**2)``.
    Every channel then has ``moving_variance = 1/inv_std**2 - eps_k >= 0`` and the
    Keras output equals ``(x - mean) * gamma * inv_std + beta`` up to float rounding.
    """
    return safe_epsilon(lasagne_total_variance(inv_std), eps_default)


def safe_epsilon_for_gist(std, eps: float, eps_default: float | None = None) -> float:
    """Default Keras epsilon for the gist batch norm.

    ``eps_default`` defaults to ``eps**2`` -- the ``std = 0`` limit of ``(std + eps)**2``,
    so with ``std >= 0`` every variance ``std**2 + 2*eps*std`` is non-negative; then the
    rule of :func:`safe_epsilon` applies.
    """
    if eps_default is None:
        eps_default = float(eps) ** 2
    return safe_epsilon(gist_total_variance(std, eps), eps_default)


def fold_sign_into_gamma(gamma, k) -> np.ndarray:
    """``gamma * sign(k)`` (sign 0 counted as +1): a normaliser ``(x - m) * k`` with
    ``k < 0`` equals ``-(x - m) * |k|``, and Keras' ``1/sqrt(...)`` is always positive."""
    g = as_f64(gamma)
    sgn = np.where(as_f64(k) < 0, -1.0, 1.0)
    return g * sgn


def momentum_from_alpha(alpha: float) -> float:
    """Keras momentum from a Lasagne running-average factor: ``momentum = 1 - alpha``.

    (Lasagne: ``stat <- (1-alpha)*stat + alpha*batch``; Keras:
    ``moving <- moving*momentum + batch*(1-momentum)``.)
    """
    return 1.0 - float(alpha)


def negative_channels(a) -> list[int]:
    """Indices of channels with a (finite) negative value."""
    a = as_f64(a).reshape(-1)
    return [int(i) for i in np.nonzero(np.isfinite(a) & (a < 0))[0]]


def nonfinite_channels(a) -> list[int]:
    """Indices of channels holding inf or NaN."""
    a = as_f64(a).reshape(-1)
    return [int(i) for i in np.nonzero(~np.isfinite(a))[0]]


def squeeze_channels(p, axis: int = 1) -> np.ndarray:
    """A per-channel parameter stored with broadcast dims (e.g. ``(1, C, 1, 1)``) as
    ``(C,)``: every axis but ``axis`` must have size 1; a 1-D array is returned as is."""
    a = np.asarray(p)
    if a.ndim <= 1:
        return a.reshape(-1)
    if axis < 0:
        axis += a.ndim
    others = [s for i, s in enumerate(a.shape) if i != axis]
    if any(s != 1 for s in others):
        raise ValueError(f"expected a per-channel array with singleton axes, got shape {a.shape}")
    return a.reshape(-1)


# --------------------------------------------------------------------------------------
# Kernels and dense weights
# --------------------------------------------------------------------------------------
def flip_kernel(W) -> np.ndarray:
    """Rotate the spatial kernel 180deg: ``W[..., ::-1, ::-1]`` (the last two axes).

    A true convolution with kernel ``K`` equals a cross-correlation with
    ``flip_kernel(K)``.
    """
    W = np.asarray(W)
    return np.ascontiguousarray(W[..., ::-1, ::-1])


def caffe_conv_to_keras(W) -> np.ndarray:
    """Caffe ``(O, I/g, kh, kw)`` cross-correlation kernel -> Keras Conv2D
    ``(kh, kw, I/g, O)``: ``W.transpose(2, 3, 1, 0)``."""
    return np.ascontiguousarray(np.asarray(W).transpose(2, 3, 1, 0))


def lasagne_conv_to_keras(W, flip: bool) -> np.ndarray:
    """Lasagne ``(O, I/g, kh, kw)`` kernel -> Keras ``(kh, kw, I/g, O)``:
    ``W[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)`` when ``flip`` (flip_filters=True, a true
    convolution), else ``W.transpose(2, 3, 1, 0)``."""
    W = np.asarray(W)
    if flip:
        W = flip_kernel(W)
    return np.ascontiguousarray(W.transpose(2, 3, 1, 0))


def caffe_deconv_to_keras(W, group: int = 1, dilation=(1, 1)) -> np.ndarray:
    """Caffe Deconvolution ``(I, O/g, kh, kw)`` blob -> Keras ``Conv2DTranspose`` kernel
    ``(kh', kw', O, I)`` (no spatial flip: both scatter ``x[i] * W[a]`` to ``s*i + a``).

    ``group > 1``: block-diagonal kernel (zeros between groups; exact, as Keras's
    Conv2DTranspose has no ``groups``).  ``dilation`` > 1: the kernel is spread out to
    ``d*(k-1)+1`` with zeros (exact; Keras refuses dilation together with strides)."""
    W = np.asarray(W)
    I, Og, kh, kw = W.shape
    if I % group:
        raise ValueError(f"{I} input channels are not divisible by group {group}")
    Ig = I // group
    dh, dw = (int(v) for v in dilation)
    K = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1, Og * group, I), dtype=W.dtype)
    for g in range(group):
        K[::dh, ::dw, g * Og:(g + 1) * Og, g * Ig:(g + 1) * Ig] = \
            W[g * Ig:(g + 1) * Ig].transpose(2, 3, 1, 0)
    return K


def dense_rows_chw_to_hwc(W_io, c: int, h: int, w: int) -> np.ndarray:
    """Permute the input rows of a Dense kernel ``(c*h*w, units)`` from the sources'
    (C, H, W) flatten order to Keras channels-last (H, W, C) flatten order.

    Keras row ``(i*w + j)*c + k`` takes source row ``k*h*w + i*w + j``:
    ``W_keras = W_io[arange(c*h*w).reshape(c, h, w).transpose(1, 2, 0).ravel()]``.
    """
    W_io = np.asarray(W_io)
    n = c * h * w
    if W_io.shape[0] != n:
        raise ValueError(f"dense kernel has {W_io.shape[0]} input rows, expected {c}*{h}*{w} = {n}")
    idx = np.arange(n).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return np.ascontiguousarray(W_io[idx])


def caffe_dense_to_keras(W_oi) -> np.ndarray:
    """Caffe InnerProduct ``(N_out, K_in)`` -> Keras Dense ``(K_in, N_out)``: ``W.T``."""
    return np.ascontiguousarray(np.asarray(W_oi).T)
