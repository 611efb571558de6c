"""Write small Caffe networks from code: text ``.prototxt`` + binary ``.caffemodel``.

Used by tests, demos and benchmarks to produce Caffe fixtures without Caffe and without
committed binaries.  Files are written with Migrator's own protobuf schema (wire- and
text-compatible with BVLC Caffe; OpenCV's Caffe reader accepts them)::

    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("tiny", seed=0)
    nb.input("data", (1, 3, 17, 19))
    nb.conv("conv1", "data", 8, 3, pad=1)
    nb.bn("bn1", "conv1", top="conv1")          # in place
    nb.scale("scale1", "conv1", top="conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.pool("pool1", "conv1", "max", 3, stride=2)
    nb.ip("fc", "pool1", 10)
    nb.softmax("prob", "fc")
    nb.save("tiny.prototxt", "tiny.caffemodel")

Weights are random but realistic (seeded): He-scaled kernels, BatchNorm statistics stored
as Caffe stores them (sums multiplied by the moving-average scale factor, variance
positive), Scale gammas around 1.  ``nb.weights[layer]`` holds the *stored* blobs.

``save`` options produce the file flavours found in the wild: V1 (``layers`` with enum
types), inputs as ``input``+``input_dim`` / ``input_shape`` / an Input layer, a
caffemodel holding the *training* net (Data/Split/loss/accuracy layers around the
weights), legacy 4-d blob dims (num/channels/height/width), unpacked float data, or
``double_data``.
"""
from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from migrator.core.importers.caffe_proto import pb

# V2 type -> V1 enum name (the inverse of the importer's table, written out here so the
# writer does not depend on the reader).
_V1_ENUM = {
    "AbsVal": "ABSVAL", "Accuracy": "ACCURACY", "ArgMax": "ARGMAX", "BNLL": "BNLL",
    "Concat": "CONCAT", "Convolution": "CONVOLUTION", "Deconvolution": "DECONVOLUTION",
    "Data": "DATA", "Dropout": "DROPOUT", "DummyData": "DUMMY_DATA", "Eltwise": "ELTWISE",
    "Exp": "EXP", "Flatten": "FLATTEN", "ImageData": "IMAGE_DATA", "InnerProduct": "INNER_PRODUCT",
    "LRN": "LRN", "MemoryData": "MEMORY_DATA", "MVN": "MVN", "Pooling": "POOLING", "Power": "POWER",
    "ReLU": "RELU", "Sigmoid": "SIGMOID", "Silence": "SILENCE", "Softmax": "SOFTMAX",
    "SoftmaxWithLoss": "SOFTMAX_LOSS", "Split": "SPLIT", "Slice": "SLICE", "TanH": "TANH",
    "Threshold": "THRESHOLD", "EuclideanLoss": "EUCLIDEAN_LOSS",
}


@dataclass
class LayerSpec:
    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)   # 'convolution_param': {...}
    blobs: list[np.ndarray] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)               # include/exclude etc.


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _put_pair(cp: dict, key: str, hw: tuple[int, int], default: tuple[int, int]) -> None:
    """Set ``cp[key]`` to ``hw`` in Caffe's repeated-field form (one value when both are
    equal) unless it is the ``default``."""
    if hw != default:
        cp[key] = [hw[0]] if hw[0] == hw[1] else list(hw)


def _conv_param(num_output, bias, k, s, p, d, group, rect_fields=False) -> dict[str, Any]:
    """The convolution_param of a (de)convolution: (h, w) kernel ``k``, stride ``s``, pad ``p``,
    dilation ``d`` as repeated fields (kernel/stride/pad as kernel_h/... with ``rect_fields``);
    fields at their default are left out."""
    cp: dict[str, Any] = {"num_output": num_output, **({} if bias else {"bias_term": False})}
    if rect_fields:
        cp.update(kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1], pad_h=p[0], pad_w=p[1])
    else:
        _put_pair(cp, "kernel_size", k, None)
        _put_pair(cp, "stride", s, (1, 1))
        _put_pair(cp, "pad", p, (0, 0))
    _put_pair(cp, "dilation", d, (1, 1))
    if group != 1:
        cp["group"] = group
    return cp


