"""Plain Keras expressions (``keras.ops`` only, no class of ours) for the Lasagne catalogue
ops that no built-in Keras layer computes (issue 14): FeaturePool, FeatureWTA,
LasagneReduce and CropMerge.  The rules in
:mod:`migrator.core.mapping.rules.lasagne_catalogue` name the expression ``LasagneSourceOp`` (one input) or ``LasagneMergeOp`` (a list);
it takes its inputs in Keras layout (channels last), transposes them to Lasagne's order
(channels first), applies Lasagne master's definition with static shapes, and transposes
the result back, so the saved model loads with plain Keras."""
from __future__ import annotations

import numpy as np
from keras import ops

from .plain import plain


def _to_src(x):
    r = len(x.shape)
    return x if r <= 2 else ops.transpose(x, (0, r - 1) + tuple(range(1, r - 1)))


def _to_keras(x):
    r = len(x.shape)
    return x if r <= 2 else ops.transpose(x, (0,) + tuple(range(2, r)) + (1,))


def _reduce(x, mode, axis):
    if mode == "mean":
        return ops.mean(x, axis=axis)
    if mode == "max":
        return ops.max(x, axis=axis)
    if mode == "min":
        return ops.min(x, axis=axis)
    if mode == "sum":
        return ops.sum(x, axis=axis)
    if mode == "prod":
        return ops.prod(x, axis=axis)
    m = ops.mean(x, axis=axis, keepdims=True)
    d = ops.subtract(x, m)
    v = ops.mean(ops.multiply(d, d), axis=axis)
    return v if mode == "var" else ops.sqrt(v)


def _grouped(x, axis, p):
    s = tuple(int(d) for d in x.shape[1:])
    a = axis - 1
    return ops.reshape(x, (-1,) + s[:a] + (s[a] // p, p) + s[a + 1:])


@plain("LasagneSourceOp")
@plain("LasagneMergeOp")
def _lasagne_source_op(xs, cfg, weights, name):
    """Lasagne master's FeaturePoolLayer / FeatureWTALayer / GlobalPoolLayer / merge-with-
    autocrop, computed on the channels-first tensor (cfg['op'] names which)."""
    op = cfg["op"]
    if op == "AddUntiedBias":     # weights[0]: the bias in Keras layout (H, W, O)
        return ops.add(xs[0], np.asarray(weights[0], np.float32))
    srcs = [_to_src(x) for x in xs]
    x = srcs[0]
    if op == "FeaturePool":
        ax, p = int(cfg["axis"]), int(cfg["pool_size"])
        y = _reduce(_grouped(x, ax, p), cfg["mode"], ax + 1)
    elif op == "FeatureWTA":
        ax, p = int(cfg["axis"]), int(cfg["pool_size"])
        g = _grouped(x, ax, p)
        idx = ops.expand_dims(ops.argmax(g, axis=ax + 1), ax + 1)
        shape = [1] * len(g.shape)
        shape[ax + 1] = p
        ar = np.arange(p, dtype=np.int32).reshape(shape)
        mask = ops.cast(ops.equal(ops.cast(idx, "int32"), ar), x.dtype)
        y = ops.reshape(ops.multiply(g, mask), (-1,) + tuple(int(d) for d in x.shape[1:]))
    elif op == "LasagneReduce":
        y = _reduce(x, cfg["mode"], tuple(int(a) for a in cfg["axes"]))
    elif op == "LocallyConnected":
        from ..shapes import locally_connected_taps
        kh, kw = (int(k) for k in cfg["kernel"])
        H, Wd = int(x.shape[2]), int(x.shape[3])
        W = np.asarray(weights[0], np.float32)
        xp = ops.pad(x, [[0, 0], [0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2]])
        y = None
        for dy, dx, fi, fj in locally_connected_taps(kh, kw, bool(cfg["flip"])):
            patch = xp[:, :, kh // 2 + dy:kh // 2 + dy + H, kw // 2 + dx:kw // 2 + dx + Wd]
            if cfg["channelwise"]:
                t = ops.multiply(patch, W[None, :, fi, fj])
            else:
                t = ops.einsum("nchw,ochw->nohw", patch, np.ascontiguousarray(W[:, :, fi, fj]))
            y = t if y is None else ops.add(y, t)
        if len(weights) > 1:
            b = np.asarray(weights[1], np.float32)
            y = ops.add(y, b[None, :, None, None] if b.ndim == 1 else b[None])
    elif op == "Upscale1D":
        a = int(cfg["scale"])
        if cfg["mode"] == "repeat":
            y = ops.repeat(x, a, axis=2)
        else:
            z = ops.zeros_like(x)
            y = ops.reshape(ops.stack([x] + [z] * (a - 1), axis=-1),
                            (-1, int(x.shape[1]), int(x.shape[2]) * a))
    elif op == "LasagneSPP":
        from ..shapes import spp_regions
        f = ops.max if cfg["mode"] == "max" else ops.mean
        bins = [f(x[:, :, h0:h1, w0:w1], axis=(2, 3))
                for h0, h1, w0, w1 in spp_regions(int(x.shape[2]), int(x.shape[3]), cfg)]
        y = ops.stack(bins, axis=2)
    elif op == "CropMerge":
        from ..shapes import crop_slices
        shapes = [(1,) + tuple(int(d) for d in s.shape[1:]) for s in srcs]
        sl = crop_slices(shapes, cfg.get("cropping"))
        ys = []
        for s, cut in zip(srcs, sl):
            if any(c != slice(None) for c in cut[1:]):
                s = s[(slice(None),) + tuple(cut[1:])]
            ys.append(s)
        kind = cfg["kind"]
        if kind == "concat":
            y = ops.concatenate(ys, axis=int(cfg["axis"]))
        elif kind == "sum":
            y = None
            for c, v in zip(cfg.get("coeffs") or [1.0] * len(ys), ys):
                t = v if float(c) == 1.0 else ops.multiply(v, np.float32(c))
                y = t if y is None else ops.add(y, t)
        else:
            fn = {"add": ops.add, "mul": ops.multiply, "maximum": ops.maximum,
                  "minimum": ops.minimum, "sub": ops.subtract}[kind]
            y = ys[0]
            for v in ys[1:]:
                y = fn(y, v)
    else:  # pragma: no cover - the rules only name the ops above
        raise ValueError(f"LasagneSourceOp: unknown op {op!r}")
    return _to_keras(y)
