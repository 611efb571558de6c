"""Convolution family: Convolution, Deconvolution, Im2col and the forks' depthwise convolutions.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ....errors import MigratorError
from ....ir import Param
from ..common import hw, strip_leading_ones, vector
from ..registry import layer_handler


def conv_geometry(b, lp, what: str):
    """(num_output, kernel, pad, stride, dilation, group, bias) of a convolution_param,
    validated; shared by Convolution and Deconvolution."""
    cp = lp.convolution_param
    f, n = b.file, lp.name
    if cp.axis != 1:
        raise b.err(f"{what} axis {cp.axis} is not supported (only 1)", n)
    if not cp.HasField("num_output"):
        raise b.err("convolution_param.num_output is missing", n)
    kernel = hw(cp.kernel_size, "kernel_h", "kernel_w", cp, None, "kernel_size", f, n)
    if kernel[0] is None:
        raise b.err(f"{what} has no kernel_size (nor kernel_h/kernel_w)", n)
    pad = hw(cp.pad, "pad_h", "pad_w", cp, 0, "pad", f, n)
    stride = hw(cp.stride, "stride_h", "stride_w", cp, 1, "stride", f, n)
    dilation = hw(cp.dilation, None, None, cp, 1, "dilation", f, n)
    group = int(cp.group)
    O = int(cp.num_output)
    if group < 1 or O % group:
        raise b.err(f"num_output {O} is not divisible by group {group}", n)
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise b.err(f"invalid kernel {kernel} / stride {stride} / dilation {dilation}", n)
    return O, kernel, pad, stride, dilation, group, bool(cp.bias_term)


def conv_params(b, lp, O, kernel, group, bias, *, transposed: bool) -> dict:
    """weight (+ bias) of a Convolution ((O, in/group, kh, kw), 'OIHW') or a Deconvolution
    ((in, O/group, kh, kw), 'IOHW'), shape-checked against num_output and the kernel."""
    n = lp.name
    blobs = b.need_blobs(lp, 1 + bias, 1 + bias, "weight" + (", bias" if bias else ""))
    if blobs is None:
        return {}
    w = blobs[0]
    if w.ndim != 4:
        w = strip_leading_ones(w, 4)
    if transposed:
        fits = w.ndim == 4 and w.shape[1] * group == O
        expected = f"(in, {O // group}, {kernel[0]}, {kernel[1]})"
        what = f"num_output {O} (group {group})"
    else:
        fits = w.ndim == 4 and w.shape[0] == O
        expected = f"({O}, in/group, {kernel[0]}, {kernel[1]})"
        what = f"num_output {O}"
    if not fits or tuple(w.shape[2:]) != kernel:
        raise MigratorError(
            f"weight blob of shape {tuple(blobs[0].shape)} does not fit {what} and kernel "
            f"{kernel[0]}x{kernel[1]} (expected {expected})", file=b.blob_file, layer=n)
    params = {"weight": Param("weight", w, "IOHW" if transposed else "OIHW", "blobs[0]")}
    if bias:
        params["bias"] = Param("bias", vector(blobs[1], "bias", b.blob_file, n, O), "O", "blobs[1]")
    return params


@layer_handler("Convolution", ops=("Conv",))
def convolution(b, lp):
    O, kernel, pad, stride, dilation, group, bias = conv_geometry(b, lp, "convolution")
    attrs = {"num_output": O, "kernel": kernel, "stride": stride, "pad": pad,
             "dilation": dilation, "group": group, "bias": bias, "flip": False,
             "activation": None}
    params = conv_params(b, lp, O, kernel, group, bias, transposed=False)
    return "Conv", attrs, params, 1


@layer_handler("Deconvolution", ops=("Deconv",))
def deconvolution(b, lp):
    O, kernel, pad, stride, dilation, group, bias = conv_geometry(b, lp, "deconvolution")
    attrs = {"num_output": O, "kernel": kernel, "stride": stride, "pad": pad,
             "dilation": dilation, "group": group, "bias": bias}
    params = conv_params(b, lp, O, kernel, group, bias, transposed=True)
    return "Deconv", attrs, params, 1


@layer_handler("ConvolutionDepthwise", "DepthwiseConvolution", ops=("Conv",), fork="MobileNet forks")
def depthwise(b, lp):
    """Convolution with group = input channels.  The forks' layers compute one filter per
    input channel whatever ``group`` says; the weight blob is (C*m, 1, kh, kw)."""
    O, kernel, pad, stride, dilation, group, bias = conv_geometry(b, lp, "convolution")
    n = lp.name
    if group == 1:
        # group from the weight blob (in/group = 1) or, without weights, from num_output
        got = b.blobs(lp)
        if got is not None and got[0][0].ndim >= 2 and got[0][0].shape[-3] != 1:
            raise MigratorError(f"{lp.type} weight blob of shape {tuple(got[0][0].shape)} is not "
                                "depthwise (expected (C, 1, kh, kw))", file=b.blob_file, layer=n)
        group = O
    attrs = {"num_output": O, "kernel": kernel, "stride": stride, "pad": pad,
             "dilation": dilation, "group": group, "bias": bias, "flip": False,
             "activation": None, "depthwise_type": lp.type}
    params = conv_params(b, lp, O, kernel, group, bias, transposed=False)
    return "Conv", attrs, params, 1


def im2col_geometry(b, lp):
    """Im2col's convolution_param: kernel/pad/stride/dilation (num_output not needed)."""
    cp = lp.convolution_param
    f, n = b.file, lp.name
    if cp.axis != 1 or cp.force_nd_im2col:
        raise b.err("Im2col with axis != 1 or force_nd_im2col is not supported", n)
    kernel = hw(cp.kernel_size, "kernel_h", "kernel_w", cp, None, "kernel_size", f, n)
    if kernel[0] is None:
        raise b.err("Im2col has no kernel_size (nor kernel_h/kernel_w)", n)
    pad = hw(cp.pad, "pad_h", "pad_w", cp, 0, "pad", f, n)
    stride = hw(cp.stride, "stride_h", "stride_w", cp, 1, "stride", f, n)
    dilation = hw(cp.dilation, None, None, cp, 1, "dilation", f, n)
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise b.err(f"invalid kernel {kernel} / stride {stride} / dilation {dilation}", n)
    return None, kernel, pad, stride, dilation, 1, False


@layer_handler("Im2col", ops=("Im2col",))
def im2col(b, lp):
    _, kernel, pad, stride, dilation, _, _ = im2col_geometry(b, lp)
    return "Im2col", {"kernel": kernel, "pad": pad, "stride": stride, "dilation": dilation}, {}, 1
