"""Reference kernels of the embedding family: ``Embedding`` (Lasagne), ``Embed`` (Caffe).
"""
from __future__ import annotations

import numpy as np

from .registry import err, kernel, param


@kernel("Embed")
def _embed(node, xs):
    x = xs[0]
    w = param(node, "weight", x.dtype)
    idx = x.astype(np.int64)
    if (idx != x).any() or (idx < 0).any() or (idx >= w.shape[0]).any():
        raise err(node, f"Embed input must hold integers in [0, {w.shape[0]}) (Caffe checks this)")
    y = w[idx]
    b = param(node, "bias", x.dtype)
    if b is not None:
        y = y + b
    return [y]


@kernel("Embedding")
def _embedding(node, xs):
    idx = np.asarray(xs[0])
    W = node.p("weight")
    if idx.dtype.kind == "f":
        if not np.all(np.isfinite(idx)):
            raise err(node, "embedding indices are not finite")
        idx = idx.astype(np.int64)
    V = W.shape[0]
    if idx.size and (idx.min() < -V or idx.max() >= V):
        raise err(node, f"embedding index out of range 0..{V - 1}")
    return [W[idx]]
