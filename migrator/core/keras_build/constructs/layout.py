"""Keras constructs of the layout family: ``ConstantPadding2D``, ``SliceAxis``, and the source ops
``Dimshuffle``, ``Reshape`` and ``Pad`` computed on the whole channels-first tensor (the batch
axis included: Lasagne dimshuffles and reshapes that move it, padding of any axis)."""
from __future__ import annotations

from keras import ops

from ..custom_layers import pad_pairs
from .registry import plain, source_op


@plain("ConstantPadding2D")
def _constant_padding(xs, cfg, weights, name):
    """``y = pad(x, ((0,0), (top,bottom), (left,right), (0,0)), value)`` -- ``keras.ops.pad``
    with ``constant_values=value``."""
    (t, b), (l, r) = pad_pairs(cfg.get("padding", ((0, 0), (0, 0))))
    return ops.pad(xs[0], [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float(cfg.get("value", 0.0)))


@plain("SliceAxis")
def _slice_axis(xs, cfg, weights, name):
    """``y = x[..., start:stop:step, ...]`` on ``axis`` (batch axis 0 excluded)."""
    x = xs[0]
    rank = len(x.shape)
    a = int(cfg.get("axis", -1))
    a = a + rank if a < 0 else a
    if a <= 0 or a >= rank:
        raise ValueError(f"SliceAxis axis {cfg.get('axis')} is invalid for rank {rank}")
    step = cfg.get("step")
    if step is not None and int(step) == 0:
        raise ValueError("SliceAxis step cannot be 0")
    idx = [slice(None)] * rank
    idx[a] = slice(cfg.get("start"), cfg.get("stop"), step)
    return x[tuple(idx)]


@source_op("Dimshuffle")
def _dimshuffle(xs, cfg, weights):
    """Lasagne ``DimshuffleLayer`` on the whole tensor: ``y = x.dimshuffle(pattern)`` -- the
    size-1 axes missing from the pattern squeezed, the others transposed into the pattern's
    order, a size-1 axis inserted at each ``'x'``."""
    x = xs[0]
    pattern = list(cfg["pattern"])
    kept = [int(p) for p in pattern if p != "x"]
    dropped = [d for d in range(len(x.shape)) if d not in kept]
    if dropped:
        x = ops.squeeze(x, axis=tuple(dropped))
    renum = {a: a - sum(1 for d in dropped if d < a) for a in kept}
    perm = [renum[a] for a in kept]
    if perm != sorted(perm):
        x = ops.transpose(x, perm)
    for i, p in enumerate(pattern):
        if p == "x":
            x = ops.expand_dims(x, i)
    return x


@source_op("Reshape")
def _reshape_whole(xs, cfg, weights):
    """A C-order reshape of the whole tensor to ``shape`` (source order, the batch axis
    included; one ``-1``: the size that depends on the batch)."""
    return ops.reshape(xs[0], tuple(int(d) for d in cfg["shape"]))


@source_op("Pad")
def _pad_any(xs, cfg, weights):
    """``y = pad(x, pad_width, value)`` on the whole tensor: ``pad_width`` one (before, after)
    pair per axis (source order, the batch axis included)."""
    return ops.pad(xs[0], [[int(a), int(b)] for a, b in cfg["pad_width"]],
                   constant_values=float(cfg.get("value", 0.0)))
