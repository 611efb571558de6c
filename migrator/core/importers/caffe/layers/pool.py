"""Pooling family: Pooling and SPP.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ..common import hw
from ..registry import STOCHASTIC_REFUSAL, layer_handler


@layer_handler("Pooling", ops=("Pool", "GlobalPool"), multi_top=True)
def pooling(b, lp):
    pp = lp.pooling_param
    f, n = b.file, lp.name
    tops = len(lp.top)
    if tops not in (1, 2):
        raise b.err(f"Pooling layer has {tops} tops (one, or two for MAX: output and mask)", n)
    if tops == 2 and pp.pool != 0:
        raise b.err("only MAX pooling has a second top (the argmax mask); Caffe refuses it for "
                    "AVE/STOCHASTIC", n)
    if tops == 2 and pp.global_pooling:
        raise b.err("the argmax mask (second top) of a global MAX pooling is not supported", n)
    if pp.pool == 2:   # STOCHASTIC
        parts = b.custom_parts(lp, "stochastic pooling")
        parts[1]["refused"] = STOCHASTIC_REFUSAL
        return parts
    mode = "max" if pp.pool == 0 else "avg"
    if pp.global_pooling:
        if pp.HasField("kernel_size") or pp.HasField("kernel_h"):
            raise b.err("global_pooling and kernel_size cannot both be given", n)
        return "GlobalPool", {"mode": mode, "keepdims": True}, {}, 1
    ks = [pp.kernel_size] if pp.HasField("kernel_size") else []
    kernel = hw(ks, "kernel_h", "kernel_w", pp, None, "kernel_size", f, n)
    if kernel[0] is None:
        raise b.err("pooling has no kernel_size (nor kernel_h/kernel_w, nor global_pooling)",
                    n)
    pads = [pp.pad] if pp.HasField("pad") else []
    pad = hw(pads, "pad_h", "pad_w", pp, 0, "pad", f, n)
    strides = [pp.stride] if pp.HasField("stride") else []
    stride = hw(strides, "stride_h", "stride_w", pp, 1, "stride", f, n)
    if min(kernel) < 1 or min(stride) < 1:
        raise b.err(f"invalid pooling kernel {kernel} / stride {stride}", n)
    rounding = "floor" if pp.round_mode == 1 else "caffe_ceil"
    if pp.HasField("ceil_mode"):   # fork field (DenseNet-Caffe & co.): false = floor
        if pp.HasField("round_mode") and (pp.round_mode == 1) == bool(pp.ceil_mode):
            raise b.err("pooling_param gives ceil_mode and round_mode with opposite "
                        "meanings", n)
        rounding = "caffe_ceil" if pp.ceil_mode else "floor"
    return "Pool", {"mode": mode, "kernel": kernel, "stride": stride, "pad": pad,
                    "rounding": rounding, "avg_divisor": "caffe"}, {}, tops


@layer_handler("SPP", ops=("SPP",))
def spp(b, lp):
    sp = lp.spp_param
    if not sp.HasField("pyramid_height") or sp.pyramid_height < 1:
        raise b.err("spp_param.pyramid_height must be given and at least 1", lp.name)
    if sp.pool == 2:
        parts = b.custom_parts(lp, "stochastic SPP")
        parts[1]["refused"] = "SPP " + STOCHASTIC_REFUSAL
        return parts
    return "SPP", {"pyramid_height": int(sp.pyramid_height),
                   "mode": "max" if sp.pool == 0 else "avg"}, {}, 1
