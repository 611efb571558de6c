"""Activation family: element-wise layers, Dropout and Softmax.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ....ir import Param
from ..common import f32, vector
from ..registry import layer_handler


@layer_handler("ReLU", ops=("Activation",))
def relu(b, lp):
    return "Activation", {"kind": "relu",
                          "negative_slope": f32(lp.relu_param.negative_slope)}, {}, 1


@layer_handler("ReLU6", ops=("Activation",), fork="MobileNet-v2 forks")
def relu6(b, lp):
    return "Activation", {"kind": "relu6"}, {}, 1


@layer_handler("PReLU", ops=("PReLU",))
def prelu(b, lp):
    shared = bool(lp.prelu_param.channel_shared)
    params = {}
    blobs = b.need_blobs(lp, 1, 1, "slope")
    if blobs is not None:
        v = vector(blobs[0], "slope", b.blob_file, lp.name, 1 if shared else None)
        params["slope"] = Param("slope", v, "C", "blobs[0]")
    return "PReLU", {"channel_shared": shared}, params, 1


@layer_handler("ELU", ops=("Activation",))
def elu(b, lp):
    return "Activation", {"kind": "elu", "alpha": f32(lp.elu_param.alpha)}, {}, 1


#: the Caffe activation types without a parameter -> their activation kind
FIXED_ACTIVATIONS = {"Sigmoid": "sigmoid", "TanH": "tanh", "AbsVal": "abs", "BNLL": "softplus"}


@layer_handler(*FIXED_ACTIVATIONS, ops=("Activation",))
def fixed_activation(b, lp):
    """Sigmoid, TanH, AbsVal, BNLL: an ``Activation`` of the kind the type names."""
    return "Activation", {"kind": FIXED_ACTIVATIONS[lp.type]}, {}, 1


def base_scale_shift(b, lp, p) -> dict:
    """base / scale / shift of Exp and Log (base -1 = e, else strictly positive)."""
    if p.base != -1.0 and p.base <= 0:
        raise b.err(f"{lp.type} base must be strictly positive (or -1 for e), got "
                    f"{f32(p.base)}", lp.name)
    return {"base": f32(p.base), "scale": f32(p.scale), "shift": f32(p.shift)}


@layer_handler("Exp", ops=("Exp", "Activation"))
def exp(b, lp):
    ep = lp.exp_param
    if ep.base == -1.0 and ep.scale == 1.0 and ep.shift == 0.0:
        return "Activation", {"kind": "exp"}, {}, 1
    return "Exp", base_scale_shift(b, lp, ep), {}, 1


@layer_handler("Log", ops=("Log",))
def log(b, lp):
    return "Log", base_scale_shift(b, lp, lp.log_param), {}, 1


@layer_handler("Power", ops=("Power",))
def power(b, lp):
    pp = lp.power_param
    return "Power", {"power": f32(pp.power), "scale": f32(pp.scale),
                     "shift": f32(pp.shift)}, {}, 1


@layer_handler("Threshold", ops=("Threshold",))
def threshold(b, lp):
    return "Threshold", {"threshold": f32(lp.threshold_param.threshold)}, {}, 1


@layer_handler("Clip", ops=("Clip",))
def clip(b, lp):
    cp = lp.clip_param
    if not (cp.HasField("min") and cp.HasField("max")):
        raise b.err("clip_param needs both min and max", lp.name)
    if cp.min > cp.max:
        raise b.err(f"clip min {f32(cp.min)} is larger than max {f32(cp.max)}", lp.name)
    return "Clip", {"min": f32(cp.min), "max": f32(cp.max)}, {}, 1


@layer_handler("Swish", ops=("Swish",))
def swish(b, lp):
    return "Swish", {"beta": f32(lp.swish_param.beta)}, {}, 1


@layer_handler("Dropout", ops=("Dropout",))
def dropout(b, lp):
    return "Dropout", {"ratio": f32(lp.dropout_param.dropout_ratio)}, {}, 1


@layer_handler("Softmax", ops=("Softmax",))
def softmax(b, lp):
    return "Softmax", {"axis": int(lp.softmax_param.axis)}, {}, 1
