"""Helpers the Caffe layer handlers share: parameter fields and blobs as Migrator needs them."""
from __future__ import annotations

import numpy as np

from ...errors import MigratorError


def hw(repeated, h_field, w_field, msg, default, what, file, layer) -> tuple[int, int]:
    """Caffe's 'kernel_size/pad/stride: one value for both dims, or one per dim' rule, with
    the explicit *_h/*_w fields taking precedence."""
    has_h = msg.HasField(h_field) if h_field else False
    has_w = msg.HasField(w_field) if w_field else False
    if has_h or has_w:
        if len(repeated):
            raise MigratorError(f"{what} given both as {what} and as {h_field}/{w_field}",
                                file=file, layer=layer)
        if not (has_h and has_w):
            raise MigratorError(f"{h_field} and {w_field} must be given together", file=file,
                                layer=layer)
        return int(getattr(msg, h_field)), int(getattr(msg, w_field))
    vals = [int(v) for v in repeated]
    if not vals:
        return default, default
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise MigratorError(f"{len(vals)} {what} values: only 2-d (one or two values) is supported",
                        file=file, layer=layer)


def vector(arr: np.ndarray, what: str, file, layer, n: int | None = None) -> np.ndarray:
    """A 1-d view of a blob that has at most one non-unit dimension (legacy (1,1,1,C))."""
    if arr.ndim != 1:
        if arr.size != max(arr.shape or (1,)) and arr.size > 1:
            raise MigratorError(f"{what} blob of shape {arr.shape} should be a vector",
                                file=file, layer=layer)
        arr = arr.reshape(-1)
    if n is not None and arr.size != n:
        raise MigratorError(f"{what} blob has {arr.size} values, expected {n}", file=file, layer=layer)
    return arr


def strip_leading_ones(arr: np.ndarray, ndim: int) -> np.ndarray:
    """``arr`` without the leading unit axes beyond ``ndim`` (legacy 4-d blobs)."""
    shape = list(arr.shape)
    while len(shape) > ndim and shape[0] == 1:
        shape.pop(0)
    return arr.reshape(shape) if len(shape) != arr.ndim else arr


def f32(x) -> float:
    """A float32 field as the shortest decimal that reads back as the same float32
    (1e-05 rather than 9.999999747378752e-06)."""
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))
