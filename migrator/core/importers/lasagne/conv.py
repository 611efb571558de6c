"""Convolution family: Lasagne's 1-D, 2-D (plain, cuDNN, corrmm, cuda-convnet), 3-D, NIN,
transposed, dilated and locally connected convolutions."""
from __future__ import annotations

import numpy as np

from .common import Unsupported, activation_of, conv_pad, input_of_rank, ndim, one_int, pair, triple
from .registry import converter

_FLIP_DEFAULT = {"Conv2DLayer": True, "Conv2DDNNLayer": False, "Conv2DMMLayer": False,
                 "Conv2DCCLayer": False}
_FLIP_3D = {"Conv3DLayer": True, "Conv3DDNNLayer": False}


@converter("Conv2DLayer", "Conv2DDNNLayer", "Conv2DMMLayer", "Conv2DCCLayer", ops=("Conv",))
def conv2d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Conv2DLayer and its cuDNN / corrmm / cuda-convnet variants (flip_filters default per class)."""
    known, a = L.get("known"), L.get("attrs", {})
    pnames = [p["name"] for p in L["params"]]
    if len(L["output_shape"]) != 4:
        raise Unsupported("not a 2D convolution")
    kernel = pair(a.get("filter_size"), "filter_size")
    stride = pair(a.get("stride", 1), "stride")
    pad = conv_pad(a.get("pad", 0), kernel)
    untie = bool(a.get("untie_biases", False))
    flip = a.get("flip_filters", _FLIP_DEFAULT.get(known, True))
    attrs = {"kernel": kernel, "stride": stride, "pad": pad, "dilation": (1, 1),
             "group": int(a.get("num_groups", 1) or 1), "bias": "b" in pnames,
             "flip": bool(flip), "activation": activation_of(a.get("nonlinearity")),
             "untie_biases": untie}
    return "Conv", attrs, {"W": ("weight", None, "OIHW"),
                           "b": ("bias", None, "OHW" if untie else "O")}


def _to_oihw_nin(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)[:, :, None, None]


@converter("NINLayer", ops=("Conv",))
def nin(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """NINLayer: a 1x1 convolution, W (in, out) stored."""
    a = L.get("attrs", {})
    pnames = [p["name"] for p in L["params"]]
    if ndim(in_shapes) != 4:
        raise Unsupported("NINLayer on a non-4D input")
    untie = bool(a.get("untie_biases", False))
    attrs = {"kernel": (1, 1), "stride": (1, 1), "pad": (0, 0), "dilation": (1, 1),
             "group": 1, "bias": "b" in pnames, "flip": False,
             "activation": activation_of(a.get("nonlinearity")), "untie_biases": untie}
    return "Conv", attrs, {"W": ("weight", _to_oihw_nin, "OIHW"),
                           "b": ("bias", None, "OHW" if untie else "O")}


def _spatial(in_shapes: list) -> list:
    s = in_shapes[0] if in_shapes else None
    return list(s[2:4]) if s is not None and len(s) == 4 else [None, None]


@converter("TransposedConv2DLayer", ops=("Deconv",), aliases=("Deconv2DLayer",))
def transposed_conv(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Lasagne TransposedConv2DLayer (Deconv2DLayer): Theano's gradient of a Conv2D wrt its
    inputs with ``filter_flip = not flip_filters``, W ``(in, out, kh, kw)``, crop = the
    forward conv's pad; ``out = s*(L-1) + k - 2*crop``."""
    a = L.get("attrs", {})
    pnames = [p["name"] for p in L["params"]]
    if len(L["output_shape"]) != 4:
        raise Unsupported("not a 2D transposed convolution")
    if int(a.get("num_groups", 1) or 1) != 1:
        raise Unsupported("grouped transposed convolution (num_groups != 1)")
    if bool(a.get("untie_biases", False)) and "b" in pnames:
        raise Unsupported("untie_biases=True (a bias per output position) has no Keras "
                          "Conv2DTranspose equivalent")
    kernel = pair(a.get("filter_size"), "filter_size")
    stride = pair(a.get("stride", 1), "stride")
    crop = conv_pad(a.get("crop", 0), kernel)
    natural = [s * (n - 1) + k - 2 * c if n is not None else None
               for n, k, s, c in zip(_spatial(in_shapes), kernel, stride, crop)]
    osz = a.get("output_size")
    if osz is not None:
        want = tuple(int(v) for v in (osz if isinstance(osz, list) else [osz, osz]))
        got = tuple(L["output_shape"][2:])
        if any(n is None for n in natural) or tuple(natural) != want or got != want:
            raise Unsupported(f"output_size {list(want)} differs from the natural size "
                              f"s*(L-1) + k - 2*crop (the extra zero rows/cols are not mapped)")
    attrs = {"num_output": int(a["num_filters"]), "kernel": kernel, "stride": stride, "pad": crop,
             "dilation": (1, 1), "group": 1, "bias": "b" in pnames,
             "flip": not bool(a.get("flip_filters", False)),
             "activation": activation_of(a.get("nonlinearity"))}
    return "Deconv", attrs, {"W": ("weight", None, "IOHW"), "b": ("bias", None, "O")}


