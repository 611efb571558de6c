"""Caffe mean files: the ``mean.binaryproto`` that comes with a deploy net (``compute_image_mean``
writes one ``BlobProto``: num 1, channels, height, width, float data in the order Caffe's data
layer stores pixels -- BGR for colour images).

Read with Migrator's own protobuf schema, never executing anything: the file size is bounded
before it is read, the declared shape must be positive, hold at most
:func:`migrator.core.limits.max_tensor_values` values and match the number of data values;
anything else is a one-line :class:`MigratorError` naming the file.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ...errors import MigratorError
from ...limits import max_tensor_values
from ...saving import check_readable

#: the largest mean file read (a 3 x 4096 x 4096 float mean is 192 MiB)
MAX_MEAN_FILE_BYTES = 256 << 20

MEAN_FILE_EXTENSIONS = (".binaryproto", ".npy")


def is_mean_file(text: str) -> bool:
    """Does ``text`` (a --mean value, a GUI field) name a mean file rather than numbers?"""
    t = str(text).strip()
    return t.lower().endswith(MEAN_FILE_EXTENSIONS) or (bool(t) and os.path.isfile(t))


def read_binaryproto(path: str) -> np.ndarray:
    """The mean image of a ``.binaryproto`` as float32 ``(C, H, W)`` (channels as stored:
    BGR for a colour mean made by Caffe)."""
    from ..caffe_proto import migrator_caffe_pb2 as pb
    check_readable(path)
    size = os.path.getsize(path)
    if size == 0:
        raise MigratorError("the mean file is empty", file=path)
    if size > MAX_MEAN_FILE_BYTES:
        raise MigratorError(f"the mean file is {size / (1 << 20):.0f} MiB, more than a mean image "
                            f"can be ({MAX_MEAN_FILE_BYTES >> 20} MiB): not a mean file?", file=path)
    with open(path, "rb") as f:
        raw = f.read(MAX_MEAN_FILE_BYTES + 1)
    blob = pb.BlobProto()
    try:
        blob.ParseFromString(raw)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends: a user file
        raise MigratorError("not a Caffe BlobProto (.binaryproto mean file): protobuf cannot "
                            "parse it", file=path) from None
    if blob.HasField("shape") and len(blob.shape.dim):
        dims = [int(d) for d in blob.shape.dim]
    else:
        dims = [int(blob.num), int(blob.channels), int(blob.height), int(blob.width)]
    if len(blob.double_data) and not len(blob.data):
        data = np.asarray(blob.double_data, dtype=np.float64)
    else:
        data = np.asarray(blob.data, dtype=np.float32)
    if not dims or any(d < 1 for d in dims):
        raise MigratorError(f"the mean blob has shape {tuple(dims)}: not a mean image", file=path)
    while len(dims) > 3 and dims[0] == 1:      # (1, C, H, W) as compute_image_mean writes it
        dims = dims[1:]
    if len(dims) == 2:
        dims = [1] + dims
    if len(dims) != 3:
        raise MigratorError(f"the mean blob has shape {tuple(dims)}: a mean image is (C, H, W) "
                            "(or (1, C, H, W))", file=path)
    count = math.prod(dims)
    if count > max_tensor_values():
        raise MigratorError(f"the mean blob declares {count:.3g} values, more than Migrator reads",
                            file=path)
    if data.size != count:
        raise MigratorError(f"the mean blob declares shape {tuple(dims)} ({count} values) but holds "
                            f"{data.size} values", file=path)
    mean = data.astype(np.float32).reshape(dims)
    if not np.all(np.isfinite(mean)):
        raise MigratorError("the mean image holds NaN or infinite values", file=path)
    return mean


def read_mean_file(path: str) -> np.ndarray:
    """A mean from a file: ``.binaryproto`` (see :func:`read_binaryproto`) or ``.npy`` (a (C,)
    per-channel mean or a (C, H, W) image, as saved by ``np.save``; no pickles)."""
    path = os.fspath(path)
    if path.lower().endswith(".npy"):
        check_readable(path)
        if os.path.getsize(path) > MAX_MEAN_FILE_BYTES:
            raise MigratorError("the mean file is too large for a mean image", file=path)
        try:
            mean = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - user file
            raise MigratorError(f"cannot read the .npy mean: {e}", file=path) from None
        mean = np.asarray(mean, dtype=np.float32)
        if mean.ndim == 4 and mean.shape[0] == 1:
            mean = mean[0]
        if mean.ndim not in (1, 3) or mean.size == 0:
            raise MigratorError(f"a mean is (C,) or (C, H, W), this .npy holds {mean.shape}", file=path)
        if not np.all(np.isfinite(mean)):
            raise MigratorError("the mean holds NaN or infinite values", file=path)
        return mean
    return read_binaryproto(path)


__all__ = ["MAX_MEAN_FILE_BYTES", "is_mean_file", "read_binaryproto", "read_mean_file"]
