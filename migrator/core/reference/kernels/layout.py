"""Reference kernels of the layout family: ``Split``, ``Crop``, ``Flatten``, ``Reshape``, ``Pad``,
``Transpose``, ``Slice``, ``ShuffleChannel``, ``Tile``.
"""
from __future__ import annotations

import numpy as np

from ...shapes import crop_bounds, reshape_caffe, slice_bounds
from .registry import err, kernel, norm_axis, pair


@kernel("Split")
def _split(node, xs):
    return [xs[0]] * node.num_outputs


@kernel("Crop")
def _crop(node, xs):
    x, ref = xs[0], xs[1]
    bounds = crop_bounds(x.shape, ref.shape, int(node.attrs.get("axis", 2)),
                         node.attrs.get("offsets"), lambda m: err(node, m))
    return [x[tuple(slice(b, e) for b, e in bounds)].copy()]


@kernel("Flatten")
def _flatten(node, xs):
    x = xs[0]
    axis = norm_axis(int(node.attrs.get("axis", 1)), x.ndim)
    end = norm_axis(int(node.attrs.get("end_axis", -1)), x.ndim)
    return [x.reshape(x.shape[:axis] + (-1,) + x.shape[end + 1:])]


@kernel("Reshape")
def _reshape(node, xs):
    x = xs[0]
    a = node.attrs
    shape = reshape_caffe(x.shape, list(a["shape"]), int(a.get("axis", 0)), int(a.get("num_axes", -1)),
                          error=lambda m: err(node, m))
    return [x.reshape(shape)]


@kernel("Pad")
def _pad(node, xs):
    x = xs[0]
    a = node.attrs
    bnd = int(a.get("batch_ndim", 2))
    widths = [(0, 0)] * x.ndim
    for i, pw in enumerate(a.get("pad", [])):
        widths[bnd + i] = pair(pw, 2)
    return [np.pad(x, widths, mode="constant", constant_values=x.dtype.type(a.get("value", 0.0)))]


@kernel("Transpose")
def _transpose(node, xs):
    x = xs[0]
    pattern = list(node.attrs["pattern"])
    used = [int(p) for p in pattern if p != "x"]
    kept = [i for i in range(x.ndim) if i in used]
    squeezed = x.reshape(tuple(x.shape[i] for i in kept))
    pos = {ax: j for j, ax in enumerate(kept)}
    y = squeezed.transpose([pos[p] for p in used])
    return [y.reshape(tuple(1 if p == "x" else x.shape[int(p)] for p in pattern))]


@kernel("Slice")
def _slice(node, xs):
    x = xs[0]
    a = node.attrs
    axis = norm_axis(int(a.get("axis", 1)), x.ndim)
    idx: list = [slice(None)] * x.ndim
    if a.get("slice_points") is not None or node.num_outputs > 1:
        outs = []
        for b, e in slice_bounds(x.shape[axis], a.get("slice_points"), node.num_outputs,
                                 lambda m: err(node, m)):
            idx[axis] = slice(b, e)
            outs.append(x[tuple(idx)])
        return outs
    if a.get("index") is not None:
        idx[axis] = int(a["index"])
    else:
        idx[axis] = slice(a.get("start"), a.get("stop"), a.get("step"))
    return [x[tuple(idx)]]


@kernel("Tile")
def _tile(node, xs):
    x = xs[0]
    axis = norm_axis(int(node.attrs.get("axis", 1)), x.ndim)
    return [np.concatenate([x] * int(node.attrs["tiles"]), axis=axis)]


@kernel("ShuffleChannel")
def _shuffle(node, xs):
    x = xs[0]
    g = int(node.attrs.get("group", 1))
    N, C = x.shape[:2]
    if C % g:
        raise err(node, f"{C} channels cannot be split into {g} groups")
    y = x.reshape((N, g, C // g) + x.shape[2:]).swapaxes(1, 2).reshape(x.shape)
    return [np.ascontiguousarray(y)]