def _to_oihw_dilated(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(w).transpose(1, 0, 2, 3))


@converter("DilatedConv2DLayer", ops=("Conv",))
def dilated_conv(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Lasagne DilatedConv2DLayer: W ``(in, out, kh, kw)`` -> OIHW (``W.transpose(1, 0, 2,
    3)``), a dilated cross-correlation (flip_filters=False, pad 0, stride 1)."""
    a = L.get("attrs", {})
    pnames = [p["name"] for p in L["params"]]
    if len(L["output_shape"]) != 4:
        raise Unsupported("not a 2D dilated convolution")
    if bool(a.get("flip_filters", False)):
        raise Unsupported("flip_filters=True (Lasagne itself refuses it)")
    pad = a.get("pad", 0)
    if pad not in (0, "valid", [0, 0]):
        raise Unsupported(f"pad {pad!r} (Lasagne's DilatedConv2DLayer allows only 0/'valid')")
    if int(a.get("num_groups", 1) or 1) != 1:
        raise Unsupported("grouped dilated convolution (num_groups != 1)")
    untie = bool(a.get("untie_biases", False))
    attrs = {"num_output": int(a["num_filters"]), "kernel": pair(a.get("filter_size"), "filter_size"),
             "stride": (1, 1), "pad": (0, 0), "dilation": pair(a.get("dilation", 1), "dilation"),
             "group": 1, "bias": "b" in pnames, "flip": False,
             "activation": activation_of(a.get("nonlinearity")), "untie_biases": untie}
    return "Conv", attrs, {"W": ("weight", _to_oihw_dilated, "OIHW",
                                 "W (in, out, kh, kw) stored; transposed to OIHW: W.transpose(1, 0, 2, 3)"),
                           "b": ("bias", None, "OHW" if untie else "O")}


@converter("LocallyConnected2DLayer", ops=("LocallyConnected",))
def locally_connected(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """LocallyConnected2DLayer -> ``LocallyConnected`` (master's convolve: stride 1, 'same')."""
    a = L.get("attrs", {})
    pn = [p["name"] for p in L["params"]]
    untie = bool(a.get("untie_biases", False))
    ks = a.get("filter_size")
    return "LocallyConnected", {
        "kernel": [int(k) for k in (ks if isinstance(ks, list) else [ks, ks])],
        "flip": bool(a.get("flip_filters", True)), "channelwise": bool(a.get("channelwise", False)),
        "bias": "b" in pn, "activation": activation_of(a.get("nonlinearity"))}, \
        {"W": ("weight", None, "LC"), "b": ("bias", None, "OHW" if untie else "O")}


@converter("BaseConvLayer", ops=())
def base_conv(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """BaseConvLayer itself (a subclass without its own class in the registry): no canonical form."""
    raise Unsupported(f"{L.get('known')} has no canonical form")


def _oihw_1d(w: np.ndarray) -> np.ndarray:
    return np.asarray(w)[:, :, None, :]


def _bias_1d(b: np.ndarray) -> np.ndarray:
    return np.asarray(b)[:, None, :]


@converter("Conv1DLayer", ops=("Conv1D",))
def conv1d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Conv1DLayer -> ``Conv1D``: the attrs of the 2-D op over (N, C, 1, L) (kernel (1, k), ...),
    weight (O, I, 1, k) 'OIHW'."""
    a = L.get("attrs", {})
    input_of_rank(in_shapes, 3, "1-D layer")
    k = one_int(a.get("filter_size"), "filter_size")
    pad = a.get("pad", 0)
    if pad == "full":
        p = k - 1
    elif pad == "same":
        if k % 2 == 0:
            raise Unsupported("pad='same' with an even filter (asymmetric padding)")
        p = k // 2
    elif pad == "valid":
        p = 0
    else:
        p = one_int(pad, "pad")
    pnames = [q["name"] for q in L["params"]]
    untie = bool(a.get("untie_biases", False))
    attrs = {"kernel": (1, k), "stride": (1, one_int(a.get("stride", 1), "stride")), "pad": (0, p),
             "dilation": (1, 1), "group": int(a.get("num_groups", 1) or 1), "bias": "b" in pnames,
             "flip": bool(a.get("flip_filters", True)),
             "activation": activation_of(a.get("nonlinearity")), "untie_biases": untie}
    return "Conv1D", attrs, {"W": ("weight", _oihw_1d, "OIHW", "W (O, I, k) stored; as (O, I, 1, k)"),
                             "b": ("bias", _bias_1d if untie else None, "OHW" if untie else "O")}


@converter("Conv3DLayer", "Conv3DDNNLayer", ops=("Conv3D",))
def conv3d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Conv3DLayer / Conv3DDNNLayer -> ``Conv3D`` (see ``ir.OPS``)."""
    known, a = L.get("known"), L.get("attrs", {})
    input_of_rank(in_shapes, 5, "3-D layer")
    k = triple(a.get("filter_size"), "filter_size")
    pad = a.get("pad", 0)
    if pad == "full":
        p = tuple(t - 1 for t in k)
    elif pad == "same":
        p = tuple(t // 2 for t in k)
    elif pad == "valid":
        p = (0, 0, 0)
    else:
        p = triple(pad, "pad")
    if int(a.get("num_groups", 1) or 1) != 1:
        raise Unsupported("grouped 3-D convolution")
    if bool(a.get("untie_biases", False)):
        raise Unsupported("untie_biases=True")
    pnames = [q["name"] for q in L["params"]]
    return "Conv3D", {"kernel": k, "stride": triple(a.get("stride", 1), "stride"), "pad": p,
                      "bias": "b" in pnames, "flip": bool(a.get("flip_filters", _FLIP_3D[known])),
                      "activation": activation_of(a.get("nonlinearity"))}, \
        {"W": ("weight", None, "OIDHW"), "b": ("bias", None, "O")}


def _pad3(pad, k: tuple[int, int, int]) -> tuple[int, int, int]:
    """Lasagne's 3-D ``pad`` / ``crop`` (int, triple, 'valid', 'same', 'full') as a symmetric triple."""
    if pad == "full":
        return tuple(t - 1 for t in k)
    if pad == "same":
        return tuple(t // 2 for t in k)
    if pad == "valid":
        return (0, 0, 0)
    if isinstance(pad, list):
        pad = [(0 if p == "valid" else p) for p in pad]
    return triple(pad, "crop")


@converter("TransposedConv3DLayer", ops=("Deconv3D",), aliases=("Deconv3DLayer",))
def transposed_conv3d(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """Lasagne TransposedConv3DLayer (Deconv3DLayer) -> ``Deconv3D``: Theano's gradient of a
    Conv3D wrt its inputs with ``filter_flip = not flip_filters``, W ``(in, out, kd, kh, kw)``,
    crop = the forward conv's pad; ``out = s*(L-1) + k - 2*crop``."""
    a = L.get("attrs", {})
    x = input_of_rank(in_shapes, 5, "3-D layer")
    pnames = [p["name"] for p in L["params"]]
    if int(a.get("num_groups", 1) or 1) != 1:
        raise Unsupported("grouped 3-D transposed convolution (num_groups != 1)")
    if bool(a.get("untie_biases", False)) and "b" in pnames:
        raise Unsupported("untie_biases=True (a bias per output position) has no Keras "
                          "Conv3DTranspose equivalent")
    k = triple(a.get("filter_size"), "filter_size")
    stride = triple(a.get("stride", 1), "stride")
    crop = _pad3(a.get("crop", 0), k)
    natural = [s * (n - 1) + kk - 2 * c if n is not None else None
               for n, kk, s, c in zip(x[2:], k, stride, crop)]
    osz = a.get("output_size")
    if osz is not None:
        want = tuple(int(v) for v in (osz if isinstance(osz, list) else [osz] * 3))
        if any(n is None for n in natural) or tuple(natural) != want \
                or tuple(L["output_shape"][2:]) != want:
            raise Unsupported(f"output_size {list(want)} differs from the natural size "
                              f"s*(L-1) + k - 2*crop (the extra zero planes are not mapped)")
    attrs = {"num_output": int(a["num_filters"]), "kernel": k, "stride": stride, "pad": crop,
             "bias": "b" in pnames, "flip": not bool(a.get("flip_filters", False)),
             "activation": activation_of(a.get("nonlinearity"))}
    return "Deconv3D", attrs, {"W": ("weight", None, "IODHW"), "b": ("bias", None, "O")}