class NetBuilder:
    """Build a Caffe net layer by layer; see the module docstring."""

    def __init__(self, name: str = "net", seed: int = 0):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.layers: list[LayerSpec] = []
        self.inputs: list[tuple[str, tuple[int, ...]]] = []     # (blob, shape)
        self.shapes: dict[str, tuple[int, ...]] = {}           # blob -> current shape
        self.weights: dict[str, list[np.ndarray]] = {}

    # ---------------------------------------------------------------- internals
    def _add(self, name, type_, bottoms, tops, params=None, blobs=None, out_shape=None, **extra):
        if isinstance(bottoms, str):
            bottoms = [bottoms]
        if isinstance(tops, str):
            tops = [tops]
        spec = LayerSpec(name, type_, list(bottoms), list(tops), params or {}, list(blobs or []),
                         extra)
        self.layers.append(spec)
        if spec.blobs:
            self.weights[name] = spec.blobs
        for t in spec.tops:
            if out_shape is not None:
                self.shapes[t] = tuple(out_shape)
            elif spec.bottoms and spec.bottoms[0] in self.shapes:
                self.shapes[t] = self.shapes[spec.bottoms[0]]
        return self

    def shape(self, blob: str) -> tuple[int, ...]:
        return self.shapes[blob]

    def _normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def _uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    # ---------------------------------------------------------------- layers
    def input(self, name: str, shape: Sequence[int]):
        """A network input (written as an Input layer or input/input_dim/input_shape, see save)."""
        self.inputs.append((name, tuple(int(d) for d in shape)))
        self.shapes[name] = tuple(int(d) for d in shape)
        return self

    def conv(self, name, bottom, num_output, kernel, stride=1, pad=0, group=1, dilation=1,
             bias=True, top=None, rect_fields=False):
        """Convolution.  ``kernel``/``stride``/``pad`` may be (h, w) pairs; ``rect_fields``
        writes them as kernel_h/kernel_w etc. instead of repeated kernel_size values."""
        n, c, h, w = self.shapes[bottom]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, pad, dilation))
        cp = _conv_param(num_output, bias, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, rect_fields)
        fan_in = (c // group) * kh * kw
        blobs = [self._normal((num_output, c // group, kh, kw), math.sqrt(2.0 / fan_in))]
        if bias:
            blobs.append(self._normal((num_output,), 0.1))
        oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
        ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
        return self._add(name, "Convolution", bottom, top or name, {"convolution_param": cp}, blobs,
                         (n, num_output, oh, ow))

    def ip(self, name, bottom, num_output, bias=True, transpose=False, axis=1, top=None):
        shape = self.shapes[bottom]
        k = int(np.prod(shape[axis:]))
        p: dict[str, Any] = {"num_output": num_output}
        if not bias:
            p["bias_term"] = False
        if transpose:
            p["transpose"] = True
        if axis != 1:
            p["axis"] = axis
        wshape = (k, num_output) if transpose else (num_output, k)
        blobs = [self._normal(wshape, math.sqrt(1.0 / k))]
        if bias:
            blobs.append(self._normal((num_output,), 0.1))
        return self._add(name, "InnerProduct", bottom, top or name, {"inner_product_param": p},
                         blobs, tuple(shape[:axis]) + (num_output,))

    def bn(self, name, bottom, top=None, eps=1e-5, scale_factor=999.98, use_global_stats=True):
        c = self.shapes[bottom][1]
        mean = self._normal((c,), 0.5)
        var = self._uniform((c,), 0.2, 2.0)
        blobs = [(mean * scale_factor).astype(np.float32), (var * scale_factor).astype(np.float32),
                 np.array([scale_factor], np.float32)]
        p: dict[str, Any] = {}
        if use_global_stats is not None:
            p["use_global_stats"] = use_global_stats
        if eps != 1e-5:
            p["eps"] = eps
        return self._add(name, "BatchNorm", bottom, top or bottom, {"batch_norm_param": p}, blobs)

    def bn_scale(self, bn, scale, blob):
        """The usual Caffe pair: a BatchNorm ``bn`` then a Scale ``scale`` (with bias), both in
        place on ``blob``."""
        self.bn(bn, blob, top=blob)
        return self.scale(scale, blob, top=blob)

    def scale(self, name, bottom, bias=True, top=None, scale_bottom=None, axis=1, num_axes=1):
        """Scale; with ``scale_bottom`` the scale comes from that second bottom."""
        shape = self.shapes[bottom]
        pshape = shape[axis:axis + num_axes] if num_axes >= 0 else shape[axis:]
        if scale_bottom is not None:     # the bias then has the second bottom's shape
            pshape = self.shapes[scale_bottom]
        blobs = []
        if scale_bottom is None:
            blobs.append(self._uniform(pshape, 0.5, 1.5))
        if bias:
            blobs.append(self._normal(pshape, 0.2))
        p: dict[str, Any] = {}
        if bias:
            p["bias_term"] = True
        if axis != 1:
            p["axis"] = axis
        if num_axes != 1:
            p["num_axes"] = num_axes
        bottoms = [bottom] + ([scale_bottom] if scale_bottom else [])
        return self._add(name, "Scale", bottoms, top or bottom, {"scale_param": p}, blobs)

    def bias(self, name, bottom, top=None):
        c = self.shapes[bottom][1]
        return self._add(name, "Bias", bottom, top or bottom, {}, [self._normal((c,), 0.2)])

    def relu(self, name, bottom, negative_slope=0.0, top=None):
        p = {"relu_param": {"negative_slope": negative_slope}} if negative_slope else {}
        return self._add(name, "ReLU", bottom, top or bottom, p)

    def prelu(self, name, bottom, channel_shared=False, top=None):
        # Caffe's blob: (C,), or a 0-d scalar when channel_shared (real Caffe refuses (1,))
        c = () if channel_shared else (self.shapes[bottom][1],)
        p = {"prelu_param": {"channel_shared": True}} if channel_shared else {}
        return self._add(name, "PReLU", bottom, top or bottom, p, [self._uniform(c, 0.05, 0.3)])

    def elu(self, name, bottom, alpha=1.0, top=None):
        p = {"elu_param": {"alpha": alpha}} if alpha != 1.0 else {}
        return self._add(name, "ELU", bottom, top or bottom, p)

    def sigmoid(self, name, bottom, top=None):
        return self._add(name, "Sigmoid", bottom, top or bottom)

    def tanh(self, name, bottom, top=None):
        return self._add(name, "TanH", bottom, top or bottom)

    def absval(self, name, bottom, top=None):
        return self._add(name, "AbsVal", bottom, top or bottom)

    def bnll(self, name, bottom, top=None):
        return self._add(name, "BNLL", bottom, top or bottom)

    def power(self, name, bottom, power=1.0, scale=1.0, shift=0.0, top=None):
        return self._add(name, "Power", bottom, top or bottom,
                         {"power_param": {"power": power, "scale": scale, "shift": shift}})

    def dropout(self, name, bottom, ratio=0.5, top=None):
        return self._add(name, "Dropout", bottom, top or bottom,
                         {"dropout_param": {"dropout_ratio": ratio}})

    def pool(self, name, bottom, mode="max", kernel=2, stride=None, pad=0, global_pooling=False,
             round_mode=None, ceil_mode=None, top=None):
        """``round_mode`` 'CEIL'/'FLOOR' (BVLC); ``ceil_mode`` True/False (the forks' field)."""
        n, c, h, w = self.shapes[bottom]
        if ceil_mode is not None:
            round_mode = "CEIL" if ceil_mode else "FLOOR"   # the output shape below
        p: dict[str, Any] = {"pool": {"max": "MAX", "avg": "AVE", "ave": "AVE",
                                      "stochastic": "STOCHASTIC"}[mode]}
        if global_pooling:
            p["global_pooling"] = True
            out = (n, c, 1, 1)
        else:
            kh, kw = _pair(kernel)
            sh, sw = _pair(stride if stride is not None else 1)
            ph, pw = _pair(pad)
            if kh == kw:
                p["kernel_size"] = kh
            else:
                p.update(kernel_h=kh, kernel_w=kw)
            if (sh, sw) != (1, 1):
                if sh == sw:
                    p["stride"] = sh
                else:
                    p.update(stride_h=sh, stride_w=sw)
            if (ph, pw) != (0, 0):
                if ph == pw:
                    p["pad"] = ph
                else:
                    p.update(pad_h=ph, pad_w=pw)
            if ceil_mode is not None:
                p["ceil_mode"] = bool(ceil_mode)
            elif round_mode:
                p["round_mode"] = round_mode.upper()

            def olen(L, k, s, pd):
                if round_mode and round_mode.upper() == "FLOOR":
                    return (L + 2 * pd - k) // s + 1
                o = -(-(L + 2 * pd - k) // s) + 1
                if pd > 0 and (o - 1) * s >= L + pd:
                    o -= 1
                return o
            out = (n, c, olen(h, kh, sh, ph), olen(w, kw, sw, pw))
        return self._add(name, "Pooling", bottom, top or name, {"pooling_param": p}, None, out)

    def lrn(self, name, bottom, local_size=5, alpha=1e-4, beta=0.75, k=1.0, region="across",
            top=None):
        p = {"local_size": local_size, "alpha": alpha, "beta": beta, "k": k}
        if region == "within":
            p["norm_region"] = "WITHIN_CHANNEL"
        return self._add(name, "LRN", bottom, top or name, {"lrn_param": p})

    def eltwise(self, name, bottoms, operation="sum", coeffs=None, top=None):
        p: dict[str, Any] = {}
        if operation != "sum":
            p["operation"] = operation.upper()
        if coeffs is not None:
            p["coeff"] = list(coeffs)
        return self._add(name, "Eltwise", bottoms, top or name, {"eltwise_param": p} if p else {})

    def concat(self, name, bottoms, axis=1, legacy_concat_dim=False, top=None):
        shapes = [self.shapes[b] for b in bottoms]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        p = {"concat_dim": axis} if legacy_concat_dim else ({"axis": axis} if axis != 1 else {})
        return self._add(name, "Concat", bottoms, top or name, {"concat_param": p} if p else {},
                         None, tuple(out))

    def flatten(self, name, bottom, axis=1, end_axis=-1, top=None):
        s = self.shapes[bottom]
        e = end_axis % len(s)
        out = tuple(s[:axis]) + (int(np.prod(s[axis:e + 1])),) + tuple(s[e + 1:])
        p = {}
        if axis != 1 or end_axis != -1:
            p = {"flatten_param": {"axis": axis, "end_axis": end_axis}}
        return self._add(name, "Flatten", bottom, top or name, p, None, out)

    def reshape(self, name, bottom, shape, top=None):
        s = self.shapes[bottom]
        out = [s[i] if d == 0 else d for i, d in enumerate(shape)]
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1]))
            out[out.index(-1)] = int(np.prod(s)) // known
        return self._add(name, "Reshape", bottom, top or name,
                         {"reshape_param": {"shape": {"dim": list(shape)}}}, None, tuple(out))

    def split(self, name, bottom, tops):
        return self._add(name, "Split", bottom, list(tops))

    def slice(self, name, bottom, tops, axis=1, slice_points=(), legacy_slice_dim=False):
        """Slice ``bottom`` along ``axis`` into ``tops`` (at ``slice_points``; equal parts when
        empty).  ``legacy_slice_dim`` writes the axis as the old ``slice_dim`` field."""
        tops = list(tops)
        shape = self.shapes[bottom]
        ax = axis % len(shape)
        pts = [int(p) for p in slice_points]
        edges = [0] + pts + [shape[ax]] if pts else \
            [i * (shape[ax] // len(tops)) for i in range(len(tops) + 1)]
        p: dict[str, Any] = {}
        if legacy_slice_dim:
            p["slice_dim"] = axis
        elif axis != 1:
            p["axis"] = axis
        if pts:
            p["slice_point"] = pts
        self._add(name, "Slice", bottom, tops, {"slice_param": p})
        for t, b, e in zip(tops, edges, edges[1:]):
            self.shapes[t] = tuple(shape[:ax]) + (e - b,) + tuple(shape[ax + 1:])
        return self

    def crop(self, name, bottom, reference, axis=2, offset=(), top=None):
        """Crop ``bottom`` to the shape of ``reference`` from ``axis`` on, at ``offset`` (one
        value for all axes or one per axis; none = 0)."""
        shape, ref = self.shapes[bottom], self.shapes[reference]
        ax = axis % len(shape)
        p: dict[str, Any] = {}
        if axis != 2:
            p["axis"] = axis
        offs = [int(o) for o in (offset if isinstance(offset, (list, tuple)) else [offset])]
        if offs:
            p["offset"] = offs
        return self._add(name, "Crop", [bottom, reference], top or name, {"crop_param": p},
                         out_shape=tuple(shape[:ax]) + tuple(ref[ax:]))

    def deconv(self, name, bottom, num_output, kernel, stride=1, pad=0, group=1, dilation=1,
               bias=True, top=None, weight=None, bias_value=None):
        """Deconvolution (Caffe's transposed convolution); weight blob (in, out/group, kh, kw).
        ``weight``/``bias_value`` give fixed blobs (e.g. FCN bilinear upsampling kernels)."""
        n, c, h, w = self.shapes[bottom]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, pad, dilation))
        cp = _conv_param(num_output, bias, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group)
        if weight is None:
            weight = self._normal((c, num_output // group, kh, kw), math.sqrt(1.0 / (c // group * kh * kw)))
        blobs = [np.asarray(weight, np.float32)]
        if bias:
            blobs.append(np.asarray(bias_value, np.float32) if bias_value is not None
                         else self._normal((num_output,), 0.1))
        oh = sh * (h - 1) + dh * (kh - 1) + 1 - 2 * ph
        ow = sw * (w - 1) + dw * (kw - 1) + 1 - 2 * pw
        return self._add(name, "Deconvolution", bottom, top or name, {"convolution_param": cp}, blobs,
                         (n, num_output, oh, ow))

    def softmax(self, name, bottom, axis=1, top=None):
        p = {"softmax_param": {"axis": axis}} if axis != 1 else {}
        return self._add(name, "Softmax", bottom, top or name, p)

    # ---------------------------------------------------------------- the rest of the BVLC layer catalogue
    def exp(self, name, bottom, base=-1.0, scale=1.0, shift=0.0, top=None):
        return self._add(name, "Exp", bottom, top or name,
                         {"exp_param": {"base": base, "scale": scale, "shift": shift}})

    def log(self, name, bottom, base=-1.0, scale=1.0, shift=0.0, top=None):
        return self._add(name, "Log", bottom, top or name,
                         {"log_param": {"base": base, "scale": scale, "shift": shift}})

    def threshold(self, name, bottom, threshold=0.0, top=None):
        return self._add(name, "Threshold", bottom, top or name,
                         {"threshold_param": {"threshold": threshold}})

    def clip(self, name, bottom, min, max, top=None):
        return self._add(name, "Clip", bottom, top or name, {"clip_param": {"min": min, "max": max}})

    def swish(self, name, bottom, beta=1.0, top=None):
        return self._add(name, "Swish", bottom, top or name, {"swish_param": {"beta": beta}})

    def reduction(self, name, bottom, operation="SUM", axis=0, coeff=1.0, top=None):
        s = self.shapes[bottom]
        return self._add(name, "Reduction", bottom, top or name,
                         {"reduction_param": {"operation": operation, "axis": axis, "coeff": coeff}},
                         out_shape=tuple(s[:axis % len(s)]))

    def mvn(self, name, bottom, normalize_variance=True, across_channels=False, eps=1e-9, top=None):
        s = tuple(self.shapes[bottom])
        return self._add(name, "MVN", bottom, top or name,   # Caffe's top is 4-d (N, C, H, W)
                         {"mvn_param": {"normalize_variance": normalize_variance,
                                        "across_channels": across_channels, "eps": eps}},
                         out_shape=s + (1,) * (4 - len(s)))

    def tile(self, name, bottom, tiles, axis=1, top=None):
        s = list(self.shapes[bottom])
        s[axis % len(s)] *= tiles
        return self._add(name, "Tile", bottom, top or name,
                         {"tile_param": {"axis": axis, "tiles": tiles}}, out_shape=tuple(s))

    def argmax(self, name, bottom, top_k=1, axis=None, out_max_val=False, top=None):
        s = list(self.shapes[bottom])
        p: dict[str, Any] = {"top_k": top_k, "out_max_val": out_max_val}
        if axis is not None:
            p["axis"] = axis
            s[axis % len(s)] = top_k
            out = tuple(s)
        else:
            out = (s[0], 2 if out_max_val else 1, top_k) + (1,) * max(0, len(s) - 3)
        return self._add(name, "ArgMax", bottom, top or name, {"argmax_param": p}, out_shape=out)

    def embed(self, name, bottom, num_output, input_dim, bias=True, top=None):
        blobs = [self._normal((input_dim, num_output), 1.0)]
        if bias:
            blobs.append(self._normal((num_output,), 0.5))
        p = {"num_output": num_output, "input_dim": input_dim}
        if not bias:
            p["bias_term"] = False
        return self._add(name, "Embed", bottom, top or name, {"embed_param": p}, blobs,
                         tuple(self.shapes[bottom]) + (num_output,))

    def layer(self, name, type_, bottoms, tops, params=None, blobs=None, out_shape=None, **extra):
        """Any layer (e.g. a type Migrator does not convert)."""
        return self._add(name, type_, bottoms, tops, params, blobs, out_shape, **extra)

    # ---------------------------------------------------------------- Caffe forks' layers
    def relu6(self, name, bottom, top=None):
        return self._add(name, "ReLU6", bottom, top or name)

    def upsample(self, name, bottom, scale=2, top=None):
        """YOLOv3 forks' nearest-neighbour Upsample (``scale`` int or (h, w))."""
        n, c, h, w = self.shapes[bottom]
        sh, sw = _pair(scale)
        p = {"scale": sh} if sh == sw else {"scale_h": sh, "scale_w": sw}
        return self._add(name, "Upsample", bottom, top or name, {"upsample_param": p}, None,
                         (n, c, h * sh, w * sw))

    def interp(self, name, bottom, *, zoom_factor=None, shrink_factor=None, height=None,
               width=None, pad_beg=0, pad_end=0, top=None):
        """DeepLab/PSPNet Interp (the output size is left to the importer's shape rule)."""
        p: dict[str, Any] = {}
        for k, v in (("zoom_factor", zoom_factor), ("shrink_factor", shrink_factor),
                     ("height", height), ("width", width)):
            if v is not None:
                p[k] = v
        if pad_beg:
            p["pad_beg"] = pad_beg
        if pad_end:
            p["pad_end"] = pad_end
        return self._add(name, "Interp", bottom, top or name, {"interp_param": p})

    def permute(self, name, bottom, order, top=None):
        shp = self.shapes[bottom]
        full = list(order) + [a for a in range(len(shp)) if a not in order]
        return self._add(name, "Permute", bottom, top or name,
                         {"permute_param": {"order": list(order)}}, None,
                         tuple(shp[a] for a in full))

    def normalize(self, name, bottom, across_spatial=False, channel_shared=False, eps=1e-10,
                  top=None):
        """SSD Normalize with a learned scale blob (around 20, as SSD's conv4_3_norm)."""
        c = self.shapes[bottom][1]
        p = {"across_spatial": across_spatial, "channel_shared": channel_shared, "eps": eps}
        scale = self._uniform((1,) if channel_shared else (c,), 10.0, 30.0)
        return self._add(name, "Normalize", bottom, top or name, {"norm_param": p}, [scale])

    def depthwise_conv(self, name, bottom, kernel, stride=1, pad=0, bias=True,
                       type_="ConvolutionDepthwise", write_group=False, top=None):
        """A fork depthwise convolution (one filter per input channel; ``group`` is written
        only when ``write_group``, as some forks' prototxts omit it)."""
        self.conv(name, bottom, self.shapes[bottom][1], kernel, stride, pad,
                  group=self.shapes[bottom][1], bias=bias, top=top)
        spec = self.layers[-1]
        spec.type = type_
        if not write_group:
            spec.params["convolution_param"].pop("group", None)
        return self

    def shuffle_channel(self, name, bottom, group, top=None):
        return self._add(name, "ShuffleChannel", bottom, top or name,
                         {"shuffle_channel_param": {"group": group}})

    # ---------------------------------------------------------------- writing
    def net_param(self, *, v1=False, input_style="layer", with_blobs=False, legacy_dims=False,
                  double=False, train_net=False):
        """The NetParameter message (``with_blobs``: weights included, as in a caffemodel)."""
        net = pb.NetParameter()
        net.name = self.name
        layers: list[LayerSpec] = []
        if train_net:
            layers = self._train_layers()
        else:
            if input_style == "layer" and v1:
                input_style = "input_shape"      # V1 has no Input layer
            if input_style == "layer":
                for blob, shape in self.inputs:
                    layers.append(LayerSpec(blob, "Input", [], [blob],
                                            {"input_param": {"shape": [{"dim": list(shape)}]}}))
            elif input_style in ("input_dim", "input_shape"):
                for blob, shape in self.inputs:
                    net.input.append(blob)
                    if input_style == "input_dim":
                        if len(shape) != 4:
                            raise ValueError("input_dim needs 4-d input shapes")
                        net.input_dim.extend(shape)
                    else:
                        net.input_shape.add().dim.extend(shape)
            else:
                raise ValueError(f"unknown input_style {input_style!r}")
            layers += self.layers
        for spec in layers:
            if v1:
                lp = net.layers.add()
                if spec.type not in _V1_ENUM:
                    raise ValueError(f"layer type {spec.type} does not exist in the V1 format")
                lp.type = pb.V1LayerParameter.LayerType.Value(_V1_ENUM[spec.type])
            else:
                lp = net.layer.add()
                lp.type = spec.type
            lp.name = spec.name
            lp.bottom.extend(spec.bottoms)
            lp.top.extend(spec.tops)
            for fname, fields in spec.params.items():
                _fill(getattr(lp, fname), fields)
            for key, rules in spec.extra.items():
                if key in ("include", "exclude"):
                    for r in rules:
                        _fill(getattr(lp, key).add(), r)
            if with_blobs:
                for arr in spec.blobs:
                    _fill_blob(lp.blobs.add(), arr, spec.type, legacy_dims, double)
        return net

    def _train_layers(self) -> list[LayerSpec]:
        """The layers of a matching training net: a Data layer instead of the inputs, Split
        layers where a blob has several consumers (as Caffe inserts them), a loss and an
        accuracy layer on the last top."""
        out: list[LayerSpec] = []
        for blob, shape in self.inputs:
            out.append(LayerSpec(blob, "Data", [], [blob, "label"],
                                 {"data_param": {"source": "train_lmdb", "batch_size": 32,
                                                 "backend": "LMDB"},
                                  "transform_param": {"mirror": True, "crop_size": shape[-1]}},
                                 extra={"include": [{"phase": "TRAIN"}]}))
        consumers: dict[str, int] = {}
        for spec in self.layers:
            for b in spec.bottoms:
                consumers[b] = consumers.get(b, 0) + 1
        for spec in self.layers:
            out.append(spec)
            for t in spec.tops:
                if t not in spec.bottoms and consumers.get(t, 0) > 1:
                    k = consumers[t]
                    out.append(LayerSpec(f"{t}_{spec.name}_0_split", "Split", [t],
                                         [f"{t}_{spec.name}_0_split_{i}" for i in range(k)]))
        last = self.layers[-1].tops[0]
        out.append(LayerSpec("loss", "SoftmaxWithLoss", [last, "label"], ["loss"]))
        out.append(LayerSpec("accuracy", "Accuracy", [last, "label"], ["accuracy"],
                             extra={"include": [{"phase": "TEST"}]}))
        return out

    def prototxt_text(self, *, v1=False, input_style="layer", with_blobs=False) -> str:
        from google.protobuf import text_format
        return text_format.MessageToString(self.net_param(v1=v1, input_style=input_style,
                                                          with_blobs=with_blobs))

    def caffemodel_bytes(self, *, v1=False, input_style="layer", train_net=False,
                         legacy_dims=False, unpacked=False, double=False) -> bytes:
        net = self.net_param(v1=v1, input_style=input_style, with_blobs=not unpacked,
                             legacy_dims=legacy_dims, double=double, train_net=train_net)
        if not unpacked:
            return net.SerializeToString()
        # unpacked float data (old writers): encode the blobs by hand and append them
        by_name = {s.name: s for s in self.layers}
        layer_field = 2 if v1 else 100
        blob_field = 6 if v1 else 7
        seq = net.layers if v1 else net.layer
        layer_bytes = []
        for lp in seq:
            body = lp.SerializeToString()
            spec = by_name.get(lp.name)
            if spec is not None:
                for arr in spec.blobs:
                    body += _field_bytes(blob_field, _unpacked_blob(arr, spec.type, legacy_dims))
            layer_bytes.append(_field_bytes(layer_field, body))
        del seq[:]
        return net.SerializeToString() + b"".join(layer_bytes)

    def save(self, prototxt_path: str | os.PathLike, caffemodel_path: str | os.PathLike | None = None,
             *, v1=False, input_style="layer", train_net_extras=False, legacy_dims=False,
             unpacked=False, double=False, weights_v1=None) -> tuple[str, str | None]:
        """Write the deploy prototxt and (optionally) the caffemodel; returns the paths.

        ``v1``: both files in the V1 format (``weights_v1`` overrides it for the caffemodel);
        ``input_style``: 'layer' | 'input_dim' | 'input_shape';
        ``train_net_extras``: the caffemodel holds the training net (Data/Split/loss layers);
        ``legacy_dims``: blobs use num/channels/height/width ((1,1,N,K) IP weights,
        (1,1,1,C) vectors); ``unpacked``: float data written unpacked; ``double``:
        weights in double_data.
        """
        prototxt_path = os.fspath(prototxt_path)
        with open(prototxt_path, "w") as f:
            f.write(self.prototxt_text(v1=v1, input_style=input_style))
        if caffemodel_path is None:
            return prototxt_path, None
        caffemodel_path = os.fspath(caffemodel_path)
        data = self.caffemodel_bytes(v1=v1 if weights_v1 is None else weights_v1,
                                     input_style=input_style, train_net=train_net_extras,
                                     legacy_dims=legacy_dims, unpacked=unpacked, double=double)
        with open(caffemodel_path, "wb") as f:
            f.write(data)
        return prototxt_path, caffemodel_path


# ------------------------------------------------------------------------------------
# message helpers
# ------------------------------------------------------------------------------------
def _fill(msg, fields: dict[str, Any]) -> None:
    """Set message fields from a plain dict (enums by name, nested dicts, lists)."""
    for key, value in fields.items():
        fd = msg.DESCRIPTOR.fields_by_name[key]
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        if fd.message_type is not None:
            if repeated:
                for v in value:
                    _fill(getattr(msg, key).add(), v)
            else:
                _fill(getattr(msg, key), value)
            continue
        enum = fd.enum_type

        def conv(v, enum=enum):
            if enum is None:
                return v
            return enum.values_by_name[v].number if isinstance(v, str) else int(v)
        if repeated:
            getattr(msg, key).extend(conv(v) for v in (value if isinstance(value, (list, tuple))
                                                       else [value]))
        else:
            setattr(msg, key, conv(value))


def _legacy_shape(arr: np.ndarray, type_: str) -> tuple[int, int, int, int]:
    s = arr.shape
    if len(s) == 4:
        return tuple(int(d) for d in s)  # type: ignore[return-value]
    if len(s) > 4:
        raise ValueError("legacy blobs are at most 4-d")
    return (1,) * (4 - len(s)) + tuple(int(d) for d in s)  # type: ignore[return-value]


def _fill_blob(b, arr: np.ndarray, type_: str, legacy: bool, double: bool) -> None:
    if legacy:
        b.num, b.channels, b.height, b.width = _legacy_shape(arr, type_)
    else:
        b.shape.dim.extend(int(d) for d in arr.shape)
    flat = arr.reshape(-1)
    if double:
        b.double_data.extend(flat.astype(np.float64).tolist())
    else:
        b.data.extend(flat.astype(np.float32).tolist())


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _unpacked_blob(arr: np.ndarray, type_: str, legacy: bool) -> bytes:
    b = pb.BlobProto()
    if legacy:
        b.num, b.channels, b.height, b.width = _legacy_shape(arr, type_)
    else:
        b.shape.dim.extend(int(d) for d in arr.shape)
    tag = _varint((5 << 3) | 5)   # field 5 (data), wire type 5 (32-bit), one per value
    vals = arr.reshape(-1).astype("<f4")
    return b.SerializeToString() + b"".join(tag + struct.pack("<f", float(v)) for v in vals)


__all__ = ["LayerSpec", "NetBuilder"]
