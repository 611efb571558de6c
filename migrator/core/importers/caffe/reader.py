"""Reading Caffe files: the text ``.prototxt`` and the binary ``.caffemodel``, V1 and new formats.

Both files are read with Migrator's own protobuf schema (:mod:`migrator.core.importers.caffe_proto`);
no Caffe installation is needed.  V1 (``layers { type: CONVOLUTION }``) layers are upgraded to
V2 type names (:func:`upgrade_v1`); blobs are read by layer name, lazily (:class:`CaffeWeights`).
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ...errors import MigratorError
from .fields import scan_unknown_fields

#: V1 enum name -> V2 type string (Caffe's own upgrade table).
V1_TYPE_NAMES: dict[str, str] = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


# ------------------------------------------------------------------------------------
# File reading
# ------------------------------------------------------------------------------------
def read_file(path: str, what: str) -> bytes:
    """The bytes of a non-empty file; MigratorError naming the file otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MigratorError(f"{what} not found (no such file)", file=path)
    if os.path.isdir(path):
        raise MigratorError(f"{what} path is a directory, not a file", file=path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise MigratorError(f"cannot read the {what}: permission denied", file=path) from None
    except OSError as e:
        raise MigratorError(f"cannot read the {what}: {e.strerror or e}", file=path) from None
    if not data:
        raise MigratorError(f"{what} is empty (0 bytes)", file=path)
    return data


def _pb():
    from ..caffe_proto import pb
    return pb


def parse_prototxt(path: str, warnings: list[str] | None = None, unknown_out: list | None = None):
    """Parse a text prototxt into a ``NetParameter``.

    Fields unknown to Migrator's schema (custom forks' layer parameters): parsing is
    retried skipping such fields, and every one of them is listed (with its layer entry)
    in ``unknown_out`` (a :class:`.fields.ScanResult` is appended); the importer
    then refuses them unless accepted (see :mod:`.fields`).  Any other syntax error
    raises MigratorError with the line.
    """
    from google.protobuf import text_format

    pb = _pb()
    raw = read_file(path, "prototxt")
    if b"\x00" in raw[:4096]:
        raise MigratorError("is a binary file, not a text prototxt (did you swap the .prototxt and "
                            "the .caffemodel?)", file=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise MigratorError("is not a text file", file=path) from None
    if not text.strip():
        raise MigratorError("prototxt is empty (only whitespace)", file=path)
    net = pb.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        first = _parse_error_text(e)
        if "has no field named" in str(e) or "unknown field" in str(e).lower():
            net = pb.NetParameter()
            try:
                text_format.Parse(text, net, allow_unknown_field=True)
            except text_format.ParseError as e2:
                raise MigratorError(f"syntax error {_parse_error_text(e2)}", file=path) from None
            try:
                scan = scan_unknown_fields(text, pb.NetParameter.DESCRIPTOR)
            except ValueError:
                raise MigratorError(f"unknown field {first}", file=path) from None
            if unknown_out is not None:
                unknown_out.append(scan)
            elif warnings is not None:
                warnings.append(f"{os.path.basename(path)}: fields unknown to Migrator's Caffe "
                                f"schema were skipped (first: {first})")
        else:
            raise MigratorError(f"syntax error {first}", file=path) from None
    return net


def _parse_error_text(e) -> str:
    """'at line L, column C: message' from a text_format.ParseError."""
    msg = str(e).replace("migrator_caffe.", "caffe.")
    line, col = getattr(e, "GetLine", lambda: None)(), getattr(e, "GetColumn", lambda: None)()
    # the message starts with "L:C : " when the position is known
    head, sep, rest = msg.partition(" : ")
    if sep and ":" in head and head.replace(":", "").isdigit():
        msg = rest
    if line is not None:
        return f"at line {line}, column {col}: {msg}"
    return f": {msg}"


class _NeedFullParse(Exception):
    pass


class CaffeWeights:
    """The blobs of a .caffemodel, by layer name, converted to numpy lazily.

    ``get(layer_name)`` returns a list of float32 arrays (shaped as stored; legacy
    blobs as 4-d (num, channels, height, width)) or None when the file has no blobs for
    that layer.
    """

    def __init__(self, path: str, net_name: str, fmt: str, blobs: dict[str, list],
                 layer_types: dict[str, str]):
        self.path = path
        self.net_name = net_name
        self.format = fmt
        self._blobs = blobs               # name -> list of ("fast"|"full", blob message)
        self.layer_types = layer_types    # name -> type of the layer in the weights file
        self.used: set[str] = set()

    def names(self) -> list[str]:
        return list(self._blobs)

    def has(self, name: str) -> bool:
        return name in self._blobs

    def get(self, name: str) -> list[tuple[np.ndarray, bool]] | None:
        entries = self._blobs.get(name)
        if entries is None:
            return None
        self.used.add(name)
        return [blob_to_array(b, fast, self.path, name, i) for i, (fast, b) in enumerate(entries)]


def _blob_dims(b, file, layer, index) -> tuple[tuple[int, ...], bool]:
    """(shape, legacy) of a blob message."""
    if b.HasField("shape"):
        return tuple(int(d) for d in b.shape.dim), False
    legacy = [b.HasField(f) for f in ("num", "channels", "height", "width")]
    if any(legacy):
        return (int(b.num), int(b.channels), int(b.height), int(b.width)), True
    return (), False


def blob_to_array(b, fast: bool, file: str, layer: str, index: int) -> tuple[np.ndarray, bool]:
    """(float32 array, legacy 4-d) of a blob message; MigratorError when its size is wrong."""
    shape, legacy = _blob_dims(b, file, layer, index)
    if fast:
        chunks = list(b.data)
        dchunks = list(b.double_data)
        if chunks:
            buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            arr = np.frombuffer(buf, dtype="<f4")
        elif dchunks:
            buf = dchunks[0] if len(dchunks) == 1 else b"".join(dchunks)
            arr = np.frombuffer(buf, dtype="<f8").astype(np.float32)
        else:
            arr = np.zeros(0, np.float32)
    else:
        if len(b.data):
            arr = np.asarray(b.data, dtype=np.float32)
        elif len(b.double_data):
            arr = np.asarray(b.double_data, dtype=np.float64).astype(np.float32)
        else:
            arr = np.zeros(0, np.float32)
    if shape == () and not b.HasField("shape"):
        shape = (arr.size,)           # no shape at all: keep the values as a vector
    count = math.prod(shape)
    if any(d < 0 for d in shape):
        raise MigratorError(f"blob {index} has a negative dimension {shape}", file=file, layer=layer)
    if arr.size != count:
        raise MigratorError(f"blob {index} declares shape {shape} ({count} values) but holds "
                            f"{arr.size} values (truncated or corrupt file?)", file=file, layer=layer)
    arr = arr.reshape(shape)
    if not arr.flags.writeable:
        arr = arr.copy()   # frombuffer views are read-only; params must be ordinary arrays
    return arr, legacy


def parse_caffemodel(path: str) -> CaffeWeights:
    """Read a binary .caffemodel (fast path for packed blobs, full schema otherwise)."""
    from google.protobuf.message import DecodeError

    pb = _pb()
    raw = read_file(path, "caffemodel")
    head = raw[:256].lstrip()
    if head[:5] in (b"name:", b"layer", b"input") or head[:6] == b"layers":
        raise MigratorError("looks like a text prototxt, not a binary .caffemodel (did you swap "
                            "the .prototxt and the .caffemodel?)", file=path)
    try:
        fast = pb.FastNetParameter()
        fast.ParseFromString(raw)
        weights = _collect(fast, path, fast_mode=True)
        # the fast view cannot see unpacked float data: verify every blob's count
        for entries in weights._blobs.values():
            for _, b in entries:
                shape, _ = _blob_dims(b, path, "", 0)
                n = sum(len(c) for c in b.data) // 4 + sum(len(c) for c in b.double_data) // 8
                if shape and n != math.prod(shape):
                    raise _NeedFullParse
                if not shape and not b.HasField("shape") and n == 0:
                    raise _NeedFullParse
                if any(len(c) % 4 for c in b.data) or any(len(c) % 8 for c in b.double_data):
                    raise _NeedFullParse
        return weights
    except _NeedFullParse:
        pass
    except DecodeError:
        pass   # the full parser gives the definitive answer below
    full = pb.NetParameter()
    try:
        full.ParseFromString(raw)
    except DecodeError:
        raise MigratorError(f"not a valid binary .caffemodel: the protobuf data is truncated or "
                            f"corrupt ({len(raw)} bytes could not be decoded)", file=path) from None
    return _collect(full, path, fast_mode=False)


def _collect(net, path: str, fast_mode: bool) -> CaffeWeights:
    pb = _pb()
    blobs: dict[str, list] = {}
    types: dict[str, str] = {}
    n_layers = 0
    fmt = "V2"
    if len(net.layers) and len(net.layer):
        fmt = "V1+V2"
    elif len(net.layers):
        fmt = "V1"
    for lp in net.layers:
        n_layers += 1
        name = lp.name
        try:
            tname = pb.V1LayerParameter.LayerType.Name(lp.type)
            t = V1_TYPE_NAMES.get(tname, tname)
        except ValueError:
            t = f"V1 type {lp.type}"
        types[name] = t
        if len(lp.blobs):
            blobs[name] = [(fast_mode, b) for b in lp.blobs]   # later layers win, as in Caffe
    for lp in net.layer:
        n_layers += 1
        types[lp.name] = lp.type
        if len(lp.blobs):
            blobs[lp.name] = [(fast_mode, b) for b in lp.blobs]
    if n_layers == 0:
        raise MigratorError("not a Caffe .caffemodel: no layers found (random or corrupt data?)",
                            file=path)
    if not any(types) and not blobs:
        raise MigratorError("not a Caffe .caffemodel: layers have neither names nor weights",
                            file=path)
    return CaffeWeights(path, net.name, fmt, blobs, types)


# ------------------------------------------------------------------------------------
# V1 -> V2 upgrade (only what the conversion needs)
# ------------------------------------------------------------------------------------
def upgrade_v1(layers, file: str) -> list:
    """V1 ``layers`` entries as V2 ``LayerParameter`` messages (type names, params, blobs)."""
    pb = _pb()
    out = []
    v2_fields = pb.LayerParameter.DESCRIPTOR.fields_by_name
    for i, v1 in enumerate(layers):
        if v1.HasField("layer"):
            raise MigratorError("pre-2014 'V0' layer format is not supported; upgrade the net with "
                                "Caffe's upgrade_net_proto_text first", file=file,
                                layer=v1.name or v1.layer.name or f"#{i}")
        lp = pb.LayerParameter()
        lp.name = v1.name
        tname = pb.V1LayerParameter.LayerType.Name(v1.type) if v1.type in \
            pb.V1LayerParameter.LayerType.values() else str(v1.type)
        lp.type = V1_TYPE_NAMES.get(tname, tname)
        lp.bottom.extend(v1.bottom)
        lp.top.extend(v1.top)
        lp.include.extend(v1.include)
        lp.exclude.extend(v1.exclude)
        lp.blobs.extend(v1.blobs)
        lp.loss_weight.extend(v1.loss_weight)
        for fd, value in v1.ListFields():
            if fd.name.endswith("_param") and fd.name in v2_fields:
                getattr(lp, fd.name).CopyFrom(value)
        out.append(lp)
    return out


# ------------------------------------------------------------------------------------
# Phase filtering (Caffe's NetState rules; deploy = TEST phase)
# ------------------------------------------------------------------------------------
def _rule_matches(rule, phase: int, level: int, stages: set[str]) -> bool:
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def layer_included(lp, phase: int, level: int, stages: set[str]) -> bool:
    if len(lp.include):
        return any(_rule_matches(r, phase, level, stages) for r in lp.include)
    if len(lp.exclude):
        return not any(_rule_matches(r, phase, level, stages) for r in lp.exclude)
    return True


# ------------------------------------------------------------------------------------
# Attribute helpers
# ------------------------------------------------------------------------------------


def param_dict(lp) -> dict[str, Any]:
    """The *_param messages set on a layer, as plain dicts (for Custom nodes)."""
    from google.protobuf import json_format
    out = {}
    for fd, value in lp.ListFields():
        if fd.name.endswith("_param") and fd.message_type is not None:
            out[fd.name] = json_format.MessageToDict(value, preserving_proto_field_name=True)
    return out


__all__ = ["V1_TYPE_NAMES", "CaffeWeights", "blob_to_array", "layer_included", "param_dict", "parse_caffemodel",
           "parse_prototxt", "read_file", "upgrade_v1"]
