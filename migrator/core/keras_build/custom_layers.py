"""The few custom Keras layers Migrator needs (everything else maps onto built-ins).

Every layer here

* is registered serializable under the package ``migrator`` (a saved ``.keras`` file
  loads back with ``keras.saving.load_model`` once this module is imported);
* states its formula in its docstring;
* computes with ``keras.ops`` only (backend independent);
* round-trips through ``get_config``.

All spatial layers are channels-last (``N, H, W, C``).

=======================  ============================================================
layer                    used for
=======================  ============================================================
ChannelAffine            separate Caffe Scale / Bias, Lasagne ScaleLayer / BiasLayer
ConstantPadding2D        max-pool padding with -inf, Lasagne PadLayer with ``val``
LRN                      Caffe LRN (across / within channels), Lasagne LRN
ExactAveragePooling2D    average pooling whose divisor is not ``kh*kw`` (Caffe ceil
                         mode, Lasagne ``average_exc_pad``)
UnaryOp                  abs, Caffe Power ``(shift + scale*x)^power``, scaled tanh
WeightedSum              Caffe Eltwise SUM / Lasagne ElemwiseSumLayer with coefficients
SliceAxis                Caffe Slice / Lasagne SliceLayer (``x[start:stop:step]`` on one axis)
=======================  ============================================================
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = [
    "CUSTOM_LAYERS",
    "LRN",
    "ChannelAffine",
    "ConstantPadding2D",
    "ExactAveragePooling2D",
    "SliceAxis",
    "UnaryOp",
    "WeightedSum",
]

#: the ``package=`` of every custom class registered with Keras (saved models name the classes
#: ``migrator>ClassName``: never change it)
KERAS_PACKAGE = "migrator"


def pair(v, name: str) -> tuple[int, int]:
    """An int or a pair -> a pair of ints (``ValueError`` naming ``name`` otherwise)."""
    if isinstance(v, int):
        return (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return v


def pad_pairs(padding, name: str = "padding") -> tuple[tuple[int, int], tuple[int, int]]:
    """``p`` | ``(ph, pw)`` | ``((top, bottom), (left, right))`` -> the last form."""
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    padding = list(padding)
    if len(padding) != 2:
        raise ValueError(f"{name} must be an int, a pair or a pair of pairs, got {padding!r}")
    out = []
    for p in padding:
        if isinstance(p, int):
            out.append((int(p), int(p)))
        else:
            p = tuple(int(i) for i in p)
            if len(p) != 2:
                raise ValueError(f"{name} must be an int, a pair or a pair of pairs, got {padding!r}")
            out.append(p)
    if any(v < 0 for pr in out for v in pr):
        raise ValueError(f"{name} must be non-negative, got {padding!r}")
    return (out[0], out[1])


# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ChannelAffine(keras.layers.Layer):
    """Per-channel affine map ``y = x * scale + bias``.

    ``scale`` and ``bias`` have the shape of the input along ``axis`` (an int or a list
    of ints, default ``-1`` = the channels of a channels-last tensor) and broadcast over
    every other axis.  ``use_scale=False`` gives ``y = x + bias``; ``use_bias=False``
    gives ``y = x * scale``.  Weights (``get_weights()`` order): ``[scale, bias]``
    without the absent ones.
    """

    def __init__(self, axis=-1, use_scale: bool = True, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not (use_scale or use_bias):
            raise ValueError("ChannelAffine needs use_scale or use_bias")
        self.axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
        self.use_scale = bool(use_scale)
        self.use_bias = bool(use_bias)

    def _axes(self, rank: int) -> list[int]:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        out = sorted(a + rank if a < 0 else a for a in axes)
        if any(a <= 0 or a >= rank for a in out):
            raise ValueError(f"ChannelAffine axis {self.axis} is invalid for rank {rank}")
        return out

    def build(self, input_shape):
        rank = len(input_shape)
        axes = self._axes(rank)
        pshape = tuple(input_shape[a] for a in axes)
        if any(d is None for d in pshape):
            raise ValueError(f"ChannelAffine needs a known size on axis {self.axis}, got {input_shape}")
        self._bshape = tuple(input_shape[a] if a in axes else 1 for a in range(1, rank))
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=pshape, initializer="ones")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=pshape, initializer="zeros")

    def call(self, x):
        y = x
        if self.use_scale:
            y = y * ops.reshape(self.scale, self._bshape)
        if self.use_bias:
            y = y + ops.reshape(self.bias, self._bshape)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, use_scale=self.use_scale, use_bias=self.use_bias)
        return cfg


# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ConstantPadding2D(keras.layers.Layer):
    """Spatial padding with a constant: ``y = pad(x, ((0,0), (top,bottom), (left,right), (0,0)),
    value)`` on a channels-last ``(N, H, W, C)`` tensor.

    ``value=-inf`` pads before max pooling so that padded cells never win (Caffe MAX
    pooling ignores its padding; ceil mode's extra bottom/right cells too).
    """

    def __init__(self, padding=((0, 0), (0, 0)), value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = pad_pairs(padding)
        self.value = float(value)

    def call(self, x):
        (t, b), (l, r) = self.padding
        return ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (t, b), (l, r) = self.padding
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(padding=[list(p) for p in self.padding], value=self.value)
        return cfg


def lrn_window_sum(sq, n: int, region: str, c):
    """The zero-padded window sum of the squares ``sq`` (channels-last, 4-d) of an LRN of size
    ``n``: over ``n`` channels starting ``(n-1)//2`` before each one (``'across'``, ``c``
    channels: a sum of shifted channel slices) or over an ``n x n`` window (``'within'``:
    average pooling of the padded squares, which divides every window by n*n exactly, times
    ``n**2``)."""
    before = (n - 1) // 2
    after = n - 1 - before
    if region == "across":
        padded = ops.pad(sq, [[0, 0], [0, 0], [0, 0], [before, after]]) if n > 1 else sq
        s = padded[..., 0:c]
        for i in range(1, n):
            s = s + padded[..., i:i + c]
        return s
    padded = ops.pad(sq, [[0, 0], [before, after], [before, after], [0, 0]])
    return ops.average_pool(padded, (n, n), strides=(1, 1), padding="valid") * float(n * n)


# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class LRN(keras.layers.Layer):
    """Local response normalisation on a channels-last ``(N, H, W, C)`` tensor.

    ``y = x / (k + coeff * S)^beta`` where ``S`` is a zero-padded sum of squares:

    * ``region='across'``: over ``size`` neighbouring channels ``c - (size-1)//2 ...
      c - (size-1)//2 + size - 1`` (Caffe ACROSS_CHANNELS: ``coeff = alpha/size``;
      Lasagne LocalResponseNormalization2DLayer: ``coeff = alpha``);
    * ``region='within'``: over a ``size x size`` spatial window starting ``(size-1)//2``
      before the pixel (Caffe WITHIN_CHANNEL: ``coeff = alpha/size**2``, ``k = 1``).
    """

    def __init__(self, region: str = "across", size: int = 5, coeff: float = 1e-4,
                 beta: float = 0.75, k: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if region not in ("across", "within"):
            raise ValueError(f"LRN region must be 'across' or 'within', got {region!r}")
        if int(size) < 1:
            raise ValueError(f"LRN size must be >= 1, got {size}")
        self.region = region
        self.size = int(size)
        self.coeff = float(coeff)
        self.beta = float(beta)
        self.k = float(k)

    def call(self, x):
        c = x.shape[-1]
        if c is None:
            c = ops.shape(x)[-1]
        s = lrn_window_sum(ops.square(x), self.size, self.region, c)
        return x / ops.power(self.k + self.coeff * s, self.beta)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(region=self.region, size=self.size, coeff=self.coeff, beta=self.beta, k=self.k)
        return cfg


# --------------------------------------------------------------------------------------
def avg_pool_divisor(length: int, kernel: int, stride: int, pad: tuple[int, int],
                     counted: tuple[int, int]) -> np.ndarray:
    """Per-output-position divisor of a 1-D average pooling.

    The input (``length`` cells) is padded by ``pad = (before, after)``; of that padding
    ``counted = (before, after)`` cells next to the input count in the divisor (the rest
    -- e.g. ceil mode's overhang -- does not).  Returns, for each valid window, the number
    of counted cells it covers.
    """
    b, a = pad
    cb, ca = counted
    total = length + b + a
    mask = np.zeros(total, dtype=np.float64)
    mask[b - cb:b + length + ca] = 1.0
    n_out = (total - kernel) // stride + 1
    if n_out <= 0:
        return np.zeros(0)
    return np.array([mask[i * stride:i * stride + kernel].sum() for i in range(n_out)])


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ExactAveragePooling2D(keras.layers.Layer):
    """Average pooling with an explicit divisor (channels-last).

    The input is zero-padded by ``padding = ((top, bottom), (left, right))`` and pooled
    with ``pool_size``/``strides`` ('valid' windows).  Each window's sum is divided by the
    number of cells it covers that are either input cells or *counted* padding
    (``counted_padding``, the part of ``padding`` next to the input that counts):

    ``y[i, j] = sum(window) / (rows_counted(i) * cols_counted(j))``

    * Caffe AVE (window clipped to ``L + pad``, pad zeros counted; ceil overhang not):
      ``padding = ((p, p + extra), ...)``, ``counted_padding = ((p, p), ...)``;
    * Lasagne/Theano ``average_inc_pad``: same as Caffe;
    * Lasagne/Theano ``average_exc_pad``: ``counted_padding = 0``.
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding=((0, 0), (0, 0)),
                 counted_padding=((0, 0), (0, 0)), **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else pair(strides, "strides")
        self.padding = pad_pairs(padding)
        self.counted_padding = pad_pairs(counted_padding, "counted_padding")
        for (p0, p1), (c0, c1) in zip(self.padding, self.counted_padding):
            if c0 > p0 or c1 > p1:
                raise ValueError("counted_padding cannot exceed padding")
        self._factor = None

    def _factor_np(self, h: int, w: int) -> np.ndarray:
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        dh = avg_pool_divisor(h, kh, sh, self.padding[0], self.counted_padding[0])
        dw = avg_pool_divisor(w, kw, sw, self.padding[1], self.counted_padding[1])
        with np.errstate(divide="ignore"):
            f = (kh * kw) / np.outer(dh, dw)   # avg_pool divides by kh*kw; rescale
        return f.astype(np.float32)[None, :, :, None]

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is not None and w is not None:
            self._factor = self._factor_np(int(h), int(w))

    def _dynamic_factor(self, x):
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        (t, b), (l, r) = self.padding
        (ct, cb), (cl, cr) = self.counted_padding
        shp = ops.shape(x)
        ones = ops.ones((1, shp[1], shp[2], 1), dtype=x.dtype)
        m = ops.pad(ones, [[0, 0], [ct, cb], [cl, cr], [0, 0]], constant_values=1.0)
        m = ops.pad(m, [[0, 0], [t - ct, b - cb], [l - cl, r - cr], [0, 0]])
        cnt = ops.average_pool(m, (kh, kw), strides=(sh, sw), padding="valid")
        return 1.0 / cnt   # (count/(kh*kw))^-1

    def call(self, x):
        (t, b), (l, r) = self.padding
        xp = ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]]) if (t or b or l or r) else x
        avg = ops.average_pool(xp, self.pool_size, strides=self.strides, padding="valid")
        f = self._factor if self._factor is not None else self._dynamic_factor(x)
        return avg * ops.cast(f, avg.dtype)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        out = []
        for L, k, s, (p0, p1) in ((h, self.pool_size[0], self.strides[0], self.padding[0]),
                                  (w, self.pool_size[1], self.strides[1], self.padding[1])):
            out.append(None if L is None else (L + p0 + p1 - k) // s + 1)
        return (n, out[0], out[1], c)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=list(self.pool_size), strides=list(self.strides),
                   padding=[list(p) for p in self.padding],
                   counted_padding=[list(p) for p in self.counted_padding])
        return cfg


# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class UnaryOp(keras.layers.Layer):
    """Element-wise maps Keras has no exact built-in for.

    * ``kind='abs'``: ``y = |x|``;
    * ``kind='power'``: ``y = (shift + scale * x) ** power`` (Caffe Power; ``power == 1``
      computes ``shift + scale*x`` without a pow);
    * ``kind='scaled_tanh'``: ``y = scale_out * tanh(scale_in * x)`` (Lasagne ScaledTanH).
    """

    KINDS = ("abs", "power", "scaled_tanh")

    def __init__(self, kind: str = "abs", power: float = 1.0, scale: float = 1.0, shift: float = 0.0,
                 scale_in: float = 1.0, scale_out: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"UnaryOp kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.power = float(power)
        self.scale = float(scale)
        self.shift = float(shift)
        self.scale_in = float(scale_in)
        self.scale_out = float(scale_out)

    def call(self, x):
        if self.kind == "abs":
            return ops.abs(x)
        if self.kind == "scaled_tanh":
            return self.scale_out * ops.tanh(self.scale_in * x)
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        if self.power == 1.0:
            return y
        if self.power == 2.0:
            return ops.square(y)
        return ops.power(y, self.power)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(kind=self.kind, power=self.power, scale=self.scale, shift=self.shift,
                   scale_in=self.scale_in, scale_out=self.scale_out)
        return cfg


# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class WeightedSum(keras.layers.Layer):
    """``y = sum_i coeffs[i] * x_i`` over a list of same-shape inputs (Caffe Eltwise SUM
    with ``coeff``, Lasagne ElemwiseSumLayer with ``coeffs``)."""

    def __init__(self, coeffs=(1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.coeffs = [float(c) for c in coeffs]
        if not self.coeffs:
            raise ValueError("WeightedSum needs at least one coefficient")

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != len(self.coeffs):
            raise ValueError(f"WeightedSum has {len(self.coeffs)} coefficients but got "
                             f"{len(inputs)} inputs")
        y = None
        for c, x in zip(self.coeffs, inputs):
            t = x if c == 1.0 else x * c
            y = t if y is None else y + t
        return y

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(coeffs=list(self.coeffs))
        return cfg


# --------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class SliceAxis(keras.layers.Layer):
    """``y = x[..., start:stop:step, ...]`` on one axis (Python slice semantics; ``None``
    allowed; ``axis`` counts the batch axis as 0 and may not be 0)."""

    def __init__(self, axis: int = -1, start=None, stop=None, step=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.start = None if start is None else int(start)
        self.stop = None if stop is None else int(stop)
        self.step = None if step is None else int(step)
        if self.step == 0:
            raise ValueError("SliceAxis step cannot be 0")

    def _axis(self, rank: int) -> int:
        a = self.axis + rank if self.axis < 0 else self.axis
        if a <= 0 or a >= rank:
            raise ValueError(f"SliceAxis axis {self.axis} is invalid for rank {rank}")
        return a

    def call(self, x):
        rank = len(x.shape)
        a = self._axis(rank)
        idx = [slice(None)] * rank
        idx[a] = slice(self.start, self.stop, self.step)
        return x[tuple(idx)]

    def compute_output_shape(self, input_shape):
        a = self._axis(len(input_shape))
        shp = list(input_shape)
        if shp[a] is not None:
            shp[a] = len(range(*slice(self.start, self.stop, self.step).indices(shp[a])))
        return tuple(shp)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, start=self.start, stop=self.stop, step=self.step)
        return cfg


CUSTOM_LAYERS: dict[str, type] = {c.__name__: c for c in (
    ChannelAffine, ConstantPadding2D, LRN, ExactAveragePooling2D, UnaryOp, WeightedSum, SliceAxis)}

